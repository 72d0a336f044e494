//! The client-root tweaks that make a Raspberry Pi OS root boot over NFS and reachable:
//! identity (hostname, hosts), SD-card first-boot services masked, SSH enabled by unit link
//! with declared keys, cloud-init disabled on Trixie images. See README "What pinetboot changes
//! inside a client root".

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::ValidClient;
use crate::facts::TreeFacts;
use crate::host::atomic::Owner;
use crate::host::confined::EntryKind;
use crate::resource::Resource;
use crate::resource::client_file::{ClientFile, Want};

/// A file only root may read: nothing in a boot folder that TFTP may serve, nothing a local
/// user of the server may read.
pub const SECRET: Owner = Owner {
    mode: 0o600,
    uid: Some(0),
    gid: Some(0),
};

/// The client being expanded.
pub struct Target<'a> {
    /// The client's name.
    pub name: &'a str,
    /// Host path of its root.
    pub root: &'a str,
    /// Its checked settings.
    pub client: &'a ValidClient,
    /// Its boot folder, relative to the root.
    pub boot_dir: &'a Path,
    /// The server's address (TFTP and NFS).
    pub server: &'a str,
    /// The tree is an image's shared root (`root: shared`), not one client's: no identity
    /// of its own (each Pi's hostname comes from its kernel command line, its SSH host keys
    /// are made at each boot), and the RAM overlay it boots with.
    pub shared: bool,
}

/// The init the kernel starts on a shared root: it puts a tmpfs overlay over the read-only
/// NFS root, then starts systemd (`init=` on a shared client's command line).
pub const OVERLAY_INIT: &str = "usr/lib/pinetboot/overlay-init";
/// Its text.
pub const OVERLAY_INIT_SCRIPT: &str = include_str!("overlay-init");
/// The unit that gives a Pi on a shared root its hostname in `/etc/hostname` and
/// `/etc/hosts` and new SSH host keys, at every boot (in RAM).
pub const SHARED_UNIT: &str = "etc/systemd/system/pinetboot-shared.service";
/// Its text.
pub const SHARED_UNIT_TEXT: &str = include_str!("pinetboot-shared.service");

/// The paths whose kind [`expand`] looks at (resolved inside the tree): the markers of
/// cloud-init, SSH, raspi-firmware's kernel hook and the network stacks.
pub const FACT_PATHS: &[&str] = &[
    "etc/cloud",
    "etc/ssh",
    RASPI_FIRMWARE_HOOK,
    "lib/systemd/system/networking.service",
    "usr/lib/systemd/system/networking.service",
    "lib/systemd/system/systemd-networkd.service",
    "usr/lib/systemd/system/systemd-networkd.service",
    "etc/NetworkManager",
    "etc/dhcpcd.conf",
    "sbin/pivot_root",
    "sbin/chroot",
    "lib/modules",
    "mnt",
];

/// What a shared root's overlay init needs from its image, and the package each comes in.
pub const SHARED_NEEDS: &[(&str, &str)] = &[
    ("sbin/pivot_root", "util-linux"),
    ("sbin/chroot", "coreutils"),
    (
        "lib/modules",
        "a kernel with its modules (overlayfs), e.g. linux-image-rpi-v8",
    ),
    ("mnt", "base-files: the folder the RAM overlay is built in"),
];

/// Why an image cannot boot a shared root (`None`: it can), read from its tree.
pub fn shared_missing(
    tree: &TreeFacts,
) -> Result<Option<String>, crate::host::confined::Violation> {
    let mut missing = Vec::new();
    for (path, package) in SHARED_NEEDS {
        if tree.entry_resolved(Path::new(path))?.is_none() {
            missing.push(format!("/{path} ({package})"));
        }
    }
    Ok((!missing.is_empty()).then(|| missing.join(", ")))
}

/// Debian's raspi-firmware kernel hook (see `raspi_firmware`).
const RASPI_FIRMWARE_HOOK: &str = "etc/kernel/postinst.d/z50-raspi-firmware";

/// The SSH host keys whose presence in an *image* says it was booted.
pub const IMAGE_HOST_KEYS: &[&str] = &[
    "ssh_host_ed25519_key",
    "ssh_host_rsa_key",
    "ssh_host_ecdsa_key",
];

