//! Bench: `plan` and a no-op `apply` for 1, 100 and 1000 clients on a temp root with small
//! fixture trees. Each size runs in a child process inside a private mount namespace (the
//! bind mounts are real), reporting wall time (median of runs) and the child's peak RSS.
//!
//! Run as root: `cargo bench --bench engine`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

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

fn child(n: usize) {
    let t = tempfile::tempdir().unwrap();
    tree(&t.path().join("srv/lite"));
    std::fs::create_dir_all(t.path().join("etc")).unwrap();
    std::fs::write(t.path().join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
    let valid = pinetboot::config::load_str(Path::new("bench.yaml"), &config(n)).unwrap();
    let host = Host::new(t.path()).unwrap();
    let first = Instant::now();
    engine::apply(&valid, &host, |_| {}).unwrap();
    let first = first.elapsed();
    let runs = if n >= 1000 { 5 } else { 15 };
    let mut plans = Vec::new();
    let mut noops = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        let (_, _, plan) = engine::observe_and_plan(&valid, &host).unwrap();
        plans.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(plan.is_empty());
        let s = Instant::now();
        let r = engine::apply(&valid, &host, |_| {}).unwrap();
        noops.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(r.applied.is_empty());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Peak resident set size of this process, from the kernel.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    println!(
        "| {n} | {:.1} | {:.1} | {:.0} | {:.1} |",
        med(&mut plans),
        med(&mut noops),
        first.as_secs_f64() * 1e3,
        hwm_kib / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(args[pos + 1].parse().unwrap());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!(
        "| clients | plan (ms, median) | no-op apply (ms, median) | first apply (ms) | peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|");
    for n in [1, 100, 1000] {
        let status = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--"])
            .arg(&exe)
            .args(["--child", &n.to_string()])
            .status()
            .expect("unshare (util-linux) runs the bench in a private mount namespace; needs root");
        assert!(status.success(), "bench child for {n} clients failed");
    }
}
