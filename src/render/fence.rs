//! `# BEGIN pinetboot` … `# END pinetboot` blocks inside files others own (the host's
//! `/etc/fstab`; a client's `etc/hosts`, `etc/default/raspi-firmware`, `etc/dhcpcd.conf`).
//!
//! Everything here works on bytes: the bytes outside the block are kept exactly, whatever their
//! encoding (invalid UTF-8, NUL, CR, no final newline). One pass over the file finds the block.
//!
//! **What counts as a marker**: a line that is exactly `# BEGIN pinetboot` or `# END pinetboot`
//! once ASCII whitespace around it (spaces, tabs, form feeds, a CR before the `\n`, the `\n`
//! itself) is set aside. Anything else (`#BEGIN pinetboot`, `# begin pinetboot`,
//! `# BEGIN pinetboot v2`) is an ordinary line and is kept as it is.
//!
//! **A whole fence** is either no marker at all or exactly one BEGIN line followed, later, by
//! exactly one END line. Every other shape (a lone BEGIN or END, END before BEGIN, a BEGIN
//! inside an open block, two blocks) is [`Broken`]: pinetboot cannot tell which lines are its
//! own, so the file must not be written until a person mends it.

use std::fmt;

/// The opening fence line.
pub const BEGIN: &str = "# BEGIN pinetboot";
/// The closing fence line.
pub const END: &str = "# END pinetboot";

/// What a line is, as far as the fence goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Begin,
    End,
}

fn marker(line: &[u8]) -> Option<Marker> {
    match line.trim_ascii() {
        t if t == BEGIN.as_bytes() => Some(Marker::Begin),
        t if t == END.as_bytes() => Some(Marker::End),
        _ => None,
    }
}

/// Why a file's fence cannot be trusted. Lines are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// A BEGIN line with no END after it (a hand edit, a truncated file).
    Unterminated {
        /// The BEGIN line.
        line: usize,
    },
    /// An END line with no open block before it.
    StrayEnd {
        /// The END line.
        line: usize,
    },
    /// A second BEGIN line while a block is still open.
    Nested {
        /// The second BEGIN line.
        line: usize,
        /// The BEGIN line of the open block.
        open: usize,
    },
    /// A second whole block.
    Second {
        /// The second block's BEGIN line.
        line: usize,
        /// The first block's BEGIN line.
        first: usize,
        /// The first block's END line.
        first_end: usize,
    },
}

impl Broken {
    /// The line the problem is reported at.
    pub fn line(&self) -> usize {
        match self {
            Broken::Unterminated { line }
            | Broken::StrayEnd { line }
            | Broken::Nested { line, .. }
            | Broken::Second { line, .. } => *line,
        }
    }

    /// What a person should do about it.
    pub fn hint(&self) -> String {
        let then = "pinetboot changes nothing in this file until its fence is whole, then writes \
                    its lines again";
        match self {
            Broken::Unterminated { line } => format!(
                "the block was cut short (a hand edit, a truncated file?): put `{END}` back after \
                 pinetboot's lines, or delete line {line} and pinetboot's lines after it; {then}"
            ),
            Broken::StrayEnd { line } => format!(
                "delete line {line}, or put `{BEGIN}` back where pinetboot's lines start; {then}"
            ),
            Broken::Nested { open, .. } => format!(
                "the block opened at line {open} was cut short: put `{END}` back where its lines \
                 end, or delete it; {then}"
            ),
            Broken::Second { .. } => {
                format!("keep one block (delete the other, from `{BEGIN}` to `{END}`); {then}")
            }
        }
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Unterminated { line } => {
                write!(f, "line {line}: `{BEGIN}` has no `{END}` after it")
            }
            Broken::StrayEnd { line } => {
                write!(f, "line {line}: `{END}` has no `{BEGIN}` before it")
            }
            Broken::Nested { line, open } => write!(
                f,
                "line {line}: `{BEGIN}` again, inside the block opened at line {open} (no `{END}` between them)"
            ),
            Broken::Second {
                line,
                first,
                first_end,
            } => write!(
                f,
                "line {line}: a second pinetboot block (the first is lines {first}–{first_end})"
            ),
        }
    }
}

impl std::error::Error for Broken {}

/// A broken fence in a named file (host files; a client root's is a
/// [`crate::host::confined::Violation::Fence`]).
#[derive(Debug)]
pub struct BrokenFile {
    /// The file, as the host sees it.
    pub path: String,
    /// What is wrong.
    pub broken: Broken,
}

