//! An emulated Raspberry Pi 4 EEPROM bootloader (network boot path), driven
//! from tests inside a [`PiNs`](super::netlab::PiNs) namespace.
//!
//! What it does, following `shared/reference/pi4-netboot.md` §1–3:
//!
//! 1. [`EmulatedPi::discover`]: DHCPDISCOVER from `0.0.0.0:68`, bound to
//!    `pi0` (`SO_BINDTODEVICE`, `SO_BROADCAST`, `SO_REUSEADDR`) to
//!    `255.255.255.255:67`, options 53, 55 (incl. 66, 67, 128–135), 60
//!    `PXEClient:Arch:00000:UNDI:002001`, 93 = 0, 94 = `01 02 01`, 97 =
//!    `00 "RPi4" revision mac[2..6] serial` (revision and serial big-endian:
//!    the byte order is unverified on real hardware). The broadcast flag is
//!    set so that replies reach an address-less interface. All OFFERs for the
//!    xid are collected for a bounded window ([`EmulatedPi::offer_window`]).
//! 2. [`DiscoverOutcome::tftp_server`]: EEPROM `TFTP_IP`, else option 66,
//!    else option 54 of the OFFER whose option 43 menu holds
//!    "Raspberry Pi Boot".
//! 3. [`EmulatedPi::dhcp`]: REQUEST/ACK with the router (no option 60), then
//!    `ip -n NS addr add YIADDR/MASK dev pi0` so TFTP runs over unicast.
//! 4. [`Session::tftp_get`] / [`Session::tftp_probe`]: a small RRQ client
//!    (`octet`, `tsize 0`, `blksize N`; OACK → ACK 0; retransmit on timeout,
//!    bounded; new source port per RRQ). The probe sends
//!    `ERROR 0 "Early terminate"` after the OACK, as the real bootloader
//!    does (`00 05 00 00 "Early terminate" 00` in `raspberrypi/rpi-eeprom#74`).
//! 5. [`EmulatedPi::boot`]: the "typical sequence" of §3, each file compared
//!    byte for byte with the client's boot folder on disk, see [`BootReport`].
//!    Every file name gets the prefix the EEPROM config asks for
//!    ([`EmulatedPi::tftp_prefix`]: `TFTP_PREFIX` 0 the serial, 1 `TFTP_PREFIX_STR`
//!    verbatim, 2 the MAC in lower case with dashes).
//! 6. [`EmulatedPi::self_update`]: the bootloader's self-update from what a boot fetched
//!    (`pieeprom.sig` checked against `pieeprom.upd`, flashed only when its `ts:` is newer):
//!    the update's embedded `bootconf.txt` becomes the config the next boot runs with.
//!
//! Socket creation happens on a helper thread inside the Pi's namespace
//! ([`in_netns`]); the sockets keep that namespace, so all I/O then runs on
//! the caller's thread. Many Pis can boot concurrently from many threads.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Encodable};
use socket2::{Domain, Protocol, Socket, Type};

use super::netlab::{PiNs, in_netns, run_cmd};

/// The PXE menu text the bootloader looks for (EEPROM `PXE_OPTION43`).
pub const PI_MENU: &str = "Raspberry Pi Boot";
/// Option 60 of the bootloader's DISCOVER.
pub const PI_VENDOR_CLASS: &[u8] = b"PXEClient:Arch:00000:UNDI:002001";

/// Per-packet TFTP receive timeout before a retransmission.
const TFTP_TIMEOUT: Duration = Duration::from_millis(1000);
/// Retransmissions per packet before [`TftpError::Timeout`].
const TFTP_RETRIES: u32 = 5;
/// DHCP REQUEST attempts (each waits [`DHCP_ACK_WAIT`]).
const DHCP_REQUEST_TRIES: u32 = 3;
/// DISCOVER rounds in [`EmulatedPi::dhcp`] (each one offer window long).
const DISCOVER_TRIES: u32 = 3;
const DHCP_ACK_WAIT: Duration = Duration::from_secs(2);

/// What kind of client the DISCOVER imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The Pi 4 EEPROM bootloader (§1), with option 97.
    Pi4,
    /// A plain x86 BIOS PXE ROM: options 60, 93 = 0, 94, but no option 97.
    X86Bios,
}

/// An emulated Pi 4 living in one lab namespace.
#[derive(Debug, Clone)]
pub struct EmulatedPi {
    /// Board serial; the TFTP prefix is its low 32 bits as 8 lowercase hex.
    pub serial: u32,
    /// MAC of `pi0`.
    pub mac: [u8; 6],
    /// Board revision code (e.g. `0x00c03111`), sent in option 97.
    pub revision: u32,
    /// Network namespace and interface to run in.
    pub netns: String,
    /// Interface name inside `netns`.
    pub iface: String,
    /// EEPROM `TFTP_IP` override (precedence 1).
    pub eeprom_tftp_ip: Option<Ipv4Addr>,
    /// How long to collect OFFERs after the DISCOVER (bounded wait).
    pub offer_window: Duration,
    /// TFTP blksize requested by [`EmulatedPi::boot`] (1024 or 1468).
    pub blksize: u16,
    /// The `bootconf.txt` of the EEPROM it runs (a factory board: nothing set, so
    /// `TFTP_PREFIX=0` and self-update on).
    pub bootconf: String,
    /// The update timestamp of the EEPROM it runs (a factory board: 0).
    pub eeprom_timestamp: u64,
}

impl EmulatedPi {
    /// A Pi with revision `0x00c03111` (Pi 4B 4GB), blksize 1024 and a 2 s
    /// offer window, living in `ns`.
    pub fn new(ns: &PiNs, serial: u32) -> Self {
        EmulatedPi {
            serial,
            mac: ns.mac,
            revision: 0x00c0_3111,
            netns: ns.netns.clone(),
            iface: ns.iface.clone(),
            eeprom_tftp_ip: None,
            offer_window: Duration::from_secs(2),
            blksize: 1024,
            bootconf: String::new(),
            eeprom_timestamp: 0,
        }
    }

    /// The board's serial folder name: `format!("{:08x}", serial)`.
    pub fn serial_folder(&self) -> String {
        format!("{:08x}", self.serial)
    }

