//! Folding the log's boot events into the report: per declared client its last DHCP exchange
//! and TFTP activity, and the serials no client declares. No I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::read::{Log, LogInfo};
use crate::bootlog::{self, BootEvent, BootEventKind, LogTime, MacSummary, Summary};
use crate::config::Valid;

/// Version of the `status --json` format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

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
    /// The fleet server this is (`servers:`), if the config is a fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The git commit the host's last apply applied (pull mode), from the state file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::state::SourceRecord>,
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
        server: valid.server.clone(),
        source: None,
    }
}
