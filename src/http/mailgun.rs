//! Mailgun `POST /v3/{domain}/messages` (multipart/form-data or urlencoded form) and
//! `POST /v3/{domain}/messages.mime` (multipart with `to` fields and a `message` file part).
//!
//! Merge tags: `%recipient.name%` is rendered by Mailgun from `recipient-variables` (a JSON
//! object keyed by the `to` address); with such tags in the content each `to` recipient is one
//! message, judged as that recipient would see it, and a tag without a value for a recipient
//! is [`Reject::MissingData`].

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;

use super::merge;
use super::translate::{
    filter_list, first_field, mailgun_domain, name_of, split_addresses, Reject, Req, Stripped,
    Text, Unit,
};

/// One form field.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Bytes,
    /// The value as text when the form already decoded it (urlencoded).
    decoded: Option<Text<'static>>,
}

impl Field {
    fn text(&self) -> Cow<'_, str> {
        match &self.decoded {
            Some(t) => Cow::Borrowed(t),
            None => String::from_utf8_lossy(&self.data),
        }
    }

    /// Replaces the value (the decoded text goes with the old one).
    fn replace(&mut self, data: Bytes) {
        self.data = data;
        self.decoded = None;
    }

    /// The text to judge, sharing a decoded value's memory.
    fn body_text(&self) -> Text<'static> {
        match &self.decoded {
            Some(t) => t.clone(),
            None => Text::Owned(String::from_utf8_lossy(&self.data).into_owned()),
        }
    }
}

enum Form {
    Multipart,
    Urlencoded,
}

fn form_kind(req: &Req<'_>) -> Result<(Form, Option<String>), Reject> {
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let lower = ct.to_ascii_lowercase();
    if lower.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(ct).map_err(|e| {
            Reject::Malformed(format!("invalid multipart content type {ct:?}: {e}"))
        })?;
        Ok((Form::Multipart, Some(boundary)))
    } else if lower.starts_with("application/x-www-form-urlencoded") {
        Ok((Form::Urlencoded, None))
    } else {
        Err(Reject::Malformed(format!(
            "expected multipart/form-data or application/x-www-form-urlencoded, got {ct:?}"
        )))
    }
}

fn read_fields(req: &Req<'_>) -> Result<(Form, Vec<Field>), Reject> {
    let (kind, boundary) = form_kind(req)?;
    match kind {
        Form::Urlencoded => {
            let fields = super::decoded::form_fields(req.body)
                .into_iter()
                .map(|(name, text)| Field {
                    name,
                    file_name: None,
                    content_type: None,
                    data: text.to_bytes(),
                    decoded: Some(text),
                })
                .collect();
            Ok((Form::Urlencoded, fields))
        }
        Form::Multipart => {
            let boundary = boundary.unwrap_or_default();
            let body = req.body.clone();
            let stream = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(body)]);
            let mut mp = multer::Multipart::new(stream, boundary);
            let mut fields = Vec::new();
            // The whole body is in memory, so every future here is ready at once.
            let read = async {
                while let Some(f) = mp.next_field().await? {
                    let name = f.name().unwrap_or("").to_string();
                    let file_name = f.file_name().map(str::to_string);
                    let content_type = f.content_type().map(|m| m.to_string());
                    let data = f.bytes().await?;
                    if !name.is_empty() {
                        fields.push(Field {
                            name,
                            file_name,
                            content_type,
                            data,
                            decoded: None,
                        });
                    }
                }
                Ok::<(), multer::Error>(())
            };
            match read.now_or_never() {
                Some(Ok(())) => Ok((Form::Multipart, fields)),
                Some(Err(e)) => Err(Reject::Malformed(format!("invalid multipart body: {e}"))),
                None => Err(Reject::Malformed(
                    "invalid multipart body: incomplete".into(),
                )),
            }
        }
    }
}

fn values<'f>(fields: &'f [Field], name: &'f str) -> impl Iterator<Item = &'f Field> + 'f {
    fields.iter().filter(move |f| f.name == name)
}

