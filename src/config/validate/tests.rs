//! Unit tests of the value checks; whole configs are tested in `tests/config_errors.rs`.

use super::clients::*;
use super::fields::*;

#[test]
fn serials_normalise() {
    assert_eq!(normalise_serial("0C4C21E5").as_deref(), Some("0c4c21e5"));
    assert_eq!(
        normalise_serial("100000000c4c21e5").as_deref(),
        Some("0c4c21e5")
    );
    assert_eq!(normalise_serial("0x0c4c21e5").as_deref(), Some("0c4c21e5"));
    assert_eq!(normalise_serial("c4c21e5"), None);
    assert_eq!(normalise_serial("0c4c21eg"), None);
}

#[test]
fn macs_normalise() {
    assert_eq!(
        normalise_mac("DC-A6-32-01-02-03").as_deref(),
        Some("dc:a6:32:01:02:03")
    );
    assert_eq!(normalise_mac("dc:a6:32:01:02"), None);
    assert_eq!(normalise_mac("dc:a6:32:01:02:0g"), None);
}

#[test]
fn names() {
    assert!(safe_name("raspi1").is_ok());
    for bad in [
        "",
        ".x",
        "-x",
        "x-",
        "a/b",
        "..",
        "a b",
        "a\u{7}",
        &"x".repeat(64),
    ] {
        assert!(safe_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn public_keys() {
    assert!(looks_like_public_key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx admin@x"
    ));
    assert!(looks_like_public_key(
        "from=\"10.0.0.0/8\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"
    ));
    assert!(!looks_like_public_key("hello world"));
    assert!(!looks_like_public_key("ssh-ed25519"));
}
