//! Downloading an image over http(s) into the store's folder, verified while streaming.
//!
//! The bytes go to `<dir>/<sha256>.download`; a partial file left by an interrupted download
//! (a cut connection, a killed apply) is hashed again and resumed with a `Range` request. When
//! the whole file is there and its sha256 is the expected one it is renamed (atomically) to
//! `<dir>/<sha256>.image`; a mismatch deletes it and is an error naming both digests.
//!
//! Every download is bounded ([`Limits`], the config's `downloads:`): a size announced over
//! `max_size` is refused before a byte is written and a body growing past it is stopped (the
//! partial file is deleted: it can never become the image); a transfer slower than
//! `low_speed_limit` over `low_speed_time` seconds, or silent for that long, ends the attempt
//! (resumed up to [`ATTEMPTS`] times); the connection has `connect_timeout`; and the whole
//! download `max_time`, after which the partial file is kept for the next run. So `apply`
//! always returns, and its lock (a `flock` on a descriptor the process holds) is released.
//!
//! HTTP client: `ureq` (blocking, small, rustls without OpenSSL, no transparent decompression:
//! the sha256 is of the bytes as published).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::model::Downloads;
use crate::ioerr::IoError;

/// How many times a download is resumed within one call after a cut connection.
pub const ATTEMPTS: u32 = 5;

/// The limits of one download (the config's `downloads:`, see [`Downloads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest file accepted, in bytes.
    pub max_bytes: u64,
    /// The slowest average accepted over `low_speed_time`, in bytes per second (0: no check).
    pub low_speed_bytes: u64,
    /// The window of the speed check; also the longest wait for an answer or one read.
    pub low_speed_time: Duration,
    /// The longest wait to connect.
    pub connect_timeout: Duration,
    /// The longest one download may take in one call.
    pub max_time: Duration,
}

impl From<&Downloads> for Limits {
    fn from(d: &Downloads) -> Self {
        let secs = |n: std::num::NonZeroU32| Duration::from_secs(u64::from(n.get()));
        Limits {
            max_bytes: d.max_size.0,
            low_speed_bytes: d.low_speed_limit.0,
            low_speed_time: secs(d.low_speed_time),
            connect_timeout: secs(d.connect_timeout),
            max_time: secs(d.max_time),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&Downloads::default())
    }
}

/// Errors of a download.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with an error, or could not be reached.
    #[error("downloading {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The file is larger than `downloads.max_size` (nothing of it was kept).
    #[error("downloading {url}: {}", too_large_reason(*announced, *max))]
    TooLarge {
        /// The URL.
        url: String,
        /// The size the server announced, when it did (else the body grew past the cap).
        announced: Option<u64>,
        /// `downloads.max_size`.
        max: u64,
    },
    /// The download took longer than `downloads.max_time` (the partial file is kept).
    #[error(
        "downloading {url}: not finished after {} s (downloads.max_time); the partial download {} is kept and resumed by the next apply",
        max_time.as_secs(),
        partial.display()
    )]
    TimedOut {
        /// The URL.
        url: String,
        /// `downloads.max_time`.
        max_time: Duration,
        /// The partial download kept.
        partial: PathBuf,
    },
    /// The downloaded file's sha256 is not the configured one (nothing was kept).
    #[error(
        "sha256 mismatch for {url}: expected {expected}, got {actual} (the download was deleted)"
    )]
    Sha256Mismatch {
        /// The URL.
        url: String,
        /// Configured digest.
        expected: String,
        /// Digest of what was downloaded.
        actual: String,
    },
    /// A local file operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

fn too_large_reason(announced: Option<u64>, max: u64) -> String {
    let max = crate::config::size::ByteSize(max);
    match announced {
        Some(n) => format!(
            "the server announces {n} bytes, more than downloads.max_size ({max}); nothing was downloaded (raise downloads.max_size if this image is right)"
        ),
        None => format!(
            "the body grew past downloads.max_size ({max}) and was stopped; the partial download was deleted (raise downloads.max_size if this image is right)"
        ),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io(IoError::new(op, path, source))
}

/// The partial download of `sha256` in `dir`.
pub fn partial_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.download"))
}

