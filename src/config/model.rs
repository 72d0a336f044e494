//! The desired-state file as typed data: what `pinetboot.yaml` may say.
//!
//! Doc comments here become the descriptions of the JSON schema that editors use, so they are
//! written for the person editing the YAML. Forms that need checking (addresses, serials, MACs,
//! digests) are kept as strings here and checked by [`super::validate`], which can report every
//! problem at once with its position and a hint.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::size::ByteSize;
pub use crate::eeprom::EepromSettings;

/// The desired state of one pinetboot boot server, or of a fleet of them (`servers:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pinetboot configuration")]
pub struct Config {
    /// This boot server: where the Pis reach TFTP and NFS, and the network they boot on.
    /// A file describes either one server here or a fleet under `servers:`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
    /// A fleet of boot servers, by name, sharing this file's images and defaults. Each client
    /// boots from one of them (its `server:`, else the one whose network holds its `address`,
    /// else the only one). Each server applies only its own clients; by default a server is
    /// the one named by its hostname, else the one whose `address` it has (`--server` chooses).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, FleetServer>,
    /// Where pinetboot keeps things on the host. Every field has a default from the manual
    /// recipe; paths are host paths (resolved under `--root`). In a fleet, a server's own
    /// `paths` override these field by field.
    #[serde(default, skip_serializing_if = "is_default")]
    pub paths: Paths,
    /// How client roots are exported over NFS. In a fleet, a server's own `nfs` overrides
    /// these field by field.
    #[serde(default, skip_serializing_if = "is_default")]
    pub nfs: Nfs,
    /// Operating-system images that client roots are provisioned from, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Image>,
    /// Settings every client inherits unless it sets its own.
    #[serde(default, skip_serializing_if = "is_default")]
    pub defaults: Defaults,
    /// The bootloader image that clients' `eeprom:` settings are embedded into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootloader: Option<Bootloader>,
    /// Limits on image downloads (images whose `source` is a URL).
    #[serde(default, skip_serializing_if = "is_default")]
    pub downloads: Downloads,
    /// The Raspberry Pis that boot from this server, by name. The name is the client's NFS root
    /// folder (`/nfs/NAME`) and its default hostname.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, Client>,
}

/// The boot server itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The server's IPv4 address on the boot network, e.g. `192.168.2.209`: the Pis fetch
    /// TFTP files and mount their NFS roots from it.
    pub address: String,
    /// The boot network in CIDR form, e.g. `192.168.2.0/24`: where proxy-DHCP answers and what
    /// the NFS exports are scoped to.
    pub network: String,
    /// The network interface dnsmasq answers on, e.g. `eth0`. When omitted, dnsmasq answers on
    /// every interface (still only for the boot network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// One boot server of a fleet: its place on the network and what it does differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetServer {
    /// The server's IPv4 address on its boot network, e.g. `10.20.0.1`: its Pis fetch TFTP
    /// files and mount their NFS roots from it.
    pub address: String,
    /// The server's boot network in CIDR form, e.g. `10.20.0.0/24`.
    pub network: String,
    /// The network interface dnsmasq answers on, e.g. `eth0` (default: every interface, still
    /// only for the boot network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// This server's own host paths, each replacing the file's `paths` field of that name.
    #[serde(default, skip_serializing_if = "is_default")]
    pub paths: PathsOverride,
    /// This server's own NFS settings, each replacing the file's `nfs` field of that name.
    #[serde(default, skip_serializing_if = "is_default")]
    pub nfs: NfsOverride,
}

/// A fleet server's own host paths; a field left out is the file's `paths` one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PathsOverride {
    /// Folder holding one NFS root per client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfs: Option<String>,
    /// The TFTP root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp: Option<String>,
    /// The dnsmasq drop-in pinetboot owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnsmasq_conf: Option<String>,
    /// dnsmasq's log file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnsmasq_log: Option<String>,
    /// The NFS exports drop-in pinetboot owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exports: Option<String>,
    /// The fstab that records the bind mounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstab: Option<String>,
    /// pinetboot's own state folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl PathsOverride {
    /// `base` with this server's fields put in, and whether each came from here (by field
    /// name), so an error points at the line that set it.
    pub fn over(&self, base: &Paths) -> (Paths, Vec<&'static str>) {
        let mut out = base.clone();
        let mut own = Vec::new();
        let fields: [(&'static str, &Option<String>, &mut String); 7] = [
            ("nfs", &self.nfs, &mut out.nfs),
            ("tftp", &self.tftp, &mut out.tftp),
            ("dnsmasq_conf", &self.dnsmasq_conf, &mut out.dnsmasq_conf),
            ("dnsmasq_log", &self.dnsmasq_log, &mut out.dnsmasq_log),
            ("exports", &self.exports, &mut out.exports),
            ("fstab", &self.fstab, &mut out.fstab),
            ("state", &self.state, &mut out.state),
        ];
        for (name, mine, slot) in fields {
            if let Some(p) = mine {
                slot.clone_from(p);
                own.push(name);
            }
        }
        (out, own)
    }
}

