//! The xz container: stream headers and footers (walking back from the end,
//! over concatenated streams and stream padding), indexes and block headers,
//! each checked against the others and by its CRC32.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::block::{BUF_SIZE, build_filters};
use crate::image::MAX_IMAGE_BYTES;

/// Stream header magic.
pub(super) const HEADER_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// Stream footer magic.
pub(super) const FOOTER_MAGIC: [u8; 2] = [b'Y', b'Z'];
/// Size of a stream header and of a stream footer.
pub(super) const HEADER_SIZE: u64 = 12;
/// Largest value of a variable-length integer (63 bits, at most 9 bytes).
pub(super) const VLI_MAX: u64 = u64::MAX >> 1;
/// More blocks than this are not decoded in parallel (the index alone would
/// take too much memory); [`layout`] returns `Ok(None)`.
pub(super) const MAX_BLOCKS: u64 = 1 << 20;

/// Filter IDs (xz file format, section 5.4).
pub(super) const FILTER_DELTA: u64 = 0x03;
pub(super) const FILTER_X86: u64 = 0x04;
pub(super) const FILTER_POWERPC: u64 = 0x05;
pub(super) const FILTER_IA64: u64 = 0x06;
pub(super) const FILTER_ARM: u64 = 0x07;
pub(super) const FILTER_ARMTHUMB: u64 = 0x08;
pub(super) const FILTER_SPARC: u64 = 0x09;
pub(super) const FILTER_ARM64: u64 = 0x0A;
pub(super) const FILTER_RISCV: u64 = 0x0B;
pub(super) const FILTER_LZMA2: u64 = 0x21;

/// One filter of a block's chain: ID and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterSpec {
    pub(crate) id: u64,
    pub(crate) props: Vec<u8>,
}

/// One block of an xz file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    /// Offset of the block header in the file.
    pub(crate) offset: u64,
    /// Size of the block header.
    pub(crate) header_size: u64,
    /// Size of the compressed data (after the header, before padding).
    pub(crate) data_size: u64,
    /// Size of the block padding (0..=3 bytes).
    pub(crate) padding: u64,
    /// Size of the integrity check field after the padding.
    pub(crate) check_size: u64,
    /// Check type of the stream (0 none, 1 CRC32, 4 CRC64, 10 SHA-256;
    /// other, reserved types are skipped, as `xz` does).
    pub(crate) check: u8,
    /// Offset of the block's output in the decoded file.
    pub(crate) uncompressed_offset: u64,
    /// Size of the block's output, from the index.
    pub(crate) uncompressed_size: u64,
    /// Filter chain, LZMA2 last.
    pub(crate) filters: Vec<FilterSpec>,
    /// LZMA2 dictionary size declared in the header.
    pub(crate) dict_size: u64,
}

impl Block {
    /// Offset of the compressed data in the file.
    pub(super) fn data_offset(&self) -> u64 {
        self.offset + self.header_size
    }

    /// Dictionary actually allocated to decode this block: the declared one,
    /// capped at the block's output size (a dictionary larger than everything
    /// the block produces is never used), at least 4 KiB.
    pub(super) fn effective_dict(&self) -> u64 {
        self.dict_size.min(self.uncompressed_size.max(4096))
    }

    /// Bytes the block takes in the file (header, data, padding, check).
    pub(super) fn total_size(&self) -> u64 {
        self.header_size + self.data_size + self.padding + self.check_size
    }
}

/// The blocks of an xz file (all streams), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XzLayout {
    pub(crate) blocks: Vec<Block>,
    /// Sum of the blocks' uncompressed sizes.
    pub(crate) uncompressed_size: u64,
    /// Largest dictionary one worker needs (see [`Block::effective_dict`]).
    pub(crate) max_dict: u64,
    /// Number of streams in the file.
    pub(crate) streams: usize,
}

impl XzLayout {
    /// Memory one worker needs: a dictionary and two buffers.
    pub(crate) fn worker_mem(&self) -> u64 {
        self.max_dict + 2 * BUF_SIZE as u64
    }

    /// Checks that one worker needs at most `cap` bytes; else an error
    /// naming the block with the largest dictionary, what it declares and
    /// the cap. (The dictionary actually allocated is capped at the block's
    /// output size, see [`Block::effective_dict`]: a dictionary claim larger
    /// than the block's data costs nothing.)
    pub(crate) fn check_memory(&self, cap: u64) -> Result<(), String> {
        let Some((i, b)) = self
            .blocks
            .iter()
            .enumerate()
            .max_by_key(|(_, b)| b.effective_dict())
        else {
            return Ok(());
        };
        if self.worker_mem() <= cap {
            return Ok(());
        }
        let h = crate::progress::human_bytes;
        Err(format!(
            "xz block {i} (at byte {} of the file) declares a {} LZMA2 dictionary for {} of data: \
             decoding it needs {}, more than the {} pinetboot allows one decoder \
             (`xz -9` needs 65 MiB); recompress the image with a smaller dictionary, e.g. `xz -9`",
            b.offset,
            h(b.dict_size),
            h(b.uncompressed_size),
            h(self.worker_mem()),
            h(cap),
        ))
    }
}

