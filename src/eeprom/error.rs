//! Errors from reading and rewriting bootloader EEPROM images.

/// Why an EEPROM image could not be read or rewritten.
///
/// Every variant carries the numbers needed to find the problem in a hex dump: offsets are
/// byte offsets from the start of the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EepromError {
    /// The image is not exactly [`IMAGE_SIZE`](super::IMAGE_SIZE) bytes long.
    #[error(
        "not a Raspberry Pi 4 bootloader EEPROM image: size is {actual} bytes, expected {expected} bytes (512 KiB)"
    )]
    WrongSize {
        /// Length of the bytes given.
        actual: usize,
        /// The only accepted length.
        expected: usize,
    },
    /// A section header does not carry the section magic (`0x55aaf00f` under the mask
    /// `0xfffff00f`).
    #[error(
        "EEPROM image is corrupted: bad section magic {magic:#010x} at offset {offset:#x} (expected 0x55aaf00f under mask 0xfffff00f)"
    )]
    BadMagic {
        /// Offset of the section header.
        offset: usize,
        /// The 32-bit big-endian word found there.
        magic: u32,
    },
    /// A section header starts so close to the end that its 8 bytes do not fit.
    #[error(
        "EEPROM image is truncated: section header at offset {offset:#x} runs past the end of the {image_len}-byte image"
    )]
    TruncatedHeader {
        /// Offset of the section header.
        offset: usize,
        /// Length of the image.
        image_len: usize,
    },
    /// A section's length field points past the end of the image.
    #[error(
        "EEPROM image is corrupted: section at offset {offset:#x} has length {length}, which runs past the end of the {image_len}-byte image"
    )]
    SectionPastEnd {
        /// Offset of the section header.
        offset: usize,
        /// The section's length field (bytes after the 8-byte header).
        length: u32,
        /// Length of the image.
        image_len: usize,
    },
    /// A file section is too short to hold its 12-byte name and 4-byte reserved word.
    #[error(
        "EEPROM image is corrupted: file section at offset {offset:#x} has length {length}, less than its 16-byte name and reserved fields"
    )]
    FileSectionTooShort {
        /// Offset of the section header.
        offset: usize,
        /// The section's length field.
        length: u32,
    },
    /// The image holds no file section with this name (for the config: `bootconf.txt`).
    #[error("EEPROM image has no `{name}` file section")]
    MissingFile {
        /// The file name looked for.
        name: &'static str,
    },
    /// The embedded `bootconf.txt` is not valid UTF-8.
    #[error("the embedded bootconf.txt is not valid UTF-8 (invalid byte at position {position})")]
    ConfigNotUtf8 {
        /// Byte offset within the config where the invalid sequence starts.
        position: usize,
    },
    /// A config to embed contains a byte outside printable ASCII, tab, CR and LF.
    #[error(
        "bootloader config line {line}, column {column}: only printable ASCII, tabs and line breaks are allowed"
    )]
    ConfigNotAscii {
        /// 1-based line of the offending character.
        line: usize,
        /// 1-based column (in characters) of the offending character.
        column: usize,
    },
    /// A config to embed is larger than a file in the image may be.
    #[error("bootloader config is too large ({size} bytes, max {max} bytes)")]
    ConfigTooLarge {
        /// Size of the config in bytes.
        size: usize,
        /// The maximum size in bytes.
        max: usize,
    },
    /// The new config does not fit between its section header and the next section (or the
    /// bootloader's reserved last 4 KiB).
    #[error(
        "bootloader config does not fit in the EEPROM image: the file section needs {needed} bytes, {available} bytes are available"
    )]
    NoSpace {
        /// Bytes the updated file section needs, header included.
        needed: usize,
        /// Bytes available from the section header to the limit.
        available: usize,
    },
    /// A timestamp does not fit in the image's 32-bit update-timestamp field.
    #[error(
        "update timestamp {timestamp} does not fit in 32 bits (max {})",
        u32::MAX
    )]
    TimestampOutOfRange {
        /// The timestamp asked for.
        timestamp: u64,
    },
    /// The `updatetime` file section is too short to hold the 8-byte timestamp record.
    #[error(
        "EEPROM image is corrupted: `updatetime` file section at offset {offset:#x} has length {length}, too short for the 8-byte timestamp"
    )]
    UpdateTimeTooShort {
        /// Offset of the section header.
        offset: usize,
        /// The section's length field.
        length: u32,
    },
    /// The read-only area has an `updatetime` file but the first partition lacks its copy.
    #[error(
        "EEPROM image has an `updatetime` file in its read-only area but none in its first partition"
    )]
    MissingPartitionUpdateTime,
}
