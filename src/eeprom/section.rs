//! The section walk: the image is a chain of 8-byte-aligned sections, each with a header of
//! a big-endian magic word and a big-endian length (the bytes after the header).

use std::ops::Range;

use super::EepromError;

/// Every section magic matches this value under [`MAGIC_MASK`].
pub const SECTION_MAGIC: u32 = 0x55aa_f00f;
/// The bits of a magic word that all section kinds share.
pub const MAGIC_MASK: u32 = 0xffff_f00f;
/// Magic of a modifiable file section (`bootconf.txt`, `pubkey.bin`, `updatetime`, …).
pub const FILE_MAGIC: u32 = 0x55aa_f11f;
/// Magic of a padding section: skipped when looking for the space a file may grow into.
pub const PAD_MAGIC: u32 = 0x55aa_feef;

/// Length of a section header: magic and length, both 32-bit big-endian.
pub const HEADER_LEN: usize = 8;
/// Length of the NUL-padded name field at the start of a file section's data.
pub const FILE_NAME_LEN: usize = 12;
/// A reserved 32-bit word between the name and the contents of a file section.
const FILE_RESERVED_LEN: usize = 4;
/// A file section's length field counts the name and reserved word besides the contents.
pub(super) const FILE_OVERHEAD: usize = FILE_NAME_LEN + FILE_RESERVED_LEN;
/// Offset of a file's contents from its section header.
pub(super) const FILE_CONTENTS_OFFSET: usize = HEADER_LEN + FILE_OVERHEAD;

/// Modifiable files sit in 4 KiB erase blocks; the last block of the image is the
/// bootloader's scratch space and is never written by a config update.
pub(super) const ERASE_BLOCK_SIZE: usize = 4096;
/// The read-only area at the start of an image (bootcode and the like).
pub(super) const READ_ONLY_SIZE: usize = 64 * 1024;
/// The first partition follows the read-only area; modifiable files are looked up there.
pub(super) const PARTITION_SIZE: usize = 988 * 1024;

/// What a section holds, as told by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// A named, modifiable file ([`FILE_MAGIC`]).
    File,
    /// Erased filler between sections ([`PAD_MAGIC`]).
    Padding,
    /// Code or data of the bootloader itself (any other magic that matches the mask).
    Other,
}

/// One section of an EEPROM image, as found by the section walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Offset of the 8-byte section header from the start of the image.
    pub offset: usize,
    /// The section's magic word.
    pub magic: u32,
    /// The section's length field: bytes after the header, without alignment padding.
    pub length: u32,
    /// For a file section, its name with the NUL padding removed.
    pub file_name: Option<String>,
}

impl Section {
    /// What the section holds.
    pub fn kind(&self) -> SectionKind {
        match self.magic {
            FILE_MAGIC => SectionKind::File,
            PAD_MAGIC => SectionKind::Padding,
            _ => SectionKind::Other,
        }
    }

    /// The bytes after the header, as a range of the image.
    pub fn data_range(&self) -> Range<usize> {
        let start = self.offset.saturating_add(HEADER_LEN);
        start..start.saturating_add(self.length as usize)
    }

    /// For a file section, the range of the image holding the file's contents.
    pub fn contents_range(&self) -> Option<Range<usize>> {
        self.file_name.as_ref()?;
        let data = self.data_range();
        Some(data.start.saturating_add(FILE_OVERHEAD)..data.end)
    }
}

/// Walks the section chain from offset 0 until an erased (`0xffffffff`) or zero magic word,
/// or the end of the image.
pub(super) fn walk(bytes: &[u8]) -> Result<Vec<Section>, EepromError> {
    let mut sections = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let Some((magic, length)) = read_header(bytes, offset) else {
            return Err(EepromError::TruncatedHeader {
                offset,
                image_len: bytes.len(),
            });
        };
        if magic == 0 || magic == u32::MAX {
            break;
        }
        let section = read_section(bytes, offset, magic, length)?;
        offset = align8(section.data_range().end);
        sections.push(section);
    }
    Ok(sections)
}

/// Checks one section header and reads its file name, if it is a file section.
fn read_section(
    bytes: &[u8],
    offset: usize,
    magic: u32,
    length: u32,
) -> Result<Section, EepromError> {
    if magic & MAGIC_MASK != SECTION_MAGIC {
        return Err(EepromError::BadMagic { offset, magic });
    }
    let end = offset + HEADER_LEN + length as usize;
    if end > bytes.len() {
        return Err(EepromError::SectionPastEnd {
            offset,
            length,
            image_len: bytes.len(),
        });
    }
    let file_name = if magic == FILE_MAGIC {
        if (length as usize) < FILE_OVERHEAD {
            return Err(EepromError::FileSectionTooShort { offset, length });
        }
        let start = offset + HEADER_LEN;
        bytes.get(start..start + FILE_NAME_LEN).map(file_name)
    } else {
        None
    };
    Ok(Section {
        offset,
        magic,
        length,
        file_name,
    })
}

/// The magic and length words of the header at `offset`, if all 8 bytes are there.
fn read_header(bytes: &[u8], offset: usize) -> Option<(u32, u32)> {
    Some((read_be_u32(bytes, offset)?, read_be_u32(bytes, offset + 4)?))
}

/// A big-endian 32-bit word at `offset`, if it lies within `bytes`.
pub(super) fn read_be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

/// A file name field with its NUL bytes dropped.
fn file_name(field: &[u8]) -> String {
    let kept: Vec<u8> = field.iter().copied().filter(|&b| b != 0).collect();
    String::from_utf8_lossy(&kept).into_owned()
}

/// Rounds up to the next multiple of 8: sections start 8-byte aligned.
pub(super) fn align8(offset: usize) -> usize {
    offset.div_ceil(8) * 8
}

/// The index of the first file section called `name` whose header lies in `within`.
pub(super) fn find_file(sections: &[Section], name: &str, within: &Range<usize>) -> Option<usize> {
    sections.iter().position(|section| {
        within.contains(&section.offset) && section.file_name.as_deref() == Some(name)
    })
}

/// The offset of the first non-padding section after `index`, if any: a file may grow up to
/// there, overwriting padding sections on the way.
pub(super) fn next_boundary(sections: &[Section], index: usize) -> Option<usize> {
    sections
        .iter()
        .skip(index + 1)
        .find(|section| section.kind() != SectionKind::Padding)
        .map(|section| section.offset)
}
