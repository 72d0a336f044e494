//! `pinetboot gc`.

use serde::Serialize;

use crate::cli::{GcArgs, GlobalArgs};
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::gc::{self, Removable};
use crate::host::lock::Mode;
use crate::output::Printer;
use crate::progress::human_bytes;

#[derive(Serialize)]
struct Report<'a> {
    format_version: u32,
    removable: &'a [Removable],
    refused: &'a [String],
    deleted: bool,
    bytes: u64,
}

/// Lists what no declared client uses, with sizes; deletes it with `--yes`. Exits 1 when
/// something listed was refused (a mount inside).
pub fn run(global: &GlobalArgs, args: &GcArgs, printer: &Printer) -> CommandResult {
    let host = super::host(global)?;
    let valid = super::load(global, &host)?.valid;
    // Exclusive: no apply may clone from a store entry while it goes.
    let _lock = super::lock(&host, Mode::Exclusive, true)?;
    let (found, refused) = gc::measure(&host, gc::find(&valid, &host)?)?;
    let total: u64 = found.iter().filter_map(|r| r.bytes).sum();
    let mut freed = 0;
    if args.yes {
        for r in &found {
            freed += gc::remove(&host, r)?;
            if !args.json {
                printer.line(&format!("removed {}", r.describe()));
            }
        }
    }
    if args.json {
        printer.raw(
            &(serde_json::to_string_pretty(&Report {
                format_version: 1,
                removable: &found,
                refused: &refused,
                deleted: args.yes,
                bytes: if args.yes { freed } else { total },
            })
            .expect("gc report serialises")
                + "\n"),
        );
    } else if found.is_empty() && refused.is_empty() {
        printer.line("Nothing to remove: every store entry is in use and no old root is left.");
    } else if args.yes {
        printer.line(&format!("Freed {}.", human_bytes(freed)));
    } else {
        for r in &found {
            printer.line(&format!("  {}", r.describe()));
        }
        printer.line(&format!(
            "{} to free ({} item{}): run `pinetboot gc --yes` to delete them.",
            human_bytes(total),
            found.len(),
            if found.len() == 1 { "" } else { "s" }
        ));
    }
    if !refused.is_empty() {
        return Err(CommandError::conflict(
            format!("kept, not removed:\n  {}", refused.join("\n  ")),
            "unmount what is mounted there, then run gc again",
        ));
    }
    Ok(ExitStatus::Success)
}
