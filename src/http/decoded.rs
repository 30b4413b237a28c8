//! Large request fields (HTML and text bodies in JSON strings or urlencoded forms) decoded once
//! and then shared.
//!
//! Through a send API a campaign posts the same template body in request after request; only the
//! recipients change. Decoding a 10–100 KB field (escapes, a copy, an allocation) is then the
//! largest part of judging a request. A JSON string without escapes is borrowed from the request
//! body; a large field with escapes is decoded once per worker thread and shared afterwards, keyed
//! by the 128-bit xxh3 hash of its encoded form and its encoding (see [`crate::shared_text`]: the
//! memo is bounded in bytes and lives in the thread, so workers never contend for it).

use serde::de::Error as _;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

/// Strings with escapes shorter than this are decoded every time.
const MEMO_MIN: usize = 1024;
/// Strings longer than this are decoded every time (they would crowd out the rest).
const MEMO_MAX: usize = 1024 * 1024;

/// Text of a request field: borrowed from the body, decoded for this request, or shared with
/// earlier requests of the same template.
#[derive(Debug, Clone)]
pub(crate) enum Text<'a> {
    /// Borrowed from the request body.
    Borrowed(&'a str),
    /// Decoded or rendered for this request.
    Owned(String),
    /// Decoded once and shared by every request with the same escaped text.
    Shared(Arc<str>),
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text::Borrowed("")
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl<'a> From<Cow<'a, str>> for Text<'a> {
    fn from(c: Cow<'a, str>) -> Self {
        match c {
            Cow::Borrowed(s) => Text::Borrowed(s),
            Cow::Owned(s) => Text::Owned(s),
        }
    }
}

/// A JSON string field holding a body. Strict JSON: raw control characters inside the string are
/// a malformed body, as they are for the service itself.
#[derive(Debug, Default)]
pub(crate) struct JsonText<'a>(pub Text<'a>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = serde::Deserialize::deserialize(d)?;
        let literal = raw.get();
        let inner = literal
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or_else(|| D::Error::custom("expected a string"))?;
        if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
            return Ok(JsonText(Text::Borrowed(inner)));
        }
        if !(MEMO_MIN..=MEMO_MAX).contains(&inner.len()) {
            return decode(literal).map(|s| JsonText(Text::Owned(s)));
        }
        shared(Encoding::Json, literal.as_bytes(), || decode(literal))
            .map(|s| JsonText(Text::Shared(s)))
    }
}

/// How a field was encoded in the request (part of the memo key: the same bytes decode
/// differently).
#[derive(Clone, Copy)]
enum Encoding {
    Json = 1,
    Form = 2,
}

/// The decoded text of `raw`, from this thread's memo or from `decode`.
fn shared<E>(
    encoding: Encoding,
    raw: &[u8],
    decode: impl FnOnce() -> Result<String, E>,
) -> Result<Arc<str>, E> {
    let key = xxhash_rust::xxh3::xxh3_128_with_seed(raw, encoding as u64);
    crate::shared_text::get_or_decode(key, decode)
}

/// The fields of an `application/x-www-form-urlencoded` body, decoded as browsers and
/// `form_urlencoded` do (`+` is a space, `%XX` a byte, invalid UTF-8 replaced), in order. A large
/// value is decoded once per thread and shared.
pub(crate) fn form_fields(body: &[u8]) -> Vec<(String, Text<'static>)> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = form_decode(name);
            let value = if (MEMO_MIN..=MEMO_MAX).contains(&value.len()) {
                let text = shared(Encoding::Form, value, || {
                    Ok::<_, std::convert::Infallible>(form_decode(value))
                })
                .unwrap_or_else(|never| match never {});
                Text::Shared(text)
            } else {
                Text::Owned(form_decode(value))
            };
            (name, value)
        })
        .collect()
}

impl Text<'static> {
    /// The text as the bytes of a form field, sharing a shared text's memory.
    pub(crate) fn to_bytes(&self) -> bytes::Bytes {
        match self {
            Text::Shared(s) => bytes::Bytes::from_owner(SharedBytes(s.clone())),
            other => bytes::Bytes::copy_from_slice(other.as_bytes()),
        }
    }
}

