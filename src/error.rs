//! The command layer's one error type: its [`ErrorKind`] chooses how it is headed when printed
//! and which [`ExitStatus`] the process ends with (one match, as jj's command errors do).
//!
//! The library below `commands/` returns its own error types ([`ConfigError`], io errors,
//! `anyhow` chains of typed errors); the `From` impls here are the one place that sorts them
//! into kinds and adds the hints a person needs.
//!
//! Exit statuses: 0 success; 1 an error (bad config, a conflict, a failed step); 2 only from
//! `plan --detailed-exitcode` when changes are pending; 64 a command-line usage error.

use std::fmt;
use std::process::ExitCode;

use crate::config::ConfigError;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success.
    Success,
    /// Any error: an invalid config, a conflict on the host, a failed step.
    Error,
    /// `plan --detailed-exitcode`: changes are pending (and no client is in conflict).
    Changes,
    /// The command line itself is wrong (sysexits' `EX_USAGE`).
    Usage,
}

impl ExitStatus {
    /// Every status, in the order the man page lists them.
    pub const ALL: [ExitStatus; 4] = [
        ExitStatus::Success,
        ExitStatus::Error,
        ExitStatus::Changes,
        ExitStatus::Usage,
    ];

    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Error => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Usage => 64,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// What sort of failure, which decides its heading and exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The config file is wrong: the error's text is its diagnostics, each headed by where it
    /// is (`FILE:LINE:COL:`); a count of the problems follows.
    Config {
        /// How many problems the diagnostics list.
        problems: usize,
    },
    /// The user asked for something that cannot be done as asked.
    User,
    /// The host is not in a state pinetboot may change safely (a planted symlink, a foreign
    /// file where a managed one belongs, a broken fence). Other clients may have converged.
    Conflict,
    /// Something failed while working (I/O, a tool, a daemon).
    Runtime,
}

impl ErrorKind {
    /// The exit status of an error of this kind.
    pub fn exit_status(self) -> ExitStatus {
        match self {
            ErrorKind::Config { .. }
            | ErrorKind::User
            | ErrorKind::Conflict
            | ErrorKind::Runtime => ExitStatus::Error,
        }
    }

    /// What is printed before the error's message (none for a config error: each of its
    /// diagnostics is headed by its location).
    pub fn heading(self) -> &'static str {
        match self {
            ErrorKind::Config { .. } => "",
            ErrorKind::User | ErrorKind::Conflict | ErrorKind::Runtime => "error: ",
        }
    }

    /// What is printed after the message, before the hints.
    fn trailer(self) -> Option<String> {
        match self {
            ErrorKind::Config { problems } => Some(format!(
                "error: {problems} problem{} in the config; nothing was changed",
                if problems == 1 { "" } else { "s" }
            )),
            ErrorKind::User | ErrorKind::Conflict | ErrorKind::Runtime => None,
        }
    }

    /// Whether the error's causes are listed (`caused by:`); a config error's diagnostics
    /// are the whole story.
    fn shows_causes(self) -> bool {
        !matches!(self, ErrorKind::Config { .. })
    }
}

/// An error from a command, with hints for the person reading it.
#[derive(Debug)]
pub struct CommandError {
    kind: ErrorKind,
    error: anyhow::Error,
    hints: Vec<String>,
}

impl CommandError {
    /// An error of `kind` with no hint.
    pub fn new(kind: ErrorKind, error: impl Into<anyhow::Error>) -> Self {
        CommandError {
            kind,
            error: error.into(),
            hints: Vec::new(),
        }
    }

    /// A user error with a hint.
    pub fn user(message: impl fmt::Display, hint: impl Into<String>) -> Self {
        CommandError::new(ErrorKind::User, anyhow::anyhow!("{message}")).hint(hint)
    }

