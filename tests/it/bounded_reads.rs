//! Invariant 11 for files: every file pinetboot reads because the user named it or the host
//! holds it (`--config`, `eeprom show FILE`, `bootloader.image`, firmware overrides,
//! `state.json`, `/etc/fstab`, dnsmasq's log, a local image) is bounded by bytes read, and
//! anything but a regular file is refused by name without being opened.
//!
//! Each command runs the real binary under a harness that kills it after 30 s (a hang is a
//! failure with its own message, never a timed assertion) and caps its address space at 2 GiB
//! (an unbounded read fails in a second instead of eating the machine). Needs root for the
//! host-file cases (a throwaway root in a private mount namespace).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fixture::*;
use crate::support::run::Run;
use crate::support::text::assert_contains;
use crate::support::tools::*;

/// Seconds before the harness kills a command that hangs.
const HARNESS_SECS: u32 = 30;
/// The harness's address-space cap.
const HARNESS_AS_BYTES: u64 = 2 << 30;

/// `timeout` and `prlimit` in front of `program args…`.
fn harnessed(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.arg(HARNESS_SECS.to_string())
        .arg("prlimit")
        .arg(format!("--as={HARNESS_AS_BYTES}"))
        .arg("--")
        .arg(program)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PINETBOOT_CONFIG")
        .env_remove("PINETBOOT_LOG");
    c
}

/// Runs a harnessed command; fails loudly when the harness had to kill it.
#[track_caller]
fn finish(cmd: Command, what: String) -> Run {
    let r = Run::of(cmd, what).expect_finished(HARNESS_SECS);
    assert!(
        !r.aborted(),
        "{} aborted (out of memory under a {HARNESS_AS_BYTES}-byte address-space cap?)\n--- stderr\n{}",
        r.what,
        r.stderr
    );
    r
}

/// `pinetboot ARGS…` with no root or namespace (commands that only read files).
#[track_caller]
fn pt(args: &[&str]) -> Run {
    finish(
        harnessed(bin(), args),
        format!("pinetboot {}", args.join(" ")),
    )
}

/// `pinetboot --root R --config C ARGS…` inside the env's namespace, harnessed.
#[track_caller]
fn pt_env(env: &Env, args: &[&str]) -> Run {
    let root = env.root.to_string_lossy().into_owned();
    let config = env.config.to_string_lossy().into_owned();
    let mut full = vec!["--root", &root, "--config", &config];
    full.extend_from_slice(args);
    let pid = env.ns.pid().to_string();
    let mut inner = vec!["-t", &pid, "-m", "--", bin()];
    inner.extend_from_slice(&full);
    finish(
        harnessed("nsenter", &inner),
        format!("pinetboot {}", args.join(" ")),
    )
}

fn mkfifo(path: &Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Asserts that the output of `r` (stdout and stderr) holds every one of `needles`. A client's
/// file that cannot be read makes that client a conflict, which `plan` lists (its exit code is
/// not this test's business); other commands fail.
#[track_caller]
fn expect_message(r: &Run, needles: &[&str]) {
    let out = format!("{}{}", r.stdout, r.stderr);
    for n in needles {
        assert!(
            out.contains(n),
            "{} (exit {:?}): output lacks {n:?}\n--- stdout\n{}\n--- stderr\n{}",
            r.what,
            r.code(),
            r.stdout,
            r.stderr
        );
    }
}

/// Asserts a failed run whose stderr holds every one of `needles`.
#[track_caller]
fn expect_error(r: &Run, needles: &[&str]) {
    r.expect_code(1);
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "{}: stderr lacks {n:?}\n--- stderr\n{}",
            r.what,
            r.stderr
        );
    }
}

#[test]
fn config_dev_zero_is_refused_without_reading_it() {
    let r = pt(&["--config", "/dev/zero", "validate"]);
    expect_error(
        &r,
        &[
            "/dev/zero",
            "the config is a character device, not a regular file",
            "--config FILE",
            "nothing was changed",
        ],
    );
}

#[test]
fn config_dev_urandom_is_refused_without_reading_it() {
    let r = pt(&["--config", "/dev/urandom", "validate"]);
    expect_error(
        &r,
        &[
            "/dev/urandom",
            "the config is a character device, not a regular file",
        ],
    );
}

