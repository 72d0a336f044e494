//! Block-parallel xz decoding into a sparse file.
//!
//! liblzma's multi-threaded stream decoder buffers whole blocks in memory and
//! delivers output strictly in order. Here [`layout`] reads the container
//! (stream headers and footers, indexes, block headers) and [`ParDecode`]
//! decodes every block with its own raw filter chain, writing its output
//! straight into the destination file at the block's uncompressed offset
//! (all-zero 4 KiB blocks are left as holes). Memory per worker is one LZMA2
//! dictionary (capped at the block's uncompressed size) plus two 1 MiB
//! buffers, and a reader can wait for just the byte range it needs with
//! [`ParDecode::wait_range`] while later blocks are still being decoded.
//!
//! Per block the decoder checks that the raw decoder reaches the end of its
//! payload after consuming exactly the block's compressed size, that it
//! produces exactly the uncompressed size recorded in the index (it never
//! writes outside the block's range), that block padding is zero and that the
//! sizes in the block header (if present) agree with the index, and that
//! the decoded data matches the block's integrity check (CRC32, CRC64 or
//! SHA-256; `crc64fast` makes CRC64 cost next to nothing). The declared
//! sha256 of the whole `.xz` file proves it is the file the user meant; the
//! checks prove that file decodes to what its maker compressed. The CRC32s
//! of stream headers, block headers, indexes and stream footers are
//! verified too, since the layout is read before the file's digest is
//! known.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream};

use super::MAX_IMAGE_BYTES;

/// Stream header magic.
const HEADER_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// Stream footer magic.
const FOOTER_MAGIC: [u8; 2] = [b'Y', b'Z'];
/// Size of a stream header and of a stream footer.
const HEADER_SIZE: u64 = 12;
/// Largest value of a variable-length integer (63 bits, at most 9 bytes).
const VLI_MAX: u64 = u64::MAX >> 1;
/// More blocks than this are not decoded in parallel (the index alone would
/// take too much memory); [`layout`] returns `Ok(None)`.
const MAX_BLOCKS: u64 = 1 << 20;
/// Size of the input and output buffers of each worker.
const BUF_SIZE: usize = 1 << 20;
/// Alignment of output writes, so that zero blocks become holes.
const SPARSE_ALIGN: u64 = 4096;
/// Progress is reported about this often (compressed bytes).
const PROGRESS_STEP: u64 = 16 << 20;

/// Filter IDs (xz file format, section 5.4).
const FILTER_DELTA: u64 = 0x03;
const FILTER_X86: u64 = 0x04;
const FILTER_POWERPC: u64 = 0x05;
const FILTER_IA64: u64 = 0x06;
const FILTER_ARM: u64 = 0x07;
const FILTER_ARMTHUMB: u64 = 0x08;
const FILTER_SPARC: u64 = 0x09;
const FILTER_ARM64: u64 = 0x0A;
const FILTER_RISCV: u64 = 0x0B;
const FILTER_LZMA2: u64 = 0x21;

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
    fn data_offset(&self) -> u64 {
        self.offset + self.header_size
    }

    /// Dictionary actually allocated to decode this block: the declared one,
    /// capped at the block's output size (a dictionary larger than everything
    /// the block produces is never used), at least 4 KiB.
    fn effective_dict(&self) -> u64 {
        self.dict_size.min(self.uncompressed_size.max(4096))
    }

    /// Bytes the block takes in the file (header, data, padding, check).
    fn total_size(&self) -> u64 {
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
fn read_at(file: &File, buf: &mut [u8], off: u64, what: &str) -> Result<(), String> {
    file.read_exact_at(buf, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("{what} at byte {off} is past the end of the file (truncated?)")
        } else {
            format!("reading {what} at byte {off}: {e}")
        }
    })
}

/// Decodes a variable-length integer (at most 9 bytes, minimally encoded).
fn read_vli(buf: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
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
fn check_size(check: u8) -> u64 {
    match check {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    }
}

/// The integrity check of one block's output, computed as it is produced.
enum Integrity {
    None,
    Crc32(crc32fast::Hasher),
    Crc64(crc64fast::Digest),
    Sha256(Box<sha2::Sha256>),
}

impl Integrity {
    fn new(check: u8) -> Self {
        use sha2::Digest;
        match check {
            1 => Integrity::Crc32(crc32fast::Hasher::new()),
            4 => Integrity::Crc64(crc64fast::Digest::new()),
            10 => Integrity::Sha256(Box::new(sha2::Sha256::new())),
            _ => Integrity::None,
        }
    }

    fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Integrity::None => {}
            Integrity::Crc32(h) => h.update(data),
            Integrity::Crc64(h) => h.write(data),
            Integrity::Sha256(h) => h.update(data),
        }
    }

    /// The check field as stored in the file; `None` when not verified.
    fn field(self) -> Option<Vec<u8>> {
        use sha2::Digest;
        match self {
            Integrity::None => None,
            Integrity::Crc32(h) => Some(h.finalize().to_le_bytes().to_vec()),
            Integrity::Crc64(h) => Some(h.sum64().to_le_bytes().to_vec()),
            Integrity::Sha256(h) => Some(h.finalize().to_vec()),
        }
    }
}

/// Checks the CRC32 stored little-endian right after `data` in `buf`.
fn crc_ok(data: &[u8], stored: &[u8]) -> bool {
    stored.len() == 4 && crc32fast::hash(data).to_le_bytes() == stored
}

