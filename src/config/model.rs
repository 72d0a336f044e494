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

/// The desired state of one pinetboot boot server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pinetboot configuration")]
pub struct Config {
    /// This boot server: where the Pis reach TFTP and NFS, and the network they boot on.
    pub server: Server,
    /// Where pinetboot keeps things on the host. Every field has a default from the manual
    /// recipe; paths are host paths (resolved under `--root`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub paths: Paths,
    /// How client roots are exported over NFS.
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
    /// Bootloader (EEPROM) settings, overriding `defaults.eeprom` key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eeprom: Option<EepromSettings>,
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
