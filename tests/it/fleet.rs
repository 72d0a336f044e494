//! A fleet from one git repository: two boot servers (two throwaway roots, each in its own
//! mount namespace) pull one bare repository over `file://` and apply only their own part.
//! A client moved between servers converges both; a broken commit, an unsigned commit (when
//! signatures are required) or a commit signed by an unknown key is refused and the last good
//! commit stays in force; `plan --pull --ref BRANCH` previews a branch without applying it;
//! `status --json` names the commit a server runs.

use std::path::Path;

use serde_json::Value;

use crate::support::fixture::{Env, KEY1, Release, S1, S2, S3};
use crate::support::gitrepo::{GitRepo, git, ssh_key};

/// `haystack` holds `needle` (`why` says what that shows).
#[track_caller]
fn assert_contains(haystack: &str, needle: &str, why: &str) {
    assert!(
        haystack.contains(needle),
        "{why}: no {needle:?} in:\n{haystack}"
    );
}

/// `haystack` lacks `needle`.
#[track_caller]
fn assert_lacks(haystack: &str, needle: &str, why: &str) {
    assert!(
        !haystack.contains(needle),
        "{why}: {needle:?} in:\n{haystack}"
    );
}

/// Where the fleet file is in the repository.
const FLEET_PATH: &str = "fleet/pinetboot.yaml";

