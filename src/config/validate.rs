//! Semantic validation: every problem in one run, each located and with a hint, and the
//! normalised, checked form of the config that the rest of pinetboot works from.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::diagnostic::{ConfigError, Diagnostic};
use super::load::Parsed;
use super::locate::Locator;
use super::model::{Config, EepromSettings, Paths, Ssh, User};
use super::net::{self, CidrError, Ipv4Net};
use crate::eeprom::TftpPrefix;

/// A checked config, with forms normalised (lower-case 8-digit serials, `aa:bb:…` MACs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// The server's address on the boot network.
    pub address: Ipv4Addr,
    /// The boot network.
    pub network: Ipv4Net,
    /// The interface dnsmasq binds to, if any.
    pub interface: Option<String>,
    /// Host paths (absolute, normalised).
    pub paths: Paths,
    /// exports(5) options.
    pub nfs_options: Vec<String>,
    /// Who may mount client roots (a CIDR or an address), for clients without an address.
    pub nfs_scope: String,
    /// Images by name.
    pub images: BTreeMap<String, ValidImage>,
    /// Clients, by name.
    pub clients: BTreeMap<String, ValidClient>,
    /// The base bootloader image and recovery.bin (host paths), if declared.
    pub bootloader: Option<(PathBuf, PathBuf)>,
    /// Limits on image downloads.
    pub downloads: crate::image::fetch::Limits,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory holding an unpacked root tree (host path).
    Directory(PathBuf),
    /// A disk image file (host path).
    File(PathBuf),
    /// A disk image to download.
    Url(String),
}

/// A checked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidImage {
    /// Where it comes from.
    pub source: Source,
    /// Lower-case SHA-256 of the image file (none for directories).
    pub sha256: Option<String>,
    /// Boot-folder overrides: relative name → host path.
    pub files: BTreeMap<String, PathBuf>,
}

/// A checked client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidClient {
    /// Lower-case 8 hex digits.
    pub serial: String,
    /// Lower-case, colon-separated.
    pub mac: Option<String>,
    /// Fixed address, if declared.
    pub address: Option<Ipv4Addr>,
    /// The image name (declared in `images`).
    pub image: String,
    /// Hostname.
    pub hostname: String,
    /// SSH access.
    pub ssh: Option<Ssh>,
    /// A login user to create on first boot.
    pub user: Option<User>,
    /// Extra kernel arguments (defaults first).
    pub cmdline: Vec<String>,
    /// Bootloader settings (defaults merged with the client's), if any.
    pub eeprom: Option<EepromSettings>,
}

impl ValidClient {
    /// The folder of the TFTP root named by the client's `eeprom.tftp_prefix`, when it names
    /// one other than its serial folder (`dc-a6-32-01-02-03` for `mac`, `pi-lab` for
    /// `{string: pi-lab/}`).
    pub fn tftp_prefix_folder(&self) -> Option<String> {
        self.eeprom
            .as_ref()?
            .tftp_prefix
            .as_ref()?
            .folder(&self.serial, self.mac.as_deref())
            .filter(|f| *f != self.serial)
    }
}

