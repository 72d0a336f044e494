//! dnsmasq: installed, running, loading pinetboot's drop-in, holding the DHCP and TFTP ports
//! (on `server.interface` when set), not serving DNS in the way; other dnsmasq configs that claim
//! the boot network.

use std::net::{IpAddr, Ipv4Addr};

use super::Check;
use crate::config::Valid;
use crate::doctor::Finding;
use crate::doctor::facts::{Facts, Socket, conf_lines};

fn on_port(f: &Facts, port: u16) -> Vec<&Socket> {
    f.sockets.iter().filter(|s| s.port == port).collect()
}

/// dnsmasq is installed and running with pinetboot's drop-in, holds the DHCP and TFTP ports, and
/// leaves port 53 alone.
pub(super) fn dnsmasq(f: &Facts, out: &mut Vec<Finding>) {
    let check = Check::new("dnsmasq.installed", "dnsmasq is installed");
    match &f.dnsmasq_binary {
        Some(p) => out.push(check.ok(p.clone())),
        None => {
            out.push(check.problem("no dnsmasq on PATH or in /usr/sbin", "apt install dnsmasq"));
        }
    }
    let check = Check::new(
        "dnsmasq.running",
        "dnsmasq is running in this network namespace",
    );
    if f.dnsmasq.is_empty() {
        let elsewhere = match f.dnsmasq_elsewhere {
            0 => String::new(),
            n => format!(
                " ({n} dnsmasq process{} in other network namespaces)",
                if n == 1 { "" } else { "es" }
            ),
        };
        out.push(check.problem(
            format!("no process named dnsmasq{elsewhere}"),
            "start it: `systemctl enable --now dnsmasq`; if it does not stay up, `journalctl -u dnsmasq` says why (`dnsmasq --test` checks the config)",
        ));
    } else {
        let list = f
            .dnsmasq
            .iter()
            .map(|p| format!("pid {} ({})", p.pid, p.cmdline.join(" ")))
            .collect::<Vec<_>>()
            .join("; ");
        out.push(check.ok(list));
        loads_drop_in(f, out);
    }
    service_port(f, 67, "dnsmasq.dhcp", "DHCP", out);
    service_port(f, 69, "dnsmasq.tftp", "TFTP", out);
    if let Ok(valid) = &f.config {
        interface_binding(f, valid, out);
    }
    dns_port(f, out);
}

/// On the real host: whether a running dnsmasq was started with config options that leave
/// pinetboot's drop-in out.
fn loads_drop_in(f: &Facts, out: &mut Vec<Finding>) {
    let (true, Ok(valid)) = (f.real_host, &f.config) else {
        return;
    };
    let drop_in = std::path::Path::new(&valid.paths.dnsmasq_conf);
    let dir = drop_in.parent().unwrap_or(std::path::Path::new("/"));
    for p in &f.dnsmasq {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let mut args = p.cmdline.iter().skip(1);
        while let Some(a) = args.next() {
            let value = |long: &str, short: &str, args: &mut dyn Iterator<Item = &String>| {
                if let Some(v) = a.strip_prefix(&format!("{long}=")) {
                    Some(v.to_owned())
                } else if a == long || a == short {
                    args.next().cloned()
                } else {
                    a.strip_prefix(short)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                }
            };
            if let Some(v) = value("--conf-file", "-C", &mut args) {
                files.push(v);
            } else if let Some(v) = value("--conf-dir", "-7", &mut args) {
                dirs.push(v.split(',').next().unwrap_or_default().to_owned());
            }
        }
        // Without options dnsmasq reads /etc/dnsmasq.conf, whose conf-dir lines are not
        // followed here: only a command line that names its configs is judged.
        if files.is_empty() && dirs.is_empty() {
            continue;
        }
        let named = files.iter().any(|f| std::path::Path::new(f) == drop_in)
            || dirs.iter().any(|d| std::path::Path::new(d) == dir);
        if !named && !files.iter().any(|f| f == "/etc/dnsmasq.conf") {
            out.push(Finding::warning(
                "dnsmasq.drop-in",
                "the running dnsmasq reads pinetboot's drop-in",
                format!(
                    "dnsmasq pid {} was started with {} and neither names {}",
                    p.pid,
                    files
                        .iter()
                        .map(|f| format!("--conf-file={f}"))
                        .chain(dirs.iter().map(|d| format!("--conf-dir={d}")))
                        .collect::<Vec<_>>()
                        .join(" "),
                    drop_in.display()
                ),
                format!(
                    "start dnsmasq with --conf-dir={} (Debian's dnsmasq service does), or set paths.dnsmasq_conf to a folder it reads",
                    dir.display()
                ),
            ));
        }
    }
}

