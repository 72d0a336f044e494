//! A finished command's status and output, with assertions that show the output on failure.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output};

/// A finished command.
#[derive(Debug)]
pub struct Run {
    /// What ran, for messages.
    pub what: String,
    /// Its status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    pub fn from_output(what: String, out: Output) -> Self {
        Run {
            what,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{} exited with {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Runs `cmd` to completion; `what` names it in messages.
    #[track_caller]
    pub fn of(mut cmd: Command, what: String) -> Self {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {what}: {e}"));
        Run::from_output(what, out)
    }

    /// Asserts that the `timeout SECS` harness in front of it did not kill it (exit 124): a
    /// hang is a failure with its own message, never a timed assertion.
    #[track_caller]
    pub fn expect_finished(self, secs: u32) -> Self {
        assert_ne!(
            self.code(),
            Some(124),
            "{} hung: the harness killed it after {secs} s\n--- stderr\n{}",
            self.what,
            self.stderr
        );
        self
    }

    /// Exit code, stdout and stderr as one text for a snapshot (`--- end` shows whether the
    /// output ends in a newline).
    pub fn transcript(&self) -> String {
        format!(
            "exit code: {:?}\n--- stdout\n{}--- stderr\n{}--- end",
            self.code(),
            self.stdout,
            self.stderr
        )
    }

    /// Whether the process aborted (SIGABRT, the crash hook).
    pub fn aborted(&self) -> bool {
        self.status.signal() == Some(6) || self.status.code() == Some(134)
    }
}
