//! The Raspberry Pi 4 bootloader EEPROM image (`pieeprom-*.bin`), in pure Rust and byte
//! for byte as Raspberry Pi's `rpi-eeprom-config` and `rpi-eeprom-digest` write it.
//!
//! An image is exactly 512 KiB: a chain of sections, each an 8-byte header (big-endian
//! magic matching `0x55aaf00f` under the mask `0xfffff00f`, big-endian length of the data
//! after the header) starting 8-byte aligned, up to an erased (`0xffffffff`) header. File
//! sections (magic `0x55aaf11f`) hold a 12-byte NUL-padded name, a reserved 32-bit word and
//! the contents; the length field counts all three. `bootconf.txt` is such a file, rewritten
//! in place with `0xff` (erased flash) after it, up to the next non-padding section. The
//! self-update timestamp is the last 8 bytes of the image: `!ts` then `ts`, little-endian.
//!
//! [`EepromSettings`] is the YAML side: typed bootloader keys, validated and rendered into
//! the base image's `bootconf.txt`.

mod digest;
mod error;
mod image;
pub mod keys;
mod render;
mod section;
mod settings;
mod timestamp;

pub use digest::sig_file;
pub use error::EepromError;
pub use image::{BOOTCONF_TXT, EepromImage};
pub use section::{FILE_MAGIC, MAGIC_MASK, PAD_MAGIC, SECTION_MAGIC, Section, SectionKind};
pub use settings::{
    BootMode, EepromSettings, MAX_BOOT_MODES, MAX_TFTP_PREFIX_LEN, MIN_DHCP_REQ_TIMEOUT,
    MIN_DHCP_TIMEOUT, MIN_TFTP_FILE_TIMEOUT, SettingsProblem, TftpPrefix, boot_order_value,
};

/// Size of a Raspberry Pi 4 bootloader EEPROM image: 512 KiB.
pub const IMAGE_SIZE: usize = 512 * 1024;

/// The most pinetboot reads from a bootloader file (`eeprom show FILE`, `bootloader.image`,
/// `bootloader.recovery`): 2 MiB, the size of the largest bootloader image Raspberry Pi ships
/// (the Pi 5's BCM2712; a Pi 4's is [`IMAGE_SIZE`], its `recovery.bin` about 100 KiB). A Pi 5
/// image is still read whole, so the error says its exact size; anything bigger is not read.
pub const MAX_FILE_BYTES: u64 = 2 << 20;

/// Largest config (or other modifiable file) the image can hold: one 4 KiB erase block less
/// the 20-byte file header.
pub const MAX_CONFIG_SIZE: usize = 4096 - 20;
