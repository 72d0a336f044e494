//! `paths:`: absolute, normalised host paths.

use super::Checker;
use super::fields::*;
use crate::config::model::Paths;

pub(super) fn check_paths(c: &mut Checker<'_>, paths: &Paths) -> Paths {
    let fields = [
        ("paths.nfs", &paths.nfs),
        ("paths.tftp", &paths.tftp),
        ("paths.dnsmasq_conf", &paths.dnsmasq_conf),
        ("paths.dnsmasq_log", &paths.dnsmasq_log),
        ("paths.exports", &paths.exports),
        ("paths.fstab", &paths.fstab),
        ("paths.state", &paths.state),
    ];
    for (field, p) in fields {
        check_path(c, field, p);
    }
    if paths.nfs == paths.tftp
        || paths.nfs.starts_with(&format!("{}/", paths.tftp))
        || paths.tftp.starts_with(&format!("{}/", paths.nfs))
    {
        c.at_value(
            "paths.tftp",
            "the TFTP root and the NFS folder overlap".into(),
            "keep them apart, e.g. /tftpboot and /nfs: the TFTP root holds only serial folders",
        );
    }
    paths.clone()
}
