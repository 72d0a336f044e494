//! `pinetboot plan`.

use crate::cli::{GlobalArgs, PlanArgs};
use crate::config;
use crate::engine;
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::host::Kind;
use crate::host::lock::Mode;
use crate::output::Printer;
use crate::plan::{render_json, render_text};

/// Prints what apply would change; changes nothing. Exits 1 when a client is in conflict
/// (also with `--detailed-exitcode`, even when changes are pending), else 2 with
/// `--detailed-exitcode` when changes are pending, else 0.
pub fn run(global: &GlobalArgs, args: &PlanArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    let host = super::host(global)?;
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