/// Reads `buf.len()` bytes at `off`, with an error naming what was read.
pub(super) fn read_at(file: &File, buf: &mut [u8], off: u64, what: &str) -> Result<(), String> {
    file.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("{what} at byte {off} is past the end of the file (truncated?)")
        } else {
            format!("reading {what} at byte {off}: {e}")
        }
    })
}

/// Decodes a variable-length integer (at most 9 bytes, minimally encoded).
pub(super) fn read_vli(buf: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..9 {
        let Some(&b) = buf.get(*pos) else {
            return Err("integer runs past the end of its field");
        };
        *pos += 1;
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err("integer is not minimally encoded");
            }
            return Ok(value);
        }
    }
    Err("integer is longer than 9 bytes")
}

/// Size of the check field for a check type (xz format, section 3.4).
pub(super) fn check_size(check: u8) -> u64 {
    match check {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    }
}

/// Checks the CRC32 stored little-endian right after `data` in `buf`.
pub(super) fn crc_ok(data: &[u8], stored: &[u8]) -> bool {
    stored.len() == 4 && crc32fast::hash(data).to_le_bytes() == stored
}

/// One stream found walking backwards: its offset, check type and records.
pub(super) struct StreamInfo {
    start: u64,
    check: u8,
    /// (unpadded size, uncompressed size) per block.
    records: Vec<(u64, u64)>,
}

/// Reads the container structure of an xz file: every stream's footer, index
/// and header (walking backwards from the end, with concatenated streams and
/// stream padding allowed) and every block header.
///
/// Every stream is read, as `xz -d` decodes them all; a file of one block
/// (or none) is decoded here too, by one worker.
///
/// `Ok(None)`: the file looks decodable but cannot be decoded block by
/// block (a filter this module does not handle, a huge number of blocks);
/// use the sequential decoder.
/// `Err(reason)`: the container is malformed or absurd.
pub(crate) fn layout(file: &File) -> Result<Option<XzLayout>, String> {
    let file_size = file
        .metadata()
        .map_err(|e| format!("stat xz file: {e}"))?
        .len();
    if !file_size.is_multiple_of(4) {
        return Err(format!(
            "xz file size {file_size} is not a multiple of 4 (truncated?)"
        ));
    }
    let mut streams = Vec::new();
    let mut total_blocks = 0u64;
    let mut pos = file_size;
    while pos > 0 {
        pos = skip_padding(file, pos)?;
        if pos == 0 {
            return Err("xz file has stream padding but no stream before it".into());
        }
        let Some(stream) = read_stream(file, pos, &mut total_blocks)? else {
            return Ok(None);
        };
        pos = stream.start;
        streams.push(stream);
    }
    if streams.is_empty() {
        return Err("xz file is empty".into());
    }
    streams.reverse();

    let stream_count = streams.len();
    let mut blocks = Vec::new();
    let mut uncompressed_offset = 0u64;
    let mut max_dict = 0;
    for stream in streams {
        let mut offset = stream.start + HEADER_SIZE;
        for (unpadded, uncompressed) in stream.records {
            let index = blocks.len();
            let Some(block) =
                read_block_header(file, index, offset, stream.check, unpadded, uncompressed)?
            else {
                return Ok(None);
            };
            let mut block = block;
            block.uncompressed_offset = uncompressed_offset;
            uncompressed_offset = uncompressed_offset
                .checked_add(uncompressed)
                .filter(|&s| s <= MAX_IMAGE_BYTES)
                .ok_or_else(|| format!("xz file decodes to more than {MAX_IMAGE_BYTES} bytes"))?;
            max_dict = max_dict.max(block.effective_dict());
            offset += block.total_size();
            blocks.push(block);
        }
    }
    Ok(Some(XzLayout {
        blocks,
        uncompressed_size: uncompressed_offset,
        max_dict,
        streams: stream_count,
    }))
}

/// Skips stream padding (zero bytes, in units of 4) backwards from `pos`;
/// returns the end of the stream before it.
pub(super) fn skip_padding(file: &File, mut pos: u64) -> Result<u64, String> {
    let mut buf = vec![0u8; 64 << 10];
    while pos > 0 {
        let n = pos.min(buf.len() as u64);
        let chunk = &mut buf[..n as usize];
        read_at(file, chunk, pos - n, "stream padding")?;
        let zeros = chunk
            .rchunks_exact(4)
            .take_while(|w| w.iter().all(|&b| b == 0))
            .count() as u64
            * 4;
        pos -= zeros;
        if zeros < n {
            break;
        }
    }
    Ok(pos)
}

