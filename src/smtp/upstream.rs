//! Where accepted mail goes: an SMTP upstream (plain, STARTTLS or implicit TLS, with optional
//! AUTH PLAIN) or a local maildir.

use bytes::BytesMut;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, Extensions, Reply};
use super::stream::MaybeTls;

/// How the upstream's connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (`smtp://`).
    None,
    /// STARTTLS, required (`smtp+starttls://`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// A parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// An SMTP server.
    Smtp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
        /// TLS mode.
        tls: TlsMode,
    },
    /// A maildir: each accepted message becomes a file in `PATH/new`.
    Maildir(PathBuf),
}

/// An upstream URL that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse upstream {input:?}: {why}")]
pub struct TargetParseError {
    input: String,
    why: &'static str,
}

impl std::str::FromStr for UpstreamTarget {
    type Err = TargetParseError;

    /// Parses `smtp://HOST:PORT`, `smtp+starttls://HOST:PORT`, `smtps://HOST:PORT` (ports
    /// default to 25, 587 and 465) or `maildir:PATH`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| TargetParseError {
            input: s.to_string(),
            why,
        };
        if let Some(path) = s.strip_prefix("maildir:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(err("maildir: needs a path"));
            }
            return Ok(UpstreamTarget::Maildir(PathBuf::from(path)));
        }
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err("expected smtp://, smtp+starttls://, smtps:// or maildir:"))?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => (TlsMode::None, 25),
            "smtp+starttls" => (TlsMode::StartTls, 587),
            "smtps" => (TlsMode::Implicit, 465),
            _ => {
                return Err(err(
                    "expected smtp://, smtp+starttls://, smtps:// or maildir:",
                ))
            }
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return Err(err("expected HOST:PORT after the scheme"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed [ in host"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().map_err(|_| err("bad port"))?),
                None if after.is_empty() => (h, default_port),
                None => return Err(err("bad port")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| err("bad port"))?),
                None => (rest, default_port),
            }
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        Ok(UpstreamTarget::Smtp {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// Why the upstream failed. Every variant is the upstream's side: the client gets `451 4.4.x`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// No reply within the time allowed.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection closed.
    #[error("connection closed by the upstream")]
    Closed,
    /// An I/O error on the connection.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The upstream's bytes are not SMTP.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The upstream refused the greeting, EHLO, STARTTLS or AUTH.
    #[error("{stage} refused: {code} {text}")]
    Refused {
        /// What was refused.
        stage: &'static str,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
    /// TLS failed.
    #[error("tls: {0}")]
    Tls(String),
}

/// Settings for connecting upstream, built once from the configuration.
pub(crate) struct UpstreamSettings {
    pub(crate) hostname: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) reply_timeout: Duration,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) auth: Option<(String, String)>,
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// One connection to an SMTP upstream, ready for MAIL after [`UpstreamConn::connect`].
pub(crate) struct UpstreamConn {
    stream: MaybeTls<TcpStream, ClientTls>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    ext: Extensions,
    timeout: Duration,
}

impl UpstreamConn {
    /// Connects, reads the greeting, says EHLO, upgrades to TLS and authenticates as configured.
    pub(crate) async fn connect(
        host: &str,
        port: u16,
        mode: TlsMode,
        settings: &UpstreamSettings,
    ) -> Result<UpstreamConn, UpstreamError> {
        let addr = format!("{host}:{port}");
        let deadline = settings.connect_timeout;
        let fut = Self::connect_inner(host, port, mode, settings, addr);
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(deadline)),
        }
    }

    async fn connect_inner(
        host: &str,
        port: u16,
        mode: TlsMode,
        settings: &UpstreamSettings,
        addr: String,
    ) -> Result<UpstreamConn, UpstreamError> {
        let tcp =
            TcpStream::connect((host, port))
                .await
                .map_err(|source| UpstreamError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
        let _ = tcp.set_nodelay(true);
        let stream = if mode == TlsMode::Implicit {
            MaybeTls::Tls(Box::new(tls_connect(tcp, host, settings).await?))
        } else {
            MaybeTls::Plain(tcp)
        };
        let mut conn = UpstreamConn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
            ext: Extensions::default(),
            timeout: settings.reply_timeout,
        };
        let greeting = conn.read_reply().await?;
        if greeting.code != 220 {
            return Err(refused("greeting", &greeting));
        }
        conn.ehlo(&settings.hostname).await?;
        if mode == TlsMode::StartTls {
            if !conn.ext.starttls {
                return Err(UpstreamError::Tls(
                    "upstream does not offer STARTTLS".into(),
                ));
            }
            let r = conn.command(b"STARTTLS\r\n").await?;
            if r.code != 220 {
                return Err(refused("STARTTLS", &r));
            }
            let MaybeTls::Plain(tcp) = std::mem::replace(&mut conn.stream, MaybeTls::Closed) else {
                return Err(UpstreamError::Tls("stream already upgraded".into()));
            };
            conn.rbuf.clear();
            conn.stream = MaybeTls::Tls(Box::new(tls_connect(tcp, host, settings).await?));
            conn.ehlo(&settings.hostname).await?;
        }
        if let Some((user, password)) = &settings.auth {
            if !conn.stream.is_tls() && !is_loopback(host) {
                return Err(UpstreamError::Tls(
                    "refusing to send credentials without TLS".into(),
                ));
            }
            let token = codec::base64_encode(format!("\0{user}\0{password}").as_bytes());
            let r = conn
                .command(format!("AUTH PLAIN {token}\r\n").as_bytes())
                .await?;
            if r.code != 235 {
                return Err(refused("AUTH", &r));
            }
        }
        Ok(conn)
    }

    async fn ehlo(&mut self, hostname: &str) -> Result<(), UpstreamError> {
        let r = self
            .command(format!("EHLO {hostname}\r\n").as_bytes())
            .await?;
        if r.is_positive() {
            self.ext = Extensions::from_ehlo(&r);
            return Ok(());
        }
        let r = self
            .command(format!("HELO {hostname}\r\n").as_bytes())
            .await?;
        if !r.is_positive() {
            return Err(refused("HELO", &r));
        }
        self.ext = Extensions::default();
        Ok(())
    }

    /// Whether the upstream accepts pipelined commands.
    pub(crate) fn pipelining(&self) -> bool {
        self.ext.pipelining
    }

    /// Queues a command line (CRLF included) without sending it.
    pub(crate) fn queue(&mut self, line: &[u8]) {
        self.wbuf.extend_from_slice(line);
    }

    /// The write buffer, to append message data to.
    pub(crate) fn wbuf(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Sends what is queued.
    pub(crate) async fn flush(&mut self) -> Result<(), UpstreamError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let t = self.timeout;
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(t, write).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(UpstreamError::Io(e)),
            Err(_) => Err(UpstreamError::Timeout(t)),
        }
    }

    /// Sends one command and waits for its reply.
    pub(crate) async fn command(&mut self, line: &[u8]) -> Result<Reply, UpstreamError> {
        self.queue(line);
        self.flush().await?;
        self.read_reply().await
    }

    /// Reads the next reply (within the reply timeout).
    pub(crate) async fn read_reply(&mut self) -> Result<Reply, UpstreamError> {
        let t = self.timeout;
        self.read_reply_within(t).await
    }

    /// Reads the next reply within `limit`.
    pub(crate) async fn read_reply_within(
        &mut self,
        limit: Duration,
    ) -> Result<Reply, UpstreamError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match codec::parse_reply(&self.rbuf) {
                Ok(Some((reply, used))) => {
                    let _ = self.rbuf.split_to(used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
            }
            self.rbuf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) => return Err(UpstreamError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(UpstreamError::Io(e)),
                Err(_) => return Err(UpstreamError::Timeout(limit)),
            }
        }
    }

    /// Whether the idle connection still looks usable: nothing to read (no `421`, no EOF).
    pub(crate) fn looks_alive(&mut self) -> bool {
        use futures_util::FutureExt as _;
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 64];
        self.stream.read(&mut probe).now_or_never().is_none()
    }

    /// Says QUIT without waiting for the answer.
    pub(crate) async fn quit(mut self) {
        self.queue(b"QUIT\r\n");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.flush()).await;
    }
}