/// Adds the client-root resources for `target` to `out` (and any warnings), from the users
/// and identity files of `view` (the client root's facts, or its image's before the root
/// exists). Pure.
pub fn expand(
    view: &TreeFacts,
    target: &Target<'_>,
    out: &mut Vec<Resource>,
    warnings: &mut Vec<String>,
    file: &dyn Fn(PathBuf, Want) -> Resource,
) -> anyhow::Result<()> {
    let Target {
        name,
        root,
        client,
        boot_dir,
        server: _,
        shared,
    } = *target;
    let item = |rel: &str, want: Want, owner: Owner, enforce: bool| {
        Resource::ClientFile(ClientFile {
            client: name.to_owned(),
            root: root.to_owned(),
            rel: PathBuf::from(rel),
            want,
            owner,
            enforce,
        })
    };
    let root_dir = Owner {
        mode: 0o755,
        uid: Some(0),
        gid: Some(0),
    };
    // Identity: the client's own, or on a shared root each Pi's from its command line.
    if !shared {
        out.push(file(
            PathBuf::from("etc/hostname"),
            Want::Content(format!("{}\n", client.hostname).into_bytes()),
        ));
        out.push(file(
            PathBuf::from("etc/hosts"),
            Want::HostsEntry(client.hostname.clone()),
        ));
    }
    // A declared user not in the tree yet: userconf.txt, read by userconfig.service on first
    // boot (which creates the user and deletes the file, so it is only wanted until then).
    // It holds a password hash and sits in the boot folder, which TFTP serves to anyone on
    // the boot network: root-only 0600, which dnsmasq's TFTP server refuses (it serves as an
    // unprivileged user, or, run as root, only world-readable files) while root on the Pi
    // reads it over NFS (no_root_squash). See README "Secrets and the TFTP folder".
    let pending_user = match &client.user {
        Some(u) if !user_exists(view, &u.name)? => Some(u),
        _ => None,
    };
    if let Some(u) = pending_user {
        out.push(item(
            &boot_dir.join("userconf.txt").to_string_lossy(),
            Want::Secret(format!("{}:{}\n", u.name, u.password_hash).into_bytes()),
            SECRET,
            true,
        ));
    }
    // SD-card first-boot services: masked (a link to /dev/null in etc/systemd/system).
    // userconfig.service stays while it has a userconf.txt to apply (masked, it could not
    // create the user; with no userconf.txt it would prompt on tty8 and block a headless boot).
    out.push(item("etc/systemd/system", Want::Dir, root_dir, false));
    for unit in crate::pios::MASKED_UNITS {
        if *unit == "userconfig.service" && pending_user.is_some() {
            continue;
        }
        out.push(item(
            &format!("etc/systemd/system/{unit}"),
            Want::Link("/dev/null".into()),
            root_dir,
            false,
        ));
    }
    if shared {
        shared_root(out, &item, root_dir);
    }
    // cloud-init (Trixie): pinetboot provides identity and keys itself, so it is disabled.
    if view
        .entry_resolved(Path::new("etc/cloud"))?
        .is_some_and(|e| e.kind == EntryKind::Dir)
    {
        out.push(file(
            PathBuf::from("etc/cloud/cloud-init.disabled"),
            Want::Content(
                b"# pinetboot: identity and SSH keys come from pinetboot.yaml\n".to_vec(),
            ),
        ));
    }
    // Every client its own SSH host key (never an image's: see `identity_warning`); on a
    // shared root each Pi makes its own at boot.
    if !shared
        && view
            .entry_resolved(Path::new("etc/ssh"))?
            .is_some_and(|e| e.kind == EntryKind::Dir)
    {
        out.push(item(
            crate::sshkeys::HOST_KEY,
            Want::SshHostKey {
                comment: format!("root@{}", client.hostname),
            },
            root_dir,
            false,
        ));
    }
    // pinetboot's own userconf.txt is made root's alone by the apply (above).
    let ours: &[&str] = if pending_user.is_some() {
        &["userconf.txt"]
    } else {
        &[]
    };
    served_secrets(view, name, boot_dir, ours, warnings)?;
    // A kernel upgrade on a RAM overlay is gone at the next boot: nothing to point at NFS.
    if !shared {
        raspi_firmware(view, target, out, &item)?;
    }
    network_stacks(view, out, &item)?;
    let Some(ssh) = &client.ssh else {
        return Ok(());
    };
    if ssh.enable {
        // What `systemctl enable ssh` makes (the boot/ssh marker is deleted by the Pi on first
        // boot, so a link is the state that does not drift).
        out.push(item(
            "etc/systemd/system/multi-user.target.wants",
            Want::Dir,
            root_dir,
            false,
        ));
        out.push(item(
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            Want::Link("/lib/systemd/system/ssh.service".into()),
            root_dir,
            false,
        ));
        out.push(item(
            "etc/systemd/system/sshd.service",
            Want::Link("/lib/systemd/system/ssh.service".into()),
            root_dir,
            false,
        ));
    }
    if !ssh.authorized_keys.is_empty() {
        let user = ssh.user.as_deref().unwrap_or("root");
        if pending_user.is_some_and(|u| u.name == user) {
            warnings.push(format!(
                "client {name}: user {user} is created on the Pi's first boot; its SSH keys are written by the first apply after that"
            ));
            return Ok(());
        }
        let PasswdUser { uid, gid, home } = lookup_user(view, user)?.with_context(|| {
            format!(
                "user {user} does not exist in the client root's etc/passwd (Raspberry Pi OS has no default user since 2022); use root or create the user in the image"
            )
        })?;
        let owner_dir = Owner {
            mode: 0o700,
            uid: Some(uid),
            gid: Some(gid),
        };
        let owner_file = Owner {
            mode: 0o600,
            uid: Some(uid),
            gid: Some(gid),
        };
        if view.entry(Path::new(&home))?.is_none() {
            out.push(item(
                &home,
                Want::Dir,
                Owner {
                    mode: 0o700,
                    uid: Some(uid),
                    gid: Some(gid),
                },
                false,
            ));
        }
        out.push(item(&format!("{home}/.ssh"), Want::Dir, owner_dir, true));
        let mut keys =
            String::from("# Managed by pinetboot (pinetboot.yaml ssh.authorized_keys).\n");
        for k in &ssh.authorized_keys {
            keys.push_str(k.trim());
            keys.push('\n');
        }
        out.push(item(
            &format!("{home}/.ssh/authorized_keys"),
            Want::Content(keys.into_bytes()),
            owner_file,
            true,
        ));
    }
    Ok(())
}

