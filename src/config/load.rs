//! Reading `pinetboot.yaml`: size limit, a YAML parser with a budget against hostile input,
//! strict types (unknown fields and `yes`/`no` booleans are errors) and errors that carry the
//! field path as well as the line and column.

use std::path::Path;

use super::diagnostic::{ConfigError, Diagnostic};
use super::locate::{Locator, Position};
use super::model::Config;

/// The most pinetboot reads from a config file (1 MiB, counted as read, not from `st_size`).
/// Configs are a few kilobytes; anything bigger is a mistake or an attack.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The parsed document with the index of where each field stands.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The typed config.
    pub config: Config,
    /// Field path → position.
    pub locator: Locator,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 32,
            max_nodes: 100_000,
            max_total_scalar_bytes: MAX_CONFIG_BYTES,
            max_documents: 1,
            max_merge_keys: 1_000,
        },
    }
}

fn problem_with_hint(
    file: &Path,
    position: Position,
    path: String,
    message: String,
    hint: Option<String>,
) -> ConfigError {
    ConfigError {
        diagnostics: vec![Diagnostic {
            file: file.to_owned(),
            position,
            path,
            message,
            hint,
        }],
    }
}

const BUDGET_HINT: &str =
    "pinetboot configs are small and need no deep nesting or many aliases; is this the right file?";
const SYNTAX_HINT: &str = "fix the YAML here: indent with spaces, close every quote and bracket, and quote values that contain `: ` or ` #`";

/// Hints for serde-saphyr's messages, by a word of the (lower-cased) message; the first match wins.
const HINTS: &[(&str, &str)] = &[
    (
        "unknown field",
        "check the spelling against `pinetboot schema` (or let your editor complete it from the schema)",
    ),
    ("budget", BUDGET_HINT),
    ("limit", BUDGET_HINT),
    ("expected a nonzero", "write a whole number of at least 1"),
    (
        "bool",
        "write true or false (yes/no/on/off are not booleans here)",
    ),
    (
        "missing field",
        "add the field; `pinetboot schema` lists what each section needs",
    ),
    (
        "duplicate",
        "each key may appear once in a mapping; remove or rename one of them",
    ),
    (
        "expected a list",
        "a list is written `[a, b]` or as `- a` lines",
    ),
    (
        "expected a mapping",
        "write this section as indented `key: value` lines (or `{key: value}`); `pinetboot schema` lists its fields",
    ),
    (
        "expected a single value",
        "write one value here (quote it if needed), not a list or a nested mapping",
    ),
];

/// The hint for a serde-saphyr message, if one fits.
fn hint_for(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    HINTS
        .iter()
        .find(|(word, _)| m.contains(word))
        .map(|(_, hint)| (*hint).to_owned())
}

/// Strips serde-saphyr's own " at line L column C" suffix: we print the position in front.
fn bare_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

/// serde-saphyr's message for `err`, reworded where its own words are parser jargon, with a hint.
fn describe(err: &serde_saphyr::Error) -> (String, Option<String>) {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let err = err.without_snippet();
    let message = match err {
        E::ExternalMessage { source, .. } => match &**source {
            serde_saphyr::ExternalMessageSource::Parser(scan) => {
                if matches!(
                    scan.kind(),
                    serde_saphyr::granit_parser::ErrorKind::RecursionLimitExceeded
                ) {
                    return (
                        "the document nests too deeply (recursion limit exceeded)".into(),
                        Some(BUDGET_HINT.into()),
                    );
                }
                return (bare_message(err), Some(SYNTAX_HINT.into()));
            }
            _ => bare_message(err),
        },
        E::Budget { breach, .. } => {
            let what = match breach {
                B::Events { .. } => "too many YAML events".to_owned(),
                B::Aliases { aliases } => format!("too many aliases ({aliases})"),
                B::Anchors { anchors } => format!("too many anchors ({anchors})"),
                B::Depth { depth } => format!("nesting too deep ({depth} levels)"),
                B::Documents { .. } => {
                    return (
                        "the file holds more than one YAML document (`---`)".into(),
                        Some("keep one document: the whole config goes in one file".into()),
                    );
                }
                B::Nodes { nodes } => format!("too many values ({nodes})"),
                B::ScalarBytes { .. } => "too much text in values".to_owned(),
                B::MergeKeys { merge_keys } => format!("too many merge keys ({merge_keys})"),
                other => format!("{other:?}"),
            };
            format!("budget exceeded: {what}")
        }
        E::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key `{key}`"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_owned(),
        E::Unexpected { expected, .. } => match *expected {
            "string scalar" => "expected a single value, found a list or mapping".to_owned(),
            "mapping start" => "expected a mapping (`key: value` lines)".to_owned(),
            "sequence start" => "expected a list".to_owned(),
            _ => bare_message(err),
        },
        E::Eof { .. } => {
            return (
                "the config is empty".into(),
                Some("a config needs at least a `server:` section with `address` and `network`; see the examples".into()),
            );
        }
        _ => bare_message(err),
    };
    let hint = hint_for(&message);
    (message, hint)
}

