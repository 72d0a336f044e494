//! Sniffing, checksumming and decompressing an image file into a sparse
//! temporary raw image.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Format, ImageError, MAX_IMAGE_BYTES, xzpar};

/// Sniffs the format of an image by its magic bytes (never by name).
pub fn sniff(path: &Path) -> Result<Format, ImageError> {
    let f = File::open(path).map_err(|e| ImageError::io("open image", path, e))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io("read image", path, e)),
        }
    }
    let head = &head[..n];
    Ok(if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        Format::Xz
    } else if head.starts_with(&[0x1F, 0x8B]) {
        Format::Gzip
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Format::Zip
    } else if n == 512 && head[510] == 0x55 && head[511] == 0xAA {
        Format::Raw
    } else {
        return Err(ImageError::UnknownFormat {
            path: path.to_path_buf(),
        });
    })
}

/// A reader that hashes what passes through and reports progress.
struct Hashing<'a, R> {
    inner: R,
    hasher: Sha256,
    done: u64,
    total: u64,
    progress: &'a dyn Fn(u64, u64),
    last: u64,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.done += n as u64;
        if self.done - self.last >= 16 << 20 || (n == 0 && self.done != self.last) {
            self.last = self.done;
            (self.progress)(self.done, self.total);
        }
        Ok(n)
    }
}

/// A reader that counts what passes through and calls `report(count)`
/// about every 16 MiB and at the end.
struct Counting<R, F> {
    inner: R,
    done: u64,
    last: u64,
    report: F,
}

impl<R: Read, F: Fn(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= 16 << 20 || (n == 0 && self.done != self.last) {
            self.last = self.done;
            (self.report)(self.done);
        }
        Ok(n)
    }
}

/// Checks an expected digest's syntax and normalizes it to lower case.
pub(crate) fn normalize_digest(expected: &str) -> Result<String, ImageError> {
    let e = expected.trim().to_ascii_lowercase();
    if e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::BadDigest(expected.to_string()));
    }
    Ok(e)
}

fn check_digest(path: &Path, hasher: Sha256, expected: &str) -> Result<String, ImageError> {
    digest_matches(path, hex::encode(hasher.finalize()), expected)
}

