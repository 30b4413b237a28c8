//! Arbitrary bodies as send requests of every dialect, judged the way the HTTP proxy judges
//! them (parse, translate, check, strip when suppressed): every input gets an answer, none a
//! panic. The first byte picks the dialect and the content type.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sendguard::http::{Dialect, HttpConfig, HttpProxy, SuppressedMode};
use sendguard::{Guard, GuardConfig};
use std::sync::OnceLock;

struct Proxies(Vec<HttpProxy>);

static PROXIES: OnceLock<Option<Proxies>> = OnceLock::new();

fn proxies() -> Option<Proxies> {
    let guard = Guard::open(GuardConfig::in_memory()).ok()?;
    let mut out = Vec::new();
    for dialect in [
        Dialect::Sendgrid,
        Dialect::Mailgun,
        Dialect::Postmark,
        Dialect::Raw,
    ] {
        let config = HttpConfig {
            upstream: Some("http://127.0.0.1:9".into()),
            dialect,
            suppressed: SuppressedMode::Strip,
            ..HttpConfig::default()
        };
        let route = config.routes().into_iter().next()?;
        out.push(HttpProxy::new(route, &config, guard.clone()).ok()?);
    }
    Some(Proxies(out))
}

const CASES: [(usize, &str, &str); 8] = [
    (0, "/v3/mail/send", "application/json"),
    (
        1,
        "/v3/mg.example.test/messages",
        "application/x-www-form-urlencoded",
    ),
    (
        1,
        "/v3/mg.example.test/messages",
        "multipart/form-data; boundary=b",
    ),
    (
        1,
        "/v3/mg.example.test/messages.mime",
        "multipart/form-data; boundary=b",
    ),
    (2, "/email", "application/json"),
    (2, "/email/batch", "application/json"),
    (2, "/email/withTemplate", "application/json"),
    (3, "/v1/messages", "message/rfc822"),
];

fuzz_target!(|data: &[u8]| {
    let Some(p) = PROXIES.get_or_init(proxies) else {
        return;
    };
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (dialect, path, content_type) = CASES[usize::from(pick) % CASES.len()];
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        "x-sendguard-from",
        http::HeaderValue::from_static("news@shop.test"),
    );
    headers.insert(
        "x-sendguard-to",
        http::HeaderValue::from_static("anna@customer.test, gone@example.invalid"),
    );
    let body = Bytes::copy_from_slice(body);
    let _ = p.0[dialect].check_request(&headers, path, &body);
});
