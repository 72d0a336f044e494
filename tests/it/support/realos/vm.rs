//! An aarch64 VM (`qemu-system-aarch64 -M virt -cpu cortex-a72`, TCG) driven over its serial
//! console, with its NIC on a bridge inside a network namespace.
//!
//! [`Vm::start`] creates a tap device in the namespace holding the bridge
//! (`ip -n NS tuntap add dev TAP mode tap`, enslaved to the bridge, up), then starts
//! `ip netns exec NS qemu-system-aarch64 … -netdev tap,ifname=TAP` (`ip netns exec` execs
//! qemu in place, so the PID held is qemu's). The serial console is qemu's stdio: a thread
//! copies stdout into a shared buffer (carriage returns dropped) and into a log file;
//! [`Vm::send_line`] writes to stdin. [`Vm::wait_for`] waits, bounded, for text after a
//! cursor and panics with the last 100 console lines on timeout or when qemu exits.
//! [`Drop`] kills exactly qemu's PID (when still running), reaps it and deletes the tap.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{must, run_cmd, tail};

/// How many console lines a failure message shows.
const TAIL_LINES: usize = 100;

/// What to boot and where to plug it in.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Network namespace holding the bridge; qemu and the tap live there.
    pub netns: String,
    /// The bridge in `netns` the tap is enslaved to.
    pub bridge: String,
    /// Name of the tap device to create (at most 15 bytes).
    pub tap: String,
    /// MAC address of the VM's NIC.
    pub mac: [u8; 6],
    /// The kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`), if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (`-append`).
    pub append: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub smp: u32,
    /// Where the console is copied to (and qemu's stderr beside it, `.stderr`).
    pub log: PathBuf,
}

/// The console text (carriage returns removed) and whether qemu's stdout has closed.
#[derive(Default)]
struct ConsoleState {
    text: String,
    closed: bool,
}

/// Shared between the reader thread and the [`Vm`].
#[derive(Default)]
struct Console {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

/// A running VM; see the module docs.
pub struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<Console>,
    reader: Option<JoinHandle<()>>,
    /// Byte offset in the console text up to which output has been consumed by waits.
    cursor: usize,
    marker: u32,
    netns: String,
    tap: String,
    stderr_log: PathBuf,
    started: Instant,
}

/// `dc:a6:32:01:02:03` form.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Creates `tap` in `netns`, enslaved to `bridge`, up.
fn add_tap(netns: &str, tap: &str, bridge: &str) {
    must(
        "ip",
        &["-n", netns, "tuntap", "add", "dev", tap, "mode", "tap"],
    );
    must(
        "ip",
        &["-n", netns, "link", "set", tap, "master", bridge, "up"],
    );
}

/// The qemu command line for `spec` (run through `ip netns exec`).
fn qemu_command(spec: &VmSpec) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &spec.netns, "qemu-system-aarch64"])
        .args(["-M", "virt", "-cpu", "cortex-a72"])
        .args(["-m", &spec.memory_mib.to_string()])
        .args(["-smp", &spec.smp.to_string()])
        // The serial console on stdio, no monitor multiplexed into it.
        .args(["-nographic", "-monitor", "none", "-serial", "stdio"])
        // A guest reboot or panic ends qemu instead of looping.
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&spec.kernel)
        .args(["-append", &spec.append])
        .args([
            "-netdev",
            &format!("tap,id=net0,ifname={},script=no,downscript=no", spec.tap),
            "-device",
            &format!("virtio-net-pci,netdev=net0,mac={}", mac_string(&spec.mac)),
        ]);
    if let Some(initrd) = &spec.initrd {
        cmd.arg("-initrd").arg(initrd);
    }
    cmd
}

/// Copies qemu's stdout into `console` (and `log`) until EOF.
fn spawn_reader(
    mut out: impl Read + Send + 'static,
    console: Arc<Console>,
    mut log: File,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("vm-console".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let _ = log.write_all(&buf[..n]);
                let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                let mut st = console.state.lock().unwrap_or_else(|e| e.into_inner());
                st.text.push_str(&chunk);
                console.changed.notify_all();
            }
            let mut st = console.state.lock().unwrap_or_else(|e| e.into_inner());
            st.closed = true;
            console.changed.notify_all();
        })
        .expect("spawn the console reader")
}

