//! What every dialect translates a request into: the messages the service would send, each with
//! its envelope and decoded content, borrowed from the request body where possible.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;
use std::collections::HashSet;

pub(crate) use super::decoded::{JsonText, Text};
use super::{Dialect, Route};
use crate::model::{Content, Envelope, Message};

/// One message the service would send: the unit the guard judges.
#[derive(Debug, Default)]
pub(crate) struct Unit<'a> {
    /// Where it is in the request (`personalizations[1]`, `message 3`), empty for a single one.
    pub label: String,
    /// The sender address.
    pub sender: String,
    /// Every recipient (to, cc, bcc), in request order.
    pub recipients: Vec<String>,
    /// Campaign from the dialect's fields.
    pub campaign: Option<String>,
    /// Tenant from the dialect's fields.
    pub tenant: Option<String>,
    /// Subject as the recipient would see it.
    pub subject: Option<Cow<'a, str>>,
    /// Display names of the sender and reply-to.
    pub names: Vec<Cow<'a, str>>,
    /// Text bodies.
    pub text: Vec<Text<'a>>,
    /// HTML bodies.
    pub html: Vec<Text<'a>>,
    /// Custom headers (for campaign lookup by the policies' identity headers).
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// A whole MIME message (Mailgun `messages.mime`, raw), judged with `check_message`.
    pub mime: Option<Bytes>,
}

impl<'a> Unit<'a> {
    /// The envelope to judge.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            campaign: self.campaign.clone(),
            tenant: self.tenant.clone(),
            ..Envelope::default()
        }
    }

    /// The decoded content, borrowing from the unit.
    pub fn content(&self) -> Content<'_> {
        Content {
            subject: self.subject.as_deref(),
            names: self.names.iter().map(|c| c.as_ref()).collect(),
            text: self.text.iter().map(|c| c.as_ref()).collect(),
            html: self.html.iter().map(|c| c.as_ref()).collect(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_ref(), v.as_ref()))
                .collect(),
        }
    }

    /// The MIME message, when the unit carries one.
    pub fn message(&self) -> Option<Message> {
        self.mime.clone().map(Message::new)
    }

    /// The message as the service would build it from the request (From, Subject, the text and
    /// HTML parts), for the quarantine to keep; its own `MIME` message when it carries one. No
    /// recipient is written into the headers, since the unit no longer tells Bcc from To: the
    /// quarantine's record keeps them, and a release sends to them as the envelope.
    ///
    /// # Errors
    /// The sender is not an address, or no recipient is.
    pub fn rendered(&self) -> Result<Message, String> {
        use lettre::message::{Mailbox, MultiPart, SinglePart};
        if let Some(m) = self.message() {
            return Ok(m);
        }
        let from: Mailbox = self
            .sender
            .parse()
            .map_err(|e| format!("sender {:?}: {e}", self.sender))?;
        let mut b = lettre::Message::builder().from(from);
        if let Some(subject) = &self.subject {
            b = b.subject(subject.as_ref());
        }
        for r in &self.recipients {
            if let Ok(to) = r.parse::<Mailbox>() {
                b = b.bcc(to);
            }
        }
        let mut parts = self
            .text
            .iter()
            .map(|t| SinglePart::plain(t.to_string()))
            .chain(self.html.iter().map(|h| SinglePart::html(h.to_string())));
        let built = match (parts.next(), parts.next()) {
            (None, _) => b.singlepart(SinglePart::plain(String::new())),
            (Some(one), None) => b.singlepart(one),
            (Some(first), Some(second)) => {
                let mut all = MultiPart::alternative()
                    .singlepart(first)
                    .singlepart(second);
                for p in parts {
                    all = all.singlepart(p);
                }
                b.multipart(all)
            }
        };
        built
            .map(|m| Message::new(m.formatted()))
            .map_err(|e| format!("cannot build the message: {e}"))
    }
}

