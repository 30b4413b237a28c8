//! `sendguard check`: the offline linter for rendered messages (`.eml` files).
//!
//! Exit codes: 0 when every message passes, 1 when at least one is blocked, 2 on a usage or input
//! error. With `--json`, one JSON object per file, one per line.

use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

use crate::model::{Envelope, Finding, Message};
use crate::{Guard, GuardConfig};

/// Flags of `sendguard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policies directory [default: ./policies when it exists, else the built-in defaults].
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Print one JSON object per file instead of a report.
    #[arg(long)]
    pub json: bool,
    /// The messages to check (RFC 5322 files, as sent).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// One file's result, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct FileResult {
    /// The file as given.
    pub file: String,
    /// `pass` or `block`.
    pub verdict: &'static str,
    /// Every finding, including those of rules in shadow mode.
    pub findings: Vec<JsonFinding>,
}

/// A finding as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct JsonFinding {
    /// The rule.
    pub rule: String,
    /// Where.
    pub location: String,
    /// The token as the recipient would see it.
    pub token: String,
    /// A sentence for humans.
    pub detail: String,
}

impl From<&Finding> for JsonFinding {
    fn from(f: &Finding) -> Self {
        JsonFinding {
            rule: f.rule.clone(),
            location: f.location.to_string(),
            token: f.token.clone(),
            detail: f.detail.clone(),
        }
    }
}

/// Runs the check and returns the exit code.
pub fn main(args: CheckArgs) -> i32 {
    let policies = args.policies.clone().or_else(|| {
        let p = PathBuf::from("policies");
        p.is_dir().then_some(p)
    });
    let guard = match Guard::open(GuardConfig {
        policies_dir: policies,
        state_dir: None,
    }) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sendguard: {e}");
            return 2;
        }
    };
    let mut blocked = false;
    let mut input_error = false;
    for path in &args.files {
        let raw = match std::fs::read(path) {
            Ok(r) if r.is_empty() => {
                eprintln!("sendguard: {}: empty file, not a message", path.display());
                input_error = true;
                continue;
            }
            Ok(r) => r,
            Err(e) => {
                eprintln!("sendguard: cannot read {}: {e}", path.display());
                input_error = true;
                continue;
            }
        };
        let result = check_one(&guard, path.display().to_string(), raw);
        blocked |= result.verdict == "block";
        if args.json {
            match serde_json::to_string(&result) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("sendguard: cannot encode result: {e}");
                    input_error = true;
                }
            }
        } else {
            print_report(&result);
        }
    }
    if input_error {
        2
    } else if blocked {
        1
    } else {
        0
    }
}

/// Checks one message with an envelope taken from its headers (From, To, Cc).
pub fn check_one(guard: &Guard, file: String, raw: Vec<u8>) -> FileResult {
    let msg = Message::new(raw);
    let mut env = envelope_from_headers(&msg);
    let verdict = guard.check_message(&mut env, &msg);
    FileResult {
        file,
        verdict: if verdict.is_pass() { "pass" } else { "block" },
        findings: verdict
            .findings
            .iter()
            .map(JsonFinding::from)
            .chain(verdict.recipients.iter().filter_map(|r| {
                r.refusal.as_ref().map(|refusal| JsonFinding {
                    rule: refusal.kind().to_string(),
                    location: "envelope".into(),
                    token: r.recipient.clone(),
                    detail: refusal.to_string(),
                })
            }))
            .collect(),
    }
}

fn envelope_from_headers(msg: &Message) -> Envelope {
    let mut env = Envelope::default();
    let Some(parsed) = msg.parse() else {
        return env;
    };
    let first = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|addr| addr.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    env.sender = first(parsed.from()).into_iter().next().unwrap_or_default();
    env.recipients = first(parsed.to());
    env.recipients.extend(first(parsed.cc()));
    env
}

fn print_report(r: &FileResult) {
    println!("{}: {}", r.file, r.verdict.to_uppercase());
    for f in &r.findings {
        println!(
            "  {:<32} {:<10} {:<24} {}",
            f.rule, f.location, f.token, f.detail
        );
    }
}
