//! `pinetboot doctor`.

use crate::cli::{DoctorArgs, GlobalArgs};
use crate::doctor::{self, SystemRunner};
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;

/// Checks the live host; exits 1 when any finding is a problem (warnings alone: 0).
pub fn run(global: &GlobalArgs, args: &DoctorArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let (name, config) = match super::load(global, &host) {
        Ok(l) => (l.name.display().to_string(), Ok(l.valid)),
        Err(e) => (
            global
                .config
                .as_ref()
                .map_or_else(|| "the config".to_owned(), |p| p.display().to_string()),
            Err(e.render()),
        ),
    };
    let facts = doctor::facts::collect(&name, config, &host, &SystemRunner);
    let findings = doctor::checks::all(&facts);
    if args.json {
        printer.raw(&doctor::report::render_json(&findings));
    } else {
        printer.raw(&doctor::report::render_text(&findings, printer));
    }
    Ok(if doctor::has_problem(&findings) {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}
