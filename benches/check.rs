//! Placeholder scan throughput: a full scan (MIME parse, transfer and charset decoding, HTML walk,
//! every rule) of a realistic ~80 KB newsletter, clean and leaking.

use divan::counter::BytesCount;
use divan::Bencher;
use sendguard::model::Message;
use sendguard::policy::placeholder::{Detector, PlaceholderPolicy};

#[path = "../tests/support/newsletter.rs"]
mod newsletter;

use newsletter::Leak;

fn main() {
    divan::main();
}

/// Articles giving a message of about 80 KB (quoted-printable).
const ARTICLES: usize = 31;

fn run(bencher: Bencher, leak: Leak) {
    let detector = match Detector::new(&PlaceholderPolicy::default()) {
        Ok(d) => d,
        Err(issues) => panic!("default policy does not compile: {issues:?}"),
    };
    let raw = newsletter::message(ARTICLES, leak);
    let msg = Message::new(raw);
    let expected = usize::from(leak != Leak::None);
    assert_eq!(detector.scan(&msg).len(), expected);
    bencher
        .counter(BytesCount::new(msg.len()))
        .bench(|| detector.scan(divan::black_box(&msg)));
}

#[divan::bench]
fn scan_clean_newsletter(bencher: Bencher) {
    run(bencher, Leak::None);
}

#[divan::bench]
fn scan_newsletter_leak_in_greeting(bencher: Bencher) {
    run(bencher, Leak::Greeting);
}

#[divan::bench]
fn scan_newsletter_leak_at_end(bencher: Bencher) {
    run(bencher, Leak::Late);
}

/// The MIME parse and decode alone, for comparison.
#[divan::bench]
fn mime_parse_only(bencher: Bencher) {
    let msg = Message::new(newsletter::message(ARTICLES, Leak::None));
    bencher
        .counter(BytesCount::new(msg.len()))
        .bench(|| divan::black_box(&msg).parse().map(|m| m.parts.len()));
}

/// The HTML walk and rules alone, on the decoded HTML.
#[divan::bench]
fn scan_html_only(bencher: Bencher) {
    let detector = match Detector::new(&PlaceholderPolicy::default()) {
        Ok(d) => d,
        Err(issues) => panic!("default policy does not compile: {issues:?}"),
    };
    let html = newsletter::html(ARTICLES, Leak::None);
    bencher
        .counter(BytesCount::new(html.len()))
        .bench(|| detector.scan_html(divan::black_box(&html)));
}
