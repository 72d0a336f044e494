//! Thin command bodies: each turns parsed arguments into calls on the library and output.

use crate::cli::{Cli, Command};
use crate::engine;
use crate::error::{CommandError, CommandResult};
use crate::host::Host;
use crate::host::lock::{Lock, Mode};
use crate::output::Printer;

mod apply;
mod discover;
mod doctor;
mod eeprom;
mod mount;
mod plan;
mod purge;
mod reprovision;
mod schema;
mod status;
mod validate;

/// Runs the parsed command line.
pub fn run(cli: &Cli, printer: &Printer) -> CommandResult {
    crate::progress::set_quiet(cli.global.quiet);
    // Plain progress lines (the journal's form) on stderr, with no escape sequence in them.
    crate::progress::set_output(anstream::stderr());
    match &cli.command {
        Command::Validate => validate::run(&cli.global, printer),
        Command::Schema => schema::run(printer),
        Command::Plan(args) => plan::run(&cli.global, args, printer),
        Command::Apply(args) => apply::run(&cli.global, args, printer),
        Command::Mount => mount::run(&cli.global, printer),
        Command::Purge(args) => purge::run(&cli.global, args, printer),
        Command::Reprovision(args) => reprovision::run(&cli.global, args, printer),
        Command::Doctor(args) => doctor::run(&cli.global, args, printer),
        Command::Eeprom(cmd) => eeprom::run(&cli.global, cmd, printer),
        Command::Status(args) => status::run(&cli.global, args, printer),
        Command::Discover => discover::run(&cli.global, printer),
        Command::Generate(cmd) => crate::cli::generate::run(cmd, printer),
    }
}

/// Opens the host named by `--root`.
fn host(global: &crate::cli::GlobalArgs) -> Result<Host, CommandError> {
    Host::new(&global.root).map_err(|e| {
        CommandError::user(
            format!("--root {}: {e}", global.root.display()),
            "give an existing folder (or / for this host)",
        )
    })
}

/// Takes pinetboot's lock ([`engine::lock`]), saying on stderr when it waits for another apply.
// The wait notice is for the person at the terminal (or the journal), before any output.
#[allow(clippy::print_stderr)]
fn lock(host: &Host, mode: Mode, wait: bool) -> Result<Lock, CommandError> {
    Ok(engine::lock(host, mode, wait, |path| {
        eprintln!(
            "waiting for another pinetboot apply to finish (lock {})…",
            path.display()
        );
    })?)
}
