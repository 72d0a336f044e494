//! Sizes in the YAML: `16 GiB`, `512 MiB`, `10 KiB`, `100 B` or a plain number of bytes.
//! Only binary units: `GB` would be ambiguous (10^9 or 2^30), so it is an error with a hint.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u32); 5] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0)];

/// The schema's pattern for the text form.
const PATTERN: &str = r"^\s*[0-9]+\s*(B|KiB|MiB|GiB|TiB)?\s*$";

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "write a number of bytes, or a number with one of the units B, KiB, MiB, GiB, TiB (powers of 1024), e.g. `16 GiB`";
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(digits);
        let unit = unit.trim();
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{s}` is not a size: {hint}"))?;
        let shift = if unit.is_empty() {
            0
        } else {
            UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, shift)| *shift)
                .ok_or_else(|| format!("`{s}`: unknown unit `{unit}`; {hint}"))?
        };
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly: `16 GiB`, `1536 MiB`, `100 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let (unit, shift) = UNITS
            .iter()
            .copied()
            .find(|(_, shift)| n != 0 && n.is_multiple_of(1u64 << shift))
            .unwrap_or(("B", 0));
        write!(f, "{} {unit}", n >> shift)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as `16 GiB` or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("`{v}`: a size cannot be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    /// Inline at each field (whose description says what the size is for).
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // One schema for both forms: `minimum` applies to numbers only, `pattern` to strings.
        json_schema!({
            "description": "A size: a number of bytes, or a number with one of the units B, KiB, MiB, GiB, TiB (powers of 1024), e.g. `16 GiB`.",
            "type": ["integer", "string"],
            "minimum": 0,
            "pattern": PATTERN
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_bytes() {
        for (text, n) in [
            ("16 GiB", 16u64 << 30),
            ("16GiB", 16 << 30),
            (" 10 KiB ", 10 << 10),
            ("1 TiB", 1 << 40),
            ("100 B", 100),
            ("1048576", 1 << 20),
            ("0", 0),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(n)), "{text}");
        }
        for bad in [
            "16 GB",
            "16 gib",
            "GiB",
            "",
            "-1",
            "1.5 GiB",
            "99999999999 TiB",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert!(
            "16 GB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("unknown unit `GB`")
        );
    }

    #[test]
    fn displays_in_the_largest_exact_unit_and_round_trips() {
        for (n, text) in [
            (16u64 << 30, "16 GiB"),
            (1536 << 20, "1536 MiB"),
            (100, "100 B"),
            (0, "0 B"),
            (10 << 10, "10 KiB"),
        ] {
            assert_eq!(ByteSize(n).to_string(), text);
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(n)));
        }
    }
}
