//! Collecting the facts doctor judges: the only part of doctor that reads the host. Processes
//! and sockets are those of the namespaces doctor runs in (`/proc/net/udp` is per network
//! namespace); files are read under `--root`. The text parsers here are pure and unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Runner;
use crate::config::Valid;
use crate::host::Host;
use crate::host::confined::Tree;
use crate::host::mountinfo::{self, Mount};
use crate::state::State;

/// UDP ports doctor cares about: DNS, DHCP, TFTP, PXE (proxy DHCP on 4011).
pub const PORTS: [u16; 4] = [53, 67, 69, 4011];

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The config file, as given.
    pub config_path: String,
    /// The loaded config, or the rendered errors.
    pub config: Result<Valid, String>,
    /// Whether `--root` is `/` (the running daemons then read the files doctor reads).
    pub real_host: bool,
    /// Where the dnsmasq binary is, if installed.
    pub dnsmasq_binary: Option<String>,
    /// dnsmasq processes in this network namespace.
    pub dnsmasq: Vec<Process>,
    /// How many dnsmasq processes run in other network namespaces.
    pub dnsmasq_elsewhere: usize,
    /// UDP sockets of this network namespace on [`PORTS`].
    pub sockets: Vec<Socket>,
    /// Whether `ss` told which sockets are bound to a device.
    pub devices_known: bool,
    /// dnsmasq config files other than pinetboot's drop-in (host path, text).
    pub confs: Vec<ConfFile>,
    /// pinetboot's drop-in, if it exists.
    pub drop_in: Option<String>,
    /// The kernel NFS server.
    pub nfs: NfsFacts,
    /// IPv4 interfaces of this network namespace (`ip -j -4 addr show`).
    pub interfaces: Result<Vec<Iface>, String>,
    /// Per declared client (empty without a valid config).
    pub clients: Vec<ClientFacts>,
    /// Who the TFTP server reads files as.
    pub tftp_user: User,
    /// Whether the state file could be read (`None` without a valid config).
    pub state: Option<Result<(), String>>,
    /// The plan (`None` without a valid config).
    pub plan: Option<Result<PlanFacts, String>>,
    /// The commit the last apply applied (pull mode; from the state).
    pub applied: Option<crate::state::SourceRecord>,
    /// A commit the last pull fetched that is not the one in force (refused, or fetched and
    /// not yet applied).
    pub pending_commit: Option<String>,
}

/// A process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// PID.
    pub pid: u32,
    /// `comm`.
    pub comm: String,
    /// Effective uid and gid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Its command line.
    pub cmdline: Vec<String>,
}

/// A UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// Local address.
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Socket inode.
    pub inode: u64,
    /// The device it is bound to (`SO_BINDTODEVICE`), when `ss` says so.
    pub device: Option<String>,
    /// Processes holding it (pid, comm); empty when none could be found.
    pub owners: Vec<(u32, String)>,
}

impl Socket {
    /// How `ss` would show the local end.
    pub fn local(&self) -> String {
        let dev = self
            .device
            .as_ref()
            .map(|d| format!("%{d}"))
            .unwrap_or_default();
        match self.addr {
            IpAddr::V4(a) => format!("{a}{dev}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]{dev}:{}", self.port),
        }
    }

    /// Whether a process with this comm holds it.
    pub fn held_by(&self, comm: &str) -> bool {
        self.owners.iter().any(|(_, c)| c == comm)
    }

