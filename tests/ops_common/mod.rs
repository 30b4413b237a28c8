//! Shared by the kill-switch and ramp tests against the real daemon: an SMTP stand-in upstream
//! that timestamps every step of every transaction, and a raw SMTP client that timestamps the
//! moment it sends the end of each message.
#![allow(dead_code)]

#[path = "../common/smtp_wire.rs"]
mod smtp_wire;

use crate::admin_common::{Api, TOKEN};
use crate::common::{free_port, Daemon};
use smtp_wire::Wire;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One message the stand-in accepted, with the instants of its transaction.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Which upstream connection carried it (0, 1, … in accept order).
    pub conn: usize,
    /// The value of its `X-Seq` header (`u64::MAX` when it had none).
    pub seq: u64,
    /// The value of its `X-Campaign-ID` header.
    pub campaign: String,
    /// Taken just before the stand-in wrote its reply to the last RCPT of the transaction: the
    /// proxy can only decide on the message after this instant.
    pub rcpt_replied: Instant,
    /// When the stand-in read the DATA command.
    pub data_started: Instant,
    /// When the stand-in had read the whole message (before its `250`).
    pub received: Instant,
}

/// A recording SMTP stand-in upstream that answers `250` to everything and timestamps it.
pub struct TimedUpstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Messages accepted, in the order their data was complete.
    pub messages: Arc<Mutex<Vec<Timed>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TimedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TimedUpstream {
    /// Starts one on a free loopback port.
    pub async fn start() -> TimedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        let task = tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve(sock, conn, m.clone()));
                conn += 1;
            }
        });
        TimedUpstream {
            addr,
            messages,
            task,
        }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<Timed> {
        self.messages.lock().unwrap().clone()
    }

    /// How many messages have arrived so far.
    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }
}

