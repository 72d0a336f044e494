//! Users created the way Raspberry Pi OS expects (userconf.txt, read by userconfig.service on
//! first boot), and the warning for trees that already carry a booted system's identity.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::support::fixture::{Cfg, ClientCfg, Env, Release};
use crate::support::text::{assert_contains, assert_lacks};

/// What raspi1's first boot does with a pending user: adds its `passwd_line` to the root's
/// `etc/passwd` and deletes `userconf.txt`.
fn first_boot_creates_user(env: &Env, passwd_line: &str) {
    let passwd = env.path("/nfs/raspi1/etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).unwrap();
    text.push_str(passwd_line);
    std::fs::write(&passwd, text).unwrap();
    std::fs::remove_file(env.path("/nfs/raspi1/boot/firmware/userconf.txt")).unwrap();
}

fn config_with_user(env: &Env, user_line: &str) {
    let cfg = Cfg::default()
        .image("bookworm")
        .client(ClientCfg::new("raspi1", "0c4c21e5", "bookworm"));
    let yaml = cfg.yaml().replace(
        "    serial: \"0c4c21e5\"\n",
        &format!("    serial: \"0c4c21e5\"\n{user_line}"),
    );
    assert!(yaml.contains(user_line), "{yaml}");
    std::fs::write(&env.config, yaml).unwrap();
}

/// An env with a Bookworm image `bookworm` and client raspi1 declaring `user_line`.
fn env_with_user(user_line: &str) -> Env {
    let env = Env::new();
    env.add_image("bookworm", Release::Bookworm, false);
    config_with_user(&env, user_line);
    env
}

const HASH: &str = "$6$rounds=5000$saltsalt$Q2lnSGkxQ2pkRkVhZ0g0ZnVqU0RmZ2tqc2Q0ZnNkZmc";

#[test]
fn a_declared_user_gets_userconf_txt_until_the_pi_created_it() {
    let env = env_with_user(&format!(
        "    user: {{name: alice, password_hash: '{HASH}'}}\n"
    ));
    // The hash is a secret: the plan (the nightly apply's journal) never shows it.
    for args in [&["plan"][..], &["plan", "--json"]] {
        let plan = env.pt(args);
        plan.expect_code(0);
        assert_contains(&plan.stdout, "userconf.txt");
        assert_lacks(&plan.stdout, "saltsalt");
    }
    let apply = env.apply_ok();
    assert_lacks(&apply.stdout, "saltsalt");
    env.assert_converged();
    assert_eq!(
        env.read("/nfs/raspi1/boot/firmware/userconf.txt"),
        format!("alice:{HASH}\n")
    );
    // In the boot folder TFTP serves: root's alone (dnsmasq refuses it, tests/datapath.rs).
    let meta = std::fs::metadata(env.path("/nfs/raspi1/boot/firmware/userconf.txt")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o600, 0, 0)
    );
    // userconfig.service must run to apply it: not masked while the user is pending.
    let unit = env.path("/nfs/raspi1/etc/systemd/system/userconfig.service");
    assert!(
        std::fs::symlink_metadata(&unit).is_err(),
        "userconfig.service masked"
    );
    // First boot: the Pi creates the user and deletes userconf.txt.
    first_boot_creates_user(&env, "alice:x:1001:1001:,,,:/home/alice:/bin/bash\n");
    // Not drift: the file is not wanted any more; the prompt service is masked again.
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_lacks(&plan.stdout, "userconf.txt");
    assert_contains(&plan.stdout, "userconfig.service");
    env.apply_ok();
    env.assert_converged();
    assert_eq!(
        std::fs::read_link(&unit).unwrap().to_str(),
        Some("/dev/null")
    );
}

#[test]
fn a_bad_password_hash_is_refused_with_a_hint() {
    let env = env_with_user("    user: {name: Alice, password_hash: hunter2}\n");
    let r = env.pt(&["validate"]);
    r.expect_code(1);
    assert_contains(
        &r.stderr,
        "clients.raspi1.user.name: `Alice` is not a user name",
    );
    assert_contains(
        &r.stderr,
        "clients.raspi1.user.password_hash: this is not a crypt(3) password hash",
    );
    assert_contains(&r.stderr, "hint: generate one with `openssl passwd -6`");
}

