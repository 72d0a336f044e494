//! Delivering a client's declared bootloader config: `pieeprom.upd` (the base image with the
//! config embedded) and `pieeprom.sig` in the client's boot folder, which a netbooting Pi with
//! self-update on flashes from `SERIAL/` over TFTP. The update timestamp is reused from the
//! file already there when the base image and config are unchanged, so a Pi is never asked to
//! flash the same thing twice.

use std::path::Path;

use anyhow::Context as _;

use crate::eeprom::{EepromImage, EepromSettings, sig_file};
use crate::host::Host;

/// The files to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// `pieeprom.upd`.
    pub image: Vec<u8>,
    /// `pieeprom.sig`.
    pub sig: String,
    /// The embedded config.
    pub config: String,
    /// The update timestamp.
    pub timestamp: u64,
}

/// Reads and parses the base image at a host path.
pub fn base_image(host: &Host, path: &Path) -> anyhow::Result<EepromImage> {
    let bytes = host
        .read_max(path, crate::eeprom::MAX_FILE_BYTES)
        .with_context(|| format!("reading {}", path.display()))?
        .with_context(|| format!("the bootloader image {} does not exist", path.display()))?;
    EepromImage::parse(bytes)
        .with_context(|| format!("{} is not a Pi 4 bootloader image", path.display()))
}

/// The config pinetboot embeds for `settings` over the base image's own.
pub fn render_config(base: &EepromImage, settings: &EepromSettings) -> anyhow::Result<String> {
    Ok(settings.render(&base.config()?))
}

/// Builds the update; `existing` is the `pieeprom.upd` already served, if any, whose timestamp
/// is kept when it holds exactly this base and config. `now` is the timestamp otherwise.
pub fn build(
    base: &EepromImage,
    settings: &EepromSettings,
    existing: Option<&[u8]>,
    now: u64,
) -> anyhow::Result<Update> {
    let config = render_config(base, settings)?;
    let kept = existing.and_then(|bytes| {
        let old = EepromImage::parse(bytes.to_vec()).ok()?;
        let ts = old.timestamp()?;
        let same = base.with_config(&config, Some(ts)).ok()?;
        (same == bytes).then_some(ts)
    });
    let timestamp = kept.unwrap_or(now);
    let image = base.with_config(&config, Some(timestamp))?;
    let sig = sig_file(&image, timestamp);
    Ok(Update {
        image,
        sig,
        config,
        timestamp,
    })
}
