//! `Lab`: a throw-away layer-2 segment built from network namespaces, for
//! testing the proxy-DHCP + TFTP service the way a Raspberry Pi 4 sees it.
//!
//! Topology (every name carries the test's pid and a per-process counter, so
//! parallel tests and parallel test binaries never collide):
//!
//! ```text
//!  netns pnb-<pid>-<n>-rtr        netns pnb-<pid>-<n>-srv      netns pnb-<pid>-<n>-pi<k>
//!  br0 10.99.0.1/24  <--veth-->   eth0 10.99.0.2/24            pi0 (MAC given, no address)
//!  "router" dnsmasq (DHCP pool)   caller's dnsmasq (proxy+TFTP)   EmulatedPi (see pi4.rs)
//!  vsrv, vpi<k> enslaved to br0
//! ```
//!
//! Every veth is created directly between two of these namespaces
//! (`ip -n A link add X type veth peer name Y netns B`): nothing ever appears
//! on the host's interfaces and no host address, route or file under /etc is
//! touched. The only host-visible state is the namespace handles in
//! `/run/netns` (that is how `ip netns` names namespaces) and the temp dir.
//!
//! Each dnsmasq runs as
//! `ip netns exec NS dnsmasq --keep-in-foreground --conf-file=F --pid-file=T
//! --log-facility=LOG --dhcp-leasefile=T` with `LC_ALL=C`. `ip netns exec`
//! execs dnsmasq in place, so the PID we hold *is* dnsmasq's. [`Drop`] sends
//! SIGTERM to exactly those PIDs (SIGKILL after a bounded wait), reaps them,
//! deletes the veths and the namespaces. It never signals anything by name.
//!
//! Requires root, `ip` (iproute2) and `dnsmasq` (Debian: `dnsmasq-base` is
//! enough); [`Lab::new`] panics with the reason when one is missing (tests
//! fail loudly, they never skip).
//!
//! # Server config shape tested (dnsmasq 2.90)
//!
//! Written by the test as a drop-in `DIR/pinetboot.conf`, checked with
//! `dnsmasq --test --conf-file=/dev/null --conf-dir=DIR,*.conf`, started via
//! [`Lab::start_server_dnsmasq`]`(DIR, &[])`:
//!
//! ```text
//! port=0
//! interface=eth0                      # SERVER_IFACE
//! bind-interfaces
//! dhcp-range=10.99.0.0,proxy
//! dhcp-host=dc:a6:32:01:02:03,set:pinetboot   # one per Pi, or instead:
//! dhcp-mac=set:pinetboot,dc:a6:32:*:*:*       # OUI scope
//! pxe-service=tag:pinetboot,0,"Raspberry Pi Boot"
//! enable-tftp
//! tftp-root=<Lab::dir()>/tftpboot     # every dir 0755, file 0644: dnsmasq serves as nobody
//! log-dhcp
//! ```
//!
//! The router gets `no-ping`: without it dnsmasq 2.90 pings an address
//! before offering it and its OFFER comes ~3 s after the DISCOVER, later
//! than a 2 s offer window.
//!
//! `NETLAB_KEEP=1` keeps the temp dir (configs, logs, leases) of each lab
//! and prints its path; the next run of any test deletes dirs of dead PIDs.

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pinetboot::doctor::{Runner as _, SystemRunner};

/// Router (bridge) address in the router namespace.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// Address of [`SERVER_IFACE`] in the server namespace.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// Prefix length of the lab subnet 10.99.0.0/24.
pub const PREFIX_LEN: u8 = 24;
/// Interface name of the server's veth end, inside the server namespace.
/// Use it for `interface=` in the server's dnsmasq config.
pub const SERVER_IFACE: &str = "eth0";
/// The config's `server:` line for the lab: its address, network and interface.
pub fn server_yaml() -> String {
    format!(
        "server: {{address: {SERVER_IP}, network: 10.99.0.0/{PREFIX_LEN}, interface: {SERVER_IFACE}}}\n"
    )
}

