//! The checks: pure functions from [`Facts`] to [`Finding`]s, in the order a person debugging a
//! Pi that does not boot would go: config and drift, dnsmasq and its ports, other DHCP configs,
//! the server address, each client's TFTP folder, NFS.

use std::net::{IpAddr, Ipv4Addr};

use super::facts::{ClientFacts, Facts, Meta, Socket, User, conf_lines};
use super::{Finding, Severity};
use crate::config::Valid;
use crate::config::net::Ipv4Net;

/// The fix printed when the kernel NFS server is not running.
pub const FIX_NFS_NOT_RUNNING: &str = "start the kernel NFS server: `systemctl enable --now nfs-server` (package nfs-kernel-server; it loads the nfsd module and mounts /proc/fs/nfsd), then `exportfs -ra`";

/// Every check, in report order.
pub fn all(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    config(f, &mut out);
    dnsmasq(f, &mut out);
    if let Ok(valid) = &f.config {
        other_configs(f, valid, &mut out);
        address(f, valid, &mut out);
        for c in &f.clients {
            client(f, c, &mut out);
        }
    }
    nfs(f, &mut out);
    out
}

fn config(f: &Facts, out: &mut Vec<Finding>) {
    const CHECK: &str = "config is valid";
    let valid = match &f.config {
        Ok(v) => v,
        Err(e) => {
            out.push(Finding::problem(
                "config",
                CHECK,
                format!("{}:\n{e}", f.config_path),
                format!(
                    "fix the lines above (`pinetboot validate --config {}` lists them all); the checks that need the config were skipped",
                    f.config_path
                ),
            ));
            return;
        }
    };
    out.push(Finding::ok(
        "config",
        CHECK,
        format!(
            "{}: {} client{}, boot network {}, server {}",
            f.config_path,
            valid.clients.len(),
            if valid.clients.len() == 1 { "" } else { "s" },
            valid.network,
            valid.address
        ),
    ));
    match &f.state {
        Some(Err(e)) => out.push(Finding::problem(
            "state",
            "state file is readable",
            e.clone(),
            format!(
                "move the unreadable {}/state.json aside and run `pinetboot apply`: it records what it manages again",
                valid.paths.state
            ),
        )),
        Some(Ok(())) => out.push(Finding::ok(
            "state",
            "state file is readable",
            format!("{}/state.json", valid.paths.state),
        )),
        None => {}
    }
    match &f.plan {
        Some(Err(e)) => out.push(Finding::problem(
            "plan",
            "`pinetboot plan` is empty (no drift)",
            format!("planning failed: {e}"),
            "run `pinetboot plan` to see the full error, fix its cause",
        )),
        Some(Ok(p)) => {
            for c in &p.conflicts {
                out.push(Finding::problem(
                    "plan.conflict",
                    "no client is in conflict",
                    c.clone(),
                    "run `pinetboot plan` for the hint, fix the client root, then `pinetboot apply`",
                ));
            }
            if p.changes.is_empty() {
                out.push(Finding::ok(
                    "plan",
                    "`pinetboot plan` is empty (no drift)",
                    "the host matches the config",
                ));
            } else {
                let n = p.changes.len();
                let mut detail = format!(
                    "{n} pending change{}:",
                    if n == 1 { "" } else { "s" }
                );
                for c in p.changes.iter().take(8) {
                    detail.push_str(&format!("\n{c}"));
                }
                if n > 8 {
                    detail.push_str(&format!("\n… and {} more", n - 8));
                }
                out.push(Finding::warning(
                    "plan",
                    "`pinetboot plan` is empty (no drift)",
                    detail,
                    "review `pinetboot plan`, then run `pinetboot apply`",
                ));
            }
        }
        None => {}
    }
}

fn on_port(f: &Facts, port: u16) -> Vec<&Socket> {
    f.sockets.iter().filter(|s| s.port == port).collect()
}

