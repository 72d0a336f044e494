//! Each client's TFTP folder: bind-mounted onto its serial folder, reachable by dnsmasq's user,
//! its `start4.elf` readable.

use super::Check;
use crate::doctor::Finding;
use crate::doctor::facts::{ClientFacts, Facts, Meta, User};

/// Whether `user` may use `meta` with the permission bits in `need` (4 read, 1 execute).
pub fn may(user: &User, meta: &Meta, need: u32) -> bool {
    if user.uid == 0 {
        return true;
    }
    let bits = if meta.uid == user.uid {
        meta.mode >> 6
    } else if meta.gid == user.gid {
        meta.mode >> 3
    } else {
        meta.mode
    } & 7;
    bits & need == need
}

/// One client's TFTP folder: bind-mounted onto its serial folder, reachable by dnsmasq's user,
/// `start4.elf` there and world-readable.
pub(super) fn client(f: &Facts, c: &ClientFacts, out: &mut Vec<Finding>) {
    let id = |what: &str| format!("client.{}.{what}", c.name);
    let check = Check::new(
        id("mount"),
        format!("{} is bind-mounted onto {}", c.name, c.target),
    );
    let Some(source) = &c.source else {
        out.push(check.problem(
            format!(
                "pinetboot has not set up {} yet (no record in the state file)",
                c.name
            ),
            "run `pinetboot apply`",
        ));
        return;
    };
    // Never `mount --bind SOURCE`: mount(8) would resolve a path inside the client root.
    let remount = format!(
        "`pinetboot mount` (mounts {source} by descriptor, refusing a symlink; pinetboot-mount.service does it at boot), or `pinetboot apply`"
    );
    if !c.mounted {
        out.push(check.problem(
            format!(
                "nothing is mounted on {}: the Pi with serial {} finds no boot files",
                c.target, c.serial
            ),
            remount,
        ));
        return;
    }
    match &c.same_folder {
        Ok(Some(true)) => out.push(check.ok(format!("{} shows {source}", c.target))),
        Ok(_) => out.push(check.problem(
            format!(
                "{} is mounted, but not from {source} (another device or inode)",
                c.target
            ),
            format!("`umount {}`, then {remount}", c.target),
        )),
        Err(e) => out.push(check.problem(
            format!("cannot compare {} with {source}: {e}", c.target),
            "inspect the client root (a planted symlink?), then `pinetboot plan`",
        )),
    }
    // What the TFTP server's user can reach.
    let user = &f.tftp_user;
    let check = Check::new(
        id("access"),
        format!(
            "{} is readable by the TFTP server's user {}",
            c.target, user.name
        ),
    );
    let mut blocked = Vec::new();
    for e in &c.components {
        match &e.meta {
            Ok(Some(m)) if m.dir && !may(user, m, 1) => blocked.push(format!(
                "{} ({:04o}, owner {}:{}) cannot be entered",
                e.path, m.mode, m.uid, m.gid
            )),
            Ok(Some(_)) => {}
            Ok(None) => blocked.push(format!("{} does not exist", e.path)),
            Err(err) => blocked.push(format!("{}: {err}", e.path)),
        }
    }
    if let Some(last) = c.components.last()
        && let Ok(Some(m)) = &last.meta
        && m.dir
        && !may(user, m, 4)
    {
        blocked.push(format!("{} ({:04o}) cannot be listed", last.path, m.mode));
    }
    if blocked.is_empty() {
        out.push(check.ok(format!(
            "every folder down to it can be entered ({})",
            user.source
        )));
    } else {
        out.push(check.problem(
            format!(
                "{} (uid {}, gid {}; {})",
                blocked.join("; "),
                user.uid,
                user.gid,
                user.source
            ),
            format!(
                "`chmod a+rx` the folders named above (0755; never 0777): dnsmasq drops root and serves as {}",
                user.name
            ),
        ));
        return;
    }
    let check = Check::new(
        id("start4"),
        format!("{}/start4.elf is there and world-readable", c.target),
    );
    let path = &c.start4.path;
    match &c.start4.meta {
        Ok(Some(m)) if m.file && may(user, m, 4) => out.push(check.ok(
            format!("{:04o}", m.mode),
        )),
        Ok(Some(m)) if m.file => out.push(check.problem(
            format!(
                "{path} ({:04o}, owner {}:{}) cannot be read by {}",
                m.mode, m.uid, m.gid, user.name
            ),
            format!("`chmod a+r {path}` (0644)"),
        )),
        Ok(Some(_)) => out.push(check.problem(
            format!("{path} is not a regular file"),
            "put the firmware's start4.elf there (from the image's boot folder)",
        )),
        Ok(None) => out.push(check.problem(
            format!(
                "{path} is missing: the Pi probes SERIAL/start4.elf first and, without it, falls back to the TFTP root"
            ),
            format!(
                "copy start4.elf (and fixup4.dat) from the image's boot folder into {source}, or declare them under images.NAME.files and run `pinetboot apply`"
            ),
        )),
        Err(e) => out.push(check.problem(
            format!("{path}: {e}"),
            "check the file's folder and filesystem",
        )),
    }
}
