//! SendGrid v3 `POST /v3/mail/send`: one message per personalization.
//!
//! Merge tags: with `template_id` or any `dynamic_template_data`, `{{name}}` tags are rendered
//! by SendGrid from each personalization's `dynamic_template_data`; with `substitutions`, every
//! key any personalization defines is a tag the others must define too. A tag without a value
//! for a personalization is [`Reject::MissingData`]; otherwise the content is checked as each
//! personalization's recipients would see it.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;

use super::merge;
use super::translate::{first_field, is_suppressed, JsonText, Reject, Req, Stripped, Text, Unit};

#[derive(Deserialize)]
struct Mail<'a> {
    #[serde(borrow, default)]
    personalizations: Vec<Personalization<'a>>,
    #[serde(borrow, default)]
    from: Option<Addr<'a>>,
    #[serde(borrow, default)]
    reply_to: Option<Addr<'a>>,
    #[serde(borrow, default)]
    reply_to_list: Vec<Addr<'a>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Vec<Part<'a>>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    custom_args: Map<String, Value>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    template_id: Option<String>,
}

#[derive(Deserialize)]
struct Personalization<'a> {
    #[serde(borrow, default)]
    to: Vec<Addr<'a>>,
    #[serde(borrow, default)]
    cc: Vec<Addr<'a>>,
    #[serde(borrow, default)]
    bcc: Vec<Addr<'a>>,
    #[serde(borrow, default)]
    from: Option<Addr<'a>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(default)]
    substitutions: Map<String, Value>,
    #[serde(default)]
    dynamic_template_data: Option<Value>,
    #[serde(default)]
    custom_args: Map<String, Value>,
    #[serde(default)]
    headers: Map<String, Value>,
}

#[derive(Deserialize)]
struct Addr<'a> {
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    value: JsonText<'a>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Translates a mail/send request: one unit per personalization.
pub(crate) fn parse<'a>(req: &Req<'a>) -> Result<Vec<Unit<'a>>, Reject> {
    let mail: Mail<'a> = req.json("mail/send")?;
    if mail.personalizations.is_empty() {
        return Err(Reject::Malformed(
            "invalid mail/send body: personalizations is empty".into(),
        ));
    }
    let Mail {
        personalizations,
        from,
        reply_to,
        reply_to_list,
        subject,
        content,
        categories,
        custom_args,
        headers,
        template_id,
    } = mail;
    let dynamic = template_id.is_some()
        || personalizations
            .iter()
            .any(|p| p.dynamic_template_data.is_some());
    let sub_keys: Vec<&str> = {
        let mut k: Vec<&str> = personalizations
            .iter()
            .flat_map(|p| p.substitutions.keys().map(String::as_str))
            .collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    let per_recipient = dynamic || !sub_keys.is_empty();
    let empty = Value::Object(Map::new());
    let n = personalizations.len();
    let mut units = Vec::with_capacity(n);
    let mut content = Some(content);
    for (i, p) in personalizations.iter().enumerate() {
        let label = if n > 1 {
            format!("personalizations[{i}]")
        } else {
            String::new()
        };
        let recipients: Vec<String> =
            p.to.iter()
                .chain(&p.cc)
                .chain(&p.bcc)
                .map(|a| a.email.to_string())
                .collect();
        let first = recipients.first().cloned().unwrap_or_default();
        let sender_addr = p.from.as_ref().or(from.as_ref());
        let lookup = |f: &str| -> Option<String> {
            if let Some(k) = f.strip_prefix("custom_args.") {
                return p
                    .custom_args
                    .get(k)
                    .or_else(|| custom_args.get(k))
                    .and_then(text_of);
            }
            if let Some(k) = f.strip_prefix("headers.") {
                return p
                    .headers
                    .get(k)
                    .or_else(|| headers.get(k))
                    .and_then(text_of);
            }
            match f {
                "categories" => categories.first().cloned(),
                "template_id" => template_id.clone(),
                _ => None,
            }
        };
        let mut unit = Unit {
            label: label.clone(),
            sender: sender_addr.map(|a| a.email.to_string()).unwrap_or_default(),
            recipients,
            campaign: first_field(&req.route.campaign_fields, lookup),
            tenant: first_field(&req.route.tenant_fields, lookup),
            ..Unit::default()
        };
        unit.names.extend(sender_addr.and_then(|a| a.name.clone()));
        unit.names
            .extend(reply_to.as_ref().and_then(|a| a.name.clone()));
        unit.names
            .extend(reply_to_list.iter().filter_map(|a| a.name.clone()));
        for (k, v) in headers.iter().chain(&p.headers) {
            if let Some(v) = text_of(v) {
                unit.headers.push((Cow::Owned(k.clone()), Cow::Owned(v)));
            }
        }
        let subj = p.subject.as_ref().or(subject.as_ref());
        let where_ = |w: &str| {
            if label.is_empty() {
                w.to_string()
            } else {
                format!("{w} of {label}")
            }
        };
        if !per_recipient {
            unit.subject = subj.cloned();
            // The content is the same for every personalization: judge it once.
            if let Some(parts) = content.take() {
                for part in parts {
                    push_part(&mut unit, &part.kind, part.value.0);
                }
            }
            units.push(unit);
            continue;
        }
        // Rendered per personalization, as SendGrid will.
        let subs: Vec<(&str, Cow<'_, str>)> = p
            .substitutions
            .iter()
            .map(|(k, v)| (k.as_str(), Cow::Owned(text_of(v).unwrap_or_default())))
            .collect();
        let data = p.dynamic_template_data.as_ref().unwrap_or(&empty);
        let render = |text: &str, w: &str| -> Result<String, Reject> {
            for k in &sub_keys {
                if !p.substitutions.contains_key(*k) && text.contains(k) {
                    return Err(Reject::MissingData {
                        token: k.to_string(),
                        recipient: first.clone(),
                        location: where_(w),
                    });
                }
            }
            let t = merge::substitute(text, &subs);
            let t = if dynamic {
                merge::render_handlebars(&t, data)
                    .map_err(|m| Reject::MissingData {
                        token: m.token,
                        recipient: first.clone(),
                        location: where_(w),
                    })?
                    .into_owned()
            } else {
                t.into_owned()
            };
            Ok(t)
        };
        if let Some(s) = subj {
            unit.subject = Some(Cow::Owned(render(s, "subject")?));
        }
        if let Some(parts) = &content {
            for part in parts {
                let w = if part.kind.eq_ignore_ascii_case("text/plain") {
                    "text"
                } else {
                    "html"
                };
                let v = render(&part.value.0, w)?;
                push_part(&mut unit, &part.kind, Text::Owned(v));
            }
        }
        units.push(unit);
    }
    Ok(units)
}

fn push_part<'a>(unit: &mut Unit<'a>, kind: &str, value: Text<'a>) {
    if kind.eq_ignore_ascii_case("text/plain") {
        unit.text.push(value);
    } else {
        unit.html.push(value);
    }
}

