//! Valid configs survive YAML: any valid [`Config`] serialised with serde-saphyr parses back
//! equal, and validates with no diagnostics (and the normalised forms are the expected ones).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use pinetboot::config::model::{Client, Config, Defaults, Image, Nfs, Paths, Server, Ssh};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::json;

/// `Config`, `Defaults` and `Client` are built from JSON so that optional fields added to them
/// later (left at their defaults here) do not break this test's build.
fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("the generator builds valid model values")
}

/// Names that are valid but that YAML would read as something else if written bare.
const TRICKY_NAMES: &[&str] = &[
    "yes", "no", "on", "off", "true", "false", "null", "y", "n", "nan", "inf", "0x10", "1e5",
    "0777", "123", "0", "a-1",
];

/// A client or image name: letters, digits and inner dashes, at most 63.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,12}[a-z0-9]",
        1 => "[A-Za-z0-9]{1,63}",
        1 => select(TRICKY_NAMES).prop_map(String::from),
    ]
}

/// A normalised absolute path of 1–3 components.
fn abs_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,10}", 1..4)
        .prop_filter("no . or .. components", |segs| {
            segs.iter().all(|s| s != "." && s != "..")
        })
        .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn sha256() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-f]{64}", "[0-9A-F]{64}"]
}

/// A kernel argument pinetboot lets through.
fn cmdline_token() -> impl Strategy<Value = String> {
    prop_oneof![
        select(
            &[
                "quiet",
                "splash",
                "rootwait",
                "console=tty1",
                "console=serial0,115200",
                "cgroup_enable=memory",
                "video.drivers=fbdev",
                "modprobe.blacklist=bcm2835_v4l2",
                "8250.nr_uarts=1",
                "true",
                "123",
            ][..]
        )
        .prop_map(String::from),
        "x[a-z0-9_.]{0,8}(=[a-z0-9,._:/-]{1,12})?",
    ]
}

fn ssh_key() -> impl Strategy<Value = String> {
    (
        select(
            &[
                "ssh-ed25519",
                "ssh-rsa",
                "ecdsa-sha2-nistp256",
                "sk-ssh-ed25519@openssh.com",
            ][..],
        ),
        "[A-Za-z0-9+/]{16,80}={0,2}",
        proptest::option::of("[a-z]{1,8}@[a-z]{1,8}"),
        proptest::option::of(select(
            &["from=\"10.0.0.0/8\"", "no-pty", "no-port-forwarding"][..],
        )),
    )
        .prop_map(|(kind, blob, comment, options)| {
            let mut line = String::new();
            if let Some(o) = options {
                line.push_str(o);
                line.push(' ');
            }
            line.push_str(kind);
            line.push_str(" AAAA");
            line.push_str(&blob);
            if let Some(c) = comment {
                line.push(' ');
                line.push_str(&c);
            }
            line
        })
}

fn ssh() -> impl Strategy<Value = Ssh> {
    (
        any::<bool>(),
        proptest::option::of("[a-z_][a-z0-9_-]{0,15}"),
        prop::collection::vec(ssh_key(), 0..3),
    )
        .prop_map(|(enable, user, authorized_keys)| Ssh {
            enable,
            user,
            authorized_keys,
        })
}

/// exports(5) options with no contradictions: per pair of opposites at most one side.
fn nfs_options() -> impl Strategy<Value = Vec<String>> {
    (
        // Per pair: 0 neither, 1 the first, 2 the second.
        prop::collection::vec(0..3usize, 9),
        subsequence(
            &[
                "crossmnt",
                "insecure_locks",
                "no_auth_nlm",
                "nordirplus",
                "security_label",
                "fsid=0",
                "anonuid=1000",
                "anongid=1000",
                "sec=sys",
            ][..],
            0..4,
        ),
    )
        .prop_map(|(sides, extra)| {
            const PAIRS: [(&str, &str); 9] = [
                ("rw", "ro"),
                ("sync", "async"),
                ("secure", "insecure"),
                ("wdelay", "no_wdelay"),
                ("hide", "nohide"),
                ("subtree_check", "no_subtree_check"),
                ("root_squash", "no_root_squash"),
                ("all_squash", "no_all_squash"),
                ("pnfs", "no_pnfs"),
            ];
            let mut opts: Vec<String> = Vec::new();
            for ((a, b), side) in PAIRS.iter().zip(sides) {
                match side {
                    1 => opts.push((*a).to_owned()),
                    2 => opts.push((*b).to_owned()),
                    _ => {}
                }
            }
            opts.extend(extra.into_iter().map(String::from));
            opts
        })
}

