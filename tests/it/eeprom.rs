//! The bootloader EEPROM image format against Raspberry Pi's own tools' output, corrupt
//! input, and the declared settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pinetboot::eeprom::{
    BootMode, EepromError, EepromImage, EepromSettings, FILE_MAGIC, IMAGE_SIZE, MAX_CONFIG_SIZE,
    PAD_MAGIC, SectionKind, SettingsProblem, TftpPrefix, boot_order_value, sig_file,
};
use proptest::prelude::*;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as ValueError, MapDeserializer};
use sha2::{Digest, Sha256};

use crate::support::tree::pseudo_random_bytes;

const TIMESTAMP: u64 = 1_764_115_200;
const BASE: &str = "pieeprom-2026-05-17.bin";
const LATEST: &str = "pieeprom-2026-08-04.bin";
const BOOTCONF_HEADER: usize = 470_528;

// ---------------------------------------------------------------------------------------
// Fixtures

/// The rpi-eeprom fixtures: `$PINETBOOT_SHARED/fixtures/rpi-eeprom` when that variable is
/// set, else `shared/` beside or two levels above the crate. Panics, naming every path
/// tried, when none exists: a missing fixture fails the tests, it never skips them.
fn fixtures_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tried = match std::env::var_os("PINETBOOT_SHARED") {
        Some(shared) => vec![PathBuf::from(shared).join("fixtures/rpi-eeprom")],
        None => vec![
            manifest.join("../shared/fixtures/rpi-eeprom"),
            manifest.join("../../shared/fixtures/rpi-eeprom"),
        ],
    };
    if let Some(found) = tried.iter().find(|dir| dir.is_dir()) {
        return found.clone();
    }
    panic!(
        "rpi-eeprom fixtures not found; tried: {} (set PINETBOOT_SHARED to the shared/ folder)",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// A fixture's bytes, after checking them against `SHA256SUMS`.
fn fixture(name: &str) -> Vec<u8> {
    let dir = fixtures_dir();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).expect("read SHA256SUMS");
    let expected = sums
        .lines()
        .filter_map(|line| line.split_once("  "))
        .find(|(_, file)| *file == name)
        .map(|(digest, _)| digest.to_owned())
        .unwrap_or_else(|| panic!("{name} is not listed in SHA256SUMS"));
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        expected,
        "{name} does not match SHA256SUMS"
    );
    bytes
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixture is UTF-8")
}

fn base() -> EepromImage {
    EepromImage::parse(fixture(BASE)).expect("parse base image")
}

fn assert_same_image(actual: &[u8], expected: &[u8]) {
    assert_eq!(actual.len(), expected.len(), "image length");
    if let Some(at) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!(
            "images differ first at offset {at:#x}: {:02x?} vs {:02x?}",
            &actual[at..(at + 16).min(actual.len())],
            &expected[at..(at + 16).min(expected.len())]
        );
    }
}

