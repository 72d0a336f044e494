//! Invariant 11 for downloads, on the real binary against hostile servers on 127.0.0.1 (the
//! test's own, tests/support_http): a `Content-Length` over `downloads.max_size` is refused
//! before a byte is written, an endless body is stopped at the cap and deleted, a trickling or
//! silent server is abandoned after `downloads.low_speed_time` with the partial download kept
//! (and resumed by the next apply), `downloads.max_time` ends a download that never finishes,
//! and every failed apply releases the lock: the next one runs. The limits are tiny in the
//! config so the tests are quick; a harness kills a command after 60 s and fails loudly (no
//! timed assertions). Needs root (a throwaway root in a private mount namespace).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::fixture::*;
use crate::support::http::{HttpServer, Seen};
use crate::support::run::Run;
use crate::support::text::assert_lacks;

/// Seconds before the harness kills a command that hangs.
const HARNESS_SECS: u32 = 60;

/// Runs `pinetboot --root R --config C ARGS…` in the env's namespace under the harness.
#[track_caller]
fn pt(env: &Env, args: &[&str]) -> Run {
    env.pt_timeout(HARNESS_SECS, args)
}

/// A config with one URL image (sha256 `sha`) for raspi1, and `downloads` settings.
fn write_config(env: &Env, url: &str, sha: &str, downloads: &str) {
    let mut y = format!(
        "server: {{address: {SERVER}, network: {NETWORK}}}\n\
         images:\n  bw: {{source: \"{url}\", sha256: {sha}}}\n\
         clients:\n  raspi1: {{serial: 0c4c21e5, image: bw}}\n"
    );
    if !downloads.is_empty() {
        y.push_str(&format!("downloads: {{{downloads}}}\n"));
    }
    std::fs::write(&env.config, y).unwrap();
}

/// Files in the image store's folder.
fn store_files(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.path("/var/lib/pinetboot/images"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `apply`, which must end in a conflict for raspi1 (exit 1) whose message holds `needle`.
#[track_caller]
fn apply_conflicts(env: &Env, needle: &str) -> Run {
    let r = pt(env, &["apply"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("client raspi1:") && r.stderr.contains(needle),
        "{}: stderr lacks {needle:?}\n--- stderr\n{}",
        r.what,
        r.stderr
    );
    assert!(
        !r.stderr.contains("lock"),
        "{}: a lock problem\n{}",
        r.what,
        r.stderr
    );
    r
}

/// Asserts the image store holds nothing and the server saw exactly one GET; returns it.
#[track_caller]
fn stored_nothing_after_one_get(env: &Env, server: &HttpServer) -> Seen {
    assert!(store_files(env).is_empty(), "{:?}", store_files(env));
    let mut gets = server.settled_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    gets.remove(0)
}

fn fake_sha() -> String {
    "0123456789abcdef".repeat(4)
}

#[test]
fn a_content_length_over_max_size_is_refused_before_a_byte_is_written() {
    let env = Env::new();
    let server = HttpServer::start();
    // The default cap (16 GiB): a server announcing one byte more is refused at once.
    let url = server.add_claim("huge.img.xz", (16 << 30) + 1, 1 << 20);
    write_config(&env, &url, &fake_sha(), "");
    apply_conflicts(
        &env,
        &format!(
            "downloading {url}: the server announces 17179869185 bytes, more than downloads.max_size (16 GiB); nothing was downloaded"
        ),
    );
    stored_nothing_after_one_get(&env, &server);
    // A configured cap, and a partial download left by an earlier run is deleted too.
    let url = server.add_claim("big.img.xz", (1 << 20) + 1, 1 << 20);
    write_config(&env, &url, &fake_sha(), "max_size: 1 MiB");
    let images = env.path("/var/lib/pinetboot/images");
    std::fs::write(images.join(format!("{}.download", fake_sha())), b"old").unwrap();
    server.clear();
    apply_conflicts(
        &env,
        "the server announces 1048577 bytes, more than downloads.max_size (1 MiB)",
    );
    // The 3 bytes were offered for resuming; the server ignored the Range.
    let get = stored_nothing_after_one_get(&env, &server);
    assert_eq!(get.range.as_deref(), Some("bytes=3-"));
}

#[test]
fn an_endless_body_is_stopped_at_max_size_and_deleted() {
    let env = Env::new();
    let server = HttpServer::start();
    // No Content-Length, zeros without end (the server gives up at 1 GiB).
    let url = server.add_endless("endless.img.xz", 1 << 30);
    write_config(&env, &url, &fake_sha(), "max_size: 4 MiB");
    apply_conflicts(
        &env,
        "the body grew past downloads.max_size (4 MiB) and was stopped; the partial download was deleted",
    );
    // The client hung up: the server sent about the cap (plus what socket buffers hold), far
    // from the gigabyte it would have sent.
    let get = stored_nothing_after_one_get(&env, &server);
    assert!(get.sent < 256 << 20, "{get:?}");
}

#[test]
fn a_trickling_server_is_abandoned_the_lock_released_and_the_download_resumed() {
    let env = Env::new();
    let server = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("image.img.xz");
    let content: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&content))
    };
    // Ten bytes a second, for a limit of 1 KiB/s over 1 s.
    let url = server.add_trickle("slow.img.xz", file.clone(), Duration::from_millis(100));
    write_config(
        &env,
        &url,
        &sha,
        "low_speed_limit: 1 KiB, low_speed_time: 1",
    );
    let r = apply_conflicts(&env, "slower than 1 KiB/s");
    assert!(
        r.stderr.contains("the partial download") && r.stderr.contains("is kept"),
        "{}",
        r.stderr
    );
    // Every attempt resumed where the last stopped.
    let gets = server.settled_gets();
    assert_eq!(gets.len(), 5, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert!(gets[1..].iter().all(|g| g.range.is_some()), "{gets:?}");
    let partial = env
        .path("/var/lib/pinetboot/images")
        .join(format!("{sha}.download"));
    let kept = std::fs::read(&partial).expect("the partial download is kept");
    assert!(!kept.is_empty() && content.starts_with(&kept));

    // The lock was released: the next apply runs (it does not wait: --no-wait would fail on
    // a held lock), resumes from the partial file and finishes the download. The file is no
    // disk image, so the unpack fails after the digest matched; the download is kept.
    server.clear();
    let url = server.add("slow.img.xz", file);
    let r = pt(&env, &["apply", "--no-wait"]);
    r.expect_code(1);
    assert_lacks(&r.stderr, "lock");
    assert!(
        !r.stderr.contains(&format!("downloading {url}:"))
            && r.stderr.contains("unknown image format"),
        "{}",
        r.stderr
    );
    assert_eq!(store_files(&env), vec![format!("{sha}.image")]);
    let gets = server.settled_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range, Some(format!("bytes={}-", kept.len())));
    assert_eq!(gets[0].sent, (content.len() - kept.len()) as u64);
}

