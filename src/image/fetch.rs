//! Downloading an image over http(s) into the store's folder, verified while streaming.
//!
//! The bytes go to `<dir>/<sha256>.download`; a partial file left by an interrupted download
//! (a cut connection, a killed apply) is hashed again and resumed with a `Range` request. When
//! the whole file is there and its sha256 is the expected one it is renamed (atomically) to
//! `<dir>/<sha256>.image`; a mismatch deletes it and is an error naming both digests.
//!
//! HTTP client: `ureq` (blocking, small, rustls without OpenSSL, no transparent decompression:
//! the sha256 is of the bytes as published).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How many times a download is resumed within one call after a cut connection.
pub const ATTEMPTS: u32 = 5;

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
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { op, path, source }
}

/// The partial download of `sha256` in `dir`.
pub fn partial_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.download"))
}

/// The complete, verified download of `sha256` in `dir`.
pub fn complete_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.image"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A stalled body read ends the attempt (then it is resumed).
        .timeout_recv_body(None)
        .timeout_per_read(Some(Duration::from_secs(60)))
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

/// Hashes the first bytes of an existing partial file (to resume verifying where it stops).
fn hash_existing(path: &Path, hasher: &mut Sha256) -> Result<u64, FetchError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err("read", path))?;
        if k == 0 {
            return Ok(n);
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
}

/// Outcome of one HTTP attempt.
enum Attempt {
    /// The whole body arrived.
    Complete,
    /// The connection broke after some bytes; resume.
    Cut(String),
}

/// Downloads `url` into `dir` (which must exist) and returns the path of the complete,
/// verified file (`<sha256>.image`). An existing complete file is returned at once (its digest
/// is checked again when it is unpacked). `progress(done, total)` counts bytes of the file.
pub fn download(
    url: &str,
    dir: &Path,
    sha256: &str,
    progress: &dyn Fn(u64, u64),
) -> Result<PathBuf, FetchError> {
    let complete = complete_path(dir, sha256);
    if complete.is_file() {
        return Ok(complete);
    }
    let partial = partial_path(dir, sha256);
    let agent = agent();
    let mut last_cut = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut hasher = Sha256::new();
        let have = if partial.is_file() {
            hash_existing(&partial, &mut hasher)?
        } else {
            0
        };
        match attempt_once(&agent, url, &partial, have, hasher, progress)? {
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
                tracing::warn!(url, attempt, "download interrupted ({why}); resuming");
                last_cut = why;
                std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            }
        }
    }
    Err(FetchError::Http {
        url: url.to_owned(),
        reason: format!(
            "the connection broke {ATTEMPTS} times (last: {last_cut}); the partial download {} is kept and resumed by the next apply",
            partial.display()
        ),
    })
}

/// One GET (with `Range` when `have > 0`), appending to `partial`. Returns how it ended and,
/// when complete, the sha256 of the whole file.
fn attempt_once(
    agent: &ureq::Agent,
    url: &str,
    partial: &Path,
    mut have: u64,
    mut hasher: Sha256,
    progress: &dyn Fn(u64, u64),
) -> Result<(Attempt, String), FetchError> {
    let http = |reason: String| FetchError::Http {
        url: url.to_owned(),
        reason,
    };
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp =
        match req.call() {
            Ok(r) => r,
            // The partial file is already whole (or longer than the file): start over.
            Err(ureq::Error::StatusCode(416)) if have > 0 => {
                std::fs::remove_file(partial).map_err(io_err("remove", partial))?;
                return Ok((Attempt::Cut("range not satisfiable".into()), String::new()));
            }
            Err(ureq::Error::StatusCode(code)) => {
                return Err(http(format!("the server answered HTTP {code}")));
            }
            Err(
                e @ (ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed),
            ) if have > 0 => return Ok((Attempt::Cut(e.to_string()), String::new())),
            Err(e) => return Err(http(e.to_string())),
        };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
    let mut file = if status == 206 && have > 0 {
        let (start, _) = header("content-range")
            .as_deref()
            .and_then(content_range)
            .ok_or_else(|| http("206 without a usable Content-Range".into()))?;
        if start != have {
            return Err(http(format!(
                "asked for bytes from {have}, the server sent from {start}"
            )));
        }
        OpenOptions::new()
            .append(true)
            .open(partial)
            .map_err(io_err("open", partial))?
    } else if status == 200 {
        // A server without Range support sends everything again: start over.
        have = 0;
        hasher = Sha256::new();
        File::create(partial).map_err(io_err("create", partial))?
    } else {
        return Err(http(format!("unexpected HTTP {status}")));
    };
    let total = length.map(|l| l + have).unwrap_or(0);
    let mut body = resp.into_body();
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut last = have;
    progress(have, total);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.sync_data().map_err(io_err("sync", partial))?;
                return Ok((Attempt::Cut(e.to_string()), String::new()));
            }
        };
        file.write_all(&buf[..n])
            .map_err(io_err("write", partial))?;
        hasher.update(&buf[..n]);
        have += n as u64;
        if have - last >= 8 << 20 {
            last = have;
            progress(have, total);
        }
    }
    if total > 0 && have != total {
        file.sync_data().map_err(io_err("sync", partial))?;
        return Ok((
            Attempt::Cut(format!("body ended at byte {have} of {total}")),
            String::new(),
        ));
    }
    progress(have, total.max(have));
    file.sync_all().map_err(io_err("sync", partial))?;
    Ok((Attempt::Complete, hex::encode(hasher.finalize())))
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
