//! Cost of judging one send-API request in the HTTP proxy (parse + translate + guard checks),
//! without the network: the bench rig's ~10 KB SendGrid request, a Postmark request and a
//! Mailgun form.

use bytes::Bytes;
use sendguard::http::{Dialect, HttpConfig, HttpProxy};
use sendguard::{Guard, GuardConfig};

fn main() {
    divan::main();
}

fn html(target: usize) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html><body><table>\n");
    let mut i = 0;
    while s.len() < target {
        i += 1;
        s.push_str(&format!(
            "<tr><td><h2>Item {i}: caf\u{e9} news</h2><p>Hello Anna, here is update number {i} of \
             our spring newsletter. Read more on <a href=\"https://example.com/articles/{i}?utm_source=\
             newsletter&amp;utm_medium=email\">our site</a>.</p></td></tr>\n"
        ));
    }
    s.push_str("</table></body></html>\n");
    s
}

fn proxy(dialect: Dialect) -> HttpProxy {
    let guard = Guard::open(GuardConfig::in_memory()).expect("guard");
    let config = HttpConfig {
        upstream: Some("http://127.0.0.1:9".into()),
        dialect,
        ..HttpConfig::default()
    };
    HttpProxy::new(config.routes().remove(0), &config, guard).expect("proxy")
}

fn sendgrid_body() -> Bytes {
    let body = serde_json::json!({
        "personalizations": [{"to": [{"email": "alice.recipient@example.com", "name": "Alice Recipient"}],
                              "subject": "Your spring update"}],
        "from": {"email": "news@example.org", "name": "Example News"},
        "reply_to": {"email": "support@example.org"},
        "subject": "Your spring update",
        "content": [{"type": "text/html", "value": html(10240)}],
        "custom_args": {"campaign_id": "cmp_2024_spring_0042"},
        "categories": ["newsletter"]
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

#[divan::bench]
fn sendgrid_10k(b: divan::Bencher) {
    let p = proxy(Dialect::Sendgrid);
    let body = sendgrid_body();
    let headers = http::HeaderMap::new();
    b.counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| {
            p.check_request(&headers, "/v3/mail/send", divan::black_box(&body))
                .is_none()
        });
}

#[divan::bench]
fn postmark_10k(b: divan::Bencher) {
    let p = proxy(Dialect::Postmark);
    let body = serde_json::json!({"From": "Example News <news@example.org>", "To": "alice@example.com",
        "Subject": "Your spring update", "HtmlBody": html(10240), "Tag": "spring"});
    let body = Bytes::from(serde_json::to_vec(&body).expect("json"));
    let headers = http::HeaderMap::new();
    b.bench(|| {
        p.check_request(&headers, "/email", divan::black_box(&body))
            .is_none()
    });
}

#[divan::bench]
fn mailgun_form_10k(b: divan::Bencher) {
    let p = proxy(Dialect::Mailgun);
    let h = html(10240);
    let body = serde_urlencoded::to_string([
        ("from", "Example News <news@example.org>"),
        ("to", "alice@example.com"),
        ("subject", "Your spring update"),
        ("html", h.as_str()),
        ("o:tag", "spring"),
    ])
    .expect("form");
    let body = Bytes::from(body);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    b.bench(|| {
        p.check_request(
            &headers,
            "/v3/mg.example.org/messages",
            divan::black_box(&body),
        )
        .is_none()
    });
}
