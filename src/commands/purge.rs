//! `pinetboot purge NAME --yes`: the one way client data is deleted.

use crate::cli::{GlobalArgs, PurgeArgs};
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::host::lock::Mode;
use crate::lifecycle::Purge;
use crate::output::Printer;

/// Deletes the root of an undeclared client, after checks and `--yes`.
pub fn run(global: &GlobalArgs, args: &PurgeArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let loaded = super::load(global, &host)?;
    let valid = loaded.valid;
    let _lock = super::lock(&host, Mode::Exclusive, true)?;
    let purge = Purge::check(&valid, &loaded.name, &host, &args.client)?;
    let root = purge.root().to_owned();
    if !args.yes {
        return Err(CommandError::user(
            format!(
                "this deletes {root} and everything in it (client {}'s data)",
                args.client
            ),
            format!(
                "run again with --yes: pinetboot purge {} --yes",
                args.client
            ),
        ));
    }
    purge.run(&valid, &host)?;
    printer.line(&format!("deleted client root {root}"));
    Ok(ExitStatus::Success)
}
