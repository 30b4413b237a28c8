//! The `sendguard` command line: one module per subcommand, each a thin layer over the library.

pub mod check;
pub mod incident;
pub mod ops;
pub mod quarantine;
pub mod serve;

use clap::{Parser, Subcommand};

/// sendguard: a send-guard for outbound email.
#[derive(Debug, Parser)]
#[command(name = "sendguard", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: SMTP proxy, HTTP proxy and admin API.
    Serve(serve::ServeArgs),
    /// Lint .eml files offline against the policies (exit 0 pass, 1 blocked, 2 error).
    Check(check::CheckArgs),
    /// Pause sending for a scope through the admin API (durable before it answers).
    Pause(ops::PauseArgs),
    /// Resume a paused scope, optionally on a ramp (e.g. --ramp 10/s..500/s/30m).
    Resume(ops::ResumeArgs),
    /// Show policies, pauses, ramps and counters of the running daemon.
    Status(ops::StatusArgs),
    /// Add, remove, check or bulk-import suppressions.
    Suppress(ops::SuppressArgs),
    /// Open, report, export the audience of, annotate and close incidents.
    Incident(incident::IncidentArgs),
    /// List, show, release and drop quarantined messages.
    Quarantine(quarantine::QuarantineArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Check(args) => check::main(args),
        Command::Pause(args) => ops::pause(args),
        Command::Resume(args) => ops::resume(args),
        Command::Status(args) => ops::status(args),
        Command::Suppress(args) => ops::suppress(args),
        Command::Incident(args) => incident::main(args),
        Command::Quarantine(args) => quarantine::main(args),
    }
}

/// Prints a one-line error on stderr in the form every command uses.
pub fn print_error(e: &anyhow::Error) {
    eprintln!("sendguard: {e:#}");
}
