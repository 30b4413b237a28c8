//! One client dialogue, generic over the stream so tests drive it in memory.
//!
//! Replies are written to a buffer and flushed when the client's input holds no further
//! complete command (PIPELINING). Relayed MAIL and RCPT commands are queued to the upstream and
//! their replies read in order ("settled") before any reply that must follow them — at the
//! latest when the client's input runs dry, so pipelined clients get one round trip to the
//! upstream per batch. Without PIPELINING at the upstream every relayed command is settled at
//! once.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{self, CommandDecoder, DataScanner, Decoded, Reply};
use super::config::BareLineEnding;
use super::reply::SmtpReply;
use super::server::{ServiceInner, Target};
use super::stream::MaybeTls;
use super::upstream::{UpstreamConn, UpstreamError};
use crate::model::{Disposition, Envelope, Message, Refusal};

const FRONT: &str = "smtp";
/// Errors (bad commands, failed AUTH) after which the session is closed.
const MAX_ERRORS: u32 = 20;

type ServerTls<S> = tokio_rustls::server::TlsStream<S>;

/// A command with owned arguments (the input buffer moves on before it is handled).
enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        address: String,
        size: usize,
        flags: u64,
    },
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth {
        mechanism: u64,
        initial: String,
    },
    NotImplemented,
}

impl Command {
    fn from_request(r: smtp_proto::Request<std::borrow::Cow<'_, str>>) -> Command {
        use smtp_proto::Request as R;
        match r {
            R::Ehlo { host } => Command::Ehlo(host.into_owned()),
            R::Helo { host } => Command::Helo(host.into_owned()),
            R::Mail { from } => Command::Mail {
                address: from.address.into_owned(),
                size: from.size,
                flags: from.flags,
            },
            R::Rcpt { to } => Command::Rcpt(to.address.into_owned()),
            R::Data => Command::Data,
            R::Rset => Command::Rset,
            R::Noop { .. } => Command::Noop,
            R::Quit => Command::Quit,
            R::Vrfy { .. } => Command::Vrfy,
            R::Help { .. } => Command::Help,
            R::StartTls => Command::StartTls,
            R::Auth {
                mechanism,
                initial_response,
            } => Command::Auth {
                mechanism,
                initial: initial_response.into_owned(),
            },
            _ => Command::NotImplemented,
        }
    }
}

/// A relayed command whose upstream reply is still to be read.
enum Pending {
    Mail,
    Rcpt(String),
    Rset,
}

/// Recipients of one transaction, counted by outcome.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    suppressed: u32,
    paused: u32,
    refused_upstream: u32,
    other: u32,
}

/// The mail transaction in progress.
struct Tx {
    env: Envelope,
    started: Instant,
    /// MAIL was sent upstream: the upstream holds a transaction to reset on abort.
    upstream_open: bool,
    /// The upstream failed during the transaction: everything up to RSET gets `451 4.4.2`.
    broken: Option<String>,
    /// Recipients accepted or in flight.
    in_flight: usize,
    counts: Counts,
    upstream_code: u16,
    /// Recipients refused at RCPT (suppressed, paused), written to the ledger at end of data
    /// once the campaign is known from the headers.
    refused_at_rcpt: Vec<(String, Refusal)>,
}

/// How a transaction ended, for the log line.
struct Outcome<'a> {
    verdict: &'a str,
    refusal: &'a str,
    size: usize,
    code: u16,
}

/// One SMTP session with a client.
pub struct Session<S> {
    svc: Arc<ServiceInner>,
    stream: MaybeTls<S, ServerTls<S>>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    decoder: CommandDecoder,
    id: String,
    peer: Option<SocketAddr>,
    shutdown: CancellationToken,
    helo: Option<String>,
    auth_user: Option<String>,
    tx: Option<Tx>,
    upstream: Option<UpstreamConn>,
    pending: VecDeque<Pending>,
    errors: u32,
    message: Vec<u8>,
    transactions: u64,
}

/// Why a session ended early.
#[derive(Debug)]
enum End {
    /// The client closed, timed out (already told) or failed.
    Client,
    /// Orderly close (QUIT, shutdown, too many errors).
    Done,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Client
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// A session on `stream` for `service`; `shutdown` asks it to finish its transaction and
    /// close with `421 4.3.2`.
    pub fn new(
        service: &super::SmtpService,
        stream: S,
        peer: Option<SocketAddr>,
        shutdown: CancellationToken,
    ) -> Session<S> {
        let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        Session {
            svc: service.inner.clone(),
            stream: MaybeTls::Plain(stream),
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(1024),
            decoder: CommandDecoder::new(),
            id,
            peer,
            shutdown,
            helo: None,
            auth_user: None,
            tx: None,
            upstream: None,
            pending: VecDeque::new(),
            errors: 0,
            message: Vec::new(),
            transactions: 0,
        }
    }

