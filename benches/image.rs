//! Bench: a Raspberry Pi OS-sized `.img.xz` (1.5 GiB raw disk, multi-block xz) turned into
//! client roots, against the manual pipeline, all in one run on this machine:
//!
//! - decode limit: `xz -T0 -dc IMG.xz > /dev/null`
//! - pinetboot: `apply` with one client (fetch from a local file, verify, unpack into the
//!   store, clone the first client root, edit its files), wall time and peak RSS (VmHWM)
//! - manual: `xz -T0 -dc > disk.img`, loop-mount the ext4 partition by offset, `cp -a`, `mcopy`
//!   for the FAT side
//! - second client from the store: pinetboot `apply` versus `cp -a` of the store tree
//! - the same on btrfs (made in a file, loop-mounted): the second client is reflinked
//!
//! The image is built once (mke2fs -d, mkfs.vfat + mcopy, `xz -T2 --block-size=64MiB`) and
//! kept in `$PINETBOOT_BENCH_DIR` (default `/var/tmp/pinetboot-bench-image`). Runs as root in
//! a private mount namespace: `cargo bench --bench image`. Page cache is warm for every
//! contender (the image file is read once before timing).

// Tests and benches report on the terminal directly.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#[path = "../tests/it/support/disk.rs"]
mod disk_image;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const P1_START: u64 = 8192; // sectors
const P1_SECTORS: u64 = 512 * 1024; // 256 MiB FAT32
const P2_START: u64 = P1_START + P1_SECTORS;
const IMAGE_BYTES: u64 = 1536 * MIB;
const DISK_ID: &str = "5e3da3da";

