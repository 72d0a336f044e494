//! Running the host's tools (dnsmasq, exportfs, systemctl), in the C locale, with their
//! output captured for error messages.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Finds `name` on PATH (and in the sbin folders, which a non-root PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command to completion; an error carries its stderr/stdout.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    cmd.env("LC_ALL", "C");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            text.trim()
        );
    }
    Ok(text)
}

/// The last `lines` lines of a systemd unit's journal in the syslog form
/// (`journalctl -u UNIT -o short`, C locale); `None` when journalctl is not installed.
pub fn journal(unit: &str, lines: u32) -> anyhow::Result<Option<String>> {
    let Some(journalctl) = which("journalctl") else {
        return Ok(None);
    };
    let lines = lines.to_string();
    let args = [
        "-u",
        unit,
        "-o",
        "short",
        "--no-pager",
        "-q",
        "--lines",
        &lines,
    ];
    run(Command::new(journalctl).args(args)).map(Some)
}

/// Whether systemd is PID 1 here.
pub fn systemd_running() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}
