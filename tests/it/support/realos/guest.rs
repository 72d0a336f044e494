//! The guest side of the real-kernel boot tests (`real_boot`, `shared_boot`): their tools,
//! the emulated Pi's link, and what is asked of a booted guest over its serial console.

use std::time::{Duration, Instant};

use super::must;
use super::vm::Vm;
use crate::support::pi4::EmulatedPi;
use crate::support::tools::{require_root, require_tool};

/// One shell command on the guest.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// `systemctl is-system-running --wait` after the login prompt.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// From `systemctl poweroff` to qemu's exit.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(180);

/// Fails loudly when root or a tool of the real-kernel boot tests is missing.
pub fn preflight() {
    require_root("network and mount namespaces, tap devices, an NFS server, the fixture build");
    for (tool, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("dnsmasq", "dnsmasq"),
        ("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs"),
        ("rpcbind", "rpcbind"),
        ("rpcinfo", "rpcbind"),
        ("qemu-system-aarch64", "qemu-system-arm"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("timeout", "coreutils"),
        ("find", "findutils"),
    ] {
        require_tool(tool, package);
    }
    crate::support::realos::nfs::plugins_dir();
}
/// The emulated Pi shares the VM's MAC: it must be off the bridge while the VM runs.
pub fn set_pi_link(pi: &EmulatedPi, up: bool) {
    let state = if up { "up" } else { "down" };
    must("ip", &["-n", &pi.netns, "link", "set", &pi.iface, state]);
    if up {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !must("ip", &["-n", &pi.netns, "-o", "link", "show", &pi.iface]).contains("state UP")
        {
            assert!(Instant::now() < deadline, "pi0 did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
/// Waits for the boot to settle; returns `systemctl --failed` (empty when none), with the
/// failed units' status and journal.
pub fn failed_units(vm: &mut Vm) -> String {
    let timeout = SETTLE_TIMEOUT.as_secs();
    let (state, _) = vm.run(
        &format!("timeout {timeout} systemctl is-system-running --wait"),
        SETTLE_TIMEOUT + CMD_TIMEOUT,
    );
    let (failed, _) = vm.run(
        "systemctl --failed --no-legend --plain --no-pager",
        CMD_TIMEOUT,
    );
    if !failed.trim().is_empty() {
        let (status, _) = vm.run(
            "systemctl status --failed --no-pager -n 15 --full",
            CMD_TIMEOUT,
        );
        let units: Vec<&str> = failed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let (journal, _) = vm.run(
            &format!(
                "journalctl -b --no-pager -o short-monotonic -n 60 {}",
                units
                    .iter()
                    .map(|u| format!("-u {u}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            CMD_TIMEOUT,
        );
        eprintln!(
            "system state: {}\nsystemctl --failed:\n{failed}\n{status}\njournal:\n{journal}",
            state.trim()
        );
    }
    failed.trim().to_string()
}
/// `systemctl poweroff`, then waits for qemu to exit; returns how long it took.
pub fn power_off(vm: &mut Vm) -> Duration {
    let t = Instant::now();
    vm.send_line("systemctl poweroff");
    vm.wait_for("reboot: Power down", POWEROFF_TIMEOUT);
    let status = vm.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "qemu did not exit after the power-off\n{}",
        vm.tail()
    );
    t.elapsed()
}
/// The guest's IPv4 address on eth0.
pub fn guest_address(vm: &mut Vm) -> String {
    let out = vm.run_ok("ip -4 -o addr show dev eth0", CMD_TIMEOUT);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on the guest's eth0: {out}"))
        .to_string()
}
