//! `pinetboot validate`.

use crate::cli::GlobalArgs;
use crate::config;
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;

/// Loads and checks the config; prints a one-line summary when it is valid.
pub fn run(global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let valid = config::load(&global.config)?;
    printer.line(&format!(
        "{}: valid ({} image{}, {} client{})",
        global.config.display(),
        valid.images.len(),
        plural(valid.images.len()),
        valid.clients.len(),
        plural(valid.clients.len()),
    ));
    Ok(ExitStatus::Success)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