/// A request that cannot be judged as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// The body does not parse, or lacks what the dialect requires.
    Malformed(String),
    /// A merge tag in the content has no substitution data for a recipient.
    MissingData {
        /// The tag as written.
        token: String,
        /// The recipient lacking a value.
        recipient: String,
        /// Where the tag is (`subject`, `html`, `text`, with the message label).
        location: String,
    },
}

/// The request as a translator sees it.
pub(crate) struct Req<'a> {
    /// The request path (without the query).
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a Bytes,
    /// The route's settings.
    pub route: &'a Route,
}

impl<'a> Req<'a> {
    /// The body parsed as JSON into `T`, borrowing from it; `what` names the body in errors.
    ///
    /// JSON is UTF-8 (RFC 8259 §8.1), so the whole body is checked once, with SIMD, and then
    /// parsed as text: the parser no longer checks every string it borrows. Invalid UTF-8 could
    /// only stand inside a JSON string, so this refuses exactly the bodies the parser would.
    pub(crate) fn json<T: serde::Deserialize<'a>>(&self, what: &str) -> Result<T, Reject> {
        let body: &'a [u8] = self.body;
        let text = simdutf8::compat::from_utf8(body).map_err(|e| {
            Reject::Malformed(format!(
                "invalid {what} body: not UTF-8 (invalid bytes at offset {})",
                e.valid_up_to()
            ))
        })?;
        serde_json::from_str(text)
            .map_err(|e| Reject::Malformed(format!("invalid {what} body: {e}")))
    }
}

/// The body (and headers) after suppressed recipients were removed.
#[derive(Debug)]
pub(crate) struct Stripped {
    /// The new body.
    pub body: Bytes,
    /// Headers to set on the forwarded request (replacing any of the same name).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Recipients removed.
    pub removed: usize,
    /// Recipients left.
    pub remaining: usize,
}

impl Stripped {
    /// A stripped JSON body, re-serialized.
    pub(crate) fn json(
        v: &serde_json::Value,
        removed: usize,
        remaining: usize,
    ) -> Result<Stripped, Reject> {
        let body = serde_json::to_vec(v)
            .map_err(|e| Reject::Malformed(format!("cannot re-encode the body: {e}")))?;
        Ok(Stripped {
            body: Bytes::from(body),
            headers: Vec::new(),
            removed,
            remaining,
        })
    }
}

/// The route of `dialect` with every default, for the translators' unit tests.
#[cfg(test)]
pub(crate) fn test_route(dialect: Dialect) -> Route {
    super::HttpConfig {
        upstream: Some("http://127.0.0.1:1".into()),
        dialect,
        ..super::HttpConfig::default()
    }
    .routes()
    .remove(0)
}

/// Whether a request is a send the dialect knows (everything else is forwarded unchecked).
pub(crate) fn is_send(dialect: Dialect, method: &http::Method, path: &str) -> bool {
    if method != http::Method::POST {
        return false;
    }
    let path = path.trim_end_matches('/');
    match dialect {
        Dialect::Sendgrid => path == "/v3/mail/send",
        Dialect::Mailgun => mailgun_domain(path).is_some(),
        Dialect::Postmark => super::postmark::Endpoint::of(path).is_some(),
        Dialect::Raw => path == "/v1/messages",
    }
}

/// The `{domain}` of a Mailgun `/v3/{domain}/messages[.mime]` path, and whether it is `.mime`.
pub(crate) fn mailgun_domain(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix("/v3/")?;
    let (domain, tail) = rest.split_once('/')?;
    if domain.is_empty() {
        return None;
    }
    match tail {
        "messages" => Some((domain, false)),
        "messages.mime" => Some((domain, true)),
        _ => None,
    }
}

