//! `server:` or `servers:`: the one server of a file, or each server of a fleet with its own
//! paths and NFS settings over the file's, and which server each client boots from.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::Checker;
use super::clients::Placed;
use super::fields::safe_name;
use super::nfs::{NfsFields, check_nfs};
use super::paths::check_paths;
use super::server::{ServerFields, check_server};
use crate::config::model::{Config, NfsOverride, Paths, PathsOverride};
use crate::config::net::{self, Ipv4Net};

/// One server's checked settings (fields left at a placeholder where they were invalid; the
/// errors say so and no `Valid` is returned then).
pub(super) struct ServerPart {
    /// The fleet name (`None` for a file's single `server:`).
    pub name: Option<String>,
    pub address: Option<Ipv4Addr>,
    pub network: Option<Ipv4Net>,
    pub interface: Option<String>,
    pub paths: Paths,
    pub nfs_options: Vec<String>,
    pub nfs_scope: String,
}

/// Checks `server:` or every entry of `servers:` (a file has exactly one of the two).
pub(super) fn check_servers(c: &mut Checker<'_>, cfg: &Config) -> Vec<ServerPart> {
    match (&cfg.server, cfg.servers.is_empty()) {
        (Some(_), false) => {
            c.at_key(
                "servers",
                "the file has both `server:` and `servers:`".into(),
                "a file describes one server (`server:`) or a fleet (`servers:`); move `server:` under `servers:` with a name",
            );
            Vec::new()
        }
        (None, true) if c.document_is_empty() => {
            c.at_start(
                "",
                "the config is empty".into(),
                "a config needs at least a `server:` section with `address` and `network`; see the examples",
            );
            Vec::new()
        }
        (None, true) => {
            c.at_start(
                "server",
                "the file names no boot server".into(),
                "add `server:` with the server's `address` and `network` (or a fleet under `servers:`)",
            );
            Vec::new()
        }
        (Some(s), true) => {
            let one = Entry {
                name: None,
                base: "server".into(),
                address: &s.address,
                network: &s.network,
                interface: s.interface.as_ref(),
                paths: &PathsOverride::default(),
                nfs: &NfsOverride::default(),
            };
            vec![check_one(c, cfg, &one)]
        }
        (None, false) => cfg
            .servers
            .iter()
            .map(|(name, s)| {
                let base = format!("servers.{name}");
                if let Err(why) = safe_name(name) {
                    c.at_key(
                        &base,
                        format!("server name `{name}` {why}"),
                        "name a server by letters, digits and dashes, e.g. its hostname",
                    );
                }
                let entry = Entry {
                    name: Some(name),
                    base,
                    address: &s.address,
                    network: &s.network,
                    interface: s.interface.as_ref(),
                    paths: &s.paths,
                    nfs: &s.nfs,
                };
                check_one(c, cfg, &entry)
            })
            .collect(),
    }
}

/// One server as written: the file's `server:` (no name, no overrides) or an entry of
/// `servers:`.
struct Entry<'a> {
    name: Option<&'a String>,
    /// `server` or `servers.NAME`.
    base: String,
    address: &'a str,
    network: &'a str,
    interface: Option<&'a String>,
    paths: &'a PathsOverride,
    nfs: &'a NfsOverride,
}

/// Checks one server: its own fields, then the file's `paths`/`nfs` with its overrides put
/// in, each error located where that field was written.
fn check_one(c: &mut Checker<'_>, cfg: &Config, e: &Entry<'_>) -> ServerPart {
    let base = &e.base;
    let fields = ServerFields {
        base: base.clone(),
        address: e.address,
        network: e.network,
        interface: e.interface,
    };
    let (address, network) = check_server(c, &fields);
    let at = |own: bool, section: &str, f: &str| {
        if own {
            format!("{base}.{section}.{f}")
        } else {
            format!("{section}.{f}")
        }
    };
    let (merged, own) = e.paths.over(&cfg.paths);
    let paths = check_paths(c, &merged, &|f| at(own.contains(&f), "paths", f));
    let nfs = NfsFields {
        options: e.nfs.options.as_deref().unwrap_or(&cfg.nfs.options),
        options_at: at(e.nfs.options.is_some(), "nfs", "options"),
        scope: e.nfs.scope.as_ref().or(cfg.nfs.scope.as_ref()),
        scope_at: at(e.nfs.scope.is_some(), "nfs", "scope"),
    };
    let (nfs_options, nfs_scope) = check_nfs(c, &nfs, network);
    ServerPart {
        name: e.name.cloned(),
        address,
        network,
        interface: e.interface.cloned(),
        paths,
        nfs_options,
        nfs_scope,
    }
}

/// Which server each client boots from: its `server:`, else the one server whose network
/// holds its `address`, else the only server. A client that cannot be placed is reported and
/// left out of the map.
pub(super) fn place(
    c: &mut Checker<'_>,
    cfg: &Config,
    servers: &[ServerPart],
) -> BTreeMap<String, Placed> {
    let fleet = cfg.server.is_none();
    let names = || {
        servers
            .iter()
            .filter_map(|s| s.name.as_deref())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let placed_on = |i: usize| Placed {
        server: i,
        network: servers[i].network,
        address: servers[i].address,
    };
    let mut out = BTreeMap::new();
    for (name, client) in &cfg.clients {
        let base = format!("clients.{name}");
        let index = match &client.server {
            Some(wanted) if !fleet => {
                c.at_value(
                    &format!("{base}.server"),
                    format!("server `{wanted}` is named, and this file has no `servers:`"),
                    "remove `server:` (every client boots from the file's one server), or declare the fleet under `servers:`",
                );
                None
            }
            Some(wanted) => {
                let found = servers
                    .iter()
                    .position(|s| s.name.as_deref() == Some(wanted.as_str()));
                if found.is_none() {
                    c.at_value(
                        &format!("{base}.server"),
                        format!("server `{wanted}` is not declared"),
                        &format!("declared servers: {}", names()),
                    );
                }
                found
            }
            None if servers.len() == 1 => Some(0),
            None => by_address(c, &base, client.address.as_deref(), servers, &names()),
        };
        if let Some(i) = index {
            out.insert(name.clone(), placed_on(i));
        }
    }
    out
}

/// The one server whose network holds `address`, or an error saying which candidates there
/// are.
fn by_address(
    c: &mut Checker<'_>,
    base: &str,
    address: Option<&str>,
    servers: &[ServerPart],
    names: &str,
) -> Option<usize> {
    let Some(text) = address else {
        c.at_key(
            base,
            "the client does not say which server it boots from".into(),
            &format!("set `server:` to one of: {names} (or give the client's `address`)"),
        );
        return None;
    };
    // A malformed address is reported by the client's own checks.
    let a: Ipv4Addr = text.parse().ok()?;
    let holding: Vec<usize> = (0..servers.len())
        .filter(|&i| servers[i].network.is_some_and(|n| net::is_host(&n, a)))
        .collect();
    match holding[..] {
        [one] => Some(one),
        [] => {
            c.at_value(
                &format!("{base}.address"),
                format!("{a} is in no server's boot network"),
                &format!("set `server:` to one of: {names}, and give an address in its network"),
            );
            None
        }
        _ => {
            let candidates: Vec<&str> = holding
                .iter()
                .filter_map(|&i| servers[i].name.as_deref())
                .collect();
            c.at_key(
                base,
                format!(
                    "{a} is in the boot network of servers {}",
                    candidates.join(" and ")
                ),
                "set `server:` to the one this Pi boots from",
            );
            None
        }
    }
}