/// Where an image comes from: a directory (no digest), a file or a URL (with one).
fn image() -> impl Strategy<Value = Image> {
    let source = prop_oneof![
        abs_path().prop_map(|p| (p, false)),
        (
            abs_path(),
            select(&[".img", ".img.xz", ".img.gz", ".zip", ".IMG.XZ"][..])
        )
            .prop_map(|(p, ext)| (format!("{p}{ext}"), true)),
        (
            select(&["http", "https"][..]),
            "[a-z0-9]{1,10}(\\.[a-z]{2,5}){1,2}",
            abs_path()
        )
            .prop_map(|(scheme, host, p)| (format!("{scheme}://{host}{p}.img.xz"), true)),
    ];
    let files = prop::collection::btree_map(
        prop_oneof![
            "[a-z0-9_-]{1,8}\\.(elf|dat|dtb|txt)",
            "overlays/[a-z0-9-]{1,8}\\.dtbo"
        ],
        abs_path(),
        0..3,
    );
    (source, sha256(), files).prop_map(|((source, digest), sha, files)| Image {
        source,
        sha256: digest.then_some(sha),
        files,
    })
}

/// The parts of a client that need no coordination with the others.
#[derive(Debug, Clone)]
struct ClientSeed {
    long_serial: bool,
    upper_serial: bool,
    mac: Option<(bool, bool)>, // (dashes, upper case)
    address: bool,
    own_image: Option<prop::sample::Index>,
    hostname: bool,
    ssh: Option<Ssh>,
    cmdline: Vec<String>,
}

fn client_seed() -> impl Strategy<Value = ClientSeed> {
    (
        any::<(bool, bool)>(),
        proptest::option::of(any::<(bool, bool)>()),
        any::<bool>(),
        proptest::option::of(any::<prop::sample::Index>()),
        any::<bool>(),
        proptest::option::of(ssh()),
        prop::collection::vec(cmdline_token(), 0..3),
    )
        .prop_map(
            |((long_serial, upper_serial), mac, address, own_image, hostname, ssh, cmdline)| {
                ClientSeed {
                    long_serial,
                    upper_serial,
                    mac,
                    address,
                    own_image,
                    hostname,
                    ssh,
                    cmdline,
                }
            },
        )
}

/// A valid config and, per client, the serial and MAC that validation should normalise to.
#[derive(Debug, Clone)]
struct Generated {
    config: Config,
    serials: BTreeMap<String, String>,
    macs: BTreeMap<String, Option<String>>,
}

