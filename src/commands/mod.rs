//! Thin command bodies: each turns parsed arguments into calls on the library and output.

use crate::cli::{Cli, Command};
use crate::engine;
use crate::error::{CommandError, CommandResult};
use crate::host::Host;
use crate::host::lock::{Lock, Mode};
use crate::output::Printer;

mod apply;
mod discover;
mod doctor;
mod eeprom;
mod gc;
mod mount;
mod plan;
mod pull;
mod purge;
mod reprovision;
mod schema;
mod status;
mod validate;

/// Runs the parsed command line.
pub fn run(cli: &Cli, printer: &Printer) -> CommandResult {
    crate::progress::set_quiet(cli.global.quiet);
    // Plain progress lines (the journal's form) on stderr, with no escape sequence in them.
    crate::progress::set_output(anstream::stderr());
    match &cli.command {
        Command::Validate => validate::run(&cli.global, printer),
        Command::Schema => schema::run(printer),
        Command::Plan(args) => plan::run(&cli.global, args, printer),
        Command::Apply(args) => apply::run(&cli.global, args, printer),
        Command::Pull(args) => pull::run(&cli.global, &args.source, args.no_wait, printer),
        Command::Mount => mount::run(&cli.global, printer),
        Command::Purge(args) => purge::run(&cli.global, args, printer),
        Command::Gc(args) => gc::run(&cli.global, args, printer),
        Command::Reprovision(args) => reprovision::run(&cli.global, args, printer),
        Command::Doctor(args) => doctor::run(&cli.global, args, printer),
        Command::Eeprom(cmd) => eeprom::run(&cli.global, cmd, printer),
        Command::Status(args) => status::run(&cli.global, args, printer),
        Command::Discover => discover::run(&cli.global, printer),
        Command::Generate(cmd) => crate::cli::generate::run(cmd, printer),
    }
}

/// The default config file (when `--config` is not given and there is no pull source).
pub const DEFAULT_CONFIG: &str = "/etc/pinetboot/pinetboot.yaml";

/// The config a command works from: this host's server of it, and how to name it.
struct Loaded {
    valid: crate::config::Valid,
    /// The file (or `PATH@COMMIT` in pull mode) for messages.
    name: std::path::PathBuf,
}

/// Loads this host's part of the config: `--config`, else in pull mode (a source.yaml under
/// the host root) the commit in force, else /etc/pinetboot/pinetboot.yaml; then the server
/// (`--server`, the source's `server:`, this host's name, its addresses).
fn load(global: &crate::cli::GlobalArgs, host: &Host) -> Result<Loaded, CommandError> {
    let identity = crate::host::identity::this_host;
    let wanted = global.server.as_deref();
    if let Some(file) = &global.config {
        let valid = crate::config::load_fleet(file)?.select(wanted, identity)?;
        return Ok(Loaded {
            valid,
            name: file.clone(),
        });
    }
    let Some(settings) = crate::pull::settings(host, crate::pull::Flags::default())? else {
        let file = std::path::PathBuf::from(DEFAULT_CONFIG);
        let valid = crate::config::load_fleet(&file)?.select(wanted, identity)?;
        return Ok(Loaded { valid, name: file });
    };
    match crate::pull::current(host, &settings, wanted, identity)? {
        Some(c) => Ok(Loaded {
            name: crate::pull::display_name(&settings.path, c.record.short()),
            valid: c.valid,
        }),
        None => Err(CommandError::user(
            format!(
                "{} sets up pull mode, and no commit has been pulled yet",
                crate::source::SETTINGS_FILE
            ),
            "run `pinetboot pull` (or pass --config FILE)",
        )),
    }
}

/// The fleet in the config file, for `validate` (every server, no selection).
fn load_fleet(
    global: &crate::cli::GlobalArgs,
) -> Result<(crate::config::Fleet, std::path::PathBuf), CommandError> {
    let file = global
        .config
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_CONFIG));
    Ok((crate::config::load_fleet(&file)?, file))
}

/// Opens the host named by `--root`.
fn host(global: &crate::cli::GlobalArgs) -> Result<Host, CommandError> {
    Host::new(&global.root).map_err(|e| {
        CommandError::user(
            format!("--root {}: {e}", global.root.display()),
            "give an existing folder (or / for this host)",
        )
    })
}

/// Takes pinetboot's lock ([`engine::lock`]), saying on stderr when it waits for another apply.
// The wait notice is for the person at the terminal (or the journal), before any output.
#[allow(clippy::print_stderr)]
fn lock(host: &Host, mode: Mode, wait: bool) -> Result<Lock, CommandError> {
    Ok(engine::lock(host, mode, wait, |path| {
        eprintln!(
            "waiting for another pinetboot apply to finish (lock {})…",
            path.display()
        );
    })?)
}