    /// Who holds it, for messages.
    pub fn holders(&self) -> String {
        if self.owners.is_empty() {
            return "a process doctor cannot see (another PID namespace, or a kernel socket)"
                .into();
        }
        self.owners
            .iter()
            .map(|(pid, comm)| format!("{comm} (pid {pid})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A dnsmasq config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// Host path.
    pub path: String,
    /// Content.
    pub text: String,
}

/// The kernel NFS server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NfsFacts {
    /// Whether `exportfs` (nfs-kernel-server) is installed.
    pub installed: bool,
    /// Whether the kernel knows the `nfsd` filesystem (`/proc/filesystems`).
    pub in_kernel: bool,
    /// Whether `/proc/fs/nfsd` is mounted.
    pub mounted: bool,
    /// `/proc/fs/nfsd/threads`, when readable.
    pub threads: Option<u32>,
    /// `exportfs -v`, parsed; `None` when not asked (the server is not running).
    pub exports: Option<Result<Vec<Export>, String>>,
}

/// One line of `exportfs -v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The exported path.
    pub path: String,
    /// Who may mount it (`192.168.2.0/24`, an address, `*`).
    pub client: String,
    /// Its options, as exportfs prints them.
    pub options: String,
}

/// An interface with its IPv4 addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Name.
    pub name: String,
    /// Administratively up (`UP` flag).
    pub up: bool,
    /// Carrier (`LOWER_UP` flag).
    pub carrier: bool,
    /// Addresses with prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// A path and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    /// The full path (with the `--root` prefix: what the daemon opens).
    pub path: String,
    /// `Ok(None)` when missing.
    pub meta: Result<Option<Meta>, String>,
}

/// The parts of `stat` the access check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A folder.
    pub dir: bool,
    /// A regular file.
    pub file: bool,
}

/// What doctor found for one declared client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFacts {
    /// Name.
    pub name: String,
    /// Serial.
    pub serial: String,
    /// Host path of the client root.
    pub root: String,
    /// Host path of `/tftpboot/SERIAL`.
    pub target: String,
    /// Host path of the boot folder, when recorded by an apply.
    pub source: Option<String>,
    /// Whether something is mounted on the target.
    pub mounted: bool,
    /// Whether the target is the boot folder (same device and inode); `None` when not
    /// mounted or unknown.
    pub same_folder: Result<Option<bool>, String>,
    /// Every folder from `/` down to the target.
    pub components: Vec<PathEntry>,
    /// `start4.elf` in the target.
    pub start4: PathEntry,
    /// Who should be able to mount the root over NFS.
    pub export_scope: String,
}

/// The user the TFTP server reads files as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Name (or number).
    pub name: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// How doctor knows.
    pub source: String,
}

/// The plan, reduced to what doctor reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanFacts {
    /// Pending changes, one line each.
    pub changes: Vec<String>,
    /// Conflicts, one line each.
    pub conflicts: Vec<String>,
}

/// Collects the facts; `config` is this host's part of the config (or why it is not there),
/// named `config_path` in messages.
pub fn collect(
    config_path: &str,
    config: Result<Valid, String>,
    host: &Host,
    runner: &dyn Runner,
) -> Facts {
    let own_netns = std::fs::read_link("/proc/self/ns/net").ok();
    let procs = list_processes();
    let mut dnsmasq = Vec::new();
    let mut dnsmasq_elsewhere = 0;
    for p in procs.iter().filter(|p| p.comm == "dnsmasq") {
        let ns = std::fs::read_link(format!("/proc/{}/ns/net", p.pid)).ok();
        if ns.is_some() && ns == own_netns {
            dnsmasq.push(read_process(p.pid, &p.comm));
        } else {
            dnsmasq_elsewhere += 1;
        }
    }
    let mut sockets: Vec<Socket> = ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| parse_proc_net_udp(&t))
        .filter(|s| PORTS.contains(&s.port))
        .collect();
    let inodes: BTreeSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let owners = socket_owners(&procs, &inodes);
    let ss = runner.run("ss", &["-uapneH"]).ok();
    let devices = ss.as_deref().map(parse_ss_devices).unwrap_or_default();
    for s in &mut sockets {
        s.owners = owners.get(&s.inode).cloned().unwrap_or_default();
        s.device = devices.get(&s.inode).cloned();
    }
    let interfaces = runner
        .run("ip", &["-j", "-4", "addr", "show"])
        .and_then(|t| parse_ip_addr(&t));
    let mounts = mountinfo::read().unwrap_or_default();
    let nfs = collect_nfs(
        runner,
        &std::fs::read_to_string("/proc/filesystems").unwrap_or_default(),
        &mounts,
        std::fs::read_to_string("/proc/fs/nfsd/threads")
            .ok()
            .and_then(|t| t.trim().parse().ok()),
    );
    let drop_in_path = config
        .as_ref()
        .map(|v| v.paths.dnsmasq_conf.clone())
        .unwrap_or_else(|_| crate::config::model::Paths::default().dnsmasq_conf);
    let (confs, drop_in) = dnsmasq_confs(host, &drop_in_path);
    let tftp_user = tftp_user(host, &dnsmasq, &sockets, &confs, drop_in.as_deref());
    let mut facts = Facts {
        config_path: config_path.to_owned(),
        config: config.clone(),
        real_host: host.is_real(),
        dnsmasq_binary: crate::host::tools::which("dnsmasq").map(|p| p.display().to_string()),
        dnsmasq,
        dnsmasq_elsewhere,
        sockets,
        devices_known: ss.is_some(),
        confs,
        drop_in,
        nfs,
        interfaces,
        clients: Vec::new(),
        tftp_user,
        state: None,
        plan: None,
        applied: None,
        pending_commit: None,
    };
    if let Ok(valid) = &config {
        let state = State::load(host, &valid.paths.state);
        facts.state = Some(state.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
        let state = state.unwrap_or_default();
        facts.applied.clone_from(&state.source);
        if valid.origin.is_some() {
            facts.pending_commit = crate::pull::pending(host, crate::pull::Slot::Pull)
                .unwrap_or_else(|e| {
                    tracing::warn!("cannot read the fetched commit: {e}");
                    None
                });
        }
        facts.clients = valid
            .clients
            .iter()
            .map(|(name, c)| client_facts(host, valid, &state, &mounts, name, c))
            .collect();
        facts.plan = Some(plan_facts(valid, host));
    }
    facts
}

