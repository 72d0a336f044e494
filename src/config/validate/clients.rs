//! `clients:`: serials, MACs and host names (normalised, unique), their images, TFTP folders,
//! kernel command lines, ssh and users.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::Checker;
use super::eeprom::{check_eeprom, merge_eeprom};
use super::fields::*;
use super::images::declared_images_hint;
use super::valid::*;
use crate::config::model::{Config, RootMode, Ssh, User};
use crate::config::net::{self, Ipv4Net};
use crate::eeprom::TftpPrefix;

/// Kernel arguments pinetboot writes itself; a user's copy would fight them.
pub(super) const MANAGED_CMDLINE: &[&str] =
    &["root=", "nfsroot=", "ip=", "rootfstype=", "nfsrootdebug"];

pub(super) const SERIAL_HINT: &str = "the serial is the last 8 hex digits of `Serial` in the Pi's /proc/cpuinfo, e.g. 0c4c21e5 (the 16-digit 10000000… form works too)";

pub(super) fn normalise_serial(s: &str) -> Option<String> {
    let hex = s.strip_prefix("0x").unwrap_or(s);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => Some(hex.to_ascii_lowercase()),
        16 => Some(hex[8..].to_ascii_lowercase()),
        _ => None,
    }
}

pub(super) fn normalise_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

pub(super) fn check_hostname(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("is longer than 253 characters");
    }
    if name.is_empty() {
        return Err("is empty");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (a leading, trailing or doubled dot)");
        }
        safe_name(label)?;
    }
    Ok(())
}

/// Where a client boots from, as placed by [`super::fleet::place`]: the index of its server
/// and that server's network and address (when they are valid).
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    pub server: usize,
    pub network: Option<Ipv4Net>,
    pub address: Option<Ipv4Addr>,
}

