//! A folder kept as hard links of another's files: a shared client's boot folder is its
//! shared root's boot folder, linked file by file (no bytes copied), but for the files the
//! client has of its own (`cmdline.txt`). Both folders are pinetboot's own, under the shared
//! root's base folder: nothing in them is a client's.
//!
//! Symlinks, devices and the like in the source are skipped (a boot folder is a FAT
//! partition's copy: folders and files only), and a symlink in either folder is never
//! followed.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the linked folder lacks, and holds too much of, relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDiff {
    /// Folders and files of the source missing from the copy, or there as another inode.
    pub missing: Vec<PathBuf>,
    /// Entries of the copy the source does not have (not counting `own` names at the top).
    pub extra: Vec<PathBuf>,
}

impl LinkDiff {
    /// Whether the copy matches.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

fn entries(dir: &Path) -> io::Result<Vec<(OsString, std::fs::Metadata)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        out.push((e.file_name(), std::fs::symlink_metadata(e.path())?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(src: &Path, dst: &Path, rel: &Path, own: &[&str], out: &mut LinkDiff) -> io::Result<()> {
    let theirs = match entries(&dst.join(rel)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let ours = entries(&src.join(rel))?;
    let top = rel.as_os_str().is_empty();
    for (name, meta) in &ours {
        let path = rel.join(name);
        if top && own.iter().any(|o| name == *o) {
            continue;
        }
        let there = theirs.iter().find(|(n, _)| n == name).map(|(_, m)| m);
        if meta.is_dir() {
            match there {
                Some(m) if m.is_dir() => walk(src, dst, &path, own, out)?,
                _ => {
                    out.missing.push(path.clone());
                    walk(src, dst, &path, own, out)?;
                }
            }
        } else if meta.is_file() {
            let same = there.is_some_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
            if !same {
                out.missing.push(path);
            }
        }
    }
    for (name, m) in &theirs {
        let path = rel.join(name);
        if top && own.iter().any(|o| name == *o) {
            continue;
        }
        let wanted = ours
            .iter()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, s)| (s.is_dir() && m.is_dir()) || (s.is_file() && m.is_file()));
        if !wanted {
            out.extra.push(path);
        }
    }
    Ok(())
}

/// How the folder `dst` differs from hard links of `src`'s folders and files (`own`: names at
/// the top of `dst` that are its own, not links). A missing `dst` lacks everything.
pub fn diff(src: &Path, dst: &Path, own: &[&str]) -> io::Result<LinkDiff> {
    let mut out = LinkDiff::default();
    walk(src, dst, Path::new(""), own, &mut out)?;
    Ok(out)
}

/// Makes `dst` hard links of `src`'s folders and files (created 0755), removing what `src`
/// does not have (never following a symlink: a link is removed as a link), and leaving the
/// `own` names at its top alone. A stale file is replaced by a link made beside it and
/// renamed over it.
pub fn sync(src: &Path, dst: &Path, own: &[&str]) -> io::Result<()> {
    super::ops::create_dirs(dst, 0o755)?;
    let d = diff(src, dst, own)?;
    for rel in &d.extra {
        let p = dst.join(rel);
        let m = std::fs::symlink_metadata(&p)?;
        if m.is_dir() {
            crate::tree::remove::remove(&p).map_err(io::Error::other)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    for rel in &d.missing {
        let (from, to) = (src.join(rel), dst.join(rel));
        if std::fs::symlink_metadata(&from)?.is_dir() {
            match std::fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&to)?;
                    std::fs::create_dir(&to)?;
                }
                Err(_) => std::fs::create_dir(&to)?,
            }
            continue;
        }
        let tmp = to.with_file_name(format!(
            ".{}.pinetboot-link",
            to.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_file(&tmp);
        std::fs::hard_link(&from, &tmp)?;
        std::fs::rename(&tmp, &to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_files_keeps_own_and_removes_extra_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(src.join("overlays")).unwrap();
        std::fs::write(src.join("start4.elf"), b"fw").unwrap();
        std::fs::write(src.join("cmdline.txt"), b"image's").unwrap();
        std::fs::write(src.join("overlays/a.dtbo"), b"dt").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("evil")).unwrap();
        let d = diff(&src, &dst, &["cmdline.txt"]).unwrap();
        assert_eq!(
            d.missing,
            [
                PathBuf::from("overlays"),
                PathBuf::from("overlays/a.dtbo"),
                PathBuf::from("start4.elf")
            ]
        );
        sync(&src, &dst, &["cmdline.txt"]).unwrap();
        assert!(diff(&src, &dst, &["cmdline.txt"]).unwrap().is_empty());
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&src.join("start4.elf")), ino(&dst.join("start4.elf")));
        assert!(!dst.join("evil").exists() && !dst.join("cmdline.txt").exists());
        // The client's own file stays; a stale and an extra entry are put right.
        std::fs::write(dst.join("cmdline.txt"), b"mine").unwrap();
        std::fs::remove_file(dst.join("start4.elf")).unwrap();
        std::fs::write(dst.join("start4.elf"), b"stale copy").unwrap();
        std::os::unix::fs::symlink(t.path(), dst.join("stray")).unwrap();
        let d = diff(&src, &dst, &["cmdline.txt"]).unwrap();
        assert_eq!(d.missing, [PathBuf::from("start4.elf")]);
        assert_eq!(d.extra, [PathBuf::from("stray")]);
        sync(&src, &dst, &["cmdline.txt"]).unwrap();
        assert!(diff(&src, &dst, &["cmdline.txt"]).unwrap().is_empty());
        assert_eq!(std::fs::read(dst.join("cmdline.txt")).unwrap(), b"mine");
        assert!(
            t.path().join("src").exists(),
            "the stray link's target is untouched"
        );
    }
}
