//! `server:`: the boot network, the server's address in it, the interface name.

use std::net::Ipv4Addr;

use super::Checker;
use super::fields::*;
use crate::config::net::{self, CidrError, Ipv4Net};

/// One server's place on the network as written: `server:`, or one entry of `servers:`.
pub(super) struct ServerFields<'a> {
    /// Where it stands in the file: `server` or `servers.NAME`.
    pub base: String,
    pub address: &'a str,
    pub network: &'a str,
    pub interface: Option<&'a String>,
}

/// Checks a server's address, network and interface; returns the address and network when
/// they are usable.
pub(super) fn check_server(
    c: &mut Checker<'_>,
    server: &ServerFields<'_>,
) -> (Option<Ipv4Addr>, Option<Ipv4Net>) {
    let base = &server.base;
    let network_field = format!("{base}.network");
    let address_field = format!("{base}.address");
    // A network with host bits set is judged by its prefix first, so the host-bits hint never
    // suggests a network that is refused anyway.
    let parsed = match net::parse(server.network) {
        Err(CidrError::HostBits(n)) if n.prefix_len() > 30 || n.prefix_len() == 0 => Ok(n),
        other => other,
    };
    let network = match parsed {
        Ok(n) if n.prefix_len() > 30 => {
            c.at_value(
                &network_field,
                format!("`{}` leaves no room for Pis", server.network),
                "use the boot LAN's network, e.g. 192.168.2.0/24",
            );
            None
        }
        Ok(n) if n.prefix_len() == 0 => {
            c.at_value(
                &network_field,
                format!(
                    "`{}` is the whole internet, not a boot network",
                    server.network
                ),
                "use the boot LAN's network, e.g. 192.168.2.0/24",
            );
            None
        }
        Ok(n) => Some(n),
        Err(CidrError::HostBits(n)) => {
            c.at_value(
                &network_field,
                format!("`{}` has host bits set", server.network),
                &format!("did you mean {n}?"),
            );
            None
        }
        Err(CidrError::Malformed) => {
            c.at_value(
                &network_field,
                format!("`{}` is not an IPv4 network in CIDR form", server.network),
                "write the network and prefix length, e.g. 192.168.2.0/24",
            );
            None
        }
    };
    let address = ipv4(c, &address_field, server.address);
    if let (Some(a), Some(n)) = (address, network)
        && !net::is_host(&n, a)
    {
        c.at_value(
            &address_field,
            format!("{a} is not a host address in the boot network {n}"),
            "the server's address must be on the network the Pis boot from",
        );
    }
    if let Some(ifname) = server.interface
        && !valid_ifname(ifname)
    {
        c.at_value(
            &format!("{base}.interface"),
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
