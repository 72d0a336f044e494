//! Semantic validation: every problem in one run, each located and with a hint, and the
//! normalised, checked form of the config that the rest of pinetboot works from.
//!
//! One module per section of the file (`server`, `paths`, `nfs`, `images`, `clients`, `eeprom`),
//! `fields.rs` for checks of single values the sections share, and `valid.rs` for the checked
//! types they produce.

mod clients;
mod eeprom;
mod fields;
mod images;
mod nfs;
mod paths;
mod server;
#[cfg(test)]
mod tests;
mod valid;

use std::net::Ipv4Addr;
use std::path::Path;

use super::diagnostic::{ConfigError, Diagnostic};
use super::load::Parsed;
use super::locate::Locator;
use super::model::Config;
pub use valid::{Source, Valid, ValidClient, ValidImage};

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

/// Checks a parsed config and returns its normalised form, or every problem found.
pub fn validate(file: &Path, parsed: &Parsed) -> Result<Valid, ConfigError> {
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
        Err(ConfigError {
            diagnostics: c.found,
        })
    }
}

fn check(c: &mut Checker<'_>, cfg: &Config) -> Valid {
    let (address, network) = server::check_server(c, cfg);
    let paths = paths::check_paths(c, &cfg.paths);
    let (nfs_options, nfs_scope) = nfs::check_nfs(c, cfg, network);
    let images = images::check_images(c, cfg);
    let clients = clients::check_clients(c, cfg, network, address);
    let bootloader = eeprom::check_bootloader(c, cfg, &clients);
    Valid {
        bootloader,
        address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
        network: network.unwrap_or_else(|| "0.0.0.0/0".parse().expect("constant")),
        interface: cfg.server.interface.clone(),
        paths,
        nfs_options,
        nfs_scope,
        images,
        clients,
        downloads: (&cfg.downloads).into(),
    }
}