/// Removes suppressed recipients from every personalization; a personalization left with no
/// recipient at all is dropped.
pub(crate) fn strip(req: &Req<'_>, suppressed: &HashSet<String>) -> Result<Stripped, Reject> {
    let mut v: Value = req.json("mail/send")?;
    let mut removed = 0;
    let mut remaining = 0;
    let Some(ps) = v.get_mut("personalizations").and_then(Value::as_array_mut) else {
        return Err(Reject::Malformed(
            "invalid mail/send body: personalizations is not a list".into(),
        ));
    };
    let mut keep = Vec::with_capacity(ps.len());
    for mut p in ps.drain(..) {
        let mut left = 0;
        let mut to_left = 0;
        for field in ["to", "cc", "bcc"] {
            if let Some(list) = p.get_mut(field).and_then(Value::as_array_mut) {
                let before = list.len();
                list.retain(|a| {
                    !a.get("email")
                        .and_then(Value::as_str)
                        .is_some_and(|e| is_suppressed(suppressed, e))
                });
                removed += before - list.len();
                left += list.len();
                if field == "to" {
                    to_left = list.len();
                }
                if list.is_empty() {
                    if let Some(o) = p.as_object_mut() {
                        o.remove(field);
                    }
                }
            }
        }
        if left == 0 {
            continue;
        }
        if to_left == 0 {
            return Err(Reject::Malformed(
                "cannot strip: every \"to\" recipient of a personalization is suppressed".into(),
            ));
        }
        remaining += left;
        keep.push(p);
    }
    *ps = keep;
    Stripped::json(&v, removed, remaining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Dialect;
    use bytes::Bytes;

    fn route() -> crate::http::Route {
        crate::http::translate::test_route(Dialect::Sendgrid)
    }

    fn run(body: &str) -> Result<Vec<Unit<'static>>, Reject> {
        let route = route();
        let headers = http::HeaderMap::new();
        let body = Bytes::from(body.to_string());
        let req = Req {
            path: "/v3/mail/send",
            headers: &headers,
            body: &body,
            route: &route,
        };
        parse(&req).map(|units| {
            units
                .into_iter()
                .map(|u| Unit {
                    label: u.label,
                    sender: u.sender,
                    recipients: u.recipients,
                    campaign: u.campaign,
                    tenant: u.tenant,
                    subject: u.subject.map(|s| Cow::Owned(s.into_owned())),
                    text: u.text.iter().map(|s| Text::Owned(s.to_string())).collect(),
                    html: u.html.iter().map(|s| Text::Owned(s.to_string())).collect(),
                    ..Unit::default()
                })
                .collect()
        })
    }

    #[test]
    fn parses_identity_and_content() {
        let u = run(r#"{"personalizations":[{"to":[{"email":"a@x.test"}],"cc":[{"email":"c@x.test"}]}],
            "from":{"email":"n@s.test","name":"News"},"subject":"Hi","categories":["spring"],
            "content":[{"type":"text/plain","value":"t"},{"type":"text/html","value":"<p>h</p>"}]}"#)
        .unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].recipients, ["a@x.test", "c@x.test"]);
        assert_eq!(u[0].campaign.as_deref(), Some("spring"));
        assert_eq!(u[0].sender, "n@s.test");
        assert_eq!(u[0].text[0], "t");
        let u = run(r#"{"personalizations":[{"to":[{"email":"a@x.test"}],"custom_args":{"campaign_id":"c1"}}],
            "custom_args":{"campaign_id":"c0","tenant_id":"t"},"categories":["x"]}"#)
        .unwrap();
        assert_eq!(u[0].campaign.as_deref(), Some("c1"));
        assert_eq!(u[0].tenant.as_deref(), Some("t"));
    }

    #[test]
    fn merge_data_is_rendered_or_missing() {
        let ok = run(r#"{"template_id":"d-1","personalizations":[
            {"to":[{"email":"a@x.test"}],"dynamic_template_data":{"first":"Anna"}},
            {"to":[{"email":"b@x.test"}],"dynamic_template_data":{"first":"Bob"}}],
            "subject":"Hi {{first}}","content":[{"type":"text/html","value":"<p>{{first}}</p>"}]}"#)
        .unwrap();
        assert_eq!(ok[1].subject.as_deref(), Some("Hi Bob"));
        assert_eq!(ok[1].label, "personalizations[1]");
        let e = run(r#"{"template_id":"d-1","personalizations":[
            {"to":[{"email":"a@x.test"}],"dynamic_template_data":{"first":"Anna"}},
            {"to":[{"email":"b@x.test"}],"dynamic_template_data":{}}],
            "content":[{"type":"text/html","value":"<p>{{first}}</p>"}]}"#)
        .unwrap_err();
        assert_eq!(
            e,
            Reject::MissingData {
                token: "{{first}}".into(),
                recipient: "b@x.test".into(),
                location: "html of personalizations[1]".into()
            }
        );
        let e = run(r#"{"personalizations":[
            {"to":[{"email":"a@x.test"}],"substitutions":{"-name-":"Anna"}},
            {"to":[{"email":"b@x.test"}]}], "subject":"Hi -name-"}"#)
        .unwrap_err();
        assert!(matches!(e, Reject::MissingData { ref token, .. } if token == "-name-"));
    }

    #[test]
    fn malformed_bodies() {
        assert!(matches!(run("{"), Err(Reject::Malformed(_))));
        assert!(matches!(
            run(r#"{"personalizations":[]}"#),
            Err(Reject::Malformed(_))
        ));
        assert!(matches!(
            run(r#"{"personalizations":[{"to":[{"name":"x"}]}]}"#),
            Err(Reject::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let route = route();
            let headers = http::HeaderMap::new();
            let body = Bytes::from(b);
            let req = Req { path: "/v3/mail/send", headers: &headers, body: &body, route: &route };
            let _ = parse(&req);
            let _ = strip(&req, &HashSet::new());
        }

        #[test]
        fn arbitrary_strings_in_fields_never_panic(s in ".{0,64}", t in ".{0,64}") {
            let body = serde_json::json!({"personalizations":[{"to":[{"email": s}],
                "dynamic_template_data": {"a": t}}], "subject": t, "content":[{"type":"text/html","value": s}]});
            let _ = run(&body.to_string());
        }
    }
}