fn addresses(fields: &[Field], name: &str) -> Vec<String> {
    values(fields, name)
        .flat_map(|f| {
            split_addresses(&f.text())
                .into_iter()
                .map(|(_, a)| a.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Translates a Mailgun send: one unit, or one per `to` recipient when the content uses
/// `%recipient.…%` tags.
pub(crate) fn parse<'a>(req: &Req<'a>) -> Result<Vec<Unit<'a>>, Reject> {
    let mime = mailgun_domain(req.path.trim_end_matches('/')).is_some_and(|(_, m)| m);
    let (_, fields) = read_fields(req)?;
    let to = addresses(&fields, "to");
    let mut others = addresses(&fields, "cc");
    others.extend(addresses(&fields, "bcc"));
    if to.is_empty() {
        return Err(Reject::Malformed("missing \"to\" field".into()));
    }
    let lookup = |f: &str| values(&fields, f).next().map(|v| v.text().into_owned());
    let campaign = first_field(&req.route.campaign_fields, lookup);
    let tenant = first_field(&req.route.tenant_fields, lookup);
    let from = values(&fields, "from")
        .next()
        .map(|f| f.text().into_owned());
    let sender = from
        .as_deref()
        .map(|f| split_addresses(f).first().map(|(_, a)| a.to_string()))
        .unwrap_or_default()
        .unwrap_or_default();
    let mut base = Unit {
        sender,
        campaign,
        tenant,
        ..Unit::default()
    };
    for h in fields.iter().filter_map(|f| {
        f.name
            .strip_prefix("h:")
            .map(|n| (n.to_string(), f.text().into_owned()))
    }) {
        base.headers.push((Cow::Owned(h.0), Cow::Owned(h.1)));
    }
    if mime {
        let Some(msg) = values(&fields, "message").next() else {
            return Err(Reject::Malformed("missing \"message\" part".into()));
        };
        let mut recipients = to;
        recipients.extend(others);
        return Ok(vec![Unit {
            recipients,
            mime: Some(msg.data.clone()),
            ..base
        }]);
    }
    if let Some(n) = from.as_deref().and_then(name_of) {
        base.names.push(Cow::Owned(n.to_string()));
    }
    let subject = values(&fields, "subject")
        .next()
        .map(|f| f.text().into_owned());
    let text: Vec<Text<'static>> = values(&fields, "text").map(Field::body_text).collect();
    let html: Vec<Text<'static>> = values(&fields, "html")
        .chain(values(&fields, "amp-html"))
        .map(Field::body_text)
        .collect();
    let tagged = subject
        .iter()
        .map(String::as_str)
        .chain(text.iter().map(|t| &**t))
        .chain(html.iter().map(|t| &**t))
        .any(|t| t.contains("%recipient."));
    if !tagged {
        let mut recipients = to;
        recipients.extend(others);
        return Ok(vec![Unit {
            recipients,
            subject: subject.map(Cow::Owned),
            text,
            html,
            ..base
        }]);
    }
    let vars: Option<Value> = match values(&fields, "recipient-variables").next() {
        Some(f) => Some(
            serde_json::from_slice(&f.data)
                .map_err(|e| Reject::Malformed(format!("invalid recipient-variables JSON: {e}")))?,
        ),
        None => None,
    };
    let mut units = Vec::with_capacity(to.len());
    for (i, rcpt) in to.iter().enumerate() {
        let mine = vars.as_ref().and_then(|v| {
            v.as_object().and_then(|o| {
                o.get(rcpt.as_str()).or_else(|| {
                    o.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(rcpt))
                        .map(|(_, v)| v)
                })
            })
        });
        let render = |t: &str, w: &str| -> Result<String, Reject> {
            merge::render_mailgun(t, mine)
                .map(Cow::into_owned)
                .map_err(|m| Reject::MissingData {
                    token: m.token,
                    recipient: rcpt.clone(),
                    location: w.to_string(),
                })
        };
        let mut recipients = vec![rcpt.clone()];
        if i == 0 {
            recipients.extend(others.iter().cloned());
        }
        let mut u = Unit {
            label: format!("recipient {rcpt}"),
            sender: base.sender.clone(),
            recipients,
            campaign: base.campaign.clone(),
            tenant: base.tenant.clone(),
            names: base.names.clone(),
            headers: base.headers.clone(),
            ..Unit::default()
        };
        if let Some(s) = &subject {
            u.subject = Some(Cow::Owned(render(s, "subject")?));
        }
        for t in &text {
            u.text.push(Text::Owned(render(t, "text")?));
        }
        for h in &html {
            u.html.push(Text::Owned(render(h, "html")?));
        }
        units.push(u);
    }
    Ok(units)
}

/// Removes suppressed recipients from `to`, `cc` and `bcc`, keeping every other field in order.
pub(crate) fn strip(req: &Req<'_>, suppressed: &HashSet<String>) -> Result<Stripped, Reject> {
    let (kind, fields) = read_fields(req)?;
    let mut removed = 0;
    let mut remaining = 0;
    let mut to_left = 0;
    let mut out = Vec::with_capacity(fields.len());
    for mut f in fields {
        if matches!(f.name.as_str(), "to" | "cc" | "bcc") {
            let (kept, r, l) = filter_list(&f.text(), suppressed);
            removed += r;
            remaining += l;
            if f.name == "to" {
                to_left += l;
            }
            if l == 0 {
                continue;
            }
            f.replace(Bytes::from(kept));
        }
        out.push(f);
    }
    if remaining > 0 && to_left == 0 {
        return Err(Reject::Malformed(
            "cannot strip: every \"to\" recipient is suppressed".into(),
        ));
    }
    let (body, ct) = match kind {
        Form::Urlencoded => {
            let pairs: Vec<(String, String)> = out
                .iter()
                .map(|f| (f.name.clone(), f.text().into_owned()))
                .collect();
            let s = serde_urlencoded::to_string(pairs)
                .map_err(|e| Reject::Malformed(format!("cannot re-encode form: {e}")))?;
            (
                Bytes::from(s),
                "application/x-www-form-urlencoded".to_string(),
            )
        }
        Form::Multipart => {
            let boundary = format!("sendguard-{:016x}", rand::random::<u64>());
            (
                write_multipart(&out, &boundary),
                format!("multipart/form-data; boundary={boundary}"),
            )
        }
    };
    let ct = HeaderValue::from_str(&ct)
        .map_err(|_| Reject::Malformed("cannot build content type".into()))?;
    Ok(Stripped {
        body,
        headers: vec![(HeaderName::from_static("content-type"), ct)],
        removed,
        remaining,
    })
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "%22")
        .replace(['\r', '\n'], " ")
}