/// `actual` if it is `expected`, else the mismatch error naming both.
fn digest_matches(path: &Path, actual: String, expected: &str) -> Result<String, ImageError> {
    if actual != expected {
        return Err(ImageError::Sha256Mismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(actual)
}

/// What identifies the content of an open file without reading it: a
/// write through any descriptor changes `ctime` (which no one can set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(f: &File, path: &Path) -> Result<Self, ImageError> {
        use std::os::unix::fs::MetadataExt;
        let m = f
            .metadata()
            .map_err(|e| ImageError::io("stat image", path, e))?;
        Ok(Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// An image file whose sha256 matched, open at its start, with what it
/// looked like when it was hashed.
struct Verified {
    file: File,
    len: u64,
    fingerprint: Fingerprint,
}

/// Opens the image and hashes it whole before anything else reads it; the
/// same descriptor is then used, so what was hashed is what is read (and
/// [`RawImage::complete`] checks that the file did not change meanwhile).
fn open_verified(
    path: &Path,
    expected: &str,
    progress: &dyn Fn(u64, u64),
) -> Result<Verified, ImageError> {
    let f = File::open(path).map_err(|e| ImageError::io("open image", path, e))?;
    let fingerprint = Fingerprint::of(&f, path)?;
    let total = fingerprint.size;
    let mut r = Hashing {
        inner: &f,
        hasher: Sha256::new(),
        done: 0,
        total,
        progress,
        last: 0,
    };
    io::copy(&mut r, &mut io::sink()).map_err(|e| ImageError::io("read image", path, e))?;
    check_digest(path, r.hasher, expected)?;
    let mut f = f;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| ImageError::io("seek image", path, e))?;
    Ok(Verified {
        file: f,
        len: total,
        fingerprint,
    })
}

/// A writer into a file that leaves zero blocks as holes and refuses to grow
/// past [`MAX_IMAGE_BYTES`].
struct SparseOut<'a> {
    file: &'a File,
    pos: u64,
}

impl Write for SparseOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > MAX_IMAGE_BYTES {
            return Err(io::Error::other(format!(
                "decompressed image larger than {MAX_IMAGE_BYTES} bytes"
            )));
        }
        crate::tree::write_sparse_chunk(self.file.as_fd(), buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies the decoded stream into `out` (sparse), then drains the source so
/// the digest covers every byte of the file.
fn decode_into<R: Read>(
    decoder: &mut R,
    out: &File,
    path: &Path,
    what: &'static str,
) -> Result<u64, ImageError> {
    let mut w = SparseOut { file: out, pos: 0 };
    io::copy(decoder, &mut w).map_err(|e| ImageError::Decompress {
        path: path.to_path_buf(),
        format: what,
        source: e,
    })?;
    out.set_len(w.pos)
        .map_err(|e| ImageError::io("set size of temporary image for", path, e))?;
    Ok(w.pos)
}

/// An error of the xz block decoding (or of waiting for it).
fn xz_error(path: &Path, reason: String) -> ImageError {
    ImageError::Decompress {
        path: path.to_path_buf(),
        format: "xz",
        source: io::Error::other(reason),
    }
}

/// Memory allowed for the xz block decoders together (dictionaries and
/// buffers): it bounds the number of workers.
const DECODE_MEMORY: u64 = 128 << 20;

/// Memory one decoder may use, whatever the image claims: an LZMA2
/// dictionary is allocated (and filled) as the block header says, so a
/// small file could otherwise claim gigabytes. `xz -9`, the largest preset,
/// needs 65 MiB.
pub(crate) const MAX_DECODER_MEMORY: u64 = 256 << 20;

/// Progress over the two passes on a compressed image file: hashing is the
/// first half, decoding the second (same total, so one phase to the
/// caller).
fn first_half(progress: &dyn Fn(u64, u64)) -> impl Fn(u64, u64) + '_ {
    move |done, total| progress(done / 2, total)
}

/// See [`first_half`]: `done` bytes of `total` decoded.
fn second_half(done: u64, total: u64) -> u64 {
    (total + done.min(total)) / 2
}

/// Work still going on behind a [`RawImage`]: the decoding of its blocks.
struct Pending {
    /// The decoding, and how far it is.
    watch: DecodeWatch,
}

/// How far a block-parallel decode is, for progress reports.
#[derive(Clone)]
pub(crate) struct DecodeWatch {
    decode: Arc<xzpar::ParDecode>,
    consumed: Arc<AtomicU64>,
    total: u64,
}

impl DecodeWatch {
    /// True while blocks are still being decoded.
    pub(crate) fn active(&self) -> bool {
        self.decode.active()
    }

    /// Calls `progress(done, file size)` about five times a second until
    /// the decoding ends or `stop` is set (the caller unparks this thread
    /// after setting it), then once more at 100 %. `done` runs over the
    /// second half of the file size: the first was the hashing.
    pub(crate) fn report(&self, progress: &dyn Fn(u64, u64), stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) && self.active() {
            let done = second_half(self.consumed.load(Ordering::Relaxed), self.total);
            progress(done, self.total);
            std::thread::park_timeout(std::time::Duration::from_millis(200));
        }
        progress(self.total, self.total);
    }
}

/// The raw disk image behind an image file, verified against its digest.
pub(crate) struct RawImage {
    /// The raw image (the source itself, or a sparse temporary file).
    pub(crate) file: File,
    /// Keeps the temporary file alive (deleted on drop).
    pub(crate) _temp: Option<tempfile::NamedTempFile>,
    /// Size of the raw image.
    pub(crate) len: u64,
    /// Lower-case hex sha256 of the source file.
    pub(crate) sha256: String,
    /// Waits for a range still being decoded; `None` when the raw image
    /// is complete.
    pub(crate) ready: Option<super::ext4raw::Ready>,
    /// The image file as it was hashed (it is read again while decoding).
    source: File,
    fingerprint: Fingerprint,
    pending: Option<Pending>,
}