/// A fleet server's own NFS settings; a field left out is the file's `nfs` one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NfsOverride {
    /// exports(5) options for this server's client roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Who may mount this server's roots (default: this server's `network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Host paths pinetboot manages. All absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Folder holding one NFS root per client (`/nfs/CLIENT`).
    pub nfs: String,
    /// The TFTP root: holds only one folder per Pi serial number.
    pub tftp: String,
    /// The dnsmasq drop-in pinetboot owns.
    pub dnsmasq_conf: String,
    /// dnsmasq's log file (the drop-in's `log-facility`), read by `pinetboot status` and
    /// `discover`; its folder is made by pinetboot.
    pub dnsmasq_log: String,
    /// The NFS exports drop-in pinetboot owns.
    pub exports: String,
    /// The fstab that records the bind mounts (pinetboot edits only its own fenced block).
    pub fstab: String,
    /// pinetboot's own state: what it manages, and the image store.
    pub state: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            nfs: "/nfs".into(),
            tftp: "/tftpboot".into(),
            dnsmasq_conf: "/etc/dnsmasq.d/pinetboot.conf".into(),
            dnsmasq_log: "/var/log/pinetboot/dnsmasq.log".into(),
            exports: "/etc/exports.d/pinetboot.exports".into(),
            fstab: "/etc/fstab".into(),
            state: "/var/lib/pinetboot".into(),
        }
    }
}

/// NFS export settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Nfs {
    /// exports(5) options for every client root. The default suits a Pi root: the Pi's root
    /// user must own its files (`no_root_squash`), so the export is scoped to the boot network
    /// or to the client's own address, never to the world.
    pub options: Vec<String>,
    /// Who may mount the roots: a network in CIDR form or one address. Defaults to
    /// `server.network`. A client with an `address` is always exported to that address only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Default for Nfs {
    fn default() -> Self {
        Nfs {
            options: ["rw", "sync", "no_subtree_check", "no_root_squash"]
                .map(String::from)
                .to_vec(),
            scope: None,
        }
    }
}

/// An operating-system image: a Raspberry Pi OS disk image (`.img`, `.img.xz`, `.img.gz`,
/// `.zip`; a local file or an http(s) URL) or a directory holding an unpacked root tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Where the image comes from: an absolute host path or an `http(s)://` URL. A path whose
    /// name does not end in `.img`, `.xz`, `.gz` or `.zip` is a directory tree.
    pub source: String,
    /// The SHA-256 of the image file (64 hex digits), as published beside it. Required for
    /// image files and URLs; a directory has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Files to place in the boot folder of every client root made from this image, by name
    /// inside the boot folder, from absolute host paths (e.g. a newer `start4.elf`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// Limits on downloading an image. Each one ends a download with an error naming the limit;
/// the partial download is kept and the next `apply` resumes it, except past `max_size`,
/// where it is deleted. The apply lock is released either way. Sizes are a number of bytes
/// or a number with one of the units B, KiB, MiB, GiB, TiB (powers of 1024).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Downloads {
    /// The largest image file downloaded, e.g. `16 GiB` (the default: five times the largest
    /// Raspberry Pi OS download, and room for an uncompressed `.img`). A server announcing
    /// more (`Content-Length`) is refused before a byte is written; a body growing past it is
    /// stopped and deleted.
    pub max_size: ByteSize,
    /// The slowest transfer accepted, in bytes per second, e.g. `10 KiB` (the default; a
    /// 1 GiB image would take over a day). A download averaging less over
    /// `low_speed_time` seconds is stopped, as curl's `--speed-limit`. `0` turns the speed
    /// check off; a transfer that stalls completely is still stopped after `low_speed_time`.
    pub low_speed_limit: ByteSize,
    /// Seconds over which `low_speed_limit` is measured (curl's `--speed-time`), and the
    /// longest wait for the server's answer or for any single read. Default 60.
    pub low_speed_time: NonZeroU32,
    /// Seconds to connect to the server (TCP and TLS). Default 30.
    pub connect_timeout: NonZeroU32,
    /// The longest one image download may take in one run, in seconds. Default 21600 (6
    /// hours), so a nightly apply never runs into the next one; the next run resumes.
    pub max_time: NonZeroU32,
}