/// The NFS part, from `/proc/filesystems`, the mount table, `/proc/fs/nfsd/threads` and
/// `exportfs -v` (asked only when the server runs).
pub fn collect_nfs(
    runner: &dyn Runner,
    filesystems: &str,
    mounts: &[Mount],
    threads: Option<u32>,
) -> NfsFacts {
    let mounted = mounts
        .iter()
        .any(|m| m.fstype == "nfsd" || m.mount_point == "/proc/fs/nfsd");
    let installed =
        crate::host::tools::which("exportfs").is_some() || runner.run("exportfs", &["-h"]).is_ok();
    NfsFacts {
        installed,
        in_kernel: filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("nfsd")),
        mounted,
        threads,
        exports: mounted.then(|| runner.run("exportfs", &["-v"]).map(|t| parse_exportfs(&t))),
    }
}

fn plan_facts(valid: &Valid, host: &Host) -> Result<PlanFacts, String> {
    let _lock = host
        .path(crate::engine::LOCK_PATH)
        .exists()
        .then(|| {
            crate::engine::lock(host, crate::host::lock::Mode::Shared, true, |path| {
                tracing::warn!(
                    "waiting for another pinetboot apply to finish (lock {})…",
                    path.display()
                );
            })
        })
        .transpose()
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    let (_, _, plan) =
        crate::engine::observe_and_plan(valid, host).map_err(|e| format!("{e:#}"))?;
    Ok(PlanFacts {
        changes: plan
            .changes
            .iter()
            .map(|c| {
                let sign = match c.action {
                    crate::resource::Action::Create => "+",
                    crate::resource::Action::Update => "~",
                    crate::resource::Action::Remove => "-",
                };
                match &c.detail {
                    Some(d) => format!("{sign} {} {} ({d})", c.kind, c.path),
                    None => format!("{sign} {} {}", c.kind, c.path),
                }
            })
            .collect(),
        conflicts: plan
            .conflicts
            .iter()
            .map(|c| format!("{}: {}", c.client, c.message))
            .collect(),
    })
}