/// Reads the 12-byte stream footer (`footer`) or header at `at`, its magic
/// (else the error `missing` makes) and CRC32 checked.
pub(super) fn read_stream_mark(
    file: &File,
    at: u64,
    footer: bool,
    missing: impl FnOnce() -> String,
) -> Result<[u8; 12], String> {
    let what = if footer {
        "xz stream footer"
    } else {
        "xz stream header"
    };
    let mut b = [0u8; 12];
    read_at(file, &mut b, at, what)?;
    let (magic, crc) = if footer {
        (b[10..12] == FOOTER_MAGIC, crc_ok(&b[4..10], &b[0..4]))
    } else {
        (b[0..6] == HEADER_MAGIC, crc_ok(&b[6..8], &b[8..12]))
    };
    if !magic {
        return Err(missing());
    }
    if !crc {
        return Err(format!("CRC32 mismatch in the {what} at byte {at}"));
    }
    Ok(b)
}

/// Reads the stream that ends at `end` (footer, index, header).
/// `Ok(None)`: too many blocks for parallel decoding.
pub(super) fn read_stream(
    file: &File,
    end: u64,
    total_blocks: &mut u64,
) -> Result<Option<StreamInfo>, String> {
    if end < 2 * HEADER_SIZE {
        return Err(format!(
            "xz data ending at byte {end} is too short for a stream header and footer"
        ));
    }
    let footer_at = end - HEADER_SIZE;
    let footer = read_stream_mark(file, footer_at, true, || {
        format!("no xz stream footer at byte {footer_at} (truncated or corrupt file)")
    })?;
    let flags = [footer[8], footer[9]];
    if flags[0] != 0 || flags[1] & 0xF0 != 0 {
        return Err(format!(
            "unsupported xz stream flags {flags:02x?} in the footer at byte {footer_at}"
        ));
    }
    let check = flags[1];
    let index_size = (u64::from(u32::from_le_bytes([
        footer[4], footer[5], footer[6], footer[7],
    ])) + 1)
        * 4;
    let Some(index_at) = footer_at
        .checked_sub(index_size)
        .filter(|&a| a >= HEADER_SIZE)
    else {
        return Err(format!(
            "xz index of {index_size} bytes (footer at byte {footer_at}) starts before the file"
        ));
    };
    // Every record takes at least 2 bytes and describes a block of at least
    // 12 bytes; an index larger than this needs more blocks than allowed.
    if index_size > 8 + 20 * MAX_BLOCKS {
        return Ok(None);
    }
    let mut index = vec![0u8; index_size as usize];
    read_at(file, &mut index, index_at, "xz index")?;
    let records = parse_index(&index, index_at)?;
    *total_blocks += records.len() as u64;
    if *total_blocks > MAX_BLOCKS {
        return Ok(None);
    }

    let mut blocks_size = 0u64;
    for &(unpadded, _) in &records {
        blocks_size = blocks_size
            .checked_add(unpadded.next_multiple_of(4))
            .ok_or_else(|| format!("xz index at byte {index_at}: block sizes overflow"))?;
    }
    let Some(start) = index_at
        .checked_sub(blocks_size)
        .and_then(|s| s.checked_sub(HEADER_SIZE))
    else {
        return Err(format!(
            "xz index at byte {index_at} lists {blocks_size} bytes of blocks, more than precede it (truncated file?)"
        ));
    };
    let header = read_stream_mark(file, start, false, || {
        format!("no xz stream header at byte {start} where the index at byte {index_at} puts it")
    })?;
    if header[6..8] != flags {
        return Err(format!(
            "xz stream header at byte {start} and footer at byte {footer_at} disagree on the stream flags"
        ));
    }
    Ok(Some(StreamInfo {
        start,
        check,
        records,
    }))
}

/// Parses an index (indicator, records, padding, CRC32).
pub(super) fn parse_index(index: &[u8], index_at: u64) -> Result<Vec<(u64, u64)>, String> {
    let err = |what: &str| format!("xz index at byte {index_at}: {what}");
    let body_len = index.len() - 4;
    let body = &index[..body_len];
    if !crc_ok(body, &index[body_len..]) {
        return Err(err("CRC32 mismatch"));
    }
    if body[0] != 0 {
        return Err(err("bad index indicator"));
    }
    let mut pos = 1;
    let count = read_vli(body, &mut pos).map_err(err)?;
    if count > (body_len as u64) / 2 {
        return Err(err("more records than fit in the index"));
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let unpadded = read_vli(body, &mut pos).map_err(err)?;
        let uncompressed = read_vli(body, &mut pos).map_err(err)?;
        if !(5..=(VLI_MAX & !3)).contains(&unpadded) {
            return Err(err(&format!("invalid unpadded size {unpadded}")));
        }
        records.push((unpadded, uncompressed));
    }
    let padding = pos.next_multiple_of(4) - pos;
    if pos + padding != body_len {
        return Err(err(
            "size does not match the backward size in the stream footer",
        ));
    }
    if body[pos..].iter().any(|&b| b != 0) {
        return Err(err("nonzero index padding"));
    }
    Ok(records)
}

