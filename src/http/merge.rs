//! Merge tags the email service renders itself: find them, check that every recipient has a
//! value for each, and render a copy of the text "as the recipient would see it" so the ordinary
//! placeholder check only sees what is left unrendered.

use serde_json::Value;
use std::borrow::Cow;

/// A tag used in the content without a value for the recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    /// The tag as written (`{{first_name}}`, `%recipient.name%`, `-name-`).
    pub token: String,
}

/// The value of a dotted path (`user.first_name`, `items.0`) in JSON data; `None` when absent
/// or null.
pub(crate) fn lookup<'v>(data: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = data;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
}

/// How a value shows in rendered text.
pub(crate) fn display(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Number(n) => Cow::Owned(n.to_string()),
        // Lists and objects feed block helpers; they render nothing by themselves.
        Value::Array(_) | Value::Object(_) => Cow::Borrowed(""),
    }
}

/// What one `{{…}}` expression is.
enum Expr<'t> {
    /// A plain value reference: `{{name}}`, `{{{name}}}`, `{{ user.name }}`.
    Value(&'t str),
    /// Block open/close, `else`, comments, partials, helpers with arguments, `this`/`@index`
    /// references: rendered by the service's template logic, not a plain value.
    Control,
}

fn classify(inner: &str) -> Expr<'_> {
    let e = inner
        .trim()
        .trim_start_matches('~')
        .trim_end_matches('~')
        .trim();
    if e.is_empty() {
        return Expr::Control;
    }
    let first = e.as_bytes()[0];
    if matches!(first, b'#' | b'/' | b'^' | b'!' | b'>' | b'@' | b'.' | b'&')
        || e == "else"
        || e.starts_with("else ")
        || e.starts_with("this")
        || e.contains(char::is_whitespace)
        || e.contains('"')
        || e.contains('(')
    {
        return Expr::Control;
    }
    Expr::Value(e)
}

/// Renders handlebars/mustache style `{{name}}` tags (SendGrid dynamic templates, Postmark
/// template models) from `data`. A plain value tag without a value is `Missing`; block helpers
/// and other logic render as nothing. Text without `{{` comes back borrowed.
pub(crate) fn render_handlebars<'t>(text: &'t str, data: &Value) -> Result<Cow<'t, str>, Missing> {
    if !text.contains("{{") {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let triple = after.starts_with("{{{");
        let (start, close) = if triple { (3, "}}}") } else { (2, "}}") };
        let Some(end) = after[start..].find(close) else {
            // An unclosed tag: leave the rest as it is for the leak check.
            out.push_str(after);
            return Ok(Cow::Owned(out));
        };
        let inner = &after[start..start + end];
        let token = &after[..start + end + close.len()];
        match classify(inner) {
            Expr::Control => {}
            Expr::Value(path) => match lookup(data, path) {
                Some(v) => out.push_str(&display(v)),
                None => {
                    return Err(Missing {
                        token: token.to_string(),
                    })
                }
            },
        }
        rest = &after[start + end + close.len()..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Replaces literal substitution keys (SendGrid `substitutions`: `-name-`, `%name%`, any
/// string) by their values. Text without any key comes back borrowed.
pub(crate) fn substitute<'t>(text: &'t str, subs: &[(&str, Cow<'_, str>)]) -> Cow<'t, str> {
    let mut cur: Cow<'t, str> = Cow::Borrowed(text);
    for (k, v) in subs {
        if !k.is_empty() && cur.contains(k) {
            cur = Cow::Owned(cur.replace(k, v));
        }
    }
    cur
}

/// Renders Mailgun's `%recipient.name%` tags from one recipient's variables (`None` when the
/// request has none for this recipient).
pub(crate) fn render_mailgun<'t>(
    text: &'t str,
    vars: Option<&Value>,
) -> Result<Cow<'t, str>, Missing> {
    const OPEN: &str = "%recipient.";
    if !text.contains(OPEN) {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(OPEN) {
        out.push_str(&rest[..open]);
        let after = &rest[open + OPEN.len()..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(after.len());
        if end == 0 || !after[end..].starts_with('%') {
            // Not a tag (`%recipient.` followed by something else): keep the text.
            out.push_str(OPEN);
            rest = after;
            continue;
        }
        let name = &after[..end];
        match vars.and_then(|v| lookup(v, name)) {
            Some(v) => out.push_str(&display(v)),
            None => {
                return Err(Missing {
                    token: format!("{OPEN}{name}%"),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_handlebars() {
        let d = json!({"first_name": "Anna", "user": {"n": 3}, "items": [1]});
        let r = render_handlebars(
            "Hi {{first_name}}, {{{ user.n }}} {{#each items}}x{{/each}}",
            &d,
        )
        .unwrap();
        assert_eq!(r, "Hi Anna, 3 x");
        let e = render_handlebars("Hi {{ last_name }}", &d).unwrap_err();
        assert_eq!(e.token, "{{ last_name }}");
        assert!(matches!(
            render_handlebars("plain", &d),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(render_handlebars("a {{x", &d).unwrap(), "a {{x");
    }

    #[test]
    fn renders_mailgun_and_substitutions() {
        let v = json!({"name": "Bob"});
        assert_eq!(
            render_mailgun("Hi %recipient.name%!", Some(&v)).unwrap(),
            "Hi Bob!"
        );
        assert_eq!(
            render_mailgun("Hi %recipient.nick%", Some(&v))
                .unwrap_err()
                .token,
            "%recipient.nick%"
        );
        assert_eq!(
            render_mailgun("50%recipient.x", None).unwrap(),
            "50%recipient.x"
        );
        let subs = [("-name-", Cow::Borrowed("Anna"))];
        assert_eq!(substitute("Hi -name-", &subs), "Hi Anna");
    }
}