/// One stream found walking backwards: its offset, check type and records.
struct StreamInfo {
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
fn skip_padding(file: &File, mut pos: u64) -> Result<u64, String> {
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
fn read_stream_mark(
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
fn read_stream(
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
fn parse_index(index: &[u8], index_at: u64) -> Result<Vec<(u64, u64)>, String> {
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
fn read_block_header(
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
fn is_simple_filter(id: u64) -> bool {
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

/// liblzma's filter chain for a block (LZMA2 with [`Block::effective_dict`]).
fn build_filters(block: &Block) -> Result<Filters, String> {
    let mut filters = Filters::new();
    for f in &block.filters {
        let props = f.props.as_slice();
        let r = match f.id {
            FILTER_DELTA => filters.delta_properties(props),
            FILTER_X86 => filters.x86_properties(props),
            FILTER_POWERPC => filters.powerpc_properties(props),
            FILTER_IA64 => filters.ia64_properties(props),
            FILTER_ARM => filters.arm_properties(props),
            FILTER_ARMTHUMB => filters.arm_thumb_properties(props),
            FILTER_SPARC => filters.sparc_properties(props),
            FILTER_ARM64 => filters.arm64_properties(props),
            FILTER_RISCV => filters.riscv_properties(props),
            FILTER_LZMA2 => {
                // Only the dictionary size matters to the LZMA2 decoder
                // (lc/lp/pb come from the chunk headers).
                let mut opts =
                    LzmaOptions::new_preset(0).map_err(|e| format!("LZMA2 options: {e}"))?;
                opts.dict_size(block.effective_dict() as u32);
                Ok(filters.lzma2(&opts))
            }
            id => return Err(format!("unsupported filter {id:#x}")),
        };
        r.map_err(|e| {
            format!(
                "invalid properties {props:02x?} for filter {:#x}: {e}",
                f.id
            )
        })?;
    }
    Ok(filters)
}

/// Mutable state shared by the workers and the waiters.
struct State {
    done: Vec<bool>,
    error: Option<String>,
    running: usize,
}

/// What the workers share.
struct Shared {
    layout: XzLayout,
    src: File,
    out: File,
    next: AtomicUsize,
    cancel: AtomicBool,
    consumed: AtomicU64,
    /// Last value passed to `progress` (reports are serialized).
    reported: Mutex<u64>,
    progress: Box<dyn Fn(u64) + Send + Sync>,
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the first error, cancels the other workers and wakes waiters.
    fn fail(&self, msg: String) {
        let mut st = self.lock();
        if st.error.is_none() {
            st.error = Some(msg);
        }
        self.cancel.store(true, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// Adds consumed compressed bytes; reports progress on every
    /// [`PROGRESS_STEP`] crossed, or always if `force`.
    fn add_consumed(&self, n: u64, force: bool) {
        let now = self.consumed.fetch_add(n, Ordering::Relaxed) + n;
        if force || (now - n) / PROGRESS_STEP != now / PROGRESS_STEP {
            let mut last = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.consumed.load(Ordering::Relaxed);
            if now > *last {
                *last = now;
                (self.progress)(now);
            }
        }
    }
}

/// Decrements the running count when a worker ends (also on panic).
struct WorkerGuard<'a>(&'a Shared);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("xz decoder thread panicked".into());
        }
        let mut st = self.0.lock();
        st.running -= 1;
        self.0.cond.notify_all();
    }
}

/// A block-parallel decode in progress. See the module documentation.
pub(crate) struct ParDecode {
    shared: Arc<Shared>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

/// Why a block was not decoded.
enum BlockError {
    Cancelled,
    Failed(String),
}

impl ParDecode {
    /// Truncates `out` and sizes it to the decoded size (zero regions are
    /// never written, they stay holes) and starts `threads` workers, fewer if
    /// `workers * (dictionary + 2 MiB)` would exceed `mem_budget` (at least
    /// one) and never more than there are blocks. Workers take blocks in file
    /// order. `progress` is called with the compressed bytes consumed so far
    /// (block headers, data, padding and checks; summed over the workers),
    /// about every 16 MiB and when a block is done; the values increase.
    pub(crate) fn start(
        src: File,
        layout: XzLayout,
        out: File,
        threads: usize,
        mem_budget: u64,
        progress: Box<dyn Fn(u64) + Send + Sync>,
    ) -> Arc<Self> {
        let by_mem = (mem_budget / layout.worker_mem()).max(1);
        let workers = threads
            .max(1)
            .min(usize::try_from(by_mem).unwrap_or(usize::MAX))
            .min(layout.blocks.len());
        let size = layout.uncompressed_size;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                done: vec![false; layout.blocks.len()],
                error: None,
                running: 0,
            }),
            layout,
            src,
            out,
            next: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            consumed: AtomicU64::new(0),
            reported: Mutex::new(0),
            progress,
            cond: Condvar::new(),
        });
        let mut handles = Vec::new();
        if let Err(e) = shared
            .out
            .set_len(0)
            .and_then(|()| shared.out.set_len(size))
        {
            shared.fail(format!("sizing the decoded image to {size} bytes: {e}"));
        } else {
            for i in 0..workers {
                shared.lock().running += 1;
                let sh = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("xz-block-{i}"))
                    .spawn(move || worker(&sh));
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        shared.lock().running -= 1;
                        if handles.is_empty() {
                            shared.fail(format!("starting an xz decoder thread: {e}"));
                        }
                        break;
                    }
                }
            }
        }
        let workers = handles.len();
        Arc::new(ParDecode {
            shared,
            handles: Mutex::new(handles),
            workers,
        })
    }

    /// Number of worker threads started.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Blocks until `out[start..start + len)` is fully decoded. `Err` at once
    /// if a worker failed, the decode was cancelled or the range is past the
    /// end.
    pub(crate) fn wait_range(&self, start: u64, len: u64) -> Result<(), String> {
        let blocks = &self.shared.layout.blocks;
        let size = self.shared.layout.uncompressed_size;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                format!("range of {len} bytes at {start} is past the end of the {size}-byte image")
            })?;
        let first =
            blocks.partition_point(|b| b.uncompressed_offset + b.uncompressed_size <= start);
        let last = blocks.partition_point(|b| b.uncompressed_offset < end);
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            if first >= last || st.done[first..last].iter().all(|&d| d) {
                return Ok(());
            }
            if self.shared.cancel.load(Ordering::SeqCst) || st.running == 0 {
                return Err("xz decoding was cancelled".into());
            }
            st = self
                .shared
                .cond
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits for all workers to end; the decoded size, or the first error.
    pub(crate) fn finish(&self) -> Result<u64, String> {
        let handles =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
        for h in handles {
            // A panic has been recorded by the worker's guard.
            let _ = h.join();
        }
        let st = self.shared.lock();
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        if st.done.iter().all(|&d| d) {
            Ok(self.shared.layout.uncompressed_size)
        } else {
            Err("xz decoding was cancelled".into())
        }
    }

    /// True while a worker is still decoding.
    pub(crate) fn active(&self) -> bool {
        self.shared.lock().running > 0
    }

    /// The error that stopped the decoding, if one did (not a cancel).
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// Asks the workers to stop after their current chunk and wakes waiters.
    pub(crate) fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        let _st = self.shared.lock();
        self.shared.cond.notify_all();
    }
}

