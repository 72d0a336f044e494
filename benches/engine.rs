//! Bench: `plan` and a no-op `apply` for 1, 100 and 1000 clients on a temp root with small
//! fixture trees. Each size runs in a child process inside a private mount namespace (the
//! bind mounts are real), reporting wall time (median of runs) and the child's peak RSS.
//!
//! A second part plans and applies one client whose `etc/hosts` has many lines (an ad-blocking
//! hosts list: 150 000 by default), to keep the fenced-file handling linear.
//!
//! Run as root: `cargo bench --bench engine` (everything), `cargo bench --bench engine -- clients`
//! or `cargo bench --bench engine -- hosts [LINES…]` (one part).

// Tests and benches report on the terminal directly.
#![allow(clippy::print_stdout, clippy::print_stderr)]
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use pinetboot::config::Valid;
use pinetboot::engine;
use pinetboot::host::Host;

fn tree(dir: &Path) {
    for d in [
        "etc/systemd/system",
        "boot/firmware",
        "lib/systemd/system",
        "root",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let files = [
        ("etc/os-release", "VERSION_CODENAME=bookworm\n"),
        (
            "etc/fstab",
            "proc /proc proc defaults 0 0\nPARTUUID=1-01 /boot/firmware vfat defaults 0 2\nPARTUUID=1-02 / ext4 defaults 0 1\n",
        ),
        ("etc/hostname", "raspberrypi\n"),
        ("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 raspberrypi\n"),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        (
            "boot/firmware/cmdline.txt",
            "console=serial0,115200 console=tty1 root=PARTUUID=1-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n",
        ),
        ("boot/firmware/config.txt", "arm_64bit=1\n"),
    ];
    for (p, c) in files {
        std::fs::write(dir.join(p), c).unwrap();
    }
}

fn config(n: usize) -> String {
    let mut y = String::from(
        "server: {address: 10.0.0.1, network: 10.0.0.0/16}\nimages: {lite: {source: /srv/lite}}\n\
         defaults: {image: lite, ssh: {authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBench bench']}}\nclients:\n",
    );
    for i in 0..n {
        y.push_str(&format!("  pi{i}: {{serial: {:08x}}}\n", 0x1000_0000 + i));
    }
    y
}

/// A temp host root with the image tree and an fstab, and the config of `n` clients for it.
fn host_with_clients(n: usize) -> (tempfile::TempDir, Valid, Host) {
    let t = tempfile::tempdir().unwrap();
    tree(&t.path().join("srv/lite"));
    std::fs::create_dir_all(t.path().join("etc")).unwrap();
    std::fs::write(t.path().join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
    let valid = pinetboot::config::load_str(Path::new("bench.yaml"), &config(n)).unwrap();
    let host = Host::new(t.path()).unwrap();
    (t, valid, host)
}

/// Median milliseconds of a converged plan and of a no-op apply, over `runs` runs each.
fn converged_medians(valid: &Valid, host: &Host, runs: usize) -> (f64, f64) {
    let mut plans = Vec::new();
    let mut noops = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        let (_, _, plan) = engine::observe_and_plan(valid, host).unwrap();
        plans.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(plan.is_empty());
        let s = Instant::now();
        let r = engine::apply(valid, host, |_| {}).unwrap();
        noops.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(r.applied.is_empty());
    }
    (med(&mut plans), med(&mut noops))
}

fn child(n: usize) {
    let (_t, valid, host) = host_with_clients(n);
    let first = Instant::now();
    engine::apply(&valid, &host, |_| {}).unwrap();
    let first = first.elapsed();
    let runs = if n >= 1000 { 5 } else { 15 };
    let (plan_ms, noop_ms) = converged_medians(&valid, &host, runs);
    println!(
        "| {n} | {plan_ms:.1} | {noop_ms:.1} | {:.0} | {:.1} |",
        first.as_secs_f64() * 1e3,
        peak_rss_mib()
    );
}

/// A hosts file of `n` lines as ad-blocking lists ship them, with the image's `127.0.1.1` line
/// near the top (pinetboot replaces it with its fenced line).
fn big_hosts(n: usize) -> Vec<u8> {
    let mut s = String::from("127.0.0.1 localhost\n127.0.1.1 raspberrypi\n::1 localhost\n");
    for i in 0..n.saturating_sub(3) {
        s.push_str(&format!("0.0.0.0 ad{i:06}.tracker.example.net\n"));
    }
    s.into_bytes()
}

/// One client whose `etc/hosts` has `lines` lines: plan with the hostname line pending, the
/// apply that fences it, then a converged plan and a no-op apply (medians).
fn child_hosts(lines: usize) {
    let (t, valid, host) = host_with_clients(1);
    engine::apply(&valid, &host, |_| {}).unwrap();
    std::fs::write(t.path().join("nfs/pi0/etc/hosts"), big_hosts(lines)).unwrap();
    let s = Instant::now();
    let (_, _, plan) = engine::observe_and_plan(&valid, &host).unwrap();
    let pending = s.elapsed();
    assert_eq!(plan.changes.len(), 1, "only etc/hosts is pending");
    let s = Instant::now();
    let r = engine::apply(&valid, &host, |_| {}).unwrap();
    let fenced = s.elapsed();
    assert_eq!(r.applied.len(), 1);
    let (plan_ms, noop_ms) = converged_medians(&valid, &host, 5);
    println!(
        "| {lines} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
        pending.as_secs_f64() * 1e3,
        fenced.as_secs_f64() * 1e3,
        plan_ms,
        noop_ms,
        peak_rss_mib()
    );
}

fn med(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident set size of this process, from the kernel.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    hwm_kib / 1024.0
}

/// Runs this bench again as `ARGS` inside a private mount namespace (the bind mounts are real).
fn in_namespace(args: &[&str]) {
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(args)
        .status()
        .expect("unshare (util-linux) runs the bench in a private mount namespace; needs root");
    assert!(status.success(), "bench child {args:?} failed");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--child") => return child(args[1].parse().unwrap()),
        Some("--child-hosts") => return child_hosts(args[1].parse().unwrap()),
        _ => {}
    }
    let part = args.first().map(String::as_str);
    if matches!(part, None | Some("clients")) {
        println!(
            "| clients | plan (ms, median) | no-op apply (ms, median) | first apply (ms) | peak RSS (MiB) |"
        );
        println!("|---|---|---|---|---|");
        for n in [1, 100, 1000] {
            in_namespace(&["--child", &n.to_string()]);
        }
    }
    if matches!(part, None | Some("hosts")) {
        let sizes: Vec<String> = match args.get(1..) {
            Some(s) if !s.is_empty() => s.to_vec(),
            _ => vec!["150000".to_owned()],
        };
        println!(
            "| etc/hosts lines | plan, line pending (ms) | apply fencing it (ms) | plan (ms, median) | no-op apply (ms, median) | peak RSS (MiB) |"
        );
        println!("|---|---|---|---|---|---|");
        for n in sizes {
            in_namespace(&["--child-hosts", &n]);
        }
    }
}