/// What a shared root boots with: the overlay init and the per-boot identity unit, enabled.
fn shared_root(
    out: &mut Vec<Resource>,
    item: &dyn Fn(&str, Want, Owner, bool) -> Resource,
    root_dir: Owner,
) {
    let program = Owner {
        mode: 0o755,
        uid: Some(0),
        gid: Some(0),
    };
    let text = Owner {
        mode: 0o644,
        uid: Some(0),
        gid: Some(0),
    };
    out.push(item("usr/lib/pinetboot", Want::Dir, root_dir, false));
    out.push(item(
        OVERLAY_INIT,
        Want::Content(OVERLAY_INIT_SCRIPT.as_bytes().to_vec()),
        program,
        true,
    ));
    out.push(item(
        SHARED_UNIT,
        Want::Content(SHARED_UNIT_TEXT.as_bytes().to_vec()),
        text,
        true,
    ));
    out.push(item(
        "etc/systemd/system/sysinit.target.wants",
        Want::Dir,
        root_dir,
        false,
    ));
    out.push(item(
        "etc/systemd/system/sysinit.target.wants/pinetboot-shared.service",
        Want::Link("../pinetboot-shared.service".into()),
        root_dir,
        false,
    ));
    // First-boot units that disable themselves once done: on a RAM overlay the disabling is
    // lost, so they would run at every boot (Debian's raspi-firmware reconfiguration rewrote
    // ~78 MB of boot files into RAM and took 45-75 s on the real kernel). Skipped on shared
    // boots by a drop-in; a skipped unit still satisfies what requires it.
    for unit in SELF_DISABLING_UNITS {
        out.push(item(
            &format!("etc/systemd/system/{unit}.d"),
            Want::Dir,
            root_dir,
            false,
        ));
        out.push(item(
            &format!("etc/systemd/system/{unit}.d/pinetboot-shared.conf"),
            Want::Content(SKIP_ON_SHARED.as_bytes().to_vec()),
            text,
            true,
        ));
    }
}

