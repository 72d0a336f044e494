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
        "{}: {} client{}, boot network {}, server {}{}",
        f.config_path,
        valid.clients.len(),
        if valid.clients.len() == 1 { "" } else { "s" },
        valid.network,
        valid.address,
        valid
            .server
            .as_ref()
            .map(|n| format!(" (fleet server {n})"))
            .unwrap_or_default()
    )));
    source(f, valid, out);
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

/// Pull mode: which commit is in force, whether the host applied it, and whether the last
/// fetch brought a commit that was not accepted.
fn source(f: &Facts, valid: &crate::config::Valid, out: &mut Vec<Finding>) {
    let check = Check::new("source", "the host runs the commit in force");
    let Some(origin) = &valid.origin else {
        if let Some(applied) = &f.applied {
            out.push(check.warning(
                format!(
                    "the config is read from {}, and the last apply applied {}",
                    f.config_path,
                    applied.describe()
                ),
                "run `pinetboot pull` to go back to pull mode, or remove /etc/pinetboot/source.yaml to leave it",
            ));
        }
        return;
    };
    match &f.applied {
        Some(a) if a.commit == origin.commit => out.push(check.ok(origin.describe())),
        Some(a) => out.push(check.warning(
            format!(
                "the commit in force is {}, and the last apply applied {}",
                origin.describe(),
                a.describe()
            ),
            "run `pinetboot apply` (or `pinetboot pull`)",
        )),
        None => out.push(check.warning(
            format!(
                "the commit in force is {}, and no apply has recorded it",
                origin.describe()
            ),
            "run `pinetboot apply` (or `pinetboot pull`)",
        )),
    }
    if let Some(pending) = &f.pending_commit {
        out.push(Check::new("source.pending", "the last fetched commit is the one in force").warning(
            format!(
                "the last pull fetched commit {}, which is not in force: it was refused (or not applied yet)",
                &pending[..pending.len().min(12)]
            ),
            "see why in `journalctl -u pinetboot` or by running `pinetboot pull`; the commit in force stays until one is accepted",
        ));
    }
}