/// Checks every client of the file (uniqueness is fleet-wide: names, serials, MACs and
/// hostnames; addresses per boot network; TFTP folders per server).
pub(super) fn check_clients(
    c: &mut Checker<'_>,
    cfg: &Config,
    placed: &BTreeMap<String, Placed>,
) -> BTreeMap<String, ValidClient> {
    if let Some(img) = &cfg.defaults.image
        && !cfg.images.contains_key(img)
    {
        c.at_value(
            "defaults.image",
            format!("image `{img}` is not declared"),
            &declared_images_hint(cfg),
        );
    }
    check_cmdline(c, "defaults.cmdline", &cfg.defaults.cmdline);
    if let Some(ssh) = &cfg.defaults.ssh {
        check_ssh(c, "defaults.ssh", ssh);
    }
    if let Some(user) = &cfg.defaults.user {
        check_user(c, "defaults.user", user);
    }
    let mut seen: [HashMap<String, String>; 4] = Default::default();
    let mut folders: BTreeMap<usize, HashMap<String, (String, bool)>> = BTreeMap::new();
    let mut shared_ssh: HashMap<String, (String, Option<Ssh>)> = HashMap::new();
    let mut out = BTreeMap::new();
    // File order, so a duplicate is reported on the client that comes later in the file.
    let mut in_file_order: Vec<(&String, &crate::config::model::Client)> =
        cfg.clients.iter().collect();
    in_file_order.sort_by_key(|(name, _)| c.locator.key(&format!("clients.{name}")));
    for (name, client) in in_file_order {
        let base = format!("clients.{name}");
        let place = placed.get(name);
        let (network, server) = place.map_or((None, None), |p| (p.network, p.address));
        if let Err(why) = safe_name(name) {
            c.at_key(
                &base,
                format!("client name `{name}` {why}"),
                "the name is the client's /nfs folder and default hostname: letters, digits and dashes, at most 63",
            );
        }
        let serial = normalise_serial(&client.serial);
        if serial.is_none() {
            c.at_value(
                &format!("{base}.serial"),
                format!("`{}` is not a Raspberry Pi serial number", client.serial),
                SERIAL_HINT,
            );
        }
        let mac = client.mac.as_ref().and_then(|m| {
            let n = normalise_mac(m);
            match &n {
                None => c.at_value(
                    &format!("{base}.mac"),
                    format!("`{m}` is not a MAC address"),
                    "write six hex pairs, e.g. dc:a6:32:01:02:03 (see `ip link` on the Pi or the router's lease list)",
                ),
                Some(mac) if mac == "00:00:00:00:00:00" || u8::from_str_radix(&mac[..2], 16).is_ok_and(|b| b & 1 == 1) => c.at_value(
                    &format!("{base}.mac"),
                    format!("`{m}` is a multicast or null address, not a board's MAC"),
                    "copy the MAC from the Pi's `ip link` output",
                ),
                Some(_) => {}
            }
            n
        });
        let address = client
            .address
            .as_ref()
            .and_then(|a| ipv4(c, &format!("{base}.address"), a));
        if let Some(a) = address {
            if let Some(n) = network
                && !net::is_host(&n, a)
            {
                c.at_value(
                    &format!("{base}.address"),
                    format!("{a} is not a host address in the boot network {n}"),
                    "a client boots on the server's network; give its address there, or leave address out",
                );
            }
            if Some(a) == server {
                c.at_value(
                    &format!("{base}.address"),
                    format!("{a} is the server's own address"),
                    "give the Pi's own address (the one your router leases to it)",
                );
            }
        }
        let image = client.image.clone().or_else(|| cfg.defaults.image.clone());
        match &image {
            None => c.at_key(
                &base,
                format!("client `{name}` has no image"),
                "set `image:` on the client or `defaults.image`",
            ),
            Some(img) if client.image.is_some() && !cfg.images.contains_key(img) => c.at_value(
                &format!("{base}.image"),
                format!("image `{img}` is not declared"),
                &declared_images_hint(cfg),
            ),
            Some(_) => {}
        }
        let hostname = client.hostname.clone().unwrap_or_else(|| name.clone());
        if let Some(h) = &client.hostname
            && let Err(why) = check_hostname(h)
        {
            c.at_value(
                &format!("{base}.hostname"),
                format!("hostname `{h}` {why}"),
                "hostnames are dot-separated labels of letters, digits and dashes, e.g. raspi1",
            );
        }
        check_cmdline(c, &format!("{base}.cmdline"), &client.cmdline);
        if let Some(ssh) = &client.ssh {
            check_ssh(c, &format!("{base}.ssh"), ssh);
        }
        if let Some(user) = &client.user {
            check_user(c, &format!("{base}.user"), user);
        }
        // Duplicates, reported on the later client with the earlier one named.
        // An address is unique on its boot network: two sites may reuse one private range.
        let keys = [
            ("serial", serial.clone(), String::new()),
            ("mac", mac.clone(), String::new()),
            (
                "hostname",
                Some(hostname.to_ascii_lowercase()),
                String::new(),
            ),
            (
                "address",
                address.map(|a| a.to_string()),
                network.map(|n| n.to_string()).unwrap_or_default(),
            ),
        ];
        for (slot, (field, value, scope)) in keys.into_iter().enumerate() {
            let Some(value) = value else { continue };
            let key = format!("{value} {scope}");
            if let Some(first) = seen[slot].get(&key) {
                let message = format!("{field} `{value}` is also used by client `{first}`");
                let hint = format!("each Pi needs its own {field}");
                if field == "hostname" && client.hostname.is_none() {
                    // The hostname is implied by the client's name: point at the name.
                    c.at_key(&base, message, &hint);
                } else {
                    c.at_value(&format!("{base}.{field}"), message, &hint);
                }
            } else {
                seen[slot].insert(key, name.clone());
            }
        }
        let mut cmdline = cfg.defaults.cmdline.clone();
        cmdline.extend(client.cmdline.iter().cloned());
        out.insert(
            name.clone(),
            ValidClient {
                serial: serial.unwrap_or_default(),
                mac,
                address,
                image: image.unwrap_or_default(),
                hostname,
                ssh: client.ssh.clone().or_else(|| cfg.defaults.ssh.clone()),
                user: client.user.clone().or_else(|| cfg.defaults.user.clone()),
                cmdline,
                eeprom: merge_eeprom(cfg.defaults.eeprom.as_ref(), client.eeprom.as_ref()),
                root: client.root.or(cfg.defaults.root).unwrap_or_default(),
            },
        );
        check_shared(c, cfg, name, &out[name], &mut shared_ssh);
        if let Some(e) = &client.eeprom {
            check_eeprom(c, &format!("{base}.eeprom"), e);
        }
        if let Some(p) = place {
            let served_here = folders.entry(p.server).or_default();
            check_tftp_folders(c, cfg, name, &out[name], served_here);
        }
    }
    out
}