#[test]
fn a_booted_image_is_warned_about_a_booted_client_root_is_not() {
    let env = Env::new();
    let img = env.add_image("bookworm", Release::Bookworm, false);
    std::fs::write(
        img.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::fs::create_dir_all(img.join("etc/ssh")).unwrap();
    std::fs::write(img.join("etc/ssh/ssh_host_ed25519_key"), "key\n").unwrap();
    config_with_user(&env, "");
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(
        &plan.stdout,
        "! image bookworm (/srv/rootfs/bookworm) looks already booted (etc/machine-id is set and SSH host keys exist)",
    );
    let json = env.pt(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
    // A fresh image (machine-id "uninitialized") gets no warning.
    std::fs::write(img.join("etc/machine-id"), "uninitialized\n").unwrap();
    std::fs::remove_file(img.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
    let plan = env.pt(&["plan"]);
    assert_lacks(&plan.stdout, "looks already booted");
    // A client root that has booted holds its own identity (pinetboot gave it a host key;
    // the Pi set its machine-id): that is the expected state, not a warning.
    env.apply_ok();
    std::fs::write(
        env.path("/nfs/raspi1/etc/machine-id"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    assert!(
        env.path("/nfs/raspi1/etc/ssh/ssh_host_ed25519_key")
            .is_file()
    );
    let plan = env.pt(&["plan"]);
    assert_lacks(&plan.stdout, "looks already booted");
}

#[test]
fn a_world_readable_userconf_txt_is_made_root_only() {
    // What an older pinetboot wrote (0644), or a Pi that loosened it: put right, not left.
    let env = env_with_user(&format!(
        "    user: {{name: alice, password_hash: '{HASH}'}}\n"
    ));
    env.apply_ok();
    let userconf = env.path("/nfs/raspi1/boot/firmware/userconf.txt");
    std::fs::set_permissions(&userconf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(
        &plan.stdout,
        "~ file /nfs/raspi1/boot/firmware/userconf.txt (mode 0644 owner 0:0 → mode 0600)",
    );
    env.apply_ok();
    env.assert_converged();
    assert_eq!(std::fs::metadata(&userconf).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn a_created_user_whose_passwd_line_pinetboot_cannot_parse_is_not_pending_again() {
    // The Pi made the user (its line names it): userconf.txt is not wanted again, whatever
    // the line's other fields hold.
    let env = env_with_user(&format!(
        "    user: {{name: alice, password_hash: '{HASH}'}}\n"
    ));
    env.apply_ok();
    first_boot_creates_user(&env, "alice:x:1001x:1001:,,,:/home/alice:/bin/bash\n");
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_lacks(&plan.stdout, "userconf.txt");
    env.apply_ok();
    env.assert_converged();
    assert!(!env.path("/nfs/raspi1/boot/firmware/userconf.txt").exists());
}

#[test]
fn secrets_an_image_left_in_the_boot_folder_are_warned_about_and_kept() {
    // Raspberry Pi Imager's customisation leaves firstrun.sh (password hash, Wi-Fi key) in the
    // boot partition; TFTP would serve it to anyone. pinetboot does not own it: it says so.
    let env = Env::new();
    let img = env.add_image("bookworm", Release::Bookworm, false);
    std::fs::write(
        img.join("boot/firmware/firstrun.sh"),
        "#!/bin/sh\necho 'pi:$6$x' | chpasswd -e\n",
    )
    .unwrap();
    std::fs::set_permissions(
        img.join("boot/firmware/firstrun.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    config_with_user(&env, "");
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    let warning = "! client raspi1: boot/firmware/firstrun.sh is served over TFTP to anyone on the boot network (mode 0755) and may hold secrets";
    assert_contains(&plan.stdout, warning);
    env.apply_ok();
    let firstrun = env.path("/nfs/raspi1/boot/firmware/firstrun.sh");
    assert_eq!(
        std::fs::metadata(&firstrun).unwrap().mode() & 0o7777,
        0o755,
        "not pinetboot's to change"
    );
    // A commented template (what an image ships as user-data) holds nothing: no warning.
    std::fs::write(
        env.path("/nfs/raspi1/boot/firmware/user-data"),
        "#cloud-config\n# users:\n#   - name: pi\n",
    )
    .unwrap();
    let plan = env.pt(&["plan"]);
    assert_lacks(&plan.stdout, "user-data");
    // Made root's alone on the Pi: no warning.
    std::fs::set_permissions(&firstrun, std::fs::Permissions::from_mode(0o700)).unwrap();
    let plan = env.pt(&["plan"]);
    assert_lacks(&plan.stdout, "firstrun.sh");
}
