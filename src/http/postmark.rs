//! Postmark `POST /email` (one message), `POST /email/batch` (a list of them), and the template
//! sends `POST /email/withTemplate` and `POST /email/batchWithTemplates` (`{"Messages": [...]}`).
//!
//! Merge tags: a message with a `TemplateModel` has its `{{name}}` tags in `Subject`,
//! `HtmlBody` and `TextBody` rendered from that model; a tag the model has no value for is
//! [`Reject::MissingData`]. A template send carries no content (the template is stored at
//! Postmark): its envelope is judged (pauses, suppression) and the model's text values are
//! checked for leaks, since Postmark does not render tags inside them.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;

use super::merge;
use super::translate::{
    address_of, filter_list, first_field, name_of, split_addresses, JsonText, Reject, Req,
    Stripped, Text, Unit,
};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Email<'a> {
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    cc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    bcc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reply_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    html_body: Option<JsonText<'a>>,
    #[serde(borrow, default)]
    text_body: Option<JsonText<'a>>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    message_stream: Option<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    template_model: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Header {
    name: String,
    #[serde(default)]
    value: String,
}

/// The Postmark send endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/email`
    Single,
    /// `/email/batch`
    Batch,
    /// `/email/withTemplate`
    Template,
    /// `/email/batchWithTemplates`
    TemplateBatch,
}

impl Endpoint {
    /// The endpoint of a request path, `None` for anything that is not a send.
    pub(crate) fn of(path: &str) -> Option<Endpoint> {
        let p = path.trim_end_matches('/');
        [
            ("/email", Endpoint::Single),
            ("/email/batch", Endpoint::Batch),
            ("/email/withTemplate", Endpoint::Template),
            ("/email/batchWithTemplates", Endpoint::TemplateBatch),
        ]
        .into_iter()
        .find(|(n, _)| p.eq_ignore_ascii_case(n))
        .map(|(_, e)| e)
    }

    fn batch(self) -> bool {
        matches!(self, Endpoint::Batch | Endpoint::TemplateBatch)
    }

    fn template(self) -> bool {
        matches!(self, Endpoint::Template | Endpoint::TemplateBatch)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemplateBatch<'a> {
    #[serde(borrow)]
    messages: Vec<Email<'a>>,
}

fn endpoint(req: &Req<'_>) -> Endpoint {
    Endpoint::of(req.path).unwrap_or(Endpoint::Single)
}

fn model_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| model_texts(x, out)),
        Value::Object(o) => o.values().for_each(|x| model_texts(x, out)),
        _ => {}
    }
}

/// Translates `/email` (one unit) or `/email/batch` (one unit per message).
pub(crate) fn parse<'a>(req: &Req<'a>) -> Result<Vec<Unit<'a>>, Reject> {
    let ep = endpoint(req);
    let emails: Vec<Email<'a>> = match ep {
        Endpoint::Batch => req.json("email")?,
        Endpoint::TemplateBatch => {
            let b: TemplateBatch<'a> = req.json("email")?;
            b.messages
        }
        Endpoint::Single | Endpoint::Template => {
            vec![req.json("email")?]
        }
    };
    if emails.is_empty() {
        return Err(Reject::Malformed(
            "invalid email body: the batch is empty".into(),
        ));
    }
    let n = emails.len();
    let mut units = Vec::with_capacity(n);
    for (i, e) in emails.into_iter().enumerate() {
        let label = if ep.batch() {
            format!("message [{i}]")
        } else {
            String::new()
        };
        units.push(unit(req, e, label, ep.template())?);
    }
    Ok(units)
}