fn sh(script: &str) {
    let st = Command::new("sh")
        .args(["-ec", script])
        .status()
        .expect("sh");
    assert!(st.success(), "failed: {script}");
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn fill_text(&mut self, buf: &mut [u8]) {
        const WORDS: [&str; 24] = [
            "the ",
            "kernel ",
            "module ",
            "config ",
            "package ",
            "debian ",
            "raspberry ",
            "library ",
            "shared ",
            "object ",
            "symbol ",
            "version ",
            "GLIBC_2.34 ",
            "usr ",
            "lib ",
            "aarch64 ",
            "linux ",
            "gnu ",
            "copyright ",
            "license ",
            "free ",
            "software ",
            "\n",
            "0x7f3a ",
        ];
        let mut i = 0;
        while i < buf.len() {
            let w = WORDS[(self.next() % WORDS.len() as u64) as usize].as_bytes();
            let n = w.len().min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
    }
}

/// Root tree: 8 × 64 MiB "binaries" (40 % random 64 KiB chunks, 60 % text), 20 000 small text
/// files in 400 folders, a setuid file, symlinks, a hardlink; etc/fstab and os-release.
fn build_rootfs(dir: &Path) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    fs::create_dir_all(dir.join("usr/lib/big")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("boot/firmware")).unwrap();
    fs::create_dir_all(dir.join("usr/bin")).unwrap();
    let mut chunk = vec![0u8; 64 << 10];
    for i in 0..8 {
        let mut f = fs::File::create(dir.join(format!("usr/lib/big/blob-{i}.so"))).unwrap();
        for _ in 0..1024 {
            if rng.next() % 10 < 4 {
                rng.fill_random(&mut chunk);
            } else {
                rng.fill_text(&mut chunk);
            }
            f.write_all(&chunk).unwrap();
        }
    }
    for d in 0..400 {
        let p = dir.join(format!("usr/share/doc/pkg-{d:03}"));
        fs::create_dir_all(&p).unwrap();
        for k in 0..50 {
            let len = 1024 + (rng.next() % (15 * 1024)) as usize;
            let mut b = vec![0u8; len];
            rng.fill_text(&mut b);
            fs::write(p.join(format!("file-{k:02}.txt")), b).unwrap();
        }
    }
    fs::write(
        dir.join("etc/fstab"),
        format!(
            "proc /proc proc defaults 0 0\nPARTUUID={DISK_ID}-01 /boot/firmware vfat defaults 0 2\nPARTUUID={DISK_ID}-02 / ext4 defaults,noatime 0 1\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    )
    .unwrap();
    fs::write(dir.join("etc/hostname"), "raspberrypi\n").unwrap();
    fs::write(
        dir.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.1.1 raspberrypi\n",
    )
    .unwrap();
    fs::write(dir.join("usr/bin/sudo"), b"sudo").unwrap();
    sh(&format!(
        "chmod 4755 {0}/usr/bin/sudo && ln -s usr/bin {0}/bin && ln {0}/usr/bin/sudo {0}/usr/bin/sudo.hard",
        dir.display()
    ));
}

fn build_bootfs(dir: &Path) {
    let mut rng = Rng(42);
    fs::create_dir_all(dir.join("overlays")).unwrap();
    let mut k = vec![0u8; 24 << 20];
    rng.fill_random(&mut k[..12 << 20]);
    rng.fill_text(&mut k[12 << 20..]);
    fs::write(dir.join("kernel8.img"), k).unwrap();
    for i in 0..200 {
        let mut b = vec![0u8; 4096];
        rng.fill_text(&mut b);
        fs::write(dir.join(format!("overlays/ov-{i:03}.dtbo")), b).unwrap();
    }
    fs::write(dir.join("config.txt"), "arm_64bit=1\n").unwrap();
    fs::write(
        dir.join("cmdline.txt"),
        format!("console=serial0,115200 console=tty1 root=PARTUUID={DISK_ID}-02 rootfstype=ext4 fsck.repair=yes rootwait\n"),
    )
    .unwrap();
}

/// The `.img.xz` (built once) and its sha256.
fn image(work: &Path) -> (PathBuf, String) {
    let xz = work.join("bench.img.xz");
    let sha_file = work.join("bench.img.xz.sha256");
    if xz.is_file() && sha_file.is_file() {
        return (xz, fs::read_to_string(sha_file).unwrap().trim().to_owned());
    }
    eprintln!(
        "building the 1.5 GiB bench image (once) in {}…",
        work.display()
    );
    let build = work.join("build");
    let _ = fs::remove_dir_all(&build);
    fs::create_dir_all(&build).unwrap();
    build_rootfs(&build.join("rootfs"));
    build_bootfs(&build.join("bootfs"));
    let disk = build.join("disk.img");
    disk_image::build(&disk_image::Disk {
        path: &disk,
        bytes: IMAGE_BYTES,
        disk_id: DISK_ID,
        p1_start: P1_START,
        p1_sectors: P1_SECTORS,
        fat16: false,
        bootfs: &build.join("bootfs"),
        rootfs: &build.join("rootfs"),
        mke2fs: &[],
    });
    let d = disk.display();
    sh(&format!(
        "xz -T2 --block-size=64MiB -c {d} > {x}.tmp && mv {x}.tmp {x}",
        x = xz.display()
    ));
    let out = Command::new("sha256sum").arg(&xz).output().unwrap();
    let sha = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    fs::write(&sha_file, &sha).unwrap();
    fs::remove_dir_all(&build).unwrap();
    (xz, sha)
}

/// Runs a command, returning wall time and peak RSS (VmHWM, polled from /proc).
fn measure(cmd: &mut Command) -> (Duration, u64, String) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut hwm_kib = 0u64;
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    loop {
        if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(v) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            hwm_kib = hwm_kib.max(v);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let elapsed = start.elapsed();
    let out = out_t.join().unwrap();
    let err = err_t.join().unwrap();
    assert!(status.success(), "{cmd:?} failed:\n{out}\n{err}");
    (elapsed, hwm_kib / 1024, format!("{out}{err}"))
}

fn timed(script: &str) -> Duration {
    let start = Instant::now();
    sh(script);
    start.elapsed()
}

fn write_config(path: &Path, sha: &str, clients: usize) {
    let mut y = format!(
        "server: {{address: 10.0.0.1, network: 10.0.0.0/16}}\nimages:\n  bench:\n    source: /srv/bench.img.xz\n    sha256: {sha}\nclients:\n"
    );
    for i in 1..=clients {
        y.push_str(&format!(
            "  pi{i}: {{serial: {:08x}, image: bench}}\n",
            0x1000_0000 + i
        ));
    }
    fs::write(path, y).unwrap();
}

/// A throwaway host root under `base` with the image at /srv/bench.img.xz (hardlinked).
fn host_root(base: &Path, xz: &Path) -> PathBuf {
    let root = base.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("srv")).unwrap();
    fs::write(root.join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
    if fs::hard_link(xz, root.join("srv/bench.img.xz")).is_err() {
        fs::copy(xz, root.join("srv/bench.img.xz")).unwrap();
    }
    root
}

fn apply(root: &Path, config: &Path) -> (Duration, u64, String) {
    measure(
        Command::new(env!("CARGO_BIN_EXE_pinetboot"))
            .arg("--root")
            .arg(root)
            .arg("--config")
            .arg(config)
            .arg("apply")
            .env("PINETBOOT_LOG", "pinetboot=info")
            .env("PINETBOOT_PROGRESS", "0")
            .env("NO_COLOR", "1"),
    )
}

/// Unmounts everything mounted at or below `dir` (the clients' bind mounts), deepest first.
fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg(&p).status();
    }
}