/// The exports(5) options pinetboot accepts: flags, then options that take `=value`.
const EXPORT_FLAGS: &[&str] = &[
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
const EXPORT_VALUED: &[&str] = &[
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
const EXPORT_OPPOSITES: &[(&str, &str)] = &[
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

/// Kernel arguments pinetboot writes itself; a user's copy would fight them.
const MANAGED_CMDLINE: &[&str] = &["root=", "nfsroot=", "ip=", "rootfstype=", "nfsrootdebug"];

const SERIAL_HINT: &str = "the serial is the last 8 hex digits of `Serial` in the Pi's /proc/cpuinfo, e.g. 0c4c21e5 (the 16-digit 10000000… form works too)";

struct Checker<'a> {
    file: &'a Path,
    locator: &'a Locator,
    found: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at_value(&mut self, path: &str, message: String, hint: &str) {
        self.push(self.locator.value(path), path, message, hint);
    }

    fn at_key(&mut self, path: &str, message: String, hint: &str) {
        self.push(self.locator.key(path), path, message, hint);
    }

    fn push(&mut self, position: super::locate::Position, path: &str, message: String, hint: &str) {
        self.found.push(Diagnostic {
            file: self.file.to_owned(),
            position,
            path: path.to_owned(),
            message,
            hint: (!hint.is_empty()).then(|| hint.to_owned()),
        });
    }
}

/// Checks a parsed config and returns its normalised form, or every problem found.
pub fn validate(file: &Path, parsed: &Parsed) -> Result<Valid, ConfigError> {
    let mut c = Checker {
        file,
        locator: &parsed.locator,
        found: Vec::new(),
    };
    let valid = check(&mut c, &parsed.config);
    if c.found.is_empty() {
        Ok(valid)
    } else {
        c.found
            .sort_by(|a, b| a.position.cmp(&b.position).then(a.path.cmp(&b.path)));
        Err(ConfigError {
            diagnostics: c.found,
        })
    }
}

fn check(c: &mut Checker<'_>, cfg: &Config) -> Valid {
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
    let paths = check_paths(c, &cfg.paths);
    let (nfs_options, nfs_scope) = check_nfs(c, cfg, network);
    let images = check_images(c, cfg);
    let clients = check_clients(c, cfg, network, address);
    let bootloader = check_bootloader(c, cfg, &clients);
    Valid {
        bootloader,
        address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
        network: network.unwrap_or_else(|| "0.0.0.0/0".parse().expect("constant")),
        interface: cfg.server.interface.clone(),
        paths,
        nfs_options,
        nfs_scope,
        images,
        clients,
        downloads: (&cfg.downloads).into(),
    }
}

fn ipv4(c: &mut Checker<'_>, path: &str, text: &str) -> Option<Ipv4Addr> {
    match text.parse::<Ipv4Addr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let hint = if text.contains('/') {
                "an address has no /prefix; the network goes in server.network"
            } else {
                "write an IPv4 address in dotted form, e.g. 192.168.2.51"
            };
            c.at_value(path, format!("`{text}` is not an IPv4 address"), hint);
            None
        }
    }
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// An absolute, normalised host path: no `.`/`..`/empty components, no control characters.
fn clean_abs_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("is not an absolute path");
    }
    if p.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    let rest = p.trim_start_matches('/');
    if rest.is_empty() {
        return Err("is the root folder");
    }
    if rest
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("is not normalised (empty, `.` or `..` components)");
    }
    Ok(())
}

fn check_path(c: &mut Checker<'_>, field: &str, p: &str) {
    if let Err(why) = clean_abs_path(p) {
        c.at_value(
            field,
            format!("`{p}` {why}"),
            "write an absolute host path such as /srv/firmware/start4.elf (it is resolved under --root)",
        );
    }
}

fn check_paths(c: &mut Checker<'_>, paths: &Paths) -> Paths {
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

fn check_nfs(c: &mut Checker<'_>, cfg: &Config, network: Option<Ipv4Net>) -> (Vec<String>, String) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, opt) in cfg.nfs.options.iter().enumerate() {
        let field = format!("nfs.options[{i}]");
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
                &format!("nfs.options[{}]", i.max(j)),
                format!("`{a}` and `{b}` contradict each other"),
                "keep one of them",
            );
        }
    }
    let scope = match &cfg.nfs.scope {
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
                    "nfs.scope",
                    format!("`{s}` would export client roots to the world"),
                    "client roots are exported with no_root_squash; scope them to the boot network (the default) or one address",
                );
            } else if s.contains('/') {
                match net::parse(s) {
                    Ok(_) => {}
                    Err(CidrError::HostBits(n)) => c.at_value(
                        "nfs.scope",
                        format!("`{s}` has host bits set"),
                        &format!("did you mean {n}?"),
                    ),
                    Err(CidrError::Malformed) => c.at_value(
                        "nfs.scope",
                        format!("`{s}` is not an IPv4 network or address"),
                        "write a network such as 192.168.2.0/24 or one address",
                    ),
                }
            } else {
                ipv4(c, "nfs.scope", s);
            }
            s.clone()
        }
    };
    (cfg.nfs.options.clone(), scope)
}