impl RawImage {
    /// Waits until `len` bytes at `offset` of the raw image can be read.
    pub(crate) fn wait(&self, path: &Path, offset: u64, len: u64) -> Result<(), ImageError> {
        match &self.ready {
            Some(ready) => ready(offset, len).map_err(|e| xz_error(path, e)),
            None => Ok(()),
        }
    }

    /// How far the block-parallel decoding is, if there is one.
    pub(crate) fn decode_watch(&self) -> Option<DecodeWatch> {
        self.pending.as_ref().map(|p| p.watch.clone())
    }

    /// Number of threads decoding the image block by block (0: it was
    /// decoded whole before use, or needed no decoding).
    pub(crate) fn parallel_decoders(&self) -> usize {
        self.pending
            .as_ref()
            .map_or(0, |p| p.watch.decode.workers())
    }

    /// Ends the work behind the image once the caller is done with it
    /// (`failed`: the caller failed, so the decoding is stopped). The first
    /// verdict is whether the image file changed since it was hashed (that
    /// explains any other error); then a block that failed to decode. A
    /// caller that did not fail waits for every block to be decoded.
    pub(crate) fn complete(&mut self, path: &Path, failed: bool) -> Result<(), ImageError> {
        let pending = self.pending.take();
        if let Some(p) = &pending
            && failed
        {
            p.watch.decode.cancel();
        }
        if Fingerprint::of(&self.source, path)? != self.fingerprint {
            return Err(ImageError::Hostile {
                path: path.to_path_buf(),
                reason: "the image file changed while it was being unpacked (after its sha256 \
                         was checked); nothing was kept: run apply again once it is complete"
                    .into(),
            });
        }
        let Some(p) = pending else {
            return Ok(());
        };
        let decode = &p.watch.decode;
        if failed {
            if let Some(e) = decode.failure() {
                return Err(xz_error(path, e));
            }
            return Ok(());
        }
        decode.finish().map_err(|e| xz_error(path, e))?;
        Ok(())
    }
}

/// Starts decoding a multi-block xz file (its digest already verified)
/// block by block into `temp`; reads of the raw image wait for the blocks
/// they need.
fn open_xz_parallel(
    path: &Path,
    src: Verified,
    layout: xzpar::XzLayout,
    expected: String,
    temp: tempfile::NamedTempFile,
) -> Result<RawImage, ImageError> {
    let reopen = |t: &tempfile::NamedTempFile| {
        t.reopen()
            .map_err(|e| ImageError::io("reopen temporary image for", path, e))
    };
    let source = src
        .file
        .try_clone()
        .map_err(|e| ImageError::io("duplicate descriptor of", path, e))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(64);
    let len = layout.uncompressed_size;
    let consumed = Arc::new(AtomicU64::new(0));
    let counter = consumed.clone();
    let decode = xzpar::ParDecode::start(
        src.file,
        layout,
        reopen(&temp)?,
        threads,
        DECODE_MEMORY,
        Box::new(move |n| counter.store(n, Ordering::Relaxed)),
    );
    let watch = DecodeWatch {
        decode: decode.clone(),
        consumed,
        total: src.len,
    };
    tracing::debug!(workers = decode.workers(), "decoding xz blocks in parallel");
    let dec = decode;
    let ready: super::ext4raw::Ready = Arc::new(move |off, n| dec.wait_range(off, n));
    Ok(RawImage {
        file: reopen(&temp)?,
        _temp: Some(temp),
        len,
        sha256: expected,
        ready: Some(ready),
        source,
        fingerprint: src.fingerprint,
        pending: Some(Pending { watch }),
    })
}

