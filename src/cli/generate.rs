//! `pinetboot generate man|completions DIR` (hidden): the man pages and shell completions,
//! generated from the clap types in [`super`], for packaging (`packaging/build-deb.sh`).
//!
//! Man pages: one per visible command, named as `clap_mangen` names them (`pinetboot.1`,
//! `pinetboot-plan.1`, `pinetboot-eeprom-show.1`, …); the top page and `pinetboot-plan.1` get an
//! EXIT STATUS section built from the exit codes in [`crate::error`]. Completions:
//! `pinetboot.bash`, `_pinetboot` (zsh) and `pinetboot.fish`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, Subcommand};
use clap_complete::aot::{Bash, Fish, Generator, Zsh};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::Cli;
use crate::error::{CommandResult, ExitStatus};
use crate::host::atomic;
use crate::output::Printer;

/// The binary's name, as the completions and man pages call it.
const BIN: &str = "pinetboot";

/// `pinetboot generate …`: files for packaging.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write a man page for the command and each visible subcommand into DIR.
    Man {
        /// The folder to write into (created if missing).
        dir: PathBuf,
    },
    /// Write bash, zsh and fish completions into DIR.
    Completions {
        /// The folder to write into (created if missing).
        dir: PathBuf,
    },
}

/// Runs `pinetboot generate …`, printing the path of each file written.
pub fn run(cmd: &GenerateCommand, printer: &Printer) -> CommandResult {
    let written = match cmd {
        GenerateCommand::Man { dir } => write_man_pages(dir)?,
        GenerateCommand::Completions { dir } => write_completions(dir)?,
    };
    for path in written {
        printer.line(&path.display().to_string());
    }
    Ok(ExitStatus::Success)
}

/// Writes `pinetboot.1` and one page per visible subcommand (recursively) into `dir`;
/// returns the paths written, the top page first.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    atomic::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // As `clap_mangen::generate_to` does: no `help` pages, and a built command so every
    // subcommand has its display name (`pinetboot-eeprom-show`) and the global options.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_man_tree(&cmd, dir, &mut written)?;
    Ok(written)
}

/// Writes the page of `cmd`, then those of its visible subcommands.
fn write_man_tree(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let man = Man::new(cmd.clone())
        .source(format!("{BIN} {}", env!("CARGO_PKG_VERSION")))
        .manual("pinetboot manual")
        .date(page_date());
    let path = dir.join(man.get_filename());
    let page = render_page(&man, cmd)?;
    atomic::write_host_file(&path, page.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_tree(sub, dir, written)?;
    }
    Ok(())
}

/// The date in the pages' title line, `YYYY-MM-DD`: from `SOURCE_DATE_EPOCH` when set (for
/// reproducible packages), else today. (An empty date would shift the `.TH` arguments.)
fn page_date() -> String {
    let secs = i64::try_from(crate::host::ops::now()).unwrap_or(0);
    crate::date::utc_date(secs)
}

/// Renders one page: clap_mangen's page, with an EXIT STATUS section (for the commands that
/// have one) placed before VERSION, where man-pages(7) puts it.
fn render_page(man: &Man, cmd: &clap::Command) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    man.render(&mut buf).context("rendering a man page")?;
    let mut page = String::from_utf8(buf).context("a man page is not UTF-8")?;
    if let Some(section) = exit_status_section(cmd) {
        let at = page.find("\n.SH VERSION\n").map_or(page.len(), |i| i + 1);
        page.insert_str(at, &section);
    }
    Ok(page)
}

/// The EXIT STATUS section (roff, without the preamble) for `pinetboot` and `pinetboot plan`.
fn exit_status_section(cmd: &clap::Command) -> Option<String> {
    let changes = match cmd.get_display_name().unwrap_or_else(|| cmd.get_name()) {
        "pinetboot" => "Changes are pending (only from plan --detailed-exitcode).",
        "pinetboot-plan" => {
            "Changes are pending and no client is in conflict (only with --detailed-exitcode; without it, pending changes exit 0)."
        }
        _ => return None,
    };
    let codes: [(ExitStatus, &str); 4] = [
        (ExitStatus::Success, "Success."),
        (
            ExitStatus::Error,
            "An error: an invalid config, a conflict on the host, or a failed step.",
        ),
        (ExitStatus::Changes, changes),
        (ExitStatus::Usage, "A command-line usage error."),
    ];
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in codes {
        roff.control("TP", [])
            .text([bold(code.code().to_string())])
            .text([roman(meaning)]);
    }
    // Each rendering starts with the same apostrophe preamble; the page already has it.
    let preamble = Roff::new().render();
    let rendered = roff.render();
    Some(
        rendered
            .strip_prefix(&preamble)
            .unwrap_or(&rendered)
            .to_owned(),
    )
}

/// A copy of the top command without its hidden subcommands (`generate`): `clap_complete`
/// completes hidden subcommands, `clap_mangen` skips them. Options, groups and visible
/// subcommands are kept as they are; help and version flags are added again by `build`.
fn without_hidden_subcommands(full: &clap::Command) -> clap::Command {
    let mut cmd = clap::Command::new(BIN)
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(full.is_propagate_version_set())
        .subcommand_required(full.is_subcommand_required_set())
        .args(full.get_arguments().cloned())
        .groups(full.get_groups().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// Writes `pinetboot.bash`, `_pinetboot` and `pinetboot.fish` into `dir`; returns their paths.
pub fn write_completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    atomic::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let generators: [&dyn Generator; 3] = [&Bash, &Zsh, &Fish];
    let mut written = Vec::new();
    for generator in generators {
        let mut cmd = without_hidden_subcommands(&Cli::command());
        cmd.set_bin_name(BIN);
        cmd.build();
        let mut buf = Vec::new();
        generator
            .try_generate(&cmd, &mut buf)
            .context("generating completions")?;
        let path = dir.join(generator.file_name(BIN));
        atomic::write_host_file(&path, &buf, 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
