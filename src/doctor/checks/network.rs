//! The server address is on a local interface, in `server.network`, on an interface that is up
//! with a carrier.

use super::Check;
use crate::config::Valid;
use crate::config::net::Ipv4Net;
use crate::doctor::Finding;
use crate::doctor::facts::Facts;

/// `server.address` is on a local interface whose network is `server.network`, and
/// `server.interface` (when set) is up with a carrier.
pub(super) fn address(f: &Facts, valid: &Valid, out: &mut Vec<Finding>) {
    let check = Check::new(
        "server.address",
        format!("server address {} is on a local interface", valid.address),
    );
    let ifaces = match &f.interfaces {
        Ok(i) => i,
        Err(e) => {
            out.push(check.problem(
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
        None => out.push(check.problem(
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
                valid.network.prefix_len(),
                valid.interface.as_deref().unwrap_or("IFACE")
            ),
        )),
        Some((i, prefix)) if valid.interface.as_deref().is_some_and(|n| n != i.name) => {
            out.push(check.problem(
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
            let local = Ipv4Net::new(valid.address, prefix.min(32))
                .expect("a prefix of at most 32")
                .trunc();
            if local == valid.network {
                out.push(check.ok(
                    format!(
                        "{}/{prefix} on {}, in the boot network {}",
                        valid.address, i.name, valid.network
                    ),
                ));
            } else {
                out.push(check.warning(
                    format!(
                        "{}/{prefix} on {} makes the local network {local}, but the config's boot network is {}",
                        valid.address, i.name, valid.network
                    ),
                    format!(
                        "make them agree: server.network: {local} in the config, or `ip addr` with /{} on {}",
                        valid.network.prefix_len(),
                        i.name
                    ),
                ));
            }
        }
    }
    let Some(name) = boot_iface_name else {
        return;
    };
    let check = Check::new("server.interface", format!("boot interface {name} is up"));
    match ifaces.iter().find(|i| i.name == name) {
        None => out.push(check.problem(
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
        Some(i) if !i.up => out.push(check.problem(
            format!("{name} is administratively down"),
            format!("`ip link set {name} up` (and enable it in the network configuration)"),
        )),
        Some(i) if !i.carrier => out.push(check.problem(
            format!("{name} is up but has no carrier (no link)"),
            "check the cable and the switch port the Pis are on",
        )),
        Some(_) => out.push(check.ok(
            format!("{name}: up, carrier"),
        )),
    }
}
