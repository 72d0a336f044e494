//! What dnsmasq's log says about the declared clients (`pinetboot status`) and about Pis
//! that asked for files without being declared (`pinetboot discover`).
//!
//! # Where the log comes from
//!
//! The generated drop-in sets `log-facility=` to `paths.dnsmasq_log`
//! (`/var/log/pinetboot/dnsmasq.log`): dnsmasq then writes its own lines, with their
//! `Mmm dd HH:MM:SS` time stamps, to a plain file pinetboot reads under `--root` like every
//! other host path ([`read_log`]). `port=0` in the same drop-in already makes the dnsmasq
//! instance pinetboot's, so a global option in it is ours to set. When the file does not
//! exist (dnsmasq not restarted since, or the log sent elsewhere) and `--root` is `/`, the
//! journal is read instead: `journalctl -u dnsmasq.service -o short --no-pager` under
//! `LC_ALL=C` (the `short` form is the syslog form [`crate::bootlog`] parses; the C locale
//! keeps the month names English).
//!
//! dnsmasq translates its TFTP messages into the locale it runs in: it must run under
//! `LC_ALL=C` (see README). Lines from a translated dnsmasq are not understood; [`Status`]
//! says so in `log.note`.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Serialize;

use crate::bootlog::{self, BootEvent, BootEventKind, LogTime, MacSummary, Summary};
use crate::config::Valid;
use crate::host::{Host, tools};

/// Version of the `status --json` format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Where the log text came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogInfo {
    /// `file`, `journal` or `none`.
    pub source: &'static str,
    /// The host path of the log file read (or looked for).
    pub path: String,
    /// Something worth knowing about the log (missing, unreadable, translated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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

/// Reads dnsmasq's log: the end of the file at host path `path` (under `--root`, at most
/// [`MAX_LOG_BYTES`]), else, on the real host, dnsmasq's journal; else an empty log with a
/// note. Anything but a regular file at `path` (a fifo would block) is an error naming it.
pub fn read_log(host: &Host, path: &str) -> anyhow::Result<Log> {
    let full = host.path(path);
    match crate::host::bounded::read_tail(&full, MAX_LOG_BYTES) {
        Ok(tail) => {
            let note = tail.cut.then(|| {
                format!(
                    "read the last {} of this {}-byte log",
                    crate::config::size::ByteSize(MAX_LOG_BYTES),
                    tail.size
                )
            });
            return Ok(Log {
                info: LogInfo {
                    source: "file",
                    path: path.to_owned(),
                    note,
                },
                text: String::from_utf8_lossy(&tail.bytes).into_owned(),
            });
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading dnsmasq's log {path}")));
        }
    }
    let missing = format!("{path} does not exist");
    if !host.is_real() {
        return Ok(Log {
            info: LogInfo {
                source: "none",
                path: path.to_owned(),
                note: Some(format!(
                    "{missing} under --root {} (the journal is read only for --root /)",
                    host.root().display()
                )),
            },
            text: String::new(),
        });
    }
    let Some(journalctl) = tools::which("journalctl") else {
        return Ok(Log {
            info: LogInfo {
                source: "none",
                path: path.to_owned(),
                note: Some(format!("{missing} and journalctl is not installed")),
            },
            text: String::new(),
        });
    };
    match tools::run(Command::new(journalctl).args([
        "-u",
        "dnsmasq.service",
        "-o",
        "short",
        "--no-pager",
        "-q",
        "--lines",
        &MAX_JOURNAL_LINES.to_string(),
    ])) {
        Ok(text) => Ok(Log {
            info: LogInfo {
                source: "journal",
                path: path.to_owned(),
                note: Some(format!(
                    "{missing}: read dnsmasq.service's journal (restart dnsmasq to use the file)"
                )),
            },
            text,
        }),
        Err(e) => Ok(Log {
            info: LogInfo {
                source: "none",
                path: path.to_owned(),
                note: Some(format!(
                    "{missing}, and the journal could not be read: {e:#}"
                )),
            },
            text: String::new(),
        }),
    }
}

/// The last DHCP exchange of a MAC, as the proxy logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DhcpStatus {
    /// The log time stamp (`Mmm dd HH:MM:SS`, server local time, no year).
    pub time: Option<String>,
    /// The MAC.
    pub mac: String,
    /// What was logged: `PXE proxy`, `PXE proxy-ignored`, `DHCPDISCOVER`, …
    pub exchange: String,
    /// Whether the proxy's offer held the Raspberry Pi boot menu (`null`: unknown, dnsmasq
    /// logs the offer's options only with `log-dhcp`).
    pub boot_menu: Option<bool>,
    /// How many proxy offers the log holds for this MAC.
    pub proxy_offers: usize,
}