impl Default for Downloads {
    fn default() -> Self {
        let secs = |n| NonZeroU32::new(n).expect("non-zero constant");
        Downloads {
            max_size: ByteSize(16 << 30),
            low_speed_limit: ByteSize(10 << 10),
            low_speed_time: secs(60),
            connect_timeout: secs(30),
            max_time: secs(6 * 3600),
        }
    }
}

/// Settings every client inherits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// The image clients are provisioned from when they name none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// SSH access for every client (a client's own `ssh` replaces this one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
    /// A login user created on first boot (a client's own `user` replaces this one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Extra kernel arguments for every client, before the client's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<String>,
    /// Whether clients get a root of their own or share their image's (default `own`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<RootMode>,
    /// Bootloader (EEPROM) settings for every client; a client's own `eeprom` settings
    /// override these key by key. A client with settings gets `pieeprom.upd` and
    /// `pieeprom.sig` in its boot folder, which the Pi flashes over TFTP (self-update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eeprom: Option<EepromSettings>,
}

/// The base bootloader image for `eeprom:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bootloader {
    /// Absolute host path of a Raspberry Pi 4 bootloader image (`pieeprom-*.bin`, 512 KiB),
    /// e.g. from the `rpi-eeprom` package:
    /// `/lib/firmware/raspberrypi/bootloader-2711/default/pieeprom-2026-05-17.bin`.
    pub image: String,
    /// Absolute host path of `recovery.bin` for `pinetboot eeprom sd-card` (default: the
    /// `recovery.bin` beside `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
}

/// One Raspberry Pi 4 that boots from this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// In a fleet (`servers:`), the server this Pi boots from. Default: the server whose
    /// `network` holds the client's `address`, else the only server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The board's serial number: the last 8 hex digits of `Serial` in the Pi's /proc/cpuinfo,
    /// e.g. `0c4c21e5`. The 16-digit form and upper case are accepted and normalised. The
    /// bootloader asks TFTP for files under a folder of this name.
    pub serial: String,
    /// The board's Ethernet MAC address, e.g. `dc:a6:32:01:02:03`. When given, only this MAC is
    /// offered a boot; otherwise any Raspberry Pi MAC prefix is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The client's fixed IPv4 address, if your router gives it one: narrows the NFS export of
    /// its root to this one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The image this client's root is provisioned from (default: `defaults.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The client's hostname (default: the client's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// SSH access (default: `defaults.ssh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
    /// A login user created on first boot (default: `defaults.user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Extra kernel arguments, appended after `defaults.cmdline`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<String>,
    /// `own` (the default): a root of its own, `/nfs/NAME`, that survives reboots. `shared`:
    /// the one read-only root every shared client of its image mounts, with the Pi's writes
    /// in RAM (a reboot resets the Pi); its hostname comes from the kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootMode>,
    /// Bootloader (EEPROM) settings, overriding `defaults.eeprom` key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eeprom: Option<EepromSettings>,
}

/// What root a client boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    /// A root of its own (`/nfs/NAME`), provisioned once from its image.
    #[default]
    Own,
    /// Its image's shared read-only root, with writes in RAM.
    Shared,
}

/// SSH access to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// Enable the SSH server (default: true when an `ssh` block is present).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enable: bool,
    /// The account the keys are for (default: `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Public keys allowed to log in, one authorized_keys line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
}

/// A login user, created the way Raspberry Pi OS expects: pinetboot writes `userconf.txt`
/// (`NAME:HASH`) into the boot folder while the user does not exist yet, and the Pi's first boot
/// creates the user (renaming the image's uid-1000 user if there is one) and deletes the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user name: lower-case letters, digits and dashes, starting with a letter; not root.
    pub name: String,
    /// The password as a crypt(3) hash, e.g. from `openssl passwd -6` or
    /// `mkpasswd -m yescrypt` (never the password itself).
    pub password_hash: String,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
