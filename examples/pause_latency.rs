//! Measures how fast a campaign pause takes effect on a running `sendguard serve`: SMTP sessions
//! send one campaign as fast as they can, the campaign is paused through the admin API, and for
//! each round the tool prints how long the pause call took (sent → `200`, the pause being durable
//! by then) and how long after the `200` the first message was refused on the open sessions.
//! The campaign is resumed after every round.
//!
//! The messages are real: point the daemon at a test upstream or the default maildir.
//!
//! ```text
//! SENDGUARD_ADMIN_TOKEN=secret cargo run --release --example pause_latency -- \
//!     --smtp 127.0.0.1:2525 --admin http://127.0.0.1:8026 --rounds 20 --sessions 4
//! ```

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
#[command(about = "Time from a campaign pause call to its effect on open SMTP sessions")]
struct Args {
    /// The SMTP front-end (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:2525")]
    smtp: String,
    /// The admin API.
    #[arg(long, default_value = "http://127.0.0.1:8026")]
    admin: String,
    /// Bearer token for the admin API.
    #[arg(long, env = "SENDGUARD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The campaign to send and pause.
    #[arg(long, default_value = "pause-latency-probe")]
    campaign: String,
    /// Pause/resume rounds.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// How long the campaign flows before each pause, in milliseconds.
    #[arg(long, default_value_t = 200)]
    warmup_ms: u64,
    /// Envelope sender.
    #[arg(long, default_value = "news@sender.test")]
    from: String,
    /// Envelope recipient.
    #[arg(long, default_value = "reader@rcpt.test")]
    to: String,
}

struct Smtp {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Smtp {
    async fn connect(addr: &str) -> std::io::Result<Smtp> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = Smtp { s, buf: Vec::new() };
        c.reply().await?;
        c.s.write_all(b"EHLO pause-latency.test\r\n").await?;
        c.reply().await?;
        Ok(c)
    }

    /// One whole reply, within 30 s.
    async fn reply(&mut self) -> std::io::Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut pos = 0;
            while let Some(p) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + p + 1];
                pos += p + 1;
                if line.len() >= 4 && line[3] != b'-' {
                    let r: Vec<u8> = self.buf.drain(..pos).collect();
                    return Ok(String::from_utf8_lossy(&r).trim_end().to_string());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.s.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))??;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one message; returns the final reply and when the end of data was written.
    async fn message(
        &mut self,
        from: &str,
        to: &str,
        body: &[u8],
    ) -> std::io::Result<(String, Instant)> {
        self.s
            .write_all(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes())
            .await?;
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(self.reply().await?);
        }
        if !replies[2].starts_with("354") {
            let bad = replies
                .into_iter()
                .find(|r| !r.starts_with('2') && !r.starts_with('3'))
                .unwrap_or_default();
            return Ok((bad, Instant::now()));
        }
        self.s.write_all(body).await?;
        let eod = Instant::now();
        self.s.write_all(b".\r\n").await?;
        Ok((self.reply().await?, eod))
    }
}

/// What the sessions saw in one round.
#[derive(Default)]
struct Seen {
    accepted: usize,
    refused: usize,
    /// The first refusal read, and its reply.
    first_refusal: Option<(Instant, String)>,
    /// Replies that were neither `250` nor a pause refusal.
    other: Vec<String>,
}

async fn session(
    args: Arc<Args>,
    seen: Arc<Mutex<Seen>>,
    returned: Arc<Mutex<Option<Instant>>>,
    until: Instant,
) -> std::io::Result<()> {
    let mut c = Smtp::connect(&args.smtp).await?;
    let body = format!(
        "From: {}\r\nTo: {}\r\nSubject: pause latency probe\r\nX-Campaign-ID: {}\r\n\r\n\
         This message measures how fast a pause takes effect.\r\n",
        args.from, args.to, args.campaign
    );
    let mut refused_after = 0;
    while Instant::now() < until && refused_after < 3 {
        let (reply, eod) = c.message(&args.from, &args.to, body.as_bytes()).await?;
        let now = Instant::now();
        let after = returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|r| eod > r);
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        if reply.starts_with("250") {
            s.accepted += 1;
        } else if reply.starts_with("451 4.7.1") {
            s.refused += 1;
            if s.first_refusal.as_ref().is_none_or(|(t, _)| now < *t) {
                s.first_refusal = Some((now, reply));
            }
            if after {
                refused_after += 1;
            }
        } else {
            s.other.push(reply);
            if after {
                refused_after += 1;
            }
        }
    }
    let _ = c.s.write_all(b"QUIT\r\n").await;
    Ok(())
}

struct Admin {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

impl Admin {
    async fn call(&self, method: hyper::Method, path: &str, body: &str) -> anyhow::Result<()> {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base.trim_end_matches('/')))
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("{method} {path}: no answer within 30 s"))??;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != 200 {
            anyhow::bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }
}

fn stats(name: &str, mut v: Vec<f64>) {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (v.first(), v.last()) {
        println!(
            "{name}: min {min:.2} ms, median {:.2} ms, max {max:.2} ms ({} rounds)",
            v[v.len() / 2],
            v.len()
        );
    }
}

fn ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1000.0
    } else {
        -((from - to).as_secs_f64() * 1000.0)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let admin = Admin {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: args.admin.clone(),
        token: args.token.clone(),
    };
    let path = format!("/v1/pauses/campaign/{}", args.campaign);
    let (mut calls, mut effects) = (Vec::new(), Vec::new());
    println!("round  pause call ms  200 → first 451 ms  accepted  refused  other");
    for round in 0..args.rounds {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let returned = Arc::new(Mutex::new(None));
        let until = Instant::now() + Duration::from_secs(30);
        let tasks: Vec<_> = (0..args.sessions)
            .map(|_| tokio::spawn(session(args.clone(), seen.clone(), returned.clone(), until)))
            .collect();
        tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;
        let sent = Instant::now();
        let paused = admin
            .call(
                hyper::Method::PUT,
                &path,
                r#"{"reason": "pause latency probe"}"#,
            )
            .await;
        let back = Instant::now();
        *returned.lock().unwrap_or_else(|e| e.into_inner()) = Some(back);
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("session failed: {e}"),
                Err(e) => eprintln!("session panicked: {e}"),
            }
        }
        paused?;
        admin.call(hyper::Method::DELETE, &path, "").await?;
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let call = ms(sent, back);
        let effect = s
            .first_refusal
            .as_ref()
            .map_or(f64::NAN, |(t, _)| ms(back, *t));
        calls.push(call);
        effects.push(effect);
        println!(
            "{round:>5}  {call:>13.2}  {effect:>18.2}  {:>8}  {:>7}  {:>5}",
            s.accepted,
            s.refused,
            s.other.len()
        );
        if let Some(o) = s.other.first() {
            eprintln!("unexpected reply: {o}");
        }
    }
    stats("pause call (sent → 200)", calls);
    stats(
        "200 → first refusal (negative: refused before the 200 was read)",
        effects,
    );
    Ok(())
}
