//! Terminal versus plain output (as uv's Printer): colour as `anstream` decides it (a
//! terminal that supports it, never with `NO_COLOR`, `CLICOLOR`/`CLICOLOR_FORCE` honoured),
//! styles from `anstyle`; logs go to stderr through `tracing`, to the journal's plain form when
//! stderr is not a terminal.

use std::io::Write;

use anstream::{AutoStream, ColorChoice};
use anstyle::{AnsiColor, Style as Ansi};

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
    /// A printer for stdout that decides colour from the terminal and the environment
    /// (`NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE`, `TERM`).
    pub fn detect(quiet: bool) -> Self {
        Printer {
            color: colored(&std::io::stdout()),
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
        let style = style.ansi();
        format!("{style}{text}{style:#}")
    }

    /// Prints a line of normal output (suppressed by `--quiet`). Off a colour terminal any
    /// escape sequence is stripped (`anstream`), so none reaches the journal.
    pub fn line(&self, text: &str) {
        if !self.quiet {
            let choice = if self.color {
                ColorChoice::Always
            } else {
                ColorChoice::Never
            };
            write_all(
                AutoStream::new(std::io::stdout(), choice).lock(),
                text,
                "\n",
            );
        }
    }

    /// Prints text exactly as given, even with `--quiet` (machine-readable output, and
    /// renderings already painted or not by [`Printer::paint`]).
    pub fn raw(&self, text: &str) {
        write_all(std::io::stdout().lock(), text, "");
    }
}

fn write_all(mut out: impl Write, text: &str, end: &str) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    let _ = out.write_all(end.as_bytes());
    let _ = out.flush();
}

impl Style {
    /// The terminal style.
    fn ansi(self) -> Ansi {
        match self {
            Style::Add => AnsiColor::Green.on_default(),
            Style::Change => AnsiColor::Yellow.on_default(),
            Style::Remove => AnsiColor::Red.on_default(),
            Style::Warn => AnsiColor::Yellow.on_default().bold(),
            Style::Bold => Ansi::new().bold(),
            Style::Dim => Ansi::new().dimmed(),
        }
    }
}

/// Whether `anstream` would colour this stream (a terminal, and the environment allows it).
fn colored(stream: &impl anstream::stream::RawStream) -> bool {
    AutoStream::choice(stream) != ColorChoice::Never
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
    let ansi = colored(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_printer_paints_nothing() {
        assert_eq!(Printer::plain().paint(Style::Add, "+"), "+");
    }

    #[test]
    fn colour_printer_paints_with_sgr() {
        let p = Printer {
            color: true,
            quiet: false,
        };
        assert_eq!(p.paint(Style::Add, "+"), "\x1b[32m+\x1b[0m");
        assert_eq!(p.paint(Style::Remove, "-"), "\x1b[31m-\x1b[0m");
        assert_eq!(p.paint(Style::Bold, "b"), "\x1b[1mb\x1b[0m");
    }
}
