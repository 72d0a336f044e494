//! The config loads and validates, and `pinetboot plan` has nothing pending (no drift).

use super::Check;
use crate::doctor::Finding;
use crate::doctor::facts::Facts;

/// The config loads and is valid; `pinetboot plan` has no pending change.
pub(super) fn config(f: &Facts, out: &mut Vec<Finding>) {
    let check = Check::new("config", "config is valid");
    let valid = match &f.config {
        Ok(v) => v,
        Err(e) => {
            out.push(check.problem(
                format!("{}:\n{e}", f.config_path),
                format!(
                    "fix the lines above (`pinetboot validate --config {}` lists them all); the checks that need the config were skipped",
                    f.config_path
                ),
            ));
            return;
        }
    };
    out.push(check.ok(format!(
        "{}: {} client{}, boot network {}, server {}",
        f.config_path,
        valid.clients.len(),
        if valid.clients.len() == 1 { "" } else { "s" },
        valid.network,
        valid.address
    )));
    match &f.state {
        Some(Err(e)) => out.push(Finding::problem(
            "state",
            "state file is readable",
            e.clone(),
            format!(
                "move the unreadable {}/state.json aside and run `pinetboot apply`: it records what it manages again",
                valid.paths.state
            ),
        )),
        Some(Ok(())) => out.push(Finding::ok(
            "state",
            "state file is readable",
            format!("{}/state.json", valid.paths.state),
        )),
        None => {}
    }
    match &f.plan {
        Some(Err(e)) => out.push(Finding::problem(
            "plan",
            "`pinetboot plan` is empty (no drift)",
            format!("planning failed: {e}"),
            "run `pinetboot plan` to see the full error, fix its cause",
        )),
        Some(Ok(p)) => {
            for c in &p.conflicts {
                out.push(Finding::problem(
                    "plan.conflict",
                    "no client is in conflict",
                    c.clone(),
                    "run `pinetboot plan` for the hint, fix the client root, then `pinetboot apply`",
                ));
            }
            if p.changes.is_empty() {
                out.push(Finding::ok(
                    "plan",
                    "`pinetboot plan` is empty (no drift)",
                    "the host matches the config",
                ));
            } else {
                let n = p.changes.len();
                let mut detail = format!("{n} pending change{}:", if n == 1 { "" } else { "s" });
                for c in p.changes.iter().take(8) {
                    detail.push_str(&format!("\n{c}"));
                }
                if n > 8 {
                    detail.push_str(&format!("\n… and {} more", n - 8));
                }
                out.push(Finding::warning(
                    "plan",
                    "`pinetboot plan` is empty (no drift)",
                    detail,
                    "review `pinetboot plan`, then run `pinetboot apply`",
                ));
            }
        }
        None => {}
    }
}
