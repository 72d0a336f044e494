//! Calendar dates of Unix times, in UTC (proleptic Gregorian), for the few places pinetboot
//! writes one: image manifests (`unpacked_at`), moved-aside roots' names, the man pages' date.
//! A dozen lines of arithmetic do not justify a date crate.

/// `(year, month, day)` of a day count since 1970-01-01, negative before it (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The UTC date of `secs` since the epoch as `2026-05-01`.
pub fn utc_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// UTC time as `2026-05-01T12:34:56Z` (`compact`: `20260501T123456Z`, for file names).
pub fn utc(secs: i64, compact: bool) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let (h, mi, se) = (s / 3600, s / 60 % 60, s % 60);
    if compact {
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{se:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn times() {
        assert_eq!(utc(0, false), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400 + 3661, false), "2000-02-29T01:01:01Z");
        assert_eq!(utc(1_772_323_200, true), "20260301T000000Z");
        assert_eq!(utc(-1, false), "1969-12-31T23:59:59Z");
        assert_eq!(utc_date(1_772_323_200 + 86_399), "2026-03-01");
    }
}
