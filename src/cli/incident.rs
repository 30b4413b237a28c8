//! `sendguard incident …`: open, report, export the affected audience, annotate and close
//! incidents through the admin API.

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;

/// How admin commands reach the admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminOpts {
    /// Admin API base URL.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8026",
        env = "SENDGUARD_ADMIN",
        global = true
    )]
    pub admin: String,
    /// Bearer token for the admin API.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SENDGUARD_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Flags of `sendguard incident`.
#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// Admin API options.
    #[command(flatten)]
    pub admin: AdminOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: IncidentCommand,
}

/// The incident subcommands.
#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident: pauses the campaign and starts the record.
    Open {
        /// The campaign that went wrong.
        #[arg(long)]
        campaign: String,
        /// What went wrong.
        #[arg(long)]
        reason: String,
        /// Who opens it [default: $USER].
        #[arg(long)]
        actor: Option<String>,
    },
    /// Who got the message, which segments, what was wrong, first and last send.
    Report {
        /// The incident id.
        id: String,
        /// Write a self-contained HTML page (with a chart of sends over time) to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Export the affected recipients (accepted by the upstream, minus suppressed now) as CSV.
    Audience {
        /// The incident id.
        id: String,
        /// Write to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Add a note to the incident's timeline.
    Note {
        /// The incident id.
        id: String,
        /// The note.
        text: String,
        /// Who writes it [default: $USER].
        #[arg(long)]
        actor: Option<String>,
    },
    /// Close the incident (the campaign stays paused until resumed).
    Close {
        /// The incident id.
        id: String,
        /// A closing note.
        #[arg(long)]
        note: Option<String>,
        /// Who closes it [default: $USER].
        #[arg(long)]
        actor: Option<String>,
    },
    /// List incidents, newest first.
    List,
    /// Show one incident with its timeline.
    Show {
        /// The incident id.
        id: String,
    },
}

/// An admin API call's answer.
pub(crate) struct Answer {
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("admin API answered with malformed JSON")
    }
}

/// Calls the admin API; a non-2xx answer becomes an error carrying the API's message.
pub(crate) async fn call(
    opts: &AdminOpts,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Answer> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let base = opts.admin.trim_end_matches('/');
    let url = format!("{base}{path}");
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("cannot parse admin URL {url:?}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(anyhow!("admin URL {base:?} must start with http://"));
    }
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(t) = &opts.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let payload = match body {
        Some(v) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(&v)?)
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(payload))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(120), client.request(req))
        .await
        .map_err(|_| anyhow!("admin API at {base} did not answer within 120s"))?
        .with_context(|| format!("cannot reach the admin API at {base}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("admin API at {base}: answer cut short"))?
        .to_bytes();
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        return Err(match status {
            StatusCode::UNAUTHORIZED => {
                anyhow!("admin API refused the token (set SENDGUARD_ADMIN_TOKEN)")
            }
            _ => anyhow!("{msg} ({status})"),
        });
    }
    Ok(Answer { body })
}

/// Runs a future on a small runtime of its own and turns the result into an exit code.
pub(crate) fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            super::print_error(&anyhow!("cannot start the runtime: {e}"));
            return 1;
        }
    };
    match rt.block_on(f) {
        Ok(()) => 0,
        Err(e) => {
            super::print_error(&e);
            1
        }
    }
}

pub(crate) fn actor(a: &Option<String>) -> String {
    a.clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "admin".into())
}

pub(crate) fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("-")
}

fn print_incident(v: &serde_json::Value) {
    let status = if v.get("closed_at").is_some_and(|c| !c.is_null()) {
        "closed"
    } else {
        "open"
    };
    println!("{}  campaign {}  ({status})", s(v, "id"), s(v, "campaign"));
    println!("reason: {}", s(v, "reason"));
    println!("opened: {} by {}", s(v, "opened_at"), s(v, "opened_by"));
    if let Some(tl) = v.get("timeline").and_then(|t| t.as_array()) {
        for e in tl {
            println!(
                "  {}  {:<7} {:<12} {}",
                s(e, "at"),
                s(e, "kind"),
                s(e, "actor"),
                s(e, "text")
            );
        }
    }
}