fn unit<'a>(
    req: &Req<'a>,
    e: Email<'a>,
    label: String,
    template: bool,
) -> Result<Unit<'a>, Reject> {
    let mut recipients = Vec::new();
    for list in [&e.to, &e.cc, &e.bcc].into_iter().flatten() {
        recipients.extend(
            split_addresses(list)
                .into_iter()
                .map(|(_, a)| a.to_string()),
        );
    }
    if recipients.is_empty() {
        return Err(Reject::Malformed(format!(
            "invalid email body: no recipient in To, Cc or Bcc{}",
            if label.is_empty() {
                String::new()
            } else {
                format!(" of {label}")
            }
        )));
    }
    let lookup = |f: &str| -> Option<String> {
        if let Some(k) = f.strip_prefix("Metadata.") {
            return e.metadata.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        if let Some(k) = f.strip_prefix("Headers.") {
            return e
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(k))
                .map(|h| h.value.clone());
        }
        match f {
            "Tag" => e.tag.clone(),
            "MessageStream" => e.message_stream.clone(),
            _ => None,
        }
    };
    let campaign = first_field(&req.route.campaign_fields, lookup);
    let tenant = first_field(&req.route.tenant_fields, lookup);
    let mut u = Unit {
        sender: e
            .from
            .as_deref()
            .map(address_of)
            .unwrap_or_default()
            .to_string(),
        campaign,
        tenant,
        ..Unit::default()
    };
    for n in [&e.from, &e.reply_to]
        .into_iter()
        .flatten()
        .filter_map(|s| name_of(s))
    {
        u.names.push(Cow::Owned(n.to_string()));
    }
    for h in &e.headers {
        u.headers
            .push((Cow::Owned(h.name.clone()), Cow::Owned(h.value.clone())));
    }
    if template {
        let mut texts = Vec::new();
        if let Some(m) = &e.template_model {
            model_texts(m, &mut texts);
        }
        u.text = texts.into_iter().map(Text::Owned).collect();
        u.recipients = recipients;
        u.label = label;
        return Ok(u);
    }
    let first = recipients.first().cloned().unwrap_or_default();
    let render = |text: Text<'a>, w: &str| -> Result<Text<'a>, Reject> {
        let Some(model) = &e.template_model else {
            return Ok(text);
        };
        match merge::render_handlebars(&text, model) {
            Ok(Cow::Borrowed(_)) => Ok(text),
            Ok(Cow::Owned(s)) => Ok(Text::Owned(s)),
            Err(m) => Err(Reject::MissingData {
                token: m.token,
                recipient: first.clone(),
                location: if label.is_empty() {
                    w.to_string()
                } else {
                    format!("{w} of {label}")
                },
            }),
        }
    };
    if let Some(s) = e.subject.clone() {
        u.subject = Some(match render(s.into(), "Subject")? {
            Text::Borrowed(b) => Cow::Borrowed(b),
            other => Cow::Owned(other.to_string()),
        });
    }
    if let Some(h) = e.html_body {
        u.html.push(render(h.0, "HtmlBody")?);
    }
    if let Some(t) = e.text_body {
        u.text.push(render(t.0, "TextBody")?);
    }
    u.recipients = recipients;
    u.label = label;
    Ok(u)
}

fn strip_one(msg: &mut Value, suppressed: &HashSet<String>) -> Result<(usize, usize), Reject> {
    let mut removed = 0;
    let mut left = 0;
    let mut to_left = 0;
    let Some(o) = msg.as_object_mut() else {
        return Err(Reject::Malformed(
            "invalid email body: not an object".into(),
        ));
    };
    for field in ["To", "Cc", "Bcc"] {
        let Some(list) = o.get(field).and_then(Value::as_str) else {
            continue;
        };
        let (kept, r, l) = filter_list(list, suppressed);
        removed += r;
        left += l;
        if field == "To" {
            to_left = l;
        }
        if l == 0 {
            o.remove(field);
        } else {
            o.insert(field.to_string(), Value::String(kept));
        }
    }
    if left > 0 && to_left == 0 {
        return Err(Reject::Malformed(
            "cannot strip: every To recipient of a message is suppressed".into(),
        ));
    }
    Ok((removed, left))
}