/// One name or value decoded: `+` is a space, `%XX` a byte (an invalid escape stays as written),
/// invalid UTF-8 is replaced — `form_urlencoded`'s rules.
fn form_decode(raw: &[u8]) -> String {
    let spaced: Cow<'_, [u8]> = if memchr::memchr(b'+', raw).is_some() {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    let bytes: Cow<'_, [u8]> = percent_encoding::percent_decode(&spaced).into();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Shared decoded text as the bytes of a form field.
struct SharedBytes(Arc<str>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn decode<E: serde::de::Error>(literal: &str) -> Result<String, E> {
    serde_json::from_str(literal).map_err(E::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct T<'a> {
        #[serde(borrow)]
        v: JsonText<'a>,
    }

    #[test]
    fn decodes_escapes_and_borrows_plain_strings() {
        let t: T<'_> = serde_json::from_slice(br#"{"v":"plain"}"#).unwrap();
        assert!(matches!(t.v.0, Text::Borrowed("plain")));
        let t: T<'_> = serde_json::from_slice(br#"{"v":"a\n\"b\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(&*t.v.0, "a\n\"b\u{e9}\u{1f600}");
        assert!(matches!(t.v.0, Text::Owned(_)));
        let t: T<'_> = serde_json::from_slice(br#"{"v" :  "spaced" }"#).unwrap();
        assert_eq!(&*t.v.0, "spaced");
    }

    #[test]
    fn refuses_what_is_not_a_valid_json_string() {
        for bad in [
            &br#"{"v":"\ud800"}"#[..],
            br#"{"v":[1]}"#,
            br#"{"v":12}"#,
            br#"{"v":null}"#,
            b"{\"v\":\"\xff\"}",
            b"{\"v\":\"raw\ncontrol\"}",
            br#"{"v":"\q"}"#,
            br#"{"v":"unterminated}"#,
        ] {
            assert!(
                serde_json::from_slice::<T<'_>>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn large_bodies_with_escapes_are_decoded_once_and_shared() {
        let html = "<p class=\"x\">Hello Anna,</p>\n".repeat(100);
        let body = serde_json::json!({ "v": html }).to_string();
        let a: T<'_> = serde_json::from_str(&body).unwrap();
        let b: T<'_> = serde_json::from_str(&body).unwrap();
        let (Text::Shared(a), Text::Shared(b)) = (&a.v.0, &b.v.0) else {
            panic!("large escaped bodies are shared");
        };
        assert!(Arc::ptr_eq(a, b));
        assert_eq!(&**a, html);
        // Another body is another entry, decoded on its own.
        let other = serde_json::json!({ "v": html.replace("Anna", "Bert") }).to_string();
        let c: T<'_> = serde_json::from_str(&other).unwrap();
        assert_eq!(&*c.v.0, html.replace("Anna", "Bert"));
    }

    #[test]
    fn form_fields_decode_like_form_urlencoded_and_share_large_values() {
        let html = "<p class=\"x\">Hello Anna & Bert, 100% sure?</p>\n".repeat(60);
        let body = serde_urlencoded::to_string([
            ("from", "Shop <news@shop.test>"),
            ("to", "a+b@x.test"),
            ("html", html.as_str()),
            ("empty", ""),
            ("h:X-Tag", "caf\u{e9}"),
        ])
        .unwrap();
        let body = format!("{body}&novalue&&bad=%zz%4&lossy=%ff+x&eq=a=b%3Dc&=anon");
        let got = form_fields(body.as_bytes());
        let want: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
        assert_eq!(
            got.iter()
                .map(|(n, v)| (n.clone(), v.to_string()))
                .collect::<Vec<_>>(),
            want
        );
        let again = form_fields(body.as_bytes());
        let (Text::Shared(a), Text::Shared(b)) = (&got[2].1, &again[2].1) else {
            panic!("the large value is shared");
        };
        assert!(Arc::ptr_eq(a, b));
        assert_eq!(&got[2].1.to_bytes()[..], html.as_bytes());
        assert_eq!(got[2].1.to_bytes().as_ptr(), a.as_ptr());
        // The same bytes as a JSON string are another entry.
        let json = serde_json::json!({ "v": html }).to_string();
        let t: T<'_> = serde_json::from_str(&json).unwrap();
        assert_eq!(&*t.v.0, html);
    }

    proptest::proptest! {
        #[test]
        fn form_fields_agree_with_serde_urlencoded(
            body in proptest::collection::vec(
                proptest::sample::select(b"ab=&+%2F3ez\xc3\xa9\xff ".to_vec()),
                0..200,
            ),
            big in 0usize..3,
        ) {
            let mut body = body;
            // Sometimes a value long enough for the memo.
            for _ in 0..big {
                body.extend_from_slice(b"&html=");
                body.extend(std::iter::repeat_n(b"%3Cp%3E+x+".iter().copied(), 120).flatten());
            }
            let got: Vec<(String, String)> = form_fields(&body)
                .into_iter()
                .map(|(n, v)| (n, v.to_string()))
                .collect();
            let want: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
