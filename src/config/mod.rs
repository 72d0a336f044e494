//! The desired-state file: types ([`model`]), reading with located errors ([`load`]),
//! semantic checks ([`validate`]) and the JSON schema ([`schema`]).

pub mod diagnostic;
pub mod load;
pub mod locate;
pub mod model;
pub mod net;
pub mod schema;
pub mod select;
pub mod size;
pub mod validate;

use std::path::Path;

pub use diagnostic::{ConfigError, Diagnostic};
pub use model::Config;
pub use select::{Identity, SelectError};
pub use validate::{Fleet, Source, Valid, ValidClient, ValidImage};

/// Reads, parses and validates the config at `file`: every server it describes.
pub fn load_fleet(file: &Path) -> Result<Fleet, ConfigError> {
    let (_, parsed) = load::read(file)?;
    validate::validate(file, &parsed)
}

/// Parses and validates config text (`file` only names it in messages): every server.
pub fn load_fleet_str(file: &Path, text: &str) -> Result<Fleet, ConfigError> {
    let parsed = load::parse(file, text)?;
    validate::validate(file, &parsed)
}

/// Reads, parses and validates the config at `file`, which must describe one server.
pub fn load(file: &Path) -> Result<Valid, ConfigError> {
    one_server(file, load_fleet(file)?)
}

/// Parses and validates config text that describes one server.
pub fn load_str(file: &Path, text: &str) -> Result<Valid, ConfigError> {
    one_server(file, load_fleet_str(file, text)?)
}

fn one_server(file: &Path, mut fleet: Fleet) -> Result<Valid, ConfigError> {
    if fleet.servers.len() == 1 {
        return Ok(fleet.servers.remove(0));
    }
    Err(ConfigError {
        diagnostics: vec![Diagnostic {
            file: file.to_owned(),
            position: locate::Position::default(),
            path: "servers".into(),
            message: format!(
                "the file describes {} servers ({}); this needs one",
                fleet.servers.len(),
                fleet.names().join(", ")
            ),
            hint: Some("choose the server with --server NAME".into()),
        }],
    })
}
