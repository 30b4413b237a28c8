//! `sendguard serve`: the daemon.

use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::{Guard, GuardConfig};

/// Flags of `sendguard serve`; each overrides the same setting of the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); without it the built-in defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Policies directory [default: policies].
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// State directory (state database, imported lists) [default: state].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// SMTP listen address [default: 127.0.0.1:2525].
    #[arg(long, value_name = "ADDR")]
    pub smtp_listen: Option<String>,
    /// SMTP upstream: smtp://HOST:PORT, smtps://HOST:PORT, smtp+starttls://HOST:PORT or
    /// maildir:PATH [default: maildir:./outbox].
    #[arg(long, value_name = "URL")]
    pub smtp_upstream: Option<String>,
    /// HTTP proxy listen address [default: 127.0.0.1:8025].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// HTTP upstream base URL (the email service's API).
    #[arg(long, value_name = "URL")]
    pub http_upstream: Option<String>,
    /// HTTP send-API dialect: sendgrid, mailgun, postmark or raw.
    #[arg(long, value_name = "NAME")]
    pub http_dialect: Option<String>,
    /// Admin API listen address [default: 127.0.0.1:8026].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
}

/// Runs the daemon until SIGTERM or SIGINT; returns the exit code.
pub fn main(args: ServeArgs) -> i32 {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            crate::cli::print_error(&e);
            return 2;
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            crate::cli::print_error(&anyhow::anyhow!("cannot start the runtime: {e}"));
            return 1;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sendguard stopped");
            crate::cli::print_error(&e);
            1
        }
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    if let Some(p) = &args.policies {
        config.guard.policies = p.clone();
    }
    if let Some(p) = &args.state_dir {
        config.guard.state_dir = p.clone();
    }
    if let Some(a) = &args.admin_listen {
        config.admin.listen = a.clone();
    }
    if let Some(a) = &args.smtp_listen {
        config.smtp.listen = a.clone();
    }
    if let Some(u) = &args.smtp_upstream {
        config.smtp.upstream = u.clone();
    }
    if let Some(a) = &args.http_listen {
        config.http.listen = a.clone();
    }
    if let Some(u) = &args.http_upstream {
        config.http.upstream = Some(u.clone());
    }
    if let Some(d) = &args.http_dialect {
        config.http.dialect = d.parse()?;
    }
    Ok(config)
}

fn init_logging(config: &ServeConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests embedding the CLI) is harmless: keep the first.
    let _ = if config.log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the guard, starts every configured front-end and runs until a shutdown signal.
///
/// # Errors
/// The guard cannot be opened or a listener cannot be bound.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let guard_config = GuardConfig::new(&config.guard.policies, &config.guard.state_dir);
    let guard = tokio::task::spawn_blocking(move || Guard::open(guard_config))
        .await
        .context("guard start-up panicked")?
        .with_context(|| {
            format!(
                "cannot start with policies {} and state {}",
                config.guard.policies.display(),
                config.guard.state_dir.display()
            )
        })?;
    tracing::info!(
        generation = guard.policy_generation(),
        policies = %config.guard.policies.display(),
        state = %config.guard.state_dir.display(),
        "guard ready"
    );
    let _watcher = if config.guard.watch {
        match guard.watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "policy files are not watched; reload with SIGHUP or the admin API");
                None
            }
        }
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    // The incident workflow: send ledger, incidents, apology gate, monitor, quarantine.
    if config.ledger.enabled {
        let g = guard.clone();
        let ledger = config.ledger.clone();
        let upstream = config.smtp.upstream.clone();
        let ops = tokio::task::spawn_blocking(move || {
            crate::guard::Operations::open(&g, ledger, &upstream)
        })
        .await
        .context("incident workflow start-up panicked")?
        .context("cannot open the send ledger and quarantine")?;
        let desk = ops.desk.clone();
        guard.attach(ops);
        let events = guard.subscribe();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = desk.follow(events) => {}
            }
            Ok(())
        });
        tracing::info!("send ledger on");
    } else {
        tracing::warn!("send ledger off ([ledger] enabled = false): no incident reports, apology gate or quarantine");
    }

    // Expire pauses whose time-to-live has passed.
    {
        let guard = guard.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tick.tick() => {
                        let g = guard.clone();
                        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || g.expire_due()).await {
                            tracing::error!(error = %e, "cannot expire pauses");
                        }
                    }
                }
            }
        });
    }

    // Front-ends are started here, each on its own listener.
    if config.smtp.enabled {
        let service = crate::smtp::SmtpService::new(config.smtp.clone(), guard.clone())
            .context("cannot start the SMTP front-end")?;
        let listener = tokio::net::TcpListener::bind(&config.smtp.listen)
            .await
            .with_context(|| format!("cannot listen on {} (smtp)", config.smtp.listen))?;
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            crate::smtp::run(listener, service, shutdown)
                .await
                .context("smtp front-end")
        });
    }

    // Admin API and alert webhook.
    {
        if config.admin.enabled {
            let tokens = crate::admin::Tokens::load(
                &config.admin,
                std::env::var(crate::admin::TOKEN_ENV).ok(),
            )?;
            let server = crate::admin::AdminServer::bind(&config.admin, tokens, guard.clone())
                .await
                .context("the admin API cannot start (the kill switch would be unreachable)")?;
            tracing::info!(addr = %server.local_addr()?, "admin API listening");
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                server.run(shutdown).await;
                Ok(())
            });
        }
        let alerts = crate::alerts::AlertSender::new(guard.clone())
            .context("cannot set up the alert webhook client")?;
        tasks.spawn(alerts.run(shutdown.clone()));
    }

    // HTTP proxy for send APIs. Without an HTTP upstream, a fresh checkout still gets the raw
    // endpoint (`POST /v1/messages`) delivering into the SMTP front-end's local maildir.
    if config.http.enabled {
        let mut http = config.http.clone();
        if http.upstream.is_none()
            && http.routes.is_empty()
            && config.smtp.upstream.starts_with("maildir:")
        {
            http.upstream = Some(config.smtp.upstream.clone());
            http.dialect = crate::http::Dialect::Raw;
        }
        let proxies = crate::http::bind(&http, &guard).await?;
        if proxies.is_empty() {
            tracing::info!(
                "http proxy not started: no --http-upstream and no [[http.routes]] configured"
            );
        }
        for (listener, proxy) in proxies {
            let workers = crate::http::serve_workers(listener, proxy, &http, shutdown.clone())?;
            tasks.spawn(async move { workers.await.map_err(anyhow::Error::from) });
        }
    }

    wait_for_signals(&guard, &shutdown).await;
    tracing::info!("shutting down: draining sessions in progress");
    shutdown.cancel();
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(anyhow::anyhow!("a task panicked: {e}")),
        }
    }
    // Every outcome of the drained sessions is in the ledger queue: write it before exiting.
    if let Some(ops) = guard.operations() {
        if let Err(e) = ops.ledger.close().await {
            tracing::error!(error = %e, "cannot flush the send ledger");
            result = Err(anyhow::anyhow!("cannot flush the send ledger: {e}"));
        }
    }
    tracing::info!("stopped");
    result
}

async fn wait_for_signals(guard: &Guard, shutdown: &CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with the admin API or kill -9");
        shutdown.cancelled().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => {
                let g = guard.clone();
                tracing::info!("SIGHUP: reloading policies");
                let _ = tokio::task::spawn_blocking(move || g.reload()).await;
            }
        }
    }
}
