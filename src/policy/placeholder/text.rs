//! The text rules: merge-tag dialects and failed substitutions in one decoded string.

use super::names::{
    is_field_like, is_known_element, is_spaced_field, FAILURE_VALUES, STRONG_GREETINGS,
    WEAK_GREETINGS,
};
use super::{Collector, Detector, Family, Rule};
use crate::model::Location;
use memchr::memmem;

/// Where greetings are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Greet {
    /// At the start of every line (plain text, display names).
    Lines,
    /// At the start of the text only (an HTML block).
    Start,
    /// At the start, plus `undefined` anywhere (a subject).
    Subject,
    /// Nowhere (an attribute value).
    Off,
}

/// Bytes that can start a token.
static TRIGGER: [bool; 256] = {
    let mut t = [false; 256];
    t[b'{' as usize] = true;
    t[b'$' as usize] = true;
    t[b'*' as usize] = true;
    t[b'%' as usize] = true;
    t[b'[' as usize] = true;
    t[b'-' as usize] = true;
    t[b'<' as usize] = true;
    t
};

/// The longest span a tag may cover (longer "tags" are prose with a stray brace).
const MAX_TAG: usize = 300;

impl Detector {
    /// Runs every text rule over `text`.
    pub(super) fn scan_str(
        &self,
        text: &str,
        loc: Location,
        code: bool,
        greet: Greet,
        c: &mut Collector<'_>,
    ) {
        let b = text.as_bytes();
        let mut i = 0;
        while let Some(p) = b[i..].iter().position(|x| TRIGGER[*x as usize]) {
            let at = i + p;
            match match_at(b, at) {
                Some((family, end)) => {
                    if let Some(tok) = text.get(at..end) {
                        c.hit(Rule::Family(family), loc, code, tok);
                    }
                    i = end;
                }
                None => i = at + 1,
            }
        }

        match greet {
            Greet::Start => self.greeting_at(text, loc, code, c),
            Greet::Off => {}
            Greet::Subject => {
                let before = c.out.len();
                self.greeting_at(text, loc, code, c);
                let reported = c.out[before..]
                    .iter()
                    .any(|f| f.token.contains("undefined"));
                for at in memmem::find_iter(b, b"undefined").filter(|_| !reported) {
                    let before = at.checked_sub(1).and_then(|p| b.get(p));
                    let after = b.get(at + 9);
                    if !before.is_some_and(|x| x.is_ascii_alphanumeric())
                        && !after.is_some_and(|x| x.is_ascii_alphanumeric())
                    {
                        c.hit(
                            Rule::Family(Family::FailedSubstitution),
                            loc,
                            code,
                            "undefined",
                        );
                    }
                }
            }
            Greet::Lines => {
                for line in text.split('\n') {
                    self.greeting_at(line, loc, code, c);
                }
            }
        }

        for (i, custom) in self.custom.iter().enumerate() {
            for m in custom.regex.find_iter(text) {
                c.hit(Rule::Custom(i), loc, code, m.as_str());
            }
        }
    }