/// Whether a source names a disk image file (by its name), rather than a directory tree.
fn is_image_file_name(source: &str) -> bool {
    let name = source
        .rsplit('/')
        .next()
        .unwrap_or(source)
        .to_ascii_lowercase();
    [".img", ".xz", ".gz", ".zip"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn check_images(c: &mut Checker<'_>, cfg: &Config) -> BTreeMap<String, ValidImage> {
    let mut out = BTreeMap::new();
    for (name, image) in &cfg.images {
        let base = format!("images.{name}");
        if let Err(why) = safe_name(name) {
            c.at_key(
                &base,
                format!("image name `{name}` {why}"),
                "image names are short identifiers such as bookworm-lite",
            );
        }
        let field = format!("{base}.source");
        let is_url = image.source.starts_with("http://") || image.source.starts_with("https://");
        let source = if is_url {
            let host = image.source.split("://").nth(1).unwrap_or_default();
            if host.is_empty()
                || host.starts_with('/')
                || image.source.chars().any(char::is_whitespace)
            {
                c.at_value(
                    &field,
                    format!("`{}` is not a usable URL", image.source),
                    "write the full http(s) URL of the image file",
                );
            }
            Source::Url(image.source.clone())
        } else if image.source.contains("://") {
            c.at_value(
                &field,
                format!(
                    "`{}`: only http:// and https:// URLs are supported",
                    image.source
                ),
                "download the image yourself and give its absolute path",
            );
            Source::Url(image.source.clone())
        } else {
            check_path(c, &field, &image.source);
            if is_image_file_name(&image.source) {
                Source::File(image.source.clone().into())
            } else {
                Source::Directory(image.source.clone().into())
            }
        };
        let needs_digest = !matches!(source, Source::Directory(_));
        let sha256 = match (&image.sha256, needs_digest) {
            (None, true) => {
                c.at_key(
                    &base,
                    format!("image `{name}` has no sha256"),
                    "add `sha256:` with the 64 hex digits published beside the image (its .sha256 file)",
                );
                None
            }
            (Some(_), false) => {
                c.at_value(
                    &format!("{base}.sha256"),
                    "a directory source has no sha256".into(),
                    "remove sha256, or point source at the image file (.img, .img.xz, .img.gz, .zip)",
                );
                None
            }
            (Some(d), true) => {
                if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some(d.to_ascii_lowercase())
                } else {
                    c.at_value(
                        &format!("{base}.sha256"),
                        format!("`{d}` is not a SHA-256 digest"),
                        "a SHA-256 is 64 hex digits, as in the image's .sha256 file",
                    );
                    None
                }
            }
            (None, false) => None,
        };
        let mut files = BTreeMap::new();
        for (rel, host) in &image.files {
            let f = format!("{base}.files.{rel}");
            if let Err(why) = safe_relative(rel) {
                c.at_key(
                    &f,
                    format!("`{rel}` {why}"),
                    "name a file inside the boot folder, e.g. start4.elf or overlays/foo.dtbo",
                );
            }
            check_path(c, &f, host);
            files.insert(rel.clone(), PathBuf::from(host));
        }
        out.insert(
            name.clone(),
            ValidImage {
                source,
                sha256,
                files,
            },
        );
    }
    out
}

/// A name usable as one path component and as a hostname label.
fn safe_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if name.contains('/') {
        return Err("contains `/`");
    }
    if name.starts_with('.') {
        return Err("starts with a dot");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("starts or ends with a dash");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("may hold only letters, digits and dashes");
    }
    Ok(())
}

/// A relative path inside a folder: no `..`, not absolute, no empty components.
fn safe_relative(rel: &str) -> Result<(), &'static str> {
    if rel.is_empty() || rel.starts_with('/') {
        return Err("is not a relative path");
    }
    if rel.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if rel
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("has empty, `.` or `..` components");
    }
    Ok(())
}