/// A file served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileServed {
    /// The file, relative to the serial folder (`initramfs8`, `overlays/x.dtbo`).
    pub file: String,
    /// The path as dnsmasq logged it.
    pub path: String,
    /// The log time stamp.
    pub time: Option<String>,
    /// The Pi's address.
    pub ip: String,
}

/// TFTP activity of a serial folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TftpStatus {
    /// The last complete transfer.
    pub last_file: Option<FileServed>,
    /// Time of the last TFTP line naming the folder.
    pub last_seen: Option<String>,
    /// Address of the last request.
    pub last_ip: Option<String>,
    /// Complete transfers.
    pub sent: usize,
    /// Size probes (the bootloader's "Early terminate").
    pub probes: usize,
    /// Other aborted transfers.
    pub failed: usize,
    /// Requests answered "not found".
    pub not_found: usize,
}

/// One declared client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientStatus {
    /// Its name in the config.
    pub name: String,
    /// Its serial.
    pub serial: String,
    /// Its declared MAC.
    pub mac: Option<String>,
    /// Whether the log mentions it at all (DHCP by MAC, or TFTP by serial).
    pub seen: bool,
    /// Its last DHCP exchange (only for a declared MAC: the proxy's log has no serial).
    pub dhcp: Option<DhcpStatus>,
    /// Its TFTP activity.
    pub tftp: Option<TftpStatus>,
}

/// A Pi that asked for files from a serial folder no client declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undeclared {
    /// Its serial (the folder it asked for).
    pub serial: String,
    /// Its MAC, when the log ties one to the address it asked from.
    pub mac: Option<String>,
    /// The declared client that already has this MAC, if any.
    pub mac_declared_for: Option<String>,
    /// The address of its last request.
    pub ip: Option<String>,
    /// The time of its last request.
    pub time: Option<String>,
    /// Requests answered "not found".
    pub not_found: usize,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The log read.
    pub log: LogInfo,
    /// Every declared client, by name.
    pub clients: Vec<ClientStatus>,
    /// Serials seen in the log that no client declares, sorted.
    pub undeclared: Vec<Undeclared>,
}

fn time(t: &Option<LogTime>) -> Option<String> {
    t.as_ref().map(|t| t.text.clone())
}

/// The file part of a logged path below the serial folder (or the prefix folder).
fn file_below(path: &str, serial: &str, prefix_folder: Option<&str>) -> String {
    let found = std::iter::once(serial)
        .chain(prefix_folder)
        .filter_map(|folder| {
            let marker = format!("/{folder}/");
            path.rfind(&marker).map(|i| i + marker.len())
        })
        .max();
    match found {
        Some(i) => path[i..].to_owned(),
        None => path.rsplit('/').next().unwrap_or(path).to_owned(),
    }
}

fn dhcp_status(mac: &str, m: &MacSummary) -> DhcpStatus {
    let exchange = match &m.last {
        BootEventKind::DhcpProxyOffer { ignored: false, .. } => "PXE proxy".to_owned(),
        BootEventKind::DhcpProxyOffer { ignored: true, .. } => "PXE proxy-ignored".to_owned(),
        BootEventKind::Dhcp { msg, detail, .. } if detail.is_empty() => msg.clone(),
        BootEventKind::Dhcp { msg, detail, .. } => format!("{msg} {detail}"),
        _ => "DHCP".to_owned(),
    };
    let tagged = m
        .tags
        .iter()
        .any(|t| t == crate::render::dnsmasq::TAG)
        .then_some(true);
    DhcpStatus {
        time: time(&m.time),
        mac: mac.to_owned(),
        exchange,
        boot_menu: match &m.last {
            BootEventKind::DhcpProxyOffer { ignored: true, .. } => Some(false),
            BootEventKind::DhcpProxyOffer { .. } => m.pi_menu.or(tagged),
            _ => None,
        },
        proxy_offers: m.proxy_offers,
    }
}

/// Serial → MAC, from log lines that name an address and a MAC (`DHCPACK(br0) IP MAC`,
/// written when the same dnsmasq, or a syslog shared with the router, logs the lease) taken
/// before the serial's TFTP requests from that address.
fn macs_by_serial(events: &[BootEvent]) -> BTreeMap<String, String> {
    let mut by_ip: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in events {
        let (serial, ip) = match &e.kind {
            BootEventKind::Dhcp {
                ip: Some(ip),
                mac: Some(mac),
                ..
            } => {
                by_ip.insert(ip, mac);
                continue;
            }
            BootEventKind::TftpSent {
                serial: Some(s),
                client_ip,
                ..
            }
            | BootEventKind::TftpFailed {
                serial: Some(s),
                client_ip,
                ..
            }
            | BootEventKind::TftpNotFound {
                serial: Some(s),
                client_ip: Some(client_ip),
                ..
            } => (s, client_ip),
            _ => continue,
        };
        if let Some(mac) = by_ip.get(ip.as_str()) {
            out.insert(serial.clone(), (*mac).to_owned());
        }
    }
    out
}

