//! The accept loop: a semaphore caps the connections (`421 4.3.2` beyond it), every session
//! listens to the shutdown token, and shutdown drains the sessions in progress.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{read_password, AuthConfig, SmtpConfig};
use super::reply::SmtpReply;
use super::session::Session;
use super::upstream::{Maildir, TlsMode, UpstreamConn, UpstreamSettings, UpstreamTarget};
use super::SmtpSetupError;
use crate::Guard;

/// Where accepted mail goes, ready to use.
pub(crate) enum Target {
    Smtp {
        host: String,
        port: u16,
        tls: TlsMode,
    },
    Maildir(Arc<Maildir>),
}

/// Everything sessions share.
pub(crate) struct ServiceInner {
    pub(crate) config: SmtpConfig,
    pub(crate) hostname: String,
    pub(crate) guard: Guard,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) auth: Option<AuthConfig>,
    users: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) target: Target,
    pub(crate) upstream: UpstreamSettings,
    /// Idle upstream connections, ready for MAIL, with the time they became idle.
    pool: std::sync::Mutex<Vec<(UpstreamConn, std::time::Instant)>>,
}

/// Idle upstream connections kept for reuse across client sessions.
const POOL_MAX: usize = 64;
/// How long an idle upstream connection is kept (well below the 5 minutes an MTA waits).
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

impl ServiceInner {
    /// An idle upstream connection that still looks alive, if the pool has one.
    pub(crate) fn checkout(&self) -> Option<UpstreamConn> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut conn, since)) = pool.pop() {
            if since.elapsed() < POOL_IDLE && conn.looks_alive() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns an upstream connection with no transaction open to the pool; `false` when the
    /// pool is full (the caller closes it).
    pub(crate) fn checkin(&self, conn: UpstreamConn) -> Result<(), UpstreamConn> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.retain(|(_, since)| since.elapsed() < POOL_IDLE);
        if pool.len() >= POOL_MAX {
            return Err(conn);
        }
        pool.push((conn, std::time::Instant::now()));
        Ok(())
    }

    /// Whether user and password match a configured user (constant time in the contents).
    pub(crate) fn check_credentials(&self, user: &[u8], pass: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let mut ok = subtle::Choice::from(0);
        for (u, p) in &self.users {
            ok |= u.as_slice().ct_eq(user) & p.as_slice().ct_eq(pass);
        }
        ok.into()
    }
}

/// The SMTP front-end, built once from its configuration and the guard; cheap to clone.
#[derive(Clone)]
pub struct SmtpService {
    pub(crate) inner: Arc<ServiceInner>,
}

impl std::fmt::Debug for SmtpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpService")
            .field("listen", &self.inner.config.listen)
            .field("upstream", &self.inner.config.upstream)
            .finish_non_exhaustive()
    }
}

impl SmtpService {
    /// Builds the front-end: parses the upstream, loads certificates and passwords, creates the
    /// maildir.
    ///
    /// # Errors
    /// An invalid setting, an unreadable certificate, key or password file, or a maildir that
    /// cannot be created.
    pub fn new(config: SmtpConfig, guard: Guard) -> Result<SmtpService, SmtpSetupError> {
        config.validate().map_err(SmtpSetupError::Invalid)?;
        let hostname = config.hostname();
        let parsed: UpstreamTarget = config.upstream.parse()?;
        let target = match parsed {
            UpstreamTarget::Smtp { host, port, tls } => Target::Smtp { host, port, tls },
            UpstreamTarget::Maildir(path) => Target::Maildir(Arc::new(
                Maildir::open(&path, &hostname).map_err(|source| SmtpSetupError::Maildir {
                    path: path.display().to_string(),
                    source,
                })?,
            )),
        };
        let tls = match &config.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(super::tls::server_config(
                &files.cert,
                &files.key,
            )?)),
            None => None,
        };
        let mut users = Vec::new();
        if let Some(auth) = &config.auth {
            for u in &auth.users {
                let p = read_password(&u.password, &u.password_file)
                    .map_err(|e| SmtpSetupError::Invalid(format!("auth user {:?}: {e}", u.user)))?;
                users.push((u.user.clone().into_bytes(), p.into_bytes()));
            }
        }
        let upstream_auth = match &config.upstream_auth {
            Some(a) => Some((
                a.user.clone(),
                read_password(&a.password, &a.password_file)
                    .map_err(|e| SmtpSetupError::Invalid(format!("upstream_auth: {e}")))?,
            )),
            None => None,
        };
        let upstream = UpstreamSettings {
            hostname: hostname.clone(),
            connect_timeout: config.upstream_connect_timeout,
            reply_timeout: config.upstream_timeout,
            tls: super::tls::client_config(config.upstream_ca.as_deref())?,
            auth: upstream_auth,
        };
        Ok(SmtpService {
            inner: Arc::new(ServiceInner {
                auth: config.auth.clone(),
                config,
                hostname,
                guard,
                tls,
                users,
                target,
                upstream,
                pool: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SmtpConfig {
        &self.inner.config
    }

    /// Runs one session on `stream` to its end (tests drive it over `tokio::io::duplex`).
    pub async fn serve<S>(&self, stream: S, peer: Option<SocketAddr>, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        Session::new(self, stream, peer, shutdown).run().await;
    }
}

/// Accepts connections on `listener` until `shutdown`, then waits (at most the configured
/// drain timeout) for the sessions in progress: idle sessions are told `421 4.3.2` at once,
/// a session in a transaction finishes it first.
///
/// # Errors
/// None so far: accept errors are logged and retried after a pause.
pub async fn run(
    listener: TcpListener,
    service: SmtpService,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(service.inner.config.max_connections));
    let tracker = TaskTracker::new();
    let host = service.inner.hostname.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, upstream = %service.inner.config.upstream, "smtp front-end ready");
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (mut socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            let reply = SmtpReply::too_many_connections(&host).to_wire();
            tracker.spawn(async move {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let service = service.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            service.serve(socket, Some(peer), shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    let drain = service.inner.config.drain_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            sessions = tracker.len(),
            "smtp sessions still open after the drain timeout; closing them"
        );
    }
    Ok(())
}
