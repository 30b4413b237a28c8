//! sendguard's own raw endpoint `POST /v1/messages`: the body is the RFC 5322 message, the
//! envelope is in headers — `X-Sendguard-From` (the sender, `<>` for the null sender),
//! `X-Sendguard-To` (comma list, repeatable), optional `X-Sendguard-Campaign` and
//! `X-Sendguard-Tenant` (the message's own headers are the fallback, as on the SMTP side).
//! What passes is forwarded as is; strip mode rewrites only `X-Sendguard-To`.

use http::{HeaderName, HeaderValue};
use std::collections::HashSet;

use super::translate::{filter_list, first_field, split_addresses, Reject, Req, Stripped, Unit};

const FROM: &str = "x-sendguard-from";
const TO: &str = "x-sendguard-to";

fn header_values<'r>(req: &'r Req<'_>, name: &'r str) -> impl Iterator<Item = &'r str> + 'r {
    req.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// Translates a raw request: one unit carrying the whole message.
pub(crate) fn parse<'a>(req: &Req<'a>) -> Result<Vec<Unit<'a>>, Reject> {
    let Some(from) = req.headers.get(FROM) else {
        return Err(Reject::Malformed("missing X-Sendguard-From header".into()));
    };
    let from = from
        .to_str()
        .map_err(|_| Reject::Malformed("X-Sendguard-From is not visible ASCII".into()))?;
    let sender = super::translate::address_of(from).trim_matches(['<', '>']);
    let mut recipients = Vec::new();
    for v in req.headers.get_all(TO) {
        let v = v
            .to_str()
            .map_err(|_| Reject::Malformed("X-Sendguard-To is not visible ASCII".into()))?;
        recipients.extend(split_addresses(v).into_iter().map(|(_, a)| a.to_string()));
    }
    if recipients.is_empty() {
        return Err(Reject::Malformed(
            "missing X-Sendguard-To header (comma list of recipients)".into(),
        ));
    }
    if req.body.is_empty() {
        return Err(Reject::Malformed("empty message body".into()));
    }
    let lookup = |f: &str| header_values(req, f).next().map(str::to_string);
    Ok(vec![Unit {
        sender: sender.to_string(),
        recipients,
        campaign: first_field(&req.route.campaign_fields, lookup),
        tenant: first_field(&req.route.tenant_fields, lookup),
        mime: Some(req.body.clone()),
        ..Unit::default()
    }])
}

/// Rewrites `X-Sendguard-To` without the suppressed recipients; the body is not touched.
pub(crate) fn strip(req: &Req<'_>, suppressed: &HashSet<String>) -> Result<Stripped, Reject> {
    let joined = header_values(req, TO).collect::<Vec<_>>().join(", ");
    let (kept, removed, remaining) = filter_list(&joined, suppressed);
    let value = HeaderValue::from_str(&kept)
        .map_err(|_| Reject::Malformed("X-Sendguard-To is not visible ASCII".into()))?;
    Ok(Stripped {
        body: req.body.clone(),
        headers: vec![(HeaderName::from_static(TO), value)],
        removed,
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Dialect;
    use bytes::Bytes;

    #[test]
    fn envelope_from_headers() {
        let route = crate::http::translate::test_route(Dialect::Raw);
        let mut headers = http::HeaderMap::new();
        headers.insert(FROM, HeaderValue::from_static("<n@s.test>"));
        headers.append(TO, HeaderValue::from_static("a@x.test, b@x.test"));
        headers.append(TO, HeaderValue::from_static("c@x.test"));
        headers.insert("x-sendguard-campaign", HeaderValue::from_static("spring"));
        let body = Bytes::from_static(b"Subject: hi\r\n\r\nbody\r\n");
        let req = Req {
            path: "/v1/messages",
            headers: &headers,
            body: &body,
            route: &route,
        };
        let u = parse(&req).unwrap();
        assert_eq!(u[0].sender, "n@s.test");
        assert_eq!(u[0].recipients, ["a@x.test", "b@x.test", "c@x.test"]);
        assert_eq!(u[0].campaign.as_deref(), Some("spring"));
        let s: HashSet<String> = ["b@x.test".to_string()].into();
        let st = strip(&req, &s).unwrap();
        assert_eq!(st.headers[0].1, "a@x.test, c@x.test");
        assert_eq!((st.removed, st.remaining), (1, 2));
        assert_eq!(st.body, body);
        headers.remove(TO);
        let req = Req {
            path: "/v1/messages",
            headers: &headers,
            body: &body,
            route: &route,
        };
        assert!(matches!(parse(&req), Err(Reject::Malformed(_))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_and_bytes_never_panic(
            from in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            to in proptest::collection::vec(proptest::num::u8::ANY, 0..128),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let route = crate::http::translate::test_route(Dialect::Raw);
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&from) {
                headers.insert(FROM, v);
            }
            if let Ok(v) = HeaderValue::from_bytes(&to) {
                headers.insert(TO, v);
            }
            let body = Bytes::from(body);
            let req = Req { path: "/v1/messages", headers: &headers, body: &body, route: &route };
            let _ = parse(&req);
            let s: HashSet<String> = ["a@x.test".to_string()].into();
            let _ = strip(&req, &s);
        }
    }
}
