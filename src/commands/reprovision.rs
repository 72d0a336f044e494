//! `pinetboot reprovision NAME --yes`: provision a client root anew from its image (after the
//! image changed, or to start the client over).
//!
//! Client data is never deleted: the old root is moved aside to `<nfs>/.NAME.pinetboot-old-<UTC
//! time>` (same filesystem, one rename), the client's record forgets the boot folder and image
//! it was provisioned from, and then a normal `apply` runs at once, which clones the root anew
//! from the image store (fetching the image first if needed) and remounts its boot folder. The
//! Pi keeps its old root until it reboots. Delete the old root by hand once it is not needed.

use anyhow::Context as _;

use crate::cli::{ApplyArgs, GlobalArgs, ReprovisionArgs};
use crate::config;
use crate::engine;
use crate::error::{CommandError, CommandResult};
use crate::expand::root_of;
use crate::host::Kind;
use crate::host::lock::Mode;
use crate::output::Printer;
use crate::state::State;

/// Moves the client's root aside, then applies.
pub fn run(global: &GlobalArgs, args: &ReprovisionArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    let host = super::host(global)?;
    let name = &args.client;
    if !valid.clients.contains_key(name) {
        return Err(CommandError::user(
            format!(
                "client {name} is not declared in {}",
                global.config.display()
            ),
            "give the name of a declared client",
        ));
    }
    let root = root_of(&valid, name);
    {
        let _lock = engine::lock(&host, Mode::Exclusive, true)?;
        match host.kind(&root)? {
            Kind::Dir(_) => {}
            Kind::Missing => {
                return Err(CommandError::user(
                    format!("{root} does not exist: there is nothing to reprovision"),
                    "run `pinetboot apply`: it provisions the client",
                ));
            }
            _ => {
                return Err(CommandError::user(
                    format!("{root} is not a folder"),
                    "inspect it and move it away by hand",
                ));
            }
        }
        if !args.yes {
            return Err(CommandError::user(
                format!(
                    "this moves {root} aside (client {name}'s data is kept there) and provisions a new root from image {}",
                    valid.clients[name].image
                ),
                format!("run again with --yes: pinetboot reprovision {name} --yes"),
            ));
        }
        let stamp = crate::image::store::utc(crate::image::store::now_secs(), true);
        let aside = format!(
            "{}/.{name}.pinetboot-old-{stamp}",
            valid.paths.nfs.trim_end_matches('/')
        );
        let (from, to) = (host.path(&root), host.path(&aside));
        crate::host::atomic::rename_noreplace_synced(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        tracing::info!(client = %name, old = %aside, "moved the client root aside");
        printer.line(&format!(
            "moved client root {root} aside to {aside} (its data is kept; delete it by hand when no longer needed)"
        ));
        // The new root is detected afresh from its image, never from the old root.
        let mut state = State::load(&host, &valid.paths.state)?;
        if let Some(rec) = state.clients.get_mut(name) {
            rec.boot_dir = None;
            rec.image_sha256 = None;
            state.save(&host, &valid.paths.state)?;
        }
    }
    super::apply::run(global, &ApplyArgs { no_wait: false }, printer)
}
