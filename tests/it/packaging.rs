//! The Debian package and the systemd units, checked with the real tools: `cargo deb`,
//! `dpkg-deb`, `dpkg`, `systemd-analyze`, `systemctl`, `lintian`, `man` and `bash`. A missing
//! tool fails the test and names the apt package (or `cargo install`) that provides it.
//!
//! One package per test run: the first test that needs it generates the man pages and
//! completions with the `pinetboot` binary this `cargo test` already built (the dev profile),
//! copies that binary to `<tmp>/target/release/pinetboot` and runs
//! `cargo deb --no-build --fast` with `CARGO_TARGET_DIR=<tmp>/target`. No release build: the
//! layout, metadata, units and maintainer scripts do not depend on the optimisation level,
//! and a release build would cost minutes on a 2-core runner. `packaging/build-deb.sh` makes
//! the release package the same way.

use crate::support::tools::require_tool;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_pinetboot");
/// The crate root (Cargo.toml, packaging/).
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Cargo's scratch folder for integration tests (inside the target folder).
const TARGET_TMPDIR: &str = env!("CARGO_TARGET_TMPDIR");

/// Lintian warnings that are accepted, each with the reason. Any other warning or any error
/// fails [`lintian_reports_no_errors`].
const TOLERATED_LINTIAN_WARNINGS: &[(&str, &str)] = &[(
    "initial-upload-closes-no-bugs",
    "the package is not uploaded to Debian, so there is no ITP bug for the first \
     changelog entry to close",
)];

// ---------------------------------------------------------------------------------------
// Tools

/// Which package provides each external tool, for the failure message.
fn provider(tool: &str) -> &'static str {
    match tool {
        "cargo-deb" => "`cargo install cargo-deb --locked` (see .ci/run for the pinned version)",
        "dpkg" | "dpkg-deb" => "apt-get install dpkg",
        "dpkg-shlibdeps" | "strip" => "apt-get install dpkg-dev binutils",
        "lintian" => "apt-get install lintian",
        "systemd-analyze" | "systemctl" => "apt-get install systemd",
        "man" => "apt-get install man-db",
        "bash" => "apt-get install bash",
        _ => "apt-get",
    }
}

/// Runs `program args…` and returns its output; panics naming the tool (and where to get it)
/// when it cannot be started.
fn run(program: &str, args: &[&str], tool: &str) -> Output {
    run_cmd(Command::new(program).args(args), tool)
}

/// Runs a prepared command; panics naming the tool when it cannot be started.
fn run_cmd(cmd: &mut Command, tool: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "packaging test needs `{tool}`, which could not be run ({e}): {}",
            provider(tool)
        ),
    }
}

/// Panics with the command's output unless it succeeded; returns its stdout.
fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

// ---------------------------------------------------------------------------------------
// The package, built once

/// The built package and its unpacked tree.
struct Package {
    /// The `.deb`.
    deb: PathBuf,
    /// `dpkg-deb -x` of it.
    stage: PathBuf,
    /// This test run's scratch folder.
    work: PathBuf,
}

/// The package, built on first use.
fn package() -> &'static Package {
    static PACKAGE: OnceLock<Package> = OnceLock::new();
    PACKAGE.get_or_init(build_package)
}

