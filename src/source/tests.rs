//! Tests of the git source layer against real repositories in tempdirs (file:// URLs), with
//! the real `git` and `ssh-keygen`: a machine without them fails these tests, never skips.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::host::Host;

/// Runs `program args` in `dir` (with no user or system git config), panicking loudly with
/// its output when it cannot run or fails.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` (these tests need git and openssh-client): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A host root, a bare "remote" repository and a work clone that commits and pushes to it.
struct Fixture {
    tmp: tempfile::TempDir,
    host: Host,
    work: PathBuf,
    url: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let bare = tmp.path().join("fleet.git");
        let work = tmp.path().join("work");
        run_in(
            tmp.path(),
            "git",
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        run_in(
            tmp.path(),
            "git",
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        Fixture {
            host: Host::new(&root).unwrap(),
            url: format!("file://{}", bare.display()),
            tmp,
            work,
        }
    }

    fn git(&self, args: &[&str]) -> String {
        let mut all = vec![
            "-c",
            "user.name=Ada Admin",
            "-c",
            "user.email=ada@example.org",
        ];
        all.extend_from_slice(args);
        run_in(&self.work, "git", &all)
    }

    /// Writes `files` into the work clone, commits them (with `extra` commit arguments such
    /// as signing settings) and pushes to `main`; returns the commit id.
    fn commit_with(&self, files: &[(&str, &str)], message: &str, extra: &[&str]) -> String {
        for (path, text) in files {
            let file = self.work.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        self.git(&["add", "-A"]);
        let mut args: Vec<&str> = extra.to_vec();
        args.extend_from_slice(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&args);
        self.git(&["push", "-q", &self.url, "HEAD:main"]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        self.commit_with(files, message, &[])
    }

    /// An ed25519 key pair made by ssh-keygen; returns the public key file.
    fn key(&self, name: &str) -> PathBuf {
        let key = self.tmp.path().join(name);
        run_in(
            self.tmp.path(),
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                name,
                "-f",
                key.to_str().unwrap(),
            ],
        );
        key.with_extension("pub")
    }

    /// A signed commit by the key whose public half is `public`.
    fn signed_commit(&self, public: &Path, message: &str) -> String {
        let signing_key = format!("user.signingkey={}", public.display());
        self.commit_with(
            &[],
            message,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &signing_key,
                "-c",
                "commit.gpgsign=true",
            ],
        )
    }

    fn write_settings(&self, text: &str) {
        let file = self.host.path(SETTINGS_FILE);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
}

fn settings_error(err: SourceError) -> (usize, usize, String, String) {
    let hint = err.hint();
    match err {
        SourceError::Settings {
            line,
            column,
            message,
            ..
        } => (line, column, message, hint),
        other => panic!("expected a settings error, got {other:?}"),
    }
}

#[test]
fn settings_missing_file_is_none_and_defaults_apply() {
    let f = Fixture::new();
    assert_eq!(Settings::load(&f.host).unwrap(), None);
    f.write_settings("url: https://git.example.org/lab/fleet.git\n");
    let s = Settings::load(&f.host).unwrap().unwrap();
    assert_eq!(s, Settings::new("https://git.example.org/lab/fleet.git"));
    assert_eq!(s.git_ref, "main");
    assert_eq!(s.path, "pinetboot.yaml");
    assert_eq!(s.server, None);
    assert_eq!(s.allowed_signers, None);
    assert_eq!(s.allowed_signers_path(&f.host), None);

    f.write_settings(
        "url: git@git.example.org:lab/fleet.git\nref: v2\npath: sites/lab.yaml\nserver: rack1\nallowed_signers: /etc/pinetboot/allowed_signers\n",
    );
    let s = Settings::load(&f.host).unwrap().unwrap();
    assert_eq!(s.git_ref, "v2");
    assert_eq!(s.path, "sites/lab.yaml");
    assert_eq!(s.server.as_deref(), Some("rack1"));
    assert_eq!(
        s.allowed_signers.as_deref(),
        Some(Path::new("/etc/pinetboot/allowed_signers"))
    );
    assert_eq!(
        s.allowed_signers_path(&f.host),
        Some(f.host.root().join("etc/pinetboot/allowed_signers"))
    );
}

#[test]
fn settings_errors_are_located_with_a_hint() {
    let f = Fixture::new();
    f.write_settings("url: file:///srv/fleet.git\nbranch: main\n");
    let err = Settings::load(&f.host).unwrap_err();
    let text = err.to_string();
    let (line, _, message, hint) = settings_error(err);
    assert_eq!(line, 2, "{text}");
    assert!(message.contains("unknown field"), "{message}");
    assert!(hint.contains("url, ref, path"), "{hint}");
    assert!(text.contains("source.yaml:2:"), "{text}");

    // A value refused by check() is located at the value.
    f.write_settings("ref: main\nurl: http://git.example.org/fleet.git\n");
    let (line, column, message, hint) = settings_error(Settings::load(&f.host).unwrap_err());
    assert_eq!((line, column), (2, 6));
    assert!(message.starts_with("url: "), "{message}");
    assert!(hint.contains("https://"), "{hint}");

    f.write_settings("");
    let (_, _, message, _) = settings_error(Settings::load(&f.host).unwrap_err());
    assert!(message.contains("empty"), "{message}");

    f.write_settings("ref: main\n");
    let (_, _, message, _) = settings_error(Settings::load(&f.host).unwrap_err());
    assert!(message.contains("url"), "{message}");
}

fn check_url(url: &str) -> Result<(), SourceError> {
    Settings::new(url).check()
}

#[test]
fn settings_url_forms() {
    for good in [
        "https://git.example.org/lab/fleet.git",
        "https://user@git.example.org:8443/fleet.git",
        "ssh://git@git.example.org/lab/fleet.git",
        "ssh://git.example.org:2222/fleet",
        "git@git.example.org:fleet.git",
        "git.example.org:lab/fleet.git",
        "file:///srv/git/fleet.git",
    ] {
        check_url(good).unwrap_or_else(|e| panic!("{good} refused: {e}"));
    }
    for bad in [
        "",
        "http://git.example.org/fleet.git",
        "HTTP://git.example.org/fleet.git",
        "git://git.example.org/fleet.git",
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::17",
        "-oProxyCommand=touch /tmp/pwned",
        "-oProxyCommand=x:fleet.git",
        "--upload-pack=touch /tmp/pwned",
        "ssh://-oProxyCommand=x/fleet.git",
        "ssh://git@-oProxyCommand=x/fleet.git",
        "git@-oProxyCommand=x:fleet.git",
        "ftp://example.org/fleet.git",
        "file://server/srv/fleet.git",
        "/srv/git/fleet.git",
        "fleet.git",
        "git@host:",
        "https://git.example.org",
        "https://git.example.org/fleet.git\n",
    ] {
        let err = check_url(bad).expect_err(bad);
        assert!(
            matches!(err, SourceError::Invalid { field: "url", .. }),
            "{bad}: {err:?}"
        );
        assert!(err.hint().contains("file:///PATH"), "{bad}: {}", err.hint());
    }
}

#[test]
fn settings_ref_path_and_signers_checks() {
    let with = |f: &dyn Fn(&mut Settings)| {
        let mut s = Settings::new("https://git.example.org/fleet.git");
        f(&mut s);
        s.check()
    };
    for good in [
        "main",
        "v1.2",
        "release/2026-12",
        "refs/heads/main",
        "refs/tags/v1",
    ] {
        with(&|s| s.git_ref = good.into()).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "",
        "-b",
        "--upload-pack=x",
        "a..b",
        "a b",
        "a:b",
        "+main",
        "ma*n",
        "a^",
        "main/",
        "/main",
        ".hidden",
        "main.lock",
        "@",
        "x@{1}",
        "a\tb",
    ] {
        let err = with(&|s| s.git_ref = bad.into()).expect_err(bad);
        assert!(
            matches!(err, SourceError::Invalid { field: "ref", .. }),
            "{bad}: {err:?}"
        );
    }
    for good in ["pinetboot.yaml", "sites/lab.yaml", "a b/c.yaml"] {
        with(&|s| s.path = good.into()).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "",
        "/etc/pinetboot.yaml",
        "../x.yaml",
        "a/../../b",
        "./a",
        "a//b",
        "a/",
    ] {
        let err = with(&|s| s.path = bad.into()).expect_err(bad);
        assert!(
            matches!(err, SourceError::Invalid { field: "path", .. }),
            "{bad}: {err:?}"
        );
    }
    let err = with(&|s| s.allowed_signers = Some("allowed_signers".into())).unwrap_err();
    assert!(matches!(
        err,
        SourceError::Invalid {
            field: "allowed_signers",
            ..
        }
    ));
    with(&|s| s.allowed_signers = Some("/etc/pinetboot/allowed_signers".into())).unwrap();
    let err = with(&|s| s.server = Some(String::new())).unwrap_err();
    assert!(matches!(
        err,
        SourceError::Invalid {
            field: "server",
            ..
        }
    ));
}

#[test]
fn fetch_returns_the_tip_and_sees_later_commits() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    assert!(!repo.exists());
    assert_eq!(repo.head().unwrap(), None);
    let first = f.commit(&[("pinetboot.yaml", "one\n")], "first");
    assert_eq!(repo.fetch(&f.url, "main", "pull").unwrap(), first);
    assert!(repo.exists());
    assert_eq!(repo.dir(), f.host.path(CHECKOUT_DIR));
    let mode = std::fs::metadata(repo.dir()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the repository holds password hashes");
    // Fetching moves no HEAD: nothing is checked out until a commit is accepted.
    assert_eq!(repo.head().unwrap(), None);
    // No hooks were copied from a template.
    let hooks = repo.dir().join(".git/hooks");
    assert!(!hooks.exists() || std::fs::read_dir(hooks).unwrap().next().is_none());

    let second = f.commit(&[("pinetboot.yaml", "two\n")], "second");
    assert_ne!(first, second);
    assert_eq!(repo.fetch(&f.url, "main", "pull").unwrap(), second);
    // The local repository is made 0700 again if someone widened it.
    std::fs::set_permissions(repo.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        repo.fetch(&f.url, "refs/heads/main", "plan").unwrap(),
        second
    );
    let mode = std::fs::metadata(repo.dir()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}

#[test]
fn fetch_slots_and_tags_are_independent() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    let main = f.commit(&[("pinetboot.yaml", "main\n")], "on main");
    f.git(&["tag", "-a", "-m", "release", "v1"]);
    f.git(&["push", "-q", &f.url, "v1"]);
    f.git(&["checkout", "-q", "-b", "review"]);
    std::fs::write(f.work.join("pinetboot.yaml"), "review\n").unwrap();
    f.git(&["commit", "-q", "-a", "-m", "on review"]);
    f.git(&["push", "-q", &f.url, "review"]);
    let review = f.git(&["rev-parse", "HEAD"]);

    assert_eq!(repo.fetch(&f.url, "main", "pull").unwrap(), main);
    assert_eq!(repo.fetch(&f.url, "review", "plan").unwrap(), review);
    // An annotated tag resolves to its commit.
    assert_eq!(repo.fetch(&f.url, "v1", "tag").unwrap(), main);
    assert_eq!(repo.read_file(&main, "pinetboot.yaml").unwrap(), b"main\n");
    assert_eq!(
        repo.read_file(&review, "pinetboot.yaml").unwrap(),
        b"review\n"
    );
    assert!(repo.fetch(&f.url, "main", "Bad Slot").is_err());
}

#[test]
fn fetch_errors_name_the_url_and_ref() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    f.commit(&[("pinetboot.yaml", "x\n")], "first");
    let err = repo.fetch(&f.url, "no-such-branch", "pull").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SourceError::Git { .. }), "{err:?}");
    assert!(!err.is_refusal());
    assert!(text.contains("no-such-branch"), "{text}");
    assert!(text.contains(&f.url), "{text}");
    assert!(err.hint().contains("git ls-remote"), "{}", err.hint());

    let missing = format!("file://{}", f.tmp.path().join("nowhere.git").display());
    let err = repo.fetch(&missing, "main", "pull").unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&missing) && text.contains("main"), "{text}");
}

