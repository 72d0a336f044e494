//! The one support module of the integration tests: every helper is defined once here and
//! named by what it is (`crate::support::mountns::MountNs`, `crate::support::tools::require_root`).
//!
//! - [`tools`]: the root and tool checks (fail loudly, never skip), the binary, the shared folder
//! - [`run`]: a finished command with its output
//! - [`mountns`]: the private mount namespace for bind mounts
//! - [`snapshot`]: whole-tree snapshots for "nothing changed" checks
//! - [`text`]: assertions on output text (contains, lacks)
//! - [`snap`]: deterministic output for insta snapshots (temporary paths, host keys redacted)
//! - [`fixture`]: Raspberry Pi OS fixture trees, host roots, configs, the engine test `Env`
//! - [`paused`]: a pinetboot stopped at a pause point (crash tests)
//! - [`tree`]: a tree with every kind of entry and metadata, and its faithful snapshot
//! - [`roots`]: small OS trees for the network tests
//! - [`netlab`]: the namespace lab (router and server dnsmasq, Pi namespaces)
//! - [`pi4`]: the Pi 4 bootloader emulator
//! - [`http`]: a hostile-capable HTTP file server
//! - [`disk`]: Raspberry Pi OS-like disk images built with the real tools
//! - [`gitrepo`]: a fleet git repository (bare, file://) and signed commits
//! - [`realos`]: the real Debian arm64 fixture, its VM and NFS server

pub mod disk;
pub mod fixture;
pub mod gitrepo;
pub mod http;
pub mod mountns;
pub mod netlab;
pub mod paused;
pub mod pi4;
pub mod realos;
pub mod roots;
pub mod run;
pub mod snap;
pub mod snapshot;
pub mod text;
pub mod tools;
pub mod tree;