/// Decodes an xz file (its digest already verified) whole with liblzma's
/// stream decoder: every stream and the stream padding between them, as
/// `xz -d` does, in at most [`MAX_DECODER_MEMORY`]. For the files
/// [`xzpar::layout`] cannot split into blocks; `layout_error` is what it
/// said of the container, if it refused it.
fn decode_xz_sequential(
    path: &Path,
    src: &File,
    out: &File,
    progress: &dyn Fn(u64),
    layout_error: Option<&str>,
) -> Result<u64, ImageError> {
    let fail = |e: io::Error| {
        let is_memlimit = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<liblzma::stream::Error>())
            == Some(&liblzma::stream::Error::MemLimit);
        let mut reason = if is_memlimit {
            format!(
                "decoding needs more than the {} pinetboot allows one decoder (the image \
                 declares a larger LZMA2 dictionary; `xz -9` needs 65 MiB): recompress the \
                 image with a smaller dictionary, e.g. `xz -9`",
                crate::progress::human_bytes(MAX_DECODER_MEMORY)
            )
        } else {
            e.to_string()
        };
        if let Some(l) = layout_error {
            reason.push_str(&format!(" ({l})"));
        }
        xz_error(path, reason)
    };
    let stream = liblzma::stream::Stream::new_stream_decoder(
        MAX_DECODER_MEMORY,
        liblzma::stream::CONCATENATED,
    )
    .map_err(|e| fail(io::Error::other(e)))?;
    let input = Counting {
        inner: src,
        done: 0,
        last: 0,
        report: progress,
    };
    let mut dec = liblzma::bufread::XzDecoder::new_stream(BufReader::new(input), stream);
    let mut w = SparseOut { file: out, pos: 0 };
    io::copy(&mut dec, &mut w).map_err(fail)?;
    out.set_len(w.pos)
        .map_err(|e| ImageError::io("set size of temporary image for", path, e))?;
    Ok(w.pos)
}

