//! `pinetboot pull` and `apply --pull`: fetch, judge, accept, apply.

use crate::cli::{GlobalArgs, SourceArgs};
use crate::error::{CommandError, CommandResult};
use crate::host::lock::Mode;
use crate::output::Printer;
use crate::pull::{self, Flags, Slot};

/// The source flags as the library takes them.
pub(super) fn flags(args: &SourceArgs) -> Flags {
    Flags {
        url: args.url.clone(),
        git_ref: args.git_ref.clone(),
        path: args.path.clone(),
        allowed_signers: args.allowed_signers.clone(),
    }
}

/// Fetches the newest commit; applies it when it is accepted, else converges on the commit in
/// force and fails with the refusal (exit 1).
pub fn run(
    global: &GlobalArgs,
    args: &SourceArgs,
    no_wait: bool,
    printer: &Printer,
) -> CommandResult {
    if global.config.is_some() {
        return Err(CommandError::user(
            "--config and pull mode exclude each other: pull applies the repository's config file",
            "leave out --config (the file inside the repository is --path)",
        ));
    }
    let host = super::host(global)?;
    let Some(settings) = pull::settings(&host, flags(args))? else {
        return Err(CommandError::user(
            format!(
                "pull mode needs a repository: {} does not exist and no --url was given",
                crate::source::SETTINGS_FILE
            ),
            "write /etc/pinetboot/source.yaml (`url:`, and `ref:`, `path:` when not main and pinetboot.yaml), or pass --url",
        ));
    };
    // One pull at a time: fetch, checkout and apply happen under the apply lock.
    let _lock = super::lock(&host, Mode::Exclusive, !no_wait)?;
    let wanted = global.server.as_deref();
    let identity = crate::host::identity::this_host;
    match pull::fetch(&host, &settings, Slot::Pull, wanted, identity) {
        Ok(candidate) => {
            pull::accept(&host, &candidate)?;
            tracing::info!(commit = %candidate.record.commit, "pulled");
            super::apply::converge(&candidate.valid, &host, printer)
        }
        Err(e) => {
            let err = CommandError::from(e);
            // The commit in force stays in force (a refused commit, or git failing, e.g. the
            // network): converge on it, then fail loudly.
            match pull::current(&host, &settings, wanted, identity) {
                Ok(Some(last)) => {
                    printer.line(&format!(
                        "keeping {} (the last good commit)",
                        last.record.describe()
                    ));
                    super::apply::converge(&last.valid, &host, printer)?;
                }
                Ok(None) => printer.line("no earlier commit was accepted: nothing applied"),
                Err(e) => printer.line(&format!("the last good commit cannot be read again: {e}")),
            }
            Err(err)
        }
    }
}