#[test]
fn read_file_only_reads_a_regular_file_of_bounded_size() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    std::fs::create_dir_all(f.work.join("sites")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", f.work.join("link.yaml")).unwrap();
    std::os::unix::fs::symlink("pinetboot.yaml", f.work.join("inner-link.yaml")).unwrap();
    let big = "#".repeat(crate::config::load::MAX_CONFIG_BYTES + 1);
    let commit = f.commit(
        &[
            ("pinetboot.yaml", "clients: {}\n"),
            ("sites/lab.yaml", "lab\n"),
            ("big.yaml", &big),
            ("a*.yaml", "glob\n"),
        ],
        "files",
    );
    assert_eq!(repo.fetch(&f.url, "main", "pull").unwrap(), commit);
    assert_eq!(
        repo.read_file(&commit, "pinetboot.yaml").unwrap(),
        b"clients: {}\n"
    );
    assert_eq!(repo.read_file(&commit, "sites/lab.yaml").unwrap(), b"lab\n");
    // Paths are literal, not patterns.
    assert_eq!(repo.read_file(&commit, "a*.yaml").unwrap(), b"glob\n");

    let refused = |path: &str, words: &str| {
        let err = repo.read_file(&commit, path).unwrap_err();
        let text = err.to_string();
        assert!(err.is_refusal(), "{path}: {err:?}");
        assert!(
            text.contains(path) && text.contains(&commit) && text.contains(words),
            "{path}: {text}"
        );
    };
    refused("link.yaml", "symlink");
    refused("inner-link.yaml", "symlink");
    refused("missing.yaml", "no such file");
    refused("sites", "folder");
    refused("sites/missing.yaml", "no such file");
    refused("big.yaml", "at most");
    refused("a?.yaml", "no such file");
    refused("../pinetboot.yaml", "not a path inside");
    // Not a commit id: refused before git sees it.
    assert!(repo.read_file("HEAD", "pinetboot.yaml").is_err());
    assert!(repo.read_file("--output=x", "pinetboot.yaml").is_err());
}

