//! Reading `pinetboot.yaml`: size limit, a YAML parser with a budget against hostile input,
//! strict types (unknown fields and `yes`/`no` booleans are errors) and errors that carry the
//! field path as well as the line and column.

use std::path::Path;

use super::diagnostic::{ConfigError, Diagnostic};
use super::locate::{Locator, Position};
use super::model::Config;

/// Configs are small; anything bigger is a mistake or an attack.
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

fn problem(file: &Path, position: Position, path: String, message: String) -> ConfigError {
    let hint = hint_for(&message);
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

fn hint_for(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let hint = if m.contains("unknown field") {
        "check the spelling against `pinetboot schema` (or let your editor complete it from the schema)"
    } else if m.contains("budget") || m.contains("limit") {
        "pinetboot configs are small and need no deep nesting or many aliases; is this the right file?"
    } else if m.contains("bool") {
        "write true or false (yes/no/on/off are not booleans here)"
    } else if m.contains("missing field") {
        "add the field; `pinetboot schema` lists what each section needs"
    } else if m.contains("duplicate") {
        "each key may appear once in a mapping; remove or rename one of them"
    } else if m.contains("sequence") {
        "a list is written `[a, b]` or as `- a` lines"
    } else {
        return None;
    };
    Some(hint.to_owned())
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

/// Parses `text` (the contents of `file`) into a [`Config`], or says exactly where and why not.
pub fn parse(file: &Path, text: &str) -> Result<Parsed, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(problem(
            file,
            Position::default(),
            String::new(),
            format!(
                "the file is {} bytes; pinetboot reads at most {MAX_CONFIG_BYTES}",
                text.len()
            ),
        ));
    }
    let locator = Locator::new(text);
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
        Ok(config) => Ok(Parsed { config, locator }),
        Err(err) => {
            let path = if failed_path == "." {
                String::new()
            } else {
                failed_path
            };
            Err(located(file, &locator, path, &err))
        }
    }
}

fn located(file: &Path, locator: &Locator, path: String, err: &serde_saphyr::Error) -> ConfigError {
    let position = err
        .location()
        .map(|l| Position {
            line: l.line() as usize,
            column: l.column() as usize,
        })
        .filter(|p| p.line > 0)
        .unwrap_or_else(|| locator.value(&path));
    problem(file, position, path, bare_message(err))
}

/// Reads and parses the config file at `file`.
pub fn read(file: &Path) -> Result<(String, Parsed), ConfigError> {
    let bytes = match std::fs::metadata(file) {
        Ok(m) if m.len() > MAX_CONFIG_BYTES as u64 => {
            return Err(problem(
                file,
                Position::default(),
                String::new(),
                format!(
                    "the file is {} bytes; pinetboot reads at most {MAX_CONFIG_BYTES}",
                    m.len()
                ),
            ));
        }
        Ok(_) => std::fs::read(file),
        Err(e) => Err(e),
    };
    let bytes = bytes.map_err(|e| {
        let mut err = problem(
            file,
            Position::default(),
            String::new(),
            format!("cannot read the config: {e}"),
        );
        err.diagnostics[0].hint =
            Some("pass the file with --config FILE (default /etc/pinetboot/pinetboot.yaml)".into());
        err
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        problem(
            file,
            Position::default(),
            String::new(),
            format!(
                "the file is not UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let parsed = parse(file, &text)?;
    Ok((text, parsed))
}