/// A note when the log has TFTP lines but none is understood (a translated dnsmasq).
fn locale_note(text: &str, events: &[BootEvent]) -> Option<String> {
    let tftp_lines = text
        .lines()
        .filter_map(bootlog::split_line)
        .filter(|l| l.source == bootlog::Source::Tftp && !l.message.starts_with("TFTP"))
        .count();
    let understood = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                BootEventKind::TftpSent { .. }
                    | BootEventKind::TftpNotFound { .. }
                    | BootEventKind::TftpFailed { .. }
                    | BootEventKind::TftpError { .. }
                    | BootEventKind::TftpCannotAccess { .. }
            )
        })
        .count();
    (tftp_lines > 0 && understood == 0).then(|| {
        format!(
            "{tftp_lines} dnsmasq-tftp lines, none understood: is dnsmasq running in a translated locale? run it with LC_ALL=C"
        )
    })
}

/// Folds a log into the report for `valid`'s clients.
pub fn status(valid: &Valid, log: &Log) -> Status {
    // A board whose TFTP_PREFIX is its MAC or a string asks in that folder.
    let folders = valid
        .clients
        .values()
        .filter_map(|c| Some((c.tftp_prefix_folder()?, c.serial.clone())))
        .collect();
    let events = bootlog::Parser::new()
        .with_folders(folders)
        .parse_log(&log.text);
    let summary = Summary::fold(&events);
    let mut info = log.info.clone();
    if info.note.is_none() {
        info.note = locale_note(&log.text, &events);
    }
    let clients = valid
        .clients
        .iter()
        .map(|(name, c)| {
            let dhcp = c
                .mac
                .as_ref()
                .and_then(|m| summary.macs.get(m).map(|s| dhcp_status(m, s)));
            let tftp = summary.serials.get(&c.serial).map(|s| TftpStatus {
                last_file: s.last_sent.as_ref().map(|f| FileServed {
                    file: file_below(&f.path, &c.serial, c.tftp_prefix_folder().as_deref()),
                    path: f.path.clone(),
                    time: time(&f.time),
                    ip: f.client_ip.clone(),
                }),
                last_seen: time(&s.last_seen),
                last_ip: s.last_client_ip.clone(),
                sent: s.sent,
                probes: s.probes,
                failed: s.failed,
                not_found: s.not_found,
            });
            ClientStatus {
                name: name.clone(),
                serial: c.serial.clone(),
                mac: c.mac.clone(),
                seen: dhcp.is_some() || tftp.is_some(),
                dhcp,
                tftp,
            }
        })
        .collect();
    let macs = macs_by_serial(&events);
    let undeclared = summary
        .serials
        .iter()
        .filter(|(s, _)| !valid.clients.values().any(|c| &c.serial == *s))
        .map(|(serial, s)| {
            let mac = macs.get(serial).cloned();
            let mac_declared_for = mac.as_ref().and_then(|m| {
                valid
                    .clients
                    .iter()
                    .find(|(_, c)| c.mac.as_ref() == Some(m))
                    .map(|(n, _)| n.clone())
            });
            Undeclared {
                serial: serial.clone(),
                mac,
                mac_declared_for,
                ip: s.last_client_ip.clone(),
                time: time(&s.last_seen),
                not_found: s.not_found,
            }
        })
        .collect();
    Status {
        format_version: FORMAT_VERSION,
        log: info,
        clients,
        undeclared,
    }
}

