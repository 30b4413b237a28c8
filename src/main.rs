//! The `sendguard` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = sendguard::cli::Cli::parse();
    std::process::exit(sendguard::cli::run(cli));
}
