//! A userspace NFS server (nfs-ganesha, FSAL_VFS) serving exactly the exports of pinetboot's
//! exports drop-in, inside a network namespace. This machine's kernel has no nfsd, so ganesha
//! stands in for the kernel server a real pinetboot host runs.
//!
//! - **Translation** ([`parse_exports`], [`ganesha_conf`]): each line
//!   `/nfs/raspi1 10.99.0.0/24(rw,sync,no_subtree_check,no_root_squash)` becomes an `EXPORT`
//!   with `Path` = the `--root` folder + the export path (where the files are), `Pseudo` = the
//!   export path, and one `CLIENT` block per client of the line: `Access_Type` from `rw`/`ro`,
//!   `Squash` from `root_squash`/`no_root_squash`/`all_squash`, `PrivilegedPort` from
//!   `secure` (the default)/`insecure`, `Anonymous_uid`/`gid` from `anonuid`/`anongid`.
//!   `Mount_Path_Pseudo = true` makes NFSv3 MOUNT requests name the `Pseudo` path, so a
//!   client mounts exactly what cmdline.txt says (`nfsroot=SERVER:/nfs/raspi1,vers=3`).
//!   An option the translation does not know fails the test (so a change in pinetboot's
//!   options is noticed here).
//! - **NFSv3** needs rpcbind (the client asks it for the MOUNT and NFS ports) and a fixed
//!   MOUNT port (`MNT_Port = 20048`). rpcbind and ganesha share a private mount namespace with
//!   a tmpfs on `/run` (rpcbind's socket and state, ganesha's callback cache), so neither sees
//!   nor touches the host's `/run`; ganesha finds no system D-Bus there and runs without it.
//! - **ACLs**: bookworm's ganesha 4.3 answers the Linux client's NFSv3 SETACL with
//!   `GARBAGE_ARGS` (the guest sees EIO) whatever `Enable_NFSACL` says; [`ACL_SETTINGS`]
//!   moves the NFSACL program number so that the client is told "no ACLs" instead.
//!
//! [`NfsServer::start`] runs, all by PID: a `sleep` holding the mount namespace
//! (`ip netns exec NS unshare -m --propagation private`), then `nsenter -t HOLDER -m -n`
//! `rpcbind -f` and `ganesha.nfsd -F` (nsenter execs them in place, so the PIDs held are the
//! daemons'). [`Drop`] sends SIGTERM to ganesha and rpcbind (SIGKILL after a bounded wait)
//! and kills the holder.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tail;
use crate::support::tools::expect_success;

/// The MOUNT protocol's port (as `mountd --port 20048` on a kernel server).
pub const MNT_PORT: u16 = 20048;
/// Upper bound for rpcbind and ganesha to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a daemon to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The ACL-related settings in `NFS_CORE_PARAM`: NFSv3 POSIX ACLs are off, the way the
/// Linux client understands it.
///
/// The Linux NFSv3 client sends POSIX ACL calls (the NFSACL side protocol, program 100227,
/// GETACL/SETACL) to the NFS port itself. Ganesha 4.3 (bookworm) hands every call on that port
/// whose program equals its `NFSACL_Program` to its NFSACL code, whatever `Enable_NFSACL`
/// says (`nfs_rpc_valid_NFS` in `MainNFSD/nfs_worker_thread.c`; `Enable_NFSACL` only decides
/// whether a separate NFSACL listener is registered with rpcbind), and its SETACL argument
/// decoder rejects what the 6.1 client sends: the reply is `GARBAGE_ARGS` (seen with tcpdump:
/// program 100227 version 3 procedure 2, `accept_stat` 4), which the client reports as EIO
/// (`cp -p`, systemd's `StateDirectory=` setup, ssh host keys). `Enable_NFSACL = true` and the
/// export option `Disable_ACL = true` were tried and fail the same way.
///
/// Moving `NFSACL_Program` off 100227 (to a number in the transient range that nobody uses)
/// makes ganesha answer those calls `PROG_UNAVAIL`, which the client takes as "this server has
/// no ACL support": it returns EOPNOTSUPP once and stops asking, and `cp -p`, systemd and
/// sshd fall back to plain modes, as against a kernel server exporting a file system without
/// ACLs. `Enable_NFSACL = false` (ganesha's default, written out) keeps the moved program
/// unregistered.
pub const ACL_SETTINGS: &str = "Enable_NFSACL = false;\n    NFSACL_Program = 0x40000227;";

/// One client of an exports line: `who(options)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportClient {
    /// A network (`10.99.0.0/24`), an address or a host name.
    pub who: String,
    /// The options in parentheses, in order.
    pub options: Vec<String>,
}

/// One line of an exports(5) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The exported path as the host names it (`/nfs/raspi1`).
    pub path: String,
    /// Who may mount it, and how.
    pub clients: Vec<ExportClient>,
}

/// Parses exports(5) lines (comments and blank lines skipped; no line continuations, no
/// quoted paths: pinetboot writes neither).
pub fn parse_exports(text: &str) -> Vec<Export> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let path = words.next().unwrap().to_string();
            let clients = words.map(parse_client).collect();
            Export { path, clients }
        })
        .collect()
}

