//! `nfs:`: the exports options (known, no opposites) and the scope clients are exported to.

use std::collections::HashMap;

use super::Checker;
use super::fields::*;
use crate::config::net::{self, CidrError, Ipv4Net};

/// The exports(5) options pinetboot accepts: flags, then options that take `=value`.
pub(super) const EXPORT_FLAGS: &[&str] = &[
    "rw",
    "ro",
    "sync",
    "async",
    "secure",
    "insecure",
    "wdelay",
    "no_wdelay",
    "hide",
    "nohide",
    "crossmnt",
    "subtree_check",
    "no_subtree_check",
    "insecure_locks",
    "no_auth_nlm",
    "secure_locks",
    "auth_nlm",
    "mountpoint",
    "mp",
    "nordirplus",
    "pnfs",
    "no_pnfs",
    "security_label",
    "root_squash",
    "no_root_squash",
    "all_squash",
    "no_all_squash",
];
pub(super) const EXPORT_VALUED: &[&str] = &[
    "mountpoint",
    "mp",
    "fsid",
    "refer",
    "replicas",
    "sec",
    "anonuid",
    "anongid",
    "xprtsec",
];
pub(super) const EXPORT_OPPOSITES: &[(&str, &str)] = &[
    ("rw", "ro"),
    ("sync", "async"),
    ("secure", "insecure"),
    ("wdelay", "no_wdelay"),
    ("hide", "nohide"),
    ("subtree_check", "no_subtree_check"),
    ("root_squash", "no_root_squash"),
    ("all_squash", "no_all_squash"),
    ("pnfs", "no_pnfs"),
];

/// One server's NFS settings as written, and where: `nfs.options` / `nfs.scope`, or a fleet
/// server's own `servers.NAME.nfs.…`.
pub(super) struct NfsFields<'a> {
    pub options: &'a [String],
    pub options_at: String,
    pub scope: Option<&'a String>,
    pub scope_at: String,
}

/// Checks the export options and scope; returns them with the scope defaulted to `network`.
pub(super) fn check_nfs(
    c: &mut Checker<'_>,
    nfs: &NfsFields<'_>,
    network: Option<Ipv4Net>,
) -> (Vec<String>, String) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, opt) in nfs.options.iter().enumerate() {
        let field = format!("{}[{i}]", nfs.options_at);
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt.as_str(), None),
        };
        let known = match value {
            None => EXPORT_FLAGS.contains(&name),
            Some(v) => EXPORT_VALUED.contains(&name) && !v.is_empty(),
        };
        if opt.contains(['*', '(', ')', ',', ' ', '\t']) || opt.chars().any(char::is_control) {
            c.at_value(
                &field,
                format!("`{opt}` is not a single export option"),
                "list one option per item, e.g. [rw, sync, no_subtree_check]; who may mount goes in nfs.scope",
            );
        } else if !known {
            c.at_value(
                &field,
                format!("`{opt}` is not an exports(5) option"),
                "see `man 5 exports`; common ones: rw, ro, sync, async, no_subtree_check, root_squash, no_root_squash",
            );
        }
        seen.insert(name, i);
    }
    for (a, b) in EXPORT_OPPOSITES {
        if let (Some(&i), Some(&j)) = (seen.get(a), seen.get(b)) {
            c.at_value(
                &format!("{}[{}]", nfs.options_at, i.max(j)),
                format!("`{a}` and `{b}` contradict each other"),
                "keep one of them",
            );
        }
    }
    let scope = match nfs.scope {
        None => network.map(|n| n.to_string()).unwrap_or_default(),
        Some(s) => {
            // `*`, `/0` in any spelling (`/00`, with host bits): everyone.
            let world = s == "*"
                || matches!(
                    net::parse(s),
                    Ok(n) | Err(CidrError::HostBits(n)) if n.prefix_len() == 0
                );
            if world {
                c.at_value(
                    &nfs.scope_at,
                    format!("`{s}` would export client roots to the world"),
                    "client roots are exported with no_root_squash; scope them to the boot network (the default) or one address",
                );
            } else if s.contains('/') {
                match net::parse(s) {
                    Ok(_) => {}
                    Err(CidrError::HostBits(n)) => c.at_value(
                        &nfs.scope_at,
                        format!("`{s}` has host bits set"),
                        &format!("did you mean {n}?"),
                    ),
                    Err(CidrError::Malformed) => c.at_value(
                        &nfs.scope_at,
                        format!("`{s}` is not an IPv4 network or address"),
                        "write a network such as 192.168.2.0/24 or one address",
                    ),
                }
            } else {
                ipv4(c, &nfs.scope_at, s);
            }
            s.clone()
        }
    };
    (nfs.options.to_vec(), scope)
}