impl fmt::Display for BrokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}; nothing was written",
            self.path.trim_end_matches('/'),
            self.broken
        )
    }
}

impl std::error::Error for BrokenFile {}

/// Where the block sits: byte offsets of its BEGIN line's start, its inner lines and the end
/// of its END line (including the END line's `\n`, if it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    inner: (usize, usize),
    end: usize,
}

/// A file split around its (one, whole) block.
#[derive(Debug, Clone, Copy)]
pub struct Fenced<'a> {
    text: &'a [u8],
    block: Option<Span>,
}

/// Lines of `text`, each with its `\n` (the last may have none).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split_inclusive(|&b| b == b'\n')
}

/// Finds the block in one pass; any other shape of markers is [`Broken`].
pub fn parse(text: &[u8]) -> Result<Fenced<'_>, Broken> {
    let mut offset = 0;
    // The open block: (its BEGIN line number, its start, where its inner lines start).
    let mut open: Option<(usize, usize, usize)> = None;
    // The closed block: (BEGIN line, END line, span).
    let mut found: Option<(usize, usize, Span)> = None;
    for (i, line) in lines(text).enumerate() {
        let n = i + 1;
        match (marker(line), open, found) {
            (None, ..) => {}
            (Some(Marker::Begin), Some((first, ..)), _) => {
                return Err(Broken::Nested {
                    line: n,
                    open: first,
                });
            }
            (Some(Marker::Begin), None, Some((first, first_end, _))) => {
                return Err(Broken::Second {
                    line: n,
                    first,
                    first_end,
                });
            }
            (Some(Marker::Begin), None, None) => open = Some((n, offset, offset + line.len())),
            (Some(Marker::End), None, _) => return Err(Broken::StrayEnd { line: n }),
            (Some(Marker::End), Some((first, start, inner)), _) => {
                let span = Span {
                    start,
                    inner: (inner, offset),
                    end: offset + line.len(),
                };
                found = Some((first, n, span));
                open = None;
            }
        }
        offset += line.len();
    }
    if let Some((line, ..)) = open {
        return Err(Broken::Unterminated { line });
    }
    Ok(Fenced {
        text,
        block: found.map(|(.., s)| s),
    })
}

impl<'a> Fenced<'a> {
    /// Whether the file has a block.
    pub fn has_block(&self) -> bool {
        self.block.is_some()
    }

    /// The bytes before the block (the whole file when there is none).
    pub fn before(&self) -> &'a [u8] {
        match self.block {
            Some(s) => &self.text[..s.start],
            None => self.text,
        }
    }

    /// The bytes after the block.
    pub fn after(&self) -> &'a [u8] {
        match self.block {
            Some(s) => &self.text[s.end..],
            None => &[],
        }
    }

    /// The lines inside the block (without line endings; a CR before `\n` dropped; bytes that
    /// are not UTF-8 shown as U+FFFD: these lines are pinetboot's and are only compared and
    /// rewritten); `None` without a block.
    pub fn inner_lines(&self) -> Option<Vec<String>> {
        let s = self.block?;
        Some(
            lines(&self.text[s.inner.0..s.inner.1])
                .map(|l| {
                    let l = l.strip_suffix(b"\n").unwrap_or(l);
                    let l = l.strip_suffix(b"\r").unwrap_or(l);
                    String::from_utf8_lossy(l).into_owned()
                })
                .collect(),
        )
    }

    /// The file with the block's lines replaced by `lines` (appended at the end when there is
    /// no block; the block removed when `lines` is empty), keeping the lines outside the block
    /// for which `keep` says so. Every kept byte is copied exactly.
    pub fn render(&self, lines_in: &[String], mut keep: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 64);
        let mut copy = |out: &mut Vec<u8>, part: &[u8]| {
            for l in lines(part) {
                if keep(l) {
                    out.extend_from_slice(l);
                }
            }
        };
        copy(&mut out, self.before());
        if !lines_in.is_empty() {
            // Appended after a last line that has no newline: give it one first.
            if !self.has_block() && out.last().is_some_and(|&b| b != b'\n') {
                out.push(b'\n');
            }
            out.extend_from_slice(BEGIN.as_bytes());
            out.push(b'\n');
            for l in lines_in {
                out.extend_from_slice(l.as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(END.as_bytes());
            out.push(b'\n');
        }
        copy(&mut out, self.after());
        out
    }
}

/// The lines inside the block, if there is one.
pub fn extract(text: &[u8]) -> Result<Option<Vec<String>>, Broken> {
    Ok(parse(text)?.inner_lines())
}

