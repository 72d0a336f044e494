//! `pinetboot doctor`: checks the live host the way a person debugging a Pi that does not boot
//! would, and says for every finding what was checked, what was found and how to fix it.
//!
//! Functional core, thin shell, as everywhere else: [`facts::collect`] reads the host once
//! (processes and sockets of the namespaces doctor runs in, files under `--root`, the output of
//! `ss`, `ip` and `exportfs` through an injectable [`Runner`]) into plain [`facts::Facts`];
//! [`checks::all`] turns them into [`Finding`]s with no I/O; [`report`] renders them.

pub mod checks;
pub mod facts;
pub mod report;

use std::process::{Command, Stdio};

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Checked and fine.
    Ok,
    /// Works, but deserves a look (drift, a risky setting).
    Warning,
    /// A Pi will not boot (or not reliably) until this is fixed.
    Problem,
}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier (`dnsmasq.running`, `client.raspi1.mount`, …), for scripts.
    pub id: String,
    /// How bad it is.
    pub severity: Severity,
    /// What was checked, in a few words.
    pub check: String,
    /// What was found.
    pub detail: String,
    /// What to do about it (none for `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A passed check.
    pub fn ok(id: impl Into<String>, check: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            id: id.into(),
            severity: Severity::Ok,
            check: check.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning with its fix.
    pub fn warning(
        id: impl Into<String>,
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::with_fix(Severity::Warning, id, check, detail, fix)
    }

    /// A problem with its fix.
    pub fn problem(
        id: impl Into<String>,
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::with_fix(Severity::Problem, id, check, detail, fix)
    }

    fn with_fix(
        severity: Severity,
        id: impl Into<String>,
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            id: id.into(),
            severity,
            check: check.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs the host's tools; injectable so collection can be tested without them.
pub trait Runner {
    /// Runs `program` with `args` in the C locale. `Ok(stdout)` when it exits 0, else `Err`
    /// with a one-line reason (not installed, exit status and stderr).
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String>;
}

/// Runs the real tools (found on PATH or in the sbin folders).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let path = crate::host::tools::which(program)
            .ok_or_else(|| format!("{program} is not installed"))?;
        let out = Command::new(&path)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// Whether any finding is a problem (the command then exits 1).
pub fn has_problem(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Problem)
}