#[test]
fn a_silent_server_ends_each_attempt_after_low_speed_time() {
    let env = Env::new();
    let server = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.img.xz");
    std::fs::write(&file, vec![7u8; 4096]).unwrap();
    // One byte, then nothing for an hour.
    let url = server.add_trickle("silent.img.xz", file, Duration::from_secs(3600));
    write_config(&env, &url, &fake_sha(), "low_speed_time: 1");
    apply_conflicts(&env, "no data for 1 s (downloads.low_speed_time)");
}

#[test]
fn max_time_ends_a_download_that_never_finishes_and_keeps_it() {
    let env = Env::new();
    let server = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.img.xz");
    std::fs::write(&file, vec![7u8; 1 << 20]).unwrap();
    // Fast enough for any speed check (off here), too slow to finish in 2 s.
    let url = server.add_trickle("slow.img.xz", file, Duration::from_millis(10));
    write_config(&env, &url, &fake_sha(), "low_speed_limit: 0, max_time: 2");
    apply_conflicts(&env, "not finished after 2 s (downloads.max_time)");
    let partial = env
        .path("/var/lib/pinetboot/images")
        .join(format!("{}.download", fake_sha()));
    assert!(
        std::fs::metadata(&partial).unwrap().len() > 0,
        "the partial download is kept for the next run"
    );
}

#[test]
fn bad_download_settings_are_located_config_errors() {
    let env = Env::new();
    for (downloads, needle) in [
        ("max_size: 16 GB", "unknown unit `GB`"),
        ("low_speed_time: 0", "downloads.low_speed_time"),
        ("max_size: -1", "a size cannot be negative"),
        ("max_sise: 1 GiB", "unknown field"),
    ] {
        write_config(&env, "http://127.0.0.1:9/x.img.xz", &fake_sha(), downloads);
        let r = pt(&env, &["validate"]);
        r.expect_code(1);
        assert!(
            r.stderr.contains(needle) && r.stderr.contains(":6:"),
            "{downloads}: {}",
            r.stderr
        );
    }
}
