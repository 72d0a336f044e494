//! Lines of dnsmasq's log into [`BootEvent`]s (the format relied on is in the module
//! documentation of [`crate::bootlog`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A dnsmasq log timestamp (`%b %e %H:%M:%S`, no year, server local time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogTime {
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–60.
    pub second: u8,
    /// The 15 characters as written.
    pub text: String,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl LogTime {
    /// Parse `Mmm dd HH:MM:SS` (day space- or zero-padded) at the start of
    /// `s`; exactly 15 bytes.
    pub fn parse(s: &str) -> Option<LogTime> {
        let b = s.as_bytes();
        if b.len() < 15
            || !s.is_char_boundary(15)
            || b[3] != b' '
            || b[6] != b' '
            || b[9] != b':'
            || b[12] != b':'
        {
            return None;
        }
        let month = MONTHS.iter().position(|m| *m == &s[0..3])? as u8 + 1;
        let num = |r: std::ops::Range<usize>| -> Option<u8> { s[r].trim_start().parse().ok() };
        let (day, hour, minute, second) = (num(4..6)?, num(7..9)?, num(10..12)?, num(13..15)?);
        if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        Some(LogTime {
            month,
            day,
            hour,
            minute,
            second,
            text: s[..15].to_string(),
        })
    }
}

/// Which dnsmasq subsystem wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `dnsmasq[pid]`
    Main,
    /// `dnsmasq-dhcp[pid]`
    Dhcp,
    /// `dnsmasq-tftp[pid]`
    Tftp,
}

/// A log line split into its prefix parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// Timestamp, if the line has one.
    pub time: Option<LogTime>,
    /// Subsystem.
    pub source: Source,
    /// dnsmasq's PID.
    pub pid: Option<u32>,
    /// Everything after `]: `.
    pub message: &'a str,
}

/// Split a raw line; `None` if it is not a dnsmasq line.
pub fn split_line(line: &str) -> Option<LogLine<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let time = LogTime::parse(line);
    let at = line.find("dnsmasq")?;
    let rest = &line[at..];
    let (ident, after) = rest.split_once('[')?;
    let source = match ident {
        "dnsmasq" => Source::Main,
        "dnsmasq-dhcp" => Source::Dhcp,
        "dnsmasq-tftp" => Source::Tftp,
        _ => return None,
    };
    let (pid, message) = after.split_once("]: ")?;
    Some(LogLine {
        time,
        source,
        pid: pid.parse().ok(),
        message,
    })
}

/// What happened, as far as booting is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEventKind {
    /// `PXE(iface) MAC proxy`: the proxy answered a PXE DISCOVER (the OFFER
    /// with option 43 follows). `ignored` is true for `proxy-ignored`.
    DhcpProxyOffer {
        /// DHCP transaction id (with `log-dhcp`).
        xid: Option<u32>,
        /// Interface the request came in on.
        iface: String,
        /// Client MAC, lowercase with colons.
        mac: String,
        /// `proxy-ignored` rather than `proxy`.
        ignored: bool,
    },
    /// Any other DHCP packet line (`DHCPDISCOVER(br0) MAC`,
    /// `DHCPACK(br0) IP MAC host`, …), from a router or the proxy.
    Dhcp {
        /// DHCP transaction id (with `log-dhcp`).
        xid: Option<u32>,
        /// `DHCPDISCOVER`, `DHCPOFFER`, `DHCPREQUEST`, `DHCPACK`, `PXE`, …
        msg: String,
        /// Interface.
        iface: String,
        /// Address in the line, if any.
        ip: Option<String>,
        /// Client MAC, if any.
        mac: Option<String>,
        /// Trailing text (host name, `proxy`, error text).
        detail: String,
    },
    /// `tags: a, b, c` (with `log-dhcp`): the tags dnsmasq matched for the
    /// transaction; `pinetboot` among them means the scope matched.
    DhcpTags {
        /// DHCP transaction id.
        xid: Option<u32>,
        /// Tag names in log order.
        tags: Vec<String>,
    },
    /// `sent size: N option: C name  value` (with `log-dhcp`): one option of
    /// a reply. `value` is dnsmasq's rendering: hex bytes are cut after 14
    /// bytes and end in `...`.
    DhcpOptionSent {
        /// DHCP transaction id.
        xid: Option<u32>,
        /// Option code.
        code: u8,
        /// Option length in bytes.
        size: usize,
        /// dnsmasq's option name (`vendor-encap`), may be empty.
        name: String,
        /// The rendered value.
        value: String,
    },
    /// `sent PATH to IP`: the transfer ended without error on dnsmasq's
    /// side. dnsmasq 2.90 also logs this after a client's
    /// `error 0 Early terminate` (a size probe); [`Summary`](super::Summary) tells the two
    /// apart, see [`Summary::add`](super::Summary::add).
    TftpSent {
        /// Absolute path as logged.
        path: String,
        /// 8-hex serial folder in the path.
        serial: Option<String>,
        /// Client address.
        client_ip: String,
    },
    /// `file PATH not found[ for IP]`.
    TftpNotFound {
        /// Absolute path as logged.
        path: String,
        /// 8-hex serial folder in the path.
        serial: Option<String>,
        /// Client address (absent in dnsmasq before the `for IP` suffix).
        client_ip: Option<String>,
    },
    /// `failed sending PATH to IP`: aborted transfer. Older dnsmasq logs
    /// this after an "Early terminate" (the bootloader's normal size probe).
    TftpFailed {
        /// Absolute path as logged.
        path: String,
        /// 8-hex serial folder in the path.
        serial: Option<String>,
        /// Client address.
        client_ip: String,
    },
    /// `error CODE MESSAGE received from IP`: an ERROR packet from the
    /// client (code 0 "Early terminate" is the Pi's probe abort).
    TftpError {
        /// TFTP error code.
        code: u16,
        /// Client's message.
        message: String,
        /// Client address.
        client_ip: String,
    },
    /// `cannot access PATH: REASON` (e.g. permission denied for `nobody`).
    TftpCannotAccess {
        /// Absolute path as logged.
        path: String,
        /// 8-hex serial folder in the path.
        serial: Option<String>,
        /// strerror text.
        reason: String,
    },
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    /// Timestamp, if the line had one.
    pub time: Option<LogTime>,
    /// dnsmasq PID.
    pub pid: Option<u32>,
    /// The event.
    pub kind: BootEventKind,
    /// The line as read (without the newline).
    pub raw: String,
}

