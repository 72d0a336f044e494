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
//!
//! The module is split along the format's seams: [`container`] reads the
//! structure (stream headers and footers, indexes, block headers) and says
//! where every block is and what it needs; [`block`] decodes blocks on
//! worker threads.
//!
//! # Why the container is parsed here, not through liblzma's index API
//!
//! liblzma can decode an index (`lzma_index_decoder`,
//! `lzma_index_buffer_decode`, `lzma_file_info_decoder` for the backward walk
//! over concatenated streams), but the `liblzma` crate wraps none of it: its
//! safe API is `Stream` decoders and `Filters` (plus, behind its `bindgen`
//! feature, `uncompressed_size`, the total of the last stream's index only).
//! The index, stream flags and block header functions exist only as raw
//! `liblzma-sys` FFI (`lzma_index` handles freed by hand, `lzma_index_iter`
//! structs, filter options liblzma allocates). Using them would bring
//! `unsafe` code to a parser of untrusted input, in a crate whose only
//! `unsafe` is one `sync_file_range` call. Even with the index, each block's
//! raw decoder needs that block's filter chain, which only its block header
//! holds, and the header must be read anyway to compare its sizes with the
//! index. The format (stream footer → index → stream header, then block
//! headers) is small, fully specified and walked once; parsing it here keeps
//! it safe Rust, checked field by field (CRC32s included) before the file's
//! digest is known, fuzzed by `fuzz/fuzz_targets/xz.rs`, and lets
//! [`XzLayout::check_memory`] refuse a block by the dictionary it declares
//! before anything is decoded.

mod block;
mod container;
#[cfg(test)]
mod tests;

pub(crate) use block::ParDecode;
pub(crate) use container::{XzLayout, layout};