/// The fleet: lab-a (10.1.0.0/24) and lab-b (10.2.0.0/24); raspi1 on lab-a by its address,
/// raspi2 on `raspi2_on` by name, raspi3 on lab-b by its address.
fn fleet_yaml(raspi2_on: &str) -> String {
    format!(
        "servers:
  lab-a: {{address: 10.1.0.1, network: 10.1.0.0/24}}
  lab-b: {{address: 10.2.0.1, network: 10.2.0.0/24}}
images:
  bookworm-lite: {{source: /srv/rootfs/bookworm-lite}}
defaults:
  image: bookworm-lite
  ssh: {{authorized_keys: [\"{KEY1}\"]}}
clients:
  raspi1: {{serial: \"{S1}\", address: 10.1.0.11}}
  raspi2: {{serial: \"{S2}\", server: {raspi2_on}}}
  raspi3: {{serial: \"{S3}\", address: 10.2.0.13}}
"
    )
}

/// A server: a throwaway root with the image and `/etc/pinetboot/source.yaml` naming the
/// repository and this server (and `extra` lines).
fn server(repo: &GitRepo, name: &str, extra: &str) -> Env {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    let etc = env.path("/etc/pinetboot");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("source.yaml"),
        format!(
            "url: {}\nref: main\npath: {FLEET_PATH}\nserver: {name}\n{extra}",
            repo.url()
        ),
    )
    .unwrap();
    env
}

/// The state file's record of the commit applied.
fn recorded_commit(env: &Env) -> Option<String> {
    let state: Value = serde_json::from_str(&env.read("/var/lib/pinetboot/state.json")).unwrap();
    state["source"]["commit"].as_str().map(str::to_owned)
}

/// The commit checked out in the server's config repository (the one in force).
fn in_force(env: &Env) -> String {
    git(
        &env.path("/var/lib/pinetboot/config"),
        &["rev-parse", "HEAD"],
    )
}

/// The clients whose roots a server exports, by the drop-in (sorted names).
fn exported(env: &Env) -> Vec<String> {
    let path = env.path("/etc/exports.d/pinetboot.exports");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("/nfs/"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The serial folders bind-mounted under the server's TFTP root.
fn mounted_serials(env: &Env) -> Vec<String> {
    let tftp = env.path("/tftpboot");
    let mut serials: Vec<String> = env
        .ns
        .mounts_under(&tftp)
        .into_iter()
        .filter_map(|(_, p)| Path::new(&p).file_name()?.to_str().map(str::to_owned))
        .collect();
    serials.sort();
    serials
}

/// `pinetboot pull` on `env`, which must succeed.
#[track_caller]
fn pull_ok(env: &Env) -> String {
    let r = env.pt_no_config(&["pull"]);
    r.expect_code(0);
    r.stdout
}

#[test]
fn two_servers_pull_their_own_part_and_a_moved_client_converges_both() {
    let repo = GitRepo::new();
    let first = repo.commit(&[(FLEET_PATH, &fleet_yaml("lab-b"))], "two labs", None);
    let a = server(&repo, "lab-a", "");
    let b = server(&repo, "lab-b", "");

    let out = pull_ok(&a);
    assert_contains(&out, "Server: lab-a", "pull names the server");
    assert_contains(&out, &first[..12], "pull names the commit");
    pull_ok(&b);
    // Each server exports, serves and mounts only its own clients.
    assert_eq!(exported(&a), ["raspi1"]);
    assert_eq!(exported(&b), ["raspi2", "raspi3"]);
    assert_eq!(mounted_serials(&a), [S1]);
    assert_eq!(mounted_serials(&b), [S2, S3]);
    let dnsmasq_a = a.read("/etc/dnsmasq.d/pinetboot.conf");
    assert_contains(&dnsmasq_a, "10.1.0.", "lab-a's drop-in serves its network");
    assert_lacks(
        &dnsmasq_a,
        "10.2.0.",
        "lab-a's drop-in knows nothing of lab-b",
    );
    let dnsmasq_b = b.read("/etc/dnsmasq.d/pinetboot.conf");
    assert_contains(&dnsmasq_b, "10.2.0.", "lab-b's drop-in serves its network");
    assert_lacks(
        &dnsmasq_b,
        "10.1.0.",
        "lab-b's drop-in knows nothing of lab-a",
    );
    assert!(!a.path("/nfs/raspi2").exists() && !b.path("/nfs/raspi1").exists());
    for env in [&a, &b] {
        assert_eq!(recorded_commit(env).as_deref(), Some(first.as_str()));
        assert_eq!(in_force(env), first);
        // Plain `plan` reads the commit in force: nothing to do, and it says which commit.
        let plan = env.pt_no_config(&["plan", "--detailed-exitcode"]);
        plan.expect_code(0);
        assert_contains(
            &plan.stdout,
            "(applied last)",
            "plan names the commit in force",
        );
        assert_contains(&plan.stdout, "No changes.", "converged");
    }

    // Move raspi2 to lab-a: after their next pull, lab-a serves it and lab-b no longer does.
    let second = repo.commit(
        &[(FLEET_PATH, &fleet_yaml("lab-a"))],
        "raspi2 moves to lab-a",
        None,
    );
    pull_ok(&a);
    let out = pull_ok(&b);
    assert_contains(&out, "kept: client root", "lab-b keeps raspi2's data");
    assert_eq!(exported(&a), ["raspi1", "raspi2"]);
    assert_eq!(exported(&b), ["raspi3"]);
    assert_eq!(mounted_serials(&a), [S1, S2]);
    assert_eq!(mounted_serials(&b), [S3]);
    assert!(
        b.path("/nfs/raspi2/etc/hostname").exists(),
        "client data is never deleted unless asked by name"
    );
    for env in [&a, &b] {
        assert_eq!(recorded_commit(env).as_deref(), Some(second.as_str()));
        let plan = env.pt_no_config(&["plan", "--detailed-exitcode"]);
        plan.expect_code(0);
        // "Which commit is server X running": one command.
        let status = env.pt_no_config(&["status", "--json"]);
        status.expect_code(0);
        let s: Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(s["source"]["commit"], second.as_str(), "{}", status.stdout);
        assert_eq!(s["source"]["subject"], "raspi2 moves to lab-a");
    }
    let status = a.pt_no_config(&["status", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&status.stdout).unwrap()["server"],
        "lab-a"
    );
    // doctor: the host runs the commit in force.
    let doctor = a.pt_no_config(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&doctor.stdout).unwrap();
    let source = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "source")
        .unwrap_or_else(|| panic!("no source finding: {}", doctor.stdout));
    assert_eq!(source["severity"], "ok", "{source}");
    assert_contains(
        source["detail"].as_str().unwrap(),
        &second[..12],
        "names the commit",
    );
}

#[test]
fn a_broken_commit_is_refused_and_the_last_good_one_stays_in_force() {
    let repo = GitRepo::new();
    let good = repo.commit(&[(FLEET_PATH, &fleet_yaml("lab-b"))], "two labs", None);
    let a = server(&repo, "lab-a", "");
    pull_ok(&a);
    let exports_before = a.read("/etc/exports.d/pinetboot.exports");

    // A bad serial: the config does not validate.
    let broken_yaml = fleet_yaml("lab-b").replace(S1, "not-a-serial");
    let broken = repo.commit(&[(FLEET_PATH, &broken_yaml)], "typo in raspi1", None);
    let r = a.pt_no_config(&["pull"]);
    r.expect_code(1);
    assert_contains(
        &r.stderr,
        &format!("commit {}", &broken[..12]),
        "names the commit",
    );
    assert_contains(&r.stderr, "typo in raspi1", "names the commit's subject");
    assert_contains(&r.stderr, "does not validate", "says why");
    assert_contains(
        &r.stderr,
        &format!(
            "{FLEET_PATH}@{}:10:20: clients.raspi1.serial",
            &broken[..12]
        ),
        "the error is located in the file at that commit",
    );
    assert_contains(&r.stderr, "clients.raspi1.serial", "names the field");
    assert_contains(
        &r.stdout,
        "keeping commit",
        "converges on the last good commit",
    );
    assert_eq!(in_force(&a), good);
    assert_eq!(recorded_commit(&a).as_deref(), Some(good.as_str()));
    assert_eq!(a.read("/etc/exports.d/pinetboot.exports"), exports_before);
    // doctor says a fetched commit is not in force.
    let doctor = a.pt_no_config(&["doctor"]);
    assert_contains(
        &doctor.stdout,
        &broken[..12],
        "doctor names the refused commit",
    );

    // A symlink where the config file should be is refused the same way.
    std::fs::remove_file(repo.work.join(FLEET_PATH)).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", repo.work.join(FLEET_PATH)).unwrap();
    let link = repo.commit(&[], "config is a symlink", None);
    let r = a.pt_no_config(&["pull"]);
    r.expect_code(1);
    assert_contains(&r.stderr, &link[..12], "names the commit");
    assert_eq!(in_force(&a), good);

    // A good commit after them is applied.
    std::fs::remove_file(repo.work.join(FLEET_PATH)).unwrap();
    let fixed = repo.commit(&[(FLEET_PATH, &fleet_yaml("lab-a"))], "fixed", None);
    pull_ok(&a);
    assert_eq!(in_force(&a), fixed);
    assert_eq!(recorded_commit(&a).as_deref(), Some(fixed.as_str()));
    assert_eq!(exported(&a), ["raspi1", "raspi2"]);
}

#[test]
fn signed_commits_are_required_when_allowed_signers_is_set() {
    let repo = GitRepo::new();
    let (admin, admin_pub) = ssh_key(repo.dir.path(), "admin");
    let (stranger, _) = ssh_key(repo.dir.path(), "stranger");
    let a = server(
        &repo,
        "lab-a",
        "allowed_signers: /etc/pinetboot/allowed_signers\n",
    );
    std::fs::write(
        a.path("/etc/pinetboot/allowed_signers"),
        format!("admin@example.org {admin_pub}\n"),
    )
    .unwrap();

    let unsigned = repo.commit(&[(FLEET_PATH, &fleet_yaml("lab-b"))], "unsigned", None);
    let r = a.pt_no_config(&["pull"]);
    r.expect_code(1);
    assert_contains(&r.stderr, &unsigned[..12], "names the commit");
    assert_contains(&r.stderr, "not signed", "says it is unsigned");
    assert!(exported(&a).is_empty(), "nothing applied");
    assert!(!a.path("/nfs/raspi1").exists());

    let wrong = repo.commit(
        &[(FLEET_PATH, &fleet_yaml("lab-a"))],
        "by a stranger",
        Some(&stranger),
    );
    let r = a.pt_no_config(&["pull"]);
    r.expect_code(1);
    assert_contains(&r.stderr, &wrong[..12], "names the commit");
    assert!(exported(&a).is_empty(), "nothing applied");

    let signed = repo.commit(
        &[(FLEET_PATH, &fleet_yaml("lab-b"))],
        "signed",
        Some(&admin),
    );
    pull_ok(&a);
    assert_eq!(in_force(&a), signed);
    assert_eq!(exported(&a), ["raspi1"]);
    let state: Value = serde_json::from_str(&a.read("/var/lib/pinetboot/state.json")).unwrap();
    assert_eq!(state["source"]["commit"], signed.as_str());
    assert_contains(
        state["source"]["signed_by"].as_str().unwrap_or_default(),
        "admin@example.org",
        "the signer is recorded",
    );
}

/// The timer's form, `apply --pull=auto`: with source.yaml it pulls (the commit is applied
/// and recorded); with `--config` it applies that file and records no commit.
#[test]
fn apply_pull_auto_pulls_when_the_source_is_set_up() {
    let repo = GitRepo::new();
    let commit = repo.commit(&[(FLEET_PATH, &fleet_yaml("lab-b"))], "two labs", None);
    let a = server(&repo, "lab-a", "");
    a.pt_no_config(&["apply", "--pull=auto"]).expect_code(0);
    assert_eq!(in_force(&a), commit);
    assert_eq!(recorded_commit(&a).as_deref(), Some(commit.as_str()));
    assert_eq!(exported(&a), ["raspi1"]);
    // An explicit file wins over pull mode; the state then names no commit.
    std::fs::write(&a.config, fleet_yaml("lab-a")).unwrap();
    a.pt(&["--server", "lab-a", "apply", "--pull=auto"])
        .expect_code(0);
    assert_eq!(exported(&a), ["raspi1", "raspi2"]);
    assert_eq!(recorded_commit(&a), None);
}

#[test]
fn plan_pull_ref_shows_a_branch_without_applying_it() {
    let repo = GitRepo::new();
    let main = repo.commit(&[(FLEET_PATH, &fleet_yaml("lab-b"))], "two labs", None);
    let a = server(&repo, "lab-a", "");
    pull_ok(&a);
    repo.switch("move-raspi2", true);
    let branch = repo.commit(
        &[(FLEET_PATH, &fleet_yaml("lab-a"))],
        "raspi2 to lab-a",
        None,
    );

    let r = a.pt_no_config(&["plan", "--pull", "--ref", "move-raspi2", "--json"]);
    r.expect_code(0);
    let plan: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(plan["server"], "lab-a");
    assert_eq!(plan["source"]["commit"], branch.as_str());
    assert_eq!(plan["source"]["ref"], "move-raspi2");
    assert_eq!(plan["applied"]["commit"], main.as_str());
    let paths: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert!(paths.contains(&"/nfs/raspi2"), "{paths:?}");
    // Nothing changed: the commit in force, the state and the exports are main's.
    assert_eq!(in_force(&a), main);
    assert_eq!(recorded_commit(&a).as_deref(), Some(main.as_str()));
    assert_eq!(exported(&a), ["raspi1"]);
    // And a plain pull still takes main.
    let out = pull_ok(&a);
    assert_contains(&out, "Apply complete: no changes.", "main is unchanged");
}

/// A network namespace this test made, with `addresses` on its loopback; removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str, addresses: &[&str]) -> Netns {
        crate::support::tools::require_tool("ip", "iproute2");
        let name = format!("pnb-fleet-{}-{tag}", std::process::id());
        let ip =
            |args: &[&str]| crate::support::tools::run(std::process::Command::new("ip").args(args));
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        for a in addresses {
            ip(&["-n", &ns.0, "addr", "add", a, "dev", "lo"]);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// `pinetboot --root R --config FLEET plan --json` with the host name `hostname` (its own UTS
/// namespace) in network namespace `netns`, plus `extra` arguments. Plan makes no mount, so
/// it runs outside the env's mount namespace (which does not see namespaces made after it).
fn plan_as(env: &Env, netns: &Netns, hostname: &str, extra: &[&str]) -> crate::support::run::Run {
    let script = format!(
        "hostname {hostname} && exec ip netns exec {} \"$@\"",
        netns.0
    );
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["120", "unshare", "-u", "sh", "-ec", &script, "sh"])
        .arg(crate::support::tools::bin())
        .arg("--root")
        .arg(&env.root)
        .arg("--config")
        .arg(&env.config)
        .args(["plan", "--json"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("PINETBOOT_SERVER");
    crate::support::run::Run::of(cmd, format!("plan as {hostname} in {}", netns.0))
}

#[test]
fn the_server_is_found_by_name_then_hostname_then_address_else_a_clear_error() {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    std::fs::write(&env.config, fleet_yaml("lab-b")).unwrap();
    let server_of = |r: &crate::support::run::Run| -> String {
        r.expect_code(0);
        let plan: Value = serde_json::from_str(&r.stdout).unwrap();
        plan["server"].as_str().unwrap_or_default().to_owned()
    };
    let lab_b_address = Netns::new("b", &["10.2.0.1/24"]);
    let nothing = Netns::new("none", &[]);
    // The hostname wins over an address; an address is enough; --server wins over both.
    assert_eq!(server_of(&plan_as(&env, &nothing, "lab-a", &[])), "lab-a");
    assert_eq!(
        server_of(&plan_as(&env, &lab_b_address, "lab-a.example.org", &[])),
        "lab-a"
    );
    assert_eq!(
        server_of(&plan_as(&env, &lab_b_address, "bootsrv", &[])),
        "lab-b"
    );
    assert_eq!(
        server_of(&plan_as(&env, &nothing, "bootsrv", &["--server", "lab-b"])),
        "lab-b"
    );
    // Each server's plan holds only its own clients.
    let plan: Value =
        serde_json::from_str(&plan_as(&env, &lab_b_address, "bootsrv", &[]).stdout).unwrap();
    let paths = plan["changes"].to_string();
    assert!(
        paths.contains("/nfs/raspi3") && !paths.contains("/nfs/raspi1"),
        "{paths}"
    );
    // Nothing matches: an error naming the candidates, and nothing planned.
    let r = plan_as(&env, &nothing, "bootsrv", &[]);
    r.expect_code(1);
    assert_contains(
        &r.stderr,
        "this host (bootsrv, addresses none) is none of the config's servers: lab-a (10.1.0.1), lab-b (10.2.0.1)",
        "lists the candidates",
    );
    assert_contains(&r.stderr, "--server NAME", "says how to choose");
    // Both addresses here: several match.
    let both = Netns::new("both", &["10.1.0.1/24", "10.2.0.1/24"]);
    let r = plan_as(&env, &both, "bootsrv", &[]);
    r.expect_code(1);
    assert_contains(
        &r.stderr,
        "this host has the addresses of several servers: lab-a (10.1.0.1), lab-b (10.2.0.1)",
        "lists the candidates",
    );
    // An unknown name.
    let r = plan_as(&env, &nothing, "bootsrv", &["--server", "lab-c"]);
    r.expect_code(1);
    assert_contains(&r.stderr, "server `lab-c` is not declared", "names it");
}

/// The example fleet repository validates as a whole, as a normal user with no host (what
/// its CI workflow runs), and its workflow runs exactly that command.
#[test]
fn the_example_fleet_validates_without_root_as_its_ci_workflow_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    let workflow = std::fs::read_to_string(dir.join("validate.yml")).unwrap();
    let command = "pinetboot validate --config pinetboot.yaml";
    assert_contains(
        &workflow,
        &format!("run: {command}"),
        "the workflow validates",
    );
    // A copy readable by anyone, validated as `nobody` from its folder.
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = tmp.path().join("pinetboot.yaml");
    std::fs::copy(dir.join("pinetboot.yaml"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = if pinetboot::host::process::is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "nobody", "--", crate::support::tools::bin()]);
        c
    } else {
        std::process::Command::new(crate::support::tools::bin())
    };
    let out = cmd
        .args(["validate", "--config", "pinetboot.yaml"])
        .current_dir(tmp.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "pinetboot.yaml: valid (1 image, 4 clients, 2 servers)\n  \
         server classroom (10.20.0.1, 10.20.0.0/24): 2 clients: desk01, desk02\n  \
         server lab (10.30.0.1, 10.30.0.0/24): 2 clients: bench01, bench02\n"
    );
}

/// The example `source.yaml` is what the settings reader takes, with every field.
#[test]
fn the_example_source_settings_parse() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/pinetboot");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet/source.yaml"),
        etc.join("source.yaml"),
    )
    .unwrap();
    let host = pinetboot::host::Host::new(root.path()).unwrap();
    let s = pinetboot::source::Settings::load(&host)
        .unwrap()
        .expect("the file is there");
    assert_eq!(s.url, "https://git.example.org/school/pi-fleet.git");
    assert_eq!(
        (s.git_ref.as_str(), s.path.as_str(), s.server.as_deref()),
        ("main", "pinetboot.yaml", Some("classroom"))
    );
    assert_eq!(
        s.allowed_signers.as_deref(),
        Some(Path::new("/etc/pinetboot/allowed_signers"))
    );
}
