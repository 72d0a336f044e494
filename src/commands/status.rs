//! `pinetboot status`.

use crate::cli::{GlobalArgs, StatusArgs};
use crate::config;
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;
use crate::status;

/// Prints what dnsmasq's log says about each declared client.
pub fn run(global: &GlobalArgs, args: &StatusArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    let host = super::host(global)?;
    let log = status::read_log(&host, &valid.paths.dnsmasq_log)?;
    let report = status::status(&valid, &log);
    if args.json {
        printer.raw(&status::render_json(&report));
    } else {
        printer.raw(&status::render_text(&report, printer));
    }
    Ok(ExitStatus::Success)
}
