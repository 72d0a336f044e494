//! `pinetboot mount`: the recorded boot-folder bind mounts, at server boot.

use crate::bootmount::{self, Outcome};
use crate::cli::GlobalArgs;
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::host::lock::Mode;
use crate::output::{Printer, Style};
use crate::state::State;

/// Mounts what the state file records; a refused mount makes the exit status 1.
pub fn run(global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let loaded = super::load(global, &host)?;
    let valid = loaded.valid;
    let _lock = super::lock(&host, Mode::Exclusive, true)?;
    let state = State::load(&host, &valid.paths.state)?;
    let reports = bootmount::restore(&host, &state);
    let mut refused = Vec::new();
    for r in &reports {
        match &r.outcome {
            Outcome::AlreadyMounted => {
                printer.line(&format!("ok: {} (client {})", r.target, r.client));
            }
            Outcome::Mounted => printer.line(&format!(
                "{} bind mount {} from {} (client {})",
                printer.paint(Style::Add, "+"),
                r.target,
                r.source,
                r.client
            )),
            Outcome::Refused(why) => refused.push(format!("  client {}: {why}", r.client)),
        }
    }
    if refused.is_empty() {
        return Ok(ExitStatus::Success);
    }
    Err(CommandError::conflict(
        format!(
            "{} boot folder{} not mounted:\n{}",
            refused.len(),
            if refused.len() == 1 { "" } else { "s" },
            refused.join("\n")
        ),
        "every other client's folder is mounted; fix what is named (or `pinetboot plan` for each conflict's hint), then `pinetboot apply`",
    ))
}
