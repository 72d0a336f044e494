//! The `pinetboot` binary: parse arguments, set up output, run, exit with the command's status.

use std::process::ExitCode;

use clap::Parser;
use pinetboot::cli::Cli;
use pinetboot::error::ExitStatus;
use pinetboot::output::{Printer, init_logging};

fn main() -> ExitCode {
    // Folders and files pinetboot creates get exactly the modes it asks for (never
    // world-writable because of an inherited umask).
    pinetboot::host::set_umask(0o022);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version are printed on stdout and succeed; a usage error exits 64.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage
            } else {
                ExitStatus::Success
            }
            .into();
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let printer = Printer::detect(cli.global.quiet);
    match pinetboot::commands::run(&cli, &printer) {
        Ok(status) => status.into(),
        Err(e) => {
            // The one place an error reaches the user: stderr, rendered by its kind.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{}", e.render());
            }
            e.exit_status().into()
        }
    }
}