#[test]
fn every_fixture_matches_sha256sums() {
    let sums = std::fs::read_to_string(fixtures_dir().join("SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names.len(), 8);
    for name in names {
        assert!(!fixture(name).is_empty(), "{name} is empty");
    }
}

// ---------------------------------------------------------------------------------------
// Byte-identical with rpi-eeprom-config and rpi-eeprom-digest

#[test]
fn config_of_base_is_what_rpi_eeprom_config_prints() {
    assert_eq!(
        base().config().unwrap(),
        fixture_text("bootconf-2026-05-17.txt")
    );
}

#[test]
fn config_of_latest_is_read() {
    let latest = EepromImage::parse(fixture(LATEST)).unwrap();
    let expected = fixture_text("bootconf-2026-05-17.txt");
    assert_eq!(latest.config().unwrap(), expected);
    assert_eq!(latest.config_bytes().unwrap(), expected.as_bytes());
    assert_eq!(latest.timestamp(), None);
}

#[test]
fn with_config_without_timestamp_is_byte_identical() {
    let out = base()
        .with_config(&fixture_text("netboot.conf"), None)
        .unwrap();
    assert_same_image(&out, &fixture("pieeprom-2026-05-17-netboot-nots.bin"));
}

#[test]
fn with_config_with_timestamp_is_byte_identical() {
    let out = base()
        .with_config(&fixture_text("netboot.conf"), Some(TIMESTAMP))
        .unwrap();
    assert_same_image(&out, &fixture("pieeprom-2026-05-17-netboot.bin"));
}

#[test]
fn sig_file_is_what_rpi_eeprom_digest_writes() {
    let image = fixture("pieeprom-2026-05-17-netboot.bin");
    let sig = fixture_text("pieeprom-2026-05-17-netboot.sig");
    assert_eq!(sig_file(&image, TIMESTAMP), sig);
    assert!(sig.ends_with("\nts: 1764115200\n"));
}

#[test]
fn timestamp_reads_back_from_the_image_tail() {
    assert_eq!(base().timestamp(), None);
    let nots = EepromImage::parse(fixture("pieeprom-2026-05-17-netboot-nots.bin")).unwrap();
    assert_eq!(nots.timestamp(), None);
    let stamped = EepromImage::parse(fixture("pieeprom-2026-05-17-netboot.bin")).unwrap();
    assert_eq!(stamped.timestamp(), Some(TIMESTAMP));
    let tail = &stamped.as_bytes()[IMAGE_SIZE - 8..];
    assert_eq!(tail[4..], (TIMESTAMP as u32).to_le_bytes());
    assert_eq!(tail[..4], (!(TIMESTAMP as u32)).to_le_bytes());
}

#[test]
fn sections_of_base_are_walked() {
    let image = base();
    let sections = image.sections();
    assert_eq!(sections.len(), 26);
    assert_eq!(sections[0].offset, 0);
    assert_eq!(sections[0].kind(), SectionKind::Other);
    assert_eq!(sections[1].kind(), SectionKind::Padding);
    let files: Vec<&str> = sections
        .iter()
        .filter_map(|s| s.file_name.as_deref())
        .collect();
    assert_eq!(
        files,
        [
            "updatetime",
            "pubkey.bin",
            "cacert.der",
            "bootconf.sig",
            "bootconf.txt"
        ]
    );
    let bootconf = sections.last().unwrap();
    assert_eq!(
        (bootconf.offset, bootconf.magic, bootconf.length),
        (BOOTCONF_HEADER, FILE_MAGIC, 95)
    );
    for pair in sections.windows(2) {
        assert_eq!(pair[1].offset % 8, 0);
        assert!(pair[1].offset >= pair[0].data_range().end);
    }
    assert_eq!(image.file("pubkey.bin").map(<[u8]>::len), Some(512));
    assert_eq!(image.file("no-such-file"), None);
}

// ---------------------------------------------------------------------------------------
// Round trips

fn round_trip_configs() -> Vec<String> {
    vec![
        String::new(),
        "BOOT_ORDER=0xf41".to_owned(),
        "[all]\r\nBOOT_UART=1\r\n".to_owned(),
        fixture_text("netboot.conf"),
        fixture_text("bootconf-2026-05-17.txt"),
        format!("[all]\n{}\n", "# padding comment\n".repeat(200)),
        "#".repeat(MAX_CONFIG_SIZE),
    ]
}

#[test]
fn config_round_trips() {
    let base = base();
    for config in round_trip_configs() {
        for ts in [None, Some(0), Some(TIMESTAMP), Some(u64::from(u32::MAX))] {
            let out = EepromImage::parse(base.with_config(&config, ts).unwrap()).unwrap();
            assert_eq!(
                out.config().unwrap(),
                config,
                "config of {} bytes",
                config.len()
            );
            assert_eq!(out.timestamp(), ts, "timestamp {ts:?}");
            assert_eq!(out.sections().len(), base.sections().len());
        }
    }
}

#[test]
fn embedding_the_base_config_gives_the_base_image_back() {
    let base = base();
    let out = base.with_config(&base.config().unwrap(), None).unwrap();
    assert_same_image(&out, base.as_bytes());
}

#[test]
fn shrinking_the_config_erases_the_old_bytes() {
    let base = base();
    let big = EepromImage::parse(base.with_config(&"#".repeat(3000), None).unwrap()).unwrap();
    let small = "BOOT_ORDER=0xf21\n";
    assert_same_image(
        &big.with_config(small, None).unwrap(),
        &base.with_config(small, None).unwrap(),
    );
}

#[test]
fn timestamp_can_be_replaced_and_keeps_the_config() {
    let stamped = EepromImage::parse(fixture("pieeprom-2026-05-17-netboot.bin")).unwrap();
    let config = stamped.config().unwrap();
    let restamped = EepromImage::parse(stamped.with_config(&config, Some(42)).unwrap()).unwrap();
    assert_eq!(restamped.timestamp(), Some(42));
    assert_eq!(restamped.config().unwrap(), config);
    // Without a timestamp the old one stays, as with rpi-eeprom-config.
    let kept = EepromImage::parse(stamped.with_config("X=1\n", None).unwrap()).unwrap();
    assert_eq!(kept.timestamp(), Some(TIMESTAMP));
}

// ---------------------------------------------------------------------------------------
// Corrupt input

#[test]
fn truncated_or_oversized_images_are_rejected() {
    let bytes = fixture(BASE);
    for len in [
        0,
        1,
        7,
        8,
        4096,
        IMAGE_SIZE / 2,
        IMAGE_SIZE - 8,
        IMAGE_SIZE - 1,
    ] {
        let err = EepromImage::parse(bytes[..len].to_vec()).unwrap_err();
        assert_eq!(
            err,
            EepromError::WrongSize {
                actual: len,
                expected: IMAGE_SIZE
            }
        );
        assert!(
            err.to_string().contains(&format!("size is {len} bytes")),
            "{err}"
        );
    }
    let mut long = bytes;
    long.push(0xff);
    assert!(matches!(
        EepromImage::parse(long),
        Err(EepromError::WrongSize { actual, .. }) if actual == IMAGE_SIZE + 1
    ));
}

#[test]
fn flipped_magic_is_reported_with_its_offset() {
    for offset in [0, BOOTCONF_HEADER] {
        let mut bytes = fixture(BASE);
        bytes[offset + 1] ^= 0x01;
        let err = EepromImage::parse(bytes).unwrap_err();
        assert!(
            matches!(err, EepromError::BadMagic { offset: at, .. } if at == offset),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&format!("at offset {offset:#x}")),
            "{err}"
        );
    }
}

#[test]
fn section_length_past_the_end_is_rejected() {
    let mut bytes = fixture(BASE);
    bytes[4..8].copy_from_slice(&(IMAGE_SIZE as u32).to_be_bytes());
    let err = EepromImage::parse(bytes).unwrap_err();
    assert!(
        matches!(err, EepromError::SectionPastEnd { offset: 0, .. }),
        "{err:?}"
    );
    let mut bytes = fixture(BASE);
    bytes[BOOTCONF_HEADER + 4..BOOTCONF_HEADER + 8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        EepromImage::parse(bytes),
        Err(EepromError::SectionPastEnd {
            offset: BOOTCONF_HEADER,
            ..
        })
    ));
}

