//! `pinetboot purge NAME --yes`: the one way client data is deleted.

use anyhow::Context as _;

use crate::cli::{GlobalArgs, PurgeArgs};
use crate::config;
use crate::engine;
use crate::error::{CommandError, CommandResult, EXIT_OK};
use crate::expand::root_of;
use crate::host::lock::Mode;
use crate::host::{Kind, mountinfo};
use crate::output::Printer;
use crate::state::State;

/// Deletes the root of an undeclared client, after checks.
pub fn run(global: &GlobalArgs, args: &PurgeArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    let host = super::host(global)?;
    let _lock = engine::lock(&host, Mode::Exclusive, true)?;
    if valid.clients.contains_key(&args.client) {
        return Err(CommandError::user(
            format!(
                "client {} is still declared in {}",
                args.client,
                global.config.display()
            ),
            "remove it from the config and run `pinetboot apply` first",
        ));
    }
    if args.client.is_empty() || args.client.contains('/') || args.client.starts_with('.') {
        return Err(CommandError::user(
            format!("`{}` is not a client name", args.client),
            "give the client's name",
        ));
    }
    let root = root_of(&valid, &args.client);
    match host.kind(&root)? {
        Kind::Dir(_) => {}
        Kind::Missing => {
            return Err(CommandError::user(
                format!("{root} does not exist"),
                "nothing to delete",
            ));
        }
        _ => {
            return Err(CommandError::user(
                format!("{root} is not a folder"),
                "remove it by hand after checking what it is",
            ));
        }
    }
    let full = host.path(&root);
    let prefix = format!("{}/", full.to_string_lossy());
    if let Some(m) = mountinfo::read()?
        .iter()
        .find(|m| m.mount_point.starts_with(&prefix) || m.root.starts_with(&prefix))
    {
        return Err(CommandError::user(
            format!("{} is still mounted from or inside {root}", m.mount_point),
            "run `pinetboot apply` so the removed client's bind mount is pruned, then purge",
        ));
    }
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
    // By descriptor: no symlink inside the tree is followed, and a mount made inside it since
    // the check above is refused before anything is deleted.
    crate::tree::remove::remove(&full).with_context(|| format!("deleting {}", full.display()))?;
    let mut state = State::load(&host, &valid.paths.state)?;
    if state.clients.remove(&args.client).is_some() {
        state.save(&host, &valid.paths.state)?;
    }
    printer.line(&format!("deleted client root {root}"));
    Ok(EXIT_OK)
}
