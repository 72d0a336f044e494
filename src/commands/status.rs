//! `pinetboot status`.

use crate::cli::{GlobalArgs, StatusArgs};
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;
use crate::status;

/// Prints what dnsmasq's log says about each declared client.
pub fn run(global: &GlobalArgs, args: &StatusArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let loaded = super::load(global, &host)?;
    let valid = loaded.valid;
    let log = status::read_log(&host, &valid.paths.dnsmasq_log)?;
    let mut report = status::status(&valid, &log);
    report.source = crate::state::State::load(&host, &valid.paths.state)?.source;
    if args.json {
        printer.raw(&status::render_json(&report));
    } else {
        printer.raw(&status::render_text(&report, printer));
    }
    Ok(ExitStatus::Success)
}
