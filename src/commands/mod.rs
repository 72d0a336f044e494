//! Thin command bodies: each turns parsed arguments into calls on the library and output.

use crate::cli::{Cli, Command};
use crate::error::CommandResult;
use crate::output::Printer;

mod schema;
mod validate;

/// Runs the parsed command line.
pub fn run(cli: &Cli, printer: &Printer) -> CommandResult {
    match &cli.command {
        Command::Validate => validate::run(&cli.global, printer),
        Command::Schema => schema::run(printer),
    }
}
