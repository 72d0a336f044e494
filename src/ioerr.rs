//! The one "a system call on a path failed" error, shared by every module's error type
//! (`TreeError::Io`, `ImageError::Io`, `FetchError::Io`, `ReadError::Io`): what was being
//! done, the path, and the operating system's error as the source.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A system call on `path` failed while doing `op`.
#[derive(Debug)]
pub struct IoError {
    /// What was being done (`"create file"`, `"chown"`, …); empty when the path says enough.
    pub op: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

impl IoError {
    /// `op` on `path` failed with `source`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        IoError {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Something on `path` failed (no operation named: `PATH: error`).
    pub fn at(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        IoError::new("", path, source)
    }

    /// The kind of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.op.is_empty() {
            write!(f, "{} ", self.op)?;
        }
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_where_and_why() {
        let e = IoError::new("create file", "/t/x", io::ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "create file /t/x: permission denied");
        let e = IoError::at("/t/y", io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "/t/y: entity not found");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(std::error::Error::source(&e).is_some());
    }
}
