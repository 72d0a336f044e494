//! Who this host is, for finding its server in a fleet: its host name and the IPv4
//! addresses on its interfaces (those of the network namespace pinetboot runs in).

use std::net::Ipv4Addr;

use crate::config::Identity;
use crate::doctor::{Runner, SystemRunner};

/// This host's name (`uname -n`) and addresses (`ip -j -4 addr show`, loopback left out). Without `ip` the
/// addresses are empty and a warning is logged: the server is then found by name only.
pub fn this_host() -> Identity {
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let addresses = match SystemRunner
        .run("ip", &["-j", "-4", "addr", "show"])
        .and_then(|t| crate::doctor::facts::parse_ip_addr(&t))
    {
        Ok(ifaces) => ifaces
            .into_iter()
            .flat_map(|i| i.addrs.into_iter().map(|(a, _)| a))
            .filter(|a| !a.is_loopback())
            .collect::<Vec<Ipv4Addr>>(),
        Err(why) => {
            tracing::warn!(%why, "cannot list this host's addresses; finding the server by hostname only");
            Vec::new()
        }
    };
    Identity {
        hostname,
        addresses,
    }
}
