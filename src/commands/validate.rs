//! `pinetboot validate`.

use crate::cli::GlobalArgs;
use crate::error::{CommandResult, ExitStatus};
use crate::output::Printer;

/// Loads and checks the whole config (every server of a fleet; needs no root and reads
/// nothing of the host); prints a summary when it is valid.
pub fn run(global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let (fleet, file) = super::load_fleet(global)?;
    let images = fleet
        .servers
        .iter()
        .flat_map(|v| v.images.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let clients: usize = fleet.servers.iter().map(|v| v.clients.len()).sum();
    let servers = if fleet.servers.iter().any(|v| v.server.is_some()) {
        format!(
            ", {} server{}",
            fleet.servers.len(),
            plural(fleet.servers.len())
        )
    } else {
        String::new()
    };
    printer.line(&format!(
        "{}: valid ({images} image{}, {clients} client{}{servers})",
        file.display(),
        plural(images),
        plural(clients),
    ));
    for v in &fleet.servers {
        if let Some(name) = &v.server {
            let names: Vec<&str> = v.clients.keys().map(String::as_str).collect();
            printer.line(&format!(
                "  server {name} ({}, {}): {} client{}{}{}",
                v.address,
                v.network,
                names.len(),
                plural(names.len()),
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            ));
        }
    }
    Ok(ExitStatus::Success)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
