//! A raw SMTP client for the tests: writes bytes as given (pipelined, malformed, smuggled) and
//! reads whole replies, every wait bounded.
#![allow(dead_code)]

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    /// Connects (within 10 s) and reads the greeting, which must be a 220.
    pub async fn connect(port: u16) -> Wire {
        let s = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .expect("connect within 10 s")
        .expect("connect");
        let _ = s.set_nodelay(true);
        let mut w = Wire { s, buf: Vec::new() };
        let g = w.reply().await;
        assert!(g.starts_with("220"), "greeting: {g:?}");
        w
    }

    /// Connects and says EHLO as `name`; the EHLO reply, which must be a 250.
    pub async fn connect_ehlo(port: u16, name: &str) -> (Wire, String) {
        let mut w = Wire::connect(port).await;
        w.send(format!("EHLO {name}\r\n").as_bytes()).await;
        let e = w.reply().await;
        assert!(e.starts_with("250"), "EHLO: {e:?}");
        (w, e)
    }

    /// One whole reply (the last line of a multi-line one ends it), trimmed; what was read so
    /// far (usually nothing) when the connection closed or nothing came within 20 s.
    pub async fn reply(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut pos = 0;
            while let Some(p) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + p + 1];
                pos += p + 1;
                if line.len() >= 4 && line[3] == b' ' {
                    let r: Vec<u8> = self.buf.drain(..pos).collect();
                    return String::from_utf8_lossy(&r).trim_end().to_string();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                _ => 0,
            };
            if n == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf))
                    .trim_end()
                    .to_string();
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes bytes.
    pub async fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).await.expect("write to the proxy");
    }

    /// Ends the session, whatever state the connection is in (bounded).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if self.s.write_all(b"QUIT\r\n").await.is_ok() {
                let _ = self.reply().await;
            }
        })
        .await;
    }

    /// Sends a command line and reads its reply, which must start with `want`.
    pub async fn expect(&mut self, line: &str, want: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let r = self.reply().await;
        assert!(r.starts_with(want), "{line:?} -> {r:?}, expected {want}");
        r
    }
}