    /// Checks whether `text` starts with a greeting whose name was left empty or filled with a
    /// failure value.
    fn greeting_at(&self, text: &str, loc: Location, code: bool, c: &mut Collector<'_>) {
        let t = text.trim_start_matches(|ch: char| ch.is_whitespace());
        let first = match t.as_bytes().first() {
            Some(b) => b.to_ascii_lowercase(),
            None => return,
        };
        if !first.is_ascii_alphabetic() {
            return;
        }
        let strong = STRONG_GREETINGS.iter().copied().map(|g| (g, true));
        let weak = WEAK_GREETINGS.iter().copied().map(|g| (g, false));
        let extra = self.greetings.iter().map(|g| (g.as_str(), false));
        // Strong greetings are listed longest first; weak ones come after, so "hallo herr"
        // (strong) wins over "hallo" (weak).
        for (g, is_strong) in strong.chain(weak).chain(extra) {
            if g.as_bytes()[0] != first || !starts_with_ci(t, g) {
                continue;
            }
            let rest = &t[g.len()..];
            let last = g.as_bytes()[g.len() - 1];
            // A word must end where the greeting ends ("Hier" is not "Hi").
            if last.is_ascii_alphanumeric()
                && rest
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_alphanumeric() || ch == '/' || ch == '(')
            {
                continue;
            }
            let after_ws = rest.trim_start_matches(|ch: char| ch.is_whitespace());
            let spaced = after_ws.len() < rest.len();
            let head_len = t.len() - after_ws.len();
            let mut next2 = after_ws.chars();
            if let Some(p) = next2.next() {
                // `:` and `;` only as punctuation, not as a smiley (`Hello :)`).
                let punct = matches!(p, ',' | '!')
                    || (matches!(p, ':' | ';') && next2.next().is_none_or(char::is_whitespace));
                if punct {
                    if is_strong || spaced {
                        let end = head_len + 1;
                        if let Some(tok) = t.get(..end) {
                            c.hit(Rule::Family(Family::FailedSubstitution), loc, code, tok);
                        }
                    }
                    return;
                }
            }
            if spaced {
                for v in FAILURE_VALUES {
                    if let Some(after) = after_ws.strip_prefix(v) {
                        if after
                            .chars()
                            .next()
                            .is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
                        {
                            continue;
                        }
                        let mut end = head_len + v.len();
                        if after.starts_with([',', '!', ':', ';', '.']) {
                            end += 1;
                        }
                        if let Some(tok) = t.get(..end) {
                            c.hit(Rule::Family(Family::FailedSubstitution), loc, code, tok);
                        }
                        return;
                    }
                }
            }
            return;
        }
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Finds `needle` in `b[from..from+limit]`, returning its absolute position.
fn find_within(b: &[u8], from: usize, limit: usize, needle: &[u8]) -> Option<usize> {
    let end = b.len().min(from.saturating_add(limit));
    let hay = b.get(from..end)?;
    memmem::find(hay, needle).map(|p| from + p)
}

/// Tries every family at a trigger byte; returns the family and the end of the token.
pub(super) fn match_at(b: &[u8], i: usize) -> Option<(Family, usize)> {
    let next = b.get(i + 1).copied();
    match b[i] {
        b'{' => match next {
            Some(b'{') => braces(b, i),
            Some(b'%') => {
                let close = find_within(b, i + 2, MAX_TAG, b"%}")?;
                let inner = b.get(i + 2..close)?;
                non_blank(inner).then_some((Family::Mustache, close + 2))
            }
            Some(b'$') => smarty(b, i),
            _ => None,
        },
        b'$' => {
            if next == Some(b'{') {
                let close = find_within(b, i + 2, 128, b"}")?;
                let inner = b.get(i + 2..close)?;
                let first = inner.iter().find(|x| !x.is_ascii_whitespace())?;
                (is_ident_start(*first) && !inner.contains(&b'\n'))
                    .then_some((Family::Dollar, close + 1))
            } else {
                dollar_pair(b, i)
            }
        }
        b'*' => {
            if next != Some(b'|') {
                return None;
            }
            let close = find_within(b, i + 2, 80, b"|*")?;
            let inner = b.get(i + 2..close)?;
            (inner.iter().any(|x| x.is_ascii_alphabetic())
                && !inner.iter().any(|x| matches!(x, b'\n' | b'|' | b'*')))
            .then_some((Family::Mailchimp, close + 2))
        }
        b'%' => ampscript(b, i),
        b'[' => {
            if b[i..].starts_with(b"[object Object]") {
                return Some((Family::FailedSubstitution, i + 15));
            }
            bracket(b, i)
        }
        b'-' => sendgrid(b, i),
        b'<' => angle(b, i),
        _ => None,
    }
}

fn non_blank(inner: &[u8]) -> bool {
    inner.iter().any(|x| !x.is_ascii_whitespace())
}

/// `{{ x }}` and `{{{ x }}}`.
fn braces(b: &[u8], i: usize) -> Option<(Family, usize)> {
    let open = if b.get(i + 2) == Some(&b'{') { 3 } else { 2 };
    let close = find_within(b, i + open, MAX_TAG, b"}}")?;
    let inner = b.get(i + open..close)?;
    if !non_blank(inner) || memmem::find(inner, b"{{").is_some() {
        return None;
    }
    let mut end = close + 2;
    if open == 3 && b.get(end) == Some(&b'}') {
        end += 1;
    }
    Some((Family::Mustache, end))
}

/// `{$name}`, `{$user.name}`, `{$smarty.get.x|escape}`.
fn smarty(b: &[u8], i: usize) -> Option<(Family, usize)> {
    if !is_ident_start(*b.get(i + 2)?) {
        return None;
    }
    let mut j = i + 3;
    while j < b.len() && j < i + 80 {
        match b[j] {
            b'}' => return Some((Family::Smarty, j + 1)),
            c if is_ident(c) || b".->[]'\"|: ".contains(&c) => j += 1,
            _ => return None,
        }
    }
    None
}

/// `$name$`: an identifier between dollars, not a price.
fn dollar_pair(b: &[u8], i: usize) -> Option<(Family, usize)> {
    if i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b'$') {
        return None;
    }
    if !is_ident_start(*b.get(i + 1)?) {
        return None;
    }
    let mut j = i + 2;
    while j < b.len() && j < i + 64 && (is_ident(b[j]) || b[j] == b'.') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let after = b.get(j + 1);
    if after.is_some_and(|x| is_ident(*x) || *x == b'$') {
        return None;
    }
    Some((Family::DollarPair, j + 1))
}

