//! The desired-state file: types ([`model`]), reading with located errors ([`load`]),
//! semantic checks ([`validate`]) and the JSON schema ([`schema`]).

pub mod diagnostic;
pub mod load;
pub mod locate;
pub mod model;
pub mod net;
pub mod schema;
pub mod size;
pub mod validate;

use std::path::Path;

pub use diagnostic::{ConfigError, Diagnostic};
pub use model::Config;
pub use validate::{Source, Valid, ValidClient, ValidImage};

/// Reads, parses and validates the config at `file`.
pub fn load(file: &Path) -> Result<Valid, ConfigError> {
    let (_, parsed) = load::read(file)?;
    validate::validate(file, &parsed)
}

/// Parses and validates config text (`file` only names it in messages).
pub fn load_str(file: &Path, text: &str) -> Result<Valid, ConfigError> {
    let parsed = load::parse(file, text)?;
    validate::validate(file, &parsed)
}