    /// What the bootloader puts in front of every TFTP file name, from its EEPROM config
    /// (`TFTP_PREFIX`): 0 (the default) the serial folder, 1 `TFTP_PREFIX_STR` as it is (a
    /// string without a final `/` names files in the TFTP root), 2 the MAC in lower case with
    /// dashes (`dc-a6-32-01-36-c2/`, eeprom-bootloader.adoc).
    pub fn tftp_prefix(&self) -> String {
        match self.eeprom_setting("TFTP_PREFIX").as_deref() {
            Some("1") => self.eeprom_setting("TFTP_PREFIX_STR").unwrap_or_default(),
            Some("2") => {
                let mac: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}/", mac.join("-"))
            }
            _ => format!("{}/", self.serial_folder()),
        }
    }

    /// A setting of the running EEPROM config as the bootloader reads it: the last `KEY=value`
    /// of the top section or an `[all]` section (other filters and everything from
    /// `[config.txt]` on are not for every board, or not the bootloader's).
    pub fn eeprom_setting(&self, key: &str) -> Option<String> {
        let mut applies = true;
        let mut value = None;
        for line in self.bootconf.lines() {
            let line = line.trim();
            if let Some(filter) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if filter == "config.txt" {
                    break;
                }
                applies = filter == "all";
                continue;
            }
            if let Some((k, v)) = line.split_once('=')
                && applies
                && k.trim() == key
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }

    /// The bootloader's self-update after a boot that fetched `pieeprom.sig` and
    /// `pieeprom.upd` (with `ENABLE_SELF_UPDATE` not 0): the `.sig` must hold the update's
    /// sha256, and its `ts:` must be newer than the running EEPROM's, else nothing is flashed
    /// (no flash loop). Flashing makes the update's embedded `bootconf.txt` the running config
    /// (the real bootloader then reboots: the next [`EmulatedPi::boot`] runs with it).
    /// Returns the new timestamp when it flashed.
    pub fn self_update(&mut self, report: &BootReport) -> Result<Option<u64>, String> {
        use sha2::Digest as _;
        if self.eeprom_setting("ENABLE_SELF_UPDATE").as_deref() == Some("0") {
            return Ok(None);
        }
        let fetched = |name: &str| {
            report.entries.iter().find_map(|e| match &e.outcome {
                Outcome::Fetched { bytes, .. } if e.path.ends_with(&format!("/{name}")) => {
                    Some(bytes.clone())
                }
                _ => None,
            })
        };
        let (Some(sig), Some(upd)) = (fetched("pieeprom.sig"), fetched("pieeprom.upd")) else {
            return Ok(None);
        };
        let sig = String::from_utf8(sig).map_err(|e| format!("pieeprom.sig: {e}"))?;
        let digest = sig.lines().next().unwrap_or_default().trim();
        let ts: u64 = sig
            .lines()
            .find_map(|l| l.strip_prefix("ts:"))
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("pieeprom.sig has no ts: line:\n{sig}"))?;
        let actual: String = sha2::Sha256::digest(&upd)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if digest != actual {
            return Err(format!(
                "pieeprom.sig says sha256 {digest}, pieeprom.upd is {actual}"
            ));
        }
        if ts <= self.eeprom_timestamp {
            return Ok(None);
        }
        self.bootconf = embedded_bootconf(&upd)
            .ok_or_else(|| "pieeprom.upd holds no bootconf.txt".to_owned())?;
        self.eeprom_timestamp = ts;
        Ok(Some(ts))
    }

    /// Option 97 as the bootloader sends it (17 bytes).
    pub fn option97(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.push(0);
        v.extend_from_slice(b"RPi4");
        v.extend_from_slice(&self.revision.to_be_bytes());
        v.extend_from_slice(&self.mac[2..6]);
        v.extend_from_slice(&self.serial.to_be_bytes());
        v
    }

    fn dhcp_socket(&self) -> io::Result<UdpSocket> {
        let iface = self.iface.clone();
        in_netns(&self.netns, move || {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.set_broadcast(true)?;
            s.bind_device(Some(iface.as_bytes()))?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())?;
            Ok(UdpSocket::from(s))
        })
    }

    fn base_message(&self, xid: u32, kind: ClientKind, mtype: MessageType) -> Message {
        let mut m = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &self.mac,
        );
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_flags(Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(mtype));
        let mut prl: Vec<OptionCode> = [1u8, 3, 43, 54, 60, 66, 67]
            .into_iter()
            .chain(128..=135)
            .map(OptionCode::from)
            .collect();
        prl.dedup();
        o.insert(DhcpOption::ParameterRequestList(prl));
        o.insert(DhcpOption::ClientSystemArchitecture(0u16.into()));
        o.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
        if kind == ClientKind::Pi4 {
            o.insert(DhcpOption::ClientMachineIdentifier(self.option97()));
        }
        m
    }

    /// Broadcast a DISCOVER as the Pi 4 bootloader and collect every OFFER
    /// for [`EmulatedPi::offer_window`].
    pub fn discover(&self) -> Result<DiscoverOutcome, PiError> {
        self.discover_as(ClientKind::Pi4)
    }

    /// Like [`EmulatedPi::discover`], imitating `kind` instead.
    pub fn discover_as(&self, kind: ClientKind) -> Result<DiscoverOutcome, PiError> {
        let sock = self.dhcp_socket()?;
        self.discover_on(&sock, kind)
    }

    fn discover_on(&self, sock: &UdpSocket, kind: ClientKind) -> Result<DiscoverOutcome, PiError> {
        let xid = fresh_xid(self.mac);
        let mut m = self.base_message(xid, kind, MessageType::Discover);
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(PI_VENDOR_CLASS.to_vec()));
        let bytes = m
            .to_vec()
            .map_err(|e| PiError::Protocol(format!("encode: {e}")))?;
        sock.send_to(&bytes, (Ipv4Addr::BROADCAST, 67))?;
        let mut offers = Vec::new();
        let deadline = Instant::now() + self.offer_window;
        while let Some((msg, from)) = recv_reply(sock, xid, &self.mac, deadline)? {
            if msg.opts().has_msg_type(MessageType::Offer) {
                offers.push(Offer::from_message(&msg, from));
            }
        }
        Ok(DiscoverOutcome {
            xid,
            sent_option97: (kind == ClientKind::Pi4).then(|| self.option97()),
            offers,
        })
    }

    /// Steps 1–3: DISCOVER, choose the TFTP server, REQUEST/ACK with the
    /// router, put the leased address on `pi0`. Returns a [`Session`] for TFTP.
    pub fn dhcp(&self) -> Result<Session, PiError> {
        let sock = self.dhcp_socket()?;
        // Like the bootloader (DHCP_REQ_TIMEOUT), DISCOVER again until both a
        // lease offer and a TFTP server were seen; bounded.
        let mut outcome = self.discover_on(&sock, ClientKind::Pi4)?;
        for _ in 1..DISCOVER_TRIES {
            if outcome.router_offer().is_some()
                && outcome.tftp_server(self.eeprom_tftp_ip).is_some()
            {
                break;
            }
            outcome = self.discover_on(&sock, ClientKind::Pi4)?;
        }
        let tftp_server = outcome
            .tftp_server(self.eeprom_tftp_ip)
            .ok_or(PiError::NoTftpServer)?;
        let router = outcome
            .router_offer()
            .ok_or(PiError::NoRouterOffer)?
            .clone();
        let server_id = router
            .server_id
            .ok_or_else(|| PiError::Protocol("router OFFER without option 54".to_string()))?;
        let mut req = self.base_message(outcome.xid, ClientKind::Pi4, MessageType::Request);
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(router.yiaddr));
        req.opts_mut()
            .insert(DhcpOption::ServerIdentifier(server_id));
        let bytes = req
            .to_vec()
            .map_err(|e| PiError::Protocol(format!("encode: {e}")))?;
        let mut ack = None;
        'tries: for _ in 0..DHCP_REQUEST_TRIES {
            sock.send_to(&bytes, (Ipv4Addr::BROADCAST, 67))?;
            let deadline = Instant::now() + DHCP_ACK_WAIT;
            while let Some((msg, _)) = recv_reply(&sock, outcome.xid, &self.mac, deadline)? {
                let sid = match msg.opts().get(OptionCode::ServerIdentifier) {
                    Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
                    _ => None,
                };
                if sid != Some(server_id) {
                    continue;
                }
                if msg.opts().has_msg_type(MessageType::Nak) {
                    return Err(PiError::Nak);
                }
                if msg.opts().has_msg_type(MessageType::Ack) {
                    ack = Some(msg);
                    break 'tries;
                }
            }
        }
        let ack = ack.ok_or(PiError::NoAck)?;
        let ip = ack.yiaddr();
        let mask = match ack.opts().get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => *m,
            _ => Ipv4Addr::new(255, 255, 255, 0),
        };
        let plen = u32::from(mask).leading_ones();
        run_cmd(
            "ip",
            &[
                "-n",
                &self.netns,
                "addr",
                "replace",
                &format!("{ip}/{plen}"),
                "dev",
                &self.iface,
            ],
        )
        .map_err(PiError::Command)?;
        Ok(Session {
            pi: self.clone(),
            outcome,
            ip,
            tftp_server,
        })
    }

    /// Steps 1–5 at [`EmulatedPi::blksize`]; compare every file with
    /// `expected` (the client's boot folder on disk, i.e. what should sit at
    /// `TFTP_ROOT/SERIAL/`).
    pub fn boot(&self, expected: &Path) -> Result<BootReport, PiError> {
        let session = self.dhcp()?;
        Ok(session.boot_sequence(expected, self.blksize))
    }
}