#[test]
fn section_ending_exactly_at_the_end_is_accepted() {
    let mut bytes = vec![0xff; IMAGE_SIZE];
    bytes[..4].copy_from_slice(&0x55aa_f00fu32.to_be_bytes());
    bytes[4..8].copy_from_slice(&((IMAGE_SIZE - 8) as u32).to_be_bytes());
    let image = EepromImage::parse(bytes.clone()).unwrap();
    assert_eq!(image.sections().len(), 1);
    assert_eq!(image.sections()[0].data_range(), 8..IMAGE_SIZE);
    bytes[4..8].copy_from_slice(&((IMAGE_SIZE - 7) as u32).to_be_bytes());
    assert!(matches!(
        EepromImage::parse(bytes),
        Err(EepromError::SectionPastEnd { offset: 0, .. })
    ));
}

#[test]
fn too_short_file_section_is_rejected() {
    let mut bytes = fixture(BASE);
    bytes[BOOTCONF_HEADER + 4..BOOTCONF_HEADER + 8].copy_from_slice(&4u32.to_be_bytes());
    assert_eq!(
        EepromImage::parse(bytes).unwrap_err(),
        EepromError::FileSectionTooShort {
            offset: BOOTCONF_HEADER,
            length: 4
        }
    );
}

#[test]
fn blank_images_have_no_config() {
    for fill in [0x00, 0xff] {
        let image = EepromImage::parse(vec![fill; IMAGE_SIZE]).unwrap();
        assert!(image.sections().is_empty());
        let missing = EepromError::MissingFile {
            name: "bootconf.txt",
        };
        assert_eq!(image.config().unwrap_err(), missing);
        assert_eq!(image.with_config("X=1\n", None).unwrap_err(), missing);
        assert_eq!(image.timestamp(), None);
        assert!(missing.to_string().contains("bootconf.txt"));
    }
}

#[test]
fn config_over_the_maximum_is_rejected() {
    let base = base();
    assert!(base.with_config(&"#".repeat(MAX_CONFIG_SIZE), None).is_ok());
    let err = base
        .with_config(&"#".repeat(MAX_CONFIG_SIZE + 1), None)
        .unwrap_err();
    assert_eq!(
        err,
        EepromError::ConfigTooLarge {
            size: 4077,
            max: 4076
        }
    );
    assert_eq!(
        err.to_string(),
        "bootloader config is too large (4077 bytes, max 4076 bytes)"
    );
}

/// The base image with a padding section and then a code section after `bootconf.txt`, so
/// that the config may grow to 232 bytes only.
fn image_with_section_after_config() -> EepromImage {
    let mut bytes = fixture(BASE);
    let pad = 470_632; // 8-aligned end of bootconf.txt
    let next = BOOTCONF_HEADER + 256;
    bytes[pad..pad + 4].copy_from_slice(&PAD_MAGIC.to_be_bytes());
    bytes[pad + 4..pad + 8].copy_from_slice(&((next - pad - 8) as u32).to_be_bytes());
    bytes[next..next + 4].copy_from_slice(&0x55aa_f44fu32.to_be_bytes());
    bytes[next + 4..next + 8].copy_from_slice(&8u32.to_be_bytes());
    bytes[next + 8..next + 16].copy_from_slice(b"8 bytes!");
    EepromImage::parse(bytes).unwrap()
}

