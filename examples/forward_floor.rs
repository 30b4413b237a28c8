//! The floor of an HTTP reverse proxy built on hyper on this machine: no checks, no metrics, no
//! ledger — it reads the whole request, forwards it over a pooled keep-alive connection and
//! streams the answer back, on one single-threaded runtime per CPU like sendguard's HTTP
//! workers. Put it where sendguard's HTTP front-end sits in `http-bench.sh` to see how much of
//! sendguard's cost is hyper and tokio themselves and how much is guarding.
//!
//! ```text
//! cargo run --release --example forward_floor -- 127.0.0.1:18029 http://127.0.0.1:18080 [WORKERS]
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: forward_floor LISTEN_ADDR UPSTREAM_URL [WORKERS]");
    };
    let upstream: hyper::Uri = upstream.parse()?;
    let authority = upstream
        .authority()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the upstream URL needs a host"))?;
    let workers = match args.get(3) {
        Some(n) => n.parse()?,
        None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    };
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    eprintln!("forward_floor: {listen} -> {upstream}, {workers} worker(s)");
    let mut threads = Vec::new();
    for _ in 0..workers {
        let listener = listener.try_clone()?;
        let authority = authority.clone();
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(worker(listener, authority))
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    Ok(())
}

async fn worker(listener: TcpListener, authority: http::uri::Authority) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let authority = authority.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            forward(client.clone(), authority.clone(), req)
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn forward(
    client: Upstream,
    authority: http::uri::Authority,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = hyper::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()?;
    parts.headers.remove(http::header::CONNECTION);
    let resp = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await?;
    Ok(resp)
}
