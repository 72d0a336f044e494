//! `pinetboot eeprom render|sd-card|show` through the real binary, against Raspberry Pi's own
//! tools' outputs (shared/fixtures/rpi-eeprom).

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/rpi-eeprom");
    assert!(p.is_dir(), "fixtures missing at {}", p.display());
    p.canonicalize().unwrap()
}

fn config(dir: &std::path::Path) -> PathBuf {
    let f = fixtures();
    let path = dir.join("pinetboot.yaml");
    std::fs::write(
        &path,
        format!(
            "server: {{address: 10.0.0.1, network: 10.0.0.0/24}}\n\
             bootloader: {{image: {}/pieeprom-2026-05-17.bin}}\n\
             images: {{x: {{source: /srv/x}}}}\n\
             defaults:\n  image: x\n  eeprom: {{boot_order: [sd, network, restart], tftp_prefix: serial, dhcp_timeout: 45000, tftp_file_timeout: 30000, enable_self_update: true, extra: {{NET_INSTALL_AT_POWER_ON: \"1\"}}}}\n\
             clients:\n  a: {{serial: 0c4c21e5}}\n",
            f.display()
        ),
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pinetboot"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1764115200")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn render_matches_the_hand_written_netboot_conf() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let out = run(&["--config", cfg.to_str().unwrap(), "eeprom", "render", "a"]);
    assert_eq!(
        out.stdout,
        std::fs::read(fixtures().join("netboot.conf")).unwrap()
    );
}

#[test]
fn sd_card_files_are_byte_identical_to_rpi_eeprom_tools() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path());
    let card = t.path().join("card");
    run(&[
        "--config",
        cfg.to_str().unwrap(),
        "eeprom",
        "sd-card",
        card.to_str().unwrap(),
    ]);
    let f = fixtures();
    for (ours, theirs) in [
        ("pieeprom.upd", "pieeprom-2026-05-17-netboot.bin"),
        ("pieeprom.sig", "pieeprom-2026-05-17-netboot.sig"),
        ("recovery.bin", "recovery.bin"),
    ] {
        assert!(
            std::fs::read(card.join(ours)).unwrap() == std::fs::read(f.join(theirs)).unwrap(),
            "{ours} differs from {theirs}"
        );
    }
}

#[test]
fn show_prints_the_embedded_config() {
    let f = fixtures();
    let out = run(&[
        "eeprom",
        "show",
        f.join("pieeprom-2026-05-17.bin").to_str().unwrap(),
    ]);
    assert_eq!(
        out.stdout,
        std::fs::read(f.join("bootconf-2026-05-17.txt")).unwrap()
    );
}