impl Vm {
    /// Creates the tap and starts qemu; panics (with the reason) when either fails.
    pub fn start(spec: &VmSpec) -> Vm {
        add_tap(&spec.netns, &spec.tap, &spec.bridge);
        let stderr_log = spec.log.with_extension("stderr");
        let mut cmd = qemu_command(spec);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).expect("create the qemu stderr file"));
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = run_cmd("ip", &["-n", &spec.netns, "link", "del", &spec.tap]);
                panic!("cannot start qemu-system-aarch64 (apt-get install qemu-system-arm): {e}");
            }
        };
        let console = Arc::new(Console::default());
        let log = File::create(&spec.log).expect("create the console log");
        let reader = spawn_reader(child.stdout.take().unwrap(), console.clone(), log);
        Vm {
            stdin: child.stdin.take(),
            child,
            console,
            reader: Some(reader),
            cursor: 0,
            marker: 0,
            netns: spec.netns.clone(),
            tap: spec.tap.clone(),
            stderr_log,
            started: Instant::now(),
        }
    }

    /// qemu's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since qemu was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The whole console output so far (carriage returns removed).
    pub fn console(&self) -> String {
        self.console.state.lock().unwrap().text.clone()
    }

    /// The last 100 console lines and qemu's stderr, for failure messages.
    pub fn tail(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        format!(
            "--- last {TAIL_LINES} console lines ---\n{}\n--- qemu stderr ---\n{}",
            tail(&self.console(), TAIL_LINES),
            stderr.trim()
        )
    }

    /// Waits until the console shows `needle` after the cursor; returns the text from the
    /// cursor up to and including it and moves the cursor past it. `Err` (with the last
    /// console lines) after `timeout`, or at once when qemu's console closes.
    pub fn try_wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.try_wait_for_any(&[needle], timeout)
            .map(|(_, text)| text)
    }

    /// Like [`Vm::try_wait_for`] for the first of several needles to appear; also returns
    /// which one it was.
    pub fn try_wait_for_any(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String), String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.console.state.lock().unwrap();
        loop {
            let rest = &st.text[self.cursor..];
            let found = needles
                .iter()
                .enumerate()
                .filter_map(|(i, n)| rest.find(n).map(|at| (at, i, at + n.len())))
                .min();
            if let Some((_, i, end)) = found {
                let text = rest[..end].to_string();
                self.cursor += end;
                return Ok((i, text));
            }
            let now = Instant::now();
            if st.closed || now >= deadline {
                let why = if st.closed {
                    "the console closed (qemu exited)"
                } else {
                    "timed out"
                };
                drop(st);
                return Err(format!(
                    "{why} after {timeout:?} waiting for {needles:?} ({:.1?} since qemu started)\n{}",
                    self.elapsed(),
                    self.tail()
                ));
            }
            st = self
                .console
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// [`Vm::try_wait_for`], panicking with the reason and the last console lines.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for(needle, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Types `line` and Enter on the serial console.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("qemu's stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to the VM console: {e}"));
    }

    /// Logs in as root (empty password) at the `login:` prompt the console shows next, and
    /// quietens the console: kernel messages off (`dmesg -n 1`), a wide terminal.
    #[track_caller]
    pub fn login_root(&mut self, timeout: Duration) {
        self.wait_for("login: ", timeout);
        self.send_line("root");
        match self.try_wait_for_any(&["# ", "Password:", "Login incorrect"], timeout) {
            Ok((0, _)) => {}
            Ok((_, text)) => panic!("root login refused:\n{text}\n{}", self.tail()),
            Err(e) => panic!("root login: {e}"),
        }
        let (_, code) = self.run("dmesg -n 1; stty cols 400", timeout);
        assert_eq!(code, 0, "console setup failed\n{}", self.tail());
    }

    /// Runs `cmd` in the logged-in shell and returns its output (stdout and stderr, as the
    /// terminal shows them) and exit code. The output is delimited by markers that the
    /// echoed command line itself cannot contain.
    #[track_caller]
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> (String, i32) {
        self.marker += 1;
        let m = format!("PNB{}x{}", self.pid(), self.marker);
        self.send_line(&format!(
            "printf '%s_%s\\n' {m} BEGIN; {cmd}; printf '%s_%s_%s\\n' {m} END $?"
        ));
        self.wait_for(&format!("{m}_BEGIN\n"), timeout);
        let text = self.wait_for(&format!("{m}_END_"), timeout);
        let code_line = self.wait_for("\n", timeout);
        let output = text.strip_suffix(&format!("{m}_END_")).unwrap_or(&text);
        let code = code_line.trim().parse().unwrap_or_else(|_| {
            panic!("bad exit code {code_line:?} after `{cmd}`\n{}", self.tail())
        });
        (output.to_string(), code)
    }

    /// [`Vm::run`], panicking with the output when the exit code is not 0.
    #[track_caller]
    pub fn run_ok(&mut self, cmd: &str, timeout: Duration) -> String {
        let (out, code) = self.run(cmd, timeout);
        assert_eq!(code, 0, "`{cmd}` exited {code}:\n{out}");
        out
    }

    /// Waits (bounded) for qemu to exit by itself; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            // Child::kill signals exactly this PID (SIGKILL).
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if let Err(e) = run_cmd("ip", &["-n", &self.netns, "link", "del", &self.tap]) {
            eprintln!("vm cleanup: {e}");
        }
    }
}
