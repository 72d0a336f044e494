//! `pinetboot schema`.

use crate::config::schema::schema_json;
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;

/// Prints the JSON schema.
pub fn run(printer: &Printer) -> CommandResult {
    printer.raw(&schema_json());
    Ok(ExitStatus::Success)
}
