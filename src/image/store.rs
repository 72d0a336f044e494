//! The image store: every disk image is unpacked once, into
//! `<paths.state>/images/<sha256>/` holding `root/` (the unpacked tree) and `manifest.json`
//! (boot layout, os-release, sizes, source, digest, time of unpacking). Client roots are
//! cloned from `root/`.
//!
//! An entry appears atomically: it is unpacked into `images/.<sha256>.staging/` and renamed
//! into place only when complete (manifest written last), so an interrupted unpack leaves no
//! half entry. A staging folder a killed apply left is shown by the next `plan` and removed by
//! the next `apply` before it fetches anything (`resource/leftover.rs`); the unpack starts over.
//! `images/` itself is `0700`: the trees hold setuid binaries, `/etc/shadow` and
//! world-writable folders that other users of the server must not reach.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{UnpackReport, fetch};
use crate::host::Host;
use crate::progress::Progress;

/// UTC timestamps: the store writes `unpacked_at` with them, `reprovision` names moved-aside
/// roots with them.
pub use crate::date::utc;

/// The manifest's format version.
pub const MANIFEST_VERSION: u32 = 1;

/// Where an image comes from (host path or URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A local file (host path, as the host sees it).
    File(String),
    /// An http(s) URL.
    Url(String),
}

impl Origin {
    /// `unpack /srv/x.img.xz` or `download from URL`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Origin::File(p) => p.clone(),
            Origin::Url(u) => u.clone(),
        }
    }
}

/// `manifest.json` of a store entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// sha256 of the image file (lower-case hex).
    pub sha256: String,
    /// Where the image came from.
    pub source: Origin,
    /// Container format (`raw`, `xz`, `gzip`, `zip`).
    pub format: String,
    /// The boot folder inside `root/` (`boot/firmware` or `boot`).
    pub boot_dir: String,
    /// os-release `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// os-release `VERSION_CODENAME`.
    pub version_codename: Option<String>,
    /// MBR disk signature, as in `PARTUUID=<8 hex digits>-02`.
    pub disk_signature: String,
    /// Size of the image file.
    pub file_bytes: u64,
    /// Size of the raw disk image.
    pub image_bytes: u64,
    /// Size of the FAT partition.
    pub boot_partition_bytes: u64,
    /// Size of the ext4 partition.
    pub root_partition_bytes: u64,
    /// Bytes of file data in the tree (both partitions).
    pub tree_bytes: u64,
    /// Regular files in the tree (hardlinks once).
    pub files: u64,
    /// When it was unpacked (UTC, RFC 3339).
    pub unpacked_at: String,
}

/// Host path of the store (`<state>/images`).
pub fn images_dir(state: &str) -> String {
    format!("{}/images", state.trim_end_matches('/'))
}

/// Host path of the entry of `sha256`.
pub fn entry_dir(state: &str, sha256: &str) -> String {
    format!("{}/{sha256}", images_dir(state))
}

/// Host path of the unpacked tree of `sha256`.
pub fn root_dir(state: &str, sha256: &str) -> String {
    format!("{}/root", entry_dir(state, sha256))
}

/// Host path of the staging folder of `sha256`.
pub fn staging_dir(state: &str, sha256: &str) -> String {
    format!("{}/.{sha256}.staging", images_dir(state))
}

/// Whether the entry of `sha256` is complete (it only ever appears complete).
pub fn is_present(host: &Host, state: &str, sha256: &str) -> bool {
    host.path(format!("{}/manifest.json", entry_dir(state, sha256)))
        .is_file()
}

/// The manifest of an entry, if present and readable.
pub fn manifest(host: &Host, state: &str, sha256: &str) -> Option<Manifest> {
    let bytes = host
        .read(format!("{}/manifest.json", entry_dir(state, sha256)))
        .ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn make_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", path.display()))
}