fn dnsmasq(f: &Facts, out: &mut Vec<Finding>) {
    let check = "dnsmasq is installed";
    match &f.dnsmasq_binary {
        Some(p) => out.push(Finding::ok("dnsmasq.installed", check, p.clone())),
        None => out.push(Finding::problem(
            "dnsmasq.installed",
            check,
            "no dnsmasq on PATH or in /usr/sbin",
            "apt install dnsmasq",
        )),
    }
    let check = "dnsmasq is running in this network namespace";
    if f.dnsmasq.is_empty() {
        let elsewhere = match f.dnsmasq_elsewhere {
            0 => String::new(),
            n => format!(
                " ({n} dnsmasq process{} in other network namespaces)",
                if n == 1 { "" } else { "es" }
            ),
        };
        out.push(Finding::problem(
            "dnsmasq.running",
            check,
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
        out.push(Finding::ok("dnsmasq.running", check, list));
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
    let check = format!("dnsmasq listens for {what} (UDP {port})");
    let sockets = on_port(f, port);
    let foreign: Vec<&&Socket> = sockets.iter().filter(|s| !s.held_by("dnsmasq")).collect();
    if let Some(s) = foreign.first() {
        let fix = if port == 67 {
            "stop the other DHCP server (or keep it off this host): only one program can answer DHCP here, and the Pi needs dnsmasq's proxy offer; then restart dnsmasq".to_owned()
        } else {
            "stop the other TFTP server (e.g. `systemctl disable --now tftpd-hpa`), then restart dnsmasq: the Pi must fetch its files from dnsmasq's tftp-root".to_owned()
        };
        out.push(Finding::problem(
            id,
            check,
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
        out.push(Finding::problem(
            id,
            check,
            format!("nothing listens on UDP {port} in this network namespace"),
            fix,
        ));
        return;
    }
    out.push(Finding::ok(
        id,
        check,
        sockets
            .iter()
            .map(|s| format!("{} by {}", s.local(), s.holders()))
            .collect::<Vec<_>>()
            .join(", "),
    ));
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
    let check = match iface {
        Some(i) => format!("dnsmasq serves the boot interface {i}"),
        None => "dnsmasq serves the server address".to_owned(),
    };
    let mut wrong = Vec::new();
    if let Some(i) = iface
        && !dhcp.is_empty()
        && !dhcp.iter().any(|s| s.device.as_deref().is_none_or(|d| d == i))
    {
        wrong.push(format!(
            "its DHCP socket is bound to another interface ({})",
            dhcp.iter().map(|s| s.local()).collect::<Vec<_>>().join(", ")
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
            tftp.iter().map(|s| s.local()).collect::<Vec<_>>().join(", "),
            valid.address
        ));
    }
    if wrong.is_empty() {
        let devices = if f.devices_known {
            ""
        } else {
            " (ss is missing: device bindings not checked)"
        };
        out.push(Finding::ok(
            "dnsmasq.interface",
            check,
            format!(
                "DHCP on {}, TFTP on {}{devices}",
                dhcp.iter().map(|s| s.local()).collect::<Vec<_>>().join(", "),
                tftp.iter().map(|s| s.local()).collect::<Vec<_>>().join(", ")
            ),
        ));
    } else {
        out.push(Finding::problem(
            "dnsmasq.interface",
            check,
            wrong.join("; "),
            format!(
                "the running dnsmasq does not use pinetboot's drop-in as written (interface={}, bind-interfaces): another config sets interface=/listen-address= for this instance; remove those or run a separate instance, then restart dnsmasq",
                iface.unwrap_or("…")
            ),
        ));
    }
}

fn dns_port(f: &Facts, out: &mut Vec<Finding>) {
    let check = "no DNS clash on port 53";
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
        out.push(Finding::warning(
            "dnsmasq.dns",
            check,
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
        out.push(Finding::warning(
            "dnsmasq.dns",
            check,
            format!("pinetboot's drop-in lacks port=0; {others}"),
            "run `pinetboot apply` to restore the drop-in",
        ));
    } else {
        out.push(Finding::ok(
            "dnsmasq.dns",
            check,
            format!("pinetboot's dnsmasq serves no DNS (port=0); {others}"),
        ));
    }
}

/// `dhcp-range` in the boot network, unscoped `pxe-service` for BIOS clients, `port=` settings
/// in dnsmasq configs other than pinetboot's drop-in.
fn other_configs(f: &Facts, valid: &Valid, out: &mut Vec<Finding>) {
    let check = "no other dnsmasq config claims the boot network";
    let mut found = false;
    for file in &f.confs {
        for (line, key, value) in conf_lines(&file.text) {
            let value = value.unwrap_or("");
            let at = format!("{}:{line}: {key}={value}", file.path);
            match key {
                "dhcp-range" if range_start(value).is_some_and(|a| valid.network.contains(a)) => {
                    found = true;
                    out.push(Finding::problem(
                        "dnsmasq.config",
                        check,
                        format!("{at} also serves the boot network {}", valid.network),
                        format!(
                            "remove that line or move it to another network: dnsmasq reads every file in /etc/dnsmasq.d, and two DHCP configurations for {} make the Pi's proxy offer unreliable (a full range also puts a second DHCP server beside your router)",
                            valid.network
                        ),
                    ));
                }
                "pxe-service" if unscoped_bios_pxe(value) => {
                    found = true;
                    out.push(Finding::problem(
                        "dnsmasq.config",
                        check,
                        format!("{at} is offered to every BIOS PXE client, and a Pi 4 asks as one (option 93 = 0)"),
                        "scope it with tag: (e.g. `dhcp-match=set:bios,option:client-arch,0` plus a MAC tag for the PCs) or remove it; pinetboot's own entry is `tag:pinetboot`",
                    ));
                }
                "port" if value != "0" => {
                    found = true;
                    out.push(Finding::warning(
                        "dnsmasq.config",
                        check,
                        format!("{at}: a dnsmasq reading this and pinetboot's drop-in (port=0) gets whichever port= comes last"),
                        "remove it if this instance should serve no DNS, or run pinetboot's dnsmasq as its own instance; DNS in the same instance clashes with a resolver on :53",
                    ));
                }
                _ => {}
            }
        }
    }
    if !found {
        out.push(Finding::ok(
            "dnsmasq.config",
            check,
            format!(
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
            ),
        ));
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

fn address(f: &Facts, valid: &Valid, out: &mut Vec<Finding>) {
    let check = format!("server address {} is on a local interface", valid.address);
    let ifaces = match &f.interfaces {
        Ok(i) => i,
        Err(e) => {
            out.push(Finding::problem(
                "server.address",
                check,
                format!("cannot list interfaces: {e}"),
                "install iproute2 (`ip`)",
            ));
            return;
        }
    };
    let carrier = ifaces
        .iter()
        .find_map(|i| i.addrs.iter().find(|(a, _)| *a == valid.address).map(|a| (i, a.1)));
    let boot_iface_name = valid
        .interface
        .clone()
        .or_else(|| carrier.map(|(i, _)| i.name.clone()));
    match carrier {
        None => out.push(Finding::problem(
            "server.address",
            check,
            format!(
                "no interface in this network namespace has {} (it has: {})",
                valid.address,
                ifaces
                    .iter()
                    .flat_map(|i| i.addrs.iter().map(move |(a, p)| format!("{a}/{p} on {}", i.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "give the boot interface its address (`ip addr add {}/{} dev {}`, and make it permanent in the network configuration), or correct server.address: the Pis fetch from it over TFTP and NFS",
                valid.address,
                valid.network.prefix(),
                valid.interface.as_deref().unwrap_or("IFACE")
            ),
        )),
        Some((i, prefix)) if valid.interface.as_deref().is_some_and(|n| n != i.name) => {
            out.push(Finding::problem(
                "server.address",
                check,
                format!(
                    "{} is on {}, but server.interface is {}",
                    valid.address,
                    i.name,
                    valid.interface.as_deref().unwrap_or_default()
                ),
                format!(
                    "set server.interface to {} or move the address to {} (dnsmasq answers only on server.interface): `ip addr add {}/{prefix} dev {}`",
                    i.name,
                    valid.interface.as_deref().unwrap_or_default(),
                    valid.address,
                    valid.interface.as_deref().unwrap_or_default()
                ),
            ));
        }
        Some((i, prefix)) => {
            let local = local_net(valid.address, prefix);
            if local == valid.network {
                out.push(Finding::ok(
                    "server.address",
                    check,
                    format!(
                        "{}/{prefix} on {}, in the boot network {}",
                        valid.address, i.name, valid.network
                    ),
                ));
            } else {
                out.push(Finding::warning(
                    "server.address",
                    check,
                    format!(
                        "{}/{prefix} on {} makes the local network {local}, but the config's boot network is {}",
                        valid.address, i.name, valid.network
                    ),
                    format!(
                        "make them agree: server.network: {local} in the config, or `ip addr` with /{} on {}",
                        valid.network.prefix(),
                        i.name
                    ),
                ));
            }
        }
    }
    let Some(name) = boot_iface_name else {
        return;
    };
    let check = format!("boot interface {name} is up");
    match ifaces.iter().find(|i| i.name == name) {
        None => out.push(Finding::problem(
            "server.interface",
            check,
            format!(
                "there is no interface {name} in this network namespace (there are: {})",
                ifaces
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "correct server.interface in the config (`ip link` lists the interfaces), then `pinetboot apply`",
        )),
        Some(i) if !i.up => out.push(Finding::problem(
            "server.interface",
            check,
            format!("{name} is administratively down"),
            format!("`ip link set {name} up` (and enable it in the network configuration)"),
        )),
        Some(i) if !i.carrier => out.push(Finding::problem(
            "server.interface",
            check,
            format!("{name} is up but has no carrier (no link)"),
            "check the cable and the switch port the Pis are on",
        )),
        Some(_) => out.push(Finding::ok(
            "server.interface",
            check,
            format!("{name}: up, carrier"),
        )),
    }
}

fn local_net(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(addr) & mask))
        .parse()
        .expect("a masked address is a network")
}

/// Whether `user` may use `meta` with the permission bits in `need` (4 read, 1 execute).
pub fn may(user: &User, meta: &Meta, need: u32) -> bool {
    if user.uid == 0 {
        return true;
    }
    let bits = if meta.uid == user.uid {
        meta.mode >> 6
    } else if meta.gid == user.gid {
        meta.mode >> 3
    } else {
        meta.mode
    } & 7;
    bits & need == need
}

fn client(f: &Facts, c: &ClientFacts, out: &mut Vec<Finding>) {
    let id = |what: &str| format!("client.{}.{what}", c.name);
    let check = format!("{} is bind-mounted onto {}", c.name, c.target);
    let Some(source) = &c.source else {
        out.push(Finding::problem(
            id("mount"),
            check,
            format!(
                "pinetboot has not set up {} yet (no record in the state file)",
                c.name
            ),
            "run `pinetboot apply`",
        ));
        return;
    };
    let remount = format!(
        "`mount --bind {source} {}` (or `mount {}`: the line is in pinetboot's fstab block), or `pinetboot apply`",
        c.target, c.target
    );
    if !c.mounted {
        out.push(Finding::problem(
            id("mount"),
            check,
            format!(
                "nothing is mounted on {}: the Pi with serial {} finds no boot files",
                c.target, c.serial
            ),
            remount,
        ));
        return;
    }
    match &c.same_folder {
        Ok(Some(true)) => out.push(Finding::ok(
            id("mount"),
            check,
            format!("{} shows {source}", c.target),
        )),
        Ok(_) => out.push(Finding::problem(
            id("mount"),
            check,
            format!(
                "{} is mounted, but not from {source} (another device or inode)",
                c.target
            ),
            format!("`umount {}`, then {remount}", c.target),
        )),
        Err(e) => out.push(Finding::problem(
            id("mount"),
            check,
            format!("cannot compare {} with {source}: {e}", c.target),
            "inspect the client root (a planted symlink?), then `pinetboot plan`",
        )),
    }
    // What the TFTP server's user can reach.
    let user = &f.tftp_user;
    let check = format!(
        "{} is readable by the TFTP server's user {}",
        c.target, user.name
    );
    let mut blocked = Vec::new();
    for e in &c.components {
        match &e.meta {
            Ok(Some(m)) if m.dir && !may(user, m, 1) => blocked.push(format!(
                "{} ({:04o}, owner {}:{}) cannot be entered",
                e.path, m.mode, m.uid, m.gid
            )),
            Ok(Some(_)) => {}
            Ok(None) => blocked.push(format!("{} does not exist", e.path)),
            Err(err) => blocked.push(format!("{}: {err}", e.path)),
        }
    }
    if let Some(last) = c.components.last()
        && let Ok(Some(m)) = &last.meta
        && m.dir
        && !may(user, m, 4)
    {
        blocked.push(format!("{} ({:04o}) cannot be listed", last.path, m.mode));
    }
    if blocked.is_empty() {
        out.push(Finding::ok(
            id("access"),
            check,
            format!("every folder down to it can be entered ({})", user.source),
        ));
    } else {
        out.push(Finding::problem(
            id("access"),
            check,
            format!(
                "{} (uid {}, gid {}; {})",
                blocked.join("; "),
                user.uid,
                user.gid,
                user.source
            ),
            format!(
                "`chmod a+rx` the folders named above (0755; never 0777): dnsmasq drops root and serves as {}",
                user.name
            ),
        ));
        return;
    }
    let check = format!("{}/start4.elf is there and world-readable", c.target);
    let path = &c.start4.path;
    match &c.start4.meta {
        Ok(Some(m)) if m.file && may(user, m, 4) => out.push(Finding::ok(
            id("start4"),
            check,
            format!("{:04o}", m.mode),
        )),
        Ok(Some(m)) if m.file => out.push(Finding::problem(
            id("start4"),
            check,
            format!(
                "{path} ({:04o}, owner {}:{}) cannot be read by {}",
                m.mode, m.uid, m.gid, user.name
            ),
            format!("`chmod a+r {path}` (0644)"),
        )),
        Ok(Some(_)) => out.push(Finding::problem(
            id("start4"),
            check,
            format!("{path} is not a regular file"),
            "put the firmware's start4.elf there (from the image's boot folder)",
        )),
        Ok(None) => out.push(Finding::problem(
            id("start4"),
            check,
            format!(
                "{path} is missing: the Pi probes SERIAL/start4.elf first and, without it, falls back to the TFTP root"
            ),
            format!(
                "copy start4.elf (and fixup4.dat) from the image's boot folder into {source}, or declare them under images.NAME.files and run `pinetboot apply`"
            ),
        )),
        Err(e) => out.push(Finding::problem(
            id("start4"),
            check,
            format!("{path}: {e}"),
            "check the file's folder and filesystem",
        )),
    }
}

fn nfs(f: &Facts, out: &mut Vec<Finding>) {
    let n = &f.nfs;
    let check = "the NFS server is installed";
    if n.installed {
        out.push(Finding::ok("nfs.installed", check, "exportfs found"));
    } else {
        out.push(Finding::problem(
            "nfs.installed",
            check,
            "no exportfs: nfs-kernel-server is not installed",
            "apt install nfs-kernel-server",
        ));
    }
    let check = "the kernel NFS server is running";
    let running = n.mounted && n.threads.is_none_or(|t| t > 0);
    if !running {
        let why = if !n.in_kernel {
            "the kernel has no nfsd (not in /proc/filesystems) and /proc/fs/nfsd is not mounted"
                .to_owned()
        } else if !n.mounted {
            "/proc/fs/nfsd is not mounted".to_owned()
        } else {
            "nfsd runs no threads (/proc/fs/nfsd/threads is 0)".to_owned()
        };
        out.push(Finding::problem(
            "nfs.running",
            check,
            format!("{why}: no Pi can mount its root (exports were not checked)"),
            FIX_NFS_NOT_RUNNING,
        ));
        return;
    }
    out.push(Finding::ok(
        "nfs.running",
        check,
        match n.threads {
            Some(t) => format!("/proc/fs/nfsd mounted, {t} threads"),
            None => "/proc/fs/nfsd mounted".to_owned(),
        },
    ));
    let Some(exports) = &n.exports else {
        return;
    };
    let exports = match exports {
        Ok(e) => e,
        Err(e) => {
            out.push(Finding::problem(
                "nfs.exports",
                "exportfs -v lists the client roots",
                e.clone(),
                "run `exportfs -ra` and read its errors",
            ));
            return;
        }
    };
    for c in &f.clients {
        let check = format!("{} is exported to {}", c.root, c.export_scope);
        let mine: Vec<_> = exports.iter().filter(|e| e.path == c.root).collect();
        if mine.iter().any(|e| e.client == c.export_scope) {
            out.push(Finding::ok(
                format!("client.{}.export", c.name),
                check,
                "listed by exportfs -v",
            ));
        } else if mine.is_empty() {
            out.push(Finding::problem(
                format!("client.{}.export", c.name),
                check,
                format!("exportfs -v does not list {}", c.root),
                "`exportfs -ra` (pinetboot apply runs it when the exports drop-in changes); if it stays missing, `exportfs -ra` prints why",
            ));
        } else {
            out.push(Finding::problem(
                format!("client.{}.export", c.name),
                check,
                format!(
                    "{} is exported to {}, not to {}",
                    c.root,
                    mine.iter()
                        .map(|e| e.client.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    c.export_scope
                ),
                "another exports file names this path: remove that line, then `exportfs -ra`",
            ));
        }
    }
}

/// Counts per severity: (ok, warnings, problems).
pub fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s| findings.iter().filter(|f| f.severity == s).count();
    (n(Severity::Ok), n(Severity::Warning), n(Severity::Problem))
}
