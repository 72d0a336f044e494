//! What can go wrong in pull mode's git layer, with a hint for the person reading it.

use std::fmt;
use std::path::PathBuf;

use crate::ioerr::IoError;

/// An error of the git source layer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The settings file is not valid YAML of the expected shape, or a value in it is refused.
    #[error("{}{message}", Place { file, line: *line, column: *column })]
    Settings {
        /// The settings file (the real path, under the root prefix).
        file: PathBuf,
        /// 1-based line; 0 when the problem is the whole file.
        line: usize,
        /// 1-based column; 0 when unknown.
        column: usize,
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// A setting (from the file or a flag) is refused by [`crate::source::Settings::check`].
    #[error("{field}: {message}")]
    Invalid {
        /// The setting: `url`, `ref`, `path`, `allowed_signers`.
        field: &'static str,
        /// What is wrong with its value.
        message: String,
        /// Which forms work.
        hint: &'static str,
    },
    /// A tool pull mode needs is not installed.
    #[error("`{tool}` is not installed")]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A git command failed (the network, the repository, a missing ref).
    #[error("{action} failed: {stderr}")]
    Git {
        /// What was being done, naming the URL and ref or the commit.
        action: String,
        /// Git's own words (its stderr, trimmed).
        stderr: String,
        /// What to check.
        hint: String,
    },
    /// The commit carries no signature while signatures are required.
    #[error("commit {commit} is not signed")]
    Unsigned {
        /// The commit refused.
        commit: String,
    },
    /// The commit is signed, but not by a key in the allowed signers file (or not with SSH).
    #[error("commit {commit} is not signed by an allowed key: {detail}")]
    BadSignature {
        /// The commit refused.
        commit: String,
        /// What the verification said.
        detail: String,
    },
    /// The allowed signers file is missing (or not a regular file).
    #[error("the allowed signers file {} does not exist or is not a file", file.display())]
    AllowedSigners {
        /// The file (the real path, under the root prefix).
        file: PathBuf,
    },
    /// The config file at a commit is missing or not a regular file of a sane size.
    #[error("{path} at commit {commit}: {problem}")]
    ConfigFile {
        /// The path inside the repository.
        path: String,
        /// The commit looked at.
        commit: String,
        /// Why it is refused.
        problem: String,
    },
    /// A system call on a path failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// `FILE:LINE:COL: `, `FILE:LINE: ` or `FILE: ` in front of a settings problem.
struct Place<'a> {
    file: &'a PathBuf,
    line: usize,
    column: usize,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": ")
    }
}

impl SourceError {
    /// What the person reading the error can do about it.
    pub fn hint(&self) -> String {
        match self {
            SourceError::Settings { hint, .. } | SourceError::Git { hint, .. } => hint.clone(),
            SourceError::Invalid { hint, .. } => (*hint).to_owned(),
            SourceError::ToolMissing { package, .. } => {
                format!("install it: `apt install {package}`")
            }
            SourceError::Unsigned { .. } => "sign the commit with a key listed in the allowed signers file (`git commit -S` with gpg.format=ssh), or push a signed commit on top".to_owned(),
            SourceError::BadSignature { .. } => "sign with an SSH key listed in the allowed signers file (git's `gpg.ssh.allowedSignersFile` format: `PRINCIPAL KEYTYPE KEY` lines), or add the signer's key there".to_owned(),
            SourceError::AllowedSigners { .. } => "create it (lines `PRINCIPAL ssh-ed25519 KEY`, git's gpg.ssh.allowedSignersFile format), or leave `allowed_signers` out of the settings to accept unsigned commits".to_owned(),
            SourceError::ConfigFile { .. } => "commit the config as a regular file (not a symlink or submodule) at the path the settings name (`path:`, default pinetboot.yaml)".to_owned(),
            SourceError::Io(_) => "check the permissions of /var/lib/pinetboot and /etc/pinetboot (pull mode runs as root)".to_owned(),
        }
    }

    /// Whether the commit itself is refused (unsigned, wrongly signed, its config file
    /// missing or unreadable as a config), as opposed to git, the network or the host failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SourceError::Unsigned { .. }
                | SourceError::BadSignature { .. }
                | SourceError::ConfigFile { .. }
        )
    }
}
