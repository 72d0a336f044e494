//! `pinetboot reprovision NAME --yes`: provision a client root anew from its image (after the
//! image changed, or to start the client over).
//!
//! Client data is never deleted: the old root is moved aside to `<nfs>/.NAME.pinetboot-old-<UTC
//! time>` ([`crate::lifecycle::MoveAside`]), and then a normal `apply` runs at once, which clones
//! the root anew from the image store (fetching the image first if needed) and remounts its boot
//! folder. The Pi keeps its old root until it reboots. Delete the old root by hand once it is not
//! needed.

use crate::cli::{ApplyArgs, GlobalArgs, ReprovisionArgs};
use crate::error::{CommandError, CommandResult};
use crate::host::lock::Mode;
use crate::lifecycle::{self, MoveAside};
use crate::output::Printer;

/// Moves the client's root aside (after checks and `--yes`), then applies.
pub fn run(global: &GlobalArgs, args: &ReprovisionArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let loaded = super::load(global, &host)?;
    let valid = loaded.valid;
    let name = &args.client;
    lifecycle::must_be_declared(&valid, &loaded.name, name)?;
    {
        let _lock = super::lock(&host, Mode::Exclusive, true)?;
        let aside = MoveAside::check(&valid, &host, name)?;
        if !args.yes {
            return Err(CommandError::user(
                format!(
                    "this moves {} aside (client {name}'s data is kept there) and provisions a new root from image {}",
                    aside.root(),
                    valid.clients[name].image
                ),
                format!("run again with --yes: pinetboot reprovision {name} --yes"),
            ));
        }
        let root = aside.root().to_owned();
        let to = aside.run(
            &valid,
            &host,
            i64::try_from(crate::host::ops::now()).unwrap_or(0),
        )?;
        printer.line(&format!(
            "moved client root {root} aside to {to} (its data is kept; delete it by hand when no longer needed)"
        ));
    }
    let args = ApplyArgs {
        no_wait: false,
        pull: None,
        source: Default::default(),
    };
    super::apply::run(global, &args, printer)
}