/// The complete, verified download of `sha256` in `dir`.
pub fn complete_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.image"))
}

fn agent(limits: &Limits) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(limits.connect_timeout))
        .timeout_connect(Some(limits.connect_timeout))
        .timeout_send_request(Some(limits.connect_timeout))
        .timeout_recv_response(Some(limits.low_speed_time))
        // The body has the low-speed check and `max_time`; a silent server ends the attempt
        // after one read timeout (then it is resumed).
        .timeout_recv_body(None)
        .timeout_per_read(Some(limits.low_speed_time))
        .max_redirects(10)
        .user_agent(concat!("pinetboot/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The size of the file at `url` from a `HEAD` request (for the plan), if the server says.
/// Never an error: a plan must not fail because a server is down.
pub fn remote_size(url: &str) -> Option<u64> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let resp = agent.head(url).call().ok()?;
    resp.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `bytes START-END/TOTAL` → (START, TOTAL if known).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// Hashes an existing partial file (to resume verifying where it stops). A partial file over
/// `max` (left by a run with a larger `downloads.max_size`) is deleted: 0 bytes then.
fn hash_existing(path: &Path, hasher: &mut Sha256, max: u64) -> Result<u64, FetchError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err("read", path))?;
        if k == 0 {
            return Ok(n);
        }
        n += k as u64;
        if n > max {
            *hasher = Sha256::new();
            std::fs::remove_file(path).map_err(io_err("remove", path))?;
            return Ok(0);
        }
        hasher.update(&buf[..k]);
    }
}

/// Outcome of one HTTP attempt.
enum Attempt {
    /// The whole body arrived.
    Complete,
    /// The connection broke (or was too slow) after some bytes; resume.
    Cut(String),
}

/// Downloads `url` into `dir` (which must exist) within `limits` and returns the path of the
/// complete, verified file (`<sha256>.image`). An existing complete file is returned at once
/// (its digest is checked again when it is unpacked). `progress(done, total)` counts bytes of
/// the file.
pub fn download(
    url: &str,
    dir: &Path,
    sha256: &str,
    limits: &Limits,
    progress: &dyn Fn(u64, u64),
) -> Result<PathBuf, FetchError> {
    let complete = complete_path(dir, sha256);
    if complete.is_file() {
        return Ok(complete);
    }
    let partial = partial_path(dir, sha256);
    let agent = agent(limits);
    let deadline = Instant::now() + limits.max_time;
    let timed_out = || FetchError::TimedOut {
        url: url.to_owned(),
        max_time: limits.max_time,
        partial: partial.clone(),
    };
    let mut last_cut = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut hasher = Sha256::new();
        let have = if partial.is_file() {
            hash_existing(&partial, &mut hasher, limits.max_bytes)?
        } else {
            0
        };
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Err(timed_out());
        };
        let job = Job {
            agent: &agent,
            url,
            partial: &partial,
            limits,
            deadline,
            left,
            progress,
        };
        match job.attempt(have, hasher)? {
            (Attempt::Complete, actual) => {
                if actual != sha256 {
                    let _ = std::fs::remove_file(&partial);
                    return Err(FetchError::Sha256Mismatch {
                        url: url.to_owned(),
                        expected: sha256.to_owned(),
                        actual,
                    });
                }
                std::fs::rename(&partial, &complete).map_err(io_err("rename", &partial))?;
                crate::host::atomic::open_dir(dir)
                    .and_then(|d| Ok(rustix::fs::fsync(d)?))
                    .map_err(io_err("sync", dir))?;
                return Ok(complete);
            }
            (Attempt::Cut(why), _) => {
                if Instant::now() >= deadline {
                    return Err(timed_out());
                }
                tracing::warn!(url, attempt, "download interrupted ({why}); resuming");
                last_cut = why;
                std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            }
        }
    }
    Err(FetchError::Http {
        url: url.to_owned(),
        reason: format!(
            "interrupted {ATTEMPTS} times (last: {last_cut}); the partial download {} is kept and resumed by the next apply",
            partial.display()
        ),
    })
}