fn client_facts(
    host: &Host,
    valid: &Valid,
    state: &State,
    mounts: &[Mount],
    name: &str,
    c: &crate::config::ValidClient,
) -> ClientFacts {
    let root = crate::expand::root_of(valid, name);
    let target = format!("{}/{}", valid.paths.tftp.trim_end_matches('/'), c.serial);
    let boot_dir = state
        .clients
        .get(name)
        .filter(|r| r.root == root)
        .and_then(|r| r.boot_dir.clone());
    let full = host.path(&target);
    let mounted = mounts
        .iter()
        .any(|m| m.mount_point == full.to_string_lossy());
    let same_folder = match (&boot_dir, mounted) {
        (Some(b), true) => same_folder(host, &root, Path::new(b), &target),
        _ => Ok(None),
    };
    let mut components = Vec::new();
    let mut prefix = PathBuf::from("/");
    components.push(path_entry(&prefix));
    for c in full.components().skip(1) {
        prefix.push(c);
        components.push(path_entry(&prefix));
    }
    ClientFacts {
        name: name.to_owned(),
        serial: c.serial.clone(),
        root: root.clone(),
        target,
        source: boot_dir.map(|b| crate::resource::host_join(&root, Path::new(&b))),
        mounted,
        same_folder,
        components,
        start4: path_entry(&full.join("start4.elf")),
        export_scope: c
            .address
            .map(|a| a.to_string())
            .unwrap_or_else(|| valid.nfs_scope.clone()),
    }
}

/// Whether the target is the client's boot folder, opened confined as the bind mount does.
fn same_folder(
    host: &Host,
    root: &str,
    boot_dir: &Path,
    target: &str,
) -> Result<Option<bool>, String> {
    let tree = Tree::open(&host.path(root)).map_err(|e| e.to_string())?;
    let Some(fd) = tree.open_dir(boot_dir).map_err(|e| e.to_string())? else {
        return Ok(Some(false));
    };
    let src = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    let dst = host.dev_ino(target).map_err(|e| e.to_string())?;
    Ok(Some(dst == Some((src.st_dev, src.st_ino))))
}

fn path_entry(p: &Path) -> PathEntry {
    let meta = match std::fs::metadata(p) {
        Ok(m) => Ok(Some(Meta {
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            dir: m.is_dir(),
            file: m.is_file(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    PathEntry {
        path: p.display().to_string(),
        meta,
    }
}

struct ProcEntry {
    pid: u32,
    comm: String,
}

fn list_processes() -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some(ProcEntry {
            pid,
            comm: comm.trim_end().to_owned(),
        })
    })
    .collect()
}

fn read_process(pid: u32, comm: &str) -> Process {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let id = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    Process {
        pid,
        comm: comm.to_owned(),
        uid: id("Uid:"),
        gid: id("Gid:"),
        cmdline: cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    }
}

/// Which processes hold which of `inodes` (every process: a socket may have been made in this
/// namespace by a process living in another).
fn socket_owners(procs: &[ProcEntry], inodes: &BTreeSet<u64>) -> BTreeMap<u64, Vec<(u32, String)>> {
    let mut out: BTreeMap<u64, Vec<(u32, String)>> = BTreeMap::new();
    if inodes.is_empty() {
        return out;
    }
    for p in procs {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", p.pid)) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(ino) = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok())
            else {
                continue;
            };
            if inodes.contains(&ino) {
                let holders = out.entry(ino).or_default();
                if !holders.iter().any(|(pid, _)| *pid == p.pid) {
                    holders.push((p.pid, p.comm.clone()));
                }
            }
        }
    }
    out
}

fn dnsmasq_confs(host: &Host, drop_in: &str) -> (Vec<ConfFile>, Option<String>) {
    let mut paths = vec![PathBuf::from("/etc/dnsmasq.conf")];
    let mut dirs = vec![PathBuf::from("/etc/dnsmasq.d")];
    if let Some(parent) = Path::new(drop_in).parent()
        && !dirs.iter().any(|d| d == parent)
    {
        dirs.push(parent.to_owned());
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(host.path(&dir)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| dnsmasq_reads(n))
            .collect();
        names.sort();
        paths.extend(names.into_iter().map(|n| dir.join(n)));
    }
    let mut confs = Vec::new();
    let mut own = None;
    for p in paths {
        // Bounded, and never blocked by a fifo someone left in /etc/dnsmasq.d.
        let Some(text) = host
            .read(&p)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            continue;
        };
        if p == Path::new(drop_in) {
            own = Some(text);
        } else {
            confs.push(ConfFile {
                path: p.display().to_string(),
                text,
            });
        }
    }
    (confs, own)
}