/// `%%FirstName%%`, `%%=v(@x)=%%`, `%%[ … ]%%`.
fn ampscript(b: &[u8], i: usize) -> Option<(Family, usize)> {
    if b.get(i + 1) != Some(&b'%') {
        return None;
    }
    match *b.get(i + 2)? {
        b'=' => {
            let close = find_within(b, i + 3, 400, b"=%%")?;
            Some((Family::Ampscript, close + 3))
        }
        b'[' => {
            let close = find_within(b, i + 3, 2000, b"]%%")?;
            Some((Family::Ampscript, close + 3))
        }
        c if is_ident_start(c) => {
            let mut j = i + 3;
            while j < b.len() && j < i + 66 && (is_ident(b[j]) || b".- ".contains(&b[j])) {
                j += 1;
            }
            (b.get(j..j + 2) == Some(b"%%") && b[j - 1] != b' ')
                .then_some((Family::Ampscript, j + 2))
        }
        _ => None,
    }
}

/// `[FirstName]`, `[first_name]`, `[First Name]`, `[firstname,fallback=there]`.
fn bracket(b: &[u8], i: usize) -> Option<(Family, usize)> {
    // `filter[name]` is an index, not a merge field.
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    let end = b.len().min(i + 100);
    let mut close = None;
    for (j, &x) in b.iter().enumerate().take(end).skip(i + 1) {
        match x {
            b']' => {
                close = Some(j);
                break;
            }
            b'[' | b'\n' | b'\r' => return None,
            _ => {}
        }
    }
    let close = close?;
    let inner = std::str::from_utf8(b.get(i + 1..close)?).ok()?;
    let (head, rest) = match inner.find([',', '|']) {
        Some(p) => (&inner[..p], Some(&inner[p + 1..])),
        None => (inner, None),
    };
    let head = head.trim();
    let ident = !head.is_empty()
        && head.bytes().all(is_ident)
        && head.bytes().next().is_some_and(is_ident_start);
    let hit = if let Some(rest) = rest {
        let rest = rest.trim_start().to_ascii_lowercase();
        ident
            && (rest.starts_with("fallback=")
                || rest.starts_with("default=")
                || is_field_like(head))
    } else if ident {
        is_field_like(head)
    } else {
        let words: Vec<&str> = head.split(' ').collect();
        is_spaced_field(&words)
    };
    hit.then_some((Family::Bracket, close + 1))
}

