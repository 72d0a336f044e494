//! The `.sig` file the bootloader checks before it applies a self-update.

use sha2::{Digest, Sha256};

/// The contents of a `pieeprom.sig`, exactly as `rpi-eeprom-digest -i IMAGE -o SIG` writes
/// them with `SOURCE_DATE_EPOCH=timestamp`: the lowercase hex SHA-256 of the image, a
/// newline, `ts: ` and the timestamp in decimal, and a final newline.
///
/// The timestamp should be the one embedded in the image (see
/// [`EepromImage::timestamp`](super::EepromImage::timestamp)).
pub fn sig_file(image: &[u8], timestamp: u64) -> String {
    let digest = hex::encode(Sha256::digest(image));
    format!("{digest}\nts: {timestamp}\n")
}
