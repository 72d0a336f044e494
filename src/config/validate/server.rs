//! `server:`: the boot network, the server's address in it, the interface name.

use std::net::Ipv4Addr;

use super::Checker;
use super::fields::*;
use crate::config::model::Config;
use crate::config::net::{self, CidrError, Ipv4Net};

/// Checks `server:`; returns the address and network when they are usable.
pub(super) fn check_server(
    c: &mut Checker<'_>,
    cfg: &Config,
) -> (Option<Ipv4Addr>, Option<Ipv4Net>) {
    // A network with host bits set is judged by its prefix first, so the host-bits hint never
    // suggests a network that is refused anyway.
    let parsed = match net::parse(&cfg.server.network) {
        Err(CidrError::HostBits(n)) if n.prefix_len() > 30 || n.prefix_len() == 0 => Ok(n),
        other => other,
    };
    let network = match parsed {
        Ok(n) if n.prefix_len() > 30 => {
            c.at_value(
                "server.network",
                format!("`{}` leaves no room for Pis", cfg.server.network),
                "use the boot LAN's network, e.g. 192.168.2.0/24",
            );
            None
        }
        Ok(n) if n.prefix_len() == 0 => {
            c.at_value(
                "server.network",
                format!(
                    "`{}` is the whole internet, not a boot network",
                    cfg.server.network
                ),
                "use the boot LAN's network, e.g. 192.168.2.0/24",
            );
            None
        }
        Ok(n) => Some(n),
        Err(CidrError::HostBits(n)) => {
            c.at_value(
                "server.network",
                format!("`{}` has host bits set", cfg.server.network),
                &format!("did you mean {n}?"),
            );
            None
        }
        Err(CidrError::Malformed) => {
            c.at_value(
                "server.network",
                format!(
                    "`{}` is not an IPv4 network in CIDR form",
                    cfg.server.network
                ),
                "write the network and prefix length, e.g. 192.168.2.0/24",
            );
            None
        }
    };
    let address = ipv4(c, "server.address", &cfg.server.address);
    if let (Some(a), Some(n)) = (address, network)
        && !net::is_host(&n, a)
    {
        c.at_value(
            "server.address",
            format!("{a} is not a host address in the boot network {n}"),
            "the server's address must be on the network the Pis boot from",
        );
    }
    if let Some(ifname) = &cfg.server.interface
        && !valid_ifname(ifname)
    {
        c.at_value(
            "server.interface",
            format!("`{ifname}` is not a network interface name"),
            "use the name `ip link` shows, e.g. eth0 (at most 15 characters, no spaces or slashes)",
        );
    }
    (address, network)
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}