#[test]
fn config_larger_than_its_section_is_rejected() {
    let image = image_with_section_after_config();
    assert_eq!(image.sections().len(), 28);
    let err = image.with_config(&"#".repeat(233), None).unwrap_err();
    assert_eq!(
        err,
        EepromError::NoSpace {
            needed: 257,
            available: 256
        }
    );
    let exact = EepromImage::parse(image.with_config(&"#".repeat(232), None).unwrap()).unwrap();
    assert_eq!(exact.config().unwrap().len(), 232);
    assert_eq!(
        exact.sections().len(),
        27,
        "the padding section is overwritten"
    );
}

#[test]
fn shorter_config_before_another_section_gets_a_padding_section() {
    let image = image_with_section_after_config();
    let out = EepromImage::parse(image.with_config(&"#".repeat(100), None).unwrap()).unwrap();
    let tail: Vec<(usize, u32, u32)> = out.sections()[25..]
        .iter()
        .map(|s| (s.offset, s.magic, s.length))
        .collect();
    let next = BOOTCONF_HEADER + 256;
    assert_eq!(
        tail,
        [
            (BOOTCONF_HEADER, FILE_MAGIC, 116),
            (470_656, PAD_MAGIC, (next - 470_656 - 8) as u32),
            (next, 0x55aa_f44f, 8),
        ]
    );
    let bytes = out.as_bytes();
    assert!(
        bytes[BOOTCONF_HEADER + 124..470_656]
            .iter()
            .all(|&b| b == 0xff)
    );
    assert!(bytes[470_664..next].iter().all(|&b| b == 0xff));
    assert_eq!(&bytes[next + 8..next + 16], b"8 bytes!");
}

#[test]
fn non_ascii_config_is_rejected() {
    let err = base()
        .with_config("[all]\nBOOT_ORDER=0xf21 # ünï\n", None)
        .unwrap_err();
    assert_eq!(
        err,
        EepromError::ConfigNotAscii {
            line: 2,
            column: 20
        }
    );
    assert!(err.to_string().contains("line 2, column 20"), "{err}");
    assert!(matches!(
        base().with_config("A=\u{0}\n", None),
        Err(EepromError::ConfigNotAscii { line: 1, column: 3 })
    ));
}

#[test]
fn non_utf8_embedded_config_is_reported() {
    let mut bytes = fixture(BASE);
    bytes[BOOTCONF_HEADER + 24 + 3] = 0xc3;
    let image = EepromImage::parse(bytes).unwrap();
    assert_eq!(
        image.config().unwrap_err(),
        EepromError::ConfigNotUtf8 { position: 3 }
    );
}

#[test]
fn timestamp_beyond_32_bits_is_rejected() {
    let err = base().with_config("X=1\n", Some(1 << 32)).unwrap_err();
    assert_eq!(err, EepromError::TimestampOutOfRange { timestamp: 1 << 32 });
}

