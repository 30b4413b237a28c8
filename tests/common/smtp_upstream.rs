//! A recording SMTP stand-in upstream on tokio: scriptable replies (refuse recipients, 4xx at
//! DATA, close mid-DATA, slow replies, STARTTLS, AUTH) and a record of the exact bytes it
//! received on every connection. Only `CRLF . CRLF` ends its DATA, as in a strict MTA.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the stand-in behaves.
#[derive(Clone, Default)]
pub struct Script {
    /// Recipients refused with `550 5.1.1`.
    pub refuse_rcpt: Vec<String>,
    /// Reply to the DATA command instead of `354` (e.g. `451 4.3.0 try later`).
    pub data_command_reply: Option<String>,
    /// Reply after the message instead of `250 2.0.0 queued`.
    pub final_reply: Option<String>,
    /// Close the connection after the first bytes of message data.
    pub close_mid_data: bool,
    /// Wait this long before every reply.
    pub delay: Duration,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Require AUTH PLAIN with these credentials before MAIL.
    pub auth: Option<(String, String)>,
    /// Do not announce PIPELINING.
    pub no_pipelining: bool,
}

/// One message as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM line as received.
    pub mail_from: String,
    /// RCPT TO addresses it accepted.
    pub rcpts: Vec<String>,
    /// The DATA section on the wire: dot-stuffed, up to and including the CRLF before the dot.
    pub wire: Vec<u8>,
    /// Whether the session was under TLS.
    pub tls: bool,
    /// The user that authenticated, if any.
    pub auth_user: Option<String>,
}

impl Received {
    /// The message with dot-stuffing removed.
    pub fn content(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len());
        let mut at_start = true;
        let mut i = 0;
        while i < self.wire.len() {
            let b = self.wire[i];
            if at_start && b == b'.' {
                i += 1;
                at_start = false;
                continue;
            }
            out.push(b);
            at_start = b == b'\n' && i > 0 && self.wire[i - 1] == b'\r';
            i += 1;
        }
        out
    }
}

/// A running stand-in.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Messages accepted, in order.
    pub messages: Arc<Mutex<Vec<Received>>>,
    /// Raw bytes received, one entry per connection.
    pub raw: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Connections accepted.
    pub connections: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts a stand-in on a free loopback port.
    pub async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (m, r, c) = (messages.clone(), raw.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                *c.lock().unwrap() += 1;
                let idx = {
                    let mut raw = r.lock().unwrap();
                    raw.push(Vec::new());
                    raw.len() - 1
                };
                let conn = Conn {
                    script: script.clone(),
                    messages: m.clone(),
                    raw: r.clone(),
                    idx,
                    auth_user: None,
                };
                tokio::spawn(conn.run(sock));
            }
        });
        Upstream {
            addr,
            messages,
            raw,
            connections,
            task,
        }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Every byte received on every connection, concatenated.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.raw.lock().unwrap().concat()
    }

    /// Waits (bounded) until `n` messages have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.messages.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.received()
    }
}

struct Conn {
    script: Script,
    messages: Arc<Mutex<Vec<Received>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    idx: usize,
    auth_user: Option<String>,
}

enum Next<S> {
    Done,
    StartTls(S, Vec<u8>),
}

struct Io<S> {
    s: S,
    buf: Vec<u8>,
}

impl Conn {
    async fn run(mut self, sock: tokio::net::TcpStream) {
        let mut io = Io {
            s: sock,
            buf: Vec::new(),
        };
        if self.say(&mut io, "220 stand-in ESMTP").await.is_err() {
            return;
        }
        if let Next::StartTls(sock, _) = self.dialogue(io, false).await {
            let Some(cfg) = self.script.tls.clone() else {
                return;
            };
            let Ok(tls) = tokio_rustls::TlsAcceptor::from(cfg).accept(sock).await else {
                return;
            };
            let io = Io {
                s: tls,
                buf: Vec::new(),
            };
            let _ = self.dialogue(io, true).await;
        }
    }

    async fn say<S: AsyncWrite + Unpin>(&self, io: &mut Io<S>, text: &str) -> std::io::Result<()> {
        if !self.script.delay.is_zero() {
            tokio::time::sleep(self.script.delay).await;
        }
        io.s.write_all(format!("{text}\r\n").as_bytes()).await?;
        io.s.flush().await
    }

    async fn fill<S: AsyncRead + Unpin>(&self, io: &mut Io<S>) -> bool {
        let mut chunk = [0u8; 8192];
        match io.s.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                io.buf.extend_from_slice(&chunk[..n]);
                self.raw.lock().unwrap()[self.idx].extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn line<S: AsyncRead + Unpin>(&self, io: &mut Io<S>) -> Option<String> {
        loop {
            if let Some(p) = io.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = io.buf.drain(..=p).collect();
                let s = String::from_utf8_lossy(&line);
                return Some(s.trim_end_matches(['\r', '\n']).to_string());
            }
            if !self.fill(io).await {
                return None;
            }
        }
    }

