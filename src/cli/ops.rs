//! `sendguard pause | resume | status | suppress`: clients of the admin API.
//!
//! Exit codes: `0` done, `1` the request failed (the daemon is unreachable or answered with an
//! error), `2` usage or input error. Errors are one line on stderr; `--json` prints the API's
//! JSON answer instead of a table.

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

use crate::admin::{
    ErrorV1, ImportV1, PauseRequestV1, PauseV1, RampRequestV1, ResumeRequestV1, ResumeV1, StatusV1,
    SuppressionV1, ACTOR_HEADER, TOKEN_ENV,
};

/// How to reach the admin API (shared by every admin command).
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Admin API base URL.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8026",
        global = true
    )]
    pub admin: String,
    /// Admin token (prefer the environment variable: a flag shows in the process list).
    #[arg(long, value_name = "TOKEN", env = TOKEN_ENV, hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Who is acting, recorded in the audit trail next to the token's name [default: $USER].
    #[arg(long, value_name = "NAME", global = true)]
    pub actor: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The scope of a pause or a resume: exactly one of the flags.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// A campaign id.
    #[arg(long, value_name = "ID")]
    pub campaign: Option<String>,
    /// A tenant id.
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
    /// A sender address, or @domain for every sender of a domain.
    #[arg(long, value_name = "ADDR")]
    pub sender: Option<String>,
    /// A recipient domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Everything.
    #[arg(long)]
    pub global: bool,
}

impl ScopeArgs {
    /// The API path of the scope: `/v1/pauses/global` or `/v1/pauses/KIND/ID`.
    fn path(&self) -> String {
        let pick = [
            ("campaign", &self.campaign),
            ("tenant", &self.tenant),
            ("sender", &self.sender),
            ("domain", &self.domain),
        ];
        for (kind, id) in pick {
            if let Some(id) = id {
                return format!("/v1/pauses/{kind}/{}", encode_segment(id));
            }
        }
        "/v1/pauses/global".to_string()
    }
}

/// `sendguard pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// What to pause.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Why (shown in status, the audit trail, alerts and to senders).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Lift the pause by itself after this long: 30s, 10m, 2h, 1d.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The admin API.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sendguard resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// What to resume.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Resume on a ramp: FROM..TO/OVER, e.g. 10/s..500/s/30m.
    #[arg(long, value_name = "FROM..TO/OVER", value_parser = RampRequestV1::parse_cli)]
    pub ramp: Option<RampRequestV1>,
    /// The admin API.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sendguard status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin API.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sendguard suppress`.
#[derive(Debug, Args)]
pub struct SuppressArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SuppressAction,
    /// The admin API.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sendguard suppress add|remove|check|import`.
#[derive(Debug, Subcommand)]
pub enum SuppressAction {
    /// Suppress addresses (or @domain, md5:HEX, sha256:HEX entries).
    Add {
        /// The entries.
        #[arg(required = true, value_name = "ADDR")]
        entries: Vec<String>,
    },
    /// Lift suppressions.
    Remove {
        /// The entries.
        #[arg(required = true, value_name = "ADDR")]
        entries: Vec<String>,
    },
    /// Show whether addresses are suppressed, and by which entry.
    Check {
        /// The addresses.
        #[arg(required = true, value_name = "ADDR")]
        addresses: Vec<String>,
    },
    /// Import a list file (one entry a line, the list-file forms), streamed to the daemon.
    Import {
        /// The file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// A failed command: its exit code and message.
#[derive(Debug)]
struct Failure {
    code: i32,
    error: anyhow::Error,
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn failed(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: e.into(),
    }
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A client of one admin API.
struct AdminClient {
    base: String,
    token: Option<String>,
    actor: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
}

/// An answer: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| failed(anyhow::anyhow!("unexpected answer from the admin API: {e}")))
    }

    fn error_text(&self) -> String {
        serde_json::from_slice::<ErrorV1>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).trim().to_string())
    }

    /// The API's error as a failure.
    fn failure(&self) -> Failure {
        failed(anyhow::anyhow!(
            "{} ({})",
            self.error_text(),
            self.status.as_u16()
        ))
    }
}

