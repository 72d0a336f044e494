//! The `pinetboot` binary: parse arguments, set up output, run, exit with the command's code.

use std::process::ExitCode;

use clap::Parser;
use pinetboot::cli::Cli;
use pinetboot::error::{EXIT_OK, EXIT_USAGE};
use pinetboot::output::{Printer, init_logging};

fn main() -> ExitCode {
    // Folders and files pinetboot creates get exactly the modes it asks for (never
    // world-writable because of an inherited umask).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let printer = Printer::detect(cli.global.quiet);
    match pinetboot::commands::run(&cli, &printer) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", e.render());
            ExitCode::from(e.exit_code())
        }
    }
}