/// Translates a send request into the messages to judge.
pub(crate) fn parse<'a>(req: &Req<'a>) -> Result<Vec<Unit<'a>>, Reject> {
    match req.route.dialect {
        Dialect::Sendgrid => super::sendgrid::parse(req),
        Dialect::Mailgun => super::mailgun::parse(req),
        Dialect::Postmark => super::postmark::parse(req),
        Dialect::Raw => super::raw::parse(req),
    }
}

/// Removes the suppressed recipients (lower-cased addresses) from the request.
pub(crate) fn strip(req: &Req<'_>, suppressed: &HashSet<String>) -> Result<Stripped, Reject> {
    match req.route.dialect {
        Dialect::Sendgrid => super::sendgrid::strip(req, suppressed),
        Dialect::Mailgun => super::mailgun::strip(req, suppressed),
        Dialect::Postmark => super::postmark::strip(req, suppressed),
        Dialect::Raw => super::raw::strip(req, suppressed),
    }
}

/// Splits an address list (`"Anna" <anna@x.test>, bob@y.test`) into its items, each as
/// `(item text, address)`. Commas inside quotes or angle brackets do not split.
pub(crate) fn split_addresses(s: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut angle = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                push_item(&mut out, &s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    push_item(&mut out, &s[start..]);
    out
}

fn push_item<'a>(out: &mut Vec<(&'a str, &'a str)>, item: &'a str) {
    let item = item.trim();
    if item.is_empty() {
        return;
    }
    out.push((item, address_of(item)));
}

/// The address of one list item: inside the last `<…>` when there is one.
pub(crate) fn address_of(item: &str) -> &str {
    if let (Some(l), Some(r)) = (item.rfind('<'), item.rfind('>')) {
        if l < r {
            return item[l + 1..r].trim();
        }
    }
    item.trim().trim_matches('"').trim()
}

/// The display name of one list item (`"Anna Example" <a@x>` → `Anna Example`), if any.
pub(crate) fn name_of(item: &str) -> Option<&str> {
    let l = item.rfind('<')?;
    let n = item[..l].trim().trim_matches('"').trim();
    (!n.is_empty()).then_some(n)
}

/// Whether an address is in the suppressed set (compared lower-cased).
pub(crate) fn is_suppressed(suppressed: &HashSet<String>, address: &str) -> bool {
    suppressed.contains(&crate::model::normalize_address(address))
}

/// Rewrites an address list keeping only the items that are not suppressed; returns the new
/// list and how many items were removed.
pub(crate) fn filter_list(list: &str, suppressed: &HashSet<String>) -> (String, usize, usize) {
    let items = split_addresses(list);
    let total = items.len();
    let kept: Vec<&str> = items
        .into_iter()
        .filter(|(_, a)| !is_suppressed(suppressed, a))
        .map(|(i, _)| i)
        .collect();
    let removed = total - kept.len();
    let remaining = kept.len();
    (kept.join(", "), removed, remaining)
}

/// Whether the request is signed over its body (AWS SigV4 and alike).
pub(crate) fn signed_request(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("AWS4-HMAC-SHA256"))
        || headers.contains_key("x-amz-content-sha256")
}