/// Writes a config at `path`: [`server_yaml`], then `rest` (images, clients, …).
pub fn write_config(path: &std::path::Path, rest: &str) {
    std::fs::write(path, format!("{}{rest}", server_yaml()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Interface name of every emulated Pi's veth end, inside its namespace.
pub const PI_IFACE: &str = "pi0";
/// First and last address of the router's DHCP pool.
pub const POOL: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(10, 99, 0, 100), Ipv4Addr::new(10, 99, 0, 200));

/// Upper bound for a dnsmasq to come up (poll interval 20 ms).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for a dnsmasq to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Run `f` on a fresh thread that first joins the network namespace `ns`
/// (`setns(fd, CLONE_NEWNET)` on `/run/netns/<ns>`), and return its result.
///
/// Sockets created inside `f` stay in that namespace for their whole life,
/// so `f` usually just creates and configures sockets and hands them back;
/// all further I/O can then happen on any thread. The calling thread's own
/// namespace is never changed.
pub fn in_netns<T, F>(ns: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            let fd = File::open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
            rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| io::Error::other(format!("setns({path}): {e}")))?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other(format!("thread in netns {ns} panicked")))?
}

/// Run a command to completion in the C locale; `Err` carries the command line, exit status
/// and stderr. The one such runner is `pinetboot doctor`'s, used here as it is.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    SystemRunner.run(program, args)
}

fn must(program: &str, args: &[&str]) -> String {
    run_cmd(program, args).unwrap_or_else(|e| panic!("netlab: {e}"))
}

/// One dnsmasq process started by the lab.
struct Daemon {
    child: Child,
    ns: String,
}

/// A dnsmasq started in the server namespace by [`Lab::start_server_dnsmasq`].
///
/// The process itself is owned (and stopped) by the [`Lab`]; this handle only
/// tells where its files are.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    /// PID of the dnsmasq process.
    pub pid: u32,
    /// Its `--log-facility` file (C locale, with `log-dhcp` if configured).
    pub log: PathBuf,
    /// Its stderr, captured to a file (startup errors land here).
    pub stderr: PathBuf,
}

impl ServerHandle {
    /// Poll the log until `pred` accepts its content, for at most `timeout`.
    /// Returns the content that satisfied `pred`, or `Err` with the last
    /// content seen.
    pub fn wait_for_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        poll_file(&self.log, timeout, pred)
    }
}

/// The namespace of one emulated Pi, made by [`Lab::add_pi`].
#[derive(Debug, Clone)]
pub struct PiNs {
    /// Network namespace name (for `ip -n`, `ip netns exec`, [`in_netns`]).
    pub netns: String,
    /// Interface in that namespace: always [`PI_IFACE`].
    pub iface: String,
    /// MAC address of `iface`.
    pub mac: [u8; 6],
}

/// The lab fixture. See the module docs for the topology.
pub struct Lab {
    /// `pnb-<pid>-<n>`: prefix of every namespace this lab creates.
    pub prefix: String,
    /// Router namespace name (`<prefix>-rtr`).
    pub rtr: String,
    /// Server namespace name (`<prefix>-srv`).
    pub srv: String,
    dir: tempfile::TempDir,
    daemons: Mutex<Vec<Daemon>>,
    /// Namespaces created, in creation order.
    namespaces: Mutex<Vec<String>>,
    /// veth ends in the router namespace (`vsrv`, `vpi<k>`).
    veths: Mutex<Vec<String>>,
    pi_counter: AtomicU32,
    server_counter: AtomicU32,
}

/// Fail loudly when the test cannot run here.
fn preflight() {
    assert!(
        rustix::process::geteuid().is_root(),
        "netlab needs root (network namespaces, veths, dnsmasq on :67/:69)"
    );
    for (tool, arg) in [("ip", "-V"), ("dnsmasq", "--version")] {
        if let Err(e) = run_cmd(tool, &[arg]) {
            panic!("netlab needs `{tool}` (apt-get install iproute2 dnsmasq): {e}");
        }
    }
}

