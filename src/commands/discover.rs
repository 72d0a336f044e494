//! `pinetboot discover`.

use crate::cli::GlobalArgs;
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;
use crate::status;

/// Prints undeclared Pis as `clients:` stanzas.
pub fn run(global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let valid = super::load(global, &host)?.valid;
    // Without `defaults.image` a pasted stanza needs an image to validate: name the first.
    let image_hint = match valid.defaults_image {
        Some(_) => None,
        None => valid.images.keys().next().cloned(),
    };
    let log = status::read_log(&host, &valid.paths.dnsmasq_log)?;
    let report = status::status(&valid, &log);
    printer.raw(&status::render_discover(
        &report,
        &valid,
        image_hint.as_deref(),
    ));
    Ok(ExitStatus::Success)
}
