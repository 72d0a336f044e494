//! The checked, normalised config the rest of pinetboot works from.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::config::model::{EepromSettings, Paths, RootMode, Ssh, User};
use crate::config::net::Ipv4Net;

/// A checked config file: one [`Valid`] per boot server it describes (one for a file with
/// `server:`, one per entry of `servers:` in a fleet), each holding only its own clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The servers, in name order.
    pub servers: Vec<Valid>,
}

/// A checked config for one server, with forms normalised (lower-case 8-digit serials,
/// `aa:bb:…` MACs): what plan and apply work from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// The server's name in a fleet (`servers:`); `None` for a file with one `server:`.
    pub server: Option<String>,
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
    /// `defaults.image`, as written (`discover` suggests an image when it is not set).
    pub defaults_image: Option<String>,
    /// `defaults.eeprom`, as written (`eeprom sd-card` without `--client`).
    pub defaults_eeprom: Option<EepromSettings>,
    /// The git commit this config was read from (pull mode); recorded in the state by apply.
    pub origin: Option<crate::state::SourceRecord>,
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
    /// Its own root, or its image's shared one.
    pub root: RootMode,
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