fn write_multipart(fields: &[Field], boundary: &str) -> Bytes {
    let size: usize = fields.iter().map(|f| f.data.len() + 160).sum();
    let mut b = BytesMut::with_capacity(size + boundary.len() + 8);
    for f in fields {
        b.put_slice(b"--");
        b.put_slice(boundary.as_bytes());
        b.put_slice(b"\r\nContent-Disposition: form-data; name=\"");
        b.put_slice(quote(&f.name).as_bytes());
        b.put_slice(b"\"");
        if let Some(fname) = &f.file_name {
            b.put_slice(b"; filename=\"");
            b.put_slice(quote(fname).as_bytes());
            b.put_slice(b"\"");
        }
        b.put_slice(b"\r\n");
        if let Some(ct) = &f.content_type {
            b.put_slice(b"Content-Type: ");
            b.put_slice(ct.replace(['\r', '\n'], " ").as_bytes());
            b.put_slice(b"\r\n");
        }
        b.put_slice(b"\r\n");
        b.put_slice(&f.data);
        b.put_slice(b"\r\n");
    }
    b.put_slice(b"--");
    b.put_slice(boundary.as_bytes());
    b.put_slice(b"--\r\n");
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Dialect;

    fn route() -> crate::http::Route {
        crate::http::translate::test_route(Dialect::Mailgun)
    }

    fn with<T>(path: &str, ct: &str, body: &[u8], f: impl FnOnce(&Req<'_>) -> T) -> T {
        let route = route();
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(ct) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        let body = Bytes::copy_from_slice(body);
        f(&Req {
            path,
            headers: &headers,
            body: &body,
            route: &route,
        })
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn urlencoded_with_recipient_variables() {
        let body = "from=News+%3Cn%40s.test%3E&to=a%40x.test&to=b%40x.test%2C+c%40x.test\
            &subject=Hi+%25recipient.first%25&o%3Atag=spring\
            &recipient-variables=%7B%22a%40x.test%22%3A%7B%22first%22%3A%22Anna%22%7D%2C\
            %22b%40x.test%22%3A%7B%22first%22%3A%22Bob%22%7D%7D";
        with("/v3/mg.test/messages", FORM, body.as_bytes(), |r| {
            let e = parse(r).unwrap_err();
            assert_eq!(
                e,
                Reject::MissingData {
                    token: "%recipient.first%".into(),
                    recipient: "c@x.test".into(),
                    location: "subject".into()
                }
            );
        });
        let body =
            "from=n%40s.test&to=a%40x.test&subject=Hi+%25recipient.first%25&v%3Acampaign_id=c7\
            &recipient-variables=%7B%22a%40x.test%22%3A%7B%22first%22%3A%22Anna%22%7D%7D";
        with("/v3/mg.test/messages", FORM, body.as_bytes(), |r| {
            let u = parse(r).unwrap();
            assert_eq!(u[0].subject.as_deref(), Some("Hi Anna"));
            assert_eq!(u[0].campaign.as_deref(), Some("c7"));
        });
    }

    #[test]
    fn multipart_parse_and_strip() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nn@s.test\r\n\
--XX\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\na@x.test, b@x.test\r\n\
--XX\r\nContent-Disposition: form-data; name=\"o:tag\"\r\n\r\nspring\r\n\
--XX\r\nContent-Disposition: form-data; name=\"message\"; filename=\"m.eml\"\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nbody\r\n\
--XX--\r\n";
        with(
            "/v3/mg.test/messages.mime",
            "multipart/form-data; boundary=XX",
            body,
            |r| {
                let u = parse(r).unwrap();
                assert_eq!(u[0].recipients, ["a@x.test", "b@x.test"]);
                assert_eq!(u[0].campaign.as_deref(), Some("spring"));
                assert_eq!(&u[0].mime.as_ref().unwrap()[..], b"Subject: x\r\n\r\nbody");
                let s: HashSet<String> = ["b@x.test".to_string()].into();
                let st = strip(r, &s).unwrap();
                assert_eq!((st.removed, st.remaining), (1, 1));
                let text = String::from_utf8_lossy(&st.body);
                assert!(text.contains("\r\n\r\na@x.test\r\n"), "{text}");
                assert!(text.contains("filename=\"m.eml\""), "{text}");
            },
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512), multi in proptest::bool::ANY) {
            let ct = if multi { "multipart/form-data; boundary=XX" } else { FORM };
            with("/v3/d/messages", ct, &b, |r| {
                let _ = parse(r);
                let _ = strip(r, &HashSet::new());
            });
        }

        #[test]
        fn arbitrary_text_fields_never_panic(to in ".{0,40}", subject in ".{0,40}", vars in ".{0,40}") {
            let body = serde_urlencoded::to_string([("to", to.as_str()), ("subject", subject.as_str()), ("recipient-variables", vars.as_str())]).unwrap();
            with("/v3/d/messages", FORM, body.as_bytes(), |r| { let _ = parse(r); });
        }
    }
}
