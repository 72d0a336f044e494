//! Maps a field path (`clients.raspi1.serial`, `nfs.options[2]`) to where it stands in the
//! YAML source, so semantic errors can name a line and column.
//!
//! serde gives us typed values without positions; rather than threading `Spanned<T>` through
//! every type (which also breaks the JSON schema and serialisation), we walk the parser's event
//! stream once and record the position of every key and value by path.

use std::collections::HashMap;

use granit_parser::{Event, Parser, Span};

/// The most parser events indexed (the loader's event budget): a hostile 1 MiB document
/// cannot make the index large; nodes past this are located at their nearest indexed ancestor.
const MAX_EVENTS: usize = 200_000;

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// Line, counting from 1.
    pub line: usize,
    /// Column, counting from 1.
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where a mapping entry's key and value stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The key's position (the value's for sequence items).
    pub key: Position,
    /// The value's position.
    pub value: Position,
}

/// Positions of every node in a YAML document, by field path.
#[derive(Debug, Default, Clone)]
pub struct Locator {
    entries: HashMap<String, Entry>,
}

enum Frame {
    Mapping {
        path: String,
        pending_key: Option<(String, Position)>,
    },
    Sequence {
        path: String,
        index: usize,
    },
    /// A container used as a mapping key: nothing inside it is addressable.
    Opaque,
}

fn position(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Locator {
    /// Indexes `source`. A syntax error (or `MAX_EVENTS`) stops the walk; what was seen until
    /// then stays addressable (the deserializer reports the syntax error itself).
    pub fn new(source: &str) -> Self {
        let mut entries = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(source).take(MAX_EVENTS) {
            let Ok((event, span)) = item else { break };
            let pos = position(&span);
            let is_start = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
            let is_node = is_start || matches!(event, Event::Scalar(..) | Event::Alias(..));
            if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                stack.pop();
                Self::value_done(&mut stack);
                continue;
            }
            if !is_node {
                continue;
            }
            // Where does this node sit: a key, a value at a path, or nowhere addressable?
            let path = match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Opaque) => None,
                Some(Frame::Mapping { pending_key, path }) => match pending_key {
                    None => {
                        let key = match &event {
                            Event::Scalar(text, ..) => text.to_string(),
                            _ => String::from("?"),
                        };
                        *pending_key = Some((key, pos));
                        if is_start {
                            stack.push(Frame::Opaque);
                        }
                        continue;
                    }
                    Some((key, key_pos)) => {
                        let full = join(path, key);
                        entries.insert(
                            full.clone(),
                            Entry {
                                key: *key_pos,
                                value: pos,
                            },
                        );
                        Some(full)
                    }
                },
                Some(Frame::Sequence { path, index }) => {
                    let full = format!("{path}[{index}]");
                    entries.insert(
                        full.clone(),
                        Entry {
                            key: pos,
                            value: pos,
                        },
                    );
                    Some(full)
                }
            };
            match (event, path) {
                (Event::MappingStart(..), Some(path)) => stack.push(Frame::Mapping {
                    path,
                    pending_key: None,
                }),
                (Event::SequenceStart(..), Some(path)) => {
                    stack.push(Frame::Sequence { path, index: 0 });
                }
                (Event::MappingStart(..) | Event::SequenceStart(..), None) => {
                    stack.push(Frame::Opaque);
                }
                _ => Self::value_done(&mut stack),
            }
        }
        Locator { entries }
    }

    /// A value finished: the enclosing mapping expects a key, the sequence its next item.
    fn value_done(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Mapping { pending_key, .. }) => *pending_key = None,
            Some(Frame::Sequence { index, .. }) => *index += 1,
            _ => {}
        }
    }

    /// The position of the value at `path`, or of its nearest located ancestor.
    pub fn value(&self, path: &str) -> Position {
        self.find(path).map(|e| e.value).unwrap_or_default()
    }

    /// Whether the document has no mapping key at all (an empty or comment-only file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of the key at `path` (for errors about a name), or of its nearest ancestor.
    pub fn key(&self, path: &str) -> Position {
        self.find(path).map(|e| e.key).unwrap_or_default()
    }

    fn find(&self, path: &str) -> Option<&Entry> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.get(p) {
                return Some(e);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "server:\n  address: 10.0.0.1\nclients:\n  a:\n    serial: x\n    cmdline: [quiet, 'b']\nlist:\n  - one\n  - k: v\n";

    /// The position at `line`, `column`.
    fn pos(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn locates_keys_values_and_items() {
        let l = Locator::new(DOC);
        assert_eq!(l.value("server.address"), pos(2, 12));
        assert_eq!(l.key("server.address"), pos(2, 3));
        assert_eq!(l.key("clients.a"), pos(4, 3));
        assert_eq!(l.value("clients.a.serial"), pos(5, 13));
        assert_eq!(l.value("clients.a.cmdline[1]"), pos(6, 22));
        assert_eq!(l.value("list[0]"), pos(8, 5));
        assert_eq!(l.value("list[1].k"), pos(9, 8));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let l = Locator::new(DOC);
        assert_eq!(l.value("clients.a.missing"), l.value("clients.a"));
        assert_eq!(l.value("nothing.at.all"), Position::default());
    }
}