    /// The session id (in logs and the optional trace header).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs the dialogue to its end. Errors are logged, never returned: one client's trouble
    /// is not the daemon's.
    pub async fn run(mut self) {
        let metrics = self.svc.guard.metrics().clone();
        metrics.connection(FRONT, 1);
        let started = Instant::now();
        let end = self.dialogue().await;
        // Reset the upstream's side of an unfinished transaction and read what is in flight,
        // so the connection goes back to the pool clean.
        self.abort_tx().await;
        if self.upstream.is_some() && !self.pending.is_empty() {
            self.settle().await;
        }
        if let Some(up) = self.upstream.take() {
            // A clean connection (no transaction, nothing in flight) serves the next session.
            if let Err(up) = self.svc.checkin(up) {
                up.quit().await;
            }
        }
        if self.stream.is_tls() {
            // TLS ends with close_notify; plain TCP just closes.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        }
        metrics.connection(FRONT, -1);
        tracing::debug!(
            session = %self.id,
            client = ?self.peer,
            transactions = self.transactions,
            duration_ms = started.elapsed().as_millis() as u64,
            end = ?end.err(),
            "smtp session closed"
        );
    }

    async fn dialogue(&mut self) -> Result<(), End> {
        let host = self.svc.hostname.clone();
        if self.shutdown.is_cancelled() {
            self.push(&SmtpReply::shutting_down(&host));
            self.flush().await?;
            return Ok(());
        }
        self.push(&SmtpReply::greeting(&host));
        loop {
            let decoded = self.decoder.decode(&self.rbuf);
            let (command, consumed) = match decoded {
                Decoded::Command {
                    request, consumed, ..
                } => (Ok(Command::from_request(request)), consumed),
                Decoded::Invalid { error, consumed } => (Err(Some(error)), consumed),
                Decoded::TooLong { consumed } => (Err(None), consumed),
                Decoded::Discarded { consumed } => {
                    self.rbuf.advance(consumed);
                    continue;
                }
                Decoded::NeedMoreData => {
                    self.settle().await;
                    self.flush().await?;
                    if self.shutdown.is_cancelled() && self.tx.is_none() {
                        self.push(&SmtpReply::shutting_down(&host));
                        self.flush().await?;
                        return Ok(());
                    }
                    self.read_command_input().await?;
                    continue;
                }
            };
            self.rbuf.advance(consumed);
            match command {
                Ok(c) => self.handle(c).await?,
                Err(error) => {
                    let reply = match error {
                        None => SmtpReply::line_too_long(),
                        Some(e) => invalid_reply(&e),
                    };
                    self.error_reply(reply).await?;
                }
            }
        }
    }

    /// Reads more input while waiting for a command: bounded by the command timeout, and cut
    /// short by a shutdown when no transaction is open.
    async fn read_command_input(&mut self) -> Result<(), End> {
        let limit = self.svc.config.command_timeout;
        let idle = self.tx.is_none();
        self.rbuf.reserve(8 * 1024);
        let read = tokio::time::timeout(limit, self.stream.read_buf(&mut self.rbuf));
        let n = if idle {
            tokio::select! {
                r = read => r,
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        } else {
            read.await
        };
        match n {
            Ok(Ok(0)) => Err(End::Client),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(End::Client),
            Err(_) => {
                let host = self.svc.hostname.clone();
                self.push(&SmtpReply::timeout(&host));
                let _ = self.flush().await;
                Err(End::Client)
            }
        }
    }

    async fn handle(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Ehlo(host) | Command::Helo(host) if host.trim().is_empty() => {
                self.error_reply(SmtpReply::bad_arguments("EHLO/HELO needs a host name"))
                    .await
            }
            Command::Ehlo(host) => {
                self.abort_tx().await;
                let tls_offer = self.svc.tls.is_some() && !self.stream.is_tls();
                let auth_offer = self.auth_offered();
                let reply = SmtpReply::ehlo(
                    &self.svc.hostname,
                    &host,
                    self.svc.config.max_message_size,
                    tls_offer,
                    auth_offer,
                );
                self.helo = Some(host);
                self.reply(reply).await;
                Ok(())
            }
            Command::Helo(host) => {
                self.abort_tx().await;
                self.helo = Some(host);
                let reply = SmtpReply::helo(&self.svc.hostname);
                self.reply(reply).await;
                Ok(())
            }
            Command::Mail {
                address,
                size,
                flags,
            } => {
                self.mail(address, size, flags).await;
                Ok(())
            }
            Command::Rcpt(address) => {
                self.rcpt(address).await;
                Ok(())
            }
            Command::Data => self.data().await,
            Command::Rset => {
                self.abort_tx().await;
                self.reply(SmtpReply::ok()).await;
                Ok(())
            }
            Command::Noop => {
                self.reply(SmtpReply::ok()).await;
                Ok(())
            }
            Command::Vrfy => {
                self.reply(SmtpReply::vrfy()).await;
                Ok(())
            }
            Command::Help => {
                self.reply(SmtpReply::help()).await;
                Ok(())
            }
            Command::Quit => {
                self.abort_tx().await;
                self.reply(SmtpReply::bye()).await;
                self.flush().await?;
                Err(End::Done)
            }
            Command::StartTls => self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::NotImplemented => self.error_reply(SmtpReply::not_implemented()).await,
        }
    }

    // ---- replies ---------------------------------------------------------------------------

    /// Writes a reply that follows every relayed command in flight.
    async fn reply(&mut self, reply: SmtpReply) {
        self.settle().await;
        self.push(&reply);
    }

    fn push(&mut self, reply: &SmtpReply) {
        reply.write_to(&mut self.wbuf);
    }

    async fn error_reply(&mut self, reply: SmtpReply) -> Result<(), End> {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            self.reply(SmtpReply::too_many_errors()).await;
            self.flush().await?;
            return Err(End::Done);
        }
        self.reply(reply).await;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let limit = self.svc.config.command_timeout;
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            _ => Err(End::Client),
        }
    }

    // ---- the upstream ----------------------------------------------------------------------

    /// Reads the upstream's replies to every relayed command in flight and writes the client's
    /// replies for them, in order.
    async fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Some(mut up) = self.upstream.take() else {
            let e = UpstreamError::Closed;
            while let Some(p) = self.pending.pop_front() {
                self.resolve(p, Err(&e));
            }
            return;
        };
        if let Err(e) = up.flush().await {
            while let Some(p) = self.pending.pop_front() {
                self.resolve(p, Err(&e));
            }
            return;
        }
        while let Some(p) = self.pending.pop_front() {
            match up.read_reply().await {
                Ok(r) => {
                    let closing = r.code == 421;
                    self.resolve(p, Ok(&r));
                    if closing {
                        let e = UpstreamError::Closed;
                        while let Some(p) = self.pending.pop_front() {
                            self.resolve(p, Err(&e));
                        }
                        return;
                    }
                }
                Err(e) => {
                    self.resolve(p, Err(&e));
                    while let Some(p) = self.pending.pop_front() {
                        self.resolve(p, Err(&e));
                    }
                    return;
                }
            }
        }
        self.upstream = Some(up);
    }

    fn resolve(&mut self, pending: Pending, result: Result<&Reply, &UpstreamError>) {
        let metrics = self.svc.guard.metrics();
        metrics.upstream_reply(FRONT, result.map(|r| r.code).unwrap_or(0));
        match (pending, result) {
            (Pending::Rset, _) => {}
            (Pending::Mail, Ok(r)) => {
                if let Some(tx) = &mut self.tx {
                    tx.upstream_code = r.code;
                }
                if !r.is_positive() {
                    if let Some(tx) = self.tx.take() {
                        self.log_tx(
                            &tx,
                            &Outcome {
                                verdict: "upstream-refused",
                                refusal: "",
                                size: 0,
                                code: r.code,
                            },
                        );
                    }
                }
                self.push(&SmtpReply::relayed(r));
            }
            (Pending::Mail, Err(e)) => {
                self.tx = None;
                self.push(&SmtpReply::upstream_lost(&e.to_string()));
            }
            (Pending::Rcpt(address), Ok(r)) => {
                if let Some(tx) = &mut self.tx {
                    tx.upstream_code = r.code;
                    if r.is_positive() {
                        tx.env.recipients.push(address);
                    } else {
                        tx.in_flight = tx.in_flight.saturating_sub(1);
                        tx.counts.refused_upstream += 1;
                    }
                }
                self.push(&SmtpReply::relayed(r));
            }
            (Pending::Rcpt(_), Err(e)) => {
                if let Some(tx) = &mut self.tx {
                    tx.in_flight = tx.in_flight.saturating_sub(1);
                    tx.broken = Some(e.to_string());
                }
                self.push(&SmtpReply::upstream_lost(&e.to_string()));
            }
        }
    }

    /// The upstream connection, opened (or re-opened when the idle one has died) as needed.
    async fn ensure_upstream(&mut self) -> Result<(), UpstreamError> {
        let Target::Smtp { host, port, tls } = &self.svc.target else {
            return Ok(());
        };
        if let Some(up) = &mut self.upstream {
            if !self.pending.is_empty() || up.looks_alive() {
                return Ok(());
            }
            self.upstream = None;
        }
        if let Some(conn) = self.svc.checkout() {
            self.upstream = Some(conn);
            return Ok(());
        }
        let conn = UpstreamConn::connect(host, *port, *tls, &self.svc.upstream).await?;
        self.upstream = Some(conn);
        Ok(())
    }

    fn upstream_pipelining(&self) -> bool {
        self.upstream.as_ref().is_some_and(UpstreamConn::pipelining)
    }

    /// Ends the transaction in progress, if any, resetting the upstream's side.
    async fn abort_tx(&mut self) {
        if let Some(tx) = self.tx.take() {
            if tx.broken.is_some() {
                self.upstream = None;
            } else if tx.upstream_open {
                self.reset_upstream();
            }
            self.log_tx(
                &tx,
                &Outcome {
                    verdict: "aborted",
                    refusal: "",
                    size: 0,
                    code: 0,
                },
            );
        }
    }

    /// Queues RSET upstream; its reply is read with the next batch.
    fn reset_upstream(&mut self) {
        if let Some(up) = &mut self.upstream {
            up.queue(b"RSET\r\n");
            self.pending.push_back(Pending::Rset);
        }
    }

    // ---- MAIL, RCPT ------------------------------------------------------------------------

    fn auth_offered(&self) -> bool {
        self.svc
            .auth
            .as_ref()
            .is_some_and(|a| self.stream.is_tls() || a.allow_plaintext)
    }

    async fn mail(&mut self, address: String, size: usize, flags: u64) {
        if self.helo.is_none() {
            let _ = self
                .error_reply(SmtpReply::bad_sequence("send EHLO or HELO first"))
                .await;
            return;
        }
        if self.tx.is_some() {
            let _ = self
                .error_reply(SmtpReply::bad_sequence("nested MAIL command"))
                .await;
            return;
        }
        if self.svc.auth.as_ref().is_some_and(|a| a.required) && self.auth_user.is_none() {
            self.reply(SmtpReply::auth_required()).await;
            return;
        }
        if size > self.svc.config.max_message_size {
            self.reply(SmtpReply::too_large(self.svc.config.max_message_size))
                .await;
            return;
        }
        if address.chars().any(char::is_control) {
            self.reply(SmtpReply::bad_arguments("bad sender address syntax"))
                .await;
            return;
        }
        let env = Envelope {
            sender: address,
            auth_user: self.auth_user.clone(),
            client_ip: self.peer.map(|p| p.ip()),
            ..Envelope::default()
        };
        let mut tx = Tx {
            env,
            started: Instant::now(),
            upstream_open: false,
            broken: None,
            in_flight: 0,
            counts: Counts::default(),
            refused_at_rcpt: Vec::new(),
            upstream_code: 0,
        };
        if let Err(refusal) = self.svc.guard.check_sender(&tx.env) {
            self.log_tx(
                &tx,
                &Outcome {
                    verdict: refusal.disposition().as_str(),
                    refusal: refusal.kind(),
                    size: 0,
                    code: 0,
                },
            );
            self.reply(SmtpReply::from_refusal(&refusal)).await;
            return;
        }
        if matches!(self.svc.target, Target::Maildir(_)) {
            self.tx = Some(tx);
            self.reply(SmtpReply::sender_ok()).await;
            return;
        }
        if !self.pending.is_empty() && self.upstream.is_none() {
            self.settle().await;
        }
        if let Err(e) = self.ensure_upstream().await {
            self.svc.guard.metrics().upstream_reply(FRONT, 0);
            tracing::warn!(session = %self.id, error = %e, "upstream unavailable");
            self.log_tx(
                &tx,
                &Outcome {
                    verdict: "upstream-unavailable",
                    refusal: "",
                    size: 0,
                    code: 0,
                },
            );
            self.reply(SmtpReply::upstream_unavailable(&e.to_string()))
                .await;
            return;
        }
        let mut line = Vec::with_capacity(64 + tx.env.sender.len());
        line.extend_from_slice(b"MAIL FROM:<");
        line.extend_from_slice(tx.env.sender.as_bytes());
        line.push(b'>');
        if size > 0 {
            line.extend_from_slice(format!(" SIZE={size}").as_bytes());
        }
        if flags & smtp_proto::MAIL_BODY_8BITMIME != 0 {
            line.extend_from_slice(b" BODY=8BITMIME");
        } else if flags & smtp_proto::MAIL_BODY_7BIT != 0 {
            line.extend_from_slice(b" BODY=7BIT");
        }
        if flags & smtp_proto::MAIL_SMTPUTF8 != 0 {
            line.extend_from_slice(b" SMTPUTF8");
        }
        line.extend_from_slice(b"\r\n");
        if let Some(up) = &mut self.upstream {
            up.queue(&line);
        }
        self.pending.push_back(Pending::Mail);
        tx.upstream_open = true;
        self.tx = Some(tx);
        if !self.upstream_pipelining() {
            self.settle().await;
        }
    }

    async fn rcpt(&mut self, address: String) {
        let Some(tx) = &mut self.tx else {
            let _ = self
                .error_reply(SmtpReply::bad_sequence("need MAIL before RCPT"))
                .await;
            return;
        };
        if let Some(why) = &tx.broken {
            let r = SmtpReply::upstream_lost(why);
            self.reply(r).await;
            return;
        }
        if tx.in_flight >= self.svc.config.max_recipients {
            self.reply(SmtpReply::too_many_recipients()).await;
            return;
        }
        if address.is_empty() || address.chars().any(char::is_control) {
            self.reply(SmtpReply::bad_arguments("bad recipient address syntax"))
                .await;
            return;
        }
        if let Err(refusal) = self.svc.guard.check_recipient(&tx.env, &address) {
            match &refusal {
                Refusal::Suppressed { .. } => tx.counts.suppressed += 1,
                Refusal::Paused { .. } => tx.counts.paused += 1,
                _ => tx.counts.other += 1,
            }
            self.svc.guard.metrics().observe_recipients(
                FRONT,
                refusal.disposition(),
                refusal.kind(),
                1,
            );
            let reply = SmtpReply::from_refusal(&refusal);
            if tx.refused_at_rcpt.len() < self.svc.config.max_recipients {
                tx.refused_at_rcpt.push((address, refusal));
            }
            self.reply(reply).await;
            return;
        }
        tx.in_flight += 1;
        if matches!(self.svc.target, Target::Maildir(_)) {
            tx.env.recipients.push(address);
            self.reply(SmtpReply::recipient_ok()).await;
            return;
        }
        match &mut self.upstream {
            Some(up) => {
                let mut line = Vec::with_capacity(12 + address.len());
                line.extend_from_slice(b"RCPT TO:<");
                line.extend_from_slice(address.as_bytes());
                line.extend_from_slice(b">\r\n");
                up.queue(&line);
                self.pending.push_back(Pending::Rcpt(address));
                if !self.upstream_pipelining() {
                    self.settle().await;
                }
            }
            None => {
                tx.in_flight -= 1;
                tx.broken = Some("connection closed".into());
                self.reply(SmtpReply::upstream_lost("connection closed"))
                    .await;
            }
        }
    }

    // ---- DATA ------------------------------------------------------------------------------

    async fn data(&mut self) -> Result<(), End> {
        self.settle().await;
        let Some(tx) = &self.tx else {
            return self
                .error_reply(SmtpReply::bad_sequence("need MAIL before DATA"))
                .await;
        };
        if let Some(why) = &tx.broken {
            let r = SmtpReply::upstream_lost(why);
            self.reply(r).await;
            return Ok(());
        }
        if tx.env.recipients.is_empty() {
            self.reply(SmtpReply::no_valid_recipients()).await;
            return Ok(());
        }
        self.push(&SmtpReply::start_data());
        self.flush().await?;
        let mut scanner = DataScanner::new(self.svc.config.max_message_size);
        self.message.clear();
        loop {
            let fed = scanner.feed(&self.rbuf, &mut self.message);
            self.rbuf.advance(fed.consumed);
            if fed.done {
                break;
            }
            self.rbuf.reserve(16 * 1024);
            let limit = self.svc.config.data_timeout;
            match tokio::time::timeout(limit, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(End::Client),
                Err(_) => {
                    let host = self.svc.hostname.clone();
                    self.push(&SmtpReply::timeout(&host));
                    let _ = self.flush().await;
                    return Err(End::Client);
                }
            }
        }
        let end_of_data = Instant::now();
        self.transactions += 1;
        let Some(mut tx) = self.tx.take() else {
            return Ok(());
        };
        let size = scanner.size();
        let refuse = |this: &mut Self, tx: &Tx, reply: SmtpReply, verdict: &str, kind: &str| {
            if tx.upstream_open {
                this.reset_upstream();
            }
            let disposition = if reply.code() >= 500 {
                Disposition::Reject
            } else {
                Disposition::Tempfail
            };
            this.svc.guard.metrics().observe_recipients(
                FRONT,
                disposition,
                kind,
                tx.env.recipients.len() as u64,
            );
            this.log_tx(
                tx,
                &Outcome {
                    verdict,
                    refusal: kind,
                    size,
                    code: 0,
                },
            );
            this.push(&reply);
        };
        if scanner.too_large() {
            let r = SmtpReply::too_large(self.svc.config.max_message_size);
            refuse(self, &tx, r, "reject", "size");
            return Ok(());
        }
        if scanner.saw_bare_line_ending() && self.svc.config.bare_lf == BareLineEnding::Reject {
            refuse(
                self,
                &tx,
                SmtpReply::bare_line_ending(),
                "reject",
                "bare-lf",
            );
            return Ok(());
        }
        let message = Message::new(Bytes::copy_from_slice(&self.message));
        let guard = self.svc.guard.clone();
        let verdict = guard.check_message(&mut tx.env, &message);
        guard.metrics().observe_verdict(FRONT, &verdict);
        if !tx.refused_at_rcpt.is_empty() {
            guard
                .record_refused_recipients(FRONT, &tx.env, &message, &tx.refused_at_rcpt)
                .await;
        }
        if !verdict.is_pass() {
            let reply = match &verdict.refusal {
                Some(r) => SmtpReply::from_refusal(r),
                None => {
                    SmtpReply::policy("policy", "message refused", crate::model::Action::Reject)
                }
            };
            let kind = verdict.refusal.as_ref().map_or("policy", Refusal::kind);
            refuse(self, &tx, reply, verdict.disposition.as_str(), kind);
            guard
                .record(FRONT, &tx.env, Some(&message), &verdict, &[])
                .await;
            return Ok(());
        }
        // A recipient accepted at RCPT but refused now (an apology's audience, a suppression
        // added meanwhile): one DATA reply covers every recipient, so the message is refused.
        if let Some(r) = verdict.recipients.iter().find_map(|r| {
            (r.disposition != Disposition::Pass)
                .then_some(r.refusal.as_ref())
                .flatten()
        }) {
            let mut refused = verdict.clone();
            refused.refuse(r.clone());
            refuse(
                self,
                &tx,
                SmtpReply::from_refusal(r),
                r.disposition().as_str(),
                r.kind(),
            );
            guard
                .record(FRONT, &tx.env, Some(&message), &refused, &[])
                .await;
            return Ok(());
        }
        if let Err(r) = guard.admit(&tx.env) {
            refuse(
                self,
                &tx,
                SmtpReply::from_refusal(&r),
                r.disposition().as_str(),
                r.kind(),
            );
            let mut refused = verdict;
            refused.refuse(r);
            guard
                .record(FRONT, &tx.env, Some(&message), &refused, &[])
                .await;
            return Ok(());
        }
        let trace = self
            .svc
            .config
            .trace_header
            .then(|| format!("X-Sendguard: {}.{}\r\n", self.id, self.transactions));
        let added = end_of_data.elapsed();
        guard.metrics().added_latency(FRONT, added.as_secs_f64());
        let (reply, code) = match &self.svc.target {
            Target::Maildir(maildir) => {
                let maildir = maildir.clone();
                let mut bytes = Vec::with_capacity(self.message.len() + 64);
                if let Some(t) = &trace {
                    bytes.extend_from_slice(t.as_bytes());
                }
                bytes.extend_from_slice(&self.message);
                match tokio::task::spawn_blocking(move || maildir.deliver(&bytes)).await {
                    Ok(Ok(name)) => (SmtpReply::queued(&name), 250),
                    Ok(Err(e)) => {
                        tracing::error!(session = %self.id, error = %e, "cannot write to the maildir");
                        (SmtpReply::local_error("cannot write the message"), 451)
                    }
                    Err(_) => (SmtpReply::local_error("maildir writer failed"), 451),
                }
            }
            Target::Smtp { .. } => self.relay_data(trace.as_deref()).await,
        };
        tx.upstream_code = code;
        // One DATA reply covers every recipient the upstream accepted at RCPT.
        let replies: Vec<(String, u16, String)> = tx
            .env
            .recipients
            .iter()
            .map(|r| (r.clone(), code, reply.text().to_string()))
            .collect();
        guard
            .record(FRONT, &tx.env, Some(&message), &verdict, &replies)
            .await;
        if reply.is_positive() {
            guard.metrics().observe_recipients(
                FRONT,
                Disposition::Pass,
                "",
                tx.env.recipients.len() as u64,
            );
        }
        self.log_tx(
            &tx,
            &Outcome {
                verdict: if reply.is_positive() {
                    "pass"
                } else {
                    "upstream-refused"
                },
                refusal: "",
                size,
                code,
            },
        );
        self.push(&reply);
        Ok(())
    }

    /// Sends DATA and the message upstream; returns the client's reply and the upstream code
    /// (0 when the upstream failed).
    async fn relay_data(&mut self, trace: Option<&str>) -> (SmtpReply, u16) {
        let metrics = self.svc.guard.metrics().clone();
        let data_timeout = self.svc.config.upstream_data_timeout;
        let Some(mut up) = self.upstream.take() else {
            metrics.upstream_reply(FRONT, 0);
            return (SmtpReply::upstream_lost("connection closed"), 0);
        };
        up.queue(b"DATA\r\n");
        let go = match up.flush().await {
            Ok(()) => up.read_reply().await,
            Err(e) => Err(e),
        };
        let r = match go {
            Ok(r) if r.code == 354 => r,
            Ok(r) => {
                metrics.upstream_reply(FRONT, r.code);
                if r.code != 421 {
                    up.queue(b"RSET\r\n");
                    self.pending.push_back(Pending::Rset);
                    self.upstream = Some(up);
                }
                return (SmtpReply::relayed(&r), r.code);
            }
            Err(e) => {
                metrics.upstream_reply(FRONT, 0);
                tracing::warn!(session = %self.id, error = %e, "upstream failed at DATA");
                return (SmtpReply::upstream_lost(&e.to_string()), 0);
            }
        };
        debug_assert_eq!(r.code, 354);
        {
            let wbuf = up.wbuf();
            if let Some(t) = trace {
                wbuf.extend_from_slice(t.as_bytes());
            }
            codec::dot_stuff(&self.message, wbuf);
        }
        let result = match up.flush().await {
            Ok(()) => up.read_reply_within(data_timeout).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                metrics.upstream_reply(FRONT, r.code);
                if r.code != 421 {
                    self.upstream = Some(up);
                }
                (SmtpReply::relayed(&r), r.code)
            }
            Err(e) => {
                metrics.upstream_reply(FRONT, 0);
                tracing::warn!(session = %self.id, error = %e, "upstream failed after the message data");
                (SmtpReply::upstream_lost(&e.to_string()), 0)
            }
        }
    }

    // ---- STARTTLS, AUTH --------------------------------------------------------------------

    async fn starttls(&mut self) -> Result<(), End> {
        let Some(acceptor) = self.svc.tls.clone() else {
            return self.error_reply(SmtpReply::not_implemented()).await;
        };
        if self.stream.is_tls() {
            return self
                .error_reply(SmtpReply::bad_sequence("TLS already active"))
                .await;
        }
        self.abort_tx().await;
        self.reply(SmtpReply::tls_ready()).await;
        self.flush().await?;
        // Whatever the client pipelined after STARTTLS was sent in clear text: drop it.
        self.rbuf.clear();
        self.decoder = CommandDecoder::new();
        let MaybeTls::Plain(plain) = std::mem::replace(&mut self.stream, MaybeTls::Closed) else {
            return Err(End::Client);
        };
        let limit = self.svc.config.command_timeout;
        match tokio::time::timeout(limit, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.stream = MaybeTls::Tls(Box::new(tls));
                self.helo = None;
                self.auth_user = None;
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::info!(session = %self.id, error = %e, "TLS handshake failed");
                Err(End::Client)
            }
            Err(_) => Err(End::Client),
        }
    }

    /// Reads one line for an AUTH exchange.
    async fn auth_line(&mut self) -> Result<Vec<u8>, End> {
        self.flush().await?;
        loop {
            if let Some((line, used)) = codec::take_line(&self.rbuf) {
                let line = line.to_vec();
                self.rbuf.advance(used);
                return Ok(line);
            }
            if self.rbuf.len() > codec::MAX_COMMAND_LINE {
                return Err(End::Client);
            }
            self.read_command_input().await?;
            if self.shutdown.is_cancelled() && self.rbuf.is_empty() {
                return Err(End::Done);
            }
        }
    }

    async fn auth(&mut self, mechanism: u64, initial: String) -> Result<(), End> {
        let Some(auth) = self.svc.auth.clone() else {
            return self.error_reply(SmtpReply::not_implemented()).await;
        };
        if !self.stream.is_tls() && !auth.allow_plaintext {
            return self.error_reply(SmtpReply::encryption_required()).await;
        }
        if self.auth_user.is_some() {
            return self
                .error_reply(SmtpReply::bad_sequence("already authenticated"))
                .await;
        }
        if self.tx.is_some() {
            return self
                .error_reply(SmtpReply::bad_sequence(
                    "AUTH not allowed during a transaction",
                ))
                .await;
        }
        self.settle().await;
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = if initial.is_empty() {
                self.push(&SmtpReply::auth_challenge(""));
                self.auth_line().await?
            } else {
                initial.into_bytes()
            };
            if response == b"*" {
                return self.error_reply(SmtpReply::auth_cancelled()).await;
            }
            codec::base64_decode(&response).and_then(|raw| {
                let mut parts = raw.split(|&b| b == 0);
                let _authz = parts.next()?;
                let user = parts.next()?.to_vec();
                let pass = parts.next()?.to_vec();
                parts.next().is_none().then_some((user, pass))
            })
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            let user = if initial.is_empty() {
                self.push(&SmtpReply::auth_challenge("VXNlcm5hbWU6"));
                self.auth_line().await?
            } else {
                initial.into_bytes()
            };
            if user == b"*" {
                return self.error_reply(SmtpReply::auth_cancelled()).await;
            }
            self.push(&SmtpReply::auth_challenge("UGFzc3dvcmQ6"));
            let pass = self.auth_line().await?;
            if pass == b"*" {
                return self.error_reply(SmtpReply::auth_cancelled()).await;
            }
            codec::base64_decode(&user).zip(codec::base64_decode(&pass))
        } else {
            return self.error_reply(SmtpReply::auth_mechanism()).await;
        };
        let Some((user, pass)) = credentials else {
            return self
                .error_reply(SmtpReply::bad_arguments("cannot decode the credentials"))
                .await;
        };
        if self.svc.check_credentials(&user, &pass) {
            let user = String::from_utf8_lossy(&user).into_owned();
            tracing::info!(session = %self.id, %user, "authenticated");
            self.auth_user = Some(user);
            self.reply(SmtpReply::auth_ok()).await;
            Ok(())
        } else {
            tracing::warn!(session = %self.id, client = ?self.peer, "authentication failed");
            self.error_reply(SmtpReply::auth_failed()).await
        }
    }

    // ---- logging ---------------------------------------------------------------------------

    fn log_tx(&self, tx: &Tx, outcome: &Outcome<'_>) {
        tracing::info!(
            session = %self.id,
            client = %self.peer.map(|p| p.to_string()).unwrap_or_default(),
            sender = %tx.env.sender,
            campaign = tx.env.campaign.as_deref().unwrap_or(""),
            tenant = tx.env.effective_tenant().unwrap_or(""),
            rcpt_accepted = tx.env.recipients.len(),
            rcpt_suppressed = tx.counts.suppressed,
            rcpt_paused = tx.counts.paused,
            rcpt_refused_upstream = tx.counts.refused_upstream,
            rcpt_refused_other = tx.counts.other,
            verdict = outcome.verdict,
            refusal = outcome.refusal,
            upstream_code = if outcome.code != 0 { outcome.code } else { tx.upstream_code },
            size = outcome.size,
            duration_us = tx.started.elapsed().as_micros() as u64,
            "smtp transaction"
        );
    }
}

fn invalid_reply(e: &smtp_proto::Error) -> SmtpReply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => SmtpReply::unrecognized(),
        E::InvalidSenderAddress => SmtpReply::bad_arguments("bad sender address syntax"),
        E::InvalidRecipientAddress => SmtpReply::bad_arguments("bad recipient address syntax"),
        E::SyntaxError { syntax } => SmtpReply::bad_arguments(&format!("syntax: {syntax}")),
        E::InvalidParameter { param } => {
            SmtpReply::bad_arguments(&format!("invalid parameter {param}"))
        }
        E::UnsupportedParameter { param } => SmtpReply::unsupported_parameter(param),
        E::ResponseTooLong => SmtpReply::line_too_long(),
        _ => SmtpReply::unrecognized(),
    }
}
