//! `pinetboot discover`.

use crate::cli::GlobalArgs;
use crate::config;
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;
use crate::status;

/// Prints undeclared Pis as `clients:` stanzas.
pub fn run(global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    // Without `defaults.image` a pasted stanza needs an image to validate: name the first.
    let (_, parsed) = config::load::read(&global.config)?;
    let image_hint = match parsed.config.defaults.image {
        Some(_) => None,
        None => valid.images.keys().next().cloned(),
    };
    let host = super::host(global)?;
    let log = status::read_log(&host, &valid.paths.dnsmasq_log)?;
    let report = status::status(&valid, &log);
    printer.raw(&status::render_discover(
        &report,
        &valid,
        image_hint.as_deref(),
    ));
    Ok(ExitStatus::Success)
}