/// A shared root is one tree for every shared client of an image: what is written into it
/// (ssh access) must be the same for all of them, and what only a root of its own can hold
/// (a user created at first boot, a bootloader update in the boot folder) is refused.
fn check_shared(
    c: &mut Checker<'_>,
    cfg: &Config,
    name: &str,
    client: &ValidClient,
    seen: &mut HashMap<String, (String, Option<Ssh>)>,
) {
    if client.root != RootMode::Shared {
        return;
    }
    let base = format!("clients.{name}");
    let own = cfg.clients.get(name);
    let at = |field: &str, own_set: bool| {
        if own_set {
            format!("{base}.{field}")
        } else {
            format!("defaults.{field}")
        }
    };
    if client.user.is_some() {
        c.at_value(
            &at("user", own.is_some_and(|x| x.user.is_some())),
            format!("client `{name}` has a shared root, where a user created at first boot would be created again at every boot"),
            "give shared clients ssh keys (`ssh:`), or put the user into the image; or use `root: own`",
        );
    }
    if client.eeprom.is_some() {
        c.at_value(
            &at("eeprom", own.is_some_and(|x| x.eeprom.is_some())),
            format!("client `{name}` has a shared root; bootloader updates are served only from a root of its own"),
            "flash the bootloader with `pinetboot eeprom sd-card`, or give the client `root: own` while it updates",
        );
    }
    match seen.get(&client.image) {
        Some((first, ssh)) if *ssh != client.ssh => c.at_key(
            &base,
            format!("client `{name}` and client `{first}` share image `{}`'s root and declare different ssh access", client.image),
            "the shared root is one tree: give every shared client of an image the same `ssh:` (e.g. in `defaults`)",
        ),
        Some(_) => {}
        None => {
            seen.insert(client.image.clone(), (name.to_owned(), client.ssh.clone()));
        }
    }
}

/// The TFTP folder a client's bootloader asks in must be one pinetboot can serve: `mac`
/// needs the client's MAC, and no two clients may be served in one folder (a serial folder
/// or a prefix's).
pub(super) fn check_tftp_folders(
    c: &mut Checker<'_>,
    cfg: &Config,
    name: &str,
    client: &ValidClient,
    seen: &mut HashMap<String, (String, bool)>,
) {
    let prefix = client.eeprom.as_ref().and_then(|e| e.tftp_prefix.as_ref());
    let path = if cfg
        .clients
        .get(name)
        .and_then(|x| x.eeprom.as_ref())
        .is_some_and(|e| e.tftp_prefix.is_some())
    {
        format!("clients.{name}.eeprom.tftp_prefix")
    } else {
        "defaults.eeprom.tftp_prefix".to_owned()
    };
    if matches!(prefix, Some(TftpPrefix::Mac)) && client.mac.is_none() {
        c.at_value(
            &path,
            format!(
                "`tftp_prefix: mac` names client `{name}`'s TFTP folder after its MAC, and the client declares none"
            ),
            &format!(
                "add `mac:` to clients.{name} (the MAC of the Pi's Ethernet port, see `ip link` on the Pi), or use `serial`"
            ),
        );
    }
    if client.serial.is_empty() {
        return;
    }
    // The serial folder is always served (a bootloader asks there until it has flashed
    // another prefix). Two clients with one serial are reported with the other duplicates.
    let serial = client.serial.clone();
    match seen.get(&serial) {
        Some((first, true)) if first != name => {}
        Some((first, _)) if first != name => c.at_value(
            &format!("clients.{name}.serial"),
            format!(
                "the serial folder `{serial}` of client `{name}` is the TFTP folder client `{first}`'s `tftp_prefix` names"
            ),
            &format!("give client `{first}` another `tftp_prefix` string"),
        ),
        _ => {
            seen.insert(serial, (name.to_owned(), true));
        }
    }
    let Some(folder) = client.tftp_prefix_folder() else {
        return;
    };
    match seen.get(&folder) {
        Some((first, _)) if first != name => c.at_value(
            &path,
            format!("the TFTP folder `{folder}` of client `{name}` is also client `{first}`'s"),
            "each client is served from folders of its own: give it another `tftp_prefix` string, or use `serial` or `mac`",
        ),
        _ => {
            seen.insert(folder, (name.to_owned(), false));
        }
    }
}

