//! Property tests: no input panics the scan; a leak put into clean text is always found, also
//! after quoted-printable or base64 transfer encoding.

use super::{Detector, PlaceholderPolicy};
use crate::model::{Location, Message};
use proptest::prelude::*;

const LEAKS: &[(&str, &str)] = &[
    ("<FirstName>", "placeholder.angle"),
    ("<first_name>", "placeholder.angle"),
    ("{{first_name}}", "placeholder.mustache"),
    ("{{ contact.firstname }}", "placeholder.mustache"),
    ("{% if x %}", "placeholder.mustache"),
    ("*|FNAME|*", "placeholder.mailchimp"),
    ("%%FirstName%%", "placeholder.ampscript"),
    ("%%=v(@name)=%%", "placeholder.ampscript"),
    ("[FirstName]", "placeholder.bracket"),
    ("[firstname,fallback=there]", "placeholder.bracket"),
    ("${firstName}", "placeholder.dollar"),
    ("-first_name-", "placeholder.sendgrid-legacy"),
    ("{$name}", "placeholder.smarty"),
    ("$name$", "placeholder.dollar-pair"),
    ("[object Object]", "placeholder.failed-substitution"),
];

/// Clean words, including the false-positive baits.
const WORDS: &[&str] = &[
    "Hallo",
    "Anna",
    "unser",
    "Sale",
    "50%",
    "off",
    "100%%",
    "[1]",
    "[sic]",
    "[PDF]",
    "[Anzeige]",
    "$5",
    "and",
    "$10",
    "e-mail",
    "-50-",
    "<https://example.test/>",
    "<mailto:a@b.test>",
    "Max",
    "<max@example.test>",
    "Grüße",
    "€",
    "–",
    "{",
    "}",
    "x,",
    "Hallo!",
    "über",
    "Preis:",
    "(ab",
    "9,99)",
    "\n",
    "\r\n",
    "Liebe",
    "Dear",
    "all,",
];

fn detector() -> Detector {
    Detector::new(&PlaceholderPolicy::default()).expect("default policy compiles")
}

fn clean_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..40).prop_map(|w| w.join(" "))
}

fn qp(input: &[u8], width: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for &b in input {
        let enc = if b == b'=' || !(b == b' ' || b.is_ascii_graphic()) {
            format!("={b:02X}")
        } else {
            (b as char).to_string()
        };
        if col + enc.len() > width {
            out.push_str("=\r\n");
            col = 0;
        }
        out.push_str(&enc);
        col += enc.len();
    }
    out
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, chunk) in input.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let v = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn message(ctype: &str, cte: &str, body: &str) -> Message {
    Message::new(format!(
        "From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
         Content-Type: {ctype}; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n"
    ))
}

fn html_escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scan_never_panics_on_bytes(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = detector().scan(&Message::new(raw));
    }

    #[test]
    fn scan_never_panics_on_html_like_text(s in "[<>!/a-zA-Z\\-\\[\\]{}%$*|&#;=\"' \n]{0,300}") {
        let d = detector();
        let _ = d.scan_html(&s);
        let _ = d.scan_text(&s, Location::Subject);
        let m = message("text/html", "quoted-printable", &s);
        let _ = d.scan(&m);
    }

    #[test]
    fn inserted_token_is_found(
        before in clean_text(),
        after in clean_text(),
        leak in prop::sample::select(LEAKS),
    ) {
        let d = detector();
        let (token, rule) = leak;
        let text = format!("{before} {token} {after}");
        let found = d.scan_text(&text, Location::Text);
        prop_assert!(
            found.iter().any(|f| f.rule == rule && f.token == token),
            "{token} not found in {text:?}: {found:?}"
        );
        let html = format!("<p>{}</p>", html_escape_text(&text));
        let found = d.scan_html(&html);
        prop_assert!(
            found.iter().any(|f| f.rule == rule && f.token == token),
            "{token} not found in {html:?}: {found:?}"
        );
    }

    #[test]
    fn clean_text_has_no_findings(text in clean_text()) {
        let d = detector();
        prop_assert_eq!(d.scan_text(&text, Location::Text), vec![]);
        prop_assert_eq!(d.scan_html(&format!("<p>{}</p>", html_escape_text(&text))), vec![]);
    }

    #[test]
    fn transfer_encoding_keeps_the_leak(
        before in clean_text(),
        after in clean_text(),
        leak in prop::sample::select(LEAKS),
        width in 4usize..76,
        html in any::<bool>(),
    ) {
        let d = detector();
        let (token, rule) = leak;
        let body = if html {
            format!("<p>{}</p>", html_escape_text(&format!("{before} {token} {after}")))
        } else {
            format!("{before} {token} {after}")
        };
        let ctype = if html { "text/html" } else { "text/plain" };
        for m in [
            message(ctype, "quoted-printable", &qp(body.as_bytes(), width)),
            message(ctype, "base64", &base64(body.as_bytes())),
        ] {
            let found = d.scan(&m);
            prop_assert!(
                found.iter().any(|f| f.rule == rule && f.token == token),
                "{token} not found: {found:?}"
            );
        }
    }
}