fn parse_client(word: &str) -> ExportClient {
    let (who, options) = match word.split_once('(') {
        Some((who, rest)) => (
            who,
            rest.strip_suffix(')')
                .unwrap_or_else(|| panic!("exports: unbalanced parenthesis in {word:?}"))
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        None => (word, Vec::new()),
    };
    ExportClient {
        who: if who.is_empty() { "*" } else { who }.to_string(),
        options,
    }
}

/// The `CLIENT` block for one exports client.
fn client_block(c: &ExportClient) -> String {
    let mut access = "RO";
    let mut squash = "Root_Squash";
    let mut privileged = true;
    let mut extra = String::new();
    for opt in &c.options {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        match key {
            "rw" => access = "RW",
            "ro" => access = "RO",
            "root_squash" => squash = "Root_Squash",
            "no_root_squash" => squash = "No_Root_Squash",
            "all_squash" => squash = "All_Squash",
            "secure" => privileged = true,
            "insecure" => privileged = false,
            "anonuid" => writeln!(extra, "        Anonymous_Uid = {value};").unwrap(),
            "anongid" => writeln!(extra, "        Anonymous_Gid = {value};").unwrap(),
            // Server-side write and tree-walking policies of the kernel server; ganesha's
            // VFS backend has no equivalent and they do not change what a client sees.
            "sync" | "async" | "no_subtree_check" | "subtree_check" | "wdelay" | "no_wdelay" => {}
            _ => panic!(
                "exports option {opt:?} has no ganesha translation in tests/realos/nfs.rs: add one"
            ),
        }
    }
    format!(
        "    CLIENT {{\n        Clients = {};\n        Access_Type = {access};\n        \
         Squash = {squash};\n        PrivilegedPort = {privileged};\n{extra}    }}\n",
        c.who
    )
}

/// The ganesha configuration for `exports`, whose files lie under `root` (the `--root`
/// folder); `state` holds ganesha's NFSv4 recovery data; `plugins` is where
/// `libfsalvfs.so` is.
pub fn ganesha_conf(exports: &[Export], root: &Path, state: &Path, plugins: &Path) -> String {
    let mut out = format!(
        "# Generated by tests/realos/nfs.rs from pinetboot's exports drop-in.\n\
         NFS_CORE_PARAM {{\n    Protocols = 3, 4;\n    MNT_Port = {MNT_PORT};\n    \
         Mount_Path_Pseudo = true;\n    Enable_NLM = false;\n    Enable_RQUOTA = false;\n    \
         {ACL_SETTINGS}\n    Plugins_Dir = \"{}\";\n}}\n\
         NFSv4 {{\n    Graceless = true;\n    Only_Numeric_Owners = true;\n    \
         RecoveryRoot = \"{}\";\n}}\n",
        plugins.display(),
        state.display()
    );
    let root = root.to_str().expect("a UTF-8 --root path");
    for (i, e) in exports.iter().enumerate() {
        let _ = write!(
            out,
            "EXPORT {{\n    Export_Id = {};\n    Path = \"{}{}\";\n    Pseudo = \"{}\";\n    \
             Protocols = 3, 4;\n    Transports = TCP, UDP;\n    SecType = sys;\n    \
             Access_Type = None;\n    FSAL {{\n        Name = VFS;\n    }}\n",
            i + 1,
            root.trim_end_matches('/'),
            e.path,
            e.path
        );
        for c in &e.clients {
            out.push_str(&client_block(c));
        }
        out.push_str("}\n");
    }
    out
}

/// Where Debian's nfs-ganesha-vfs put `libfsalvfs.so` (its folder is ganesha's
/// `Plugins_Dir`).
pub fn plugins_dir() -> PathBuf {
    let multiarch = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path().join("ganesha")));
    let fixed = ["/usr/lib/ganesha", "/usr/lib64/ganesha"].map(PathBuf::from);
    multiarch
        .chain(fixed)
        .find(|d| d.join("libfsalvfs.so").is_file())
        .expect("no libfsalvfs.so under /usr/lib*/ganesha: apt-get install -y nfs-ganesha-vfs")
}

/// The running server; see the module docs.
pub struct NfsServer {
    holder: Child,
    rpcbind: Option<Child>,
    ganesha: Option<Child>,
    /// The ganesha configuration in use.
    pub config: String,
    /// ganesha's log file.
    pub log: PathBuf,
    netns: String,
}

impl NfsServer {
    /// Starts rpcbind and ganesha in network namespace `netns`, serving the exports in
    /// `exports_text` (pinetboot's drop-in) from under `root`. Work files go to `dir`.
    /// Returns once both are registered with rpcbind (bounded); panics with ganesha's log
    /// otherwise.
    pub fn start(netns: &str, root: &Path, exports_text: &str, dir: &Path) -> NfsServer {
        let exports = parse_exports(exports_text);
        assert!(!exports.is_empty(), "no exports in:\n{exports_text}");
        let state = dir.join("ganesha-state");
        fs::create_dir_all(&state).unwrap();
        let config = ganesha_conf(&exports, root, &state, &plugins_dir());
        NfsServer::start_with_config(netns, config, dir)
    }

