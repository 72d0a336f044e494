//! Sniffing, checksumming and decompressing an image file into a sparse
//! temporary raw image.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

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

/// Opens the image and hashes it whole (for formats read in place or with
/// seeks); the same descriptor is then used, so what was hashed is what is
/// read.
fn open_hashed(
    path: &Path,
    expected: &str,
    progress: &dyn Fn(u64, u64),
) -> Result<File, ImageError> {
    let f = File::open(path).map_err(|e| ImageError::io("open image", path, e))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
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
    Ok(f)
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

/// Memory allowed for the xz block decoders (dictionaries and buffers).
const DECODE_MEMORY: u64 = 128 << 20;

/// The sha256 of a file, computed by a thread of its own.
struct FileDigest {
    /// `Ok(lower-case hex)` or `Err(read error)`, once known.
    result: Mutex<Option<Result<String, String>>>,
    cond: Condvar,
}

impl FileDigest {
    /// Starts hashing `file` from its start.
    fn start(file: File) -> Arc<Self> {
        let d = Arc::new(FileDigest {
            result: Mutex::new(None),
            cond: Condvar::new(),
        });
        let d2 = d.clone();
        std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0u64;
            let r = loop {
                match file.read_at(&mut buf, off) {
                    Ok(0) => break Ok(hex::encode(hasher.finalize())),
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        off += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e.to_string()),
                }
            };
            *d2.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            d2.cond.notify_all();
        });
        d
    }

    /// Waits for the digest.
    fn wait(&self) -> Result<String, String> {
        let mut r = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = &*r {
                return r.clone();
            }
            r = self.cond.wait(r).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Work still going on behind a [`RawImage`]: the file's digest and the
/// decoding of its blocks.
struct Pending {
    digest: Arc<FileDigest>,
    expected: String,
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

    /// Calls `progress(compressed bytes decoded, file size)` about five
    /// times a second until the decoding ends or `stop` is set (the caller
    /// unparks this thread after setting it), then once more at 100 %.
    pub(crate) fn report(&self, progress: &dyn Fn(u64, u64), stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) && self.active() {
            progress(self.consumed.load(Ordering::Relaxed), self.total);
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
    /// (`failed`: the caller failed, so the decoding is stopped). The file's
    /// digest is the first verdict: a mismatch explains any other error;
    /// then a block that failed to decode. A caller that did not fail waits
    /// for every block to be decoded.
    pub(crate) fn complete(&mut self, path: &Path, failed: bool) -> Result<(), ImageError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let decode = &p.watch.decode;
        let failure = failed.then(|| decode.failure()).flatten();
        if failed {
            decode.cancel();
        }
        let actual = p
            .digest
            .wait()
            .map_err(|e| ImageError::io("read image", path, io::Error::other(e)))?;
        digest_matches(path, actual, &p.expected)?;
        if let Some(e) = failure {
            return Err(xz_error(path, e));
        }
        if !failed {
            decode.finish().map_err(|e| xz_error(path, e))?;
        }
        Ok(())
    }
}

/// Starts decoding a multi-block xz file block by block into `temp` while
/// its digest is computed; reads of the raw image wait for both (nothing
/// inside the image is parsed before the digest matched).
fn open_xz_parallel(
    path: &Path,
    src: File,
    layout: xzpar::XzLayout,
    expected: String,
    temp: tempfile::NamedTempFile,
) -> Result<RawImage, ImageError> {
    let dup = |f: &File| {
        f.try_clone()
            .map_err(|e| ImageError::io("duplicate descriptor of", path, e))
    };
    let reopen = |t: &tempfile::NamedTempFile| {
        t.reopen()
            .map_err(|e| ImageError::io("reopen temporary image for", path, e))
    };
    let digest = FileDigest::start(dup(&src)?);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(64);
    let len = layout.uncompressed_size;
    let total = src
        .metadata()
        .map_err(|e| ImageError::io("stat image", path, e))?
        .len();
    let consumed = Arc::new(AtomicU64::new(0));
    let counter = consumed.clone();
    let decode = xzpar::ParDecode::start(
        src,
        layout,
        reopen(&temp)?,
        threads,
        DECODE_MEMORY,
        Box::new(move |n| counter.store(n, Ordering::Relaxed)),
    );
    let watch = DecodeWatch {
        decode: decode.clone(),
        consumed,
        total,
    };
    tracing::debug!(workers = decode.workers(), "decoding xz blocks in parallel");
    let (d, dec, want) = (digest.clone(), decode.clone(), expected.clone());
    let ready: super::ext4raw::Ready = Arc::new(move |off, n| {
        match d.wait() {
            Ok(actual) if actual == want => {}
            Ok(_) => return Err("the image file's sha256 does not match".into()),
            Err(e) => return Err(format!("reading the image file: {e}")),
        }
        dec.wait_range(off, n)
    });
    Ok(RawImage {
        file: reopen(&temp)?,
        _temp: Some(temp),
        len,
        sha256: expected.clone(),
        ready: Some(ready),
        pending: Some(Pending {
            digest,
            expected,
            watch,
        }),
    })
}

/// Verifies `path` against `expected` and returns its raw disk image,
/// decompressing into a sparse temporary file in `temp_dir` when needed.
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
    match format {
        Format::Raw => {
            let file = open_hashed(path, &expected, progress)?;
            let len = file
                .metadata()
                .map_err(|e| ImageError::io("stat image", path, e))?
                .len();
            Ok(RawImage {
                file,
                _temp: None,
                len,
                sha256: expected,
                ready: None,
                pending: None,
            })
        }
        Format::Xz | Format::Gzip => {
            let src = File::open(path).map_err(|e| ImageError::io("open image", path, e))?;
            // Multi-block xz (what Raspberry Pi OS ships) is decoded block by
            // block in parallel; a container that cannot be (one block, an
            // unknown filter) or that looks malformed goes the sequential way,
            // which reports a wrong file as a digest mismatch first.
            if format == Format::Xz
                && let Ok(Some(layout)) = xzpar::layout(&src)
            {
                return open_xz_parallel(path, src, layout, expected, new_temp()?);
            }
            let total = src.metadata().map(|m| m.len()).unwrap_or(0);
            let hashing = Hashing {
                inner: src,
                hasher: Sha256::new(),
                done: 0,
                total,
                progress,
                last: 0,
            };
            let temp = new_temp()?;
            let (len, mut hashing) = if format == Format::Xz {
                let threads = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(64) as u32;
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .threads(threads)
                    .memlimit_threading(DECODE_MEMORY)
                    .memlimit_stop(u64::MAX)
                    .decoder()
                    .map_err(|e| ImageError::Decompress {
                        path: path.to_path_buf(),
                        format: "xz",
                        source: io::Error::other(e),
                    })?;
                let mut dec =
                    liblzma::bufread::XzDecoder::new_stream(BufReader::new(hashing), stream);
                let len = decode_into(&mut dec, temp.as_file(), path, "xz")?;
                (len, dec.into_inner())
            } else {
                let mut dec = flate2::bufread::MultiGzDecoder::new(BufReader::new(hashing));
                let len = decode_into(&mut dec, temp.as_file(), path, "gzip")?;
                (len, dec.into_inner())
            };
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|e| ImageError::io("read image", path, e))?;
            let hasher = hashing.into_inner().hasher;
            let sha256 = check_digest(path, hasher, &expected)?;
            let file = temp
                .reopen()
                .map_err(|e| ImageError::io("reopen temporary image for", path, e))?;
            Ok(RawImage {
                file,
                _temp: Some(temp),
                len,
                sha256,
                ready: None,
                pending: None,
            })
        }
        Format::Zip => {
            let src = open_hashed(path, &expected, progress)?;
            let zip_err = |reason: String| ImageError::Zip {
                path: path.to_path_buf(),
                reason,
            };
            let mut archive = zip::ZipArchive::new(src).map_err(|e| zip_err(e.to_string()))?;
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
            let mut member = archive
                .by_index(index)
                .map_err(|e| zip_err(e.to_string()))?;
            if member.size() > MAX_IMAGE_BYTES {
                return Err(zip_err(format!(
                    "member claims {} bytes, more than the {MAX_IMAGE_BYTES} allowed",
                    member.size()
                )));
            }
            let temp = new_temp()?;
            let len = decode_into(&mut member, temp.as_file(), path, "zip")?;
            drop(member);
            let mut file = temp
                .reopen()
                .map_err(|e| ImageError::io("reopen temporary image for", path, e))?;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| ImageError::io("seek temporary image for", path, e))?;
            Ok(RawImage {
                file,
                _temp: Some(temp),
                len,
                sha256: expected,
                ready: None,
                pending: None,
            })
        }
    }
}
