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
                let mut detail = format!("{n} pending change{}:", if n == 1 { "" } else { "s" });
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
        out.push(Finding::ok(
            "dnsmasq.interface",
            check,
            format!(
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
    let carrier = ifaces.iter().find_map(|i| {
        i.addrs
            .iter()
            .find(|(a, _)| *a == valid.address)
            .map(|a| (i, a.1))
    });
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
    // Never `mount --bind SOURCE`: mount(8) would resolve a path inside the client root.
    let remount = format!(
        "`pinetboot mount` (mounts {source} by descriptor, refusing a symlink; pinetboot-mount.service does it at boot), or `pinetboot apply`"
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
    let (Some(exports), Ok(_)) = (&n.exports, &f.config) else {
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

#[cfg(test)]
mod tests {
    use super::super::facts::{
        ConfFile, Export, Iface, NfsFacts, PathEntry, PlanFacts, Process, Socket,
    };
    use super::*;

    fn valid() -> Valid {
        crate::config::load_str(
            std::path::Path::new("t.yaml"),
            "server: {address: 10.99.0.2, network: 10.99.0.0/24, interface: eth0}\n\
             images:\n  bw: {source: /srv/bw}\n\
             clients:\n  bw: {serial: 0c4c21e5, image: bw}\n",
        )
        .unwrap()
    }

    fn dir(path: &str, mode: u32) -> PathEntry {
        PathEntry {
            path: path.into(),
            meta: Ok(Some(Meta {
                mode,
                uid: 0,
                gid: 0,
                dir: true,
                file: false,
            })),
        }
    }

    fn sock(addr: &str, port: u16, device: Option<&str>, owner: (u32, &str)) -> Socket {
        Socket {
            addr: addr.parse().unwrap(),
            port,
            inode: u64::from(port),
            device: device.map(str::to_owned),
            owners: vec![(owner.0, owner.1.to_owned())],
        }
    }

    /// A healthy host with a running NFS server.
    fn healthy() -> Facts {
        Facts {
            config_path: "t.yaml".into(),
            config: Ok(valid()),
            real_host: false,
            dnsmasq_binary: Some("/usr/sbin/dnsmasq".into()),
            dnsmasq: vec![Process {
                pid: 42,
                comm: "dnsmasq".into(),
                uid: 65534,
                gid: 30,
                cmdline: vec!["dnsmasq".into()],
            }],
            dnsmasq_elsewhere: 0,
            sockets: vec![
                sock("0.0.0.0", 67, Some("eth0"), (42, "dnsmasq")),
                sock("10.99.0.2", 69, None, (42, "dnsmasq")),
                sock("127.0.0.53", 53, None, (7, "systemd-resolve")),
            ],
            devices_known: true,
            confs: vec![ConfFile {
                path: "/etc/dnsmasq.conf".into(),
                text: "#port=5353\n".into(),
            }],
            drop_in: Some("port=0\ninterface=eth0\n".into()),
            nfs: NfsFacts {
                installed: true,
                in_kernel: true,
                mounted: true,
                threads: Some(8),
                exports: Some(Ok(vec![Export {
                    path: "/nfs/bw".into(),
                    client: "10.99.0.0/24".into(),
                    options: "rw".into(),
                }])),
            },
            interfaces: Ok(vec![Iface {
                name: "eth0".into(),
                up: true,
                carrier: true,
                addrs: vec![("10.99.0.2".parse().unwrap(), 24)],
            }]),
            clients: vec![ClientFacts {
                name: "bw".into(),
                serial: "0c4c21e5".into(),
                root: "/nfs/bw".into(),
                target: "/tftpboot/0c4c21e5".into(),
                source: Some("/nfs/bw/boot/firmware".into()),
                mounted: true,
                same_folder: Ok(Some(true)),
                components: vec![
                    dir("/", 0o755),
                    dir("/tftpboot", 0o755),
                    dir("/tftpboot/0c4c21e5", 0o755),
                ],
                start4: PathEntry {
                    path: "/tftpboot/0c4c21e5/start4.elf".into(),
                    meta: Ok(Some(Meta {
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                        dir: false,
                        file: true,
                    })),
                },
                export_scope: "10.99.0.0/24".into(),
            }],
            tftp_user: User {
                name: "nobody".into(),
                uid: 65534,
                gid: 30,
                source: "test".into(),
            },
            state: Some(Ok(())),
            plan: Some(Ok(PlanFacts::default())),
        }
    }

    fn find<'a>(f: &'a [Finding], id: &str) -> &'a Finding {
        f.iter()
            .find(|x| x.id == id)
            .unwrap_or_else(|| panic!("no {id}: {f:#?}"))
    }

    fn not_ok(f: &[Finding]) -> Vec<(&str, Severity)> {
        f.iter()
            .filter(|x| x.severity != Severity::Ok)
            .map(|x| (x.id.as_str(), x.severity))
            .collect()
    }

    #[test]
    fn healthy_host_is_all_ok() {
        let f = all(&healthy());
        assert_eq!(not_ok(&f), vec![], "{f:#?}");
        assert!(
            find(&f, "dnsmasq.dns")
                .detail
                .contains("systemd-resolve (pid 7) on :53 is no clash")
        );
        assert_eq!(find(&f, "client.bw.export").severity, Severity::Ok);
        assert!(!crate::doctor::has_problem(&f));
    }

    #[test]
    fn nfs_not_running_skips_exports() {
        let mut h = healthy();
        h.nfs = NfsFacts {
            installed: true,
            ..NfsFacts::default()
        };
        let f = all(&h);
        assert_eq!(not_ok(&f), vec![("nfs.running", Severity::Problem)]);
        let n = find(&f, "nfs.running");
        assert_eq!(n.fix.as_deref(), Some(FIX_NFS_NOT_RUNNING));
        assert!(n.detail.starts_with("the kernel has no nfsd"));
        h.nfs.in_kernel = true;
        assert!(
            find(&all(&h), "nfs.running")
                .detail
                .starts_with("/proc/fs/nfsd is not mounted")
        );
        h.nfs.mounted = true;
        h.nfs.threads = Some(0);
        assert!(find(&all(&h), "nfs.running").detail.contains("no threads"));
    }

    #[test]
    fn exports_to_the_wrong_scope_or_missing() {
        let mut h = healthy();
        h.nfs.exports = Some(Ok(vec![Export {
            path: "/nfs/bw".into(),
            client: "*".into(),
            options: "rw".into(),
        }]));
        let e = find(&all(&h), "client.bw.export").clone();
        assert_eq!(e.severity, Severity::Problem);
        assert!(
            e.detail.contains("exported to *, not to 10.99.0.0/24"),
            "{e:?}"
        );
        h.nfs.exports = Some(Ok(vec![]));
        assert!(
            find(&all(&h), "client.bw.export")
                .detail
                .contains("does not list /nfs/bw")
        );
        h.nfs.installed = false;
        assert_eq!(find(&all(&h), "nfs.installed").severity, Severity::Problem);
    }

    #[test]
    fn dnsmasq_missing_and_foreign_ports() {
        let mut h = healthy();
        h.dnsmasq.clear();
        h.dnsmasq_elsewhere = 2;
        h.sockets = vec![
            sock("0.0.0.0", 67, None, (9, "dhcpd")),
            sock("0.0.0.0", 69, None, (10, "in.tftpd")),
        ];
        let f = all(&h);
        assert!(
            find(&f, "dnsmasq.running")
                .detail
                .contains("2 dnsmasq processes in other network namespaces")
        );
        let d = find(&f, "dnsmasq.dhcp");
        assert_eq!(d.severity, Severity::Problem);
        assert_eq!(
            d.detail,
            "UDP 67 (0.0.0.0:67) is held by dhcpd (pid 9), not dnsmasq"
        );
        assert!(
            find(&f, "dnsmasq.tftp")
                .fix
                .as_deref()
                .unwrap()
                .contains("tftpd-hpa")
        );
        h.sockets[0].owners.clear();
        assert!(find(&all(&h), "dnsmasq.dhcp").detail.contains("cannot see"));
        h.dnsmasq_binary = None;
        assert_eq!(
            find(&all(&h), "dnsmasq.installed").severity,
            Severity::Problem
        );
    }

    #[test]
    fn dnsmasq_without_its_sockets() {
        let mut h = healthy();
        h.sockets.retain(|s| s.port == 53);
        let f = all(&h);
        let d = find(&f, "dnsmasq.dhcp");
        assert_eq!(d.severity, Severity::Problem);
        assert!(d.fix.as_deref().unwrap().contains("without the DHCP part"));
        assert!(f.iter().all(|x| x.id != "dnsmasq.interface"));
    }

    #[test]
    fn wrong_interface_binding() {
        let mut h = healthy();
        h.sockets[0].device = Some("wlan0".into());
        h.sockets[1].addr = "127.0.0.1".parse().unwrap();
        let d = find(&all(&h), "dnsmasq.interface").clone();
        assert_eq!(d.severity, Severity::Problem);
        assert!(
            d.detail
                .contains("DHCP socket is bound to another interface (0.0.0.0%wlan0:67)"),
            "{d:?}"
        );
        assert!(
            d.detail
                .contains("TFTP sockets (127.0.0.1:69) do not take requests for 10.99.0.2")
        );
        // Unbound wildcard sockets serve every interface.
        let mut h = healthy();
        h.sockets[0].device = None;
        h.sockets[1].addr = "0.0.0.0".parse().unwrap();
        assert_eq!(find(&all(&h), "dnsmasq.interface").severity, Severity::Ok);
    }

    #[test]
    fn dns_in_the_serving_instance_is_a_warning() {
        let mut h = healthy();
        h.sockets.push(sock("0.0.0.0", 53, None, (42, "dnsmasq")));
        let f = all(&h);
        assert_eq!(not_ok(&f), vec![("dnsmasq.dns", Severity::Warning)]);
        assert!(!crate::doctor::has_problem(&f));
        let mut h = healthy();
        h.drop_in = Some("interface=eth0\n".into());
        assert!(
            find(&all(&h), "dnsmasq.dns")
                .detail
                .contains("lacks port=0")
        );
    }

    #[test]
    fn other_configs_claiming_the_network() {
        let mut h = healthy();
        h.confs.push(ConfFile {
            path: "/etc/dnsmasq.d/lan.conf".into(),
            text: "dhcp-range=set:lan,10.99.0.50,10.99.0.99,12h\n\
                   dhcp-range=192.168.7.10,192.168.7.20\n\
                   dhcp-range=tag:x,10.99.0.0,proxy  # proxy too\n\
                   pxe-service=x86PC,\"PC\",pxelinux\n\
                   pxe-service=tag:pc,x86PC,\"PC\",pxelinux\n\
                   pxe-service=X86-64_EFI,\"EFI\",grub\n\
                   port=53\nport=0\n"
                .into(),
        });
        let f: Vec<Finding> = all(&h)
            .into_iter()
            .filter(|x| x.id == "dnsmasq.config")
            .collect();
        let d: Vec<(&str, Severity)> = f.iter().map(|x| (x.detail.as_str(), x.severity)).collect();
        assert_eq!(d.len(), 4, "{d:#?}");
        assert!(
            d[0].0
                .starts_with("/etc/dnsmasq.d/lan.conf:1: dhcp-range=set:lan,10.99.0.50")
        );
        assert!(
            d[1].0
                .starts_with("/etc/dnsmasq.d/lan.conf:3: dhcp-range=tag:x,10.99.0.0,proxy also")
        );
        assert!(
            d[2].0
                .starts_with("/etc/dnsmasq.d/lan.conf:4: pxe-service=x86PC")
        );
        assert_eq!(d[3].1, Severity::Warning);
        assert!(d[3].0.starts_with("/etc/dnsmasq.d/lan.conf:7: port=53"));
    }

    #[test]
    fn address_missing_elsewhere_wrong_prefix_or_down() {
        let mut h = healthy();
        h.interfaces = Ok(vec![Iface {
            name: "eth0".into(),
            up: true,
            carrier: true,
            addrs: vec![("192.0.2.2".parse().unwrap(), 24)],
        }]);
        let f = all(&h);
        let a = find(&f, "server.address");
        assert_eq!(a.severity, Severity::Problem);
        assert!(a.detail.contains("it has: 192.0.2.2/24 on eth0"));
        assert!(
            a.fix
                .as_deref()
                .unwrap()
                .contains("ip addr add 10.99.0.2/24 dev eth0")
        );
        assert_eq!(find(&f, "server.interface").severity, Severity::Ok);
        // On another interface than server.interface.
        let mut h = healthy();
        if let Ok(i) = &mut h.interfaces {
            i[0].name = "eth1".into();
        }
        let f = all(&h);
        assert!(
            find(&f, "server.address")
                .detail
                .contains("is on eth1, but server.interface is eth0")
        );
        assert!(
            find(&f, "server.interface")
                .detail
                .contains("there is no interface eth0")
        );
        // A different prefix: a warning.
        let mut h = healthy();
        if let Ok(i) = &mut h.interfaces {
            i[0].addrs[0].1 = 16;
        }
        let a = find(&all(&h), "server.address").clone();
        assert_eq!(a.severity, Severity::Warning);
        assert!(a.detail.contains("local network 10.99.0.0/16"), "{a:?}");
        // Down, no carrier.
        let mut h = healthy();
        if let Ok(i) = &mut h.interfaces {
            i[0].carrier = false;
        }
        assert!(
            find(&all(&h), "server.interface")
                .detail
                .contains("no carrier")
        );
        if let Ok(i) = &mut h.interfaces {
            i[0].up = false;
        }
        assert!(
            find(&all(&h), "server.interface")
                .detail
                .contains("administratively down")
        );
    }

    #[test]
    fn client_mount_states() {
        let mut h = healthy();
        h.clients[0].source = None;
        assert!(
            find(&all(&h), "client.bw.mount")
                .detail
                .contains("has not set up bw")
        );
        let mut h = healthy();
        h.clients[0].mounted = false;
        let f = all(&h);
        assert!(
            find(&f, "client.bw.mount")
                .detail
                .starts_with("nothing is mounted on /tftpboot/0c4c21e5")
        );
        assert!(
            f.iter().all(|x| x.id != "client.bw.access"),
            "no noise after the root cause"
        );
        h.clients[0].mounted = true;
        h.clients[0].same_folder = Ok(Some(false));
        assert!(
            find(&all(&h), "client.bw.mount")
                .detail
                .contains("not from /nfs/bw/boot/firmware")
        );
    }

    #[test]
    fn access_by_the_tftp_user() {
        let mut h = healthy();
        h.clients[0].components[2] = dir("/tftpboot/0c4c21e5", 0o700);
        let a = find(&all(&h), "client.bw.access").clone();
        assert_eq!(a.severity, Severity::Problem);
        assert!(
            a.detail
                .starts_with("/tftpboot/0c4c21e5 (0700, owner 0:0) cannot be entered"),
            "{a:?}"
        );
        // Group bits count for the group dnsmasq runs as.
        let mut h = healthy();
        h.clients[0].components[1] = PathEntry {
            path: "/tftpboot".into(),
            meta: Ok(Some(Meta {
                mode: 0o750,
                uid: 0,
                gid: 30,
                dir: true,
                file: false,
            })),
        };
        assert_eq!(find(&all(&h), "client.bw.access").severity, Severity::Ok);
        h.tftp_user.gid = 31;
        assert_eq!(
            find(&all(&h), "client.bw.access").severity,
            Severity::Problem
        );
        // Listing needs read on the serial folder itself.
        let mut h = healthy();
        h.clients[0].components[2] = dir("/tftpboot/0c4c21e5", 0o711);
        assert!(
            find(&all(&h), "client.bw.access")
                .detail
                .contains("cannot be listed")
        );
    }

    #[test]
    fn start4_missing_or_private() {
        let mut h = healthy();
        h.clients[0].start4.meta = Ok(None);
        let s = find(&all(&h), "client.bw.start4").clone();
        assert_eq!(s.severity, Severity::Problem);
        assert!(s.detail.contains("start4.elf is missing"));
        h.clients[0].start4.meta = Ok(Some(Meta {
            mode: 0o600,
            uid: 0,
            gid: 0,
            dir: false,
            file: true,
        }));
        let s = find(&all(&h), "client.bw.start4").clone();
        assert!(
            s.detail
                .contains("(0600, owner 0:0) cannot be read by nobody"),
            "{s:?}"
        );
        assert_eq!(
            s.fix.as_deref(),
            Some("`chmod a+r /tftpboot/0c4c21e5/start4.elf` (0644)")
        );
    }

    #[test]
    fn config_state_and_drift() {
        let mut h = healthy();
        h.plan = Some(Ok(PlanFacts {
            changes: vec![
                "+ bind mount /tftpboot/0c4c21e5 (from /nfs/bw/boot/firmware (not mounted))".into(),
            ],
            conflicts: vec![],
        }));
        let f = all(&h);
        assert_eq!(not_ok(&f), vec![("plan", Severity::Warning)]);
        assert!(
            find(&f, "plan")
                .detail
                .starts_with("1 pending change:\n+ bind mount")
        );
        h.plan = Some(Ok(PlanFacts {
            changes: vec![],
            conflicts: vec!["bw: /nfs/bw/etc is a symlink".into()],
        }));
        assert_eq!(find(&all(&h), "plan.conflict").severity, Severity::Problem);
        h.state = Some(Err("state.json is not a pinetboot state file".into()));
        assert_eq!(find(&all(&h), "state").severity, Severity::Problem);
        let mut h = healthy();
        h.config = Err("t.yaml:1:9: server.address: bad".into());
        let f = all(&h);
        assert_eq!(f[0].id, "config");
        assert_eq!(f[0].severity, Severity::Problem);
        assert!(
            f.iter()
                .all(|x| !x.id.starts_with("client.") && x.id != "server.address")
        );
        assert!(f.iter().any(|x| x.id == "dnsmasq.running"));
    }

    #[test]
    fn real_host_dnsmasq_without_the_drop_in_folder() {
        let mut h = healthy();
        h.real_host = true;
        h.dnsmasq[0].cmdline = vec!["dnsmasq".into(), "-C".into(), "/etc/other.conf".into()];
        let d = find(&all(&h), "dnsmasq.drop-in").clone();
        assert_eq!(d.severity, Severity::Warning);
        assert!(d.detail.contains("--conf-file=/etc/other.conf"), "{d:?}");
        h.dnsmasq[0].cmdline = vec![
            "/usr/sbin/dnsmasq".into(),
            "-x".into(),
            "/run/dnsmasq/dnsmasq.pid".into(),
            "-7".into(),
            "/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new".into(),
        ];
        assert!(all(&h).iter().all(|x| x.id != "dnsmasq.drop-in"));
    }
}