/// Removes suppressed recipients from `To`, `Cc` and `Bcc`; in a batch, a message left with no
/// recipient is dropped.
pub(crate) fn strip(req: &Req<'_>, suppressed: &HashSet<String>) -> Result<Stripped, Reject> {
    let mut v: Value = req.json("email")?;
    let ep = endpoint(req);
    let (removed, remaining) = if ep.batch() {
        let list = if ep == Endpoint::TemplateBatch {
            v.get_mut("Messages").and_then(Value::as_array_mut)
        } else {
            v.as_array_mut()
        };
        let Some(list) = list else {
            return Err(Reject::Malformed(
                "invalid email body: a batch is a list".into(),
            ));
        };
        let mut removed = 0;
        let mut remaining = 0;
        let mut keep = Vec::with_capacity(list.len());
        for mut m in list.drain(..) {
            let (r, l) = strip_one(&mut m, suppressed)?;
            removed += r;
            remaining += l;
            if l > 0 {
                keep.push(m);
            }
        }
        *list = keep;
        (removed, remaining)
    } else {
        strip_one(&mut v, suppressed)?
    };
    Stripped::json(&v, removed, remaining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Dialect;
    use bytes::Bytes;

    fn route() -> crate::http::Route {
        crate::http::translate::test_route(Dialect::Postmark)
    }

    fn with<T>(path: &str, body: &str, f: impl FnOnce(&Req<'_>) -> T) -> T {
        let route = route();
        let headers = http::HeaderMap::new();
        let body = Bytes::from(body.to_string());
        f(&Req {
            path,
            headers: &headers,
            body: &body,
            route: &route,
        })
    }

    #[test]
    fn parses_single_and_batch() {
        with(
            "/email",
            r#"{"From":"News <n@s.test>","To":"a@x.test, \"B, b\" <b@x.test>","Subject":"Hi",
               "HtmlBody":"<p>x</p>","Tag":"spring","Metadata":{"tenant_id":"t1"}}"#,
            |r| {
                let u = parse(r).unwrap();
                assert_eq!(u[0].recipients, ["a@x.test", "b@x.test"]);
                assert_eq!(u[0].campaign.as_deref(), Some("spring"));
                assert_eq!(u[0].tenant.as_deref(), Some("t1"));
                assert_eq!(u[0].sender, "n@s.test");
                assert_eq!(u[0].names, ["News"]);
            },
        );
        with(
            "/email/batch",
            r#"[{"From":"n@s.test","To":"a@x.test","Metadata":{"campaign_id":"c"},"Tag":"t"},
                {"From":"n@s.test","To":"b@x.test","TemplateModel":{},"Subject":"Hi {{name}}"}]"#,
            |r| {
                let e = parse(r).unwrap_err();
                assert_eq!(
                    e,
                    Reject::MissingData {
                        token: "{{name}}".into(),
                        recipient: "b@x.test".into(),
                        location: "Subject of message [1]".into()
                    }
                );
            },
        );
    }

    #[test]
    fn template_sends_check_envelope_and_model() {
        with(
            "/email/batchWithTemplates",
            r#"{"Messages":[{"From":"n@s.test","To":"a@x.test","TemplateAlias":"welcome",
                "TemplateModel":{"name":"Anna","items":[{"t":"{{oops}}"}]}}]}"#,
            |r| {
                let u = parse(r).unwrap();
                assert_eq!(u[0].recipients, ["a@x.test"]);
                assert!(u[0].text.iter().any(|t| &**t == "{{oops}}"));
                let s: HashSet<String> = ["a@x.test".to_string()].into();
                let st = strip(r, &s).unwrap();
                assert_eq!((st.removed, st.remaining), (1, 0));
            },
        );
        assert_eq!(
            Endpoint::of("/email/withtemplate/"),
            Some(Endpoint::Template)
        );
        assert_eq!(Endpoint::of("/email/outbound"), None);
    }

    #[test]
    fn strips_lists() {
        let s: HashSet<String> = ["b@x.test".to_string()].into();
        with(
            "/email/batch",
            r#"[{"To":"a@x.test, b@x.test"},{"To":"b@x.test"}]"#,
            |r| {
                let st = strip(r, &s).unwrap();
                assert_eq!((st.removed, st.remaining), (2, 1));
                let v: Value = serde_json::from_slice(&st.body).unwrap();
                assert_eq!(v, serde_json::json!([{"To": "a@x.test"}]));
            },
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512), k in 0usize..4) {
            let route = route();
            let headers = http::HeaderMap::new();
            let body = Bytes::from(b);
            let path = ["/email", "/email/batch", "/email/withTemplate", "/email/batchWithTemplates"][k];
            let req = Req { path, headers: &headers, body: &body, route: &route };
            let _ = parse(&req);
            let _ = strip(&req, &HashSet::new());
        }

        #[test]
        fn arbitrary_fields_never_panic(to in ".{0,64}", subject in ".{0,64}") {
            let body = serde_json::json!({"To": to, "Subject": subject, "TemplateModel": {"a": subject}});
            with("/email", &body.to_string(), |r| { let _ = parse(r); });
        }
    }
}