fn read_lossy(p: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn poll_file(p: &Path, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = read_lossy(p);
        if pred(&text) {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            return Err(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove leftovers of earlier runs of *this* fixture whose process is gone
/// (e.g. a test binary killed by SIGKILL, so Drop never ran). Only names
/// matching `pnb-<pid>-…` with a dead `<pid>` are touched; the processes
/// still inside such a namespace (`ip netns pids`: the orphaned dnsmasqs
/// that run got started there) get SIGTERM by PID first.
fn reap_stale_namespaces() {
    let stale_names = |dir: &Path| -> Vec<String> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| {
                let Some(rest) = name.strip_prefix("pnb-") else {
                    return false;
                };
                let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
                matches!(pid, Some(pid) if !pid_alive(pid))
            })
            .collect()
    };
    // Temp dirs of dead runs (`<tmp>/pnb-<pid>-<n>-XXXXXX`).
    let tmp = std::env::temp_dir();
    for name in stale_names(&tmp) {
        let _ = fs::remove_dir_all(tmp.join(name));
    }
    let mut stale = stale_names(Path::new("/run/netns"));
    // Pis before routers is not required: deleting the router namespace
    // destroys its veth ends and with them the peers.
    stale.sort();
    for ns in stale {
        let pids = run_cmd("ip", &["netns", "pids", &ns]).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                eprintln!("netlab: stopping orphan {pid:?} in stale {ns}");
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let _ = run_cmd("ip", &["netns", "del", &ns]);
    }
}

impl Lab {
    /// Build router + server namespaces, the bridge, and start the router's
    /// DHCP server (pool [`POOL`], router option [`ROUTER_IP`], lease 1h).
    ///
    /// Panics (with the reason) if not root, a tool is missing, or any step
    /// fails; whatever was created so far is cleaned up by `Drop`.
    pub fn new() -> Lab {
        preflight();
        reap_stale_namespaces();
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("pnb-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .expect("netlab: create temp dir");
        // dnsmasq drops to `nobody`: it must be able to traverse into the
        // test's TFTP root below this directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("netlab: chmod temp dir");
        let lab = Lab {
            rtr: format!("{prefix}-rtr"),
            srv: format!("{prefix}-srv"),
            prefix,
            dir,
            daemons: Mutex::new(Vec::new()),
            namespaces: Mutex::new(Vec::new()),
            veths: Mutex::new(Vec::new()),
            pi_counter: AtomicU32::new(0),
            server_counter: AtomicU32::new(0),
        };
        lab.build_segment();
        lab.start_router();
        lab
    }

    fn add_netns(&self, ns: &str) {
        must("ip", &["netns", "add", ns]);
        self.namespaces.lock().unwrap().push(ns.to_string());
        must("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }

    fn build_segment(&self) {
        let (rtr, srv) = (self.rtr.as_str(), self.srv.as_str());
        self.add_netns(rtr);
        self.add_netns(srv);
        must(
            "ip",
            &[
                "-n",
                rtr,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ],
        );
        must(
            "ip",
            &[
                "-n",
                rtr,
                "addr",
                "add",
                &format!("{ROUTER_IP}/{PREFIX_LEN}"),
                "dev",
                "br0",
            ],
        );
        must("ip", &["-n", rtr, "link", "set", "br0", "up"]);
        self.add_veth("vsrv", srv, SERVER_IFACE, None);
        must(
            "ip",
            &[
                "-n",
                srv,
                "addr",
                "add",
                &format!("{SERVER_IP}/{PREFIX_LEN}"),
                "dev",
                SERVER_IFACE,
            ],
        );
    }

    /// veth `rtr_end` (in the router ns, enslaved to br0) <-> `peer` in `ns`.
    fn add_veth(&self, rtr_end: &str, ns: &str, peer: &str, mac: Option<&str>) {
        let mut args = vec![
            "-n", &self.rtr, "link", "add", rtr_end, "type", "veth", "peer", "name", peer,
        ];
        if let Some(mac) = mac {
            args.extend(["address", mac]);
        }
        args.extend(["netns", ns]);
        must("ip", &args);
        self.veths.lock().unwrap().push(rtr_end.to_string());
        must(
            "ip",
            &[
                "-n", &self.rtr, "link", "set", rtr_end, "master", "br0", "up",
            ],
        );
        must("ip", &["-n", ns, "link", "set", peer, "up"]);
        self.wait_link_ready(rtr_end, ns, peer);
    }

    /// Bounded wait until `peer` has carrier (operstate UP) and the bridge
    /// port `rtr_end` forwards: carrier and port state change asynchronously
    /// after `ip link set up`, and a DISCOVER sent earlier is lost.
    fn wait_link_ready(&self, rtr_end: &str, ns: &str, peer: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let port = run_cmd(
                "ip",
                &["-n", &self.rtr, "-d", "-o", "link", "show", rtr_end],
            )
            .unwrap_or_default();
            let link = run_cmd("ip", &["-n", ns, "-o", "link", "show", peer]).unwrap_or_default();
            if port.contains("state forwarding") && link.contains("state UP") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "netlab: {rtr_end}/{ns}:{peer} not forwarding within {READY_TIMEOUT:?}:\n{port}\n{link}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lab's private temp directory (mode 0755, removed on drop). Put the
    /// server's config and TFTP root below it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_router(&self) {
        let conf = self.dir.path().join("router.conf");
        let (lo, hi) = POOL;
        fs::write(
            &conf,
            format!(
                "port=0\ninterface=br0\nbind-interfaces\n\
                 dhcp-range={lo},{hi},255.255.255.0,1h\n\
                 dhcp-option=option:router,{ROUTER_IP}\nno-ping\nlog-dhcp\n"
            ),
        )
        .expect("netlab: write router.conf");
        let h = self.spawn_dnsmasq_plain(&self.rtr.clone(), "router", &conf, &[]);
        h.wait_for_log(READY_TIMEOUT, |t| t.contains("DHCP, IP range"))
            .unwrap_or_else(|log| {
                panic!(
                    "netlab: router dnsmasq not ready: {log}{}",
                    read_lossy(&h.stderr)
                )
            });
    }

    /// Start dnsmasq in the server namespace on the caller's configuration.
    ///
    /// `conf` is either a file (`--conf-file=conf`) or a directory
    /// (`--conf-file=/dev/null --conf-dir=conf,*.conf`, like a drop-in dir).
    /// `extra_args` are appended verbatim. Waits (bounded) until dnsmasq has
    /// logged `started` and, if TFTP is enabled, `TFTP root is`, i.e. its
    /// sockets are bound; panics with its stderr and log otherwise.
    pub fn start_server_dnsmasq(&self, conf: &Path, extra_args: &[&str]) -> ServerHandle {
        self.start_server_dnsmasq_in(conf, extra_args, None)
    }

    /// Like [`Lab::start_server_dnsmasq`], but the dnsmasq runs in the mount namespace of
    /// process `mount_ns_pid` (where pinetboot's bind mounts were made), via `nsenter`.
    pub fn start_server_dnsmasq_in(
        &self,
        conf: &Path,
        extra_args: &[&str],
        mount_ns_pid: Option<u32>,
    ) -> ServerHandle {
        let n = self.server_counter.fetch_add(1, Ordering::SeqCst);
        let h = self.spawn_dnsmasq(
            &self.srv.clone(),
            &format!("server{n}"),
            conf,
            extra_args,
            mount_ns_pid,
        );
        h.wait_for_log(READY_TIMEOUT, |t| {
            t.contains("started, version")
                && (!t.contains("TFTP") || t.contains("TFTP root is") || t.contains("TFTP enabled"))
        })
        .unwrap_or_else(|log| {
            panic!(
                "netlab: server dnsmasq not ready within {READY_TIMEOUT:?}\nstderr: {}\nlog: {log}",
                read_lossy(&h.stderr)
            )
        });
        h
    }

    fn spawn_dnsmasq_plain(
        &self,
        ns: &str,
        name: &str,
        conf: &Path,
        extra: &[&str],
    ) -> ServerHandle {
        self.spawn_dnsmasq(ns, name, conf, extra, None)
    }

    fn spawn_dnsmasq(
        &self,
        ns: &str,
        name: &str,
        conf: &Path,
        extra: &[&str],
        mount_ns_pid: Option<u32>,
    ) -> ServerHandle {
        let d = self.dir.path();
        let log = d.join(format!("{name}.log"));
        let stderr = d.join(format!("{name}.stderr"));
        let mut cmd = match mount_ns_pid {
            Some(pid) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-m", "--", "ip"]);
                c
            }
            None => Command::new("ip"),
        };
        cmd.args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground"]);
        if conf.is_dir() {
            cmd.arg("--conf-file=/dev/null")
                .arg(format!("--conf-dir={},*.conf", conf.display()));
        } else {
            cmd.arg(format!("--conf-file={}", conf.display()));
        }
        cmd.arg(format!(
            "--pid-file={}",
            d.join(format!("{name}.pid")).display()
        ))
        .arg(format!("--log-facility={}", log.display()))
        .arg(format!(
            "--dhcp-leasefile={}",
            d.join(format!("{name}.leases")).display()
        ))
        .args(extra)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("netlab: create stderr file"));
        let mut child = cmd.spawn().expect("netlab: spawn ip netns exec dnsmasq");
        let pid = child.id();
        // Fail fast on a config error instead of waiting for the log.
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "netlab: dnsmasq ({name}) exited at once with {status}: {}",
                read_lossy(&stderr)
            );
        }
        self.daemons.lock().unwrap().push(Daemon {
            child,
            ns: ns.to_string(),
        });
        ServerHandle { pid, log, stderr }
    }

    /// Create one more namespace `<prefix>-pi<k>` with veth `pi0` (MAC `mac`,
    /// link up, no address) bridged onto the segment.
    pub fn add_pi(&self, mac: [u8; 6]) -> PiNs {
        let k = self.pi_counter.fetch_add(1, Ordering::SeqCst);
        let ns = format!("{}-pi{k}", self.prefix);
        self.add_netns(&ns);
        let mac_s = mac_string(&mac);
        self.add_veth(&format!("vpi{k}"), &ns, PI_IFACE, Some(&mac_s));
        PiNs {
            netns: ns,
            iface: PI_IFACE.to_string(),
            mac,
        }
    }

    fn stop_daemons(&self) {
        let mut daemons = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        for d in daemons.iter() {
            if let Some(pid) = rustix::process::Pid::from_raw(d.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for mut d in daemons.drain(..) {
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match d.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!(
                            "netlab: dnsmasq {} in {} ignored SIGTERM, killing",
                            d.child.id(),
                            d.ns
                        );
                        let _ = d.child.kill();
                        let _ = d.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_daemons();
        let veths = std::mem::take(&mut *self.veths.lock().unwrap_or_else(|e| e.into_inner()));
        for v in veths.iter().rev() {
            if let Err(e) = run_cmd("ip", &["-n", &self.rtr, "link", "del", v]) {
                eprintln!("netlab cleanup: {e}");
            }
        }
        let nss = std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in nss.iter().rev() {
            if let Err(e) = run_cmd("ip", &["netns", "del", ns]) {
                eprintln!("netlab cleanup: {e}");
            }
        }
        if std::env::var_os("NETLAB_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("netlab: keeping {}", kept.keep().display());
        }
    }
}

/// `dc:a6:32:01:02:03` form.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