    /// A conflict with a hint.
    pub fn conflict(message: impl fmt::Display, hint: impl Into<String>) -> Self {
        CommandError::new(ErrorKind::Conflict, anyhow::anyhow!("{message}")).hint(hint)
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Adds hints.
    pub fn hints(mut self, hints: impl IntoIterator<Item = String>) -> Self {
        self.hints.extend(hints);
        self
    }

    /// What sort of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The process exit status for this error (chosen by its kind).
    pub fn exit_status(&self) -> ExitStatus {
        self.kind.exit_status()
    }

    /// Renders the error for a terminal or the journal: heading and message, causes, the
    /// kind's trailer, hints.
    pub fn render(&self) -> String {
        let mut out = format!("{}{}", self.kind.heading(), self.error);
        if self.kind.shows_causes() {
            for cause in self.error.chain().skip(1) {
                out.push_str(&format!("\n  caused by: {cause}"));
            }
        }
        if let Some(trailer) = self.kind.trailer() {
            out.push_str(&format!("\n{trailer}"));
        }
        for hint in &self.hints {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }
}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> Self {
        let problems = e.diagnostics.len();
        CommandError::new(ErrorKind::Config { problems }, e)
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
            return CommandError::new(ErrorKind::Conflict, error).hint(hint);
        }
        if error.chain().any(|c| c.is::<crate::engine::NotConverged>()) {
            return CommandError::new(ErrorKind::Runtime, error).hint(
                "this is a pinetboot bug or something changed the host during apply; run `pinetboot plan` and report it",
            );
        }
        CommandError::new(ErrorKind::Runtime, error)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> Self {
        anyhow::Error::new(e).into()
    }
}

impl From<crate::engine::LockError> for CommandError {
    fn from(e: crate::engine::LockError) -> Self {
        match e {
            crate::engine::LockError::Busy => CommandError::new(ErrorKind::User, e)
                .hint("wait for it, or run without --no-wait to wait"),
            crate::engine::LockError::Io { .. } => CommandError::new(ErrorKind::Runtime, e),
        }
    }
}

impl From<crate::config::SelectError> for CommandError {
    fn from(e: crate::config::SelectError) -> Self {
        let hint = e.hint();
        CommandError::new(ErrorKind::User, e).hint(hint)
    }
}

impl From<crate::source::SourceError> for CommandError {
    fn from(e: crate::source::SourceError) -> Self {
        let hint = e.hint();
        let kind = if e.is_refusal() {
            ErrorKind::User
        } else {
            ErrorKind::Runtime
        };
        CommandError::new(kind, e).hint(hint)
    }
}

impl From<crate::pull::PullError> for CommandError {
    fn from(e: crate::pull::PullError) -> Self {
        match e {
            crate::pull::PullError::Source(e) => e.into(),
            crate::pull::PullError::Refused { ref reason, .. } => {
                let hint = reason.hint();
                CommandError::new(ErrorKind::User, e).hint(hint)
            }
        }
    }
}

impl From<crate::lifecycle::Refused> for CommandError {
    fn from(e: crate::lifecycle::Refused) -> Self {
        let hint = e.hint();
        CommandError::new(ErrorKind::User, e).hint(hint)
    }
}

impl From<crate::lifecycle::CheckError> for CommandError {
    fn from(e: crate::lifecycle::CheckError) -> Self {
        match e {
            crate::lifecycle::CheckError::Refused(r) => r.into(),
            crate::lifecycle::CheckError::Io(e) => e.into(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The result of a command: how the process ends when it did not fail ([`ExitStatus::Success`],
/// or [`ExitStatus::Changes`] for pending changes).
pub type CommandResult = Result<ExitStatus, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Diagnostic;

    #[test]
    fn exit_codes() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 64]);
    }

    #[test]
    fn every_kind_exits_1() {
        for kind in [
            ErrorKind::Config { problems: 2 },
            ErrorKind::User,
            ErrorKind::Conflict,
            ErrorKind::Runtime,
        ] {
            assert_eq!(kind.exit_status(), ExitStatus::Error, "{kind:?}");
        }
    }

    #[test]
    fn user_error_heading_and_hint() {
        let e = CommandError::user("client x is still declared", "remove it first");
        assert_eq!(e.kind(), ErrorKind::User);
        assert_eq!(
            e.render(),
            "error: client x is still declared\n  hint: remove it first"
        );
    }

    #[test]
    fn runtime_error_lists_its_causes() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = CommandError::from(anyhow::Error::new(io).context("writing /etc/x"));
        assert_eq!(e.kind(), ErrorKind::Runtime);
        assert_eq!(
            e.render(),
            "error: writing /etc/x\n  caused by: permission denied"
        );
    }

    #[test]
    fn config_error_counts_its_problems() {
        let d = |m: &str| Diagnostic {
            file: "p.yaml".into(),
            position: Default::default(),
            path: "clients.a".into(),
            message: m.into(),
            hint: None,
        };
        let one = CommandError::from(ConfigError {
            diagnostics: vec![d("bad a")],
        });
        assert_eq!(one.kind(), ErrorKind::Config { problems: 1 });
        assert_eq!(
            one.render(),
            "p.yaml:0:0: clients.a: bad a\nerror: 1 problem in the config; nothing was changed"
        );
        let two = CommandError::from(ConfigError {
            diagnostics: vec![d("bad a"), d("bad b")],
        });
        assert!(
            two.render()
                .ends_with("\nerror: 2 problems in the config; nothing was changed")
        );
        assert_eq!(two.exit_status(), ExitStatus::Error);
    }

    #[test]
    fn busy_lock_is_a_user_error_with_a_hint() {
        let e = CommandError::from(crate::engine::LockError::Busy);
        assert_eq!(e.kind(), ErrorKind::User);
        assert_eq!(
            e.render(),
            "error: another pinetboot apply is running\n  hint: wait for it, or run without --no-wait to wait"
        );
    }

    #[test]
    fn lock_io_error_names_the_lock() {
        let e = CommandError::from(crate::engine::LockError::Io {
            path: "/run/pinetboot.lock".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        });
        assert_eq!(e.kind(), ErrorKind::Runtime);
        assert_eq!(
            e.render(),
            "error: taking the lock /run/pinetboot.lock\n  caused by: permission denied"
        );
    }

    #[test]
    fn not_converged_gets_its_hint() {
        let e = CommandError::from(anyhow::Error::new(crate::engine::NotConverged {
            pending: vec!["dir /x".into()],
        }));
        assert_eq!(e.kind(), ErrorKind::Runtime);
        assert_eq!(
            e.render(),
            "error: apply did not converge: still pending after applying: dir /x\n  hint: this is a pinetboot bug or something changed the host during apply; run `pinetboot plan` and report it"
        );
    }
}