/// A fresh-ish xid per DISCOVER (clock nanos mixed with the MAC).
fn fresh_xid(mac: [u8; 6]) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or(0);
    nanos ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])
}

/// Receive the next BOOTREPLY for (`xid`, `mac`) before `deadline`;
/// `Ok(None)` once the deadline passes. Foreign packets are skipped.
fn recv_reply(
    sock: &UdpSocket,
    xid: u32,
    mac: &[u8; 6],
    deadline: Instant,
) -> io::Result<Option<(Message, SocketAddr)>> {
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        sock.set_read_timeout(Some(deadline - now))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let Ok(msg) = Message::from_bytes(&buf[..n]) else {
            continue;
        };
        if msg.opcode() == Opcode::BootReply
            && msg.xid() == xid
            && msg.chaddr().get(..6) == Some(&mac[..])
        {
            return Ok(Some((msg, from)));
        }
    }
}

/// Errors of the DHCP phase.
#[derive(Debug)]
pub enum PiError {
    /// Socket or namespace error.
    Io(io::Error),
    /// No OFFER with a yiaddr.
    NoRouterOffer,
    /// No TFTP server by any of the three precedence rules.
    NoTftpServer,
    /// The router never ACKed the REQUEST.
    NoAck,
    /// The router NAKed.
    Nak,
    /// `ip addr add` failed.
    Command(String),
    /// Malformed traffic.
    Protocol(String),
}

impl From<io::Error> for PiError {
    fn from(e: io::Error) -> Self {
        PiError::Io(e)
    }
}

impl fmt::Display for PiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PiError::Io(e) => write!(f, "I/O: {e}"),
            PiError::NoRouterOffer => write!(f, "no OFFER with an address (router)"),
            PiError::NoTftpServer => write!(
                f,
                "no TFTP server (no EEPROM TFTP_IP, no option 66, no OFFER with the '{PI_MENU}' menu)"
            ),
            PiError::NoAck => write!(f, "router did not ACK the REQUEST"),
            PiError::Nak => write!(f, "router NAKed the REQUEST"),
            PiError::Command(e) => write!(f, "{e}"),
            PiError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

impl std::error::Error for PiError {}

/// PXE sub-options decoded from option 43 (RFC-less PXE 2.1 layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PxeVendorOptions {
    /// Sub-option 6, PXE_DISCOVERY_CONTROL.
    pub discovery_control: Option<u8>,
    /// Sub-option 10, PXE_MENU_PROMPT: (timeout, prompt).
    pub menu_prompt: Option<(u8, String)>,
    /// Sub-option 9, PXE_BOOT_MENU: (server type, description) entries.
    pub menu: Vec<(u16, String)>,
    /// Any other sub-options, by code.
    pub other: BTreeMap<u8, Vec<u8>>,
    /// The raw option 43 bytes.
    pub raw: Vec<u8>,
}

