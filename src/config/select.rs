//! Which server of a fleet this host is: named (`--server`, or `server:` in the pull
//! settings), else the server named by this host's hostname, else the one whose `address` is
//! on a local interface. None or several matching is an error listing the candidates.

use std::net::Ipv4Addr;

use super::validate::{Fleet, Valid};

/// What this host knows about itself, for finding its server in a fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The host name (`uname -n`).
    pub hostname: String,
    /// The IPv4 addresses on its interfaces.
    pub addresses: Vec<Ipv4Addr>,
}

/// Why no one server could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The named server is not in the file.
    #[error("server `{wanted}` is not declared in the config (servers: {names})")]
    Unknown {
        /// The name asked for.
        wanted: String,
        /// The declared servers.
        names: String,
    },
    /// A name was given for a file that has a single unnamed `server:`.
    #[error(
        "server `{wanted}` is asked for, and the config describes one server without a name (no `servers:`)"
    )]
    NotAFleet {
        /// The name asked for.
        wanted: String,
    },
    /// Nothing about this host matches a server.
    #[error(
        "this host ({hostname}, addresses {addresses}) is none of the config's servers: {candidates}"
    )]
    NoMatch {
        /// This host's name.
        hostname: String,
        /// This host's addresses.
        addresses: String,
        /// Each server with its address.
        candidates: String,
    },
    /// Several servers' addresses are on this host.
    #[error("this host has the addresses of several servers: {candidates}")]
    Several {
        /// The matching servers with their addresses.
        candidates: String,
    },
}

impl SelectError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            SelectError::NotAFleet { .. } => {
                "leave out --server (and `server:` in /etc/pinetboot/source.yaml) for a file with one `server:`"
            }
            _ => {
                "pass --server NAME (or set `server:` in /etc/pinetboot/source.yaml); by default the server is the one named by this host's hostname, else the one whose address is on this host"
            }
        }
    }
}