fn refused(stage: &'static str, r: &Reply) -> UpstreamError {
    UpstreamError::Refused {
        stage,
        code: r.code,
        text: r.text(),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

async fn tls_connect(
    tcp: TcpStream,
    host: &str,
    settings: &UpstreamSettings,
) -> Result<ClientTls, UpstreamError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| UpstreamError::Tls(format!("bad server name {host:?}: {e}")))?;
    tokio_rustls::TlsConnector::from(settings.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls(e.to_string()))
}

/// Writes accepted messages into a maildir (`tmp/`, then renamed into `new/`).
#[derive(Debug)]
pub(crate) struct Maildir {
    root: PathBuf,
    host: String,
    counter: AtomicU64,
}

impl Maildir {
    /// Creates `tmp`, `new` and `cur` under `root` when missing.
    pub(crate) fn open(root: &Path, host: &str) -> std::io::Result<Maildir> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let host = host.replace(['/', ':'], "_");
        Ok(Maildir {
            root: root.to_path_buf(),
            host,
            counter: AtomicU64::new(0),
        })
    }

    /// Writes one message atomically and durably; returns its file name.
    pub(crate) fn deliver(&self, message: &[u8]) -> std::io::Result<String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            self.host
        );
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(message)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &new)?;
            if let Ok(dir) = std::fs::File::open(self.root.join("new")) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = |s: &str| s.parse::<UpstreamTarget>();
        assert_eq!(
            t("smtp://127.0.0.1:2526").unwrap(),
            UpstreamTarget::Smtp {
                host: "127.0.0.1".into(),
                port: 2526,
                tls: TlsMode::None
            }
        );
        assert_eq!(
            t("smtp+starttls://mx.test").unwrap(),
            UpstreamTarget::Smtp {
                host: "mx.test".into(),
                port: 587,
                tls: TlsMode::StartTls
            }
        );
        assert_eq!(
            t("smtps://[::1]:4650").unwrap(),
            UpstreamTarget::Smtp {
                host: "::1".into(),
                port: 4650,
                tls: TlsMode::Implicit
            }
        );
        assert_eq!(
            t("maildir:./outbox").unwrap(),
            UpstreamTarget::Maildir("./outbox".into())
        );
        for bad in [
            "ftp://x",
            "smtp://",
            "smtp://h:99999",
            "maildir:",
            "h:25",
            "smtp://u@h:25",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maildir_writes_exact_bytes() {
        let d = tempfile::tempdir().unwrap();
        let m = Maildir::open(&d.path().join("box"), "h").unwrap();
        let name = m.deliver(b"A: b\r\n\r\n\xc3\xa4\r\n").unwrap();
        let got = std::fs::read(d.path().join("box/new").join(name)).unwrap();
        assert_eq!(got, b"A: b\r\n\r\n\xc3\xa4\r\n");
        assert_eq!(
            std::fs::read_dir(d.path().join("box/tmp")).unwrap().count(),
            0
        );
    }
}