    async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut io: Io<S>,
        tls: bool,
    ) -> Next<S> {
        let mut mail_from: Option<String> = None;
        let mut rcpts: Vec<String> = Vec::new();
        while let Some(line) = self.line(&mut io).await {
            let upper = line.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                let mut r = String::from("250-stand-in\r\n");
                if !self.script.no_pipelining {
                    r.push_str("250-PIPELINING\r\n");
                }
                if self.script.tls.is_some() && !tls {
                    r.push_str("250-STARTTLS\r\n");
                }
                if self.script.auth.is_some() {
                    r.push_str("250-AUTH PLAIN\r\n");
                }
                r.push_str("250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100000000");
                r
            } else if upper.starts_with("HELO") {
                "250 stand-in".into()
            } else if upper == "STARTTLS" && self.script.tls.is_some() && !tls {
                if self.say(&mut io, "220 2.0.0 go ahead").await.is_err() {
                    return Next::Done;
                }
                return Next::StartTls(io.s, io.buf);
            } else if upper.starts_with("AUTH PLAIN ") {
                let token = &line[11..];
                let decoded = decode_b64(token.trim());
                let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
                match (&self.script.auth, parts.as_slice()) {
                    (Some((u, p)), [_, user, pass])
                        if user == &u.as_bytes() && pass == &p.as_bytes() =>
                    {
                        self.auth_user = Some(u.clone());
                        "235 2.7.0 ok".into()
                    }
                    _ => "535 5.7.8 bad credentials".into(),
                }
            } else if upper.starts_with("MAIL FROM:") {
                if self.script.auth.is_some() && self.auth_user.is_none() {
                    "530 5.7.0 authentication required".into()
                } else {
                    mail_from = Some(line.clone());
                    rcpts.clear();
                    "250 2.1.0 ok".into()
                }
            } else if upper.starts_with("RCPT TO:") {
                let addr = line[8..]
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string();
                if mail_from.is_none() {
                    "503 5.5.1 need MAIL".into()
                } else if self
                    .script
                    .refuse_rcpt
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&addr))
                {
                    format!("550 5.1.1 <{addr}>: no such user")
                } else {
                    rcpts.push(addr);
                    "250 2.1.5 ok".into()
                }
            } else if upper == "DATA" {
                if let Some(r) = &self.script.data_command_reply {
                    r.clone()
                } else if mail_from.is_none() || rcpts.is_empty() {
                    "503 5.5.1 no valid recipients".into()
                } else {
                    if self.say(&mut io, "354 go ahead").await.is_err() {
                        return Next::Done;
                    }
                    // Read the data: only CRLF . CRLF ends it.
                    let mut wire = Vec::new();
                    let mut at_start = true;
                    loop {
                        if io.buf.is_empty() {
                            if self.script.close_mid_data && !wire.is_empty() {
                                return Next::Done;
                            }
                            if !self.fill(&mut io).await {
                                return Next::Done;
                            }
                            if self.script.close_mid_data {
                                return Next::Done;
                            }
                        }
                        if at_start && io.buf.starts_with(b".\r\n") {
                            io.buf.drain(..3);
                            break;
                        }
                        if at_start && (io.buf == b"." || io.buf == b".\r") {
                            if !self.fill(&mut io).await {
                                return Next::Done;
                            }
                            continue;
                        }
                        match io.buf.windows(2).position(|w| w == b"\r\n") {
                            Some(p) => {
                                wire.extend(io.buf.drain(..p + 2));
                                at_start = true;
                            }
                            None => {
                                // Keep a trailing CR: it may start a CRLF.
                                let keep = usize::from(io.buf.last() == Some(&b'\r'));
                                let take = io.buf.len() - keep;
                                if take == 0 {
                                    if !self.fill(&mut io).await {
                                        return Next::Done;
                                    }
                                    continue;
                                }
                                wire.extend(io.buf.drain(..take));
                                at_start = false;
                            }
                        }
                    }
                    self.messages.lock().unwrap().push(Received {
                        mail_from: mail_from.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        wire,
                        tls,
                        auth_user: self.auth_user.clone(),
                    });
                    self.script
                        .final_reply
                        .clone()
                        .unwrap_or_else(|| "250 2.0.0 queued".into())
                }
            } else if upper == "RSET" {
                mail_from = None;
                rcpts.clear();
                "250 2.0.0 ok".into()
            } else if upper == "NOOP" {
                "250 2.0.0 ok".into()
            } else if upper == "QUIT" {
                let _ = self.say(&mut io, "221 2.0.0 bye").await;
                return Next::Done;
            } else {
                "500 5.5.2 unknown command".into()
            };
            if self.say(&mut io, &reply).await.is_err() {
                return Next::Done;
            }
        }
        Next::Done
    }
}

fn decode_b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let Some(v) = T.iter().position(|&t| t == c) else {
            return Vec::new();
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A CA and a server certificate for `127.0.0.1` and `localhost`, as PEM files in `dir`:
/// returns (ca.pem, cert.pem, key.pem) and a rustls server configuration for it.
pub fn make_certs(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<rustls::ServerConfig>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sendguard test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write ca");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    (ca_path, cert_path, key_path, Arc::new(config))
}
