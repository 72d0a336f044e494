//! Users created the way Raspberry Pi OS expects (userconf.txt, read by userconfig.service on
//! first boot), and the warning for trees that already carry a booted system's identity.

mod support;

use support::fixture::{Cfg, ClientCfg, Env, Release};

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

const HASH: &str = "$6$rounds=5000$saltsalt$Q2lnSGkxQ2pkRkVhZ0g0ZnVqU0RmZ2tqc2Q0ZnNkZmc";

#[test]
fn a_declared_user_gets_userconf_txt_until_the_pi_created_it() {
    let env = Env::new();
    env.add_image("bookworm", Release::Bookworm, false);
    config_with_user(
        &env,
        &format!("    user: {{name: alice, password_hash: '{HASH}'}}\n"),
    );
    env.apply_ok();
    env.assert_converged();
    assert_eq!(
        env.read("/nfs/raspi1/boot/firmware/userconf.txt"),
        format!("alice:{HASH}\n")
    );
    // userconfig.service must run to apply it: not masked while the user is pending.
    let unit = env.path("/nfs/raspi1/etc/systemd/system/userconfig.service");
    assert!(
        std::fs::symlink_metadata(&unit).is_err(),
        "userconfig.service masked"
    );
    // First boot: the Pi creates the user and deletes userconf.txt.
    let passwd = env.path("/nfs/raspi1/etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).unwrap();
    text.push_str("alice:x:1001:1001:,,,:/home/alice:/bin/bash\n");
    std::fs::write(&passwd, text).unwrap();
    std::fs::remove_file(env.path("/nfs/raspi1/boot/firmware/userconf.txt")).unwrap();
    // Not drift: the file is not wanted any more; the prompt service is masked again.
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert!(!plan.stdout.contains("userconf.txt"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("userconfig.service"),
        "{}",
        plan.stdout
    );
    env.apply_ok();
    env.assert_converged();
    assert_eq!(
        std::fs::read_link(&unit).unwrap().to_str(),
        Some("/dev/null")
    );
}

#[test]
fn a_bad_password_hash_is_refused_with_a_hint() {
    let env = Env::new();
    env.add_image("bookworm", Release::Bookworm, false);
    config_with_user(&env, "    user: {name: Alice, password_hash: hunter2}\n");
    let r = env.pt(&["validate"]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("clients.raspi1.user.name: `Alice` is not a user name"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("clients.raspi1.user.password_hash: this is not a crypt(3) password hash"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: generate one with `openssl passwd -6`"),
        "{}",
        r.stderr
    );
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
    assert!(
        plan.stdout.contains("! image bookworm (/srv/rootfs/bookworm) looks already booted (etc/machine-id is set and SSH host keys exist)"),
        "{}",
        plan.stdout
    );
    let json = env.pt(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
    // A fresh image (machine-id "uninitialized") gets no warning.
    std::fs::write(img.join("etc/machine-id"), "uninitialized\n").unwrap();
    std::fs::remove_file(img.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
    let plan = env.pt(&["plan"]);
    assert!(
        !plan.stdout.contains("looks already booted"),
        "{}",
        plan.stdout
    );
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
    assert!(
        !plan.stdout.contains("looks already booted"),
        "{}",
        plan.stdout
    );
}
