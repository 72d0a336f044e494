//! A parsed Raspberry Pi 4 bootloader EEPROM image and the `bootconf.txt` rewrite.

use super::section::{
    self, ERASE_BLOCK_SIZE, FILE_CONTENTS_OFFSET, FILE_OVERHEAD, PAD_MAGIC, PARTITION_SIZE,
    READ_ONLY_SIZE, Section,
};
use super::{EepromError, IMAGE_SIZE, MAX_CONFIG_SIZE, timestamp};

/// Name of the file section that holds the bootloader configuration.
pub const BOOTCONF_TXT: &str = "bootconf.txt";

/// A Raspberry Pi 4 bootloader EEPROM image (`pieeprom-*.bin`), checked and walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EepromImage {
    bytes: Vec<u8>,
    sections: Vec<Section>,
}

impl EepromImage {
    /// Checks the size and walks the section chain of an image.
    ///
    /// Fails on anything but a 512 KiB image, a section header with a bad magic word, a
    /// section running past the end, or a file section too short for its name.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, EepromError> {
        if bytes.len() != IMAGE_SIZE {
            return Err(EepromError::WrongSize {
                actual: bytes.len(),
                expected: IMAGE_SIZE,
            });
        }
        let sections = section::walk(&bytes)?;
        Ok(Self { bytes, sections })
    }

    /// The image's bytes, unchanged.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives back the image's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The sections in image order, up to the first erased or zero header.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The contents of the first file section called `name`, if there is one.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let index = section::find_file(&self.sections, name, &(0..usize::MAX))?;
        let range = self.sections.get(index)?.contents_range()?;
        self.bytes.get(range)
    }

    /// The raw bytes of the embedded `bootconf.txt`.
    pub fn config_bytes(&self) -> Result<&[u8], EepromError> {
        self.file(BOOTCONF_TXT)
            .ok_or(EepromError::MissingFile { name: BOOTCONF_TXT })
    }

    /// The embedded `bootconf.txt`, exactly as `rpi-eeprom-config IMAGE` prints it.
    pub fn config(&self) -> Result<String, EepromError> {
        let bytes = self.config_bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|err| EepromError::ConfigNotUtf8 {
            position: err.utf8_error().valid_up_to(),
        })
    }

    /// The self-update timestamp stored in the image (seconds since the Unix epoch), if one
    /// was set: `None` for an erased or inconsistent timestamp record.
    pub fn timestamp(&self) -> Option<u64> {
        timestamp::read(&self.bytes, &self.sections).map(u64::from)
    }

    /// A copy of the image with `config` as its `bootconf.txt` and, if given, `timestamp` as
    /// its self-update timestamp: byte for byte what
    /// `rpi-eeprom-config --config F [--timestamp T] --out OUT IMAGE` writes.
    ///
    /// The config must be printable ASCII (plus tab, CR, LF) and at most
    /// [`MAX_CONFIG_SIZE`] bytes, and must fit before the next non-padding section.
    pub fn with_config(
        &self,
        config: &str,
        timestamp: Option<u64>,
    ) -> Result<Vec<u8>, EepromError> {
        check_config(config)?;
        let timestamp = timestamp.map(timestamp_u32).transpose()?;
        let mut out = self.bytes.clone();
        if let Some(ts) = timestamp {
            timestamp::write(&mut out, &self.sections, ts)?;
        }
        replace_file(&mut out, &self.sections, BOOTCONF_TXT, config.as_bytes())?;
        Ok(out)
    }
}

/// The config must be small enough and plain ASCII text.
fn check_config(config: &str) -> Result<(), EepromError> {
    if config.len() > MAX_CONFIG_SIZE {
        return Err(EepromError::ConfigTooLarge {
            size: config.len(),
            max: MAX_CONFIG_SIZE,
        });
    }
    for (line_index, line) in config.split('\n').enumerate() {
        let bad = line
            .chars()
            .position(|c| !(c == '\t' || c == '\r' || c == ' ' || c.is_ascii_graphic()));
        if let Some(column) = bad {
            return Err(EepromError::ConfigNotAscii {
                line: line_index + 1,
                column: column + 1,
            });
        }
    }
    Ok(())
}

