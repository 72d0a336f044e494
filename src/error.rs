//! One error type for every command, with hints, mapped to exit codes (as jj does).
//!
//! Exit codes: 0 success; 1 an error (bad config, a conflict, a failed step); 2 only from
//! `plan --detailed-exitcode` when changes are pending; 64 a command-line usage error.

use std::fmt;

use crate::config::ConfigError;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Any error.
pub const EXIT_ERROR: u8 = 1;
/// `plan --detailed-exitcode`: changes are pending.
pub const EXIT_CHANGES: u8 = 2;
/// The command line itself is wrong.
pub const EXIT_USAGE: u8 = 64;

/// What sort of failure, which decides how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The config file is wrong; the error is a [`ConfigError`] with located diagnostics.
    Config,
    /// The user asked for something that cannot be done as asked.
    User,
    /// The host is not in a state pinetboot may change safely (a planted symlink, a foreign
    /// file where a managed one belongs). Other clients may still have converged.
    Conflict,
    /// Something failed while working (I/O, a tool, a daemon).
    Runtime,
}

/// An error from a command, with hints for the person reading it.
#[derive(Debug)]
pub struct CommandError {
    /// What sort of failure.
    pub kind: ErrorKind,
    /// The error with its context chain.
    pub error: anyhow::Error,
    /// What to do about it.
    pub hints: Vec<String>,
}

impl CommandError {
    /// A user error with a hint.
    pub fn user(message: impl fmt::Display, hint: impl Into<String>) -> Self {
        CommandError {
            kind: ErrorKind::User,
            error: anyhow::anyhow!("{message}"),
            hints: vec![hint.into()],
        }
    }

    /// A conflict with a hint.
    pub fn conflict(message: impl fmt::Display, hint: impl Into<String>) -> Self {
        CommandError {
            kind: ErrorKind::Conflict,
            error: anyhow::anyhow!("{message}"),
            hints: vec![hint.into()],
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        EXIT_ERROR
    }

    /// Renders the error for a terminal or the journal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(config) = self.error.downcast_ref::<ConfigError>() {
            out.push_str(&config.to_string());
            let n = config.diagnostics.len();
            out.push_str(&format!(
                "\nerror: {n} problem{} in the config; nothing was changed",
                if n == 1 { "" } else { "s" }
            ));
        } else {
            out.push_str(&format!("error: {}", self.error));
            for cause in self.error.chain().skip(1) {
                out.push_str(&format!("\n  caused by: {cause}"));
            }
        }
        for hint in &self.hints {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }
}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> Self {
        CommandError {
            kind: ErrorKind::Config,
            error: anyhow::Error::new(e),
            hints: Vec::new(),
        }
    }
}

impl From<anyhow::Error> for CommandError {
    fn from(error: anyhow::Error) -> Self {
        // A host file whose pinetboot fence is broken: the host is not in a state pinetboot
        // may change, and the fence says how to mend it.
        if let Some(f) = error
            .chain()
            .find_map(|c| c.downcast_ref::<crate::render::fence::BrokenFile>())
        {
            let hint = f.broken.hint();
            return CommandError {
                kind: ErrorKind::Conflict,
                error,
                hints: vec![hint],
            };
        }
        CommandError {
            kind: ErrorKind::Runtime,
            error,
            hints: Vec::new(),
        }
    }
}

impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> Self {
        anyhow::Error::new(e).into()
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The result of a command: an exit code on success (0, or 2 for pending changes).
pub type CommandResult = Result<u8, CommandError>;
