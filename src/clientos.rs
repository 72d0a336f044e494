//! The client-root tweaks that make a Raspberry Pi OS root boot over NFS and reachable:
//! identity (hostname, hosts), SD-card first-boot services masked, SSH enabled by unit link
//! with declared keys, cloud-init disabled on Trixie images. See README "What pinetboot changes
//! inside a client root".

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::ValidClient;
use crate::host::atomic::Owner;
use crate::host::confined::{EntryKind, Tree};
use crate::resource::Resource;
use crate::resource::client_file::{ClientFile, Want};

/// Adds the client-root resources for `client` to `out`, reading users from `view`.
pub fn expand(
    view: &Tree,
    name: &str,
    root: &str,
    client: &ValidClient,
    out: &mut Vec<Resource>,
    file: &dyn Fn(PathBuf, Want) -> Resource,
) -> anyhow::Result<()> {
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
    // Identity.
    out.push(file(
        PathBuf::from("etc/hostname"),
        Want::Content(format!("{}\n", client.hostname).into_bytes()),
    ));
    out.push(file(
        PathBuf::from("etc/hosts"),
        Want::HostsEntry(client.hostname.clone()),
    ));
    // SD-card first-boot services: masked (a link to /dev/null in etc/systemd/system).
    out.push(item("etc/systemd/system", Want::Dir, root_dir, false));
    for unit in crate::pios::MASKED_UNITS {
        out.push(item(
            &format!("etc/systemd/system/{unit}"),
            Want::Link("/dev/null".into()),
            root_dir,
            false,
        ));
    }
    // cloud-init (Trixie): pinetboot provides identity and keys itself, so it is disabled.
    if view
        .entry(Path::new("etc/cloud"))?
        .is_some_and(|e| e.kind == EntryKind::Dir)
    {
        out.push(file(
            PathBuf::from("etc/cloud/cloud-init.disabled"),
            Want::Content(
                b"# pinetboot: identity and SSH keys come from pinetboot.yaml\n".to_vec(),
            ),
        ));
    }
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
        let (uid, gid, home) = lookup_user(view, user)?.with_context(|| {
            format!(
                "user {user} does not exist in the client root's etc/passwd (Raspberry Pi OS has no default user since 2022); use root or create the user in the image"
            )
        })?;
        let home = home.trim_start_matches('/').to_owned();
        if home.is_empty() || home.split('/').any(|c| c == ".." || c == ".") {
            anyhow::bail!("user {user}'s home folder in etc/passwd is not usable");
        }
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

/// uid, gid and home of `user` from the tree's etc/passwd.
fn lookup_user(view: &Tree, user: &str) -> anyhow::Result<Option<(u32, u32, String)>> {
    let Some(passwd) = view.read(Path::new("etc/passwd"))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&passwd);
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 6 && f[0] == user {
            Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_owned()))
        } else {
            None
        }
    }))
}