impl PxeVendorOptions {
    /// Parse option 43 (pad 0 skipped, 255 ends). Truncated sub-options are
    /// kept in `other` under their code as far as present.
    pub fn parse(raw: &[u8]) -> Self {
        let mut out = PxeVendorOptions {
            raw: raw.to_vec(),
            ..Default::default()
        };
        let mut i = 0;
        while i < raw.len() {
            let code = raw[i];
            if code == 0 {
                i += 1;
                continue;
            }
            if code == 255 {
                break;
            }
            let len = raw.get(i + 1).copied().unwrap_or(0) as usize;
            let body = &raw[(i + 2).min(raw.len())..(i + 2 + len).min(raw.len())];
            match code {
                6 if body.len() == 1 => out.discovery_control = Some(body[0]),
                10 if !body.is_empty() => {
                    out.menu_prompt =
                        Some((body[0], String::from_utf8_lossy(&body[1..]).into_owned()));
                }
                9 => {
                    let mut j = 0;
                    while j + 3 <= body.len() {
                        let ty = u16::from_be_bytes([body[j], body[j + 1]]);
                        let l = body[j + 2] as usize;
                        let end = (j + 3 + l).min(body.len());
                        out.menu
                            .push((ty, String::from_utf8_lossy(&body[j + 3..end]).into_owned()));
                        j = end;
                    }
                }
                _ => {
                    out.other.insert(code, body.to_vec());
                }
            }
            i += 2 + len;
        }
        out
    }

    /// Whether a menu entry contains `text` (the Pi matches a substring).
    pub fn has_menu(&self, text: &str) -> bool {
        self.menu.iter().any(|(_, d)| d.contains(text))
    }
}

/// One OFFER as received.
#[derive(Debug, Clone)]
pub struct Offer {
    /// UDP source of the OFFER.
    #[allow(dead_code)] // shown in failure messages (Debug)
    pub from: SocketAddr,
    /// Offered address (0.0.0.0 for a proxy).
    pub yiaddr: Ipv4Addr,
    /// `siaddr` header field.
    #[allow(dead_code)] // shown in failure messages (Debug)
    pub siaddr: Ipv4Addr,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3 (first).
    pub router: Option<Ipv4Addr>,
    /// Option 60.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 66 as text (NULs trimmed).
    pub tftp_server_name: Option<String>,
    /// Option 67 as text.
    pub bootfile: Option<String>,
    /// Option 97 echo.
    pub option97: Option<Vec<u8>>,
    /// Option 43, decoded.
    pub pxe: Option<PxeVendorOptions>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches('\0')
        .to_string()
}

impl Offer {
    fn from_message(m: &Message, from: SocketAddr) -> Offer {
        let mut o = Offer {
            from,
            yiaddr: m.yiaddr(),
            siaddr: m.siaddr(),
            server_id: None,
            subnet_mask: None,
            router: None,
            vendor_class: None,
            tftp_server_name: None,
            bootfile: None,
            option97: None,
            pxe: None,
        };
        for (_, opt) in m.opts().iter() {
            match opt {
                DhcpOption::ServerIdentifier(ip) => o.server_id = Some(*ip),
                DhcpOption::SubnetMask(ip) => o.subnet_mask = Some(*ip),
                DhcpOption::Router(ips) => o.router = ips.first().copied(),
                DhcpOption::ClassIdentifier(v) => o.vendor_class = Some(v.clone()),
                DhcpOption::TFTPServerName(v) => o.tftp_server_name = Some(text(v)),
                DhcpOption::BootfileName(v) => o.bootfile = Some(text(v)),
                DhcpOption::ClientMachineIdentifier(v) => o.option97 = Some(v.clone()),
                DhcpOption::VendorExtensions(v) => o.pxe = Some(PxeVendorOptions::parse(v)),
                DhcpOption::Unknown(u) => Self::unknown(&mut o, u),
                _ => {}
            }
        }
        o
    }

    fn unknown(o: &mut Offer, u: &UnknownOption) {
        if u8::from(u.code()) == 97 {
            o.option97 = Some(u.data().to_vec());
        }
    }

    /// A proxy OFFER: yiaddr 0.0.0.0 and option 60 "PXEClient".
    pub fn is_proxy(&self) -> bool {
        self.yiaddr.is_unspecified() && self.vendor_class.as_deref() == Some(b"PXEClient")
    }

    /// Whether option 43's boot menu names the Pi ("Raspberry Pi Boot").
    pub fn has_pi_menu(&self) -> bool {
        self.pxe.as_ref().is_some_and(|p| p.has_menu(PI_MENU))
    }
}

/// All OFFERs seen for one DISCOVER.
#[derive(Debug, Clone)]
pub struct DiscoverOutcome {
    /// Transaction id used.
    pub xid: u32,
    /// Option 97 that was sent (None for [`ClientKind::X86Bios`]).
    pub sent_option97: Option<Vec<u8>>,
    /// Every OFFER for this xid and MAC, in arrival order.
    pub offers: Vec<Offer>,
}

impl DiscoverOutcome {
    /// First OFFER with a non-zero yiaddr.
    pub fn router_offer(&self) -> Option<&Offer> {
        self.offers.iter().find(|o| !o.yiaddr.is_unspecified())
    }

    /// All proxy OFFERs (yiaddr 0, option 60 "PXEClient").
    pub fn proxy_offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.iter().filter(|o| o.is_proxy())
    }

    /// The proxy OFFER carrying the "Raspberry Pi Boot" menu, if any.
    pub fn pi_proxy_offer(&self) -> Option<&Offer> {
        self.offers.iter().find(|o| o.is_proxy() && o.has_pi_menu())
    }

    /// True if the Pi proxy OFFER echoed option 97 exactly as sent.
    pub fn option97_echoed(&self) -> bool {
        match (self.pi_proxy_offer(), &self.sent_option97) {
            (Some(o), Some(sent)) => o.option97.as_ref() == Some(sent),
            _ => false,
        }
    }

    /// The bootloader's TFTP server choice: `eeprom_tftp_ip`, else option 66
    /// of any OFFER (text; a name that is not a dotted quad is ignored here,
    /// the lab has no DNS), else option 54 of the OFFER with the menu.
    pub fn tftp_server(&self, eeprom_tftp_ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(ip) = eeprom_tftp_ip {
            return Some(ip);
        }
        if let Some(ip) = self
            .offers
            .iter()
            .filter_map(|o| o.tftp_server_name.as_deref()?.trim().parse().ok())
            .next()
        {
            return Some(ip);
        }
        self.offers
            .iter()
            .find(|o| o.has_pi_menu())
            .and_then(|o| o.server_id)
    }
}