impl AdminClient {
    fn new(args: &AdminArgs) -> Result<AdminClient, Failure> {
        let base = args.admin.trim().trim_end_matches('/').to_string();
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| usage(anyhow::anyhow!("--admin {base:?}: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            _ => {
                return Err(usage(anyhow::anyhow!(
                    "--admin {base:?}: expected http://HOST:PORT (the admin API speaks plain HTTP)"
                )))
            }
        }
        let actor = args
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|a| !a.trim().is_empty());
        Ok(AdminClient {
            base,
            token: args.token.clone().filter(|t| !t.trim().is_empty()),
            actor,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        content_type: &str,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method.clone()).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.trim()));
        }
        if let Some(a) = &self.actor {
            req = req.header(ACTOR_HEADER, a.trim());
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                b
            }
            None => Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
        };
        let req = req
            .body(body)
            .map_err(|e| usage(anyhow::anyhow!("cannot build a request for {url}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                failed(anyhow::anyhow!(
                    "cannot reach the admin API at {}: {} (is `sendguard serve` running?)",
                    self.base,
                    root_cause(&e)
                ))
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(anyhow::anyhow!("{method} {url}: answer cut off: {e}")))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            failed(anyhow::anyhow!(
                "{method} {url}: no answer within {}s",
                timeout.as_secs()
            ))
        })?
    }

    async fn json_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<Answer, Failure> {
        let body = match body {
            Some(b) => Some(
                Full::new(Bytes::from(serde_json::to_vec(b).map_err(failed)?))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            None => None,
        };
        self.send(
            method,
            path,
            body,
            "application/json",
            Duration::from_secs(30),
        )
        .await
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Percent-encodes one path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print_json(answer: &Answer) -> Result<(), Failure> {
    let v: serde_json::Value = answer.parse()?;
    println!("{}", serde_json::to_string_pretty(&v).map_err(failed)?);
    Ok(())
}

fn scope_label(scope: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{scope} {id}"),
        None => scope.to_string(),
    }
}

/// Prints rows as aligned columns under a header.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn run_async<F>(f: F) -> i32
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            crate::cli::print_error(&anyhow::anyhow!("cannot start the runtime: {e}"));
            return 1;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => 0,
        Err(f) => {
            crate::cli::print_error(&f.error);
            f.code
        }
    }
}

/// `sendguard pause`: returns the exit code.
pub fn pause(args: PauseArgs) -> i32 {
    run_async(async move {
        let client = AdminClient::new(&args.admin)?;
        let body = PauseRequestV1 {
            reason: args.reason.clone(),
            ttl: args.ttl.clone(),
        };
        let answer = client
            .json_call(Method::PUT, &args.scope.path(), Some(&body))
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.failure());
        }
        if args.admin.json {
            return print_json(&answer);
        }
        let p: PauseV1 = answer.parse()?;
        let until = match &p.expires_at {
            Some(t) => format!(" until {t}"),
            None => " until resumed".to_string(),
        };
        println!(
            "paused {}{until}: {} (by {})",
            scope_label(&p.scope, p.id.as_deref()),
            p.reason,
            p.actor
        );
        Ok(())
    })
}

/// `sendguard resume`: returns the exit code.
pub fn resume(args: ResumeArgs) -> i32 {
    run_async(async move {
        let client = AdminClient::new(&args.admin)?;
        let body = ResumeRequestV1 {
            ramp: args.ramp.clone(),
        };
        let answer = client
            .json_call(Method::DELETE, &args.scope.path(), Some(&body))
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.failure());
        }
        if args.admin.json {
            return print_json(&answer);
        }
        let r: ResumeV1 = answer.parse()?;
        let how = match (&r.ramp, &args.ramp) {
            (Some(ramp), _) => format!(
                " on ramp {} (now {:.1}/s)",
                ramp.spec, ramp.current_per_second
            ),
            (None, Some(asked)) => format!(" on ramp {}", asked.to_spec_string()),
            (None, None) => String::new(),
        };
        println!(
            "resumed {}{how} (paused since {}: {})",
            scope_label(&r.resumed.scope, r.resumed.id.as_deref()),
            r.resumed.created_at,
            r.resumed.reason
        );
        Ok(())
    })
}

/// `sendguard status`: returns the exit code.
pub fn status(args: StatusArgs) -> i32 {
    run_async(async move {
        let client = AdminClient::new(&args.admin)?;
        let answer = client
            .json_call(Method::GET, "/v1/status", None::<&()>)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.failure());
        }
        if args.admin.json {
            return print_json(&answer);
        }
        let s: StatusV1 = answer.parse()?;
        println!("policy generation    {}", s.policy_generation);
        println!("policy files         {}", s.policy_files.join(", "));
        println!(
            "reload error         {}",
            s.reload_error.as_deref().unwrap_or("none")
        );
        println!("suppression entries  {}", s.suppression_entries);
        println!(
            "messages             {} checked, {} refused",
            s.messages_checked, s.messages_refused
        );
        println!();
        if s.pauses.is_empty() {
            println!("no pauses");
        } else {
            let rows: Vec<Vec<String>> = s
                .pauses
                .iter()
                .map(|p| {
                    vec![
                        scope_label(&p.scope, p.id.as_deref()),
                        p.created_at.clone(),
                        p.expires_at.clone().unwrap_or_else(|| "-".into()),
                        p.actor.clone(),
                        p.reason.clone(),
                    ]
                })
                .collect();
            table(&["PAUSED", "SINCE", "EXPIRES", "BY", "REASON"], &rows);
        }
        println!();
        if s.ramps.is_empty() {
            println!("no ramps");
        } else {
            let rows: Vec<Vec<String>> = s
                .ramps
                .iter()
                .map(|r| {
                    vec![
                        scope_label(&r.scope, r.id.as_deref()),
                        r.spec.clone(),
                        format!("{:.1}/s", r.current_per_second),
                    ]
                })
                .collect();
            table(&["RAMPING", "RAMP", "NOW"], &rows);
        }
        Ok(())
    })
}