#[test]
fn config_fifo_without_a_writer_returns_at_once() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("pinetboot.yaml");
    mkfifo(&fifo);
    let r = pt(&["--config", fifo.to_str().unwrap(), "validate"]);
    expect_error(
        &r,
        &[
            fifo.to_str().unwrap(),
            "the config is a fifo (named pipe), not a regular file",
        ],
    );
    // The same through a symlink to it, and for a folder.
    let link = t.path().join("link.yaml");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let r = pt(&["--config", link.to_str().unwrap(), "plan"]);
    expect_error(
        &r,
        &["the config is a fifo (named pipe), not a regular file"],
    );
    let r = pt(&["--config", t.path().to_str().unwrap(), "validate"]);
    expect_error(&r, &["the config is a folder, not a regular file"]);
}

#[test]
fn config_over_one_mib_is_refused_by_bytes_read() {
    let t = tempfile::tempdir().unwrap();
    let big = t.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
    let r = pt(&["--config", big.to_str().unwrap(), "validate"]);
    expect_error(
        &r,
        &[
            "more than 1 MiB; pinetboot reads at most 1048576 bytes",
            "right file",
        ],
    );
    // Exactly 1 MiB is read (and then parsed: a comment only, so an empty config).
    std::fs::write(&big, vec![b'#'; 1 << 20]).unwrap();
    let r = pt(&["--config", big.to_str().unwrap(), "validate"]);
    expect_error(&r, &["the config is empty"]);
    // A /proc file says it is empty (st_size 0) and holds megabytes: the cap is on bytes read.
    assert_eq!(std::fs::metadata("/proc/kallsyms").unwrap().len(), 0);
    let r = pt(&["--config", "/proc/kallsyms", "validate"]);
    expect_error(&r, &["/proc/kallsyms", "more than 1 MiB"]);
}

#[test]
fn eeprom_show_refuses_devices_fifos_and_oversize_files() {
    let r = pt(&["eeprom", "show", "/dev/zero"]);
    expect_error(
        &r,
        &[
            "cannot read the bootloader image: /dev/zero is a character device, not a regular file",
            "pieeprom",
        ],
    );
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("pieeprom.bin");
    mkfifo(&fifo);
    let r = pt(&["eeprom", "show", fifo.to_str().unwrap()]);
    expect_error(&r, &["is a fifo (named pipe), not a regular file"]);
    let big = t.path().join("big.bin");
    std::fs::write(&big, vec![0xffu8; (2 << 20) + 1]).unwrap();
    let r = pt(&["eeprom", "show", big.to_str().unwrap()]);
    expect_error(&r, &["big.bin holds more than 2097152 bytes (2 MiB)"]);
    // Up to the cap the file is read, and the parser names its exact size.
    std::fs::write(&big, vec![0xffu8; 2 << 20]).unwrap();
    let r = pt(&["eeprom", "show", big.to_str().unwrap()]);
    r.expect_code(1);
    assert_contains(&r.stderr, "2097152");
}

/// A host root with one client and an image tree; `extra` is appended to the config.
fn host_env(files: &[(&str, &str)], extra: &str) -> Env {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    let mut cfg = Cfg::default().image("bookworm-lite").client(ClientCfg::new(
        "raspi1",
        "0c4c21e5",
        "bookworm-lite",
    ));
    cfg.images[0].2 = files
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    std::fs::write(&env.config, cfg.yaml() + extra).unwrap();
    env
}

/// Replaces whatever is at `host_path` under the root by a fifo with no writer.
fn plant_fifo(env: &Env, host_path: &str) -> PathBuf {
    let p = env.path(host_path);
    let _ = std::fs::remove_file(&p);
    mkfifo(&p);
    p
}