/// Errors of one TFTP read.
#[derive(Debug)]
pub enum TftpError {
    /// ERROR code 1.
    NotFound { path: String, message: String },
    /// Any other ERROR from the server.
    Server {
        path: String,
        code: u16,
        message: String,
    },
    /// No answer after the bounded retransmissions.
    Timeout { path: String, block: u16 },
    /// Unexpected packet or size mismatch.
    Protocol { path: String, detail: String },
    /// Socket error.
    Io(io::Error),
}

impl From<io::Error> for TftpError {
    fn from(e: io::Error) -> Self {
        TftpError::Io(e)
    }
}

impl fmt::Display for TftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TftpError::NotFound { path, message } => write!(f, "{path}: not found ({message})"),
            TftpError::Server {
                path,
                code,
                message,
            } => write!(f, "{path}: server error {code} {message}"),
            TftpError::Timeout { path, block } => {
                write!(f, "{path}: timeout waiting for block {block}")
            }
            TftpError::Protocol { path, detail } => write!(f, "{path}: {detail}"),
            TftpError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl std::error::Error for TftpError {}

const OP_RRQ: u16 = 1;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// Build a TFTP RRQ (`octet`) with the given options.
pub fn rrq_packet(path: &str, options: &[(&str, String)]) -> Vec<u8> {
    let mut p = OP_RRQ.to_be_bytes().to_vec();
    for s in [path, "octet"] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    for (k, v) in options {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn ack_packet(block: u16) -> Vec<u8> {
    let mut p = OP_ACK.to_be_bytes().to_vec();
    p.extend_from_slice(&block.to_be_bytes());
    p
}

/// Build a TFTP ERROR packet.
pub fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = OP_ERROR.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

/// Parse an OACK body into lowercase keys.
fn parse_oack(body: &[u8]) -> BTreeMap<String, String> {
    let parts: Vec<String> = body
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2 && !c[0].is_empty())
        .map(|c| (c[0].to_ascii_lowercase(), c[1].clone()))
        .collect()
}

/// First packet answering an RRQ.
enum RrqReply {
    Oack(BTreeMap<String, String>),
    Data(u16, Vec<u8>),
}

/// One completed read.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// File content.
    pub data: Vec<u8>,
    /// Block size in effect (from the OACK; 512 without options).
    pub blksize: u16,
    /// tsize the server announced.
    #[allow(dead_code)] // shown in failure messages (Debug)
    pub tsize: Option<u64>,
}

/// The leased state after [`EmulatedPi::dhcp`]: address on `pi0`, the
/// chosen TFTP server, and the OFFERs that led there.
#[derive(Debug)]
pub struct Session {
    /// The Pi this session belongs to.
    pub pi: EmulatedPi,
    /// DISCOVER result.
    #[allow(dead_code)] // shown in failure messages (Debug)
    pub outcome: DiscoverOutcome,
    /// Leased address (now on `pi0`).
    pub ip: Ipv4Addr,
    /// TFTP server chosen by precedence.
    pub tftp_server: Ipv4Addr,
}

impl Session {
    /// New UDP socket for one RRQ: ephemeral source port on `pi0`.
    fn tftp_socket(&self) -> io::Result<UdpSocket> {
        let iface = self.pi.iface.clone();
        let ip = self.ip;
        in_netns(&self.pi.netns, move || {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind_device(Some(iface.as_bytes()))?;
            s.bind(&SocketAddr::from((ip, 0)).into())?;
            Ok(UdpSocket::from(s))
        })
    }

    /// Send `pkt` to `to`, wait for a packet from the server (any port for
    /// the first reply, `tid` afterwards), retransmitting on timeout.
    fn exchange(
        &self,
        sock: &UdpSocket,
        pkt: &[u8],
        to: SocketAddr,
        tid: Option<SocketAddr>,
        (path, block): (&str, u16),
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), TftpError> {
        sock.set_read_timeout(Some(TFTP_TIMEOUT))?;
        for _ in 0..=TFTP_RETRIES {
            sock.send_to(pkt, to)?;
            let deadline = Instant::now() + TFTP_TIMEOUT;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                sock.set_read_timeout(Some(deadline - now))?;
                match sock.recv_from(buf) {
                    Ok((n, from)) => {
                        let ok_src = match tid {
                            Some(t) => from == t,
                            None => from.ip() == to.ip(),
                        };
                        if ok_src {
                            return Ok((n, from));
                        }
                        // RFC 1350: a packet from a foreign TID gets ERROR 5.
                        let _ = sock.send_to(&error_packet(5, "Unknown transfer ID"), from);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(TftpError::Timeout {
            path: path.to_string(),
            block,
        })
    }

    fn server(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.tftp_server, 69))
    }

    fn classify<'a>(path: &str, pkt: &'a [u8]) -> Result<(u16, &'a [u8]), TftpError> {
        if pkt.len() < 4 {
            return Err(TftpError::Protocol {
                path: path.into(),
                detail: format!("short packet {pkt:?}"),
            });
        }
        let op = u16::from_be_bytes([pkt[0], pkt[1]]);
        if op == OP_ERROR {
            let code = u16::from_be_bytes([pkt[2], pkt[3]]);
            let message = text(&pkt[4..]);
            return Err(if code == 1 {
                TftpError::NotFound {
                    path: path.into(),
                    message,
                }
            } else {
                TftpError::Server {
                    path: path.into(),
                    code,
                    message,
                }
            });
        }
        Ok((op, &pkt[2..]))
    }

    fn send_rrq(
        &self,
        sock: &UdpSocket,
        path: &str,
        opts: &[(&str, String)],
        buf: &mut [u8],
    ) -> Result<(RrqReply, SocketAddr), TftpError> {
        let (n, from) = self.exchange(
            sock,
            &rrq_packet(path, opts),
            self.server(),
            None,
            (path, 0),
            buf,
        )?;
        let (op, body) = Self::classify(path, &buf[..n])?;
        match op {
            OP_OACK => Ok((RrqReply::Oack(parse_oack(body)), from)),
            OP_DATA if body.len() >= 2 => Ok((
                RrqReply::Data(u16::from_be_bytes([body[0], body[1]]), body[2..].to_vec()),
                from,
            )),
            _ => Err(TftpError::Protocol {
                path: path.into(),
                detail: format!("unexpected opcode {op}"),
            }),
        }
    }