/// `sendguard suppress`: returns the exit code.
pub fn suppress(args: SuppressArgs) -> i32 {
    run_async(async move {
        let client = AdminClient::new(&args.admin)?;
        match &args.action {
            SuppressAction::Import { file } => import(&client, &args.admin, file).await,
            SuppressAction::Add { entries } => {
                edit(&client, &args.admin, Method::PUT, entries).await
            }
            SuppressAction::Remove { entries } => {
                edit(&client, &args.admin, Method::DELETE, entries).await
            }
            SuppressAction::Check { addresses } => {
                edit(&client, &args.admin, Method::GET, addresses).await
            }
        }
    })
}

async fn edit(
    client: &AdminClient,
    admin: &AdminArgs,
    method: Method,
    entries: &[String],
) -> Result<(), Failure> {
    let mut rows = Vec::new();
    let mut json_out = Vec::new();
    for e in entries {
        let path = format!("/v1/suppressions/{}", encode_segment(e.trim()));
        let answer = client.json_call(method.clone(), &path, None::<&()>).await?;
        let s = match answer.status {
            StatusCode::OK => answer.parse::<SuppressionV1>()?,
            StatusCode::NOT_FOUND if method != Method::PUT => SuppressionV1 {
                address: e.trim().to_string(),
                suppressed: false,
                entry: String::new(),
                list: None,
            },
            _ => {
                let f = answer.failure();
                return Err(failed(anyhow::anyhow!("{}: {:#}", e.trim(), f.error)));
            }
        };
        let state = match (&method, s.suppressed) {
            (&Method::PUT, _) => "added".to_string(),
            (&Method::DELETE, false) if answer.status == StatusCode::OK => "removed".to_string(),
            (&Method::DELETE, false) => "was not suppressed".to_string(),
            (&Method::DELETE, true) => "removed, still suppressed by another entry".to_string(),
            (_, true) => "suppressed".to_string(),
            (_, false) => "not suppressed".to_string(),
        };
        rows.push(vec![
            s.address.clone(),
            state,
            if s.entry.is_empty() {
                "-".into()
            } else {
                s.entry.clone()
            },
            s.list.clone().unwrap_or_else(|| "-".into()),
        ]);
        json_out.push(s);
    }
    if admin.json {
        let text = if json_out.len() == 1 {
            serde_json::to_string_pretty(&json_out[0])
        } else {
            serde_json::to_string_pretty(&json_out)
        };
        println!("{}", text.map_err(failed)?);
    } else {
        table(&["ADDRESS", "STATE", "ENTRY", "LIST"], &rows);
    }
    Ok(())
}

async fn import(
    client: &AdminClient,
    admin: &AdminArgs,
    file: &std::path::Path,
) -> Result<(), Failure> {
    use tokio::io::AsyncReadExt;
    let reader = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))
        .map_err(usage)?;
    let stream = futures_util::stream::unfold(Some(reader), |state| async move {
        let mut r = state?;
        let mut buf = vec![0u8; 256 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), Some(r)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(stream));
    let answer = client
        .send(
            Method::POST,
            "/v1/suppressions",
            Some(body),
            "text/plain; charset=utf-8",
            Duration::from_secs(3600),
        )
        .await?;
    if answer.status != StatusCode::OK {
        return Err(answer.failure());
    }
    if admin.json {
        return print_json(&answer);
    }
    let r: ImportV1 = answer.parse()?;
    println!(
        "imported {} entries from {} ({} malformed lines skipped); {} entries in the index",
        r.imported,
        file.display(),
        r.malformed,
        r.total_entries
    );
    for e in r.first_errors.iter().take(5) {
        println!("  skipped: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("bob+x@example.com"), "bob+x@example.com");
        assert_eq!(encode_segment("spring 2026/a"), "spring%202026%2Fa");
    }

    #[test]
    fn scope_paths() {
        let s = ScopeArgs {
            campaign: None,
            tenant: None,
            sender: Some("@example.com".into()),
            domain: None,
            global: false,
        };
        assert_eq!(s.path(), "/v1/pauses/sender/@example.com");
        let g = ScopeArgs {
            campaign: None,
            tenant: None,
            sender: None,
            domain: None,
            global: true,
        };
        assert_eq!(g.path(), "/v1/pauses/global");
    }
}