fn config() -> impl Strategy<Value = Generated> {
    (8u8..=30, any::<u32>()).prop_flat_map(|(prefix, raw)| {
        let mask = u32::MAX << (32 - u32::from(prefix));
        let net = raw & mask;
        let hosts = (1u32 << (32 - u32::from(prefix))) - 2; // usable host offsets 1..=hosts
        (
            1..=hosts,
            proptest::option::of("[a-z][a-z0-9]{0,14}"),
            proptest::option::of((abs_path(), abs_path(), abs_path())),
            (nfs_options(), 0..3u8),
            prop::collection::btree_map(name(), image(), 1..4),
            (
                any::<bool>(),
                proptest::option::of(ssh()),
                prop::collection::vec(cmdline_token(), 0..3),
            ),
            prop::collection::btree_map(name(), client_seed(), 0..6),
            (
                any::<u32>(),
                any::<[u8; 3]>(),
                prop::collection::vec(1..=hosts, 8),
            ),
        )
            .prop_map(
                move |(
                    server_host,
                    interface,
                    paths,
                    (options, scope),
                    images,
                    (default_image, default_ssh, default_cmdline),
                    seeds,
                    (serial_base, mac_base, client_hosts),
                )| {
                    let address = Ipv4Addr::from(net + server_host);
                    let network = format!("{}/{prefix}", Ipv4Addr::from(net));
                    let paths = match paths {
                        None => Paths::default(),
                        Some((nfs, tftp, state)) => Paths {
                            // Under different roots, so they never overlap.
                            nfs: format!("/n{nfs}"),
                            tftp: format!("/t{tftp}"),
                            state,
                            ..Paths::default()
                        },
                    };
                    let scope = match scope {
                        0 => None,
                        1 => Some(network.clone()),
                        _ => Some(address.to_string()),
                    };
                    let image_names: Vec<String> = images.keys().cloned().collect();
                    let defaults: Defaults = from_json(json!({
                        "image": default_image.then(|| image_names[0].clone()),
                        "ssh": default_ssh,
                        "cmdline": default_cmdline,
                    }));
                    // Addresses distinct from each other and from the server's.
                    let mut used = BTreeSet::from([server_host]);
                    let mut clients = BTreeMap::new();
                    let mut serials = BTreeMap::new();
                    let mut macs = BTreeMap::new();
                    // Implied hostnames compare case-insensitively: keep one of `Pi1`/`pi1`.
                    let mut lower = BTreeSet::new();
                    let seeds = seeds
                        .into_iter()
                        .filter(|(name, _)| lower.insert(name.to_ascii_lowercase()));
                    for (i, (name, seed)) in seeds.enumerate() {
                        let i = i as u32;
                        let serial = format!("{:08x}", serial_base.wrapping_add(i));
                        serials.insert(name.clone(), serial.clone());
                        let mut written = if seed.long_serial {
                            format!("10000000{serial}")
                        } else {
                            serial
                        };
                        if seed.upper_serial {
                            written = written.to_ascii_uppercase();
                        }
                        // Unicast, non-null: the first octet is even and the last is 1 + i.
                        let octets = [
                            mac_base[0] & 0xfe,
                            mac_base[1],
                            mac_base[2],
                            0,
                            (i >> 8) as u8,
                            (i as u8).wrapping_add(1),
                        ];
                        let normal: Vec<String> =
                            octets.iter().map(|o| format!("{o:02x}")).collect();
                        let mac = seed.mac.map(|(dashes, upper)| {
                            let text = normal.join(if dashes { "-" } else { ":" });
                            if upper {
                                text.to_ascii_uppercase()
                            } else {
                                text
                            }
                        });
                        macs.insert(name.clone(), mac.as_ref().map(|_| normal.join(":")));
                        let address = seed
                            .address
                            .then(|| client_hosts[i as usize % client_hosts.len()])
                            .filter(|h| used.insert(*h))
                            .map(|h| Ipv4Addr::from(net + h).to_string());
                        let image = match (&defaults.image, seed.own_image) {
                            (_, Some(ix)) => Some(ix.get(&image_names).clone()),
                            (None, None) => Some(image_names[0].clone()),
                            (Some(_), None) => None,
                        };
                        let hostname = seed.hostname.then(|| format!("{name}.lab"));
                        clients.insert(
                            name,
                            from_json::<Client>(json!({
                                "serial": written,
                                "mac": mac,
                                "address": address,
                                "image": image,
                                "hostname": hostname,
                                "ssh": seed.ssh,
                                "cmdline": seed.cmdline,
                            })),
                        );
                    }
                    Generated {
                        config: from_json::<Config>(json!({
                            "server": Server {
                                address: address.to_string(),
                                network,
                                interface,
                            },
                            "paths": paths,
                            "nfs": Nfs { options, scope },
                            "images": images,
                            "defaults": defaults,
                            "clients": clients,
                        })),
                        serials,
                        macs,
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn valid_configs_round_trip_through_yaml(g in config()) {
        let file = Path::new("roundtrip.yaml");
        let yaml = serde_saphyr::to_string(&g.config).expect("a Config serialises");
        let parsed = pinetboot::config::load::parse(file, &yaml)
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{yaml}"));
        prop_assert_eq!(&parsed.config, &g.config, "yaml:\n{}", yaml);

        let valid = pinetboot::config::load_str(file, &yaml)
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{yaml}"));
        prop_assert_eq!(valid.clients.len(), g.config.clients.len());
        prop_assert_eq!(valid.images.len(), g.config.images.len());
        for (name, client) in &valid.clients {
            prop_assert_eq!(&client.serial, &g.serials[name]);
            prop_assert_eq!(&client.mac, &g.macs[name]);
        }
    }
}

/// The generator is not vacuous: its configs use the optional parts.
#[test]
fn generator_covers_the_model() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut clients, mut macs, mut addresses, mut urls, mut files, mut keys) = (0, 0, 0, 0, 0, 0);
    for _ in 0..64 {
        let g = config().new_tree(&mut runner).unwrap().current().config;
        clients += g.clients.len();
        macs += g.clients.values().filter(|c| c.mac.is_some()).count();
        addresses += g.clients.values().filter(|c| c.address.is_some()).count();
        urls += g
            .images
            .values()
            .filter(|i| i.source.contains("://"))
            .count();
        files += g.images.values().map(|i| i.files.len()).sum::<usize>();
        keys += g
            .clients
            .values()
            .filter_map(|c| c.ssh.as_ref())
            .map(|s| s.authorized_keys.len())
            .sum::<usize>();
    }
    for (what, n) in [
        ("clients", clients),
        ("MACs", macs),
        ("addresses", addresses),
        ("URLs", urls),
        ("files", files),
        ("keys", keys),
    ] {
        assert!(n > 5, "only {n} {what} in 64 generated configs");
    }
}
