//! The JSON schema editors use: checked in and fresh, printed by `pinetboot schema`, draft-07,
//! describing every field of `Config`; and the examples that point at it are valid.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use pinetboot::config::model::Config;
use pinetboot::config::schema::schema_json;
use serde_json::Value;

const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/pinetboot.schema.json");
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=";

#[test]
fn schema_is_fresh() {
    let fresh = schema_json();
    if std::env::var_os("PINETBOOT_UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_FILE, &fresh).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    if stored != fresh {
        let first = stored
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| stored.lines().count().min(fresh.lines().count()));
        panic!(
            "stale schema: schema/pinetboot.schema.json differs from schema_json() from line {}; \
             rerun with PINETBOOT_UPDATE_SCHEMA=1 (cargo test --test it schema::) and commit it",
            first + 1
        );
    }
}

#[test]
fn schema_command_prints_the_checked_in_schema() {
    let out = Command::new(crate::support::tools::bin())
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = std::fs::read_to_string(SCHEMA_FILE).unwrap();
    assert!(
        String::from_utf8(out.stdout).unwrap() == stored,
        "`pinetboot schema` differs from schema/pinetboot.schema.json"
    );
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no examples in {}", dir.display());
    found
}

#[test]
fn every_example_validates_and_names_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in examples() {
        let rel = path.strip_prefix(root).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix(SCHEMA_LINE)
            .unwrap_or_else(|| panic!("{}: first line is not `{SCHEMA_LINE}…`", rel.display()));
        assert_eq!(
            path.parent()
                .unwrap()
                .join(target)
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: $schema={target}: {e}", rel.display())),
            Path::new(SCHEMA_FILE).canonicalize().unwrap(),
            "{}: $schema does not point at the schema",
            rel.display()
        );

        let out = Command::new(crate::support::tools::bin())
            .current_dir(root)
            .env_remove("PINETBOOT_CONFIG")
            .arg("-c")
            .arg(rel)
            .arg("validate")
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(0), "{}:\n{stderr}", rel.display());
        assert!(
            stdout.starts_with(&format!("{}: valid (", rel.display())) && stdout.ends_with(")\n"),
            "{}: {stdout:?}",
            rel.display()
        );
        assert_eq!(stderr, "", "{}", rel.display());
    }
}

fn schema() -> Value {
    serde_json::from_str(&schema_json()).unwrap()
}

#[test]
fn schema_is_draft_07() {
    let s = schema();
    assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(
        s.get("$defs").is_none(),
        "draft-07 uses `definitions`, not `$defs`"
    );
    assert!(s["definitions"].is_object());
    let text = schema_json();
    assert!(
        !text.contains("#/$defs/"),
        "a 2020-12 style reference slipped in"
    );
    assert!(text.ends_with("}\n"));
}

/// Follows `$ref`, one-element `allOf` wrappers and `anyOf [T, null]` (an `Option<T>`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        return resolve(root, &root["definitions"][name]);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(alts) = node.get(key).and_then(Value::as_array) {
            let real: Vec<&Value> = alts.iter().filter(|a| a["type"] != "null").collect();
            if real.len() == 1 {
                return resolve(root, real[0]);
            }
            // An enum: constant alternatives (leaves) and at most one structured one.
            let structured: Vec<&Value> = real
                .iter()
                .copied()
                .filter(|a| a.get("const").is_none() && a.get("enum").is_none())
                .collect();
            assert!(
                structured.len() <= 1,
                "{key} with several structured alternatives: {node}"
            );
            return match structured.first() {
                Some(one) => resolve(root, one),
                None => node,
            };
        }
    }
    node
}

/// A config with every optional part present, so its JSON form names every field. (YAML rather
/// than a struct literal: a field added to the model must be added here, or the two-way check
/// below says so, but it does not break the build.)
const MAXIMAL: &str = r#"
server: {address: 10.0.0.1, network: 10.0.0.0/24, interface: eth0}
servers:
  lab:
    address: 10.0.0.1
    network: 10.0.0.0/24
    interface: eth0
    paths: {nfs: /n, tftp: /t, dnsmasq_conf: /d.conf, dnsmasq_log: /d.log, exports: /e, fstab: /f, state: /s}
    nfs: {options: [rw], scope: 10.0.0.0/24}
paths:
  nfs: /srv/nfs
  tftp: /srv/tftp
  dnsmasq_conf: /etc/dnsmasq.d/x.conf
  dnsmasq_log: /var/log/x/dnsmasq.log
  exports: /etc/exports.d/x.exports
  fstab: /etc/fstab.x
  state: /var/lib/x
nfs: {options: [ro], scope: 10.0.0.0/24}
bootloader: {image: /srv/eeprom/pieeprom.bin, recovery: /srv/eeprom/recovery.bin}
downloads: {max_size: 8 GiB, low_speed_limit: 1024, low_speed_time: 30, connect_timeout: 10, max_time: 3600}
images:
  lite:
    source: /srv/lite.img.xz
    sha256: 6ac3a10a1f144c7e9d1f8e568d75ca809288280a593eb6ca053e49b539f465a4
    files: {start4.elf: /srv/fw/start4.elf}
defaults:
  image: lite
  root: own
  cmdline: [quiet]
  ssh: &ssh
    enable: false
    user: pi
    authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGU me@x]
  user: &user {name: pi, password_hash: "$6$abcdefgh$0123456789abcdef"}
  eeprom: &eeprom
    boot_order: [sd, network, restart]
    tftp_prefix: {string: pis/}
    tftp_ip: 10.0.0.1
    dhcp_timeout: 45000
    dhcp_req_timeout: 4000
    tftp_file_timeout: 30000
    net_boot_max_retries: 2
    enable_self_update: true
    boot_uart: false
    extra: {NET_INSTALL_AT_POWER_ON: "1"}