#[test]
fn checkout_moves_head_and_the_work_tree() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    let first = f.commit(&[("pinetboot.yaml", "one\n")], "first");
    std::os::unix::fs::symlink("/etc/passwd", f.work.join("link")).unwrap();
    let second = f.commit(&[("pinetboot.yaml", "two\n")], "second");
    repo.fetch(&f.url, "main", "pull").unwrap();
    repo.checkout(&second).unwrap();
    assert_eq!(repo.head().unwrap().as_deref(), Some(second.as_str()));
    let file = repo.dir().join("pinetboot.yaml");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "two\n");
    // A symlink in the repository is checked out as a plain file, never followed.
    let link = std::fs::symlink_metadata(repo.dir().join("link")).unwrap();
    assert!(link.is_file(), "{link:?}");

    // Local edits and stray files are discarded.
    std::fs::write(&file, "edited\n").unwrap();
    std::fs::write(repo.dir().join("stray"), "x").unwrap();
    repo.checkout(&second).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "two\n");
    assert!(!repo.dir().join("stray").exists());

    // The first commit is not in the shallow fetch; fetching it by its branch's old state
    // is not possible, so go back by fetching a branch at it.
    f.git(&["push", "-q", &f.url, &format!("{first}:refs/heads/old")]);
    assert_eq!(repo.fetch(&f.url, "old", "pull").unwrap(), first);
    repo.checkout(&first).unwrap();
    assert_eq!(repo.head().unwrap().as_deref(), Some(first.as_str()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
    assert!(!repo.dir().join("link").exists());
}

#[test]
fn describe_gives_the_commit_facts() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    let commit = f.commit(&[("pinetboot.yaml", "x\n")], "Add rack 2\n\nLonger text.");
    repo.fetch(&f.url, "main", "pull").unwrap();
    let info = repo.describe(&commit).unwrap();
    assert_eq!(info.id, commit);
    assert!(commit.starts_with(&info.short) && info.short.len() >= 7);
    assert_eq!(info.subject, "Add rack 2");
    assert_eq!(info.author, "Ada Admin");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - info.time).abs() < 600, "{} vs {now}", info.time);
}

