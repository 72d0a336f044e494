//! A fleet repository for pull-mode tests: a bare repository (served as `file://`) and a work
//! clone that commits (signed with an SSH key when asked) and pushes to it. Real git and
//! ssh-keygen, no network, and no user or system git config.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::{require_tool, run};

/// The bare repository and the clone that commits to it.
#[derive(Debug)]
pub struct GitRepo {
    /// Holds everything.
    pub dir: tempfile::TempDir,
    /// The bare repository (what servers pull).
    pub bare: PathBuf,
    /// The work clone.
    pub work: PathBuf,
}

/// `git ARGS` in `dir`, with no user or system config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Fleet Admin",
            "-c",
            "user.email=admin@example.org",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C"))
    .trim()
    .to_owned()
}

/// An ed25519 key pair made by ssh-keygen in `dir`: (private key path, public key line).
pub fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let public = super::tools::ssh_keygen(&key, name);
    (key, public)
}

impl GitRepo {
    /// An empty bare repository and a work clone on branch `main`.
    pub fn new() -> GitRepo {
        require_tool("git", "git");
        let dir = tempfile::Builder::new()
            .prefix("pinetboot-fleet.")
            .tempdir()
            .expect("tempdir");
        let bare = dir.path().join("fleet.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(dir.path(), &["init", "-q", "--bare", "fleet.git"]);
        git(&work, &["init", "-q"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        GitRepo { dir, bare, work }
    }

    /// The URL servers pull from.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes `files` (path in the repository, text), commits them on the current branch
    /// (signed with the private key `sign` when given) and pushes; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str, sign: Option<&Path>) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        match sign {
            None => git(&self.work, &["commit", "-q", "-m", message]),
            Some(key) => git(
                &self.work,
                &[
                    "-c",
                    "gpg.format=ssh",
                    "-c",
                    &format!("user.signingkey={}", key.display()),
                    "commit",
                    "-q",
                    "-S",
                    "-m",
                    message,
                ],
            ),
        };
        let branch = git(&self.work, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:{branch}")],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Starts (or switches to) `branch` in the work clone.
    pub fn switch(&self, branch: &str, create: bool) {
        if create {
            git(&self.work, &["switch", "-q", "-c", branch]);
        } else {
            git(&self.work, &["switch", "-q", branch]);
        }
    }
}
