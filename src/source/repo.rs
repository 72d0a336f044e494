//! The local repository at [`CHECKOUT_DIR`], driven through the `git` CLI.
//!
//! Every git command runs in the C locale, never prompts, runs no hooks, speaks only https,
//! ssh and file (no `ext::`, `git://` or plain http), and has the URL after `--`. The work
//! tree holds the last good commit (detached HEAD); fetched commits not yet accepted live
//! only under `refs/pinetboot/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{CHECKOUT_DIR, SourceError};
use crate::config::load::MAX_CONFIG_BYTES;
use crate::host::Host;
use crate::host::tools::which;
use crate::ioerr::IoError;

/// Settings every git command runs with (`-c` pairs).
const SAFE_CONFIG: &[&str] = &[
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.ssh.allow=always",
    "protocol.file.allow=always",
    "core.hooksPath=/dev/null",
    "http.lowSpeedLimit=1000",
    "http.lowSpeedTime=60",
    // No background gc or maintenance left running after the command returns.
    "gc.auto=0",
    "maintenance.auto=false",
    // Objects from the network are checked before they are stored.
    "fetch.fsckObjects=true",
    // Links in the repository are checked out as small files holding the target, never as
    // symlinks a later reader of the work tree could follow.
    "core.symlinks=false",
    "advice.detachedHead=false",
    // Nothing else runs: no file-system monitor hook, no submodules.
    "core.fsmonitor=false",
    "submodule.recurse=false",
];

/// Variables of the caller's environment that would point git at another repository.
const REPO_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
];

/// One-line facts of a commit, for messages and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The full commit id (hex).
    pub id: String,
    /// The abbreviated id git would print.
    pub short: String,
    /// The first line of the message.
    pub subject: String,
    /// The author's name.
    pub author: String,
    /// The commit time, unix seconds.
    pub time: i64,
}

/// The local repository at [`CHECKOUT_DIR`] on a host.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The real path of the work tree (under the root prefix).
    dir: PathBuf,
}

/// What a git command printed on stdout, or why it failed.
struct Output {
    stdout: Vec<u8>,
    stderr: String,
    success: bool,
}

impl Repo {
    /// The repository at [`CHECKOUT_DIR`] under `host`'s root (it need not exist yet).
    pub fn open(host: &Host) -> Repo {
        Repo {
            dir: host.path(CHECKOUT_DIR),
        }
    }