fn seg(id: &str) -> String {
    // Ids are INC-…; keep anything else from escaping the path.
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Runs `sendguard incident …` and returns the exit code.
pub fn main(args: IncidentArgs) -> i32 {
    block_on(run(args))
}

async fn run(args: IncidentArgs) -> anyhow::Result<()> {
    let o = &args.admin;
    match &args.command {
        IncidentCommand::Open {
            campaign,
            reason,
            actor: a,
        } => {
            let body =
                serde_json::json!({"campaign": campaign, "reason": reason, "actor": actor(a)});
            let v = call(o, Method::POST, "/v1/incidents", Some(body))
                .await?
                .json()?;
            if o.json {
                return print_json(&v);
            }
            println!(
                "opened {}: campaign {} is paused",
                s(&v, "id"),
                s(&v, "campaign")
            );
        }
        IncidentCommand::Report { id, html } => {
            let id = seg(id);
            if let Some(file) = html {
                let a = call(
                    o,
                    Method::GET,
                    &format!("/v1/incidents/{id}/report?format=html"),
                    None,
                )
                .await?;
                std::fs::write(file, &a.body)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                println!("wrote {}", file.display());
            } else if o.json {
                print_json(
                    &call(o, Method::GET, &format!("/v1/incidents/{id}/report"), None)
                        .await?
                        .json()?,
                )?;
            } else {
                let a = call(
                    o,
                    Method::GET,
                    &format!("/v1/incidents/{id}/report?format=text"),
                    None,
                )
                .await?;
                print!("{}", String::from_utf8_lossy(&a.body));
            }
        }
        IncidentCommand::Audience { id, out } => {
            let a = call(
                o,
                Method::GET,
                &format!("/v1/incidents/{}/audience", seg(id)),
                None,
            )
            .await?;
            match out {
                Some(file) => {
                    std::fs::write(file, &a.body)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    let n = a
                        .body
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count()
                        .saturating_sub(1);
                    eprintln!("wrote {n} recipients to {}", file.display());
                }
                None => print!("{}", String::from_utf8_lossy(&a.body)),
            }
        }
        IncidentCommand::Note { id, text, actor: a } => {
            let body = serde_json::json!({"text": text, "actor": actor(a)});
            let v = call(
                o,
                Method::POST,
                &format!("/v1/incidents/{}/notes", seg(id)),
                Some(body),
            )
            .await?
            .json()?;
            if o.json {
                return print_json(&v);
            }
            println!("noted on {}", s(&v, "id"));
        }
        IncidentCommand::Close { id, note, actor: a } => {
            let body = serde_json::json!({"note": note, "actor": actor(a)});
            let v = call(
                o,
                Method::POST,
                &format!("/v1/incidents/{}/close", seg(id)),
                Some(body),
            )
            .await?
            .json()?;
            if o.json {
                return print_json(&v);
            }
            println!(
                "closed {} (campaign {} stays paused until resumed)",
                s(&v, "id"),
                s(&v, "campaign")
            );
        }
        IncidentCommand::List => {
            let v = call(o, Method::GET, "/v1/incidents", None).await?.json()?;
            if o.json {
                return print_json(&v);
            }
            println!(
                "{:<18} {:<24} {:<7} {:<22} REASON",
                "ID", "CAMPAIGN", "STATUS", "OPENED"
            );
            for i in v.as_array().into_iter().flatten() {
                let status = if i.get("closed_at").is_some_and(|c| !c.is_null()) {
                    "closed"
                } else {
                    "open"
                };
                println!(
                    "{:<18} {:<24} {:<7} {:<22} {}",
                    s(i, "id"),
                    s(i, "campaign"),
                    status,
                    s(i, "opened_at"),
                    s(i, "reason")
                );
            }
        }
        IncidentCommand::Show { id } => {
            let v = call(o, Method::GET, &format!("/v1/incidents/{}", seg(id)), None)
                .await?
                .json()?;
            if o.json {
                return print_json(&v);
            }
            print_incident(&v);
        }
    }
    Ok(())
}
