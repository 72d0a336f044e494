//! Boot events folded per serial and per MAC: what each Pi fetched, how far it got.

use std::collections::BTreeMap;

use super::parse::*;

/// A file transfer seen in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Absolute path as logged.
    pub path: String,
    /// When (log timestamp).
    pub time: Option<LogTime>,
    /// Client address.
    pub client_ip: String,
}

/// What the log says about one serial folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialSummary {
    /// Last complete transfer (a `sent` that was not a probe).
    pub last_sent: Option<Served>,
    /// Client address of the last TFTP line naming it.
    pub last_client_ip: Option<String>,
    /// Time of the last TFTP line naming it.
    pub last_seen: Option<LogTime>,
    /// Complete transfers.
    pub sent: usize,
    /// Size probes (a `sent`/`failed sending` right after the client's
    /// `error 0 …` from the same address).
    pub probes: usize,
    /// Other aborted transfers.
    pub failed: usize,
    /// `not found` answers.
    pub not_found: usize,
}

impl SerialSummary {
    /// The folder exists on the server: some file was served or probed.
    pub fn exists(&self) -> bool {
        self.sent + self.probes + self.failed > 0
    }
}

/// What the log says about one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacSummary {
    /// The last DHCP exchange (a [`BootEventKind::Dhcp`] or
    /// [`BootEventKind::DhcpProxyOffer`]).
    pub last: BootEventKind,
    /// Its time.
    pub time: Option<LogTime>,
    /// `PXE(…) MAC proxy` lines. dnsmasq logs one for *every* PXE client,
    /// also when no `pxe-service` matched: see `pi_menu`.
    pub proxy_offers: usize,
    /// Tags of the last transaction (with `log-dhcp`).
    pub tags: Vec<String>,
    /// Whether the last proxy OFFER's option 43 held a boot menu (with
    /// `log-dhcp`; `None` if unknown).
    pub pi_menu: Option<bool>,
}

/// Fold of a log: per serial, per MAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// By 8-hex serial.
    pub serials: BTreeMap<String, SerialSummary>,
    /// By MAC (lowercase, colons).
    pub macs: BTreeMap<String, MacSummary>,
    /// xid → MAC, to attach `tags:` and `sent … option:` lines.
    xid_mac: BTreeMap<u32, String>,
    /// Client IPs whose last TFTP line was an `error` they sent.
    aborted: BTreeMap<String, u16>,
}

impl Summary {
    /// Fold events in log order.
    pub fn fold(events: &[BootEvent]) -> Summary {
        let mut s = Summary::default();
        for e in events {
            s.add(e);
        }
        s
    }

    fn serial(&mut self, serial: &str, ip: Option<&str>, e: &BootEvent) -> &mut SerialSummary {
        let x = self.serials.entry(serial.to_string()).or_default();
        if let Some(ip) = ip {
            x.last_client_ip = Some(ip.to_string());
        }
        x.last_seen = e.time.clone();
        x
    }

    fn mac(&mut self, mac: &str, e: &BootEvent) -> &mut MacSummary {
        let x = self
            .macs
            .entry(mac.to_string())
            .or_insert_with(|| MacSummary {
                last: e.kind.clone(),
                time: None,
                proxy_offers: 0,
                tags: Vec::new(),
                pi_menu: None,
            });
        x.last = e.kind.clone();
        x.time = e.time.clone();
        x
    }

    /// Add one event. A `sent`/`failed sending` line that directly follows
    /// (per client IP) an `error N … received from` that client is counted
    /// as a probe, not a transfer: that is how the bootloader's
    /// "Early terminate" size probes look in dnsmasq's log.
    pub fn add(&mut self, e: &BootEvent) {
        match &e.kind {
            BootEventKind::TftpError {
                code, client_ip, ..
            } => {
                self.aborted.insert(client_ip.clone(), *code);
            }
            BootEventKind::TftpSent {
                path,
                serial,
                client_ip,
            } => {
                let probe = self.aborted.remove(client_ip).is_some();
                if let Some(serial) = serial {
                    let served = Served {
                        path: path.clone(),
                        time: e.time.clone(),
                        client_ip: client_ip.clone(),
                    };
                    let x = self.serial(serial, Some(client_ip), e);
                    if probe {
                        x.probes += 1;
                    } else {
                        x.sent += 1;
                        x.last_sent = Some(served);
                    }
                }
            }
            BootEventKind::TftpFailed {
                serial, client_ip, ..
            } => {
                let probe = self.aborted.remove(client_ip).is_some();
                if let Some(serial) = serial {
                    let x = self.serial(serial, Some(client_ip), e);
                    if probe {
                        x.probes += 1;
                    } else {
                        x.failed += 1;
                    }
                }
            }
            BootEventKind::TftpNotFound {
                serial, client_ip, ..
            } => {
                if let Some(ip) = client_ip {
                    self.aborted.remove(ip);
                }
                if let Some(serial) = serial {
                    let ip = client_ip.clone();
                    self.serial(serial, ip.as_deref(), e).not_found += 1;
                }
            }
            BootEventKind::DhcpProxyOffer { mac, xid, .. } => {
                if let Some(xid) = xid {
                    self.xid_mac.insert(*xid, mac.clone());
                }
                let x = self.mac(mac, e);
                x.proxy_offers += 1;
                x.pi_menu = None;
            }
            BootEventKind::Dhcp {
                mac: Some(mac),
                xid,
                ..
            } => {
                if let Some(xid) = xid {
                    self.xid_mac.insert(*xid, mac.clone());
                }
                self.mac(mac, e);
            }
            BootEventKind::DhcpTags {
                xid: Some(xid),
                tags,
            } => {
                if let Some(x) = self.xid_mac.get(xid).and_then(|m| self.macs.get_mut(m)) {
                    x.tags = tags.clone();
                }
            }
            BootEventKind::DhcpOptionSent {
                xid: Some(xid),
                code: 43,
                value,
                ..
            } => {
                if let Some(x) = self.xid_mac.get(xid).and_then(|m| self.macs.get_mut(m))
                    && matches!(x.last, BootEventKind::DhcpProxyOffer { .. })
                {
                    x.pi_menu = vendor_encap_has_menu(value);
                }
            }
            _ => {}
        }
    }

    /// Discovery: serials that asked for files and were never served any
    /// (no folder on the server), sorted.
    pub fn unknown_serials(&self) -> Vec<&str> {
        self.serials
            .iter()
            .filter(|(_, s)| s.not_found > 0 && !s.exists())
            .map(|(k, _)| k.as_str())
            .collect()
    }
}