/// Verifies `path` against `expected` and returns its raw disk image,
/// decompressing into a sparse temporary file in `temp_dir` when needed.
///
/// The whole file is hashed before any byte of it is decoded or parsed,
/// whatever its format: until its digest matched, an image may be hostile.
pub(crate) fn open_raw(
    path: &Path,
    format: Format,
    expected: &str,
    temp_dir: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<RawImage, ImageError> {
    let expected = normalize_digest(expected)?;
    let new_temp = || {
        tempfile::Builder::new()
            .prefix(".pinetboot-image-")
            .suffix(".img")
            .tempfile_in(temp_dir)
            .map_err(|e| ImageError::io("create temporary image in", temp_dir, e))
    };
    let dup = |f: &File| {
        f.try_clone()
            .map_err(|e| ImageError::io("duplicate descriptor of", path, e))
    };
    let reopen = |t: &tempfile::NamedTempFile| {
        t.reopen()
            .map_err(|e| ImageError::io("reopen temporary image for", path, e))
    };
    if format == Format::Raw {
        let src = open_verified(path, &expected, progress)?;
        return Ok(RawImage {
            file: dup(&src.file)?,
            _temp: None,
            len: src.len,
            sha256: expected,
            ready: None,
            source: src.file,
            fingerprint: src.fingerprint,
            pending: None,
        });
    }
    let src = open_verified(path, &expected, &first_half(progress))?;
    let total = src.len;
    let decoded_half = |done: u64| progress(second_half(done, total), total);
    let temp = new_temp()?;
    let len = match format {
        Format::Raw => unreachable!("handled above"),
        Format::Xz => {
            // Block by block on every core, each block in bounded memory
            // (what Raspberry Pi OS ships, and any file whose container can
            // be read block by block); else liblzma's stream decoder.
            let layout = xzpar::layout(&src.file);
            match layout {
                Ok(Some(layout)) => {
                    layout
                        .check_memory(MAX_DECODER_MEMORY)
                        .map_err(|e| xz_error(path, e))?;
                    return open_xz_parallel(path, src, layout, expected, temp);
                }
                Ok(None) => {
                    decode_xz_sequential(path, &src.file, temp.as_file(), &decoded_half, None)?
                }
                Err(e) => {
                    tracing::debug!(reason = %e, "xz container not read block by block");
                    decode_xz_sequential(path, &src.file, temp.as_file(), &decoded_half, Some(&e))?
                }
            }
        }
        Format::Gzip => {
            let input = Counting {
                inner: &src.file,
                done: 0,
                last: 0,
                report: decoded_half,
            };
            let mut dec = flate2::bufread::MultiGzDecoder::new(BufReader::new(input));
            decode_into(&mut dec, temp.as_file(), path, "gzip")?
        }
        Format::Zip => {
            let zip_err = |reason: String| ImageError::Zip {
                path: path.to_path_buf(),
                reason,
            };
            let mut archive =
                zip::ZipArchive::new(dup(&src.file)?).map_err(|e| zip_err(e.to_string()))?;
            let mut members = Vec::new();
            for i in 0..archive.len() {
                let m = archive
                    .by_index_raw(i)
                    .map_err(|e| zip_err(e.to_string()))?;
                if !m.is_dir() && m.name_raw().to_ascii_lowercase().ends_with(b".img") {
                    members.push(i);
                }
            }
            let [index] = members[..] else {
                return Err(zip_err(format!(
                    "expected exactly one .img member, found {}",
                    members.len()
                )));
            };
            let member = archive
                .by_index(index)
                .map_err(|e| zip_err(e.to_string()))?;
            let size = member.size();
            if size > MAX_IMAGE_BYTES {
                return Err(zip_err(format!(
                    "member claims {size} bytes, more than the {MAX_IMAGE_BYTES} allowed"
                )));
            }
            // Progress by decoded bytes of the member.
            let mut member = Counting {
                inner: member,
                done: 0,
                last: 0,
                report: |n: u64| {
                    let frac =
                        u128::from(n.min(size)) * u128::from(total) / u128::from(size.max(1));
                    decoded_half(frac as u64);
                },
            };
            decode_into(&mut member, temp.as_file(), path, "zip")?
        }
    };
    let mut file = reopen(&temp)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ImageError::io("seek temporary image for", path, e))?;
    Ok(RawImage {
        file,
        _temp: Some(temp),
        len,
        sha256: expected,
        ready: None,
        source: src.file,
        fingerprint: src.fingerprint,
        pending: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// `xz ARGS` of `data` (xz-utils: fails, never skips, without it).
    fn xz(data: &[u8], args: &[&str]) -> Vec<u8> {
        let mut child = Command::new("xz")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("xz (apt-get install -y xz-utils)");
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success(), "xz {args:?}");
        out.stdout
    }

    fn text(len: usize, seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut i = seed;
        while v.len() < len {
            v.extend_from_slice(format!("line {i} value {}\n", i * i % 7919).as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    /// Runs the sequential decoder on `bytes`.
    fn sequential(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut src = tempfile::tempfile().unwrap();
        src.write_all(bytes).unwrap();
        src.seek(SeekFrom::Start(0)).unwrap();
        let out = tempfile::tempfile().unwrap();
        let path = Path::new("test.img.xz");
        let n = decode_xz_sequential(path, &src, &out, &|_| {}, None).map_err(|e| {
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(&e) {
                s.push_str(&format!(": {src}"));
            }
            s
        })?;
        let mut got = vec![0u8; n as usize];
        out.read_exact_at(&mut got, 0).unwrap();
        Ok(got)
    }

    #[test]
    fn sequential_decoder_reads_every_stream_as_xz_does() {
        let (a, b) = (text(300_000, 1), text(200_000, 2));
        let mut file = xz(&a, &["-T1"]);
        file.extend([0u8; 8]); // stream padding
        file.extend(xz(&b, &["-T1", "--check=sha256"]));
        file.extend(xz(b"", &["-T1"])); // an empty stream
        assert_eq!(xz(&file, &["-dc"]), [a.clone(), b.clone()].concat());
        assert!(sequential(&file).unwrap() == [a, b].concat());

        // What `xz -d` refuses after a stream: garbage, padding not in units of 4.
        let one = xz(&text(1000, 3), &["-T1"]);
        for tail in [&b"garbage!"[..], &[0, 0]] {
            let mut f = one.clone();
            f.extend_from_slice(tail);
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg("xz -dc > /dev/null")
                    .stdin({
                        let mut t = tempfile::tempfile().unwrap();
                        t.write_all(&f).unwrap();
                        t.seek(SeekFrom::Start(0)).unwrap();
                        t
                    })
                    .status()
                    .map(|s| !s.success())
                    .unwrap(),
                "xz -d accepts {tail:?}"
            );
            assert!(sequential(&f).map(|v| v.len()).is_err(), "{tail:?}");
        }
    }

    /// A single-block file whose block header claims a 4 GiB dictionary (the LZMA2
    /// dictionary byte rewritten to 40, its CRC32 redone).
    fn dictionary_claim(mut f: Vec<u8>) -> Vec<u8> {
        // Stream header (12), then the block header: size, flags 0 (one filter, no
        // sizes), LZMA2 id 0x21, properties size 1, the dictionary byte.
        assert_eq!(&f[13..16], &[0x00, 0x21, 0x01], "unexpected block header");
        f[16] = 40;
        let hlen = (usize::from(f[12]) + 1) * 4;
        let crc = crc32fast::hash(&f[12..12 + hlen - 4]);
        f[12 + hlen - 4..12 + hlen].copy_from_slice(&crc.to_le_bytes());
        f
    }

    #[test]
    fn sequential_decoder_memory_is_capped() {
        let f = dictionary_claim(xz(&vec![0u8; 1 << 20], &["-T1", "-0"]));
        let e = sequential(&f).map(|v| v.len()).unwrap_err();
        assert!(e.contains("more than the 256 MiB"), "{e}");
        // The block decoder caps the dictionary at the block's size: this file costs 1 MiB.
        let mut src = tempfile::tempfile().unwrap();
        src.write_all(&f).unwrap();
        let l = xzpar::layout(&src).unwrap().unwrap();
        assert_eq!(l.blocks[0].dict_size, u64::from(u32::MAX));
        l.check_memory(MAX_DECODER_MEMORY).unwrap();
    }

    #[test]
    fn a_dictionary_claim_over_the_cap_is_refused_before_decoding() {
        // 300 MiB of zeros in one block that claims a 4 GiB dictionary: decoding it would
        // fill 300 MiB of dictionary.
        let dir = tempfile::tempdir().unwrap();
        let zeros = Command::new("sh")
            .args(["-c", "head -c 300M /dev/zero | xz -T1 -0"])
            .output()
            .expect("sh, head, xz");
        assert!(zeros.status.success());
        let f = dictionary_claim(zeros.stdout);
        let p = dir.path().join("bomb.img.xz");
        std::fs::write(&p, &f).unwrap();
        let sha = hex::encode(Sha256::digest(&f));
        let e = open_raw(&p, Format::Xz, &sha, dir.path(), &|_, _| {})
            .err()
            .expect("refused");
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            msg.contains("bomb.img.xz")
                && msg.contains("4.0 GiB LZMA2 dictionary")
                && msg.contains("more than the 256 MiB"),
            "{msg}"
        );
        // Nothing was decoded: the temporary file is gone, nothing else is there.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}

#[cfg(test)]
mod changed_tests {
    use super::*;

    /// An image file that changes after it was hashed (it is read again while it is decoded
    /// and unpacked) is refused when the work behind it ends: grown, or rewritten in place.
    #[test]
    fn a_file_changed_after_it_was_hashed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        let mut data = vec![0u8; 8192];
        data[510] = 0x55;
        data[511] = 0xAA;
        std::fs::write(&p, &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        type Change = fn(&Path);
        let changes: [(&str, Change); 3] = [
            ("nothing", |_| {}),
            ("grown", |p| {
                let f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                (&f).write_all(b"more").unwrap();
            }),
            ("rewritten in place", |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.write_all_at(b"evil", 1024).unwrap();
                // Even with its mtime set back: ctime or mtime tells.
                let ts = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 1000,
                        tv_nsec: 0,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: 1000,
                        tv_nsec: 0,
                    },
                };
                rustix::fs::futimens(&f, &ts).unwrap();
            }),
        ];
        for (what, change) in changes {
            std::fs::write(&p, &data).unwrap();
            let mut raw = open_raw(&p, Format::Raw, &sha, dir.path(), &|_, _| {}).unwrap();
            change(&p);
            let r = raw.complete(&p, false);
            if what == "nothing" {
                r.unwrap();
            } else {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains("changed while it was being unpacked"),
                    "{what}: {e}"
                );
            }
        }
    }
}