impl Fleet {
    /// The names of the servers, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(|s| s.server.as_deref().unwrap_or("(unnamed)"))
            .collect()
    }

    /// The server this host is: `wanted` by name, else by `identity` (asked only for a fleet
    /// of more than one server). A file with one unnamed `server:` is always that server.
    pub fn select(
        mut self,
        wanted: Option<&str>,
        identity: impl FnOnce() -> Identity,
    ) -> Result<Valid, SelectError> {
        let fleet = self.servers.iter().any(|s| s.server.is_some());
        if let Some(w) = wanted {
            if !fleet {
                return Err(SelectError::NotAFleet { wanted: w.into() });
            }
            return match self
                .servers
                .iter()
                .position(|s| s.server.as_deref() == Some(w))
            {
                Some(i) => Ok(self.servers.swap_remove(i)),
                None => Err(SelectError::Unknown {
                    wanted: w.into(),
                    names: self.names().join(", "),
                }),
            };
        }
        if !fleet {
            return Ok(self.servers.swap_remove(0));
        }
        let me = identity();
        let short = me.hostname.split('.').next().unwrap_or_default();
        if let Some(i) = self.servers.iter().position(|s| {
            s.server.as_deref().is_some_and(|n| {
                n.eq_ignore_ascii_case(&me.hostname) || n.eq_ignore_ascii_case(short)
            })
        }) {
            return Ok(self.servers.swap_remove(i));
        }
        let listed = |v: &Valid| {
            format!(
                "{} ({})",
                v.server.as_deref().unwrap_or_default(),
                v.address
            )
        };
        let local: Vec<usize> = (0..self.servers.len())
            .filter(|&i| me.addresses.contains(&self.servers[i].address))
            .collect();
        match local[..] {
            [one] => Ok(self.servers.swap_remove(one)),
            [] => Err(SelectError::NoMatch {
                hostname: me.hostname.clone(),
                addresses: if me.addresses.is_empty() {
                    "none".into()
                } else {
                    me.addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                candidates: self
                    .servers
                    .iter()
                    .map(listed)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            _ => Err(SelectError::Several {
                candidates: local
                    .iter()
                    .map(|&i| listed(&self.servers[i]))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const FLEET: &str = "
servers:
  lab-a: {address: 10.1.0.1, network: 10.1.0.0/24}
  lab-b: {address: 10.2.0.1, network: 10.2.0.0/24}
images:
  os: {source: /srv/os}
defaults: {image: os}
clients:
  a1: {serial: aaaa0001, address: 10.1.0.11}
  b1: {serial: bbbb0001, address: 10.2.0.11}
  b2: {serial: bbbb0002, server: lab-b}
";

    fn fleet() -> Fleet {
        crate::config::load_fleet_str(Path::new("fleet.yaml"), FLEET).expect("valid fleet")
    }

    fn me(hostname: &str, addresses: &[&str]) -> Identity {
        Identity {
            hostname: hostname.into(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn clients(v: &Valid) -> Vec<&str> {
        v.clients.keys().map(String::as_str).collect()
    }

    #[test]
    fn each_server_holds_only_its_clients() {
        let f = fleet();
        assert_eq!(f.names(), ["lab-a", "lab-b"]);
        assert_eq!(clients(&f.servers[0]), ["a1"]);
        assert_eq!(clients(&f.servers[1]), ["b1", "b2"]);
        assert_eq!(f.servers[1].nfs_scope, "10.2.0.0/24");
    }

    #[test]
    fn a_fleet_server_holds_only_the_images_its_clients_use() {
        let two = "
servers:
  a: {address: 10.1.0.1, network: 10.1.0.0/24}
  b: {address: 10.2.0.1, network: 10.2.0.0/24}
images:
  only-a: {source: /srv/a}
  only-b: {source: /srv/b}
clients:
  a1: {serial: aaaa0001, address: 10.1.0.11, image: only-a}
  b1: {serial: bbbb0001, address: 10.2.0.11, image: only-b}
";
        let f = crate::config::load_fleet_str(Path::new("two.yaml"), two).unwrap();
        let images = |v: &Valid| v.images.keys().cloned().collect::<Vec<_>>();
        assert_eq!(images(&f.servers[0]), ["only-a"]);
        assert_eq!(images(&f.servers[1]), ["only-b"]);
    }

    #[test]
    fn by_name_then_hostname_then_address() {
        let named = fleet().select(Some("lab-b"), || unreachable!()).unwrap();
        assert_eq!(named.server.as_deref(), Some("lab-b"));
        let by_host = fleet()
            .select(None, || me("LAB-A.example.org", &[]))
            .unwrap();
        assert_eq!(by_host.server.as_deref(), Some("lab-a"));
        let by_addr = fleet()
            .select(None, || me("boot", &["127.0.0.1", "10.2.0.1"]))
            .unwrap();
        assert_eq!(by_addr.server.as_deref(), Some("lab-b"));
    }

    #[test]
    fn none_or_several_or_unknown_is_an_error_naming_candidates() {
        let none = fleet()
            .select(None, || me("boot", &["192.168.1.2"]))
            .unwrap_err();
        assert_eq!(
            none.to_string(),
            "this host (boot, addresses 192.168.1.2) is none of the config's servers: lab-a (10.1.0.1), lab-b (10.2.0.1)"
        );
        let several = fleet()
            .select(None, || me("boot", &["10.1.0.1", "10.2.0.1"]))
            .unwrap_err();
        assert!(matches!(several, SelectError::Several { .. }), "{several}");
        assert!(
            several
                .to_string()
                .contains("lab-a (10.1.0.1), lab-b (10.2.0.1)")
        );
        let unknown = fleet()
            .select(Some("lab-c"), || unreachable!())
            .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "server `lab-c` is not declared in the config (servers: lab-a, lab-b)"
        );
    }

    #[test]
    fn a_single_server_file_is_its_server_and_refuses_a_name() {
        let one = "server: {address: 10.1.0.1, network: 10.1.0.0/24}\n";
        let f = crate::config::load_fleet_str(Path::new("one.yaml"), one).unwrap();
        let v = f.clone().select(None, || unreachable!()).unwrap();
        assert_eq!(v.server, None);
        assert!(matches!(
            f.select(Some("x"), || unreachable!()),
            Err(SelectError::NotAFleet { .. })
        ));
    }
}
