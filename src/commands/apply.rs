//! `pinetboot apply`.

use crate::cli::{ApplyArgs, GlobalArgs, PullWhen};
use crate::config::Valid;
use crate::engine;
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::handlers::Outcome;
use crate::host::Host;
use crate::host::lock::Mode;
use crate::output::{Printer, Style};
use crate::resource::Action;

/// Makes the host match the config, then prints a one-line summary. With `--pull`, pulls
/// first (see `pinetboot pull`).
pub fn run(global: &GlobalArgs, args: &ApplyArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    match args.pull {
        Some(PullWhen::Always) => {
            return super::pull::run(global, &args.source, args.no_wait, printer);
        }
        Some(PullWhen::Auto) if global.config.is_none() => {
            let flags = super::pull::flags(&args.source);
            if crate::pull::settings(&host, flags)?.is_some() {
                return super::pull::run(global, &args.source, args.no_wait, printer);
            }
        }
        _ => {}
    }
    if args.pull.is_none() && !args.source.is_empty() {
        return Err(CommandError::user(
            "--url, --ref, --path and --allowed-signers are for pull mode",
            "add --pull, or run `pinetboot pull`",
        ));
    }
    let valid = super::load(global, &host)?.valid;
    let _lock = super::lock(&host, Mode::Exclusive, !args.no_wait)?;
    converge(&valid, &host, printer)
}

/// Applies `valid` under the lock the caller holds, printing each change and a summary.
pub(super) fn converge(valid: &Valid, host: &Host, printer: &Printer) -> CommandResult {
    for line in crate::plan::origin_lines(valid.server.as_deref(), valid.origin.as_ref(), None) {
        if !line.is_empty() {
            printer.line(&line);
        }
    }
    let report = engine::apply(valid, host, |c| {
        let (sym, style) = match c.action {
            Action::Create => ("+", Style::Add),
            Action::Update => ("~", Style::Change),
            Action::Remove => ("-", Style::Remove),
        };
        // A client root's line says how it was copied (files, bytes, reflinked).
        let note = match (&c.detail, c.kind) {
            (Some(d), crate::resource::ChangeKind::ClientRoot) => format!(" ({d})"),
            _ => String::new(),
        };
        printer.line(&format!(
            "{} {} {}{note}",
            printer.paint(style, sym),
            c.kind,
            c.path
        ));
        tracing::info!(action = ?c.action, kind = c.kind.as_str(), path = %c.path, "applied");
    })?;
    for (h, outcome) in &report.handlers {
        match outcome {
            Outcome::Ran => printer.line(&format!("ran: {}", h.describe())),
            Outcome::Skipped(why) => printer.line(&format!("skipped: {} ({why})", h.describe())),
        }
    }
    for k in &report.kept {
        printer.line(&format!(
            "kept: client root {} of {} ({})",
            k.path, k.client, k.note
        ));
    }
    for why in &report.refused {
        printer.line(&format!("not removed: {why}"));
    }
    let (mut add, mut change, mut remove) = (0, 0, 0);
    for c in &report.applied {
        match c.action {
            Action::Create => add += 1,
            Action::Update => change += 1,
            Action::Remove => remove += 1,
        }
    }
    let summary = if report.applied.is_empty() {
        "Apply complete: no changes.".to_owned()
    } else {
        format!("Apply complete: {add} added, {change} changed, {remove} removed.")
    };
    printer.line(&summary);
    if !report.conflicts.is_empty() {
        return Err(CommandError::conflict(
            format!(
                "{} client{} left untouched because of conflicts:\n{}",
                report.conflicts.len(),
                if report.conflicts.len() == 1 { "" } else { "s" },
                report
                    .conflicts
                    .iter()
                    .map(|c| format!("  client {}: {}", c.client, c.message))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            "every other client converged; see `pinetboot plan` for each conflict's hint",
        )
        .hints(
            report
                .conflicts
                .iter()
                .map(|c| format!("{}: {}", c.client, c.hint)),
        ));
    }
    Ok(ExitStatus::Success)
}