/// `status --json`: pretty, with a trailing newline.
pub fn render_json(s: &Status) -> String {
    serde_json::to_string_pretty(s).expect("status serialises") + "\n"
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The report as a table for a terminal (`printer` adds colour where it may).
pub fn render_text(s: &Status, printer: &crate::output::Printer) -> String {
    use crate::output::Style;
    let mut out = String::new();
    let source = match s.log.source {
        "file" => s.log.path.clone(),
        "journal" => "journal of dnsmasq.service".to_owned(),
        _ => "no log".to_owned(),
    };
    out.push_str(&format!("Log: {source}\n"));
    if let Some(note) = &s.log.note {
        out.push_str(&printer.paint(Style::Warn, &format!("note: {note}")));
        out.push('\n');
    }
    out.push('\n');
    let mut rows = vec![
        [
            "CLIENT",
            "SERIAL",
            "MAC",
            "LAST DHCP",
            "BOOT MENU",
            "LAST FILE",
            "WHEN",
            "TO",
            "COUNTS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in &s.clients {
        let mac = c.mac.clone().unwrap_or_else(|| "-".into());
        if !c.seen {
            rows.push(vec![
                c.name.clone(),
                c.serial.clone(),
                mac,
                "never seen".into(),
            ]);
            continue;
        }
        let (dhcp, menu) = match &c.dhcp {
            Some(d) => (
                format!("{} {}", d.time.as_deref().unwrap_or("?"), d.exchange),
                match d.boot_menu {
                    Some(true) => "offered".into(),
                    Some(false) => "not offered".into(),
                    None => "?".into(),
                },
            ),
            None if c.mac.is_none() => ("(no MAC declared)".into(), "-".into()),
            None => ("-".into(), "-".into()),
        };
        let (file, when, to, counts) = match &c.tftp {
            Some(t) => {
                let (file, when, to) = match &t.last_file {
                    Some(f) => (
                        f.file.clone(),
                        f.time.clone().unwrap_or_else(|| "?".into()),
                        f.ip.clone(),
                    ),
                    None => (
                        "(none)".into(),
                        t.last_seen.clone().unwrap_or_else(|| "?".into()),
                        t.last_ip.clone().unwrap_or_else(|| "?".into()),
                    ),
                };
                let counts = format!(
                    "{} sent, {}, {}, {} not found",
                    t.sent,
                    plural(t.probes, "probe", "probes"),
                    plural(t.failed, "failed", "failed"),
                    t.not_found
                );
                (file, when, to, counts)
            }
            None => (
                "(no TFTP request)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        rows.push(vec![
            c.name.clone(),
            c.serial.clone(),
            mac,
            dhcp,
            menu,
            file,
            when,
            to,
            counts,
        ]);
    }
    let t = table(&rows);
    let mut lines = t.lines();
    if let Some(head) = lines.next() {
        out.push_str(&printer.paint(Style::Bold, head));
        out.push('\n');
    }
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    if !s.undeclared.is_empty() {
        out.push('\n');
        out.push_str(&printer.paint(
            Style::Warn,
            &format!(
                "{} not declared asked for files (see `pinetboot discover`):",
                plural(s.undeclared.len(), "Pi", "Pis")
            ),
        ));
        out.push('\n');
        for u in &s.undeclared {
            out.push_str(&format!(
                "  {} from {} at {}{}\n",
                u.serial,
                u.ip.as_deref().unwrap_or("?"),
                u.time.as_deref().unwrap_or("?"),
                u.mac
                    .as_ref()
                    .map(|m| format!(" (MAC {m})"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// `discover`: YAML stanzas to paste under `clients:` (two-space indent), one per
/// undeclared serial. `image_hint` is written into each stanza (give it when the config has
/// no `defaults.image`, so the stanza validates as pasted).
pub fn render_discover(s: &Status, valid: &Valid, image_hint: Option<&str>) -> String {
    if s.undeclared.is_empty() {
        return format!(
            "# No undeclared Raspberry Pi asked for files ({}).\n",
            match s.log.source {
                "file" => s.log.path.clone(),
                "journal" => "journal of dnsmasq.service".into(),
                _ => "no log".into(),
            }
        );
    }
    let mut out = String::from(
        "# Raspberry Pis that asked for files but are not declared; paste under `clients:`.\n",
    );
    let mut taken: Vec<String> = valid.clients.keys().cloned().collect();
    for u in &s.undeclared {
        let base = format!("pi-{}", u.serial);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.push(name.clone());
        let seen = format!(
            "seen {} from {}",
            u.time.as_deref().unwrap_or("?"),
            u.ip.as_deref().unwrap_or("?")
        );
        out.push_str(&format!("  {name}:\n"));
        match (&u.mac, &u.mac_declared_for) {
            (Some(mac), None) => {
                out.push_str(&format!("    serial: {}\n", u.serial));
                out.push_str(&format!("    mac: {mac}  # {seen}\n"));
            }
            (Some(mac), Some(other)) => {
                out.push_str(&format!("    serial: {}  # {seen}\n", u.serial));
                out.push_str(&format!(
                    "    # mac {mac} is already declared for client `{other}`\n"
                ));
            }
            (None, _) => {
                out.push_str(&format!(
                    "    serial: {}  # {seen}; MAC not in the log\n",
                    u.serial
                ));
            }
        }
        if let Some(image) = image_hint {
            out.push_str(&format!("    image: {image}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