/// Whether dnsmasq (as Debian starts it: `--conf-dir=/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,
/// .dpkg-new`) reads a file of this name from a config folder.
pub fn dnsmasq_reads(name: &str) -> bool {
    !(name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || [".dpkg-dist", ".dpkg-old", ".dpkg-new", ".dpkg-tmp"]
            .iter()
            .any(|s| name.ends_with(s)))
}

/// Who the TFTP server reads as: the running dnsmasq's effective ids (the one holding port 69
/// first), else `user=`/`group=` from the configs, else dnsmasq's defaults (`nobody`, group
/// `dip` on Debian).
fn tftp_user(
    host: &Host,
    dnsmasq: &[Process],
    sockets: &[Socket],
    confs: &[ConfFile],
    drop_in: Option<&str>,
) -> User {
    let tftp_pid = sockets
        .iter()
        .filter(|s| s.port == 69)
        .flat_map(|s| s.owners.iter().map(|(pid, _)| *pid))
        .find(|pid| dnsmasq.iter().any(|p| p.pid == *pid));
    let running = tftp_pid
        .and_then(|pid| dnsmasq.iter().find(|p| p.pid == pid))
        .or(dnsmasq.first());
    let passwd = read_either(host, "/etc/passwd");
    let group = read_either(host, "/etc/group");
    if let Some(p) = running.filter(|p| p.uid != u32::MAX) {
        let name = passwd_name(&passwd, p.uid).unwrap_or_else(|| p.uid.to_string());
        return User {
            name,
            uid: p.uid,
            gid: p.gid,
            source: format!("the running dnsmasq (pid {}) reads as this user", p.pid),
        };
    }
    let mut user = None;
    let mut grp = None;
    for text in confs.iter().map(|c| c.text.as_str()).chain(drop_in) {
        for (key, value) in conf_lines(text).map(|(_, k, v)| (k, v)) {
            match key {
                "user" => user = value.map(str::to_owned),
                "group" => grp = value.map(str::to_owned),
                _ => {}
            }
        }
    }
    let source = if user.is_some() {
        "user= in the dnsmasq config".to_owned()
    } else {
        "dnsmasq's default user (it drops root after binding its ports)".to_owned()
    };
    let name = user.unwrap_or_else(|| "nobody".into());
    let (uid, pgid) = passwd_ids(&passwd, &name).unwrap_or((65534, 65534));
    let gid = group_id(&group, grp.as_deref().unwrap_or("dip")).unwrap_or(pgid);
    User {
        name,
        uid,
        gid,
        source,
    }
}

fn read_either(host: &Host, path: &str) -> String {
    host.read(path)
        .ok()
        .flatten()
        .or_else(|| crate::host::bounded::read(Path::new(path), crate::host::MAX_HOST_FILE).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn passwd_ids(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_owned())
    })
}

fn group_id(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

/// The option lines of a dnsmasq config: (line number, key, value). Comments (`#` at the start
/// of a line or after white space) and blank lines are skipped.
pub fn conf_lines(text: &str) -> impl Iterator<Item = (usize, &str, Option<&str>)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let line = match line.find(" #").or_else(|| line.find("\t#")) {
            Some(at) => line[..at].trim_end(),
            None => line,
        };
        Some(match line.split_once('=') {
            Some((k, v)) => (i + 1, k.trim(), Some(v.trim())),
            None => (i + 1, line, None),
        })
    })
}

/// Parses `/proc/net/udp` or `/proc/net/udp6`.
pub fn parse_proc_net_udp(text: &str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            let inode = f.get(9)?.parse().ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let addr = match addr.len() {
                8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.to_be())),
                32 => {
                    // Four 32-bit words, each in host (little-endian) order.
                    let mut bytes = [0u8; 16];
                    for (w, chunk) in bytes.chunks_mut(4).enumerate() {
                        let word = u32::from_str_radix(&addr[w * 8..w * 8 + 8], 16).ok()?;
                        chunk.copy_from_slice(&word.to_be().to_be_bytes());
                    }
                    let v6 = Ipv6Addr::from(bytes);
                    match v6.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(v6),
                    }
                }
                _ => return None,
            };
            Some(Socket {
                addr,
                port,
                inode,
                device: None,
                owners: Vec::new(),
            })
        })
        .collect()
}