fn service_port(f: &Facts, port: u16, id: &str, what: &str, out: &mut Vec<Finding>) {
    let check = Check::new(id, format!("dnsmasq listens for {what} (UDP {port})"));
    let sockets = on_port(f, port);
    let foreign: Vec<&&Socket> = sockets.iter().filter(|s| !s.held_by("dnsmasq")).collect();
    if let Some(s) = foreign.first() {
        let fix = if port == 67 {
            "stop the other DHCP server (or keep it off this host): only one program can answer DHCP here, and the Pi needs dnsmasq's proxy offer; then restart dnsmasq".to_owned()
        } else {
            "stop the other TFTP server (e.g. `systemctl disable --now tftpd-hpa`), then restart dnsmasq: the Pi must fetch its files from dnsmasq's tftp-root".to_owned()
        };
        out.push(check.problem(
            format!(
                "UDP {port} ({}) is held by {}, not dnsmasq",
                s.local(),
                s.holders()
            ),
            fix,
        ));
        return;
    }
    if sockets.is_empty() {
        let fix = if f.dnsmasq.is_empty() {
            "start dnsmasq (see above)".to_owned()
        } else {
            format!(
                "dnsmasq runs without the {what} part of pinetboot's drop-in: make it read the drop-in (Debian: files in /etc/dnsmasq.d) and restart it; `dnsmasq --test` and its log say more"
            )
        };
        out.push(check.problem(
            format!("nothing listens on UDP {port} in this network namespace"),
            fix,
        ));
        return;
    }
    out.push(
        check.ok(sockets
            .iter()
            .map(|s| format!("{} by {}", s.local(), s.holders()))
            .collect::<Vec<_>>()
            .join(", ")),
    );
}