/// Exercises every read and write on a parsed image: none may panic.
fn poke(image: &EepromImage) {
    let _ = image.config();
    let _ = image.timestamp();
    let _ = image.file("updatetime");
    let _ = image.with_config("BOOT_ORDER=0xf21\n", Some(7));
    for section in image.sections() {
        let _ = section.contents_range();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let wrong_size = matches!(EepromImage::parse(bytes), Err(EepromError::WrongSize { .. }));
        prop_assert!(wrong_size);
    }

    #[test]
    fn parse_never_panics_on_random_images(seed in any::<u64>(), magic_first in any::<bool>()) {
        let mut bytes = pseudo_random_bytes(seed | 1, IMAGE_SIZE);
        if magic_first {
            bytes[..4].copy_from_slice(&FILE_MAGIC.to_be_bytes());
            bytes[4..8].copy_from_slice(&((seed as u32) % 4096).to_be_bytes());
        }
        if let Ok(image) = EepromImage::parse(bytes) {
            poke(&image);
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_headers(
        edits in prop::collection::vec((0usize..26, 0usize..32, any::<u8>()), 1..6)
    ) {
        let mut bytes = fixture(BASE);
        let offsets: Vec<usize> = base().sections().iter().map(|s| s.offset).collect();
        for (section, delta, value) in edits {
            let at = offsets[section] + delta;
            bytes[at] = value;
        }
        if let Ok(image) = EepromImage::parse(bytes) {
            poke(&image);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Settings

fn problems_for(settings: &EepromSettings) -> Vec<SettingsProblem> {
    settings.validate()
}

fn fields(problems: &[SettingsProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

#[test]
fn every_boot_word_maps_to_its_nibble() {
    let table = [
        ("sd-detect", 0x0),
        ("sd", 0x1),
        ("network", 0x2),
        ("rpiboot", 0x3),
        ("usb-msd", 0x4),
        ("bcm-usb-msd", 0x5),
        ("nvme", 0x6),
        ("http", 0x7),
        ("stop", 0xe),
        ("restart", 0xf),
    ];
    assert_eq!(BootMode::ALL.len(), table.len());
    for ((word, nibble), mode) in table.into_iter().zip(BootMode::ALL) {
        let parsed =
            BootMode::deserialize(IntoDeserializer::<ValueError>::into_deserializer(word)).unwrap();
        assert_eq!(parsed, mode, "{word}");
        assert_eq!(mode.nibble(), nibble, "{word}");
        assert_eq!(mode.word(), word);
        assert_eq!(boot_order_value(&[mode]), format!("0x{nibble:x}"));
    }
    let bad = BootMode::deserialize(IntoDeserializer::<ValueError>::into_deserializer("usb"));
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("unknown variant `usb`")
    );
}

#[test]
fn boot_order_is_written_right_to_left() {
    use BootMode::*;
    assert_eq!(boot_order_value(&[Sd, Network, Restart]), "0xf21");
    assert_eq!(boot_order_value(&[Sd, UsbMsd, Network, Restart]), "0xf241");
    assert_eq!(boot_order_value(&[Network, Sd, Restart]), "0xf12");
    assert_eq!(boot_order_value(&[Network, Restart]), "0xf2");
    let eight = [Sd, Network, UsbMsd, BcmUsbMsd, Nvme, Http, Network, Restart];
    assert_eq!(boot_order_value(&eight), "0xf2765421");
    let settings = EepromSettings {
        boot_order: Some(eight.to_vec()),
        ..Default::default()
    };
    assert_eq!(problems_for(&settings), []);
}

#[test]
fn nine_boot_modes_are_rejected() {
    use BootMode::*;
    let settings = EepromSettings {
        boot_order: Some(vec![
            Sd, Network, UsbMsd, BcmUsbMsd, Nvme, Http, Sd, Network, Restart,
        ]),
        ..Default::default()
    };
    let problems = problems_for(&settings);
    assert_eq!(fields(&problems), ["boot_order"]);
    assert!(problems[0].message.contains("at most 8"), "{}", problems[0]);
}

#[test]
fn boot_modes_after_a_final_mode_are_rejected() {
    use BootMode::*;
    let settings = EepromSettings {
        boot_order: Some(vec![Sd, Restart, Network, Stop]),
        ..Default::default()
    };
    let problems = problems_for(&settings);
    assert_eq!(fields(&problems), ["boot_order[2]", "boot_order[3]"]);
    assert!(problems[0].message.contains("`network` is never tried"));
    let empty = EepromSettings {
        boot_order: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(fields(&problems_for(&empty)), ["boot_order"]);
    let sd_detect_last = EepromSettings {
        boot_order: Some(vec![Network, SdDetect]),
        ..Default::default()
    };
    assert_eq!(fields(&problems_for(&sd_detect_last)), ["boot_order[1]"]);
}

/// Makes settings with one timeout field set.
type MakeSettings = fn(u32) -> EepromSettings;

#[test]
fn too_short_timeouts_are_rejected_with_the_minimum() {
    let cases: [(&str, MakeSettings, u32); 3] = [
        (
            "dhcp_timeout",
            |v| EepromSettings {
                dhcp_timeout: Some(v),
                ..Default::default()
            },
            5000,
        ),
        (
            "dhcp_req_timeout",
            |v| EepromSettings {
                dhcp_req_timeout: Some(v),
                ..Default::default()
            },
            500,
        ),
        (
            "tftp_file_timeout",
            |v| EepromSettings {
                tftp_file_timeout: Some(v),
                ..Default::default()
            },
            5000,
        ),
    ];
    for (field, make, min) in cases {
        let problems = problems_for(&make(min - 1));
        assert_eq!(fields(&problems), [field]);
        assert!(
            problems[0].hint.contains(&format!("at least {min}")),
            "{}",
            problems[0]
        );
        assert!(problems[0].message.contains(&format!("{} ms", min - 1)));
        assert_eq!(problems_for(&make(min)), [], "{field} at its minimum");
    }
}

#[test]
fn retries_below_minus_one_are_rejected() {
    let with = |n| EepromSettings {
        net_boot_max_retries: Some(n),
        ..Default::default()
    };
    assert_eq!(fields(&problems_for(&with(-2))), ["net_boot_max_retries"]);
    assert_eq!(problems_for(&with(-1)), []);
    assert_eq!(problems_for(&with(5)), []);
}

fn with_extra(key: &str, value: &str) -> EepromSettings {
    EepromSettings {
        extra: BTreeMap::from([(key.to_owned(), value.to_owned())]),
        ..Default::default()
    }
}

#[test]
fn extra_keys_are_checked() {
    assert_eq!(
        problems_for(&with_extra("NET_INSTALL_AT_POWER_ON", "1")),
        []
    );
    assert_eq!(problems_for(&with_extra("MAX_RESTARTS", "-1")), []);

    let unknown = problems_for(&with_extra("FOO_BAR", "1"));
    assert_eq!(fields(&unknown), ["extra.FOO_BAR"]);
    assert!(unknown[0].message.contains("not a documented"));
    assert!(unknown[0].hint.contains("NET_INSTALL_AT_POWER_ON"));

    let typed = problems_for(&with_extra("BOOT_ORDER", "0xf21"));
    assert_eq!(fields(&typed), ["extra.BOOT_ORDER"]);
    assert!(typed[0].hint.contains("`boot_order`"), "{}", typed[0]);
    assert_eq!(
        fields(&problems_for(&with_extra("TFTP_PREFIX_STR", "x/"))),
        ["extra.TFTP_PREFIX_STR"]
    );

    let lower = problems_for(&with_extra("wake_on_gpio", "1"));
    assert!(lower[0].message.contains("not a bootloader key name"));

    let pi5 = problems_for(&with_extra("PSU_MAX_CURRENT", "5000"));
    assert!(pi5[0].message.contains("Raspberry Pi 5"));

    let newline = problems_for(&with_extra("HDMI_DELAY", "0\nBOOT_ORDER=0x1"));
    assert_eq!(fields(&newline), ["extra.HDMI_DELAY"]);
}

#[test]
fn tftp_prefix_is_rendered_and_checked() {
    let serial: TftpPrefix =
        TftpPrefix::deserialize(IntoDeserializer::<ValueError>::into_deserializer("serial"))
            .unwrap();
    let mac: TftpPrefix =
        TftpPrefix::deserialize(IntoDeserializer::<ValueError>::into_deserializer("mac")).unwrap();
    assert_eq!(
        (serial.clone(), mac.clone()),
        (TftpPrefix::Serial, TftpPrefix::Mac)
    );
    let entries = |prefix| {
        EepromSettings {
            tftp_prefix: Some(prefix),
            ..Default::default()
        }
        .entries()
    };
    assert_eq!(entries(serial), [("TFTP_PREFIX", "0".to_owned())]);
    assert_eq!(entries(mac), [("TFTP_PREFIX", "2".to_owned())]);
    assert_eq!(
        entries(TftpPrefix::String("lab/".into())),
        [
            ("TFTP_PREFIX", "1".to_owned()),
            ("TFTP_PREFIX_STR", "lab/".to_owned())
        ]
    );
    let with = |s: &str| EepromSettings {
        tftp_prefix: Some(TftpPrefix::String(s.to_owned())),
        ..Default::default()
    };
    assert_eq!(problems_for(&with(&format!("{}/", "a".repeat(31)))), []);
    assert_eq!(
        fields(&problems_for(&with(&format!("{}/", "a".repeat(32))))),
        ["tftp_prefix.string"]
    );
    assert_eq!(fields(&problems_for(&with("a b/"))), ["tftp_prefix.string"]);
    assert_eq!(fields(&problems_for(&with(""))), ["tftp_prefix.string"]);
    // The bootloader puts the string in front of every file name: it must be one folder.
    for bad in [
        "pi-lab", "lab/pi/", "../", "./", ".hidden/", "/", "/abs/", "a\\b/",
    ] {
        let problems = problems_for(&with(bad));
        assert_eq!(fields(&problems), ["tftp_prefix.string"], "{bad}");
    }
    assert!(
        problems_for(&with("pi-lab"))[0]
            .message
            .contains("would ask for `pi-labstart4.elf` in the TFTP root"),
        "{:?}",
        problems_for(&with("pi-lab"))
    );
    for good in ["pi-lab/", "Lab_2.a/", "0c4c21e5/"] {
        assert_eq!(problems_for(&with(good)), [], "{good}");
    }
    // The folder each prefix makes the bootloader ask in.
    let mac = Some("dc:a6:32:01:02:0a");
    assert_eq!(
        TftpPrefix::Serial.folder("0c4c21e5", mac).as_deref(),
        Some("0c4c21e5")
    );
    assert_eq!(
        TftpPrefix::Mac.folder("0c4c21e5", mac).as_deref(),
        Some("dc-a6-32-01-02-0a")
    );
    assert_eq!(TftpPrefix::Mac.folder("0c4c21e5", None), None);
    assert_eq!(
        TftpPrefix::String("pi-lab/".into())
            .folder("0c4c21e5", None)
            .as_deref(),
        Some("pi-lab")
    );
    assert_eq!(TftpPrefix::String("lab/pi/".into()).folder("x", None), None);
    // The prefix a rendered config sets for every board: the last unconditional setting.
    let of = |c: &str| TftpPrefix::of_config(c);
    assert_eq!(of("[all]\nBOOT_UART=0\n"), Ok(TftpPrefix::Serial));
    assert_eq!(of("TFTP_PREFIX=0\n"), Ok(TftpPrefix::Serial));
    assert_eq!(
        of("TFTP_PREFIX=1\n[all]\nTFTP_PREFIX=2\n"),
        Ok(TftpPrefix::Mac)
    );
    assert_eq!(
        of("[all]\nTFTP_PREFIX=1\nTFTP_PREFIX_STR=lab/\n[pi5]\nTFTP_PREFIX=2\n"),
        Ok(TftpPrefix::String("lab/".into()))
    );
    assert_eq!(of("TFTP_PREFIX=7\n"), Err("7".to_owned()));
    // Rendering a declared prefix over a base that sets another one wins everywhere.
    for prefix in [
        TftpPrefix::Serial,
        TftpPrefix::Mac,
        TftpPrefix::String("lab/".into()),
    ] {
        let settings = EepromSettings {
            tftp_prefix: Some(prefix.clone()),
            ..Default::default()
        };
        let base = "TFTP_PREFIX=2\n[all]\nTFTP_PREFIX=1\nTFTP_PREFIX_STR=x/\n";
        assert_eq!(of(&settings.render(base)), Ok(prefix));
    }
}

#[test]
fn unknown_settings_fields_are_rejected() {
    let input = MapDeserializer::<_, ValueError>::new(vec![("dhcp_timeot", "5000")].into_iter());
    let err = EepromSettings::deserialize(input).unwrap_err().to_string();
    assert!(err.contains("unknown field `dhcp_timeot`"), "{err}");
}

#[test]
fn schema_describes_the_settings() {
    let schema = schemars::schema_for!(EepromSettings);
    let text = schema.as_value().to_string();
    assert!(text.contains("\"additionalProperties\":false"), "{text}");
    assert!(text.contains("minimum 5000, default 45000"), "{text}");
    let value = schema.as_value();
    let properties = &value["properties"];
    assert_eq!(properties["dhcp_timeout"]["minimum"], 5000);
    assert_eq!(properties["dhcp_req_timeout"]["minimum"], 500);
    assert_eq!(properties["tftp_file_timeout"]["minimum"], 5000);
    assert_eq!(properties["net_boot_max_retries"]["minimum"], -1);
    assert_eq!(properties["boot_order"]["maxItems"], 8);
    assert!(text.contains("\"bcm-usb-msd\""), "{text}");
    assert!(text.contains("\"ipv4\""), "{text}");
}

fn netboot_settings() -> EepromSettings {
    use BootMode::*;
    EepromSettings {
        boot_order: Some(vec![Sd, Network, Restart]),
        tftp_prefix: Some(TftpPrefix::Serial),
        dhcp_timeout: Some(45000),
        tftp_file_timeout: Some(30000),
        enable_self_update: Some(true),
        extra: BTreeMap::from([("NET_INSTALL_AT_POWER_ON".to_owned(), "1".to_owned())]),
        ..Default::default()
    }
}

#[test]
fn render_over_the_base_config_gives_netboot_conf() {
    let settings = netboot_settings();
    assert_eq!(settings.validate(), []);
    let rendered = settings.render(&fixture_text("bootconf-2026-05-17.txt"));
    assert_eq!(rendered, fixture_text("netboot.conf"));
}

#[test]
fn declared_settings_become_the_published_update() {
    let image = base();
    let config = netboot_settings().render(&image.config().unwrap());
    let update = image.with_config(&config, Some(TIMESTAMP)).unwrap();
    assert_same_image(&update, &fixture("pieeprom-2026-05-17-netboot.bin"));
    assert_eq!(
        sig_file(&update, TIMESTAMP),
        fixture_text("pieeprom-2026-05-17-netboot.sig")
    );
}

#[test]
fn render_replaces_in_place_and_keeps_other_lines() {
    let settings = EepromSettings {
        boot_uart: Some(true),
        boot_order: Some(vec![BootMode::Network, BootMode::Restart]),
        ..Default::default()
    };
    let base = "# top comment\n[all]\nBOOT_UART=0\n  WAKE_ON_GPIO = 1 \n\n[gpio7=0]\nBOOT_ORDER=0x1\n[config.txt]\nBOOT_UART=0\n";
    assert_eq!(
        settings.render(base),
        "# top comment\n[all]\nBOOT_UART=1\n  WAKE_ON_GPIO = 1 \nBOOT_ORDER=0xf2\n\n[gpio7=0]\nBOOT_ORDER=0x1\n[config.txt]\nBOOT_UART=0\n"
    );
}

#[test]
fn render_prefers_a_top_section_with_settings() {
    let settings = EepromSettings {
        dhcp_timeout: Some(60000),
        ..Default::default()
    };
    assert_eq!(
        settings.render("BOOT_UART=0\r\n[all]\r\nWAKE_ON_GPIO=1"),
        "BOOT_UART=0\r\nDHCP_TIMEOUT=60000\n[all]\r\nWAKE_ON_GPIO=1\n"
    );
    assert_eq!(settings.render(""), "DHCP_TIMEOUT=60000\n");
    assert_eq!(
        settings.render("[pi4]\nX=1\n"),
        "DHCP_TIMEOUT=60000\n[pi4]\nX=1\n"
    );
    assert_eq!(
        settings.render("[all]\nDHCP_TIMEOUT=1\n[pi4]\nX=1\n[all]\nDHCP_TIMEOUT=2"),
        "[all]\nDHCP_TIMEOUT=60000\n[pi4]\nX=1\n[all]\nDHCP_TIMEOUT=60000\n"
    );
}

#[test]
fn render_is_idempotent() {
    let bases = [
        fixture_text("bootconf-2026-05-17.txt"),
        String::new(),
        "BOOT_UART=1".to_owned(),
        "[all]\r\nBOOT_ORDER=0xf41\r\n\r\n[gpio7=0]\r\nNETCONSOLE=6665@169.254.1.1/,6666@/\r\n"
            .to_owned(),
        "# only a comment\n[none]\nTFTP_IP=1.2.3.4\n".to_owned(),
    ];
    let settings = [
        EepromSettings::default(),
        netboot_settings(),
        EepromSettings {
            tftp_prefix: Some(TftpPrefix::String("lab/".into())),
            tftp_ip: Some("192.168.1.3".parse().unwrap()),
            dhcp_req_timeout: Some(1000),
            net_boot_max_retries: Some(-1),
            boot_uart: Some(false),
            ..netboot_settings()
        },
    ];
    for base in &bases {
        for settings in &settings {
            let once = settings.render(base);
            assert_eq!(settings.render(&once), once, "base {base:?}");
            assert!(once.is_empty() || once.ends_with('\n'));
            let config = EepromImage::parse(base_image_with(&once))
                .unwrap()
                .config()
                .unwrap();
            assert_eq!(config, once);
        }
    }
}

fn base_image_with(config: &str) -> Vec<u8> {
    base().with_config(config, None).unwrap()
}

/// Appends a section header (and for files the name and reserved word) at `at`.
fn put_section(bytes: &mut [u8], at: usize, magic: u32, length: usize, name: &str) {
    bytes[at..at + 4].copy_from_slice(&magic.to_be_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&(length as u32).to_be_bytes());
    if magic == FILE_MAGIC {
        bytes[at + 8..at + 20].fill(0);
        bytes[at + 8..at + 8 + name.len()].copy_from_slice(name.as_bytes());
        bytes[at + 20..at + 24].fill(0);
    }
}

/// An image with `updatetime` files in the read-only area and the first partition, as
/// rpi-eeprom-config handles for images that have them.
fn image_with_update_time_files(partition_copy: bool) -> EepromImage {
    let mut bytes = vec![0xff; IMAGE_SIZE];
    put_section(&mut bytes, 0, FILE_MAGIC, 24, "updatetime");
    put_section(&mut bytes, 32, PAD_MAGIC, 65_536 - 40, "");
    let name = if partition_copy {
        "updatetime"
    } else {
        "other"
    };
    put_section(&mut bytes, 65_536, FILE_MAGIC, 24, name);
    put_section(&mut bytes, 65_568, FILE_MAGIC, 16 + 4, "bootconf.txt");
    bytes[65_592..65_596].copy_from_slice(b"A=1\n");
    EepromImage::parse(bytes).unwrap()
}

#[test]
fn update_time_files_take_the_timestamp_when_present() {
    let image = image_with_update_time_files(true);
    assert_eq!(image.config().unwrap(), "A=1\n");
    assert_eq!(image.timestamp(), None);
    let out = image.with_config("B=2\n", Some(TIMESTAMP)).unwrap();
    let record = [
        (!(TIMESTAMP as u32)).to_le_bytes(),
        (TIMESTAMP as u32).to_le_bytes(),
    ]
    .concat();
    assert_eq!(out[24..32], record[..]);
    assert_eq!(out[65_536 + 24..65_536 + 32], record[..]);
    assert!(
        out[IMAGE_SIZE - 8..].iter().all(|&b| b == 0xff),
        "tail untouched"
    );
    let out = EepromImage::parse(out).unwrap();
    assert_eq!(out.timestamp(), Some(TIMESTAMP));
    assert_eq!(out.config().unwrap(), "B=2\n");

    let missing = image_with_update_time_files(false);
    assert_eq!(
        missing.with_config("B=2\n", Some(1)).unwrap_err(),
        EepromError::MissingPartitionUpdateTime
    );
    assert!(missing.with_config("B=2\n", None).is_ok());
}
