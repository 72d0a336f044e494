//! `paths:`: absolute, normalised host paths.

use super::Checker;
use super::fields::*;
use crate::config::model::Paths;

/// Checks `paths`; `at(field)` names where a field was written (`paths.nfs`, or a fleet
/// server's `servers.NAME.paths.nfs`).
pub(super) fn check_paths(
    c: &mut Checker<'_>,
    paths: &Paths,
    at: &dyn Fn(&str) -> String,
) -> Paths {
    let fields = [
        ("nfs", &paths.nfs),
        ("tftp", &paths.tftp),
        ("dnsmasq_conf", &paths.dnsmasq_conf),
        ("dnsmasq_log", &paths.dnsmasq_log),
        ("exports", &paths.exports),
        ("fstab", &paths.fstab),
        ("state", &paths.state),
    ];
    for (field, p) in fields {
        check_path(c, &at(field), p);
    }
    if paths.nfs == paths.tftp
        || paths.nfs.starts_with(&format!("{}/", paths.tftp))
        || paths.tftp.starts_with(&format!("{}/", paths.nfs))
    {
        c.at_value(
            &at("tftp"),
            "the TFTP root and the NFS folder overlap".into(),
            "keep them apart, e.g. /tftpboot and /nfs: the TFTP root holds only serial folders",
        );
    }
    paths.clone()
}