/// First-boot units that disable themselves after one run (Debian's raspi images, Raspberry
/// Pi OS): skipped on a shared root (see [`shared_root`]).
pub const SELF_DISABLING_UNITS: &[&str] = &[
    "rpi-reconfigure-raspi-firmware.service",
    "regenerate_ssh_host_keys.service",
];

/// The drop-in that skips such a unit when the Pi boots a shared root.
const SKIP_ON_SHARED: &str = "# pinetboot: a one-time first-boot unit; on a shared root (RAM overlay) it would run at\n\
# every boot. pinetboot-shared.service makes the SSH host keys there.\n\
[Unit]\n\
ConditionKernelCommandLine=!init=/usr/lib/pinetboot/overlay-init\n";

/// Warns when an *image* looks booted already: every client cloned from it would share its
/// machine-id and SSH host keys (two Pis with one identity). A client root that has booted is
/// expected to hold its own identity and is never warned about.
pub fn identity_warning(
    image: &TreeFacts,
    image_name: &str,
    image_dir: &str,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let machine_id = image
        .read_resolved(Path::new("etc/machine-id"))?
        .unwrap_or_default();
    let id = String::from_utf8_lossy(&machine_id);
    let id_set = !id.trim().is_empty() && id.trim() != "uninitialized";
    let host_keys = IMAGE_HOST_KEYS
        .iter()
        .map(|k| image.entry_resolved(&Path::new("etc/ssh").join(k)))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .any(Option::is_some);
    if id_set && host_keys {
        warnings.push(format!(
            "image {image_name} ({image_dir}) looks already booted (etc/machine-id is set and SSH host keys exist); Pis cloned from it share one identity — reset them in the image: empty etc/machine-id and delete etc/ssh/ssh_host_*"
        ));
    }
    Ok(())
}

/// Files that first-boot tools (Raspberry Pi Imager's customisation, cloud-init's NoCloud
/// seed, userconf-pi, wpa_supplicant) read from the boot folder, and that may hold password
/// hashes or Wi-Fi keys.
pub const BOOT_FOLDER_SECRETS: &[&str] = &[
    "firstrun.sh",
    "userconf",
    "userconf.txt",
    "wpa_supplicant.conf",
    "user-data",
    "network-config",
    "custom.toml",
];