/// The image stores the timestamp as an unsigned 32-bit number.
fn timestamp_u32(timestamp: u64) -> Result<u32, EepromError> {
    u32::try_from(timestamp).map_err(|_| EepromError::TimestampOutOfRange { timestamp })
}

/// Replaces the contents of the file section `name` in the first partition.
///
/// The length field becomes the new contents' length plus the name and reserved words; the
/// contents are followed by `0xff` up to 8-byte alignment. The space up to the next
/// non-padding section is then erased (`0xff`), behind a new padding-section header when at
/// least 8 bytes remain and the file is not the last section.
fn replace_file(
    bytes: &mut [u8],
    sections: &[Section],
    name: &'static str,
    contents: &[u8],
) -> Result<(), EepromError> {
    let partition = READ_ONLY_SIZE..READ_ONLY_SIZE + PARTITION_SIZE;
    let index =
        section::find_file(sections, name, &partition).ok_or(EepromError::MissingFile { name })?;
    let header = sections
        .get(index)
        .ok_or(EepromError::MissingFile { name })?
        .offset;
    let scratch = bytes.len().saturating_sub(ERASE_BLOCK_SIZE);
    let boundary =
        section::next_boundary(sections, index).unwrap_or_else(|| scratch.min(partition.end));
    let limit = boundary.min(scratch);
    let contents_end = header + FILE_CONTENTS_OFFSET + contents.len();
    if contents_end > limit {
        return Err(EepromError::NoSpace {
            needed: contents_end - header,
            available: limit.saturating_sub(header),
        });
    }
    let length =
        u32::try_from(contents.len() + FILE_OVERHEAD).map_err(|_| EepromError::ConfigTooLarge {
            size: contents.len(),
            max: MAX_CONFIG_SIZE,
        })?;
    put(bytes, header + 4, &length.to_be_bytes())?;
    put(bytes, header + FILE_CONTENTS_OFFSET, contents)?;
    let is_last = index + 1 == sections.len();
    erase_after(bytes, contents_end, boundary, is_last)
}

/// Erases `from..boundary`: first up to 8-byte alignment, then (unless the file is the last
/// section) behind a padding-section header if there is room for one.
fn erase_after(
    bytes: &mut [u8],
    from: usize,
    boundary: usize,
    is_last: bool,
) -> Result<(), EepromError> {
    let aligned = section::align8(from);
    fill_erased(bytes, from, aligned)?;
    let mut start = aligned;
    let gap = boundary.saturating_sub(aligned);
    if gap >= section::HEADER_LEN && !is_last {
        let pad_length = (gap - section::HEADER_LEN) as u32;
        put(bytes, start, &PAD_MAGIC.to_be_bytes())?;
        put(bytes, start + 4, &pad_length.to_be_bytes())?;
        start += section::HEADER_LEN;
    }
    fill_erased(bytes, start, boundary)
}

/// Sets `start..end` to the flash erase value `0xff`.
fn fill_erased(bytes: &mut [u8], start: usize, end: usize) -> Result<(), EepromError> {
    if start >= end {
        return Ok(());
    }
    span(bytes, start, end)?.fill(0xff);
    Ok(())
}

/// Copies `data` into `bytes` at `offset`.
pub(super) fn put(bytes: &mut [u8], offset: usize, data: &[u8]) -> Result<(), EepromError> {
    let end = offset.saturating_add(data.len());
    span(bytes, offset, end)?.copy_from_slice(data);
    Ok(())
}

/// The bytes `start..end` of `bytes`, or [`EepromError::NoSpace`] where they run past its end.
fn span(bytes: &mut [u8], start: usize, end: usize) -> Result<&mut [u8], EepromError> {
    let available = bytes.len();
    bytes.get_mut(start..end).ok_or(EepromError::NoSpace {
        needed: end,
        available,
    })
}