/// `-first_name-`, `-firstName-`, `-email-`, delimited by whitespace or punctuation.
fn sendgrid(b: &[u8], i: usize) -> Option<(Family, usize)> {
    let boundary = |x: Option<&u8>| x.is_none_or(|c| !(is_ident(*c) || *c == b'-' || *c >= 0x80));
    if i > 0 && !boundary(b.get(i - 1)) {
        return None;
    }
    if !is_ident_start(*b.get(i + 1)?) {
        return None;
    }
    let mut j = i + 2;
    while j < b.len() && j < i + 64 && is_ident(b[j]) {
        j += 1;
    }
    if b.get(j) != Some(&b'-') || !boundary(b.get(j + 1)) {
        return None;
    }
    let ident = std::str::from_utf8(b.get(i + 1..j)?).ok()?;
    is_field_like(ident).then_some((Family::SendgridLegacy, j + 1))
}

/// `<FirstName>`, `<first_name>`, `<First Name>` in visible text (not HTML, not an address or
/// a URL).
fn angle(b: &[u8], i: usize) -> Option<(Family, usize)> {
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    if !is_ident_start(*b.get(i + 1)?) {
        return None;
    }
    let mut j = i + 1;
    let mut words = 1;
    while j < b.len() && j < i + 64 {
        match b[j] {
            b'>' => break,
            b' ' if b.get(j + 1).is_some_and(|c| is_ident_start(*c)) && words < 3 => {
                words += 1;
                j += 1;
            }
            c if is_ident(c) => j += 1,
            _ => return None,
        }
    }
    if b.get(j) != Some(&b'>') || j - i < 3 {
        return None;
    }
    let first_word_end = b[i + 1..j]
        .iter()
        .position(|c| *c == b' ')
        .map_or(j, |p| i + 1 + p);
    if is_known_element(&b[i + 1..first_word_end]) {
        return None;
    }
    Some((Family::Angle, j + 1))
}

#[cfg(test)]
mod tests {
    use super::super::PlaceholderPolicy;
    use super::*;

    fn tokens(text: &str, loc: Location) -> Vec<(String, String)> {
        let d = Detector::new(&PlaceholderPolicy::default()).unwrap();
        d.scan_text(text, loc)
            .into_iter()
            .map(|f| {
                (
                    f.rule.trim_start_matches("placeholder.").to_string(),
                    f.token,
                )
            })
            .collect()
    }

    fn one(text: &str) -> (String, String) {
        let t = tokens(text, Location::Text);
        assert_eq!(t.len(), 1, "{text:?} gave {t:?}");
        t.into_iter().next().unwrap_or_default()
    }

    fn none(text: &str) {
        let t = tokens(text, Location::Text);
        assert!(t.is_empty(), "{text:?} gave {t:?}");
    }

    #[test]
    fn dialects_found() {
        let table = [
            ("Hallo <FirstName>, wie geht's", "angle", "<FirstName>"),
            ("Hi <first_name>!", "angle", "<first_name>"),
            ("Liebe <Vorname> und", "angle", "<Vorname>"),
            ("TO <NAME>", "angle", "<NAME>"),
            ("Dear <First Name>, hi", "angle", "<First Name>"),
            ("Hi {{first_name}}", "mustache", "{{first_name}}"),
            (
                "Hi {{ contact.firstname }}",
                "mustache",
                "{{ contact.firstname }}",
            ),
            ("x {{{ body }}} y", "mustache", "{{{ body }}}"),
            ("{% if x %}yes", "mustache", "{% if x %}"),
            ("Hi *|FNAME|*,", "mailchimp", "*|FNAME|*"),
            ("Hi %%FirstName%%", "ampscript", "%%FirstName%%"),
            ("x %%=v(@name)=%% y", "ampscript", "%%=v(@name)=%%"),
            ("%%[ set @x = 1 ]%%", "ampscript", "%%[ set @x = 1 ]%%"),
            ("Hi [FirstName]", "bracket", "[FirstName]"),
            (
                "Hi [firstname,fallback=there]",
                "bracket",
                "[firstname,fallback=there]",
            ),
            ("Hi [first_name]", "bracket", "[first_name]"),
            ("Hallo [Vorname]", "bracket", "[Vorname]"),
            ("Hi [First Name]", "bracket", "[First Name]"),
            ("Hi ${firstName}", "dollar", "${firstName}"),
            (
                "Hi -first_name-, welcome",
                "sendgrid-legacy",
                "-first_name-",
            ),
            ("Hi -firstName-.", "sendgrid-legacy", "-firstName-"),
            ("Hi {$name}", "smarty", "{$name}"),
            ("Hi $name$", "dollar-pair", "$name$"),
            (
                "got [object Object] today",
                "failed-substitution",
                "[object Object]",
            ),
        ];
        for (text, rule, token) in table {
            assert_eq!(one(text), (rule.to_string(), token.to_string()), "{text}");
        }
    }