/// From `ss -uapneH`: the device each socket (by inode) is bound to (`0.0.0.0%eth0:67`).
pub fn parse_ss_devices(text: &str) -> BTreeMap<u64, String> {
    text.lines()
        .filter_map(|line| {
            let local = line.split_whitespace().nth(3)?;
            let ino = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ino:"))?
                .parse()
                .ok()?;
            let (host, _port) = local.rsplit_once(':')?;
            let (_, dev) = host.split_once('%')?;
            Some((ino, dev.trim_end_matches(']').to_owned()))
        })
        .collect()
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    family: Option<String>,
    local: Option<String>,
    prefixlen: Option<u8>,
}

/// Parses `ip -j -4 addr show`.
pub fn parse_ip_addr(text: &str) -> Result<Vec<Iface>, String> {
    let links: Vec<IpLink> =
        serde_json::from_str(text).map_err(|e| format!("cannot read `ip -j addr` output: {e}"))?;
    Ok(links
        .into_iter()
        .map(|l| Iface {
            up: l.flags.iter().any(|f| f == "UP"),
            carrier: l.flags.iter().any(|f| f == "LOWER_UP"),
            addrs: l
                .addr_info
                .iter()
                .filter(|a| a.family.as_deref().is_none_or(|f| f == "inet"))
                .filter_map(|a| Some((a.local.as_deref()?.parse().ok()?, a.prefixlen?)))
                .collect(),
            name: l.ifname,
        })
        .collect())
}