impl Drop for ParDecode {
    fn drop(&mut self) {
        self.cancel();
        let handles = std::mem::take(
            self.handles
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for h in handles {
            let _ = h.join();
        }
    }
}

/// A worker: decodes blocks until there are none left, an error or cancel.
fn worker(sh: &Shared) {
    let _guard = WorkerGuard(sh);
    let mut inbuf = vec![0u8; BUF_SIZE];
    let mut outbuf = vec![0u8; BUF_SIZE];
    while !sh.cancel.load(Ordering::SeqCst) {
        let i = sh.next.fetch_add(1, Ordering::SeqCst);
        let Some(block) = sh.layout.blocks.get(i) else {
            break;
        };
        match decode_block(sh, block, &mut inbuf, &mut outbuf) {
            Ok(()) => {
                let mut st = sh.lock();
                st.done[i] = true;
                sh.cond.notify_all();
                drop(st);
                sh.add_consumed(block.padding + block.check_size, true);
            }
            Err(BlockError::Cancelled) => break,
            Err(BlockError::Failed(e)) => {
                sh.fail(format!(
                    "xz block {i} (at byte {} of the file): {e}",
                    block.offset
                ));
                break;
            }
        }
    }
}

/// Decodes one block into its range of the output.
fn decode_block(
    sh: &Shared,
    block: &Block,
    inbuf: &mut [u8],
    outbuf: &mut [u8],
) -> Result<(), BlockError> {
    use BlockError::{Cancelled, Failed};
    let filters = build_filters(block).map_err(Failed)?;
    let mut stream = Stream::new_raw_decoder(&filters)
        .map_err(|e| Failed(format!("creating the raw decoder: {e}")))?;
    sh.add_consumed(block.header_size, false);

    let data_at = block.data_offset();
    let data_end = data_at + block.data_size;
    let mut read_pos = data_at; // next byte to read from the file
    let (mut in_start, mut in_len) = (0usize, 0usize);
    let out_end = block.uncompressed_offset + block.uncompressed_size;
    let mut out_off = block.uncompressed_offset; // file offset of outbuf[0]
    let mut fill = 0usize;

    let mut integrity = Integrity::new(block.check);
    let flush = |buf: &[u8], off: u64| -> Result<(), BlockError> {
        crate::tree::write_sparse_chunk(sh.out.as_fd(), buf, off)
            .map_err(|e| Failed(format!("writing decoded bytes at {off}: {e}")))
    };
    loop {
        if sh.cancel.load(Ordering::Relaxed) {
            return Err(Cancelled);
        }
        if in_start == in_len && read_pos < data_end {
            let n = (data_end - read_pos).min(inbuf.len() as u64) as usize;
            sh.src
                .read_exact_at(&mut inbuf[..n], read_pos)
                .map_err(|e| Failed(format!("reading compressed data at byte {read_pos}: {e}")))?;
            read_pos += n as u64;
            in_start = 0;
            in_len = n;
            sh.add_consumed(n as u64, false);
        }
        // Keep writes 4 KiB-aligned in the file so zero blocks become holes.
        let cap = outbuf.len() - (out_off % SPARSE_ALIGN) as usize;
        if fill == cap {
            flush(&outbuf[..fill], out_off)?;
            out_off += fill as u64;
            fill = 0;
            continue;
        }
        // Room for one byte more than the block may still produce, to catch
        // a block that decodes to more than the index says.
        let remaining = out_end - out_off - fill as u64;
        let window = ((cap - fill) as u64).min(remaining + 1) as usize;
        let (in0, out0) = (stream.total_in(), stream.total_out());
        let status = stream
            .process(
                &inbuf[in_start..in_len],
                &mut outbuf[fill..fill + window],
                Action::Run,
            )
            .map_err(|e| {
                Failed(format!(
                    "{e} near compressed byte {} of the file",
                    data_at + stream.total_in()
                ))
            })?;
        let used = (stream.total_in() - in0) as usize;
        let produced = (stream.total_out() - out0) as usize;
        integrity.update(&outbuf[fill..fill + produced.min(window)]);
        in_start += used;
        fill += produced;
        if produced as u64 > remaining {
            return Err(Failed(format!(
                "decodes to more than the {} bytes the index records",
                block.uncompressed_size
            )));
        }
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::GetCheck | Status::MemNeeded => {
                if used == 0 && produced == 0 {
                    if in_start == in_len && read_pos == data_end {
                        return Err(Failed(format!(
                            "compressed data ends (after {} bytes) before the end of the LZMA2 data",
                            block.data_size
                        )));
                    }
                    return Err(Failed("the decoder makes no progress".into()));
                }
            }
        }
    }
    let consumed = stream.total_in();
    if consumed != block.data_size {
        return Err(Failed(format!(
            "the LZMA2 data ends after {consumed} of the block's {} compressed bytes",
            block.data_size
        )));
    }
    let produced = stream.total_out();
    if produced != block.uncompressed_size {
        return Err(Failed(format!(
            "decodes to {produced} bytes, the index records {}",
            block.uncompressed_size
        )));
    }
    flush(&outbuf[..fill], out_off)?;
    if block.padding > 0 {
        let mut pad = [0u8; 3];
        let pad = &mut pad[..block.padding as usize];
        sh.src
            .read_exact_at(pad, data_end)
            .map_err(|e| Failed(format!("reading block padding at byte {data_end}: {e}")))?;
        if pad.iter().any(|&b| b != 0) {
            return Err(Failed(format!("nonzero block padding at byte {data_end}")));
        }
    }
    if let Some(want) = integrity.field() {
        let at = data_end + block.padding;
        let mut stored = vec![0u8; want.len()];
        sh.src
            .read_exact_at(&mut stored, at)
            .map_err(|e| Failed(format!("reading the block's check at byte {at}: {e}")))?;
        if stored != want {
            return Err(Failed(format!(
                "the decoded data does not match the block's {} check (corrupt data)",
                match block.check {
                    1 => "CRC32",
                    4 => "CRC64",
                    _ => "SHA-256",
                }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    /// Deterministic test data: text-like compressible runs, pseudo-random
    /// runs and runs of zeros, `len` bytes.
    fn mixed_data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u32
        };
        let words: [&[u8]; 8] = [
            b"raspberry ",
            b"network ",
            b"boot ",
            b"kernel ",
            b"initrd ",
            b"dnsmasq ",
            b"tftp ",
            b"nfs\n",
        ];
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let run = 1000 + (next() % 30000) as usize;
            match next() % 3 {
                0 => (0..run).for_each(|_| v.extend_from_slice(words[(next() % 8) as usize])),
                1 => (0..run).for_each(|_| v.push(next() as u8)),
                _ => v.resize(v.len() + run, 0),
            }
        }
        v.truncate(len);
        v
    }

    /// Compressible text only (no stored LZMA2 chunks).
    fn text_data(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(
                format!("line {i} of the image, value {}\n", i * i % 977).as_bytes(),
            );
            i += 1;
        }
        v.truncate(len);
        v
    }

    /// Compresses `data` with the xz CLI and the given arguments.
    fn xz(dir: &Path, name: &str, data: &[u8], args: &[&str]) -> PathBuf {
        let raw = dir.join(name);
        std::fs::write(&raw, data).unwrap();
        let status = Command::new("xz")
            .args(["-z", "-k", "-f", "-q"])
            .args(args)
            .arg(&raw)
            .status()
            .expect("run xz");
        assert!(status.success(), "xz {args:?} failed");
        let mut p = raw.into_os_string();
        p.push(".xz");
        PathBuf::from(p)
    }

    /// What `xz -dc` makes of a file.
    fn xz_dc(path: &Path) -> Vec<u8> {
        let out = Command::new("xz").arg("-dc").arg(path).output().unwrap();
        assert!(out.status.success(), "xz -dc {}", path.display());
        out.stdout
    }

    /// Decodes `path` with [`ParDecode`]; returns the output and the decode.
    fn decode(path: &Path, threads: usize, mem: u64) -> (Result<u64, String>, Vec<u8>, usize) {
        let src = File::open(path).unwrap();
        let layout = layout(&src).unwrap().expect("parallel layout");
        assert_eq!(layout.uncompressed_size, expect_len(path));
        let out = tempfile::tempfile().unwrap();
        let out2 = out.try_clone().unwrap();
        let pd = ParDecode::start(src, layout, out, threads, mem, Box::new(|_| {}));
        let r = pd.finish();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut &out2, &mut data).unwrap();
        (r, data, pd.workers())
    }

