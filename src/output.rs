//! Terminal versus plain output (as uv's Printer): colour only on a terminal and never when
//! `NO_COLOR` is set; logs go to stderr through `tracing`, to the journal's plain form when
//! stderr is not a terminal.

use std::io::{IsTerminal, Write};

/// Where command output goes and how it looks.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    color: bool,
    quiet: bool,
}

/// Styles used in output.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    /// Something added.
    Add,
    /// Something changed.
    Change,
    /// Something removed.
    Remove,
    /// A warning.
    Warn,
    /// Emphasis.
    Bold,
    /// De-emphasis.
    Dim,
}

impl Printer {
    /// A printer for stdout that decides colour from the terminal and `NO_COLOR`.
    pub fn detect(quiet: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Printer {
            color: std::io::stdout().is_terminal() && !no_color,
            quiet,
        }
    }

    /// A plain printer (tests, JSON).
    pub fn plain() -> Self {
        Printer {
            color: false,
            quiet: false,
        }
    }

    /// Whether colour is on.
    pub fn color(&self) -> bool {
        self.color
    }

    /// Wraps `text` in `style` when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match style {
            Style::Add => "32",
            Style::Change => "33",
            Style::Remove => "31",
            Style::Warn => "33;1",
            Style::Bold => "1",
            Style::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Prints a line of normal output (suppressed by `--quiet`).
    pub fn line(&self, text: &str) {
        if !self.quiet {
            self.raw(&format!("{text}\n"));
        }
    }

    /// Prints text as is, even with `--quiet` (for machine-readable output).
    pub fn raw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Sets up `tracing` on stderr: plain (no ANSI) when stderr is not a terminal or `NO_COLOR`
/// is set, so the journal gets clean lines.
pub fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("PINETBOOT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("pinetboot={level}")));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .try_init();
}