    /// Read `path` (relative to the TFTP root) with `tsize 0` and
    /// `blksize`. Checks the length against the OACK's tsize.
    pub fn tftp_get(&self, path: &str, blksize: u16) -> Result<Vec<u8>, TftpError> {
        self.tftp_transfer(path, blksize).map(|t| t.data)
    }

    /// [`Session::tftp_get`] with the negotiated parameters.
    pub fn tftp_transfer(&self, path: &str, blksize: u16) -> Result<Transfer, TftpError> {
        let sock = self.tftp_socket()?;
        let mut buf = vec![0u8; blksize.max(512) as usize + 4];
        let opts = [("tsize", "0".to_string()), ("blksize", blksize.to_string())];
        let (first, tid) = self.send_rrq(&sock, path, &opts, &mut buf)?;
        let mut data = Vec::new();
        let (bs, tsize, mut last_block, mut pkt);
        match first {
            RrqReply::Oack(o) => {
                bs = o
                    .get("blksize")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(512);
                tsize = o.get("tsize").and_then(|v| v.parse::<u64>().ok());
                if bs > blksize as usize {
                    let _ = sock.send_to(&error_packet(8, "blksize too large"), tid);
                    return Err(TftpError::Protocol {
                        path: path.into(),
                        detail: format!("server chose blksize {bs} > {blksize}"),
                    });
                }
                last_block = 0u16;
                pkt = ack_packet(0);
            }
            RrqReply::Data(block, bytes) => {
                // Server ignored the options: plain RFC 1350, 512-byte blocks.
                bs = 512;
                tsize = None;
                if block != 1 {
                    return Err(TftpError::Protocol {
                        path: path.into(),
                        detail: format!("first DATA block {block}"),
                    });
                }
                let done = bytes.len() < bs;
                data.extend_from_slice(&bytes);
                last_block = 1;
                pkt = ack_packet(1);
                if done {
                    sock.send_to(&pkt, tid)?;
                    return Ok(Transfer {
                        data,
                        blksize: 512,
                        tsize: None,
                    });
                }
            }
        }
        loop {
            let want = last_block.wrapping_add(1);
            let (n, _) = self.exchange(&sock, &pkt, tid, Some(tid), (path, want), &mut buf)?;
            let (op, body) = Self::classify(path, &buf[..n])?;
            if op != OP_DATA || body.len() < 2 {
                // A duplicate OACK (our ACK 0 was lost) is answered by the resend.
                if op == OP_OACK && last_block == 0 {
                    continue;
                }
                return Err(TftpError::Protocol {
                    path: path.into(),
                    detail: format!("unexpected opcode {op}"),
                });
            }
            let block = u16::from_be_bytes([body[0], body[1]]);
            if block != want {
                // Duplicate of an older block: re-ACK happens via the loop.
                continue;
            }
            let chunk = &body[2..];
            data.extend_from_slice(chunk);
            last_block = block;
            pkt = ack_packet(block);
            if chunk.len() < bs {
                sock.send_to(&pkt, tid)?;
                break;
            }
        }
        if let Some(t) = tsize
            && t != data.len() as u64
        {
            return Err(TftpError::Protocol {
                path: path.into(),
                detail: format!("tsize {t} but got {} bytes", data.len()),
            });
        }
        Ok(Transfer {
            data,
            blksize: bs as u16,
            tsize,
        })
    }

    /// The bootloader's probe: RRQ with `tsize 0`; on OACK send
    /// `ERROR 0 "Early terminate"` and return the advertised size.
    /// A server that answers with DATA (no option support) also gets the
    /// ERROR; the size is then unknown (`Protocol` error).
    pub fn tftp_probe(&self, path: &str) -> Result<u64, TftpError> {
        let sock = self.tftp_socket()?;
        let mut buf = vec![0u8; 1600];
        let (reply, tid) = self.send_rrq(&sock, path, &[("tsize", "0".to_string())], &mut buf)?;
        sock.send_to(&error_packet(0, "Early terminate"), tid)?;
        match reply {
            RrqReply::Oack(o) => {
                o.get("tsize")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| TftpError::Protocol {
                        path: path.into(),
                        detail: "OACK without tsize".into(),
                    })
            }
            RrqReply::Data(..) => Err(TftpError::Protocol {
                path: path.into(),
                detail: "server ignored tsize".into(),
            }),
        }
    }

    /// Run the §3 "typical sequence" at `blksize` and compare with
    /// `expected` (the boot folder that should be served as `SERIAL/`).
    pub fn boot_sequence(&self, expected: &Path, blksize: u16) -> BootReport {
        use Step::{Get, Probe};
        let prefix = self.pi.tftp_prefix();
        let mut report = BootReport {
            serial: self.pi.serial_folder(),
            ip: self.ip,
            tftp_server: self.tftp_server,
            blksize,
            prefix_used: None,
            entries: Vec::new(),
        };
        let run = |report: &mut BootReport,
                   step: Step,
                   remote: String,
                   local: Option<PathBuf>,
                   required: bool| {
            let outcome = match step {
                Probe => match self.tftp_probe(&remote) {
                    Ok(size) => Outcome::Probed { tsize: size },
                    Err(TftpError::NotFound { .. }) => Outcome::NotFound,
                    Err(e) => Outcome::Error(e.to_string()),
                },
                Get => match self.tftp_transfer(&remote, blksize) {
                    Ok(t) => Outcome::Fetched {
                        bytes: t.data,
                        blksize: t.blksize,
                    },
                    Err(TftpError::NotFound { .. }) => Outcome::NotFound,
                    Err(e) => Outcome::Error(e.to_string()),
                },
            };
            let entry = FileEntry::judge(remote, step, required, outcome, local.as_deref());
            let found = !matches!(entry.outcome, Outcome::NotFound);
            report.entries.push(entry);
            found
        };
        // 1. Prefix probe: PREFIXstart4.elf, then PREFIXstart.elf.
        let with_prefix = run(
            &mut report,
            Probe,
            format!("{prefix}start4.elf"),
            Some(expected.join("start4.elf")),
            true,
        ) || run(
            &mut report,
            Probe,
            format!("{prefix}start.elf"),
            Some(expected.join("start.elf")),
            false,
        );
        if !with_prefix {
            // The real bootloader silently drops the prefix: TFTP root.
            // pinetboot's root holds only client folders, so all of these must
            // be "not found"; `local: None` means "expected absent".
            for f in [
                "config.txt",
                "recover4.elf",
                "recovery.elf",
                "start4.elf",
                "start.elf",
            ] {
                run(&mut report, Probe, f.to_string(), None, false);
            }
            return report;
        }
        report.prefix_used = Some(prefix.clone());
        let p = |f: &str| (format!("{prefix}{f}"), Some(expected.join(f)));
        let seq: &[(Step, &str, bool)] = &[
            (Get, "config.txt", true),
            (Get, "pieeprom.sig", false),
            (Get, "pieeprom.upd", false),
            (Probe, "recover4.elf", false),
            (Probe, "recovery.elf", false),
            (Get, "start4.elf", true),
            (Get, "fixup4.dat", true),
            (Get, "config.txt", true),
            (Get, "dt-blob.bin", false),
            (Get, "bcm2711-rpi-4-b.dtb", true),
            (Get, "overlays/overlay_map.dtb", false),
            (Get, "cmdline.txt", true),
        ];
        for (step, f, required) in seq {
            let (remote, local) = p(f);
            run(&mut report, *step, remote, local, *required);
        }
        // start4.elf loads the kernel and initramfs config.txt names.
        let config = report
            .entries
            .iter()
            .find_map(|e| match &e.outcome {
                Outcome::Fetched { bytes, .. } if e.path == format!("{prefix}config.txt") => {
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                _ => None,
            })
            .unwrap_or_default();
        let (kernel, initramfs) = boot_images(&config);
        for f in std::iter::once(kernel).chain(initramfs) {
            let (remote, local) = p(&f);
            run(&mut report, Get, remote, local, true);
        }
        report
    }
}