fn header(wire: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(wire);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

async fn serve(mut s: TcpStream, conn: usize, messages: Arc<Mutex<Vec<Timed>>>) {
    let mut buf: Vec<u8> = Vec::new();
    if s.write_all(b"220 timed stand-in ESMTP\r\n").await.is_err() {
        return;
    }
    let mut have_mail = false;
    let mut rcpts = 0usize;
    let mut rcpt_replied = Instant::now();
    loop {
        // One command line.
        let line = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = buf.drain(..p + 2).collect();
                break String::from_utf8_lossy(&l[..p]).to_string();
            }
            let mut chunk = [0u8; 16384];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-timed stand-in\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n"
        } else if upper.starts_with("HELO") {
            b"250 timed stand-in\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            have_mail = true;
            rcpts = 0;
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            if have_mail {
                rcpts += 1;
                rcpt_replied = Instant::now();
                b"250 2.1.5 ok\r\n"
            } else {
                b"503 5.5.1 need MAIL\r\n"
            }
        } else if upper == "DATA" {
            if !have_mail || rcpts == 0 {
                b"503 5.5.1 no valid recipients\r\n"
            } else {
                let data_started = Instant::now();
                if s.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                // Only CRLF . CRLF ends the data.
                let wire = loop {
                    let end = if buf.starts_with(b".\r\n") {
                        Some(0)
                    } else {
                        buf.windows(5)
                            .position(|w| w == b"\r\n.\r\n")
                            .map(|p| p + 2)
                    };
                    if let Some(e) = end {
                        let w: Vec<u8> = buf.drain(..e).collect();
                        buf.drain(..3);
                        break w;
                    }
                    let mut chunk = [0u8; 16384];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let received = Instant::now();
                messages.lock().unwrap().push(Timed {
                    conn,
                    seq: header(&wire, "X-Seq")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u64::MAX),
                    campaign: header(&wire, "X-Campaign-ID").unwrap_or_default(),
                    rcpt_replied,
                    data_started,
                    received,
                });
                have_mail = false;
                rcpts = 0;
                b"250 2.0.0 queued\r\n"
            }
        } else if upper == "RSET" {
            have_mail = false;
            rcpts = 0;
            b"250 2.0.0 ok\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 ok\r\n"
        } else if upper == "QUIT" {
            let _ = s.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"500 5.5.2 unknown command\r\n"
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// A raw SMTP client that sends numbered messages and times their replies.
pub struct Client {
    w: Wire,
}

/// The outcome of one message.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The `X-Seq` it carried.
    pub seq: u64,
    /// Taken just before the end of the data (`CRLF . CRLF`) was written: the proxy cannot
    /// have judged the message before this instant.
    pub eod_sent: Instant,
    /// When the final reply had been read.
    pub replied: Instant,
    /// The final reply (to the end of data, or to the first refused command), trimmed.
    pub reply: String,
}

impl Sent {
    /// The reply's code.
    pub fn code(&self) -> &str {
        self.reply.get(..3).unwrap_or("")
    }
}

impl Client {
    /// Connects, reads the greeting and says EHLO.
    pub async fn connect(port: u16) -> Client {
        Client {
            w: Wire::connect_ehlo(port, "client.test").await.0,
        }
    }

    /// Reads one whole (possibly multi-line) reply, trimmed; empty when the connection closed
    /// or nothing came within 20 s.
    pub async fn reply(&mut self) -> String {
        self.w.reply().await
    }

    /// Writes bytes.
    pub async fn send(&mut self, b: &[u8]) {
        self.w.send(b).await;
    }

    /// Sends one message: MAIL, RCPT and DATA pipelined in one write, then the message (which
    /// must not need dot-stuffing and must end with CRLF) and the end of data.
    pub async fn message(&mut self, seq: u64, from: &str, to: &str, message: &[u8]) -> Sent {
        self.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes())
            .await;
        for what in ["MAIL", "RCPT", "DATA"] {
            let r = self.reply().await;
            let ok = if what == "DATA" {
                r.starts_with("354")
            } else {
                r.starts_with("250")
            };
            if !ok {
                let now = Instant::now();
                if what != "DATA" {
                    // The rest of the pipelined commands still get their replies.
                    let _ = self.reply().await;
                    if what == "MAIL" {
                        let _ = self.reply().await;
                    }
                }
                return Sent {
                    seq,
                    eod_sent: now,
                    replied: now,
                    reply: format!("{what}: {r}"),
                };
            }
        }
        self.send(message).await;
        let eod_sent = Instant::now();
        self.send(b".\r\n").await;
        let reply = self.reply().await;
        Sent {
            seq,
            eod_sent,
            replied: Instant::now(),
            reply,
        }
    }

    /// Ends the session (bounded).
    pub async fn quit(self) {
        self.w.quit().await;
    }
}

/// A small campaign message carrying `X-Seq: seq`.
pub fn campaign_message(campaign: &str, seq: u64, subject: &str) -> Vec<u8> {
    format!(
        "From: news@shop.example\r\nTo: reader@example.org\r\nSubject: {subject}\r\n\
         X-Campaign-ID: {campaign}\r\nX-Seq: {seq}\r\n\r\n\
         Hello reader, our spring sale starts now.\r\n"
    )
    .into_bytes()
}

/// `[smtp]` and `[admin]` sections for a daemon relaying to `upstream`.
pub fn config(smtp: u16, admin: u16, upstream: &str) -> String {
    format!(
        "[smtp]\nlisten = \"127.0.0.1:{smtp}\"\nhostname = \"proxy.test\"\nupstream = \"{upstream}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n"
    )
}

/// Starts a [`TimedUpstream`] and a daemon relaying to it with the admin API on its own port
/// (token [`TOKEN`]): the daemon, the upstream, the daemon's SMTP port and an admin API client.
pub async fn start_daemon() -> (Daemon, TimedUpstream, u16, Api) {
    let up = TimedUpstream::start().await;
    let (smtp, admin) = (free_port(), free_port());
    let cfg = config(smtp, admin, &up.url());
    let d = tokio::task::spawn_blocking(move || {
        Daemon::start_with_env(&cfg, &[smtp, admin], &[("SENDGUARD_ADMIN_TOKEN", TOKEN)])
    })
    .await
    .expect("daemon start");
    (d, up, smtp, Api::new(admin))
}

/// Milliseconds, signed, from `from` to `to`.
pub fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1000.0
    } else {
        -((from - to).as_secs_f64() * 1000.0)
    }
}