/// A parser, optionally aware of the TFTP root for exact serial extraction.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    tftp_root: Option<PathBuf>,
    /// Other TFTP folders of known boards: folder name → serial.
    folders: BTreeMap<String, String>,
}

fn is_serial(s: &str) -> bool {
    s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() >= 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Parser {
    /// Heuristic serial extraction (nearest 8-hex directory component).
    pub fn new() -> Self {
        Parser::default()
    }

    /// Exact serial extraction: the component right below `root`.
    pub fn with_tftp_root(root: impl Into<PathBuf>) -> Self {
        Parser {
            tftp_root: Some(root.into()),
            folders: BTreeMap::new(),
        }
    }

    /// Also reads these folders (name → serial) as the serial's: the folders a
    /// `TFTP_PREFIX` other than the serial makes a board ask in.
    pub fn with_folders(mut self, folders: BTreeMap<String, String>) -> Self {
        self.folders = folders;
        self
    }

    /// The serial a folder name stands for: a known prefix folder's, or the name itself
    /// when it is a serial.
    fn folder_serial(&self, name: &str) -> Option<String> {
        match self.folders.get(name) {
            Some(serial) => Some(serial.clone()),
            None => is_serial(name).then(|| name.to_owned()),
        }
    }

    /// The serial folder of a logged TFTP path.
    pub fn serial_of(&self, path: &str) -> Option<String> {
        let p = Path::new(path);
        if let Some(root) = &self.tftp_root {
            let first = p.strip_prefix(root).ok()?.components().next()?;
            let s = first.as_os_str().to_str()?;
            // A file directly in the root is not a serial folder.
            if p.strip_prefix(root).ok()?.components().count() < 2 {
                return None;
            }
            return self.folder_serial(s);
        }
        p.parent()?
            .components()
            .rev()
            .filter_map(|c| c.as_os_str().to_str())
            .find_map(|c| self.folder_serial(c))
    }

    /// Parse one line; `None` for lines that are no boot event.
    pub fn parse_line(&self, line: &str) -> Option<BootEvent> {
        let l = split_line(line)?;
        let kind = match l.source {
            Source::Tftp => self.tftp(l.message)?,
            Source::Dhcp => dhcp(l.message)?,
            Source::Main => return None,
        };
        Some(BootEvent {
            time: l.time,
            pid: l.pid,
            kind,
            raw: line.trim_end_matches(['\r', '\n']).to_string(),
        })
    }

    /// Parse every line of a log text.
    pub fn parse_log(&self, text: &str) -> Vec<BootEvent> {
        text.lines().filter_map(|l| self.parse_line(l)).collect()
    }

    /// `PATH to IP` (a transfer sent or failed): the serial of PATH, PATH and IP.
    fn transfer(&self, rest: &str) -> Option<(Option<String>, String, String)> {
        let (path, ip) = rest.rsplit_once(" to ")?;
        Some((self.serial_of(path), path.to_string(), ip.to_string()))
    }

    fn tftp(&self, m: &str) -> Option<BootEventKind> {
        if let Some(rest) = m.strip_prefix("sent ") {
            let (serial, path, client_ip) = self.transfer(rest)?;
            return Some(BootEventKind::TftpSent {
                serial,
                path,
                client_ip,
            });
        }
        if let Some(rest) = m.strip_prefix("failed sending ") {
            let (serial, path, client_ip) = self.transfer(rest)?;
            return Some(BootEventKind::TftpFailed {
                serial,
                path,
                client_ip,
            });
        }
        if let Some(rest) = m.strip_prefix("file ") {
            let (path, ip) = match rest.rsplit_once(" not found for ") {
                Some((p, ip)) => (p, Some(ip.to_string())),
                None => (rest.strip_suffix(" not found")?, None),
            };
            return Some(BootEventKind::TftpNotFound {
                serial: self.serial_of(path),
                path: path.to_string(),
                client_ip: ip,
            });
        }
        if let Some(rest) = m.strip_prefix("error ") {
            let (head, ip) = rest.rsplit_once(" received from ")?;
            let (code, message) = head.split_once(' ').unwrap_or((head, ""));
            return Some(BootEventKind::TftpError {
                code: code.parse().ok()?,
                message: message.to_string(),
                client_ip: ip.to_string(),
            });
        }
        if let Some(rest) = m.strip_prefix("cannot access ") {
            let (path, reason) = rest.rsplit_once(": ")?;
            return Some(BootEventKind::TftpCannotAccess {
                serial: self.serial_of(path),
                path: path.to_string(),
                reason: reason.to_string(),
            });
        }
        None
    }
}

fn dhcp(m: &str) -> Option<BootEventKind> {
    let mut rest = m;
    let mut xid = None;
    if let Some((first, tail)) = m.split_once(' ')
        && let Ok(x) = first.parse::<u32>()
    {
        xid = Some(x);
        rest = tail;
    }
    if let Some(tags) = rest.strip_prefix("tags: ") {
        let tags = tags
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        return Some(BootEventKind::DhcpTags { xid, tags });
    }
    if let Some(opt) = rest.strip_prefix("sent size:") {
        let (size, opt) = opt.trim_start().split_once(" option:")?;
        let opt = opt.trim_start();
        let (code, tail) = opt.split_once(' ').unwrap_or((opt, ""));
        let (name, value) = tail.split_once("  ").unwrap_or((tail, ""));
        return Some(BootEventKind::DhcpOptionSent {
            xid,
            code: code.parse().ok()?,
            size: size.trim().parse().ok()?,
            name: name.trim().to_string(),
            value: value.trim().to_string(),
        });
    }
    let (head, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let (msg, iface) = head.strip_suffix(')')?.split_once('(')?;
    if !(msg.starts_with("DHCP") || msg == "PXE" || msg == "BOOTP") {
        return None;
    }
    let mut words = tail.split(' ').filter(|w| !w.is_empty()).peekable();
    let ip = words
        .next_if(|w| w.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string);
    let mac = words.next_if(|w| is_mac(w)).map(|w| w.to_ascii_lowercase());
    let detail = words.collect::<Vec<_>>().join(" ");
    if msg == "PXE"
        && ip.is_none()
        && (detail == "proxy" || detail == "proxy-ignored")
        && let Some(mac) = &mac
    {
        return Some(BootEventKind::DhcpProxyOffer {
            xid,
            iface: iface.to_string(),
            mac: mac.clone(),
            ignored: detail == "proxy-ignored",
        });
    }
    Some(BootEventKind::Dhcp {
        xid,
        msg: msg.to_string(),
        iface: iface.to_string(),
        ip,
        mac,
        detail,
    })
}

/// Parse a whole log with the heuristic serial rule ([`Parser::new`]).
pub fn parse_log(text: &str) -> Vec<BootEvent> {
    Parser::new().parse_log(text)
}

/// Whether an option 43 value as logged by dnsmasq (`06:01:03:0a:…`,
/// possibly cut with `...`) holds a PXE boot menu (sub-option 9).
/// `None` if the cut happens before that can be told.
pub fn vendor_encap_has_menu(value: &str) -> Option<bool> {
    let truncated = value.ends_with("...");
    let bytes: Vec<u8> = value
        .trim_end_matches("...")
        .split(':')
        .map(|h| u8::from_str_radix(h.trim(), 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => return Some(false),
            9 => return Some(true),
            _ => i += 2 + *bytes.get(i + 1)? as usize,
        }
    }
    if truncated { None } else { Some(false) }
}