pub(super) fn check_cmdline(c: &mut Checker<'_>, base: &str, tokens: &[String]) {
    for (i, t) in tokens.iter().enumerate() {
        let field = format!("{base}[{i}]");
        if t.is_empty() || t.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            c.at_value(
                &field,
                format!("`{t}` is not one kernel argument"),
                "list one argument per item, e.g. [quiet, splash]",
            );
        } else if let Some(m) = MANAGED_CMDLINE.iter().find(|m| t.starts_with(**m)) {
            c.at_value(
                &field,
                format!("`{t}` is managed by pinetboot ({m}… is always written for the NFS root)"),
                "remove it; pinetboot writes root=/dev/nfs nfsroot=SERVER:/nfs/CLIENT,vers=3 rw ip=dhcp rootwait",
            );
        } else if t.split(',').any(|o| {
            ["vers=", "nfsvers=", "proto="]
                .iter()
                .any(|p| o.starts_with(p))
        }) {
            c.at_value(
                &field,
                format!("`{t}` breaks NFS boot"),
                "Raspberry Pi OS's initramfs mounts the root with klibc nfsmount, which needs vers=3 and rejects proto=; pinetboot sets vers=3 itself",
            );
        }
    }
}

pub(super) fn check_ssh(c: &mut Checker<'_>, base: &str, ssh: &Ssh) {
    if let Some(user) = &ssh.user
        && (user.is_empty()
            || user.len() > 32
            || user.starts_with('-')
            || !user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
    {
        c.at_value(
            &format!("{base}.user"),
            format!("`{user}` is not a user name"),
            "a Linux user name such as pi or admin",
        );
    }
    for (i, key) in ssh.authorized_keys.iter().enumerate() {
        if !looks_like_public_key(key) {
            c.at_value(
                &format!("{base}.authorized_keys[{i}]"),
                "this is not an SSH public key line".into(),
                "paste one line of your ~/.ssh/id_ed25519.pub: `ssh-ed25519 AAAA… comment`",
            );
        }
    }
}

pub(super) fn check_user(c: &mut Checker<'_>, base: &str, user: &User) {
    let n = &user.name;
    let name_ok = !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|ch: char| ch.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && n != "root";
    if !name_ok {
        c.at_value(
            &format!("{base}.name"),
            format!("`{n}` is not a user name Raspberry Pi OS accepts"),
            "lower-case letters, digits and dashes, starting with a letter, at most 32, not root (userconf-pi's rule)",
        );
    }
    let h = &user.password_hash;
    let hash_ok = h.starts_with('$')
        && h.len() >= 13
        && !h.contains(':')
        && !h.chars().any(|ch| ch.is_whitespace() || ch.is_control());
    if !hash_ok {
        c.at_value(
            &format!("{base}.password_hash"),
            "this is not a crypt(3) password hash".into(),
            "generate one with `openssl passwd -6` or `mkpasswd -m yescrypt`; never put the password itself here",
        );
    }
}

pub(super) fn looks_like_public_key(line: &str) -> bool {
    if line.contains(['\n', '\r']) {
        return false;
    }
    let mut words = line.split_whitespace();
    // authorized_keys lines may start with options; find the key type.
    let key_type = words
        .by_ref()
        .find(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-sha2-") || w.starts_with("sk-"));
    match (key_type, words.next()) {
        (Some(_), Some(blob)) => {
            blob.len() >= 16
                && blob.starts_with("AAAA")
                && blob
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        }
        _ => false,
    }
}