/// The `bootconf.txt` embedded in a Pi 4 bootloader image, read as the bootloader's own
/// image layout is documented (`rpi-eeprom-config`): a chain of 8-byte-aligned sections,
/// each a big-endian magic (`0x55aaf00f` under the mask `0xfffff00f`) and length; a file
/// section (`0x55aaf11f`) holds a 12-byte NUL-padded name, 4 reserved bytes and the file.
/// An erased (`0xffffffff`) or zero magic ends the chain.
pub fn embedded_bootconf(image: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(image.get(at..at + 4)?.try_into().ok()?))
    };
    let mut at = 0;
    while let (Some(magic), Some(len)) = (word(at), word(at + 4)) {
        if magic == 0 || magic == u32::MAX || magic & 0xffff_f00f != 0x55aa_f00f {
            return None;
        }
        let data = image.get(at + 8..at + 8 + len as usize)?;
        if magic == 0x55aa_f11f && data.len() >= 16 {
            let name: Vec<u8> = data[..12].iter().copied().filter(|b| *b != 0).collect();
            if name == b"bootconf.txt" {
                return String::from_utf8(data[16..].to_vec()).ok();
            }
        }
        at = (at + 8 + len as usize).div_ceil(8) * 8;
    }
    None
}

/// The kernel and initramfs a Pi 4's start4.elf loads, from config.txt (sections other than
/// `[all]` and `[pi4]` ignored; the last setting wins): `kernel=` (default `kernel8.img` with
/// `arm_64bit=1`, else `kernel7l.img`), `initramfs NAME [followkernel]`, or with
/// `auto_initramfs=1` the default kernel's `initramfs8`/`initramfs7l`.
pub fn boot_images(config: &str) -> (String, Option<String>) {
    let mut active = true;
    let (mut kernel, mut initramfs, mut auto, mut arm64) = (None, None, false, false);
    for line in config.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            active = matches!(section, "all" | "pi4");
            continue;
        }
        if !active {
            continue;
        }
        if let Some(rest) = line.strip_prefix("initramfs ") {
            initramfs = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some((k, v)) = line.split_once('=') {
            match (k.trim(), v.trim()) {
                ("kernel", v) => kernel = Some(v.to_owned()),
                ("auto_initramfs", v) => auto = v == "1",
                ("arm_64bit", v) => arm64 = v == "1",
                _ => {}
            }
        }
    }
    let default = if arm64 { "kernel8.img" } else { "kernel7l.img" };
    let kernel = kernel.unwrap_or_else(|| default.to_owned());
    if initramfs.is_none() && auto && kernel == default {
        initramfs = Some(default.replace("kernel", "initramfs").replace(".img", ""));
    }
    (kernel, initramfs)
}

#[cfg(test)]
mod boot_images_tests {
    use super::boot_images;

    #[test]
    fn config_txt_sections_kernel_and_initramfs() {
        // Debian's raspi-firmware: kernel and initramfs named.
        let debian = "[pi3]\nkernel=no.img\n[all]\narm_64bit=1\nkernel=vmlinuz-6.1.0-50-arm64 # k\n\
                      initramfs initrd.img-6.1.0-50-arm64 followkernel\n[cm4]\nkernel=cm4.img\n";
        assert_eq!(
            boot_images(debian),
            (
                "vmlinuz-6.1.0-50-arm64".to_owned(),
                Some("initrd.img-6.1.0-50-arm64".to_owned())
            )
        );
        // Raspberry Pi OS Bookworm: the default kernel and auto_initramfs.
        assert_eq!(
            boot_images("[all]\narm_64bit=1\nauto_initramfs=1\n"),
            ("kernel8.img".to_owned(), Some("initramfs8".to_owned()))
        );
        assert_eq!(
            boot_images("arm_64bit=1\n"),
            ("kernel8.img".to_owned(), None)
        );
    }
}

/// How a file was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// tsize RRQ + "Early terminate".
    Probe,
    /// Full transfer.
    Get,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Probe answered with this tsize.
    Probed { tsize: u64 },
    /// Full transfer; the bytes received and the block size used.
    Fetched { bytes: Vec<u8>, blksize: u16 },
    /// ERROR 1.
    NotFound,
    /// Anything else (timeout, other ERROR, protocol).
    Error(String),
}

