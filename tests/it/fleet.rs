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
    r.stdout.clone()
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
