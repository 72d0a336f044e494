//! Semantic validation: every problem in one run, each located and with a hint, and the
//! normalised, checked form of the config that the rest of pinetboot works from.
//!
//! One module per section of the file (`server`, `paths`, `nfs`, `images`, `clients`, `eeprom`;
//! `fleet` for `servers:` and which server each client boots from),
//! `fields.rs` for checks of single values the sections share, and `valid.rs` for the checked
//! types they produce.

mod clients;
mod eeprom;
mod fields;
mod fleet;
mod images;
mod nfs;
mod paths;
mod server;
#[cfg(test)]
mod tests;
mod valid;

use std::collections::BTreeMap;
use std::path::Path;

use super::diagnostic::{ConfigError, Diagnostic};
use super::load::Parsed;
use super::locate::Locator;
use super::model::Config;
pub use valid::{Fleet, Source, Valid, ValidClient, ValidImage};

pub(super) struct Checker<'a> {
    file: &'a Path,
    locator: &'a Locator,
    found: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn at_value(&mut self, path: &str, message: String, hint: &str) {
        self.push(self.locator.value(path), path, message, hint);
    }

    pub(super) fn at_key(&mut self, path: &str, message: String, hint: &str) {
        self.push(self.locator.key(path), path, message, hint);
    }

    /// A problem with the whole document (a section missing): located at its start.
    pub(super) fn at_start(&mut self, path: &str, message: String, hint: &str) {
        let start = super::locate::Position { line: 1, column: 1 };
        self.push(start, path, message, hint);
    }

    /// Whether the document is empty (no key at all).
    pub(super) fn document_is_empty(&self) -> bool {
        self.locator.is_empty()
    }

    fn push(&mut self, position: super::locate::Position, path: &str, message: String, hint: &str) {
        self.found.push(Diagnostic {
            file: self.file.to_owned(),
            position,
            path: path.to_owned(),
            message,
            hint: (!hint.is_empty()).then(|| hint.to_owned()),
        });
    }
}

/// Checks a parsed config (one server or a whole fleet) and returns its normalised form, one
/// [`Valid`] per server, or every problem found.
pub fn validate(file: &Path, parsed: &Parsed) -> Result<Fleet, ConfigError> {
    let mut c = Checker {
        file,
        locator: &parsed.locator,
        found: Vec::new(),
    };
    let valid = check(&mut c, &parsed.config);
    if c.found.is_empty() {
        Ok(valid)
    } else {
        c.found
            .sort_by(|a, b| a.position.cmp(&b.position).then(a.path.cmp(&b.path)));
        // A section the servers of a fleet share is checked once per server: say it once.
        c.found
            .dedup_by(|a, b| a.path == b.path && a.message == b.message);
        Err(ConfigError {
            diagnostics: c.found,
        })
    }
}

fn check(c: &mut Checker<'_>, cfg: &Config) -> Fleet {
    let servers = fleet::check_servers(c, cfg);
    let images = images::check_images(c, cfg);
    let placed = fleet::place(c, cfg, &servers);
    let clients = clients::check_clients(c, cfg, &placed);
    let bootloader = eeprom::check_bootloader(c, cfg, &clients);
    let downloads: crate::image::fetch::Limits = (&cfg.downloads).into();
    let servers = servers
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let mine: BTreeMap<String, ValidClient> = clients
                .iter()
                .filter(|(name, _)| placed.get(*name).is_some_and(|p| p.server == i))
                .map(|(name, client)| (name.clone(), client.clone()))
                .collect();
            // A fleet server holds the images its clients (or the defaults) name: another
            // site's image, perhaps a file only that site has, is none of its business.
            let images = if s.name.is_some() {
                images
                    .iter()
                    .filter(|(name, _)| {
                        mine.values().any(|c| &c.image == *name)
                            || cfg.defaults.image.as_ref() == Some(*name)
                    })
                    .map(|(n, i)| (n.clone(), i.clone()))
                    .collect()
            } else {
                images.clone()
            };
            (s, mine, images)
        })
        .map(|(s, clients, images)| Valid {
            server: s.name,
            bootloader: bootloader.clone(),
            address: s.address.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            network: s
                .network
                .unwrap_or_else(|| "0.0.0.0/0".parse().expect("constant")),
            interface: s.interface,
            paths: s.paths,
            nfs_options: s.nfs_options,
            nfs_scope: s.nfs_scope,
            images,
            clients,
            downloads,
            defaults_image: cfg.defaults.image.clone(),
            defaults_eeprom: cfg.defaults.eeprom.clone(),
            origin: None,
        })
        .collect();
    Fleet { servers }
}