/// The first non-empty value of `fields`, looked up with `lookup`.
pub(crate) fn first_field<'f>(
    fields: &'f [String],
    mut lookup: impl FnMut(&'f str) -> Option<String>,
) -> Option<String> {
    fields.iter().find_map(|f| {
        lookup(f)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(body: &[u8]) -> Result<serde_json::Value, Reject> {
        let route = test_route(Dialect::Sendgrid);
        let (headers, body) = (HeaderMap::new(), Bytes::copy_from_slice(body));
        let req = Req {
            path: "/v3/mail/send",
            headers: &headers,
            body: &body,
            route: &route,
        };
        req.json("mail/send")
    }

    #[test]
    fn a_json_body_that_is_not_utf8_is_malformed_and_says_where() {
        let Err(Reject::Malformed(m)) = json_of(b"{\"subject\":\"caf\xe9\"}") else {
            panic!("invalid UTF-8 must be refused");
        };
        assert_eq!(
            m,
            "invalid mail/send body: not UTF-8 (invalid bytes at offset 15)"
        );
        assert!(json_of("{\"subject\":\"caf\u{e9}\"}".as_bytes()).is_ok());
    }

    proptest::proptest! {
        /// Checking UTF-8 first and parsing text accepts exactly what parsing the bytes does.
        #[test]
        fn json_bodies_are_accepted_as_the_parser_alone_would(
            body in proptest::collection::vec(
                proptest::sample::select(b"{}[]\":,\\ab1 \xc3\xa9\xe9\xff".to_vec()),
                0..40,
            ),
        ) {
            let alone = serde_json::from_slice::<serde_json::Value>(&body);
            let ours = json_of(&body);
            proptest::prop_assert_eq!(alone.is_ok(), ours.is_ok());
            if let (Ok(a), Ok(o)) = (alone, ours) {
                proptest::prop_assert_eq!(a, o);
            }
        }
    }

    #[test]
    fn renders_the_message_the_service_would_send() {
        let unit = Unit {
            sender: "news@shop.test".into(),
            recipients: vec![
                "a@x.test".into(),
                "not an address".into(),
                "b@y.test".into(),
            ],
            subject: Some(Cow::Borrowed("Grüße, <FirstName>")),
            text: vec![Text::Borrowed("one"), Text::Borrowed("two")],
            html: vec![Text::Borrowed("<p>three</p>")],
            ..Unit::default()
        };
        let m = unit.rendered().unwrap();
        let p = m.parse().unwrap();
        assert_eq!(p.subject(), Some("Grüße, <FirstName>"));
        // A request does not say which recipients were Bcc: none is shown.
        assert!(p.to().is_none() && p.cc().is_none() && p.bcc().is_none());
        assert_eq!(
            (p.text_body.len(), p.html_body.len()),
            (2, 1),
            "every part kept"
        );
        assert!(p.body_html(0).is_some_and(|h| h.contains("<p>three</p>")));

        let bare = Unit {
            sender: "news@shop.test".into(),
            recipients: vec!["a@x.test".into()],
            ..Unit::default()
        };
        let raw = bare.rendered().unwrap();
        let p = raw.parse().unwrap();
        assert_eq!(p.subject(), None);
        assert_eq!(
            p.from().and_then(|f| f.first()).and_then(|a| a.address()),
            Some("news@shop.test")
        );
        let bad = Unit {
            sender: "nobody".into(),
            recipients: vec!["a@x.test".into()],
            ..Unit::default()
        };
        assert!(bad.rendered().unwrap_err().contains("nobody"));
        let nobody = Unit {
            sender: "news@shop.test".into(),
            recipients: vec!["a".into()],
            ..Unit::default()
        };
        assert!(nobody.rendered().is_err());
    }

    #[test]
    fn splits_lists() {
        let l = split_addresses(r#""Doe, Jane" <jane@x.test>, bob@y.test;  , <c@z.test>"#);
        assert_eq!(
            l.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
            ["jane@x.test", "bob@y.test", "c@z.test"]
        );
        assert_eq!(name_of(l[0].0), Some("Doe, Jane"));
        assert_eq!(name_of(l[1].0), None);
        let s: HashSet<String> = ["bob@y.test".to_string()].into();
        let (kept, removed, remaining) = filter_list("Bob@Y.test, a@b.test", &s);
        assert_eq!((kept.as_str(), removed, remaining), ("a@b.test", 1, 1));
        assert_eq!(
            mailgun_domain("/v3/mg.x.test/messages"),
            Some(("mg.x.test", false))
        );
        assert_eq!(
            mailgun_domain("/v3/mg.x.test/messages.mime"),
            Some(("mg.x.test", true))
        );
        assert_eq!(mailgun_domain("/v3/mg.x.test/events"), None);
    }
}