    /// Like [`NfsServer::start`] with a ganesha configuration of the caller's.
    pub fn start_with_config(netns: &str, config: String, dir: &Path) -> NfsServer {
        fs::create_dir_all(dir).unwrap();
        let conf_path = dir.join("ganesha.conf");
        fs::write(&conf_path, &config).unwrap();
        let mut server = NfsServer {
            holder: spawn_holder(netns),
            rpcbind: None,
            ganesha: None,
            config,
            log: dir.join("ganesha.log"),
            netns: netns.to_string(),
        };
        server.enter(&["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"]);
        server.rpcbind = Some(server.spawn(&["rpcbind", "-f"], &dir.join("rpcbind.stderr")));
        server.wait_registered(&["portmapper"], "rpcbind");
        let pid_file = dir.join("ganesha.pid");
        let mut args = vec!["ganesha.nfsd", "-F", "-N", "NIV_EVENT"];
        let (conf_s, log_s, pid_s) = (
            conf_path.display().to_string(),
            server.log.display().to_string(),
            pid_file.display().to_string(),
        );
        args.extend(["-f", &conf_s, "-L", &log_s, "-p", &pid_s]);
        server.ganesha = Some(server.spawn(&args, &dir.join("ganesha.stderr")));
        server.wait_registered(&["nfs", "mountd"], "ganesha");
        server
    }

    /// `nsenter -t HOLDER -m -n -- ARGS` as a command.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder.id().to_string(), "-m", "-n", "--"])
            .args(args)
            .env("LC_ALL", "C");
        cmd
    }

    /// Runs `args` to completion in the server's namespaces; panics on failure.
    fn enter(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter (util-linux)");
        expect_success(
            &out,
            format_args!("{args:?} in the NFS server's namespaces"),
        )
    }

    fn spawn(&self, args: &[&str], stderr: &Path) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"))
    }

    /// Polls `rpcinfo -p` until every service in `names` is registered.
    fn wait_registered(&mut self, names: &[&str], who: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = self
                .command(&["rpcinfo", "-p", "127.0.0.1"])
                .stdin(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if names.iter().all(|n| out.contains(n)) {
                return;
            }
            let exited = [&mut self.rpcbind, &mut self.ganesha]
                .into_iter()
                .flatten()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))));
            assert!(
                !exited && Instant::now() < deadline,
                "{who} did not register {names:?} with rpcbind in netns {} ({}):\n{out}\n{}",
                self.netns,
                if exited {
                    "a daemon exited"
                } else {
                    "timed out"
                },
                tail(&self.log_text(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// ganesha's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts the `sleep` holding a private mount namespace inside network namespace `netns`
/// and waits (bounded) until it runs there.
fn spawn_holder(netns: &str) -> Child {
    let mut holder = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "unshare",
            "-m",
            "--propagation",
            "private",
        ])
        .args(["--", "sleep", "86400"])
        .stdin(Stdio::null())
        .spawn()
        .expect("ip netns exec unshare (iproute2, util-linux)");
    let mine = fs::read_link("/proc/self/ns/mnt").unwrap();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let pid = holder.id();
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        if comm.trim() == "sleep" && ns.is_some_and(|ns| ns != mine) {
            return holder;
        }
        if Instant::now() >= deadline || matches!(holder.try_wait(), Ok(Some(_))) {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("could not make the NFS server's mount namespace in netns {netns}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM to exactly `child`'s PID, SIGKILL after [`STOP_TIMEOUT`], then reap it.
fn stop(child: &mut Child, what: &str) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while let Ok(None) = child.try_wait() {
        if Instant::now() >= deadline {
            eprintln!("nfs: {what} ({}) ignored SIGTERM, killing", child.id());
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        if let Some(g) = self.ganesha.as_mut() {
            stop(g, "ganesha.nfsd");
        }
        if let Some(r) = self.rpcbind.as_mut() {
            stop(r, "rpcbind");
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_lines_become_ganesha_exports() {
        let text =
            "# pinetboot\n/nfs/raspi1 10.99.0.0/24(rw,sync,no_subtree_check,no_root_squash)\n";
        let exports = parse_exports(text);
        assert_eq!(exports[0].path, "/nfs/raspi1");
        let conf = ganesha_conf(
            &exports,
            Path::new("/tmp/r/"),
            Path::new("/s"),
            Path::new("/p"),
        );
        assert!(conf.contains("Path = \"/tmp/r/nfs/raspi1\";"), "{conf}");
        assert!(conf.contains("Pseudo = \"/nfs/raspi1\";"), "{conf}");
        assert!(conf.contains("Clients = 10.99.0.0/24;"), "{conf}");
        assert!(conf.contains("Access_Type = RW;"), "{conf}");
        assert!(conf.contains("Squash = No_Root_Squash;"), "{conf}");
    }
}