/// Generates the man pages and completions, runs `cargo deb --no-build` on this run's binary
/// and unpacks the result.
fn build_package() -> Package {
    require_tool("dpkg-deb", "dpkg");
    require_tool("dpkg-shlibdeps", "dpkg-dev");
    require_tool("strip", "binutils");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let version = run(&cargo, &["deb", "--version"], "cargo-deb");
    assert!(
        version.status.success(),
        "packaging test needs cargo-deb: {}
{}",
        provider("cargo-deb"),
        String::from_utf8_lossy(&version.stderr)
    );
    let repo = Path::new(MANIFEST_DIR);
    let work = Path::new(TARGET_TMPDIR).join("packaging");
    if work.exists() {
        fs::remove_dir_all(&work).unwrap();
    }
    fs::create_dir_all(&work).unwrap();

    // The generated assets, where Cargo.toml's `[package.metadata.deb]` expects them.
    let gen_dir = repo.join("packaging/gen");
    if gen_dir.exists() {
        fs::remove_dir_all(&gen_dir).unwrap();
    }
    for kind in ["man", "completions"] {
        let dir = gen_dir.join(kind);
        check(
            run(
                BIN,
                &["--quiet", "generate", kind, dir.to_str().unwrap()],
                BIN,
            ),
            &format!("pinetboot generate {kind}"),
        );
    }

    // cargo-deb takes `target/release/pinetboot` from CARGO_TARGET_DIR.
    let release = work.join("target/release");
    fs::create_dir_all(&release).unwrap();
    fs::copy(BIN, release.join("pinetboot")).unwrap();
    let out_dir = work.join("deb");
    fs::create_dir_all(&out_dir).unwrap();
    check(
        run_cmd(
            Command::new(&cargo)
                .args(["deb", "--no-build", "--locked", "--fast", "--output"])
                .arg(&out_dir)
                .current_dir(repo)
                .env("CARGO_TARGET_DIR", work.join("target")),
            "cargo-deb",
        ),
        "cargo deb --no-build",
    );
    let debs: Vec<PathBuf> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "expected one .deb in {}", out_dir.display());
    let deb = debs.into_iter().next().unwrap();

    let stage = work.join("stage");
    check(
        run(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), stage.to_str().unwrap()],
            "dpkg-deb",
        ),
        "dpkg-deb -x",
    );
    Package { deb, stage, work }
}

/// The package's file list (`dpkg-deb -c`), as absolute paths without the leading `.`.
fn contents(pkg: &Package) -> BTreeSet<String> {
    let listing = check(
        run("dpkg-deb", &["-c", pkg.deb.to_str().unwrap()], "dpkg-deb"),
        "dpkg-deb -c",
    );
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(|path| {
            path.trim_start_matches('.')
                .trim_end_matches('/')
                .to_owned()
        })
        .collect()
}

