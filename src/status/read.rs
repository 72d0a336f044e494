//! Reading dnsmasq's log: the end of the file `paths.dnsmasq_log` names (under `--root`), else
//! on the real host dnsmasq's journal, else nothing, with a note saying why.

use serde::Serialize;

use crate::host::{Host, bounded, tools};

/// Where the log text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The file `paths.dnsmasq_log` names.
    File,
    /// dnsmasq.service's journal (the file does not exist, `--root` is `/`).
    Journal,
    /// No log could be read.
    None,
}

/// Where the log text came from, and what is worth knowing about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogInfo {
    /// `file`, `journal` or `none`.
    pub source: LogSource,
    /// The host path of the log file read (or looked for).
    pub path: String,
    /// Something worth knowing about the log (missing, unreadable, translated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl LogInfo {
    /// Where the log came from, in words: the file's path, the journal, or no log.
    pub fn describe(&self) -> String {
        match self.source {
            LogSource::File => self.path.clone(),
            LogSource::Journal => "journal of dnsmasq.service".to_owned(),
            LogSource::None => "no log".to_owned(),
        }
    }
}

/// A log read from the host.
#[derive(Debug, Clone)]
pub struct Log {
    /// Where it came from.
    pub info: LogInfo,
    /// Its text.
    pub text: String,
}

/// The most of dnsmasq's log `status` and `discover` read: its last 64 MiB (some 300 000
/// lines with `log-dhcp`), from the first whole line. A log is never read whole: it grows
/// without bound when nothing rotates it, and its latest lines are what a status is about.
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// The most lines read from dnsmasq's journal (about [`MAX_LOG_BYTES`] of text).
pub const MAX_JOURNAL_LINES: u32 = 300_000;

impl Log {
    fn new(source: LogSource, path: &str, note: Option<String>, text: String) -> Self {
        Log {
            info: LogInfo {
                source,
                path: path.to_owned(),
                note,
            },
            text,
        }
    }

    /// No log: an empty text and a note saying why.
    fn none(path: &str, note: String) -> Self {
        Log::new(LogSource::None, path, Some(note), String::new())
    }
}

/// Reads dnsmasq's log: the end of the file at host path `path` (under `--root`, at most
/// [`MAX_LOG_BYTES`]), else, on the real host, dnsmasq's journal; else an empty log with a
/// note. Anything but a regular file at `path` (a fifo would block) is an error naming it.
pub fn read_log(host: &Host, path: &str) -> anyhow::Result<Log> {
    match bounded::read_tail(&host.path(path), MAX_LOG_BYTES) {
        Ok(tail) => {
            let note = tail.cut.then(|| {
                format!(
                    "read the last {} of this {}-byte log",
                    crate::config::size::ByteSize(MAX_LOG_BYTES),
                    tail.size
                )
            });
            let text = String::from_utf8_lossy(&tail.bytes).into_owned();
            return Ok(Log::new(LogSource::File, path, note, text));
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading dnsmasq's log {path}")));
        }
    }
    let missing = format!("{path} does not exist");
    if !host.is_real() {
        return Ok(Log::none(
            path,
            format!(
                "{missing} under --root {} (the journal is read only for --root /)",
                host.root().display()
            ),
        ));
    }
    Ok(match tools::journal("dnsmasq.service", MAX_JOURNAL_LINES) {
        Ok(Some(text)) => Log::new(
            LogSource::Journal,
            path,
            Some(format!(
                "{missing}: read dnsmasq.service's journal (restart dnsmasq to use the file)"
            )),
            text,
        ),
        Ok(None) => Log::none(path, format!("{missing} and journalctl is not installed")),
        Err(e) => Log::none(
            path,
            format!("{missing}, and the journal could not be read: {e:#}"),
        ),
    })
}