#[test]
fn verify_accepts_only_commits_signed_by_an_allowed_key() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    let allowed = f.key("allowed");
    let other = f.key("other");
    let signers = f.tmp.path().join("allowed_signers");
    let public = std::fs::read_to_string(&allowed).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    std::fs::write(&signers, format!("ada@example.org {}\n", public.join(" "))).unwrap();
    let fingerprint = run_in(
        f.tmp.path(),
        "ssh-keygen",
        &["-l", "-E", "sha256", "-f", allowed.to_str().unwrap()],
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_owned();

    let unsigned = f.commit(&[("pinetboot.yaml", "one\n")], "unsigned");
    repo.fetch(&f.url, "main", "pull").unwrap();
    let err = repo.verify(&unsigned, &signers).unwrap_err();
    assert!(
        matches!(&err, SourceError::Unsigned { commit } if *commit == unsigned),
        "{err:?}"
    );
    assert!(err.is_refusal());

    let good = f.signed_commit(&allowed, "signed by ada");
    assert_eq!(repo.fetch(&f.url, "main", "pull").unwrap(), good);
    let said = repo.verify(&good, &signers).unwrap();
    assert!(said.contains("ada@example.org"), "{said}");
    assert!(said.contains(&fingerprint), "{said} vs {fingerprint}");

    let stranger = f.signed_commit(&other, "signed by someone else");
    assert_eq!(repo.fetch(&f.url, "main", "pull").unwrap(), stranger);
    let err = repo.verify(&stranger, &signers).unwrap_err();
    assert!(
        matches!(&err, SourceError::BadSignature { commit, .. } if *commit == stranger),
        "{err:?}"
    );
    assert!(err.is_refusal());
    assert!(err.to_string().contains(&stranger));

    // A missing allowed signers file is an error of the host, not a refusal of the commit.
    let err = repo
        .verify(&good, &f.tmp.path().join("no-such-file"))
        .unwrap_err();
    assert!(!err.is_refusal(), "{err:?}");
    assert!(matches!(err, SourceError::AllowedSigners { .. }), "{err:?}");
}