/// `text` with the block's lines replaced by `lines` (appended when absent; removed when
/// `lines` is empty). Everything outside the block is kept byte for byte.
pub fn splice(text: &[u8], lines: &[String]) -> Result<Vec<u8>, Broken> {
    Ok(parse(text)?.render(lines, |_| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn appends_replaces_and_removes() {
        let base = b"proc /proc proc defaults 0 0";
        let one = splice(base, &s(&["a b"])).unwrap();
        assert_eq!(
            one,
            b"proc /proc proc defaults 0 0\n# BEGIN pinetboot\na b\n# END pinetboot\n"
        );
        let two = splice(&one, &s(&["c d"])).unwrap();
        assert_eq!(
            two,
            b"proc /proc proc defaults 0 0\n# BEGIN pinetboot\nc d\n# END pinetboot\n"
        );
        assert_eq!(extract(&two).unwrap(), Some(s(&["c d"])));
        assert_eq!(
            splice(&two, &[]).unwrap(),
            b"proc /proc proc defaults 0 0\n"
        );
        assert_eq!(splice(b"", &[]).unwrap(), b"");
        assert_eq!(
            splice(b"", &s(&["x"])).unwrap(),
            b"# BEGIN pinetboot\nx\n# END pinetboot\n"
        );
    }

    #[test]
    fn markers_are_whole_lines_give_or_take_whitespace() {
        for line in [
            "# BEGIN pinetboot",
            "# BEGIN pinetboot\r",
            "  # BEGIN pinetboot \t",
            "\t# BEGIN pinetboot\x0c",
        ] {
            assert_eq!(marker(line.as_bytes()), Some(Marker::Begin), "{line:?}");
        }
        assert_eq!(marker(b"# END pinetboot\r\n"), Some(Marker::End));
        for line in [
            "#BEGIN pinetboot",
            "# begin pinetboot",
            "# BEGIN pinetboot v2",
            "# BEGIN  pinetboot",
            "# BEGIN pinetboo",
            "x # BEGIN pinetboot",
            "# BEGIN pinetboot\0",
        ] {
            assert_eq!(marker(line.as_bytes()), None, "{line:?}");
        }
    }

    #[test]
    fn a_block_with_crlf_or_spaces_is_found_and_rewritten_plainly() {
        let text = b"a\r\n  # BEGIN pinetboot  \r\nold\r\n# END pinetboot\r\nb\r\n";
        assert_eq!(extract(text).unwrap(), Some(s(&["old"])));
        assert_eq!(
            splice(text, &s(&["new"])).unwrap(),
            b"a\r\n# BEGIN pinetboot\nnew\n# END pinetboot\nb\r\n"
        );
        // The END line is the last and has no newline.
        let text = b"a\n# BEGIN pinetboot\nold\n# END pinetboot";
        assert_eq!(
            splice(text, &s(&["new"])).unwrap(),
            b"a\n# BEGIN pinetboot\nnew\n# END pinetboot\n"
        );
        assert_eq!(splice(text, &[]).unwrap(), b"a\n");
    }

    #[test]
    fn every_broken_shape_is_an_error_at_its_line() {
        let cases: [(&str, Broken); 7] = [
            (
                "a\n# BEGIN pinetboot\nx\n",
                Broken::Unterminated { line: 2 },
            ),
            // Truncated inside the BEGIN line's newline: still a lone BEGIN.
            ("a\n# BEGIN pinetboot", Broken::Unterminated { line: 2 }),
            ("a\n# END pinetboot\nb\n", Broken::StrayEnd { line: 2 }),
            (
                "# END pinetboot\n# BEGIN pinetboot\nx\n# END pinetboot\n",
                Broken::StrayEnd { line: 1 },
            ),
            (
                "# BEGIN pinetboot\nx\n# END pinetboot\n# END pinetboot\n",
                Broken::StrayEnd { line: 4 },
            ),
            // The issue's case: a block cut short, then a second apply appended another one.
            (
                "a\n# BEGIN pinetboot\nx\nuser line\n# BEGIN pinetboot\nx\n# END pinetboot\n",
                Broken::Nested { line: 5, open: 2 },
            ),
            (
                "# BEGIN pinetboot\nx\n# END pinetboot\nu\n# BEGIN pinetboot\ny\n# END pinetboot\n",
                Broken::Second {
                    line: 5,
                    first: 1,
                    first_end: 3,
                },
            ),
        ];
        for (text, want) in cases {
            let got = parse(text.as_bytes()).map(|_| ()).unwrap_err();
            assert_eq!(got, want, "{text:?}");
            assert_eq!(splice(text.as_bytes(), &s(&["l"])).unwrap_err(), want);
            assert_eq!(splice(text.as_bytes(), &[]).unwrap_err(), want);
            assert!(
                got.to_string()
                    .starts_with(&format!("line {}: ", want.line()))
            );
        }
        assert_eq!(
            BrokenFile {
                path: "/etc/fstab".into(),
                broken: Broken::Unterminated { line: 3 },
            }
            .to_string(),
            "/etc/fstab line 3: `# BEGIN pinetboot` has no `# END pinetboot` after it; nothing was written"
        );
    }

    #[test]
    fn render_drops_only_the_lines_keep_refuses_outside_the_block() {
        let text = b"1 a\n2 b\n# BEGIN pinetboot\n2 inside\n# END pinetboot\n2 c\n3 d";
        let f = parse(text).unwrap();
        let out = f.render(&s(&["new"]), |l| !l.starts_with(b"2"));
        assert_eq!(out, b"1 a\n# BEGIN pinetboot\nnew\n# END pinetboot\n3 d");
        // No block: the dropped last line leaves a text ending in a newline.
        let f = parse(b"1 a\n2 b").unwrap();
        assert_eq!(
            f.render(&s(&["new"]), |l| !l.starts_with(b"2")),
            b"1 a\n# BEGIN pinetboot\nnew\n# END pinetboot\n"
        );
    }

    /// Lines the property tests put outside the block: anything at all, markers excepted, plus
    /// near-markers and markers' words in other lines.
    fn foreign() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            Just(b"#BEGIN pinetboot".to_vec()),
            Just(b"# BEGIN pinetboot v2".to_vec()),
            Just(b"# END pinetboo\r".to_vec()),
            Just(b"\xff\xfe# BEGIN pinetboot".to_vec()),
            Just(b"tab\tnul\0cr\r".to_vec()),
        ];
        (
            proptest::collection::vec(line, 0..8),
            proptest::collection::vec(prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec())], 8),
            any::<bool>(),
        )
            .prop_map(|(ls, ends, last_nl)| {
                let mut out = Vec::new();
                let n = ls.len();
                for (i, l) in ls.into_iter().enumerate() {
                    out.extend_from_slice(&l);
                    if i + 1 < n || last_nl {
                        out.extend_from_slice(&ends[i]);
                    }
                }
                out
            })
            .prop_filter("no markers in foreign text", |t| {
                lines(t).all(|l| marker(l).is_none())
            })
    }

    fn block_lines() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-zA-Z0-9 /=,.\t-]{1,30}", 0..4).prop_map(|v| {
            v.into_iter()
                .filter(|l| marker(l.as_bytes()).is_none())
                .collect()
        })
    }

    proptest! {
        #[test]
        fn bytes_outside_the_fence_survive(
            before in foreign(),
            after in foreign(),
            a in block_lines(),
            b in block_lines(),
        ) {
            // No block yet: appended, and the file before it is kept (plus a newline when its
            // last line had none).
            let base = if before.is_empty() || before.ends_with(b"\n") {
                before.clone()
            } else {
                [before.as_slice(), b"\n"].concat()
            };
            let first = splice(&before, &a).unwrap();
            if a.is_empty() {
                prop_assert_eq!(&first, &before);
            } else {
                prop_assert!(first.starts_with(&base));
                prop_assert_eq!(extract(&first).unwrap(), Some(a.clone()));
            }
            // A block between foreign bytes: replaced (or removed) in place.
            let mut text = base.clone();
            text.extend_from_slice(b"# BEGIN pinetboot\n");
            for l in &a {
                text.extend_from_slice(l.as_bytes());
                text.extend_from_slice(b"\n");
            }
            text.extend_from_slice(b"# END pinetboot\n");
            text.extend_from_slice(&after);
            let out = splice(&text, &b).unwrap();
            let f = parse(&out).unwrap();
            if b.is_empty() {
                prop_assert_eq!(&out, &[base.as_slice(), after.as_slice()].concat());
            } else {
                prop_assert_eq!(f.before(), base.as_slice());
                prop_assert_eq!(f.after(), after.as_slice());
                prop_assert_eq!(f.inner_lines(), Some(b.clone()));
            }
            // And again: nothing moves.
            prop_assert_eq!(splice(&out, &b).unwrap(), out.clone());
        }

        #[test]
        fn any_bytes_parse_or_break_and_never_panic(text in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = splice(&text, &["x".to_owned()]);
        }
    }
}
