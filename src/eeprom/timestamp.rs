//! The self-update timestamp.
//!
//! A timestamp record is 8 bytes: the bitwise complement of the timestamp, then the
//! timestamp, both 32-bit little-endian. On a Raspberry Pi 4 image the record is the last
//! 8 bytes of the image (inside the bootloader's reserved last 4 KiB). Images that carry an
//! `updatetime` file in their read-only area (the first 64 KiB) keep it there instead, with
//! a copy in the `updatetime` file of the first partition.

use std::ops::Range;

use super::EepromError;
use super::image::put;
use super::section::{self, PARTITION_SIZE, READ_ONLY_SIZE, Section};

/// Name of the file section that may hold the timestamp record.
const UPDATE_TIME: &str = "updatetime";
/// Length of a timestamp record.
const RECORD_LEN: usize = 8;

/// Writes `ts` wherever the image keeps its timestamp record.
pub(super) fn write(bytes: &mut [u8], sections: &[Section], ts: u32) -> Result<(), EepromError> {
    let read_only = 0..READ_ONLY_SIZE;
    let Some(first) = file_record(sections, &read_only)? else {
        let tail = bytes.len().saturating_sub(RECORD_LEN);
        return put(bytes, tail, &record(ts));
    };
    put(bytes, first, &record(ts))?;
    let partition = READ_ONLY_SIZE..READ_ONLY_SIZE + PARTITION_SIZE;
    let copy = file_record(sections, &partition)?.ok_or(EepromError::MissingPartitionUpdateTime)?;
    put(bytes, copy, &record(ts))
}

/// Reads the timestamp record, if it holds a consistent value.
pub(super) fn read(bytes: &[u8], sections: &[Section]) -> Option<u32> {
    let at = match file_record(sections, &(0..READ_ONLY_SIZE)) {
        Ok(Some(at)) => at,
        Ok(None) => bytes.len().checked_sub(RECORD_LEN)?,
        Err(_) => return None,
    };
    let inverted = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
    let ts = u32::from_le_bytes(bytes.get(at + 4..at + RECORD_LEN)?.try_into().ok()?);
    (inverted == !ts).then_some(ts)
}

/// The record's bytes: complement first, then the value.
fn record(ts: u32) -> [u8; RECORD_LEN] {
    let mut out = [0; RECORD_LEN];
    out[..4].copy_from_slice(&(!ts).to_le_bytes());
    out[4..].copy_from_slice(&ts.to_le_bytes());
    out
}

/// Where the record of the `updatetime` file with its header in `within` starts, if there
/// is such a file.
fn file_record(sections: &[Section], within: &Range<usize>) -> Result<Option<usize>, EepromError> {
    let Some(found) = section::find_file(sections, UPDATE_TIME, within) else {
        return Ok(None);
    };
    let Some(file) = sections.get(found) else {
        return Ok(None);
    };
    match file.contents_range() {
        Some(range) if range.len() >= RECORD_LEN => Ok(Some(range.start)),
        _ => Err(EepromError::UpdateTimeTooShort {
            offset: file.offset,
            length: file.length,
        }),
    }
}
