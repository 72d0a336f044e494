//! Located problems in a config file: `FILE:LINE:COL: PATH: message`, then a hint.

use std::fmt;
use std::path::PathBuf;

use super::locate::Position;

/// One problem found in the config, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file.
    pub file: PathBuf,
    /// Where in the file (1-based; 0:0 when the file is unreadable or the spot is unknown).
    pub position: Position,
    /// The field path, e.g. `clients.raspi1.serial` (empty for the document itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: ",
            Printable(&self.file.display().to_string()),
            self.position
        )?;
        if !self.path.is_empty() {
            write!(f, "{}: ", Printable(&self.path))?;
        }
        write!(f, "{}", Printable(&self.message))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", Printable(hint))?;
        }
        Ok(())
    }
}

/// Text from the config shown with control characters escaped (`\u{1b}`), so a name or value
/// cannot move the cursor, recolour the terminal or fake a line of output.
struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ch in self.0.chars() {
            if ch.is_control() {
                write!(f, "{}", ch.escape_unicode())?;
            } else {
                write!(f, "{ch}")?;
            }
        }
        Ok(())
    }
}

/// Every problem found in one config file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