fn normalise_serial(s: &str) -> Option<String> {
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

fn normalise_mac(s: &str) -> Option<String> {
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

fn check_hostname(name: &str) -> Result<(), &'static str> {
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

fn check_clients(
    c: &mut Checker<'_>,
    cfg: &Config,
    network: Option<Ipv4Net>,
    server: Option<Ipv4Addr>,
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
    let mut folders: HashMap<String, (String, bool)> = HashMap::new();
    let mut out = BTreeMap::new();
    // File order, so a duplicate is reported on the client that comes later in the file.
    let mut in_file_order: Vec<(&String, &super::model::Client)> = cfg.clients.iter().collect();
    in_file_order.sort_by_key(|(name, _)| c.locator.key(&format!("clients.{name}")));
    for (name, client) in in_file_order {
        let base = format!("clients.{name}");
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
        let keys = [
            ("serial", serial.clone()),
            ("mac", mac.clone()),
            ("hostname", Some(hostname.to_ascii_lowercase())),
            ("address", address.map(|a| a.to_string())),
        ];
        for (slot, (field, value)) in keys.into_iter().enumerate() {
            let Some(value) = value else { continue };
            if let Some(first) = seen[slot].get(&value) {
                let message = format!("{field} `{value}` is also used by client `{first}`");
                let hint = format!("each Pi needs its own {field}");
                if field == "hostname" && client.hostname.is_none() {
                    // The hostname is implied by the client's name: point at the name.
                    c.at_key(&base, message, &hint);
                } else {
                    c.at_value(&format!("{base}.{field}"), message, &hint);
                }
            } else {
                seen[slot].insert(value, name.clone());
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
            },
        );
        if let Some(e) = &client.eeprom {
            check_eeprom(c, &format!("{base}.eeprom"), e);
        }
        check_tftp_folders(c, cfg, name, &out[name], &mut folders);
    }
    out
}

/// The TFTP folder a client's bootloader asks in must be one pinetboot can serve: `mac`
/// needs the client's MAC, and no two clients may be served in one folder (a serial folder
/// or a prefix's).
fn check_tftp_folders(
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

/// A client's bootloader settings: its own keys over the defaults' keys.
fn merge_eeprom(
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

fn check_eeprom(c: &mut Checker<'_>, base: &str, settings: &EepromSettings) {
    for p in settings.validate() {
        let field = if p.field.starts_with('[') {
            format!("{base}{}", p.field)
        } else {
            format!("{base}.{}", p.field)
        };
        c.at_value(&field, p.message, &p.hint);
    }
}

fn check_bootloader(
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

fn declared_images_hint(cfg: &Config) -> String {
    if cfg.images.is_empty() {
        "declare it under `images:` first".into()
    } else {
        let names: Vec<&str> = cfg.images.keys().map(String::as_str).collect();
        format!("declared images: {}", names.join(", "))
    }
}

fn check_cmdline(c: &mut Checker<'_>, base: &str, tokens: &[String]) {
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

fn check_ssh(c: &mut Checker<'_>, base: &str, ssh: &Ssh) {
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

fn check_user(c: &mut Checker<'_>, base: &str, user: &User) {
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

fn looks_like_public_key(line: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise() {
        assert_eq!(normalise_serial("0C4C21E5").as_deref(), Some("0c4c21e5"));
        assert_eq!(
            normalise_serial("100000000c4c21e5").as_deref(),
            Some("0c4c21e5")
        );
        assert_eq!(normalise_serial("0x0c4c21e5").as_deref(), Some("0c4c21e5"));
        assert_eq!(normalise_serial("c4c21e5"), None);
        assert_eq!(normalise_serial("0c4c21eg"), None);
    }

    #[test]
    fn macs_normalise() {
        assert_eq!(
            normalise_mac("DC-A6-32-01-02-03").as_deref(),
            Some("dc:a6:32:01:02:03")
        );
        assert_eq!(normalise_mac("dc:a6:32:01:02"), None);
        assert_eq!(normalise_mac("dc:a6:32:01:02:0g"), None);
    }

    #[test]
    fn names() {
        assert!(safe_name("raspi1").is_ok());
        for bad in [
            "",
            ".x",
            "-x",
            "x-",
            "a/b",
            "..",
            "a b",
            "a\u{7}",
            &"x".repeat(64),
        ] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_keys() {
        assert!(looks_like_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx admin@x"
        ));
        assert!(looks_like_public_key(
            "from=\"10.0.0.0/8\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"
        ));
        assert!(!looks_like_public_key("hello world"));
        assert!(!looks_like_public_key("ssh-ed25519"));
    }
}