#[test]
fn concurrent_fetches_into_two_slots_wait_for_each_other() {
    let f = Fixture::new();
    let commit = f.commit(&[("pinetboot.yaml", "one\n")], "first");
    let results: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ["pull", "plan", "pull", "plan"]
            .into_iter()
            .map(|slot| {
                let repo = Repo::open(&f.host);
                let url = f.url.clone();
                s.spawn(move || repo.fetch(&url, "main", slot).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|r| *r == commit), "{results:?}");
}

#[test]
fn verify_refuses_an_openpgp_signature_without_running_gpg() {
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    let signers = f.tmp.path().join("allowed_signers");
    std::fs::write(&signers, "").unwrap();
    f.commit(&[("pinetboot.yaml", "one\n")], "base");
    // A commit object carrying an OpenPGP signature header (its content does not matter:
    // it is refused for its kind before anything checks it).
    let raw = f.git(&["cat-file", "commit", "HEAD"]);
    let (headers, message) = raw.split_once("\n\n").unwrap();
    let forged = format!(
        "{headers}\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\n{message}\n"
    );
    let file = f.tmp.path().join("forged");
    std::fs::write(&file, forged).unwrap();
    let id = f.git(&["hash-object", "-t", "commit", "-w", file.to_str().unwrap()]);
    f.git(&["push", "-q", &f.url, &format!("{id}:refs/heads/pgp")]);
    assert_eq!(repo.fetch(&f.url, "pgp", "pull").unwrap(), id);
    let err = repo.verify(&id, &signers).unwrap_err();
    assert!(
        matches!(&err, SourceError::BadSignature { detail, .. } if detail.contains("not an SSH signature")),
        "{err:?}"
    );
}

#[test]
fn fetch_never_runs_commands_from_a_url_even_unchecked() {
    // Settings::check refuses these; the git layer's own protocol settings and `--` refuse
    // them too, so a caller that forgot the check still runs nothing.
    let f = Fixture::new();
    let repo = Repo::open(&f.host);
    let marker = f.tmp.path().join("pwned");
    let m = marker.display();
    for url in [
        format!("ext::sh -c touch% {m}"),
        format!("--upload-pack=touch {m}"),
        format!("-oProxyCommand=touch {m}"),
        format!("ssh://-oProxyCommand=touch% {m}/x"),
        "git://127.0.0.1:1/fleet.git".to_owned(),
        "http://127.0.0.1:1/fleet.git".to_owned(),
    ] {
        assert!(repo.fetch(&url, "main", "pull").is_err(), "{url}");
        assert!(!marker.exists(), "{url} ran a command");
    }
}

#[test]
fn passwords_in_urls_are_not_repeated() {
    assert_eq!(
        repo::redact("https://ada:s3cret@git.example.org/fleet.git"),
        "https://ada:***@git.example.org/fleet.git"
    );
    assert_eq!(
        repo::redact("https://ada@git.example.org/fleet.git"),
        "https://ada@git.example.org/fleet.git"
    );
    assert_eq!(repo::redact("git@host:fleet.git"), "git@host:fleet.git");
}

#[test]
fn errors_have_hints() {
    let missing = SourceError::ToolMissing {
        tool: "ssh-keygen",
        package: "openssh-client",
    };
    assert!(missing.hint().contains("apt install openssh-client"));
    assert!(!missing.is_refusal());
    let e = SourceError::Settings {
        file: PathBuf::from("/etc/pinetboot/source.yaml"),
        line: 0,
        column: 0,
        message: "m".into(),
        hint: "h".into(),
    };
    assert_eq!(e.to_string(), "/etc/pinetboot/source.yaml: m");
}
