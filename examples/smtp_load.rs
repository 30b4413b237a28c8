//! A load tool for the SMTP front-end: many sessions sending messages with many recipients,
//! optionally pipelined, measuring throughput and the time from the end of data sent to the
//! reply received (run it against the upstream directly and through sendguard: the difference
//! of the medians is the latency sendguard adds).
//!
//! ```text
//! cargo run --release --example smtp_load -- --target 127.0.0.1:2525 \
//!     --messages 5000 --sessions 10 --recipients 5 --size 10240 --pipelining
//! ```

use clap::Parser;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
#[command(about = "SMTP load generator: throughput and end-of-data latency")]
struct Args {
    /// Where to send (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:2525")]
    target: String,
    /// Messages in total.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Approximate message size in bytes.
    #[arg(long, default_value_t = 10240)]
    size: usize,
    /// Send MAIL, RCPT and DATA in one write (PIPELINING).
    #[arg(long)]
    pipelining: bool,
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut pos = 0;
            while let Some(p) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + p + 1];
                pos += p + 1;
                if line.len() >= 4 && line[3] != b'-' {
                    let code = std::str::from_utf8(&line[..3])
                        .ok()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    self.buf.drain(..pos);
                    return Ok(code);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn cmd(&mut self, line: &[u8]) -> std::io::Result<u16> {
        self.s.write_all(line).await?;
        self.reply().await
    }
}

fn message(size: usize, n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: News <news@sender.test>\r\nTo: reader@rcpt.test\r\nSubject: Spring offers, issue {n}\r\nX-Campaign-ID: spring-2026\r\nMessage-ID: <{n}@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    let line = b"Dear reader, this is a line of perfectly ordinary newsletter text.   \r\n";
    while m.len() + line.len() < size {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b".\r\n");
    m
}

struct Stats {
    sent: usize,
    failed: usize,
    latencies: Vec<Duration>,
}

async fn session(args: Args, count: usize, id: usize) -> std::io::Result<Stats> {
    let s = TcpStream::connect(&args.target).await?;
    s.set_nodelay(true)?;
    let mut c = Conn { s, buf: Vec::new() };
    c.reply().await?;
    c.cmd(b"EHLO load.test\r\n").await?;
    let mut stats = Stats {
        sent: 0,
        failed: 0,
        latencies: Vec::with_capacity(count),
    };
    let body = message(args.size, id);
    let mut wire = Vec::with_capacity(body.len() + 64);
    sendguard::smtp::codec::dot_stuff(&body, &mut wire);
    for i in 0..count {
        let mut envelope = b"MAIL FROM:<news@sender.test>\r\n".to_vec();
        for r in 0..args.recipients {
            envelope.extend_from_slice(format!("RCPT TO:<r{id}-{i}-{r}@rcpt.test>\r\n").as_bytes());
        }
        envelope.extend_from_slice(b"DATA\r\n");
        let mut go = true;
        if args.pipelining {
            c.s.write_all(&envelope).await?;
            for _ in 0..args.recipients + 1 {
                go &= c.reply().await? < 400;
            }
            go &= c.reply().await? == 354;
        } else {
            for line in envelope.split_inclusive(|&b| b == b'\n') {
                let code = c.cmd(line).await?;
                go &= if line.starts_with(b"DATA") {
                    code == 354
                } else {
                    code < 400
                };
                if !go {
                    break;
                }
            }
        }
        if !go {
            stats.failed += 1;
            if c.cmd(b"RSET\r\n").await? != 250 {
                break;
            }
            continue;
        }
        c.s.write_all(&wire).await?;
        let t = Instant::now();
        let code = c.reply().await?;
        stats.latencies.push(t.elapsed());
        if code == 250 {
            stats.sent += 1;
        } else {
            stats.failed += 1;
        }
    }
    let _ = c.cmd(b"QUIT\r\n").await;
    Ok(stats)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..args.sessions {
        let count = args.messages / args.sessions + usize::from(s < args.messages % args.sessions);
        tasks.push(tokio::spawn(session(args.clone(), count, s)));
    }
    let (mut sent, mut failed, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => {
                sent += s.sent;
                failed += s.failed;
                lat.extend(s.latencies);
            }
            Ok(Err(e)) => eprintln!("session failed: {e}"),
            Err(e) => eprintln!("session panicked: {e}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "target {} sent {sent} failed {failed} in {secs:.2}s: {:.0} msg/s; end-of-data->reply µs p50 {:.0} p90 {:.0} p99 {:.0}",
        args.target,
        sent as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99)
    );
}