    /// The real path of the work tree.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn git_dir(&self) -> PathBuf {
        self.dir.join(".git")
    }

    /// Whether the repository has been created.
    pub fn exists(&self) -> bool {
        self.git_dir().join("HEAD").is_file()
    }

    /// Fetches `git_ref` (a branch or tag name) from `url` into `refs/pinetboot/SLOT` (one
    /// slot per caller, such as `pull` or `plan`, so they never race on one ref), creating
    /// the repository (mode 0700) if missing; returns the commit's 40-hex id. Shallow: only
    /// the tip is fetched.
    pub fn fetch(&self, url: &str, git_ref: &str, slot: &str) -> Result<String, SourceError> {
        if slot.is_empty()
            || !slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SourceError::Git {
                action: format!("fetching into slot `{slot}`"),
                stderr: "a slot is lower-case letters, digits and `-`".to_owned(),
                hint: "this is a pinetboot bug; report it".to_owned(),
            });
        }
        let _lock = self.lock()?;
        self.init()?;
        let local = format!("refs/pinetboot/{slot}");
        let refspec = format!("+{git_ref}:{local}");
        let action = format!("fetching `{git_ref}` from {}", redact(url));
        let mut cmd = self.git()?;
        cmd.args([
            "fetch",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "--no-recurse-submodules",
            "--no-write-fetch-head",
            "--no-auto-maintenance",
            "--no-auto-gc",
            "--",
            url,
            &refspec,
        ]);
        let out = run(&mut cmd)?;
        if !out.success {
            return Err(SourceError::Git {
                action,
                stderr: out.stderr,
                hint: format!(
                    "check that the repository exists and has a branch or tag `{git_ref}` (`git ls-remote {}`), and that this host may read it (ssh keys and known_hosts of the user running pinetboot, or a credential helper for https)",
                    redact(url)
                ),
            });
        }
        self.rev_parse(&format!("{local}^{{commit}}"))?
            .ok_or_else(|| SourceError::Git {
                action,
                stderr: format!("{local} does not name a commit after the fetch"),
                hint: format!("`{git_ref}` must be a branch or a tag of a commit"),
            })
    }

    /// Holds the repository's own lock (`config.lock` beside it) while git changes it, so
    /// a plan's fetch and a pull's fetch or checkout wait for each other rather than fail on
    /// git's `shallow.lock` or `index.lock`.
    fn lock(&self) -> Result<crate::host::lock::Lock, SourceError> {
        let path = self.dir.with_extension("lock");
        crate::host::lock::acquire(&path, crate::host::lock::Mode::Exclusive, true, || {
            tracing::info!("waiting for another pinetboot using {}", self.dir.display());
        })
        .map_err(|e| IoError::new("lock", &path, e).into())
    }

    /// Creates the repository (work tree mode 0700, no template hooks) if it is missing, and
    /// keeps the mode at 0700 when it exists: the configs hold password hashes.
    fn init(&self) -> Result<(), SourceError> {
        crate::host::ops::private_dir(&self.dir).map_err(|e| IoError::at(&self.dir, e))?;
        if self.exists() {
            return Ok(());
        }
        let action = format!("creating the repository {}", self.dir.display());
        let mut cmd = git_command()?;
        cmd.args([
            "init",
            "--quiet",
            "--template=",
            "--initial-branch=pinetboot",
            "--",
        ])
        .arg(&self.dir);
        let out = run(&mut cmd)?;
        if !out.success {
            return Err(SourceError::Git {
                action,
                stderr: out.stderr,
                hint: "check that the folder is writable and not in use".to_owned(),
            });
        }
        Ok(())
    }

    /// `git verify-commit` of `commit` against `allowed_signers` (a real path, already
    /// resolved under the root prefix). Returns the good signature's description (principal
    /// and key fingerprint). Only SSH signatures by a key listed there are accepted.
    pub fn verify(&self, commit: &str, allowed_signers: &Path) -> Result<String, SourceError> {
        check_commit_id(commit)?;
        let Some(ssh_keygen) = which("ssh-keygen") else {
            return Err(SourceError::ToolMissing {
                tool: "ssh-keygen",
                package: "openssh-client",
            });
        };
        let action = format!("reading commit {commit}");
        let raw = self.expect_ok(self.git()?.args(["cat-file", "commit", commit]), &action)?;
        let raw = String::from_utf8_lossy(&raw);
        let headers = raw.split("\n\n").next().unwrap_or_default();
        let signature = headers.lines().find_map(|l| {
            l.strip_prefix("gpgsig ")
                .or(l.strip_prefix("gpgsig-sha256 "))
        });
        let Some(signature) = signature else {
            return Err(SourceError::Unsigned {
                commit: commit.to_owned(),
            });
        };
        if signature.trim() != "-----BEGIN SSH SIGNATURE-----" {
            return Err(SourceError::BadSignature {
                commit: commit.to_owned(),
                detail:
                    "it is not an SSH signature (OpenPGP and X.509 signatures are not accepted)"
                        .to_owned(),
            });
        }
        if !allowed_signers.is_file() {
            return Err(SourceError::AllowedSigners {
                file: allowed_signers.to_owned(),
            });
        }
        let mut signers = std::ffi::OsString::from("gpg.ssh.allowedSignersFile=");
        signers.push(allowed_signers);
        let mut program = std::ffi::OsString::from("gpg.ssh.program=");
        program.push(&ssh_keygen);
        let mut verify = self.git()?;
        verify
            .arg("-c")
            .arg(&signers)
            .arg("-c")
            .arg(&program)
            .args(["-c", "gpg.minTrustLevel=fully", "-c", "gpg.format=ssh"])
            .args(["verify-commit", commit]);
        let out = run(&mut verify)?;
        let good = out
            .stderr
            .lines()
            .find(|l| l.starts_with("Good \"git\" signature for "))
            .map(str::to_owned);
        match good {
            Some(line) if out.success && !out.stderr.contains("No principal matched") => Ok(line
                .trim_start_matches("Good \"git\" signature for ")
                .to_owned()),
            _ => Err(SourceError::BadSignature {
                commit: commit.to_owned(),
                detail: signature_detail(&out.stderr),
            }),
        }
    }

    /// The bytes of the file `path` (relative to the top of the repository) at `commit`: only
    /// a regular file (blob of mode 100644 or 100755) of at most [`MAX_CONFIG_BYTES`] bytes;
    /// a symlink, submodule, folder or missing path is refused.
    pub fn read_file(&self, commit: &str, path: &str) -> Result<Vec<u8>, SourceError> {
        check_commit_id(commit)?;
        let refused = |problem: String| SourceError::ConfigFile {
            path: path.to_owned(),
            commit: commit.to_owned(),
            problem,
        };
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(refused("not a path inside the repository".to_owned()));
        }
        let action = format!("listing {path} at commit {commit}");
        let listing = self.expect_ok(
            self.git()?
                .args(["--literal-pathspecs", "ls-tree", "-z", "-l", "--full-tree"])
                .arg(commit)
                .arg("--")
                .arg(path),
            &action,
        )?;
        // `MODE SP TYPE SP OID SP* SIZE TAB NAME NUL`
        let entry = listing
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .find_map(|e| {
                let tab = e.iter().position(|b| *b == b'\t')?;
                (&e[tab + 1..] == path.as_bytes()).then(|| String::from_utf8_lossy(&e[..tab]))
            })
            .ok_or_else(|| refused("no such file in the commit".to_owned()))?;
        let fields: Vec<&str> = entry.split_whitespace().collect();
        let [mode, kind, oid, size] = fields[..] else {
            return Err(refused(format!("unexpected listing `{entry}`")));
        };
        match (mode, kind) {
            ("100644" | "100755", "blob") => {}
            ("120000", _) => return Err(refused("it is a symlink, not a regular file".to_owned())),
            ("160000", _) => return Err(refused("it is a submodule, not a file".to_owned())),
            (_, "tree") => return Err(refused("it is a folder, not a file".to_owned())),
            _ => return Err(refused(format!("it is not a regular file (mode {mode})"))),
        }
        let size: u64 = size
            .parse()
            .map_err(|_| refused(format!("unexpected size `{size}`")))?;
        if size > MAX_CONFIG_BYTES as u64 {
            return Err(refused(format!(
                "it holds {size} bytes; pinetboot reads at most {MAX_CONFIG_BYTES} bytes of a config"
            )));
        }
        let action = format!("reading {path} at commit {commit}");
        let bytes = self.expect_ok(self.git()?.args(["cat-file", "blob", oid]), &action)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(refused(format!(
                "it holds more than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        Ok(bytes)
    }

    /// Makes the work tree and the detached HEAD `commit`, discarding local edits and
    /// removing untracked files.
    pub fn checkout(&self, commit: &str) -> Result<(), SourceError> {
        check_commit_id(commit)?;
        let action = format!("checking out commit {commit} in {}", self.dir.display());
        let _lock = self.lock()?;
        self.expect_ok(
            self.git()?
                .args(["checkout", "--quiet", "--force", "--detach", commit, "--"]),
            &action,
        )?;
        self.expect_ok(self.git()?.args(["clean", "--quiet", "-ffdx"]), &action)?;
        Ok(())
    }

    /// The commit checked out; `None` when the repository does not exist or nothing was
    /// checked out yet.
    pub fn head(&self) -> Result<Option<String>, SourceError> {
        if !self.exists() {
            return Ok(None);
        }
        self.rev_parse("HEAD^{commit}")
    }

    /// The commit the last fetch into `slot` brought; `None` when nothing was fetched there.
    pub fn fetched(&self, slot: &str) -> Result<Option<String>, SourceError> {
        if !self.exists() {
            return Ok(None);
        }
        self.rev_parse(&format!("refs/pinetboot/{slot}^{{commit}}"))
    }

    /// Id, short id, subject, author and commit time of `commit`.
    pub fn describe(&self, commit: &str) -> Result<CommitInfo, SourceError> {
        check_commit_id(commit)?;
        let action = format!("describing commit {commit}");
        let out = self.expect_ok(
            self.git()?.args([
                "show",
                "--no-patch",
                "--no-show-signature",
                "--no-notes",
                "--format=%H%x00%h%x00%s%x00%an%x00%ct",
                commit,
                "--",
            ]),
            &action,
        )?;
        let text = String::from_utf8_lossy(&out);
        let parts: Vec<&str> = text.trim_end_matches('\n').split('\0').collect();
        let [id, short, subject, author, time] = parts[..] else {
            return Err(SourceError::Git {
                action,
                stderr: format!("unexpected output `{text}`"),
                hint: "this is a pinetboot bug; report it".to_owned(),
            });
        };
        Ok(CommitInfo {
            id: id.to_owned(),
            short: short.to_owned(),
            subject: subject.to_owned(),
            author: author.to_owned(),
            time: time.parse().unwrap_or_default(),
        })
    }

    /// `git rev-parse --verify` of `what`: `None` when it does not resolve.
    fn rev_parse(&self, what: &str) -> Result<Option<String>, SourceError> {
        let out =
            run(self
                .git()?
                .args(["rev-parse", "--quiet", "--verify", "--end-of-options", what]))?;
        if !out.success {
            return Ok(None);
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(Some(id))
    }

    /// Runs `cmd`; its stdout, or a [`SourceError::Git`] naming `action`.
    fn expect_ok(&self, cmd: &mut Command, action: &str) -> Result<Vec<u8>, SourceError> {
        let out = run(cmd)?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(SourceError::Git {
                action: action.to_owned(),
                stderr: out.stderr,
                hint: format!(
                    "the commit may not have been fetched, or the local repository {} is damaged (removing it makes the next pull fetch afresh)",
                    self.dir.display()
                ),
            })
        }
    }

    /// A git command on this repository (its git dir and work tree set explicitly, so no
    /// other repository is ever discovered).
    fn git(&self) -> Result<Command, SourceError> {
        let mut cmd = git_command()?;
        cmd.env("GIT_DIR", self.git_dir())
            .env("GIT_WORK_TREE", &self.dir)
            .current_dir(&self.dir);
        Ok(cmd)
    }
}

/// A `git` command with the safe settings and environment (see the module doc).
fn git_command() -> Result<Command, SourceError> {
    let Some(git) = which("git") else {
        return Err(SourceError::ToolMissing {
            tool: "git",
            package: "git",
        });
    };
    let mut cmd = Command::new(git);
    for var in REPO_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    for setting in SAFE_CONFIG {
        cmd.args(["-c", setting]);
    }
    cmd.stdin(std::process::Stdio::null());
    Ok(cmd)
}

/// Runs `cmd` to completion, capturing stdout and stderr.
fn run(cmd: &mut Command) -> Result<Output, SourceError> {
    let out = cmd
        .output()
        .map_err(|e| IoError::new("run", PathBuf::from(cmd.get_program()), e))?;
    Ok(Output {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        success: out.status.success(),
    })
}

/// Refuses anything but a full hex object id, so no argument is read as an option or a
/// revision expression.
fn check_commit_id(commit: &str) -> Result<(), SourceError> {
    if (commit.len() == 40 || commit.len() == 64)
        && commit
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(SourceError::Git {
            action: format!("using `{commit}` as a commit"),
            stderr: "not a full commit id (40 or 64 lower-case hex digits)".to_owned(),
            hint: "this is a pinetboot bug; report it".to_owned(),
        })
    }
}

/// What ssh-keygen said about a refused signature, in one line.
fn signature_detail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tree ") && !l.starts_with("parent "))
        .filter(|l| !l.starts_with("author ") && !l.starts_with("committer "))
        .collect();
    if lines.is_empty() {
        "the signature could not be verified".to_owned()
    } else {
        lines.join("; ")
    }
}

/// `url` with any password replaced by `***` (for messages).
pub(super) fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
        }
    }
    url.to_owned()
}
