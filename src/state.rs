//! What pinetboot owned after its last apply, so a client removed from the config can be pruned
//! without scanning and guessing. A versioned JSON file under `paths.state`, written atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::host::Host;

/// The state file's format version.
pub const VERSION: u32 = 1;

/// pinetboot's record of what it manages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Clients, by name.
    pub clients: BTreeMap<String, ClientRecord>,
    /// The fleet server this host applied (`servers:`); none for a file with one `server:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The git commit the last apply applied, in pull mode; none when the config came from a
    /// file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
    /// Shared roots (`root: shared`), by host path of their base folder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shared: BTreeMap<String, SharedRecord>,
}

/// A shared root pinetboot made: `<nfs>/.shared/IMAGE-ID/` holding `root/` (exported
/// read-only) and `boot/CLIENT/` (each shared client's boot folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRecord {
    /// The image it was made from.
    pub image: String,
    /// The image's sha256 (none for a directory image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    /// Its boot folder, relative to `root/`.
    pub boot_dir: String,
}

/// Which commit of which repository a pull-mode apply applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    /// The repository URL.
    pub url: String,
    /// The branch or tag pulled.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The config file inside the repository.
    pub path: String,
    /// The commit id (40 hex digits).
    pub commit: String,
    /// The commit's subject line.
    pub subject: String,
    /// The commit time (seconds since the epoch).
    pub committed: i64,
    /// Who signed it, when signatures are required (principal and key fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

impl SourceRecord {
    /// The commit's first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(12)]
    }

    /// One line for people: `commit 1a2b3c4d5e6f "subject" (ref main of URL)`.
    pub fn describe(&self) -> String {
        format!(
            "commit {} \"{}\" ({} of {}, file {})",
            self.short(),
            self.subject,
            self.git_ref,
            self.url,
            self.path
        )
    }
}

/// What pinetboot made for one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRecord {
    /// Serial (names the TFTP folder).
    pub serial: String,
    /// Host path of the client root.
    pub root: String,
    /// Host path of the TFTP folder named by the serial (bind mount target).
    pub tftp: String,
    /// Host paths of the other TFTP folders the boot folder is bind-mounted onto: the one the
    /// client's `eeprom.tftp_prefix` names, and those it named before (see
    /// `expand::tftp_folders`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_folders: Vec<String>,
    /// The boot folder inside the root, as detected when the root was provisioned. It is
    /// never re-detected from the (untrusted) root afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_dir: Option<String>,
    /// sha256 of the disk image the root was provisioned from (none for a directory image,
    /// or a root provisioned before this was recorded). A changed image never touches the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    /// For a shared client (`root: shared`): `root` is its shared root's base folder, not
    /// client data, and `boot_dir` its own boot folder in it (`boot/NAME`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl ClientRecord {
    /// Every TFTP folder of the client: the serial folder, then the prefix folders.
    pub fn folders(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.tftp).chain(&self.prefix_folders)
    }
}

/// Host path of the state file.
pub fn file(state_dir: &str) -> PathBuf {
    PathBuf::from(state_dir).join("state.json")
}

impl State {
    /// Loads the state (empty when there is none yet).
    pub fn load(host: &Host, state_dir: &str) -> anyhow::Result<State> {
        let path = file(state_dir);
        let Some(bytes) = host
            .read(&path)
            .with_context(|| format!("reading {}", path.display()))?
        else {
            return Ok(State {
                version: VERSION,
                ..State::default()
            });
        };
        let state: State = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a pinetboot state file", path.display()))?;
        if state.version != VERSION {
            bail!(
                "{} has format version {}, this pinetboot reads {VERSION}",
                path.display(),
                state.version
            );
        }
        Ok(state)
    }

    /// Writes the state atomically.
    pub fn save(&self, host: &Host, state_dir: &str) -> anyhow::Result<()> {
        let dir = host.path(state_dir);
        crate::host::ops::create_dirs(&dir, 0o777)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut text = serde_json::to_string_pretty(self).expect("state serialises");
        text.push('\n');
        let path = host.path(file(state_dir));
        crate::host::atomic::write_host_file(&path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))
    }
}
