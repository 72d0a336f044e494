//! `pinetboot plan`.

use crate::cli::{GlobalArgs, PlanArgs};
use crate::engine;
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::host::Kind;
use crate::host::lock::Mode;
use crate::output::Printer;
use crate::plan::{render_json, render_text};

/// Prints what apply would change; changes nothing. Exits 1 when a client is in conflict
/// (also with `--detailed-exitcode`, even when changes are pending), else 2 with
/// `--detailed-exitcode` when changes are pending, else 0. With `--pull`, plans the newest
/// commit of the source (fetched into its own ref, judged as `pull` judges it, not applied).
pub fn run(global: &GlobalArgs, args: &PlanArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let valid = if args.pull {
        if global.config.is_some() {
            return Err(CommandError::user(
                "--config and --pull exclude each other: --pull plans the repository's config file",
                "leave out --config (the file inside the repository is --path)",
            ));
        }
        let Some(settings) = crate::pull::settings(&host, super::pull::flags(&args.source))? else {
            return Err(CommandError::user(
                format!(
                    "--pull needs a repository: {} does not exist and no --url was given",
                    crate::source::SETTINGS_FILE
                ),
                "pass --url (and --ref BRANCH), or write /etc/pinetboot/source.yaml",
            ));
        };
        crate::pull::fetch(
            &host,
            &settings,
            crate::pull::Slot::Plan,
            global.server.as_deref(),
            crate::host::identity::this_host,
        )?
        .valid
    } else {
        if !args.source.is_empty() {
            return Err(CommandError::user(
                "--url, --ref, --path and --allowed-signers are for pull mode",
                "add --pull to plan the repository's newest commit",
            ));
        }
        super::load(global, &host)?.valid
    };
    // A shared lock, only when the lock file can be taken without writing anything new.
    let _lock = match host.kind(engine::LOCK_PATH) {
        Ok(Kind::Missing) | Err(_) => None,
        Ok(_) => Some(super::lock(&host, Mode::Shared, true)?),
    };
    let (_, _, plan) = engine::observe_and_plan(&valid, &host)?;
    if args.json {
        printer.raw(&render_json(&plan));
    } else {
        printer.raw(&render_text(&plan, printer));
    }
    // A conflict is an error (exit 1), with or without --detailed-exitcode, and wins over
    // pending changes (Terraform's convention: 1 is an error, 2 only a clean plan with
    // changes): monitoring built on the exit status must see a client left untouched.
    if !plan.conflicts.is_empty() {
        let n = plan.conflicts.len();
        let names: Vec<&str> = plan.conflicts.iter().map(|c| c.client.as_str()).collect();
        return Err(CommandError::conflict(
            format!(
                "{n} client{} in conflict, which apply would leave untouched: {}",
                if n == 1 { " is" } else { "s are" },
                names.join(", ")
            ),
            "each conflict's hint is in the plan above; the other changes are planned as shown",
        ));
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}