/// Reads and checks the header of block `index` at `offset`.
/// `Ok(None)`: a filter chain this module does not decode.
pub(super) fn read_block_header(
    file: &File,
    index: usize,
    offset: u64,
    check: u8,
    unpadded: u64,
    uncompressed: u64,
) -> Result<Option<Block>, String> {
    let err = |what: &str| format!("xz block {index} (at byte {offset} of the file): {what}");
    let mut size_byte = [0u8; 1];
    read_at(file, &mut size_byte, offset, "xz block header")?;
    if size_byte[0] == 0 {
        return Err(err("index indicator where a block header should be"));
    }
    let header_size = (u64::from(size_byte[0]) + 1) * 4;
    let check_size = check_size(check);
    let Some(data_size) = unpadded
        .checked_sub(header_size + check_size)
        .filter(|&d| d > 0)
    else {
        return Err(err(&format!(
            "unpadded size {unpadded} in the index leaves no room for compressed data"
        )));
    };
    let mut header = vec![0u8; header_size as usize];
    read_at(file, &mut header, offset, "xz block header")?;
    let body_len = header.len() - 4;
    if !crc_ok(&header[..body_len], &header[body_len..]) {
        return Err(err("block header CRC32 mismatch"));
    }
    let body = &header[..body_len];
    let flags = body[1];
    if flags & 0x3C != 0 {
        return Err(err("reserved block flags set"));
    }
    let mut pos = 2;
    if flags & 0x40 != 0 {
        let c = read_vli(body, &mut pos).map_err(err)?;
        if c != data_size {
            return Err(err(&format!(
                "compressed size {c} in the header, {data_size} from the index"
            )));
        }
    }
    if flags & 0x80 != 0 {
        let u = read_vli(body, &mut pos).map_err(err)?;
        if u != uncompressed {
            return Err(err(&format!(
                "uncompressed size {u} in the header, {uncompressed} in the index"
            )));
        }
    }
    let count = usize::from(flags & 0x03) + 1;
    let mut filters = Vec::with_capacity(count);
    for _ in 0..count {
        let id = read_vli(body, &mut pos).map_err(err)?;
        let props_size = read_vli(body, &mut pos).map_err(err)?;
        let props_end = usize::try_from(props_size)
            .ok()
            .and_then(|s| pos.checked_add(s))
            .filter(|&e| e <= body.len())
            .ok_or_else(|| err("filter properties run past the block header"))?;
        filters.push(FilterSpec {
            id,
            props: body[pos..props_end].to_vec(),
        });
        pos = props_end;
    }
    if body[pos..].iter().any(|&b| b != 0) {
        return Err(err("nonzero block header padding"));
    }
    // The chain: non-last filters that keep the size, LZMA2 last.
    let (last, rest) = filters.split_last().expect("at least one filter");
    if last.id != FILTER_LZMA2 || rest.iter().any(|f| !is_simple_filter(f.id)) {
        if filters
            .iter()
            .all(|f| f.id == FILTER_LZMA2 || is_simple_filter(f.id))
        {
            return Err(err(
                "invalid filter chain (LZMA2 must be last and only last)",
            ));
        }
        return Ok(None);
    }
    if last.props.len() != 1 {
        return Err(err("LZMA2 properties are not one byte"));
    }
    let p = last.props[0];
    if p > 40 {
        return Err(err(&format!("invalid LZMA2 dictionary size byte {p}")));
    }
    let dict_size = if p == 40 {
        u64::from(u32::MAX)
    } else {
        (2 | u64::from(p & 1)) << (p / 2 + 11)
    };
    let block = Block {
        offset,
        header_size,
        data_size,
        padding: unpadded.next_multiple_of(4) - unpadded,
        check_size,
        check,
        uncompressed_offset: 0,
        uncompressed_size: uncompressed,
        filters,
        dict_size,
    };
    build_filters(&block).map_err(|e| err(&e))?;
    Ok(Some(block))
}

/// Filters (other than LZMA2) that may precede LZMA2 and keep the size.
pub(super) fn is_simple_filter(id: u64) -> bool {
    matches!(
        id,
        FILTER_DELTA
            | FILTER_X86
            | FILTER_POWERPC
            | FILTER_IA64
            | FILTER_ARM
            | FILTER_ARMTHUMB
            | FILTER_SPARC
            | FILTER_ARM64
            | FILTER_RISCV
    )
}
