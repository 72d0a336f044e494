//! `bootloader:` (base image, recovery) and the `eeprom:` settings of `defaults` and each client:
//! merged, and every setting checked (`EepromSettings::validate`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Checker;
use super::fields::*;
use super::valid::*;
use crate::config::model::{Config, EepromSettings};

/// A client's bootloader settings: its own keys over the defaults' keys.
pub(super) fn merge_eeprom(
    defaults: Option<&EepromSettings>,
    own: Option<&EepromSettings>,
) -> Option<EepromSettings> {
    let (d, o) = match (defaults, own) {
        (None, None) => return None,
        (Some(d), None) => return Some(d.clone()),
        (None, Some(o)) => return Some(o.clone()),
        (Some(d), Some(o)) => (d, o),
    };
    let mut extra = d.extra.clone();
    extra.extend(o.extra.clone());
    Some(EepromSettings {
        boot_order: o.boot_order.clone().or_else(|| d.boot_order.clone()),
        tftp_prefix: o.tftp_prefix.clone().or_else(|| d.tftp_prefix.clone()),
        tftp_ip: o.tftp_ip.or(d.tftp_ip),
        dhcp_timeout: o.dhcp_timeout.or(d.dhcp_timeout),
        dhcp_req_timeout: o.dhcp_req_timeout.or(d.dhcp_req_timeout),
        tftp_file_timeout: o.tftp_file_timeout.or(d.tftp_file_timeout),
        net_boot_max_retries: o.net_boot_max_retries.or(d.net_boot_max_retries),
        enable_self_update: o.enable_self_update.or(d.enable_self_update),
        boot_uart: o.boot_uart.or(d.boot_uart),
        extra,
    })
}

pub(super) fn check_eeprom(c: &mut Checker<'_>, base: &str, settings: &EepromSettings) {
    for p in settings.validate() {
        let field = if p.field.starts_with('[') {
            format!("{base}{}", p.field)
        } else {
            format!("{base}.{}", p.field)
        };
        c.at_value(&field, p.message, &p.hint);
    }
}

pub(super) fn check_bootloader(
    c: &mut Checker<'_>,
    cfg: &Config,
    clients: &BTreeMap<String, ValidClient>,
) -> Option<(PathBuf, PathBuf)> {
    if let Some(d) = &cfg.defaults.eeprom {
        check_eeprom(c, "defaults.eeprom", d);
    }
    let Some(b) = &cfg.bootloader else {
        if let Some((name, _)) = clients.iter().find(|(_, v)| v.eeprom.is_some()) {
            let path = if cfg.clients.get(name).is_some_and(|x| x.eeprom.is_some()) {
                format!("clients.{name}.eeprom")
            } else {
                "defaults.eeprom".to_owned()
            };
            c.at_key(
                &path,
                "eeprom settings need a base bootloader image".into(),
                "add `bootloader: {image: /lib/firmware/raspberrypi/bootloader-2711/default/pieeprom-….bin}` (from the rpi-eeprom package)",
            );
        }
        return None;
    };
    check_path(c, "bootloader.image", &b.image);
    let image = PathBuf::from(&b.image);
    let recovery = match &b.recovery {
        Some(r) => {
            check_path(c, "bootloader.recovery", r);
            PathBuf::from(r)
        }
        None => image.with_file_name("recovery.bin"),
    };
    Some((image, recovery))
}