/// One file of the boot sequence.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Path as requested (`SERIAL/file`).
    pub path: String,
    /// Probe or get.
    pub step: Step,
    /// Whether a real boot needs it.
    pub required: bool,
    /// Server's answer.
    pub outcome: Outcome,
    /// Size of the expected file on disk (None: absent).
    pub expected_size: Option<u64>,
    /// Received matches disk: same bytes (get), same size (probe), or both
    /// absent (not found).
    pub ok: bool,
}

impl FileEntry {
    fn judge(
        path: String,
        step: Step,
        required: bool,
        outcome: Outcome,
        local: Option<&Path>,
    ) -> FileEntry {
        let disk = local.and_then(|p| std::fs::read(p).ok());
        let ok = match (&outcome, &disk) {
            (Outcome::Fetched { bytes, .. }, Some(d)) => bytes == d,
            (Outcome::Probed { tsize }, Some(d)) => *tsize == d.len() as u64,
            (Outcome::NotFound, None) => true,
            _ => false,
        };
        FileEntry {
            path,
            step,
            required,
            expected_size: disk.map(|d| d.len() as u64),
            outcome,
            ok,
        }
    }
}

/// Result of [`EmulatedPi::boot`].
#[derive(Debug, Clone)]
pub struct BootReport {
    /// 8-hex-digit serial.
    pub serial: String,
    /// Leased address.
    pub ip: Ipv4Addr,
    /// TFTP server used.
    pub tftp_server: Ipv4Addr,
    /// blksize requested.
    pub blksize: u16,
    /// The prefix (e.g. `0c4c21e5/`) if the prefix probe succeeded.
    pub prefix_used: Option<String>,
    /// Every request, in order.
    pub entries: Vec<FileEntry>,
}

impl BootReport {
    /// Every entry matches the disk (including "absent and not found").
    pub fn all_ok(&self) -> bool {
        self.entries.iter().all(|e| e.ok)
    }

    /// The Pi would boot: prefix found and every required file fetched intact.
    pub fn booted(&self) -> bool {
        self.prefix_used.is_some()
            && self
                .entries
                .iter()
                .filter(|e| e.required)
                .all(|e| e.ok && !matches!(e.outcome, Outcome::NotFound))
    }

    /// Whether any request got something other than ERROR 1.
    pub fn anything_found(&self) -> bool {
        self.entries
            .iter()
            .any(|e| !matches!(e.outcome, Outcome::NotFound))
    }

    /// Whether the optional `path` (e.g. "pieeprom.upd") was served.
    pub fn present(&self, file: &str) -> bool {
        self.entries.iter().any(|e| {
            e.path.ends_with(&format!("/{file}"))
                && matches!(e.outcome, Outcome::Fetched { .. } | Outcome::Probed { .. })
        })
    }
}

impl fmt::Display for BootReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "serial {} ip {} tftp {} blksize {} prefix {:?}",
            self.serial, self.ip, self.tftp_server, self.blksize, self.prefix_used
        )?;
        for e in &self.entries {
            let what = match &e.outcome {
                Outcome::Probed { tsize } => format!("probe tsize={tsize}"),
                Outcome::Fetched { bytes, blksize } => {
                    format!("got {} bytes @{blksize}", bytes.len())
                }
                Outcome::NotFound => "not found".to_string(),
                Outcome::Error(s) => format!("ERROR {s}"),
            };
            writeln!(
                f,
                "  {:<4} {:<34} {:<28} disk={:<10} {}{}",
                if e.step == Step::Probe { "prb" } else { "get" },
                e.path,
                what,
                e.expected_size.map_or("-".to_string(), |s| s.to_string()),
                if e.ok { "ok" } else { "MISMATCH" },
                if e.required { "" } else { " (optional)" },
            )?;
        }
        Ok(())
    }
}

/// Boots every Pi of `pis` from its folder at once, one thread each (every other one at blksize
/// 1468, the rest at 1024), and asserts each booted with every file right; returns the reports
/// in the order of `pis`.
pub fn boot_concurrently(pis: &[(EmulatedPi, PathBuf)]) -> Vec<BootReport> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = pis
            .iter()
            .enumerate()
            .map(|(i, (pi, folder))| {
                scope.spawn(move || {
                    let mut pi = pi.clone();
                    pi.blksize = if i % 2 == 0 { 1024 } else { 1468 };
                    pi.boot(folder).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(pis)
            .map(|(h, (pi, _))| {
                let report = h.join().expect("Pi thread panicked").unwrap();
                assert!(
                    report.booted() && report.all_ok(),
                    "{}: {report}",
                    pi.serial_folder()
                );
                report
            })
            .collect()
    })
}

/// Boots `pi` at `blksize` from the TFTP server `server` and asserts what a real board needs:
/// its prefix used, every file matching `folder` byte for byte, and every required boot
/// file fetched in full (not just probed) at the requested block size. Returns the report for
/// further checks.
#[track_caller]
pub fn assert_boots(pi: &EmulatedPi, folder: &Path, blksize: u16, server: Ipv4Addr) -> BootReport {
    let mut pi = pi.clone();
    pi.blksize = blksize;
    let report = pi
        .boot(folder)
        .unwrap_or_else(|e| panic!("DHCP phase failed: {e}"));
    assert!(report.booted() && report.all_ok(), "{report}");
    assert_eq!(report.prefix_used, Some(pi.tftp_prefix()), "{report}");
    assert_eq!(report.tftp_server, server);
    let config = std::fs::read_to_string(folder.join("config.txt")).unwrap_or_default();
    let (kernel, initramfs) = boot_images(&config);
    let images: Vec<String> = std::iter::once(kernel).chain(initramfs).collect();
    assert_eq!(images.len(), 2, "config.txt names no initramfs:\n{config}");
    for f in [
        "config.txt",
        "start4.elf",
        "fixup4.dat",
        "bcm2711-rpi-4-b.dtb",
        "cmdline.txt",
    ]
    .into_iter()
    .chain(images.iter().map(String::as_str))
    {
        let path = format!("{}{f}", pi.tftp_prefix());
        assert!(
            report.entries.iter().any(|e| e.path == path
                && e.step == Step::Get
                && e.ok
                && matches!(e.outcome, Outcome::Fetched { blksize: b, .. } if b == blksize)),
            "{path} not fetched intact at blksize {blksize}:\n{report}"
        );
    }
    report
}