/// Warns about such files in the client's boot folder that TFTP would serve to anyone on the
/// boot network (readable by others: dnsmasq serves them), but those in `ours`. They are the
/// client's (or its image's) files: pinetboot never changes them, it says so.
fn served_secrets(
    view: &TreeFacts,
    name: &str,
    boot_dir: &Path,
    ours: &[&str],
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    for file in BOOT_FOLDER_SECRETS.iter().filter(|f| !ours.contains(f)) {
        let rel = boot_dir.join(file);
        if let Some(e) = view.entry(&rel)?
            && e.kind == EntryKind::File
            && e.mode & 0o004 != 0
            && view.read(&rel)?.is_some_and(|text| has_settings(&text))
        {
            warnings.push(format!(
                "client {name}: {} is served over TFTP to anyone on the boot network (mode {:04o}) and may hold secrets (password hashes, Wi-Fi keys); if the Pi does not need it, delete it, else make it 0600 (root on the Pi still reads it over NFS)",
                rel.display(),
                e.mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// Whether a file holds more than blank lines and `#` comments (the templates an image ships,
/// such as a commented `user-data`, hold nothing secret).
fn has_settings(text: &[u8]) -> bool {
    text.split(|b| *b == b'\n').any(|line| {
        let line = line.trim_ascii();
        !line.is_empty() && !line.starts_with(b"#")
    })
}

/// Debian's raspi-firmware regenerates `cmdline.txt` from `/etc/default/raspi-firmware` on
/// the first boot (Debian raspi images re-run it) and on every kernel upgrade, back to
/// `root=PARTUUID=…`: the next boot would fail. pinetboot sets `ROOTPART` in a fenced block
/// of that file to its NFS arguments, so the hook writes an equivalent command line. The hook
/// also refuses to run unless the boot folder is a mount point (on an NFS root it is a plain
/// folder), so the client gets a bind mount of the boot folder onto itself.
fn raspi_firmware(
    view: &TreeFacts,
    target: &Target<'_>,
    out: &mut Vec<Resource>,
    item: &dyn Fn(&str, Want, Owner, bool) -> Resource,
) -> anyhow::Result<()> {
    let hook = Path::new(RASPI_FIRMWARE_HOOK);
    if view.entry_resolved(hook)?.is_none() {
        return Ok(());
    }
    let file = Owner {
        mode: 0o644,
        uid: Some(0),
        gid: Some(0),
    };
    let rootpart =
        crate::pios::raspi_firmware_rootpart(target.server, target.root, &target.client.cmdline);
    out.push(item(
        "etc/default/raspi-firmware",
        Want::Block(vec![
            "# The root is on NFS (pinetboot.yaml): raspi-firmware writes these arguments into cmdline.txt.".to_owned(),
            format!("ROOTPART={}", crate::pios::shell_quote(&rootpart)),
        ]),
        file,
        false,
    ));
    let boot = format!("/{}", target.boot_dir.display());
    let unit = format!("{}.mount", boot.trim_start_matches('/').replace('/', "-"));
    out.push(item(
        &format!("etc/systemd/system/{unit}"),
        Want::Content(
            format!(
                "# Managed by pinetboot. On an NFS root the boot folder is a plain folder, but\n\
                 # raspi-firmware's kernel hook refuses to run unless it is a mount point.\n\
                 [Unit]\n\
                 Description=Boot folder on the NFS root (pinetboot)\n\
                 DefaultDependencies=no\n\
                 Before=local-fs.target\n\
                 \n\
                 [Mount]\n\
                 What={boot}\n\
                 Where={boot}\n\
                 Type=none\n\
                 Options=bind\n\
                 \n\
                 [Install]\n\
                 WantedBy=local-fs.target\n"
            )
            .into_bytes(),
        ),
        file,
        false,
    ));
    let root_dir = Owner {
        mode: 0o755,
        ..file
    };
    out.push(item(
        "etc/systemd/system/local-fs.target.wants",
        Want::Dir,
        root_dir,
        false,
    ));
    out.push(item(
        &format!("etc/systemd/system/local-fs.target.wants/{unit}"),
        Want::Link(format!("/etc/systemd/system/{unit}")),
        root_dir,
        false,
    ));
    Ok(())
}

/// The boot interface belongs to the kernel (`ip=dhcp`): the root is mounted over it. A
/// network stack that deconfigures it at shutdown cuts the root away before it is unmounted,
/// and shutdown hangs. For each stack the images use, the client gets a drop-in that leaves
/// the wired interface configured at shutdown:
/// - ifupdown (Debian): `networking.service` and `ifup@.service` run no `ifdown` on stop;
/// - systemd-networkd: a first-matching `.network` for wired links with
///   `KeepConfiguration=yes`;
/// - NetworkManager (Raspberry Pi OS Bookworm): wired devices unmanaged;
/// - dhcpcd (Bullseye): wired interfaces denied, in a fenced block of `dhcpcd.conf`.
fn network_stacks(
    view: &TreeFacts,
    out: &mut Vec<Resource>,
    item: &dyn Fn(&str, Want, Owner, bool) -> Resource,
) -> anyhow::Result<()> {
    let file = Owner {
        mode: 0o644,
        uid: Some(0),
        gid: Some(0),
    };
    let dir = Owner {
        mode: 0o755,
        ..file
    };
    let has = |p: &str| view.entry_resolved(Path::new(p)).map(|e| e.is_some());
    const WHY: &str = "# Managed by pinetboot: the root is on NFS over the wired interface, which the kernel\n# configured (ip=dhcp); it must stay up until the root is unmounted at shutdown.\n";
    if has("lib/systemd/system/networking.service")?
        || has("usr/lib/systemd/system/networking.service")?
    {
        for unit in ["networking.service", "ifup@.service"] {
            out.push(item(
                &format!("etc/systemd/system/{unit}.d"),
                Want::Dir,
                dir,
                false,
            ));
            out.push(item(
                &format!("etc/systemd/system/{unit}.d/pinetboot-nfsroot.conf"),
                Want::Content(format!("{WHY}[Service]\nExecStop=\n").into_bytes()),
                file,
                false,
            ));
        }
    }
    if has("lib/systemd/system/systemd-networkd.service")?
        || has("usr/lib/systemd/system/systemd-networkd.service")?
    {
        out.push(item("etc/systemd/network", Want::Dir, dir, false));
        out.push(item(
            "etc/systemd/network/00-pinetboot-nfsroot.network",
            Want::Content(
                format!(
                    "{WHY}[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\nKeepConfiguration=yes\n"
                )
                .into_bytes(),
            ),
            file,
            false,
        ));
    }
    if view
        .entry_resolved(Path::new("etc/NetworkManager"))?
        .is_some_and(|e| e.kind == EntryKind::Dir)
    {
        out.push(item("etc/NetworkManager/conf.d", Want::Dir, dir, false));
        out.push(item(
            "etc/NetworkManager/conf.d/pinetboot-nfsroot.conf",
            Want::Content(
                format!("{WHY}[keyfile]\nunmanaged-devices=type:ethernet\n").into_bytes(),
            ),
            file,
            false,
        ));
    }
    if has("etc/dhcpcd.conf")? {
        out.push(item(
            "etc/dhcpcd.conf",
            Want::Block(vec![
                "# The wired interface is the kernel's (NFS root): dhcpcd leaves it alone."
                    .to_owned(),
                "denyinterfaces eth0 end0 enx*".to_owned(),
            ]),
            file,
            false,
        ));
    }
    Ok(())
}

/// A user's line in a tree's `etc/passwd`, as pinetboot uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdUser {
    uid: u32,
    gid: u32,
    /// The home folder, relative to the root (no leading `/`).
    home: String,
}

/// The uid, gid and home of a passwd line, or why pinetboot cannot use them.
fn parse_passwd_fields(uid: &[u8], gid: &[u8], home: &[u8]) -> Result<PasswdUser, String> {
    let id = |what: &str, raw: &[u8]| -> Result<u32, String> {
        let text = String::from_utf8_lossy(raw);
        // Digits only: no sign, no blanks (what `useradd` writes).
        if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
            return Err(format!("its {what} `{text}` is not a number"));
        }
        match text.parse::<u32>() {
            // (uid_t)-1 / (gid_t)-1: chown(2) reads it as "leave unchanged".
            Ok(u32::MAX) => Err(format!(
                "its {what} 4294967295 is ({what}_t)-1, which chown(2) takes as \"leave unchanged\""
            )),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("its {what} `{text}` is out of range")),
        }
    };
    let uid = id("uid", uid)?;
    let gid = id("gid", gid)?;
    let home = std::str::from_utf8(home)
        .map_err(|_| "its home folder is not UTF-8".to_owned())?
        .trim_start_matches('/');
    if home.is_empty() || home.contains('\0') || home.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!(
            "its home folder `/{home}` is not a folder below the root"
        ));
    }
    Ok(PasswdUser {
        uid,
        gid,
        home: home.trim_end_matches('/').to_owned(),
    })
}