#[test]
fn host_files_that_are_fifos_or_devices_are_refused_by_name() {
    let env = host_env(
        &[("start4.elf", "/srv/firmware/start4.elf")],
        "bootloader: {image: /srv/firmware/pieeprom.bin}\n\
         defaults:\n  eeprom: {boot_order: [sd, network, restart]}\n",
    );
    // Regular files first: the plan works.
    std::fs::create_dir_all(env.path("/srv/firmware")).unwrap();
    std::fs::write(env.path("/srv/firmware/start4.elf"), b"newer firmware").unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/rpi-eeprom");
    std::fs::copy(
        fixtures.join("pieeprom-2026-05-17.bin"),
        env.path("/srv/firmware/pieeprom.bin"),
    )
    .unwrap();
    pt_env(&env, &["plan"]).expect_code(0);

    // Each host file in turn becomes a fifo with no writer (the plan would block on it
    // forever), then is put back.
    for (host_path, command) in [
        ("/srv/firmware/start4.elf", "plan"),
        ("/srv/firmware/pieeprom.bin", "plan"),
        ("/etc/fstab", "plan"),
        ("/var/lib/pinetboot/state.json", "plan"),
        ("/var/log/pinetboot/dnsmasq.log", "status"),
    ] {
        let saved = std::fs::read(env.path(host_path)).ok();
        let fifo = plant_fifo(&env, host_path);
        let r = pt_env(&env, &[command]);
        // The host's fstab is read through links inside the root, and named as the host
        // sees it; the others by their path under the root.
        let named = if host_path == "/etc/fstab" {
            host_path.to_owned()
        } else {
            fifo.display().to_string()
        };
        expect_message(
            &r,
            &[&format!(
                "{named} is a fifo (named pipe), not a regular file"
            )],
        );
        std::fs::remove_file(&fifo).unwrap();
        if let Some(bytes) = saved {
            std::fs::write(env.path(host_path), bytes).unwrap();
        }
    }

    // A device as the bootloader image is refused without being opened.
    std::fs::remove_file(env.path("/srv/firmware/pieeprom.bin")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", env.path("/srv/firmware/pieeprom.bin")).unwrap();
    let r = pt_env(&env, &["plan"]);
    expect_message(
        &r,
        &[&format!(
            "{} is a character device, not a regular file",
            env.path("/srv/firmware/pieeprom.bin").display()
        )],
    );
    // A bootloader image over 2 MiB is not read past the cap.
    std::fs::remove_file(env.path("/srv/firmware/pieeprom.bin")).unwrap();
    std::fs::write(env.path("/srv/firmware/pieeprom.bin"), vec![0u8; 3 << 20]).unwrap();
    let r = pt_env(&env, &["plan"]);
    expect_message(&r, &["holds more than 2097152 bytes (2 MiB)"]);
}

#[test]
fn a_local_image_that_is_a_fifo_is_a_conflict_not_a_hang() {
    let env = Env::new();
    let fifo = plant_fifo(&env, "/srv/images/bookworm.img.xz");
    let sha = "0123456789abcdef".repeat(4);
    std::fs::write(
        &env.config,
        format!(
            "server: {{address: {SERVER}, network: {NETWORK}}}\n\
             images:\n  bw: {{source: /srv/images/bookworm.img.xz, sha256: {sha}}}\n\
             clients:\n  raspi1: {{serial: 0c4c21e5, image: bw}}\n"
        ),
    )
    .unwrap();
    let r = pt_env(&env, &["apply"]);
    expect_error(
        &r,
        &[
            "client raspi1:",
            &format!(
                "{} is a fifo (named pipe), not a regular file",
                fifo.display()
            ),
        ],
    );
}

#[test]
fn status_reads_only_the_end_of_a_huge_log() {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    env.write_config(
        &Cfg::default().image("bookworm-lite").client(ClientCfg::new(
            "raspi1",
            "0c4c21e5",
            "bookworm-lite",
        )),
    );
    // 80 MiB of old lines (a sparse hole), then the line that matters.
    let log = env.path("/var/log/pinetboot/dnsmasq.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&log).unwrap();
    f.set_len(80 << 20).unwrap();
    drop(f);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(
        &mut f,
        b"\nMay 17 10:00:01 dnsmasq-tftp[812]: sent /tftpboot/0c4c21e5/start4.elf to 192.168.2.50\n",
    )
    .unwrap();
    drop(f);
    let r = pt_env(&env, &["status", "--json"]);
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["log"]["source"], "file", "{}", r.stdout);
    let note = v["log"]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("read the last 64 MiB of this 83886") && note.ends_with("-byte log"),
        "{}",
        r.stdout
    );
    assert_eq!(v["clients"][0]["seen"], true, "{}", r.stdout);
}