/// The man pages the binary generates (file names, e.g. `pinetboot-plan.1`).
fn generated_man_pages(pkg: &Package) -> BTreeSet<String> {
    let dir = pkg.work.join("man-check");
    check(
        run(
            BIN,
            &["--quiet", "generate", "man", dir.to_str().unwrap()],
            BIN,
        ),
        "pinetboot generate man",
    );
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Where the units are installed in `root` (`/usr/lib/systemd/system` or `/lib/…`).
fn unit_dir(root: &Path) -> PathBuf {
    ["usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .map(|dir| root.join(dir))
        .find(|dir| dir.join("pinetboot.service").is_file())
        .unwrap_or_else(|| panic!("no pinetboot.service under {}", root.display()))
}

/// The values of `key=` in a unit file's non-comment lines.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Unit files, without a package

/// Options that give a service its own mount namespace (or worse): its bind mounts would
/// vanish when it exits.
const PRIVATE_NAMESPACE_KEYS: &[&str] = &[
    "PrivateTmp",
    "PrivateMounts",
    "PrivateDevices",
    "ProtectSystem",
    "ProtectHome",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectControlGroups",
    "ProtectKernelLogs",
    "ProtectClock",
    "ProtectProc",
    "ProcSubset",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "RootDirectory",
    "RootImage",
    "MountFlags",
    "DynamicUser",
    "NetworkNamespacePath",
    "PrivateNetwork",
];

/// The service must not get a private mount namespace: its bind mounts would vanish.
#[test]
fn service_has_no_private_mount_namespace() {
    let text =
        fs::read_to_string(Path::new(MANIFEST_DIR).join("packaging/pinetboot.service")).unwrap();
    for key in PRIVATE_NAMESPACE_KEYS {
        assert!(
            unit_values(&text, key).is_empty(),
            "pinetboot.service sets {key}=, which gives it its own mount namespace (or worse)"
        );
    }
    assert_eq!(unit_values(&text, "Type"), ["oneshot"]);
    assert_eq!(
        unit_values(&text, "ExecStart"),
        ["/usr/bin/pinetboot apply --pull=auto"]
    );
    assert_eq!(
        unit_values(&text, "ConditionPathExists"),
        [
            "|/etc/pinetboot/pinetboot.yaml",
            "|/etc/pinetboot/source.yaml"
        ]
    );
    assert!(
        !text.lines().any(|line| line.trim() == "[Install]"),
        "pinetboot.service must stay static: only the timer is enabled"
    );
}

/// The boot-time mounts: before dnsmasq and the NFS server, in the host's mount namespace,
/// enabled for boot, running `pinetboot mount`.
#[test]
fn mount_service_runs_before_the_servers_in_the_hosts_namespace() {
    let text =
        fs::read_to_string(Path::new(MANIFEST_DIR).join("packaging/pinetboot-mount.service"))
            .unwrap();
    for key in PRIVATE_NAMESPACE_KEYS {
        assert!(
            unit_values(&text, key).is_empty(),
            "pinetboot-mount.service sets {key}=, which gives it its own mount namespace"
        );
    }
    assert_eq!(unit_values(&text, "Type"), ["oneshot"]);
    assert_eq!(unit_values(&text, "RemainAfterExit"), ["yes"]);
    assert_eq!(
        unit_values(&text, "ExecStart"),
        ["/usr/bin/pinetboot mount"]
    );
    let before = unit_values(&text, "Before").join(" ");
    for unit in ["dnsmasq.service", "nfs-server.service", "pinetboot.service"] {
        assert!(
            before.split_whitespace().any(|u| u == unit),
            "Before={before}"
        );
    }
    assert_eq!(unit_values(&text, "WantedBy"), ["multi-user.target"]);
}

/// `OnCalendar=` parses (`systemd-analyze calendar`, offline) and the timer catches up.
#[test]
fn timer_calendar_parses() {
    let text =
        fs::read_to_string(Path::new(MANIFEST_DIR).join("packaging/pinetboot.timer")).unwrap();
    let calendars = unit_values(&text, "OnCalendar");
    assert_eq!(calendars, ["daily"]);
    for spec in &calendars {
        let out = check(
            run("systemd-analyze", &["calendar", spec], "systemd-analyze"),
            "systemd-analyze calendar",
        );
        assert!(out.contains("Normalized form: *-*-* 00:00:00"), "{out}");
    }
    assert_eq!(unit_values(&text, "Persistent"), ["true"]);
    assert_eq!(unit_values(&text, "RandomizedDelaySec").len(), 1);
    assert_eq!(unit_values(&text, "WantedBy"), ["timers.target"]);
    assert_eq!(
        unit_values(&text, "ConditionPathExists"),
        [
            "|/etc/pinetboot/pinetboot.yaml",
            "|/etc/pinetboot/source.yaml"
        ]
    );
}

/// The changelog's newest entry is this version, revision 1 (cargo-deb's default).
#[test]
fn changelog_matches_the_crate_version() {
    let text =
        fs::read_to_string(Path::new(MANIFEST_DIR).join("packaging/debian/changelog")).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let expected = format!("pinetboot ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with(&expected),
        "packaging/debian/changelog starts with `{first}`; add an entry `{expected}…`"
    );
}

// ---------------------------------------------------------------------------------------
// The package

/// tooling.md §6: `systemd-analyze verify` of both units on the unpacked package prints
/// nothing (warnings such as unknown keys only print, with rc 0).
#[test]
fn systemd_analyze_verify_is_silent_on_the_unpacked_package() {
    let pkg = package();
    let root = format!("--root={}", pkg.stage.display());
    let out = run(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            "--generators=no",
            "--recursive-errors=no",
            &root,
            "pinetboot.service",
            "pinetboot.timer",
            "pinetboot-mount.service",
        ],
        "systemd-analyze",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify ({}):\n{stdout}{stderr}",
        out.status
    );
}

/// Control fields, file list and maintainer scripts.
#[test]
fn package_fields_contents_and_scripts() {
    let pkg = package();
    let deb = pkg.deb.to_str().unwrap();
    let field = |name: &str| {
        check(
            run("dpkg-deb", &["-f", deb, name], "dpkg-deb"),
            "dpkg-deb -f",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(field("Package"), "pinetboot");
    assert_eq!(field("Section"), "admin");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let depends = field("Depends");
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .collect();
    for needed in ["dnsmasq", "nfs-kernel-server", "libc6"] {
        assert!(names.contains(&needed), "Depends: {depends} lacks {needed}");
    }

    let files = contents(pkg);
    let mut expected: Vec<String> = [
        "/usr/bin/pinetboot",
        "/usr/share/bash-completion/completions/pinetboot",
        "/usr/share/zsh/vendor-completions/_pinetboot",
        "/usr/share/fish/vendor_completions.d/pinetboot.fish",
        "/usr/share/pinetboot/pinetboot.schema.json",
        "/usr/share/doc/pinetboot/README.md",
        "/usr/share/doc/pinetboot/copyright",
        "/usr/share/doc/pinetboot/changelog.Debian.gz",
    ]
    .map(String::from)
    .to_vec();
    for entry in fs::read_dir(Path::new(MANIFEST_DIR).join("examples")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            expected.push(format!("/usr/share/doc/pinetboot/examples/{name}"));
        }
    }
    let pages = generated_man_pages(pkg);
    for page in ["pinetboot.1", "pinetboot-plan.1", "pinetboot-eeprom-show.1"] {
        assert!(
            pages.contains(page),
            "generate man wrote no {page}: {pages:?}"
        );
    }
    assert!(
        !pages.iter().any(|p| p.contains("generate")),
        "the hidden generate command has a man page: {pages:?}"
    );
    expected.extend(pages.iter().map(|p| format!("/usr/share/man/man1/{p}.gz")));
    let missing: Vec<&String> = expected.iter().filter(|p| !files.contains(*p)).collect();
    assert!(missing.is_empty(), "missing from the package: {missing:?}");
    for unit in [
        "pinetboot.service",
        "pinetboot.timer",
        "pinetboot-mount.service",
    ] {
        assert!(
            files.contains(&format!("/usr/lib/systemd/system/{unit}"))
                || files.contains(&format!("/lib/systemd/system/{unit}")),
            "{unit} is not in the package"
        );
    }

    // The maintainer scripts cargo-deb generated: the timer is enabled, nothing is started
    // on a fresh install, and the static service is never enabled.
    let postinst = check(
        run("dpkg-deb", &["-I", deb, "postinst"], "dpkg-deb"),
        "dpkg-deb -I postinst",
    );
    assert!(
        postinst.contains("deb-systemd-helper enable pinetboot.timer"),
        "{postinst}"
    );
    assert!(!postinst.contains("enable pinetboot.service"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper enable pinetboot-mount.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("_dh_action=start") && !postinst.contains("deb-systemd-invoke start"),
        "postinst starts a unit on install:\n{postinst}"
    );
}

/// `lintian` reports no error, and no warning except [`TOLERATED_LINTIAN_WARNINGS`].
#[test]
fn lintian_reports_no_errors() {
    let pkg = package();
    require_tool("lintian", "lintian");
    let out = run(
        "lintian",
        &["--no-tag-display-limit", pkg.deb.to_str().unwrap()],
        "lintian",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            let Some((severity, rest)) = line.split_once(": ") else {
                return false;
            };
            let tag = rest.split_whitespace().nth(1).unwrap_or_default();
            match severity {
                "E" => true,
                "W" => !TOLERATED_LINTIAN_WARNINGS.iter().any(|(t, _)| *t == tag),
                _ => false,
            }
        })
        .collect();
    assert!(
        problems.is_empty(),
        "lintian:\n{}\n--- full output\n{stdout}{stderr}",
        problems.join("\n")
    );
    // rc 1 means errors were found (handled above); 2 means lintian itself failed.
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "lintian failed to run ({}):\n{stdout}{stderr}",
        out.status
    );
}

/// `dpkg --unpack` into a throwaway root, then what a host would use: the units' paths, the
/// timer's enablement, the man page and the bash completion.
#[test]
fn installs_into_a_throwaway_root() {
    let pkg = package();
    require_tool("dpkg", "dpkg");
    require_tool("systemctl", "systemd");
    require_tool("man", "man-db");
    require_tool("bash", "bash");
    let root = pkg.work.join("root");
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // --unpack, not -i: configuring would run the postinst, whose deb-systemd-helper acts on
    // this host's /etc, not on --root. --path-include undoes a host's `path-exclude` of
    // /usr/share/man or /usr/share/doc (minimal container images).
    check(
        run(
            "dpkg",
            &[
                &format!("--root={}", root.display()),
                "--force-not-root",
                "--force-script-chrootless",
                "--log=/dev/null",
                "--path-include=*",
                "--unpack",
                pkg.deb.to_str().unwrap(),
            ],
            "dpkg",
        ),
        "dpkg --unpack",
    );

    // Every absolute path the units name exists in the installed tree; ExecStart= runs.
    let units = unit_dir(&root);
    let service = fs::read_to_string(units.join("pinetboot.service")).unwrap();
    let exec = unit_values(&service, "ExecStart");
    assert_eq!(exec.len(), 1, "{service}");
    let program = exec[0]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches(['-', '@', '+', '!', ':']);
    let staged = root.join(program.trim_start_matches('/'));
    let version = check(
        run(staged.to_str().unwrap(), &["--version"], program),
        "the installed pinetboot --version",
    );
    assert!(version.starts_with("pinetboot "), "{version}");
    let timer = fs::read_to_string(units.join("pinetboot.timer")).unwrap();
    assert_eq!(unit_values(&timer, "Unit"), ["pinetboot.service"]);

    // What postinst's `deb-systemd-helper enable pinetboot.timer` does, done in the root.
    let root_arg = format!("--root={}", root.display());
    check(
        run(
            "systemctl",
            &[
                &root_arg,
                "enable",
                "pinetboot.timer",
                "pinetboot-mount.service",
            ],
            "systemctl",
        ),
        "systemctl --root enable pinetboot.timer pinetboot-mount.service",
    );
    assert!(
        root.join("etc/systemd/system/timers.target.wants/pinetboot.timer")
            .is_symlink()
    );
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/pinetboot-mount.service")
            .is_symlink()
    );
    let state = run(
        "systemctl",
        &[
            &root_arg,
            "is-enabled",
            "pinetboot.timer",
            "pinetboot.service",
            "pinetboot-mount.service",
        ],
        "systemctl",
    );
    assert_eq!(
        String::from_utf8_lossy(&state.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["enabled", "static", "enabled"]
    );

    // The man page renders, with its EXIT STATUS section.
    let page = root.join("usr/share/man/man1/pinetboot-plan.1.gz");
    let rendered = check(
        run_cmd(
            Command::new("man")
                .arg("-l")
                .arg(&page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .env("LC_ALL", "C.UTF-8"),
            "man",
        ),
        "man -l pinetboot-plan.1.gz",
    );
    for needed in ["EXIT STATUS", "--detailed-exitcode", "64"] {
        assert!(rendered.contains(needed), "no {needed} in:\n{rendered}");
    }

    // The bash completion loads and completes the visible subcommands, not `generate`.
    let completion = root.join("usr/share/bash-completion/completions/pinetboot");
    let script = r#"source "$1"
complete -p pinetboot
COMP_WORDS=(pinetboot "") COMP_CWORD=1 COMP_LINE="pinetboot " COMP_POINT=10
_pinetboot pinetboot "" pinetboot
printf 'reply: %s\n' "${COMPREPLY[@]}""#;
    let out = check(
        run(
            "bash",
            &["-c", script, "bash", completion.to_str().unwrap()],
            "bash",
        ),
        "bash completion",
    );
    assert!(
        out.contains("-F _pinetboot") && out.contains(" pinetboot\n"),
        "{out}"
    );
    let replies: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("reply: "))
        .collect();
    for sub in ["validate", "schema", "plan", "apply", "eeprom", "purge"] {
        assert!(replies.contains(sub), "bash offers no {sub}: {replies:?}");
    }
    assert!(!replies.contains("generate"), "{replies:?}");
}
