//! Tests of the container reader and the block decoder, against files made by `xz`.

use super::block::*;
use super::container::*;
use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
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
        v.extend_from_slice(format!("line {i} of the image, value {}\n", i * i % 977).as_bytes());
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
    let (src, l) = open_layout(path);
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

/// Compresses `data` into `dir/name.xz` in 64 KiB blocks (two threads), as most tests here need.
fn xz_64k(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    xz(dir, name, data, &["-T2", "--block-size=64KiB"])
}

/// [`xz_64k`] with the integrity check `check` (`--check=`), named after it; with its layout.
fn xz_64k_check(dir: &Path, check: &str, data: &[u8]) -> (PathBuf, XzLayout) {
    let p = xz(
        dir,
        check,
        data,
        &["-T2", "--block-size=64KiB", &format!("--check={check}")],
    );
    let l = layout_of(&p);
    (p, l)
}

/// The layout of the xz file at `p`, which must be one `layout` can split.
fn layout_of(p: &Path) -> XzLayout {
    open_layout(p).1
}

/// The xz file at `p`, open, and its layout.
fn open_layout(p: &Path) -> (File, XzLayout) {
    let src = File::open(p).unwrap();
    let l = layout(&src).unwrap().unwrap();
    (src, l)
}

#[test]
fn multi_block_matches_xz() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_data(1 << 20, 1);
    let p = xz_64k(dir.path(), "a", &data);
    let l = layout_of(&p);
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
    let p = xz_64k(dir.path(), "a", &data);
    let (src, l) = open_layout(&p);
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
    let l = layout_of(&p);
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
        let (p, l) = xz_64k_check(dir.path(), check, &data);
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
        let (p, l) = xz_64k_check(dir.path(), check, &data);
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
        let l = layout_of(&p);
        let ids: Vec<u64> = l.blocks[0].filters.iter().map(|f| f.id).collect();
        assert_eq!(ids, [id, FILTER_LZMA2], "{name}");
        assert_roundtrip(&p);
    }
}

#[test]
fn single_block_and_empty_files_are_decoded_by_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = xz(dir.path(), "one", &mixed_data(100_000, 5), &["-T1"]);
    let l = layout_of(&p);
    assert_eq!(l.blocks.len(), 1);
    assert_roundtrip(&p);
    // An empty stream (no blocks), and two empty streams.
    let p = xz(dir.path(), "empty", &[], &["-T1"]);
    let l = layout_of(&p);
    assert_eq!((l.blocks.len(), l.uncompressed_size), (0, 0));
    let (r, got, workers) = decode(&p, 2, u64::MAX);
    assert_eq!((r, got.len(), workers), (Ok(0), 0, 0));
    let mut two = std::fs::read(&p).unwrap();
    two.extend(two.clone());
    let p2 = dir.path().join("two-empty.xz");
    std::fs::write(&p2, &two).unwrap();
    let l = layout_of(&p2);
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
    let l = layout_of(&p);
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
    let l = layout_of(&p);
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
    let (src, l) = open_layout(&p);
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
    let (src, l) = open_layout(&p);
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
    let p = xz_64k(dir.path(), "c", &data);
    let (src, l) = open_layout(&p);
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
    let p = xz_64k(dir.path(), "t", &mixed_data(1 << 20, 9));
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
    let p = xz_64k(dir.path(), "m", &mixed_data(300_000, 11));
    let full = std::fs::read(&p).unwrap();
    let l = layout_of(&p);
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
    let p = xz_64k(dir.path(), "k", &data);
    let l = layout_of(&p);
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
    let l = layout_of(path);
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
    let p = xz_64k(dir.path(), "mt", &data);
    shift_index_sizes(&p, &bad);
    let e = layout(&File::open(&bad).unwrap()).unwrap_err();
    assert!(
        e.contains("xz block 1 ") && e.contains("in the header"),
        "{e}"
    );

    // The single-threaded one does not: the decoder catches block 1
    // decoding to more than the index says.
    let p = xz(dir.path(), "st", &data, &["-T1", "--block-size=64KiB"]);
    let l = layout_of(&p);
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
    let l = layout_of(&p);
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
    let (src, l) = open_layout(&p);
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
    let l = layout_of(&p);
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
