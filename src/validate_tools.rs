//! Generated files checked by their own tools before they land (DESIGN invariant 7):
//! the exports drop-in by the real `exportfs` (isolated in a private mount and network
//! namespace, so neither the host's files, its mount table nor its kernel export table are
//! touched), the dnsmasq drop-in by `dnsmasq --test` ([`crate::handlers::dnsmasq_test`]).
//!
//! Under `--root DIR` the paths a file names (export paths) are
//! checked as `DIR/path`, where they exist; the file that lands still names host paths.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::host::{Host, process, scratch, tools};
use crate::resource::{Handler, Resource};

/// The isolation recipe of `reference/tooling.md` §7: temporary `/etc/exports`,
/// `/etc/exports.d` (or, where the host has no `/etc/exports.d`, a copy of `/etc`) and
/// `/var/lib/nfs` bound over the real ones inside `unshare -m -n --propagation private`.
/// `$1` is the scratch folder holding `exports`, `exports.d/` and `varlib/`.
const EXPORTFS_SCRIPT: &str = r#"T=$1
cp -a /var/lib/nfs/. "$T/varlib"
if [ -f /etc/exports ] && [ -d /etc/exports.d ]; then
  mount --bind "$T/exports"   /etc/exports
  mount --bind "$T/exports.d" /etc/exports.d
else
  mkdir "$T/etc"
  cp -a /etc/. "$T/etc"
  rm -rf "$T/etc/exports.d"
  cp -a "$T/exports.d" "$T/etc/exports.d"
  cp "$T/exports" "$T/etc/exports"
  mount --bind "$T/etc" /etc
fi
mount --bind "$T/varlib" /var/lib/nfs
exportfs -ra && exportfs -s"#;

/// Prefixes `root` to an absolute host path (unchanged when `root` is `/`).
fn under(root: &Path, path: &str) -> String {
    if root == Path::new("/") || !path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}{path}", root.display())
    }
}

/// The exports text with every export path resolved under `root` (for checking only).
pub fn exports_under(root: &Path, content: &str) -> String {
    content
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                return l.to_owned();
            }
            match t.split_once(char::is_whitespace) {
                Some((path, rest)) => format!("{} {rest}", under(root, path)),
                None => under(root, t),
            }
        })
        .map(|l| l + "\n")
        .collect()
}

/// exportfs numbers only the lines that are not comments: maps its `F:N:` to the file's line.
fn file_line(content: &str, reported: usize) -> Option<usize> {
    content
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .nth(reported.checked_sub(1)?)
        .map(|(i, _)| i + 1)
}

/// Checks exports(5) text with the real `exportfs -ra` in an isolated namespace (needs root).
/// `host_path` names the file in messages and decides where it is put (`*.exports` go in
/// `/etc/exports.d`, anything else is checked as `/etc/exports`). The copies are made in a
/// folder of their own in `scratch` (pinetboot's scratch space). Returns `exportfs -s`.
pub fn exports_check(host_path: &str, content: &str, scratch: &Path) -> anyhow::Result<String> {
    let Some(exportfs) = tools::which("exportfs") else {
        bail!(
            "exportfs is not installed (apt install nfs-kernel-server): cannot check {host_path}"
        );
    };
    if !process::is_root() {
        bail!(
            "checking {host_path} with exportfs needs root (a private mount namespace); run as root"
        );
    }
    let dir = scratch::tempdir(scratch, "exportfs")?;
    let t = dir.path();
    let name = Path::new(host_path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("pinetboot.exports");
    let folders = ["exports.d", "varlib"];
    if name.ends_with(".exports") {
        let in_d = format!("exports.d/{name}");
        scratch::populate(
            t,
            &folders,
            &[("exports", b""), (&in_d, content.as_bytes())],
        )?;
    } else {
        scratch::populate(t, &folders, &[("exports", content.as_bytes())])?;
    }
    let script = EXPORTFS_SCRIPT.replace("exportfs -", &format!("{} -", exportfs.display()));
    let out = tools::run(
        Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-ec"])
            .arg(&script)
            .arg("sh")
            .arg(t),
    );
    match out {
        Ok(text) => Ok(text),
        Err(e) => {
            let msg = format!("{e:#}");
            // `exportfs: /etc/exports.d/F:N: …`: say which line of the file that is.
            let line = msg
                .split(&format!("{name}:"))
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.trim().parse::<usize>().ok())
                .and_then(|n| file_line(content, n));
            let at = line
                .map(|l| format!(" (line {l} of the file)"))
                .unwrap_or_default();
            bail!("exportfs rejects {host_path}{at}: {msg}")
        }
    }
}

/// Runs the tool check for a resource about to be applied: the exports drop-in with
/// `exportfs`. (The dnsmasq drop-in is checked by
/// its resource itself with `dnsmasq --test`.) Scratch copies go in `scratch`. An error stops
/// the apply before the file lands.
pub fn before_apply(r: &Resource, host: &Host, scratch: &Path) -> anyhow::Result<()> {
    match r {
        Resource::HostFile(f) if f.handler == Some(Handler::ReloadExports) => {
            if tools::which("exportfs").is_none() || !process::is_root() {
                tracing::warn!(
                    "{} was not checked with exportfs (needs nfs-kernel-server and root)",
                    f.path
                );
                return Ok(());
            }
            exports_check(&f.path, &exports_under(host.root(), &f.content), scratch)
                .with_context(|| format!("{} was not written", f.path))?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolved_under_root_for_checking() {
        let root = Path::new("/tmp/r");
        assert_eq!(
            exports_under(root, "# x\n/nfs/a 10.0.0.0/24(rw)\n"),
            "# x\n/tmp/r/nfs/a 10.0.0.0/24(rw)\n"
        );
        assert_eq!(
            exports_under(Path::new("/"), "/nfs/a 10.0.0.0/24(rw)\n"),
            "/nfs/a 10.0.0.0/24(rw)\n"
        );
    }

    #[test]
    fn exportfs_line_numbers_skip_comments() {
        let text = "# a\n# b\n/x h(rw)\n\n/y h(bad)\n";
        assert_eq!(file_line(text, 1), Some(3));
        assert_eq!(file_line(text, 2), Some(4));
        assert_eq!(file_line(text, 3), Some(5));
        assert_eq!(file_line(text, 0), None);
    }
}