/// The low-speed check: fewer than `limit × window` bytes within a window of `window` is too
/// slow (curl's `--speed-limit`/`--speed-time`). Windows follow one another; a read that
/// blocks is bounded by the per-read timeout, which is the window too.
struct Speed {
    limit: u64,
    window: Duration,
    start: Instant,
    bytes: u64,
}

impl Speed {
    fn new(limits: &Limits) -> Self {
        Speed {
            limit: limits.low_speed_bytes,
            window: limits.low_speed_time,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` more bytes; a description of the breach when the window closed too slow.
    fn add(&mut self, n: u64) -> Option<String> {
        self.bytes += n;
        let elapsed = self.start.elapsed();
        if self.limit == 0 || elapsed < self.window {
            return None;
        }
        let needed = self.limit.saturating_mul(self.window.as_secs().max(1));
        if self.bytes < needed {
            return Some(format!(
                "slower than {}/s: {} bytes in {:.0} s (downloads.low_speed_limit, low_speed_time)",
                crate::config::size::ByteSize(self.limit),
                self.bytes,
                elapsed.as_secs_f64()
            ));
        }
        self.start = Instant::now();
        self.bytes = 0;
        None
    }
}

/// How a timeout of ureq reads, in the config's words.
fn timeout_reason(t: ureq::Timeout, limits: &Limits) -> String {
    use ureq::Timeout as T;
    let secs = |d: Duration| d.as_secs();
    match t {
        T::Resolve | T::Connect | T::SendRequest => format!(
            "could not connect within {} s (downloads.connect_timeout)",
            secs(limits.connect_timeout)
        ),
        T::RecvResponse => format!(
            "no answer within {} s (downloads.low_speed_time)",
            secs(limits.low_speed_time)
        ),
        T::PerRead => format!(
            "no data for {} s (downloads.low_speed_time)",
            secs(limits.low_speed_time)
        ),
        other => format!("timeout: {other}"),
    }
}

/// The ureq timeout inside an error, if that is what it is.
fn ureq_timeout(e: &ureq::Error) -> Option<ureq::Timeout> {
    match e {
        ureq::Error::Timeout(t) => Some(*t),
        ureq::Error::Io(io) => io_timeout(io),
        _ => None,
    }
}

fn io_timeout(e: &io::Error) -> Option<ureq::Timeout> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .and_then(ureq_timeout)
}

/// One download attempt's fixed inputs.
struct Job<'a> {
    agent: &'a ureq::Agent,
    url: &'a str,
    partial: &'a Path,
    limits: &'a Limits,
    deadline: Instant,
    /// Time left before `deadline` when the attempt starts.
    left: Duration,
    progress: &'a dyn Fn(u64, u64),
}

impl Job<'_> {
    fn http(&self, reason: String) -> FetchError {
        FetchError::Http {
            url: self.url.to_owned(),
            reason,
        }
    }

    fn timed_out(&self) -> FetchError {
        FetchError::TimedOut {
            url: self.url.to_owned(),
            max_time: self.limits.max_time,
            partial: self.partial.to_owned(),
        }
    }

    fn too_large(&self, announced: Option<u64>) -> Result<FetchError, FetchError> {
        match std::fs::remove_file(self.partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", self.partial)(e)),
        }
        Ok(FetchError::TooLarge {
            url: self.url.to_owned(),
            announced,
            max: self.limits.max_bytes,
        })
    }

    /// One GET (with `Range` when `have > 0`), appending to the partial file. Returns how it
    /// ended and, when complete, the sha256 of the whole file.
    fn attempt(&self, mut have: u64, mut hasher: Sha256) -> Result<(Attempt, String), FetchError> {
        let (url, partial, limits) = (self.url, self.partial, self.limits);
        let mut req = self.agent.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        // `max_time` bounds the whole exchange, body included.
        let req = req.config().timeout_global(Some(self.left)).build();
        let resp = match req.call() {
            Ok(r) => r,
            // The partial file is already whole (or longer than the file): start over.
            Err(ureq::Error::StatusCode(416)) if have > 0 => {
                std::fs::remove_file(partial).map_err(io_err("remove", partial))?;
                return Ok((Attempt::Cut("range not satisfiable".into()), String::new()));
            }
            Err(ureq::Error::StatusCode(code)) => {
                return Err(self.http(format!("the server answered HTTP {code}")));
            }
            Err(e) if ureq_timeout(&e) == Some(ureq::Timeout::Global) => {
                return Err(self.timed_out());
            }
            Err(e) => {
                let reason = ureq_timeout(&e)
                    .map(|t| timeout_reason(t, limits))
                    .unwrap_or_else(|| e.to_string());
                return match e {
                    ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                        if have > 0 =>
                    {
                        Ok((Attempt::Cut(reason), String::new()))
                    }
                    _ => Err(self.http(reason)),
                };
            }
        };
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
        let resumed = status == 206 && have > 0;
        let announced = if resumed {
            let (start, total) = header("content-range")
                .as_deref()
                .and_then(content_range)
                .ok_or_else(|| self.http("206 without a usable Content-Range".into()))?;
            if start != have {
                return Err(self.http(format!(
                    "asked for bytes from {have}, the server sent from {start}"
                )));
            }
            total.or(length.map(|l| l + have))
        } else if status == 200 {
            length
        } else {
            return Err(self.http(format!("unexpected HTTP {status}")));
        };
        // Refused before a byte is written.
        if let Some(total) = announced
            && total > limits.max_bytes
        {
            return Err(self.too_large(Some(total))?);
        }
        let mut file = if resumed {
            OpenOptions::new()
                .append(true)
                .open(partial)
                .map_err(io_err("open", partial))?
        } else {
            // A server without Range support sends everything again: start over.
            have = 0;
            hasher = Sha256::new();
            File::create(partial).map_err(io_err("create", partial))?
        };
        let total = announced.unwrap_or(0);
        let mut body = resp.into_body();
        let mut reader = body.as_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut last = have;
        let mut speed = Speed::new(limits);
        let cut = |file: &File, why: String| -> Result<(Attempt, String), FetchError> {
            file.sync_data().map_err(io_err("sync", partial))?;
            Ok((Attempt::Cut(why), String::new()))
        };
        (self.progress)(have, total);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    file.sync_data().map_err(io_err("sync", partial))?;
                    return match io_timeout(&e) {
                        Some(ureq::Timeout::Global) => Err(self.timed_out()),
                        Some(t) => Ok((Attempt::Cut(timeout_reason(t, limits)), String::new())),
                        None => Ok((Attempt::Cut(e.to_string()), String::new())),
                    };
                }
            };
            // Never more than `max_bytes` on disk: the file can no longer be the image.
            if have + n as u64 > limits.max_bytes {
                drop(file);
                return Err(self.too_large(None)?);
            }
            file.write_all(&buf[..n])
                .map_err(io_err("write", partial))?;
            hasher.update(&buf[..n]);
            have += n as u64;
            if have - last >= 8 << 20 {
                last = have;
                (self.progress)(have, total);
            }
            if let Some(why) = speed.add(n as u64) {
                return cut(&file, why);
            }
            if Instant::now() >= self.deadline {
                file.sync_data().map_err(io_err("sync", partial))?;
                return Err(self.timed_out());
            }
        }
        if total > 0 && have != total {
            return cut(&file, format!("body ended at byte {have} of {total}"));
        }
        (self.progress)(have, total.max(have));
        file.sync_all().map_err(io_err("sync", partial))?;
        Ok((Attempt::Complete, hex::encode(hasher.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
