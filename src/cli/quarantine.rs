//! `sendguard quarantine list | show ID | release ID | drop ID` through the admin API.

use clap::{Args, Subcommand};
use http::Method;

use super::incident::{block_on, call, print_json, AdminOpts};

/// Flags of `sendguard quarantine`.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// Admin API options.
    #[command(flatten)]
    pub admin: AdminOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: QuarantineCommand,
}

/// The quarantine subcommands.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List kept messages, newest first.
    List,
    /// Show one message's envelope and findings (`--raw`: the message itself).
    Show {
        /// The message id.
        id: String,
        /// Print the raw message instead.
        #[arg(long)]
        raw: bool,
    },
    /// Re-inject the message to the upstream (recipients suppressed since are skipped).
    Release {
        /// The message id.
        id: String,
    },
    /// Delete the message for good.
    Drop {
        /// The message id.
        id: String,
    },
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("-")
}

fn seg(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// Runs `sendguard quarantine …` and returns the exit code.
pub fn main(args: QuarantineArgs) -> i32 {
    block_on(run(args))
}

async fn run(args: QuarantineArgs) -> anyhow::Result<()> {
    let o = &args.admin;
    match &args.command {
        QuarantineCommand::List => {
            let v = call(o, Method::GET, "/v1/quarantine", None).await?.json()?;
            if o.json {
                return print_json(&v);
            }
            println!(
                "{:<26} {:<22} {:<18} {:>5} {:>8}  WHY",
                "ID", "KEPT", "CAMPAIGN", "RCPTS", "BYTES"
            );
            for e in v.as_array().into_iter().flatten() {
                let why = e
                    .get("refusal")
                    .and_then(|r| r.get("token").or_else(|| r.get("detail")))
                    .and_then(|t| t.as_str())
                    .unwrap_or("-");
                println!(
                    "{:<26} {:<22} {:<18} {:>5} {:>8}  {}",
                    s(e, "id"),
                    s(e, "at"),
                    s(e, "campaign"),
                    e.get("recipients")
                        .and_then(|r| r.as_array())
                        .map_or(0, Vec::len),
                    e.get("size").and_then(|x| x.as_u64()).unwrap_or(0),
                    why
                );
            }
        }
        QuarantineCommand::Show { id, raw } => {
            if *raw {
                let a = call(
                    o,
                    Method::GET,
                    &format!("/v1/quarantine/{}/raw", seg(id)),
                    None,
                )
                .await?;
                print!("{}", String::from_utf8_lossy(&a.body));
            } else {
                print_json(
                    &call(o, Method::GET, &format!("/v1/quarantine/{}", seg(id)), None)
                        .await?
                        .json()?,
                )?;
            }
        }
        QuarantineCommand::Release { id } => {
            let v = call(
                o,
                Method::POST,
                &format!("/v1/quarantine/{}/release", seg(id)),
                None,
            )
            .await?
            .json()?;
            if o.json {
                return print_json(&v);
            }
            println!("released {}", s(&v, "id"));
            for r in v
                .get("recipients")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                println!(
                    "  {:<40} {:<18} {}",
                    s(r, "recipient"),
                    s(r, "outcome"),
                    s(r, "reply")
                );
            }
        }
        QuarantineCommand::Drop { id } => {
            let v = call(
                o,
                Method::DELETE,
                &format!("/v1/quarantine/{}", seg(id)),
                None,
            )
            .await?
            .json()?;
            if o.json {
                return print_json(&v);
            }
            println!("dropped {}", s(&v, "id"));
        }
    }
    Ok(())
}