    /// Decodes `path` (whose container must be fine) with `threads`
    /// workers; the decoder and the error it must end with.
    fn decode_failure(path: &Path, threads: usize) -> (Arc<ParDecode>, String) {
        let src = File::open(path).unwrap();
        let l = layout(&src).unwrap().unwrap();
        let out = tempfile::tempfile().unwrap();
        let pd = ParDecode::start(src, l, out, threads, u64::MAX, Box::new(|_| {}));
        let e = pd.finish().unwrap_err();
        (pd, e)
    }

    fn expect_len(path: &Path) -> u64 {
        xz_dc(path).len() as u64
    }

    fn assert_roundtrip(path: &Path) {
        let expect = xz_dc(path);
        let (r, got, _) = decode(path, 2, u64::MAX);
        assert_eq!(r, Ok(expect.len() as u64));
        assert!(got == expect, "decoded output differs from xz -dc");
    }

    #[test]
    fn multi_block_matches_xz() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(1 << 20, 1);
        let p = xz(dir.path(), "a", &data, &["-T2", "--block-size=64KiB"]);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.blocks.len(), 16);
        assert_eq!(l.streams, 1);
        assert_eq!(l.uncompressed_size, data.len() as u64);
        assert!(l.blocks.iter().all(|b| b.uncompressed_size == 64 << 10));
        assert_eq!(xz_dc(&p), data);
        assert_roundtrip(&p);
    }

    #[test]
    fn progress_reaches_all_block_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(1 << 20, 2);
        let p = xz(dir.path(), "a", &data, &["-T2", "--block-size=64KiB"]);
        let src = File::open(&p).unwrap();
        let l = layout(&src).unwrap().unwrap();
        let total: u64 = l.blocks.iter().map(Block::total_size).sum();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let pd = ParDecode::start(
            src,
            l,
            tempfile::tempfile().unwrap(),
            2,
            u64::MAX,
            Box::new(move |n| s2.lock().unwrap().push(n)),
        );
        pd.finish().unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&total));
    }

    #[test]
    fn concatenated_streams_with_padding() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = Vec::new();
        let mut expect = Vec::new();
        for (i, pad) in [4usize, 8, 0, 4].into_iter().enumerate() {
            let data = mixed_data(200_000 + i * 1000, 10 + i as u64);
            let p = xz(
                dir.path(),
                &format!("s{i}"),
                &data,
                &["-T2", "--block-size=50000"],
            );
            file.extend(std::fs::read(&p).unwrap());
            file.resize(file.len() + pad, 0);
            expect.extend(data);
        }
        let p = dir.path().join("cat.xz");
        std::fs::write(&p, &file).unwrap();
        assert_eq!(xz_dc(&p), expect);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.streams, 4);
        // 200000 bytes: 4 blocks of 50000; 201000..203000: 5 blocks.
        assert_eq!(l.blocks.len(), 4 + 3 * 5);
        assert_roundtrip(&p);

        // Padding that is not a multiple of 4 is an error.
        file.extend([0, 0]);
        let bad = dir.path().join("bad.xz");
        std::fs::write(&bad, &file).unwrap();
        assert!(layout(&File::open(&bad).unwrap()).is_err());
    }

    #[test]
    fn all_check_types() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(300_000, 3);
        for (check, size) in [("none", 0), ("crc32", 4), ("crc64", 8), ("sha256", 32)] {
            let p = xz(
                dir.path(),
                check,
                &data,
                &["-T2", "--block-size=64KiB", &format!("--check={check}")],
            );
            let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
            assert!(l.blocks.iter().all(|b| b.check_size == size), "{check}");
            assert_roundtrip(&p);
        }
    }

    #[test]
    fn wrong_check_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(300_000, 5);
        for (check, name) in [
            ("crc32", "CRC32"),
            ("crc64", "CRC64"),
            ("sha256", "SHA-256"),
        ] {
            let p = xz(
                dir.path(),
                check,
                &data,
                &["-T2", "--block-size=64KiB", &format!("--check={check}")],
            );
            let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
            // Flip one bit of block 2's stored check: the data itself decodes fine.
            let b = &l.blocks[2];
            let at = (b.offset + b.total_size() - 1) as usize;
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[at] ^= 1;
            let bad = dir.path().join(format!("bad-{check}.xz"));
            std::fs::write(&bad, &bytes).unwrap();
            // `xz -dc` refuses it too.
            let xz_says = Command::new("xz").arg("-dc").arg(&bad).output().unwrap();
            assert!(!xz_says.status.success(), "{check}");
            let (_, e) = decode_failure(&bad, 2);
            assert!(
                e.contains("xz block 2 ") && e.contains(&format!("block's {name} check")),
                "{check}: {e}"
            );
        }
    }

    #[test]
    fn bcj_filter_chains() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(500_000, 4);
        for (name, args, id) in [
            ("x86", ["--x86", "--lzma2=preset=6"], FILTER_X86),
            ("arm64", ["--arm64", "--lzma2"], FILTER_ARM64),
        ] {
            let p = xz(
                dir.path(),
                name,
                &data,
                &["-T2", "--block-size=64KiB", args[0], args[1]],
            );
            let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
            let ids: Vec<u64> = l.blocks[0].filters.iter().map(|f| f.id).collect();
            assert_eq!(ids, [id, FILTER_LZMA2], "{name}");
            assert_roundtrip(&p);
        }
    }

    #[test]
    fn single_block_and_empty_files_are_decoded_by_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = xz(dir.path(), "one", &mixed_data(100_000, 5), &["-T1"]);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.blocks.len(), 1);
        assert_roundtrip(&p);
        // An empty stream (no blocks), and two empty streams.
        let p = xz(dir.path(), "empty", &[], &["-T1"]);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!((l.blocks.len(), l.uncompressed_size), (0, 0));
        let (r, got, workers) = decode(&p, 2, u64::MAX);
        assert_eq!((r, got.len(), workers), (Ok(0), 0, 0));
        let mut two = std::fs::read(&p).unwrap();
        two.extend(two.clone());
        let p2 = dir.path().join("two-empty.xz");
        std::fs::write(&p2, &two).unwrap();
        let l = layout(&File::open(&p2).unwrap()).unwrap().unwrap();
        assert_eq!((l.streams, l.blocks.len()), (2, 0));
    }

    #[test]
    fn memory_per_worker_is_capped() {
        let a = text_data(100_000);
        // A block that claims a 4 GiB dictionary (byte 40) for 100 000 bytes: its
        // dictionary is capped at its size, the claim costs nothing.
        let mut claim = lz_block(&a);
        claim.filters[0].1 = vec![40];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("claim.xz");
        std::fs::write(&p, build_xz(&[lz_block(&a), claim])).unwrap();
        assert_eq!(xz_dc(&p), [a.clone(), a.clone()].concat());
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.blocks[1].dict_size, u64::from(u32::MAX));
        assert_eq!(l.max_dict, 100_000);
        l.check_memory(4 << 20).unwrap();
        assert_roundtrip(&p);
        // The same claim on a block whose index says 300 MiB: refused, naming the block,
        // what it claims and the cap (checked before any data is decoded).
        let mut big = lz_block(&a);
        big.filters[0].1 = vec![40];
        big.uncompressed = 300 << 20;
        std::fs::write(&p, build_xz(&[lz_block(&a), big])).unwrap();
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        let e = l.check_memory(256 << 20).unwrap_err();
        assert!(
            e.contains("xz block 1 (at byte")
                && e.contains("declares a 4.0 GiB LZMA2 dictionary for 300 MiB")
                && e.contains("needs 302 MiB, more than the 256 MiB"),
            "{e}"
        );
    }

    #[test]
    fn zero_regions_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = mixed_data(200_000, 6);
        data.resize(data.len() + (3 << 20), 0); // 3 MiB of zeros
        data.extend(text_data(150_000));
        let p = xz(dir.path(), "holes", &data, &["-T2", "--block-size=256KiB"]);
        let src = File::open(&p).unwrap();
        let l = layout(&src).unwrap().unwrap();
        let out_path = dir.path().join("out.img");
        let out = File::create(&out_path).unwrap();
        let pd = ParDecode::start(src, l, out, 2, u64::MAX, Box::new(|_| {}));
        assert_eq!(pd.finish(), Ok(data.len() as u64));
        assert_eq!(std::fs::read(&out_path).unwrap(), data);
        let meta = std::fs::metadata(&out_path).unwrap();
        let allocated = meta.blocks() * 512;
        assert!(
            allocated < data.len() as u64 - (2 << 20),
            "{allocated} bytes allocated for a {}-byte file with 3 MiB of zeros",
            data.len()
        );
    }

    #[test]
    fn wait_range_waits_for_last_block() {
        let dir = tempfile::tempdir().unwrap();
        // The last block is text: never all zeros.
        let mut data = mixed_data((4 << 20) - (128 << 10), 7);
        data.extend(text_data(128 << 10));
        let p = xz(
            dir.path(),
            "w",
            &data,
            &["-T2", "--block-size=128KiB", "-6"],
        );
        let src = File::open(&p).unwrap();
        let l = layout(&src).unwrap().unwrap();
        let last = l.blocks.last().unwrap().clone();
        let out = tempfile::tempfile().unwrap();
        let reader = out.try_clone().unwrap();
        // Slow the single worker down so that waiting is needed.
        let pd = ParDecode::start(
            src,
            l,
            out,
            1,
            u64::MAX,
            Box::new(|_| std::thread::sleep(Duration::from_millis(20))),
        );
        // Range within block 0 is ready long before the last block.
        pd.wait_range(10, 100).unwrap();
        let start = last.uncompressed_offset + 5;
        let len = last.uncompressed_size - 10;
        pd.wait_range(start, len).unwrap();
        let mut got = vec![0u8; len as usize];
        reader.read_exact_at(&mut got, start).unwrap();
        assert!(got == data[start as usize..(start + len) as usize]);
        assert!(pd.wait_range(data.len() as u64 - 1, 2).is_err());
        assert!(pd.wait_range(u64::MAX, 2).is_err());
        assert_eq!(pd.wait_range(data.len() as u64, 0), Ok(()));
        assert_eq!(pd.finish(), Ok(data.len() as u64));
    }

    #[test]
    fn cancel_stops_workers() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(2 << 20, 8);
        let p = xz(dir.path(), "c", &data, &["-T2", "--block-size=64KiB"]);
        let src = File::open(&p).unwrap();
        let l = layout(&src).unwrap().unwrap();
        let last = l.blocks.last().unwrap().clone();
        let pd = ParDecode::start(
            src,
            l,
            tempfile::tempfile().unwrap(),
            1,
            u64::MAX,
            Box::new(|_| std::thread::sleep(Duration::from_millis(50))),
        );
        pd.cancel();
        let e = pd
            .wait_range(last.uncompressed_offset, last.uncompressed_size)
            .unwrap_err();
        assert!(e.contains("cancelled"), "{e}");
        assert!(pd.finish().unwrap_err().contains("cancelled"));
    }

    #[test]
    fn truncated_file_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = xz(
            dir.path(),
            "t",
            &mixed_data(1 << 20, 9),
            &["-T2", "--block-size=64KiB"],
        );
        let full = std::fs::read(&p).unwrap();
        let cut = dir.path().join("cut.xz");
        for len in [
            (full.len() / 2) & !3,
            full.len() - 4,
            full.len() - 1,
            100,
            12,
            0,
        ] {
            std::fs::write(&cut, &full[..len]).unwrap();
            let r = layout(&File::open(&cut).unwrap());
            assert!(r.is_err(), "truncated to {len}: {r:?}");
        }
        // Cut at the front: the index then points before the file.
        std::fs::write(&cut, &full[64..]).unwrap();
        assert!(layout(&File::open(&cut).unwrap()).is_err());
    }

    #[test]
    fn bad_magic_and_crcs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = xz(
            dir.path(),
            "m",
            &mixed_data(300_000, 11),
            &["-T2", "--block-size=64KiB"],
        );
        let full = std::fs::read(&p).unwrap();
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        let bad = dir.path().join("bad.xz");
        let n = full.len();
        let index_at = {
            let b = l.blocks.last().unwrap();
            (b.offset + b.total_size()) as usize
        };
        for (at, what) in [
            (0, "header magic"),
            (7, "header flags"),
            (9, "header crc"),
            (12 + 1, "block header flags"),
            (12 + 3, "block header body"),
            (index_at + 2, "index record"),
            (n - 1, "footer magic"),
            (n - 8, "backward size"),
            (n - 12, "footer crc"),
        ] {
            let mut f = full.clone();
            f[at] ^= 0x01;
            std::fs::write(&bad, &f).unwrap();
            let r = layout(&File::open(&bad).unwrap());
            assert!(r.is_err(), "{what}: {r:?}");
        }
        std::fs::write(&bad, b"not an xz file at all...").unwrap();
        assert!(layout(&File::open(&bad).unwrap()).is_err());
        std::fs::write(&bad, [0u8; 64]).unwrap();
        assert!(layout(&File::open(&bad).unwrap()).is_err());
    }

    #[test]
    fn corrupt_block_data_names_block() {
        let dir = tempfile::tempdir().unwrap();
        let data = text_data(1 << 20);
        let p = xz(dir.path(), "k", &data, &["-T2", "--block-size=64KiB"]);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        let victim = &l.blocks[5];
        let mut f = std::fs::read(&p).unwrap();
        let at = (victim.data_offset() + victim.data_size / 2) as usize;
        f[at] ^= 0x55;
        let bad = dir.path().join("bad.xz");
        std::fs::write(&bad, &f).unwrap();
        // The container is still fine.
        let (pd, e) = decode_failure(&bad, 2);
        assert!(
            e.contains("xz block 5 ") && e.contains(&format!("at byte {}", victim.offset)),
            "{e}"
        );
        let w = pd.wait_range(0, data.len() as u64).unwrap_err();
        assert_eq!(w, e);
        assert!(pd.wait_range(0, 1).is_err());
    }

    /// Rewrites the index of the single-stream file `path` so that block 1
    /// claims one byte less output and block 2 one byte more (same index
    /// size, valid CRC32).
    fn shift_index_sizes(path: &Path, out: &Path) {
        let l = layout(&File::open(path).unwrap()).unwrap().unwrap();
        let mut f = std::fs::read(path).unwrap();
        let last = l.blocks.last().unwrap();
        let index_at = (last.offset + last.total_size()) as usize;
        let n = f.len();
        let mut idx = vec![0u8, l.blocks.len() as u8];
        let enc = enc_vli;
        for (i, b) in l.blocks.iter().enumerate() {
            let unpadded = b.header_size + b.data_size + b.check_size;
            let u = b.uncompressed_size + u64::from(i == 2) - u64::from(i == 1);
            enc(unpadded, &mut idx);
            enc(u, &mut idx);
        }
        while !idx.len().is_multiple_of(4) {
            idx.push(0);
        }
        idx.extend(crc32fast::hash(&idx).to_le_bytes());
        assert_eq!(idx.len(), n - 12 - index_at, "index size changed");
        f[index_at..n - 12].copy_from_slice(&idx);
        std::fs::write(out, &f).unwrap();
    }

    #[test]
    fn wrong_sizes_in_index_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let data = text_data(300_000);
        let bad = dir.path().join("bad.xz");

        // The multi-threaded encoder stores the sizes in the block headers:
        // the layout sees the disagreement.
        let p = xz(dir.path(), "mt", &data, &["-T2", "--block-size=64KiB"]);
        shift_index_sizes(&p, &bad);
        let e = layout(&File::open(&bad).unwrap()).unwrap_err();
        assert!(
            e.contains("xz block 1 ") && e.contains("in the header"),
            "{e}"
        );

        // The single-threaded one does not: the decoder catches block 1
        // decoding to more than the index says.
        let p = xz(dir.path(), "st", &data, &["-T1", "--block-size=64KiB"]);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.blocks.len(), 5);
        shift_index_sizes(&p, &bad);
        let (_, e) = decode_failure(&bad, 1);
        assert!(e.contains("xz block 1 ") && e.contains("more than"), "{e}");
    }

    #[test]
    fn memory_budget_limits_threads() {
        let dir = tempfile::tempdir().unwrap();
        let data = mixed_data(4 << 20, 12);
        // -6: 8 MiB dictionary; 1 MiB blocks cap it at 1 MiB per worker.
        let p = xz(
            dir.path(),
            "mem",
            &data,
            &["-T2", "-6", "--block-size=1MiB"],
        );
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.blocks[0].dict_size, 8 << 20);
        assert_eq!(l.max_dict, 1 << 20);
        assert_eq!(l.worker_mem(), 3 << 20);
        let expect = xz_dc(&p);
        let (r, got, workers) = decode(&p, 8, 7 << 20);
        assert_eq!((r, workers), (Ok(expect.len() as u64), 2));
        assert!(got == expect);
        let (r, got, workers) = decode(&p, 8, 1);
        assert_eq!((r, workers), (Ok(expect.len() as u64), 1));
        assert!(got == expect);
        let (_, _, workers) = decode(&p, 8, u64::MAX);
        assert_eq!(workers, 4, "never more workers than blocks");
    }

    /// Little xz writer for containers `xz` would not make: one stream,
    /// no check, blocks without sizes in their headers.
    struct HandBlock {
        filters: Vec<(u64, Vec<u8>)>,
        data: Vec<u8>,
        uncompressed: u64,
        pad_byte: u8,
        /// Compressed size to store in the block header.
        header_csize: Option<u64>,
    }

    fn enc_vli(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    fn build_xz(blocks: &[HandBlock]) -> Vec<u8> {
        let mut f = HEADER_MAGIC.to_vec();
        f.extend([0, 0]);
        f.extend(crc32fast::hash(&[0, 0]).to_le_bytes());
        let mut records = Vec::new();
        for b in blocks {
            let mut h = vec![0u8, (b.filters.len() - 1) as u8];
            if let Some(c) = b.header_csize {
                h[1] |= 0x40;
                enc_vli(c, &mut h);
            }
            for (id, props) in &b.filters {
                enc_vli(*id, &mut h);
                enc_vli(props.len() as u64, &mut h);
                h.extend(props);
            }
            while !h.len().is_multiple_of(4) {
                h.push(0);
            }
            h[0] = ((h.len() + 4) / 4 - 1) as u8;
            h.extend(crc32fast::hash(&h).to_le_bytes());
            records.push(((h.len() + b.data.len()) as u64, b.uncompressed));
            f.extend(h);
            f.extend(&b.data);
            while !f.len().is_multiple_of(4) {
                f.push(b.pad_byte);
            }
        }
        let mut idx = vec![0u8];
        enc_vli(records.len() as u64, &mut idx);
        for (u, c) in records {
            enc_vli(u, &mut idx);
            enc_vli(c, &mut idx);
        }
        while !idx.len().is_multiple_of(4) {
            idx.push(0);
        }
        idx.extend(crc32fast::hash(&idx).to_le_bytes());
        let backward = (idx.len() / 4 - 1) as u32;
        f.extend(idx);
        let mut tail = backward.to_le_bytes().to_vec();
        tail.extend([0, 0]);
        f.extend(crc32fast::hash(&tail).to_le_bytes());
        f.extend(tail);
        f.extend(FOOTER_MAGIC);
        f
    }

    /// Raw LZMA2 data (1 MiB dictionary, props byte 16) for `data`.
    fn lzma2(data: &[u8]) -> Vec<u8> {
        let mut opts = LzmaOptions::new_preset(6).unwrap();
        opts.dict_size(1 << 20);
        let mut filters = Filters::new();
        filters.lzma2(&opts);
        let mut enc = Stream::new_raw_encoder(&filters).unwrap();
        let mut out = Vec::with_capacity(data.len() + 1024);
        let mut pos = 0;
        loop {
            out.reserve(64 << 10);
            let before = enc.total_in();
            let st = enc
                .process_vec(&data[pos..], &mut out, Action::Finish)
                .unwrap();
            pos += (enc.total_in() - before) as usize;
            if st == Status::StreamEnd {
                return out;
            }
        }
    }

    fn lz_block(data: &[u8]) -> HandBlock {
        HandBlock {
            filters: vec![(FILTER_LZMA2, vec![16])],
            data: lzma2(data),
            uncompressed: data.len() as u64,
            pad_byte: 0,
            header_csize: None,
        }
    }

    /// Writes `bytes` to a file and decodes it; the error of `finish`.
    fn decode_err(dir: &Path, bytes: &[u8]) -> String {
        let p = dir.join("hand.xz");
        std::fs::write(&p, bytes).unwrap();
        let src = File::open(&p).unwrap();
        let l = layout(&src).unwrap().unwrap();
        let pd = ParDecode::start(
            src,
            l,
            tempfile::tempfile().unwrap(),
            2,
            u64::MAX,
            Box::new(|_| {}),
        );
        pd.finish().unwrap_err()
    }

    #[test]
    fn hand_built_containers() {
        let dir = tempfile::tempdir().unwrap();
        let a = text_data(100_000);
        let b = mixed_data(70_000, 13);
        // Sanity: the hand-built file is what xz makes of it.
        let good = build_xz(&[lz_block(&a), lz_block(&b)]);
        let p = dir.path().join("good.xz");
        std::fs::write(&p, &good).unwrap();
        assert_eq!(xz_dc(&p), [a.clone(), b.clone()].concat());
        assert_roundtrip(&p);
        let l = layout(&File::open(&p).unwrap()).unwrap().unwrap();
        assert_eq!(l.blocks[0].dict_size, 1 << 20);
        // Capped at the largest block's output.
        assert_eq!(l.max_dict, 100_000);

        // Bytes after the LZMA2 end marker inside the block's data.
        let mut blk = lz_block(&b);
        blk.data.extend([0x12, 0x34, 0x56, 0x78]);
        let e = decode_err(dir.path(), &build_xz(&[lz_block(&a), blk]));
        assert!(
            e.contains("xz block 1 ") && e.contains("LZMA2 data ends after"),
            "{e}"
        );

        // LZMA2 data cut short.
        let mut blk = lz_block(&a);
        blk.data.truncate(blk.data.len() - 1);
        let e = decode_err(dir.path(), &build_xz(&[blk, lz_block(&b)]));
        assert!(e.contains("xz block 0 (at byte 12 of the file)"), "{e}");

        // Fewer bytes than the index says.
        let mut blk = lz_block(&a);
        blk.uncompressed += 1;
        let e = decode_err(dir.path(), &build_xz(&[blk, lz_block(&b)]));
        assert!(
            e.contains("xz block 0 ") && e.contains("decodes to 100000 bytes"),
            "{e}"
        );

        // Nonzero block padding.
        let n = (90_000..)
            .find(|&n| !lzma2(&text_data(n)).len().is_multiple_of(4))
            .unwrap();
        let mut blk = lz_block(&text_data(n));
        blk.pad_byte = 0xEE;
        let e = decode_err(dir.path(), &build_xz(&[lz_block(&a), blk]));
        assert!(
            e.contains("xz block 1 ") && e.contains("nonzero block padding"),
            "{e}"
        );

        let write = |bytes: &[u8]| {
            let p = dir.path().join("hdr.xz");
            std::fs::write(&p, bytes).unwrap();
            layout(&File::open(&p).unwrap())
        };
        // Compressed size in the header: right, then wrong.
        let mut blk = lz_block(&b);
        blk.header_csize = Some(blk.data.len() as u64);
        assert!(write(&build_xz(&[lz_block(&a), blk])).unwrap().is_some());
        let mut blk = lz_block(&b);
        blk.header_csize = Some(blk.data.len() as u64 + 1);
        let e = write(&build_xz(&[lz_block(&a), blk])).unwrap_err();
        assert!(
            e.contains("xz block 1 ") && e.contains("compressed size"),
            "{e}"
        );
        // An unknown filter: left to the sequential decoder.
        let mut blk = lz_block(&b);
        blk.filters.insert(0, (0x1234, vec![]));
        assert_eq!(write(&build_xz(&[lz_block(&a), blk])), Ok(None));
        // A dictionary size byte above 40.
        let mut blk = lz_block(&b);
        blk.filters[0].1 = vec![41];
        let e = write(&build_xz(&[lz_block(&a), blk])).unwrap_err();
        assert!(e.contains("xz block 1 ") && e.contains("dictionary"), "{e}");
        // LZMA2 not last.
        let mut blk = lz_block(&b);
        blk.filters.push((FILTER_X86, vec![]));
        let e = write(&build_xz(&[lz_block(&a), blk])).unwrap_err();
        assert!(e.contains("filter chain"), "{e}");
        // Bad BCJ properties (3 bytes).
        let mut blk = lz_block(&b);
        blk.filters.insert(0, (FILTER_X86, vec![1, 2, 3]));
        let e = write(&build_xz(&[lz_block(&a), blk])).unwrap_err();
        assert!(e.contains("invalid properties"), "{e}");
    }

    #[test]
    fn vli_decoding() {
        let ok = |b: &[u8]| read_vli(b, &mut 0);
        assert_eq!(ok(&[0x00]), Ok(0));
        assert_eq!(ok(&[0x7F]), Ok(127));
        assert_eq!(ok(&[0x80, 0x01]), Ok(128));
        assert!(ok(&[0x80, 0x00]).is_err(), "non-minimal");
        assert!(ok(&[0x80]).is_err(), "truncated");
        assert!(ok(&[0xFF; 10]).is_err(), "too long");
        let mut max = [0xFFu8; 9];
        max[8] = 0x7F;
        assert_eq!(ok(&max), Ok(VLI_MAX));
    }
}