/// Parses `text` (the contents of `file`) into a [`Config`], or says exactly where and why not.
pub fn parse(file: &Path, text: &str) -> Result<Parsed, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_big(file));
    }
    // serde_path_to_error knows the field path; the error itself must still flow out of the
    // closure so serde-saphyr stops there (and attaches the location).
    let mut failed_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            failed_path = e.path().to_string();
            e.into_inner()
        })
    });
    match result {
        // Indexed only now, when the budget has bounded the document's size.
        Ok(config) => Ok(Parsed {
            config,
            locator: Locator::new(text),
        }),
        Err(err) => Err(located(file, text, clean_path(failed_path, &err), &err)),
    }
}

/// serde_path_to_error writes `?` for a key it could not read and `.` for the document.
fn clean_path(path: String, err: &serde_saphyr::Error) -> String {
    let path = if path == "." { String::new() } else { path };
    match path.strip_suffix('?') {
        Some(parent) => {
            let parent = parent.trim_end_matches('.');
            match err.without_snippet() {
                serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
                    if parent.is_empty() {
                        key.clone()
                    } else {
                        format!("{parent}.{key}")
                    }
                }
                _ => parent.to_owned(),
            }
        }
        None => path,
    }
}

fn located(file: &Path, text: &str, path: String, err: &serde_saphyr::Error) -> ConfigError {
    // serde-saphyr places a missing field at the mapping's last key; the section's own name
    // (`clients.raspi1`) is where the field belongs.
    let missing_field = matches!(
        err.without_snippet(),
        serde_saphyr::Error::SerdeMissingField { .. }
    );
    let section = (missing_field && !path.is_empty())
        .then(|| Locator::new(text).key(&path))
        .filter(|p| p.line > 0);
    let position = section
        .or_else(|| {
            err.location()
                .map(|l| Position {
                    line: l.line() as usize,
                    column: l.column() as usize,
                })
                .filter(|p| p.line > 0)
        })
        .unwrap_or_else(|| Locator::new(text).value(&path));
    let (message, hint) = describe(err);
    problem_with_hint(file, position, path, message, hint)
}

fn too_big(file: &Path) -> ConfigError {
    problem_with_hint(
        file,
        Position::default(),
        String::new(),
        format!(
            "the file holds more than 1 MiB; pinetboot reads at most {MAX_CONFIG_BYTES} bytes of a config"
        ),
        Some("a pinetboot config is a few kilobytes; is this the right file?".into()),
    )
}

/// Reads and parses the config file at `file`: a regular file (a fifo, device or folder is
/// refused without being opened, so `--config` naming a fifo with no writer cannot block), of
/// at most [`MAX_CONFIG_BYTES`] bytes counted as they are read.
pub fn read(file: &Path) -> Result<(String, Parsed), ConfigError> {
    use crate::host::bounded::{self, ReadError};
    let bytes = bounded::read(file, MAX_CONFIG_BYTES as u64).map_err(|e| match e {
        ReadError::TooLarge { .. } => too_big(file),
        ReadError::NotRegular { what, .. } => problem_with_hint(
            file,
            Position::default(),
            String::new(),
            format!("the config is {what}, not a regular file"),
            Some(
                "pass a YAML file with --config FILE (default /etc/pinetboot/pinetboot.yaml)"
                    .into(),
            ),
        ),
        ReadError::Io(crate::ioerr::IoError { source, .. }) => problem_with_hint(
            file,
            Position::default(),
            String::new(),
            format!("cannot read the config: {source}"),
            Some("pass the file with --config FILE (default /etc/pinetboot/pinetboot.yaml)".into()),
        ),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        // The valid prefix locates the bad byte; columns count characters, as elsewhere.
        let valid = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        problem_with_hint(
            file,
            Position {
                line: valid.matches('\n').count() + 1,
                column: valid[line_start..].chars().count() + 1,
            },
            String::new(),
            format!("the file is not UTF-8 (byte {at})"),
            Some("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)".into()),
        )
    })?;
    let parsed = parse(file, &text)?;
    Ok((text, parsed))
}