/// The line of an apply's log that tells how the second client's root was made, trimmed.
fn second_client_note(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("client root /nfs/pi2"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The unpacked tree of image `sha` in the store below `root`.
fn store_tree(root: &Path, sha: &str) -> PathBuf {
    root.join(format!("var/lib/pinetboot/images/{sha}/root"))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Rounds of the three first-root contenders; each reports its best round.
const ROUNDS: usize = 2;

fn child(work: &Path) {
    let (xz, sha) = image(work);
    let xz_len = fs::metadata(&xz).unwrap().len();
    let run = work.join("run");
    let _ = fs::remove_dir_all(&run);
    fs::create_dir_all(&run).unwrap();
    // Warm the page cache for everyone.
    sh(&format!("cat {} > /dev/null", xz.display()));
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // The first-root contenders, interleaved over rounds, each on fresh folders. Nothing is
    // deleted until the end (ext4 without a journal makes inode allocation right after a
    // large delete slower, which would tax whoever runs next), and every step starts after
    // `sync`, so no one pays for the previous step's writeback.
    let mut decode = Duration::MAX;
    let mut first = Duration::MAX;
    let mut manual = Duration::MAX;
    let (mut rss, mut unpack_s) = (0, String::new());
    let mut ext = PathBuf::new();
    for round in 0..ROUNDS {
        sh("sync");
        decode = decode.min(timed(&format!("xz -T0 -dc {} > /dev/null", xz.display())));

        ext = run.join(format!("ext4-{round}"));
        let root = host_root(&ext, &xz);
        let config = ext.join("pinetboot.yaml");
        write_config(&config, &sha, 1);
        sh("sync");
        let (t, r, log) = apply(&root, &config);
        if t < first {
            first = t;
            rss = r;
            unpack_s = log
                .lines()
                .find(|l| l.contains("image unpacked into the store"))
                .and_then(|l| l.split("seconds=").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("?")
                .to_owned();
        }

        let man = run.join(format!("manual-{round}"));
        fs::create_dir_all(man.join("mnt")).unwrap();
        fs::create_dir_all(man.join("dest")).unwrap();
        sh("sync");
        manual = manual.min(timed(&format!(
            "cd {m} && xz -T0 -dc {x} > disk.img && mount -o loop,ro,offset={off} disk.img mnt && cp -a mnt/. dest/ && umount mnt && MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i disk.img@@{foff} ::/ dest/boot/firmware/",
            m = man.display(),
            x = xz.display(),
            off = P2_START * 512,
            foff = P1_START * 512
        )));
    }
    rows.push((
        "decode limit: `xz -T0 -dc > /dev/null`".into(),
        secs(decode),
        format!("best of {ROUNDS}"),
    ));
    rows.push((
        "pinetboot apply: image → store → first client root".into(),
        secs(first),
        format!("best of {ROUNDS}; {rss} MiB peak RSS; unpack into the store {unpack_s} s"),
    ));
    rows.push((
        "manual: `xz -dc`, loop mount by offset, `cp -a`, `mcopy`".into(),
        secs(manual),
        format!("best of {ROUNDS}"),
    ));
    let root = ext.join("root");
    let config = ext.join("pinetboot.yaml");

    // Second client from the store.
    write_config(&config, &sha, 2);
    sh("sync");
    let (second, rss2, log2) = apply(&root, &config);
    let note = second_client_note(&log2);
    rows.push((
        "pinetboot apply: second client from the store (ext4)".into(),
        secs(second),
        format!("{rss2} MiB peak RSS; `{note}`"),
    ));
    let store_root = store_tree(&root, &sha);
    sh("sync");
    let cpa = timed(&format!(
        "cp -a {} {}",
        store_root.display(),
        run.join("cp-a-copy").display()
    ));
    rows.push((
        "`cp -a` of the store tree (ext4)".into(),
        secs(cpa),
        "".into(),
    ));
    unmount_under(&run);

    // btrfs: reflinks.
    let bt = run.join("btrfs");
    fs::create_dir_all(&bt).unwrap();
    let fsimg = run.join("btrfs.img");
    fs::File::create(&fsimg).unwrap().set_len(6 << 30).unwrap();
    sh(&format!(
        "mkfs.btrfs -q -f {i} && mount -o loop {i} {b}",
        i = fsimg.display(),
        b = bt.display()
    ));
    let root = host_root(&bt, &xz);
    let config = bt.join("pinetboot.yaml");
    write_config(&config, &sha, 1);
    let (b1, _, _) = apply(&root, &config);
    rows.push((
        "pinetboot apply: image → first client root (btrfs)".into(),
        secs(b1),
        "".into(),
    ));
    write_config(&config, &sha, 2);
    let (b2, _, log) = apply(&root, &config);
    let note = second_client_note(&log);
    rows.push((
        "pinetboot apply: second client from the store (btrfs, reflinks)".into(),
        secs(b2),
        format!("`{note}`"),
    ));
    let store_root = store_tree(&root, &sha);
    let cpr = timed(&format!(
        "cp -a --reflink=always {} {}",
        store_root.display(),
        bt.join("cp-copy").display()
    ));
    rows.push((
        "`cp -a --reflink=always` of the store tree (btrfs)".into(),
        secs(cpr),
        "".into(),
    ));
    unmount_under(&bt);
    let _ = fs::remove_file(&fsimg);
    let _ = fs::remove_dir_all(&run);

    println!(
        "image: {} raw, {} xz (multi-block), sha256 {}…",
        IMAGE_BYTES / MIB,
        xz_len / MIB,
        &sha[..12]
    );
    println!("| step | wall time | notes |");
    println!("|---|---|---|");
    for (a, b, c) in &rows {
        println!("| {a} | {b} | {c} |");
    }
    println!(
        "\npinetboot / decode limit: {:.2}×; manual / pinetboot: {:.2}×",
        first.as_secs_f64() / decode.as_secs_f64(),
        manual.as_secs_f64() / first.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let work = PathBuf::from(
        std::env::var("PINETBOOT_BENCH_DIR")
            .unwrap_or_else(|_| "/var/tmp/pinetboot-bench-image".into()),
    );
    if args.iter().any(|a| a == "--child") {
        child(&work);
        return;
    }
    fs::create_dir_all(&work).unwrap();
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(&exe)
        .arg("--child")
        .status()
        .expect("unshare (util-linux) runs the bench in a private mount namespace; needs root");
    assert!(status.success(), "bench child failed");
}