clients:
  pi:
    server: lab
    root: shared
    serial: 0c4c21e5
    mac: dc:a6:32:01:02:03
    address: 10.0.0.2
    image: lite
    hostname: pi.lab
    ssh: *ssh
    cmdline: [quiet]
    eeprom: *eeprom
    user: *user
"#;

fn maximal_config() -> Config {
    pinetboot::config::load::parse(Path::new("maximal.yaml"), MAXIMAL)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

/// Walks a value of the config together with its schema; records each field path reached
/// and checks that the schema knows the field, describes it and allows its JSON type.
fn walk(root: &Value, schema: &Value, value: &Value, path: &str, seen: &mut BTreeSet<String>) {
    let s = resolve(root, schema);
    let alternatives = |s: &'_ Value| -> Vec<String> {
        let alts = s["oneOf"].as_array().or_else(|| s["anyOf"].as_array());
        alts.map(|a| {
            a.iter()
                .filter_map(|x| x["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
    };
    let owned: Vec<String> = match &s["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        // An enum of constants: the types of its alternatives.
        _ if !alternatives(s).is_empty() => alternatives(s),
        _ => panic!("{path}: schema gives no type: {s}"),
    };
    let types: Vec<&str> = owned.iter().map(String::as_str).collect();
    let ty = match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            if types.contains(&"integer") {
                "integer"
            } else {
                "number"
            }
        }
        Value::Number(_) => "number",
        other => panic!("{path}: unexpected value {other}"),
    };
    assert!(
        types.contains(&ty),
        "{path}: a {ty} where the schema says {types:?}"
    );
    match value {
        Value::Object(fields) => {
            let props = s.get("properties").and_then(Value::as_object);
            for (key, v) in fields {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match props.and_then(|p| p.get(key)) {
                    Some(p) => {
                        let described = p
                            .get("description")
                            .and_then(Value::as_str)
                            .is_some_and(|d| !d.trim().is_empty());
                        assert!(described, "{child}: no description in the schema");
                        seen.insert(child.clone());
                        walk(root, p, v, &child, seen);
                    }
                    None => match s.get("additionalProperties") {
                        // A map keyed by name (clients, images, files).
                        Some(item @ Value::Object(_)) => walk(root, item, v, &child, seen),
                        _ => panic!("{child}: field missing from the schema"),
                    },
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(root, &s["items"], v, &format!("{path}[{i}]"), seen);
            }
        }
        _ => {}
    }
}

/// The schema, and the field paths a walk of MAXIMAL through it reached.
fn walk_maximal() -> (Value, BTreeSet<String>) {
    let root = schema();
    let value = serde_json::to_value(maximal_config()).unwrap();
    let mut seen = BTreeSet::new();
    walk(&root, &root, &value, "", &mut seen);
    (root, seen)
}

#[test]
fn schema_describes_every_field_of_config() {
    let (_, seen) = walk_maximal();
    // The walk saw every kind of field; spot-check that it went all the way down.
    for path in [
        "server.interface",
        "nfs.scope",
        "paths.dnsmasq_conf",
        "images.lite.sha256",
        "images.lite.files",
        "defaults.ssh.enable",
        "clients.pi.ssh.authorized_keys",
        "clients.pi.hostname",
    ] {
        assert!(seen.contains(path), "{path} not reached: {seen:?}");
    }
}

#[test]
fn every_schema_property_is_a_described_config_field() {
    // The other direction: every property of every definition is reached from MAXIMAL (so the
    // walk above covered the whole schema) and is described.
    let (root, seen) = walk_maximal();
    let mut objects: Vec<(String, &Value)> = vec![("Config".to_owned(), &root)];
    for (name, def) in root["definitions"].as_object().unwrap() {
        objects.push((name.clone(), def));
    }
    let reached: BTreeSet<&str> = seen.iter().map(|p| p.rsplit('.').next().unwrap()).collect();
    for (name, def) in objects {
        assert!(
            def.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.is_empty()),
            "definition {name:?} has no description"
        );
        // Enums (BootMode, TftpPrefix) have alternatives, not properties; their structured
        // alternatives were walked above.
        let Some(props) = def["properties"].as_object() else {
            assert!(
                def.get("oneOf").or_else(|| def.get("enum")).is_some(),
                "definition {name:?} is neither an object nor an enum"
            );
            continue;
        };
        assert_eq!(
            def["additionalProperties"],
            Value::Bool(false),
            "{name:?}: unknown fields must be refused (deny_unknown_fields)"
        );
        for (prop, p) in props {
            assert!(
                p["description"]
                    .as_str()
                    .is_some_and(|d| !d.trim().is_empty()),
                "{name}.{prop}: no description"
            );
            assert!(
                reached.contains(prop.as_str()),
                "{name}.{prop}: not reached from MAXIMAL; add the field there"
            );
        }
    }
    // Required fields are exactly the ones without a default.
    let required = |v: &Value| -> Vec<String> {
        let mut r: Vec<String> = v["required"]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        r.sort();
        r
    };
    let defs = &root["definitions"];
    // Exactly one of `server` and `servers`: both are optional here, `validate` says which.
    assert!(required(&root).is_empty());
    assert_eq!(required(&defs["Server"]), ["address", "network"]);
    assert_eq!(required(&defs["Client"]), ["serial"]);
    assert_eq!(required(&defs["Image"]), ["source"]);
    for optional in ["Paths", "Nfs", "Defaults", "Ssh"] {
        assert!(
            required(&defs[optional]).is_empty(),
            "{optional} requires fields"
        );
    }
}