/// Makes sure the entry of `sha256` exists: fetches the image (a URL is downloaded into the
/// store's folder, resumably) and unpacks it into a staging folder renamed into place.
/// Returns the manifest. On error nothing is left in the store but a partial download (which
/// the next run resumes).
pub fn ensure(
    host: &Host,
    state: &str,
    sha256: &str,
    origin: &Origin,
    limits: &fetch::Limits,
    progress: &Progress,
) -> anyhow::Result<Manifest> {
    if let Some(m) = manifest(host, state, sha256) {
        return Ok(m);
    }
    let images = host.path(images_dir(state));
    make_private_dir(&images)?;
    let staging = host.path(staging_dir(state, sha256));
    // A leftover of a killed unpack (the plan shows it, and apply removes it before this;
    // this is for a race): no symlink in it is followed, no mount entered.
    if crate::tree::remove::remove(&staging)
        .with_context(|| format!("removing the interrupted unpack {}", staging.display()))?
        .is_some()
    {
        tracing::info!(path = %staging.display(), "removed an interrupted unpack");
    }
    let file: PathBuf = match origin {
        Origin::File(p) => host.path(p),
        Origin::Url(url) => fetch::download(url, &images, sha256, limits, &|done, total| {
            progress.update("downloading", done, total);
        })?,
    };
    let file_bytes = std::fs::metadata(&file)
        .with_context(|| format!("image file {}", file.display()))?
        .len();
    make_private_dir(&staging)?;
    let result = (|| -> anyhow::Result<Manifest> {
        let report = super::unpack(&file, sha256, &staging.join("root"), &|done, total| {
            let phase = if total == file_bytes {
                "verifying + decompressing"
            } else {
                if done > 0 {
                    crate::host::atomic::pause_point("unpack");
                }
                "writing files"
            };
            progress.update(phase, done, total);
        })?;
        if crate::host::atomic::crash_point("image-unpacked") {
            std::process::abort();
        }
        let m = manifest_of(&report, origin, file_bytes);
        let mut text = serde_json::to_string_pretty(&m).expect("manifest serialises");
        text.push('\n');
        crate::host::atomic::write_host_file(
            &staging.join("manifest.json"),
            text.as_bytes(),
            0o644,
        )
        .context("writing manifest.json")?;
        // The tree's data is on disk before the entry appears under its name.
        rustix::fs::syncfs(crate::host::atomic::open_dir(&staging)?)
            .with_context(|| format!("syncing {}", staging.display()))?;
        if crate::host::atomic::crash_point("before-store-rename") {
            std::process::abort();
        }
        let entry = host.path(entry_dir(state, sha256));
        crate::host::atomic::rename_noreplace_synced(&staging, &entry)
            .with_context(|| format!("moving {} into place", entry.display()))?;
        Ok(m)
    })();
    progress.finish();
    match result {
        Ok(m) => {
            if let Origin::Url(_) = origin {
                // The tree is what is kept; the compressed download is not needed any more.
                let _ = std::fs::remove_file(&file);
            }
            Ok(m)
        }
        Err(e) => {
            if let Err(e2) = crate::tree::remove::remove(&staging) {
                tracing::warn!(path = %staging.display(), "cannot remove a failed unpack: {e2:#}");
            }
            if let (Origin::Url(_), Some(super::ImageError::Sha256Mismatch { .. })) =
                (origin, e.downcast_ref::<super::ImageError>())
            {
                let _ = std::fs::remove_file(&file);
            }
            Err(e)
        }
    }
}

fn manifest_of(r: &UnpackReport, origin: &Origin, file_bytes: u64) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        sha256: r.sha256.clone(),
        source: origin.clone(),
        format: format!("{:?}", r.format).to_ascii_lowercase(),
        boot_dir: r.boot_dir.to_string_lossy().into_owned(),
        pretty_name: r.pretty_name.clone(),
        version_codename: r.version_codename.clone(),
        disk_signature: format!("{:08x}", r.disk_signature),
        file_bytes,
        image_bytes: r.image_bytes,
        boot_partition_bytes: r.boot_partition_bytes,
        root_partition_bytes: r.root_partition_bytes,
        tree_bytes: r.root.bytes + r.boot.bytes,
        files: r.root.files + r.boot.files,
        unpacked_at: utc(i64::try_from(crate::host::ops::now()).unwrap_or(0), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let sha = "ab".repeat(32);
        assert_eq!(
            root_dir("/var/lib/pinetboot/", &sha),
            format!("/var/lib/pinetboot/images/{sha}/root")
        );
        assert_eq!(
            staging_dir("/var/lib/pinetboot", &sha),
            format!("/var/lib/pinetboot/images/.{sha}.staging")
        );
    }
}