/// With `server.interface` set: the DHCP socket on that device (or on all), and TFTP reachable
/// at the server address.
fn interface_binding(f: &Facts, valid: &Valid, out: &mut Vec<Finding>) {
    let dhcp: Vec<&Socket> = on_port(f, 67)
        .into_iter()
        .filter(|s| s.held_by("dnsmasq"))
        .collect();
    let tftp: Vec<&Socket> = on_port(f, 69)
        .into_iter()
        .filter(|s| s.held_by("dnsmasq"))
        .collect();
    if dhcp.is_empty() && tftp.is_empty() {
        return;
    }
    let iface = valid.interface.as_deref();
    let check = Check::new(
        "dnsmasq.interface",
        match iface {
            Some(i) => format!("dnsmasq serves the boot interface {i}"),
            None => "dnsmasq serves the server address".to_owned(),
        },
    );
    let mut wrong = Vec::new();
    if let Some(i) = iface
        && !dhcp.is_empty()
        && !dhcp
            .iter()
            .any(|s| s.device.as_deref().is_none_or(|d| d == i))
    {
        wrong.push(format!(
            "its DHCP socket is bound to another interface ({})",
            dhcp.iter()
                .map(|s| s.local())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let reaches = |s: &&Socket| {
        let addr_ok = s.addr == IpAddr::V4(valid.address)
            || s.addr == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            || s.addr == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        let dev_ok = match (iface, s.device.as_deref()) {
            (Some(i), Some(d)) => i == d,
            _ => true,
        };
        addr_ok && dev_ok
    };
    if !tftp.is_empty() && !tftp.iter().any(reaches) {
        wrong.push(format!(
            "its TFTP sockets ({}) do not take requests for {}",
            tftp.iter()
                .map(|s| s.local())
                .collect::<Vec<_>>()
                .join(", "),
            valid.address
        ));
    }
    if wrong.is_empty() {
        let devices = if f.devices_known {
            ""
        } else {
            " (ss is missing: device bindings not checked)"
        };
        out.push(check.ok(format!(
                "DHCP on {}, TFTP on {}{devices}",
                dhcp.iter()
                    .map(|s| s.local())
                    .collect::<Vec<_>>()
                    .join(", "),
                tftp.iter()
                    .filter(|s| reaches(s))
                    .map(|s| s.local())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
    } else {
        out.push(check.problem(
            wrong.join("; "),
            format!(
                "the running dnsmasq does not use pinetboot's drop-in as written (interface={}, bind-interfaces): another config sets interface=/listen-address= for this instance; remove those or run a separate instance, then restart dnsmasq",
                iface.unwrap_or("…")
            ),
        ));
    }
}

fn dns_port(f: &Facts, out: &mut Vec<Finding>) {
    let check = Check::new("dnsmasq.dns", "no DNS clash on port 53");
    let dns = on_port(f, 53);
    let serving_pids: Vec<u32> = on_port(f, 67)
        .into_iter()
        .chain(on_port(f, 69))
        .flat_map(|s| s.owners.iter().map(|(pid, _)| *pid))
        .collect();
    let ours: Vec<&&Socket> = dns
        .iter()
        .filter(|s| s.owners.iter().any(|(pid, _)| serving_pids.contains(pid)))
        .collect();
    let drop_in_port0 = f
        .drop_in
        .as_deref()
        .is_some_and(|t| conf_lines(t).any(|(_, k, v)| k == "port" && v == Some("0")));
    if let Some(s) = ours.first() {
        out.push(check.warning(
            format!(
                "the dnsmasq that serves DHCP/TFTP also answers DNS on {} ({}): pinetboot's port=0 is overridden by another port= setting or not loaded",
                s.local(),
                s.holders()
            ),
            "remove the other port= line (see the dnsmasq config findings) and restart dnsmasq; a DNS server in this instance clashes with systemd-resolved or another resolver on :53",
        ));
        return;
    }
    let others = if dns.is_empty() {
        "nothing else listens on :53".to_owned()
    } else {
        format!(
            "{} on :53 is no clash",
            dns.iter()
                .map(|s| s.holders())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if f.config.is_ok() && f.drop_in.is_some() && !drop_in_port0 {
        out.push(check.warning(
            format!("pinetboot's drop-in lacks port=0; {others}"),
            "run `pinetboot apply` to restore the drop-in",
        ));
    } else {
        out.push(check.ok(format!(
            "pinetboot's dnsmasq serves no DNS (port=0); {others}"
        )));
    }
}

/// `dhcp-range` in the boot network, unscoped `pxe-service` for BIOS clients, `port=` settings
/// in dnsmasq configs other than pinetboot's drop-in.
pub(super) fn other_configs(f: &Facts, valid: &Valid, out: &mut Vec<Finding>) {
    let check = Check::new(
        "dnsmasq.config",
        "no other dnsmasq config claims the boot network",
    );
    let mut found = false;
    for file in &f.confs {
        for (line, key, value) in conf_lines(&file.text) {
            let value = value.unwrap_or("");
            let at = format!("{}:{line}: {key}={value}", file.path);
            match key {
                "dhcp-range" if range_start(value).is_some_and(|a| valid.network.contains(&a)) => {
                    found = true;
                    out.push(check.problem(
                        format!("{at} also serves the boot network {}", valid.network),
                        format!(
                            "remove that line or move it to another network: dnsmasq reads every file in /etc/dnsmasq.d, and two DHCP configurations for {} make the Pi's proxy offer unreliable (a full range also puts a second DHCP server beside your router)",
                            valid.network
                        ),
                    ));
                }
                "pxe-service" if unscoped_bios_pxe(value) => {
                    found = true;
                    out.push(check.problem(
                        format!("{at} is offered to every BIOS PXE client, and a Pi 4 asks as one (option 93 = 0)"),
                        "scope it with tag: (e.g. `dhcp-match=set:bios,option:client-arch,0` plus a MAC tag for the PCs) or remove it; pinetboot's own entry is `tag:pinetboot`",
                    ));
                }
                "port" if value != "0" => {
                    found = true;
                    out.push(check.warning(
                        format!("{at}: a dnsmasq reading this and pinetboot's drop-in (port=0) gets whichever port= comes last"),
                        "remove it if this instance should serve no DNS, or run pinetboot's dnsmasq as its own instance; DNS in the same instance clashes with a resolver on :53",
                    ));
                }
                _ => {}
            }
        }
    }
    if !found {
        out.push(check.ok(format!(
            "{} other file{} scanned{}",
            f.confs.len(),
            if f.confs.len() == 1 { "" } else { "s" },
            if f.confs.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    f.confs
                        .iter()
                        .map(|c| c.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )));
    }
}

/// The first address of a `dhcp-range` value (after `set:`/`tag:`/`interface:` prefixes).
fn range_start(value: &str) -> Option<Ipv4Addr> {
    value
        .split(',')
        .map(str::trim)
        .find(|p| !p.contains(':'))
        .and_then(|p| p.parse().ok())
}

/// Whether a `pxe-service` value has no `tag:` and is for client architecture 0 (x86 BIOS),
/// which is what a Pi 4 sends.
fn unscoped_bios_pxe(value: &str) -> bool {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.starts_with("tag:")) {
        return false;
    }
    parts
        .first()
        .is_some_and(|csa| csa.eq_ignore_ascii_case("x86pc") || *csa == "0")
}
