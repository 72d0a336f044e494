//! `pinetboot plan`.

use crate::cli::{GlobalArgs, PlanArgs};
use crate::config;
use crate::engine;
use crate::error::{CommandResult, EXIT_CHANGES, EXIT_OK};
use crate::host::lock::Mode;
use crate::output::Printer;
use crate::plan::{render_json, render_text};

/// Prints what apply would change; changes nothing.
pub fn run(global: &GlobalArgs, args: &PlanArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    let host = super::host(global)?;
    // A shared lock, only when the lock file can be taken without writing anything new.
    let _lock = host
        .path(engine::LOCK_PATH)
        .exists()
        .then(|| engine::lock(&host, Mode::Shared, true))
        .transpose()?;
    let (_, _, plan) = engine::observe_and_plan(&valid, &host)?;
    if args.json {
        printer.raw(&render_json(&plan));
    } else {
        printer.raw(&render_text(&plan, printer));
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