/// Parses `exportfs -v`: `PATH<white space>CLIENT(OPTIONS)`, where a long path puts the client
/// on the next line.
pub fn parse_exportfs(text: &str) -> Vec<Export> {
    let mut out = Vec::new();
    let mut path: Option<String> = None;
    for word in text.split_whitespace() {
        if let Some((client, rest)) = word.split_once('(')
            && let Some(p) = &path
        {
            out.push(Export {
                path: p.clone(),
                client: client.to_owned(),
                options: rest.trim_end_matches(')').to_owned(),
            });
        } else if word.starts_with('/') {
            path = Some(word.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_v4_and_v6() {
        let v4 = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            15043: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 225060 2 00000000a308a0db 0\n\
            15045: 0200630A:0045 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 225064 2 00000000ef597d3c 0\n";
        let s = parse_proc_net_udp(v4);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!((s[0].port, s[0].inode), (67, 225060));
        assert_eq!(s[1].addr, IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(s[1].port, 69);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            15045: 00000000000000000000000001000000:0045 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 225066 2 00000000e7bcbb75 0\n\
            1: 0000000000000000FFFF00000200630A:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7 2 0 0\n";
        let s = parse_proc_net_udp(v6);
        assert_eq!(s[0].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(s[0].port, 69);
        assert_eq!(s[1].addr, IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(s[1].port, 53);
    }

    #[test]
    fn ss_devices() {
        let text = "UNCONN 0      0      0.0.0.0%eth0:67   0.0.0.0:* users:((\"dnsmasq\",pid=26008,fd=4)) ino:225060 sk:2 cgroup:unreachable:1 <->\n\
            UNCONN 0      0         10.99.0.2:69   0.0.0.0:* users:((\"dnsmasq\",pid=26008,fd=7)) ino:225064 sk:4 <->\n\
            UNCONN 0      0      [::]%br0:547   [::]:* ino:9 sk:4 <->\n";
        let d = parse_ss_devices(text);
        assert_eq!(d.get(&225060).map(String::as_str), Some("eth0"));
        assert_eq!(d.get(&225064), None);
        assert_eq!(d.get(&9).map(String::as_str), Some("br0"));
    }

    #[test]
    fn ip_json() {
        let text = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"operstate":"UNKNOWN","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":3,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP"],"operstate":"DOWN","addr_info":[{"family":"inet","local":"10.99.0.2","prefixlen":24}]},
            {"ifindex":4,"ifname":"eth1","flags":["BROADCAST"],"addr_info":[]}]"#;
        let i = parse_ip_addr(text).unwrap();
        assert_eq!(i.len(), 3);
        assert!(i[1].up && !i[1].carrier);
        assert_eq!(i[1].addrs, vec![(Ipv4Addr::new(10, 99, 0, 2), 24)]);
        assert!(!i[2].up);
        assert!(parse_ip_addr("Error: nope").is_err());
    }

    #[test]
    fn exportfs_verbose_with_wrapped_lines() {
        let text = "/nfs/raspi1   \t192.168.2.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,no_root_squash,no_all_squash)\n\
            /nfs/a-very-long-client-name-that-wraps\n\t\t192.168.2.17(sync,wdelay,hide,no_subtree_check,sec=sys,rw)\n\
            /srv/other\t*(ro)\n";
        let e = parse_exportfs(text);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].path, "/nfs/raspi1");
        assert_eq!(e[0].client, "192.168.2.0/24");
        assert!(e[0].options.starts_with("sync,"));
        assert_eq!(e[1].path, "/nfs/a-very-long-client-name-that-wraps");
        assert_eq!(e[1].client, "192.168.2.17");
        assert_eq!(e[2].client, "*");
    }

    #[test]
    fn conf_lines_skip_comments() {
        let text = "# c\n\nport=0\n  dhcp-range=10.0.0.0,proxy  # trailing\nbind-interfaces\n";
        let l: Vec<_> = conf_lines(text).collect();
        assert_eq!(
            l,
            vec![
                (3, "port", Some("0")),
                (4, "dhcp-range", Some("10.0.0.0,proxy")),
                (5, "bind-interfaces", None)
            ]
        );
    }

    #[test]
    fn conf_dir_file_names() {
        assert!(dnsmasq_reads("pinetboot.conf"));
        assert!(dnsmasq_reads("README"));
        assert!(!dnsmasq_reads("x.conf~"));
        assert!(!dnsmasq_reads(".hidden"));
        assert!(!dnsmasq_reads("x.conf.dpkg-old"));
    }

    struct Fake(Vec<(&'static str, Result<String, String>)>);
    impl Runner for Fake {
        fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
            let cmd = format!("{program} {}", args.join(" "));
            self.0
                .iter()
                .find(|(c, _)| *c == cmd)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| Err(format!("{cmd}: not faked")))
        }
    }

    fn nfsd_mount() -> Mount {
        Mount {
            id: 40,
            parent: 22,
            root: "/".into(),
            mount_point: "/proc/fs/nfsd".into(),
            options: "rw,relatime".into(),
            fstype: "nfsd".into(),
        }
    }

    #[test]
    fn nfs_running_asks_exportfs() {
        let runner = Fake(vec![(
            "exportfs -v",
            Ok("/nfs/raspi1\t10.99.0.0/24(sync,rw,no_root_squash)\n".into()),
        )]);
        let f = collect_nfs(
            &runner,
            "nodev\tsysfs\nnodev\tnfsd\n",
            &[nfsd_mount()],
            Some(8),
        );
        assert!(f.in_kernel && f.mounted);
        assert_eq!(f.threads, Some(8));
        let e = f.exports.unwrap().unwrap();
        assert_eq!(e[0].path, "/nfs/raspi1");
        assert_eq!(e[0].client, "10.99.0.0/24");
    }

    #[test]
    fn nfs_not_running_does_not_ask_exportfs() {
        let runner = Fake(vec![]);
        let f = collect_nfs(&runner, "nodev\tsysfs\n", &[], None);
        assert!(!f.in_kernel && !f.mounted);
        assert_eq!(f.exports, None);
        let runner = Fake(vec![("exportfs -v", Err("exportfs failed".into()))]);
        let f = collect_nfs(&runner, "nodev\tnfsd\n", &[nfsd_mount()], Some(0));
        assert_eq!(f.exports, Some(Err("exportfs failed".into())));
    }
}