    #[test]
    fn baits_left_alone() {
        for text in [
            "50% off everything, 100%% sure",
            "see [1] and [sic] and [PDF] [Anzeige] [YouTube] [Werbung]",
            "Prices: $5 and $10, or $5$ even",
            "write an e-mail to the -50- team, well-known -- dashes - here",
            "<https://example.test/a?b=c> and <mailto:x@y.test>",
            "Anna Muster <anna@example.test>",
            "Use <b>bold</b> and <p> tags, a <3 b, 1 < 2 > 0",
            "Vec<String> and Option<T>",
            "{ color: red } and {x}",
            "Hallo Anna, Hi! Hello, Sehr geehrte Damen und Herren,",
            "Hier ist das, Dearborn, Michigan",
            "Hello :) and Hi ;-)",
            "Liebe Grüße, Ihr Team",
            "Liebe Anna,",
        ] {
            none(text);
        }
    }

    #[test]
    fn failed_substitutions() {
        let table = [
            ("Dear ,", "Dear ,"),
            ("Dear, thanks", "Dear,"),
            ("Hi !", "Hi !"),
            ("Hallo ,", "Hallo ,"),
            ("Hello  , there", "Hello ,"),
            ("Sehr geehrte/r ,", "Sehr geehrte/r ,"),
            ("Sehr geehrter Herr ,", "Sehr geehrter Herr ,"),
            ("Liebe ,", "Liebe ,"),
            ("Dear undefined,", "Dear undefined,"),
            ("Hallo null,", "Hallo null,"),
            ("Hi NaN!", "Hi NaN!"),
            ("Dear None,", "Dear None,"),
            ("Hey nil", "Hey nil"),
            ("Dear #NAME?,", "Dear #NAME?,"),
            ("   Guten Tag , schön", "Guten Tag ,"),
            ("Hello\u{a0},", "Hello ,"),
            ("Dear : see below", "Dear :"),
        ];
        for (text, token) in table {
            assert_eq!(
                one(text),
                ("failed-substitution".to_string(), token.to_string()),
                "{text}"
            );
        }
        // Every line of a text body is a possible greeting.
        let t = tokens("Newsletter\r\n\r\nHallo ,\r\nwie geht's", Location::Text);
        assert_eq!(t.len(), 1);
        assert_eq!(
            tokens("Hi undefined, your order", Location::Subject).len(),
            1
        );
        assert_eq!(
            tokens("Your undefined order", Location::Subject)[0].1,
            "undefined"
        );
        none("Hi Nils, the undefined behaviour");
    }

    #[test]
    fn extra_greetings() {
        let p: PlaceholderPolicy = toml::from_str("greetings = ['Ciao', 'Bonjour à']").unwrap();
        let d = Detector::new(&p).unwrap();
        assert_eq!(d.scan_text("Ciao ,", Location::Text).len(), 1);
        assert_eq!(d.scan_text("Ciao undefined", Location::Text).len(), 1);
        assert!(d.scan_text("Ciao,", Location::Text).is_empty());
    }

    #[test]
    fn unclosed_and_truncated_tokens() {
        for text in [
            "{{",
            "{{ x",
            "*|",
            "%%",
            "%%=",
            "%%[",
            "[",
            "[first",
            "<",
            "<Name",
            "$",
            "${",
            "{$",
            "-",
            "-first_name",
            "{%",
            "{{}}",
            "*||*",
        ] {
            none(text);
        }
    }
}