/// The fields of `user`'s line in `passwd` (the first line with that name, as getpwnam(3)
/// reads it); `None` when no line names the user.
fn passwd_line<'a>(passwd: &'a [u8], user: &str) -> Option<Vec<&'a [u8]>> {
    passwd
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .map(|l| l.split(|b| *b == b':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[0] == user.as_bytes())
}

/// Whether the tree's `etc/passwd` has a line for `user` (whatever its other fields say).
fn user_exists(view: &TreeFacts, user: &str) -> anyhow::Result<bool> {
    Ok(view
        .read_resolved(Path::new("etc/passwd"))?
        .is_some_and(|p| passwd_line(&p, user).is_some()))
}

/// The home folder (relative to the root) of `user` in the tree's `etc/passwd`, when it has
/// a line pinetboot can use (the facts step reads what is there).
pub fn home_of(view: &TreeFacts, user: &str) -> anyhow::Result<Option<String>> {
    Ok(lookup_user(view, user)?.map(|u| u.home))
}

/// uid, gid and home of `user` from the tree's `etc/passwd`; `None` when it has no line for
/// the user. A client root is untrusted: a line whose ids pinetboot could not set (such as
/// 4294967295, chown's "leave unchanged") or whose home is not a folder below the root is a
/// violation of that tree (the client's conflict), never an apply that cannot converge.
fn lookup_user(view: &TreeFacts, user: &str) -> anyhow::Result<Option<PasswdUser>> {
    let rel = Path::new("etc/passwd");
    let Some(passwd) = view.read_resolved(rel)? else {
        return Ok(None);
    };
    let Some(f) = passwd_line(&passwd, user) else {
        return Ok(None);
    };
    parse_passwd_fields(f[2], f[3], f[5])
        .map(Some)
        .map_err(|why| {
            anyhow::Error::new(crate::host::confined::Violation::WrongKind(
                view.path().join(rel),
                "a passwd file pinetboot cannot use",
            ))
            .context(format!("user {user} in etc/passwd: {why}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_fields_pinetboot_cannot_use_are_refused() {
        let ok = parse_passwd_fields(b"1000", b"1000", b"/home/alice/").unwrap();
        assert_eq!(
            ok,
            PasswdUser {
                uid: 1000,
                gid: 1000,
                home: "home/alice".into()
            }
        );
        assert_eq!(
            parse_passwd_fields(b"4294967294", b"0", b"/root")
                .unwrap()
                .uid,
            u32::MAX - 1
        );
        for (uid, gid, home, why) in [
            (
                &b"4294967295"[..],
                &b"0"[..],
                &b"/root"[..],
                "uid 4294967295 is (uid_t)-1",
            ),
            (b"0", b"4294967295", b"/root", "gid 4294967295 is (gid_t)-1"),
            (
                b"4294967296",
                b"0",
                b"/root",
                "uid `4294967296` is out of range",
            ),
            (b"+0", b"0", b"/root", "uid `+0` is not a number"),
            (b" 0", b"0", b"/root", "uid ` 0` is not a number"),
            (b"", b"0", b"/root", "uid `` is not a number"),
            (b"0", b"-1", b"/root", "gid `-1` is not a number"),
            (b"0", b"0", b"/", "home folder `/` is not"),
            (
                b"0",
                b"0",
                b"/home/../etc",
                "is not a folder below the root",
            ),
            (b"0", b"0", b"/ho\xffme", "home folder is not UTF-8"),
            (b"0", b"0", b"/ho\0me", "is not a folder below the root"),
        ] {
            let err = parse_passwd_fields(uid, gid, home).unwrap_err();
            assert!(err.contains(why), "{err} (want {why})");
        }
    }

    #[test]
    fn only_files_with_settings_may_hold_secrets() {
        assert!(!has_settings(
            b"#cloud-config\n# users:\n\n   # - name: pi\n"
        ));
        assert!(!has_settings(b""));
        assert!(has_settings(b"#cloud-config\nusers:\n- name: pi\n"));
        assert!(has_settings(b"#!/bin/sh\necho 'pi:$6$x' | chpasswd -e\n"));
    }

    #[test]
    fn the_first_line_naming_the_user_counts() {
        let p = b"root:x:0:0:root:/root:/bin/bash\r\nalice:x:1000:1000::/home/alice:/bin/sh\nalice:x:5:5::/x:/bin/sh\nbob:x\n";
        assert_eq!(passwd_line(p, "alice").unwrap()[2], b"1000");
        assert_eq!(passwd_line(p, "root").unwrap()[6], b"/bin/bash");
        assert!(passwd_line(p, "bob").is_none());
        assert!(passwd_line(p, "ali").is_none());
    }
}
