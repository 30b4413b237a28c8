//! HTML as the recipient sees it: a single forward pass over the source that yields visible text
//! (entity-decoded, joined across inline elements, split at blocks), link targets, `alt`/`title`
//! attributes and hidden preheader text, and spots start tags that are no HTML element.
//!
//! The pass follows the WHATWG tokenizer where it matters for what a reader sees: comments,
//! `<!DOCTYPE>`/`<![CDATA[`/`<?…>` markup, raw-text elements (`<style>`, `<script>`, `<title>`,
//! …) and quoted attribute values containing `>`. Outlook conditional comments
//! (`<!--[if mso]>…<![endif]-->`) are scanned as HTML, since Outlook shows their content.

use super::names::kind;
use super::text::Greet;
use super::{Collector, Detector, Family, Rule};
use crate::model::Location;
use memchr::{memchr, memmem};
use std::borrow::Cow;

/// Style properties that can hide an element (their values are checked by `Detector::hides`).
pub(super) const HIDE_KEYWORDS: &[&str] = &[
    "display",
    "max-height",
    "opacity",
    "font-size",
    "visibility",
    "mso-hide",
];

impl Detector {
    /// Scans one HTML document into the collector.
    pub(super) fn html_into(&self, html: &str, c: &mut Collector<'_>) {
        let mut w = Walker {
            det: self,
            c,
            html,
            block: String::new(),
            hidden: None,
            code: None,
        };
        w.run();
    }

    /// Whether a `style` attribute hides its element.
    fn hides(&self, style: &str) -> bool {
        let b = style.as_bytes();
        for m in self.hide.find_iter(style) {
            let mut j = m.end();
            while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 1;
            }
            if b.get(j) != Some(&b':') {
                continue;
            }
            j += 1;
            while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 1;
            }
            let value = &b[j.min(b.len())..];
            let starts =
                |p: &[u8]| value.len() >= p.len() && value[..p.len()].eq_ignore_ascii_case(p);
            let zero = || {
                value.first() == Some(&b'0')
                    && !value
                        .get(1)
                        .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
            };
            let hidden = match HIDE_KEYWORDS.get(m.pattern().as_usize()) {
                Some(&"display") => starts(b"none"),
                Some(&"max-height") | Some(&"opacity") => zero(),
                Some(&"font-size") => zero() || starts(b"1px"),
                Some(&"visibility") => starts(b"hidden"),
                Some(&"mso-hide") => starts(b"all"),
                _ => false,
            };
            if hidden {
                return true;
            }
        }
        false
    }
}

/// An element being tracked until its end tag: its name and how deeply it is nested in itself.
type Open<'a> = Option<(&'a [u8], u32)>;

struct Walker<'a, 'c, 'd> {
    det: &'a Detector,
    c: &'c mut Collector<'d>,
    html: &'a str,
    /// Visible text of the current block.
    block: String,
    /// The hidden element (preheader) the text is in.
    hidden: Open<'a>,
    /// The `<pre>`/`<code>` element the text is in.
    code: Open<'a>,
}

/// The attributes of one start tag that matter here.
#[derive(Default)]
struct Attrs<'a> {
    href: Option<&'a str>,
    alt: Option<&'a str>,
    title: Option<&'a str>,
    style: Option<&'a str>,
    class: Option<&'a str>,
    hidden: bool,
}

impl<'a> Walker<'a, '_, '_> {
    fn location(&self) -> Location {
        if self.hidden.is_some() {
            Location::Preheader
        } else {
            Location::Html
        }
    }

    fn run(&mut self) {
        let b = self.html.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let Some(p) = memchr(b'<', &b[i..]) else {
                self.text(i, b.len());
                break;
            };
            let lt = i + p;
            self.text(i, lt);
            i = self.markup(lt).max(lt + 1);
        }
        self.flush();
    }

    /// Appends source text `[from, to)` to the current block, decoding entities.
    fn text(&mut self, from: usize, to: usize) {
        let Some(seg) = self.html.get(from..to) else {
            return;
        };
        if seg.is_empty() {
            return;
        }
        decode_entities(seg, &mut self.block);
    }

    /// Scans the text gathered so far as one block.
    fn flush(&mut self) {
        if self.block.bytes().any(|c| !c.is_ascii_whitespace()) {
            let loc = self.location();
            let code = self.code.is_some();
            self.det
                .scan_str(&self.block, loc, code, Greet::Start, self.c);
        }
        self.block.clear();
    }

    /// Handles the markup starting at `lt` (a `<`); returns where text resumes.
    fn markup(&mut self, lt: usize) -> usize {
        let b = self.html.as_bytes();
        let rest = &b[lt..];
        if rest.starts_with(b"<!--") {
            if rest.len() >= 7 && rest[4..7].eq_ignore_ascii_case(b"[if") {
                // Outlook conditional comment: its content is shown by Outlook, scan it.
                return match memmem::find(&b[lt + 4..], b"]>") {
                    Some(q) => {
                        let j = lt + 4 + q + 2;
                        if b[j..].starts_with(b"<!-->") {
                            j + 5
                        } else {
                            j
                        }
                    }
                    None => b.len(),
                };
            }
            return match memmem::find(&b[lt + 2..], b"-->") {
                Some(q) => lt + 2 + q + 3,
                None => b.len(),
            };
        }
        let next = rest.get(1).copied();
        match next {
            Some(b'!') | Some(b'?') => skip_to_gt(b, lt + 2),
            Some(b'/') => {
                if rest.get(2).is_some_and(|c| c.is_ascii_alphabetic()) {
                    let (name, end) = tag_name(b, lt + 2);
                    let end = skip_to_gt(b, end);
                    self.end_tag(name);
                    end
                } else {
                    skip_to_gt(b, lt + 2)
                }
            }
            Some(c) if c.is_ascii_alphabetic() => self.start_tag(lt),
            _ => {
                // A lone `<` is text.
                self.block.push('<');
                lt + 1
            }
        }
    }

    fn end_tag(&mut self, name: &'a [u8]) {
        if kind(name).block() {
            self.flush();
        }
        if let Some((open, depth)) = self.code {
            if open.eq_ignore_ascii_case(name) {
                if depth <= 1 {
                    self.flush();
                    self.code = None;
                } else {
                    self.code = Some((open, depth - 1));
                }
            }
        }
        if let Some((open, depth)) = self.hidden {
            if open.eq_ignore_ascii_case(name) {
                if depth <= 1 {
                    self.flush();
                    self.hidden = None;
                } else {
                    self.hidden = Some((open, depth - 1));
                }
            }
        }
    }

    fn start_tag(&mut self, lt: usize) -> usize {
        let html = self.html;
        let b = html.as_bytes();
        let (name, mut j) = tag_name(b, lt + 1);
        let mut attrs = Attrs::default();
        let mut self_closing = false;
        loop {
            while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'/') {
                self_closing = b[j] == b'/';
                j += 1;
            }
            if j >= b.len() {
                // An unterminated tag swallows the rest of the document.
                return b.len();
            }
            if b[j] == b'>' {
                j += 1;
                break;
            }
            self_closing = false;
            let name_start = j;
            j += 1;
            while j < b.len() && !matches!(b[j], b'=' | b'>' | b'/') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            let attr = &b[name_start..j];
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let mut value = None;
            if b.get(j) == Some(&b'=') {
                j += 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                match b.get(j) {
                    Some(&q) if q == b'"' || q == b'\'' => {
                        let (v_end, next) = match memchr(q, &b[j + 1..]) {
                            Some(p) => (j + 1 + p, j + 2 + p),
                            None => (b.len(), b.len()),
                        };
                        value = html.get(j + 1..v_end);
                        j = next;
                    }
                    _ => {
                        let start = j;
                        while j < b.len() && b[j] != b'>' && !b[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        value = html.get(start..j);
                    }
                }
            }
            let v = value.unwrap_or("");
            if attr.eq_ignore_ascii_case(b"href") {
                attrs.href = Some(v);
            } else if attr.eq_ignore_ascii_case(b"alt") {
                attrs.alt = Some(v);
            } else if attr.eq_ignore_ascii_case(b"title") {
                attrs.title = Some(v);
            } else if attr.eq_ignore_ascii_case(b"style") {
                attrs.style = Some(v);
            } else if attr.eq_ignore_ascii_case(b"class") {
                attrs.class = Some(v);
            } else if attr.eq_ignore_ascii_case(b"hidden") {
                attrs.hidden = true;
            }
        }
        let end = j;

        let k = kind(name);
        if k.raw_hidden() {
            return if self_closing {
                end
            } else {
                skip_raw_text(b, end, name)
            };
        }
        if k.block() {
            self.flush();
        }
        let void = k.void() || self_closing;
        let loc = self.location();
        let code = self.code.is_some();
        if !k.known() {
            let token = html.get(lt..end).unwrap_or("<?>");
            self.c.hit(Rule::Family(Family::Angle), loc, code, token);
        }

        for (value, at) in [
            (attrs.href, Location::Href),
            (attrs.alt, Location::Attribute),
            (attrs.title, Location::Attribute),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                self.attribute(v, at, code);
            }
        }

        if !void {
            if let Some((open, depth)) = self.hidden {
                if open.eq_ignore_ascii_case(name) {
                    self.hidden = Some((open, depth + 1));
                }
            } else if attrs.hidden
                || attrs.class.is_some_and(has_preheader_class)
                || attrs.style.is_some_and(|s| self.det.hides(s))
            {
                self.flush();
                self.hidden = Some((name, 1));
            }
            if name.eq_ignore_ascii_case(b"pre") || name.eq_ignore_ascii_case(b"code") {
                match self.code {
                    Some((open, depth)) if open.eq_ignore_ascii_case(name) => {
                        self.code = Some((open, depth + 1));
                    }
                    Some(_) => {}
                    None => {
                        self.flush();
                        self.code = Some((name, 1));
                    }
                }
            }
        }
        end
    }

    /// Scans one attribute value (entity-decoded; a link also percent-decoded).
    fn attribute(&mut self, raw: &str, at: Location, code: bool) {
        let value: Cow<'_, str> = if raw.contains('&') {
            let mut s = String::with_capacity(raw.len());
            decode_entities(raw, &mut s);
            Cow::Owned(s)
        } else {
            Cow::Borrowed(raw)
        };
        self.det.scan_str(&value, at, code, Greet::Off, self.c);
        if at == Location::Href && value.contains('%') {
            let decoded = percent_decode(&value);
            if decoded != value {
                self.det.scan_str(&decoded, at, code, Greet::Off, self.c);
            }
        }
    }
}

fn has_preheader_class(class: &str) -> bool {
    class.len() >= 9
        && class
            .as_bytes()
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"preheader"))
}

/// Reads a tag name starting at `from`; returns it and where it ends.
fn tag_name(b: &[u8], from: usize) -> (&[u8], usize) {
    let mut j = from;
    while j < b.len() && !matches!(b[j], b'/' | b'>') && !b[j].is_ascii_whitespace() {
        j += 1;
    }
    (&b[from.min(b.len())..j], j)
}

/// Returns the index after the next `>` at or after `from` (the end when there is none).
fn skip_to_gt(b: &[u8], from: usize) -> usize {
    match b.get(from..).and_then(|r| memchr(b'>', r)) {
        Some(p) => from + p + 1,
        None => b.len(),
    }
}

/// Skips the content of a raw-text element up to and including its end tag.
fn skip_raw_text(b: &[u8], from: usize, name: &[u8]) -> usize {
    let mut i = from;
    while let Some(p) = b.get(i..).and_then(|r| memmem::find(r, b"</")) {
        let at = i + p;
        let n_end = at + 2 + name.len();
        if let Some(n) = b.get(at + 2..n_end) {
            let closes = n.eq_ignore_ascii_case(name)
                && b.get(n_end)
                    .is_none_or(|c| c.is_ascii_whitespace() || *c == b'>' || *c == b'/');
            if closes {
                return skip_to_gt(b, n_end);
            }
        }
        i = at + 2;
    }
    b.len()
}

/// Appends `seg` to `out` with character references decoded: numeric ones (with the WHATWG
/// rules for C1 controls, zero and surrogates) and named ones ending in `;`. Named references
/// without `;` are kept as written.
fn decode_entities(seg: &str, out: &mut String) {
    let b = seg.as_bytes();
    let mut i = 0;
    while let Some(p) = memchr(b'&', &b[i..]) {
        let amp = i + p;
        out.push_str(&seg[i..amp]);
        let name_len = b[amp + 1..]
            .iter()
            .take(32)
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'#')
            .count();
        let end = amp + 1 + name_len;
        if name_len == 0 || b.get(end) != Some(&b';') {
            out.push('&');
            i = amp + 1;
            continue;
        }
        match quick_entity(&b[amp + 1..end]) {
            Some(ch) => out.push(ch),
            None => out.push_str(&html_escape::decode_html_entities(&seg[amp..=end])),
        }
        i = end + 1;
    }
    out.push_str(&seg[i..]);
}

/// Decodes the name of a reference (between `&` and `;`): numeric ones and the named ones mail
/// HTML is full of; `None` for other names.
fn quick_entity(body: &[u8]) -> Option<char> {
    let ch = if let Some(num) = body.strip_prefix(b"#") {
        let (digits, radix) = match num.first() {
            Some(b'x') | Some(b'X') => (&num[1..], 16),
            _ => (num, 10),
        };
        let n = std::str::from_utf8(digits)
            .ok()
            .and_then(|t| u32::from_str_radix(t, radix).ok());
        match n {
            Some(n @ 0x80..=0x9f) => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(&[n as u8])
                .0
                .chars()
                .next()
                .unwrap_or('\u{fffd}'),
            Some(n) if n != 0 => char::from_u32(n).unwrap_or('\u{fffd}'),
            _ => '\u{fffd}',
        }
    } else {
        match body {
            b"nbsp" => '\u{a0}',
            b"amp" => '&',
            b"lt" => '<',
            b"gt" => '>',
            b"quot" => '"',
            b"apos" => '\'',
            b"middot" => '\u{b7}',
            b"ndash" => '\u{2013}',
            b"mdash" => '\u{2014}',
            b"bdquo" => '\u{201e}',
            b"ldquo" => '\u{201c}',
            b"rdquo" => '\u{201d}',
            b"lsquo" => '\u{2018}',
            b"rsquo" => '\u{2019}',
            b"sbquo" => '\u{201a}',
            b"laquo" => '\u{ab}',
            b"raquo" => '\u{bb}',
            b"hellip" => '\u{2026}',
            b"bull" => '\u{2022}',
            b"euro" => '\u{20ac}',
            b"copy" => '\u{a9}',
            b"reg" => '\u{ae}',
            b"trade" => '\u{2122}',
            b"zwnj" => '\u{200c}',
            b"zwj" => '\u{200d}',
            b"shy" => '\u{ad}',
            b"rarr" => '\u{2192}',
            b"auml" => '\u{e4}',
            b"ouml" => '\u{f6}',
            b"uuml" => '\u{fc}',
            b"Auml" => '\u{c4}',
            b"Ouml" => '\u{d6}',
            b"Uuml" => '\u{dc}',
            b"szlig" => '\u{df}',
            _ => return None,
        }
    };
    Some(ch)
}

/// Decodes `%XX` escapes (invalid UTF-8 is replaced); other bytes are kept.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::PlaceholderPolicy;
    use super::*;
    use crate::model::{Finding, Severity};

    fn scan(html: &str) -> Vec<Finding> {
        Detector::new(&PlaceholderPolicy::default())
            .unwrap()
            .scan_html(html)
    }

    fn found(html: &str) -> Vec<(String, Location, String)> {
        scan(html)
            .into_iter()
            .map(|f| {
                (
                    f.rule.trim_start_matches("placeholder.").to_string(),
                    f.location,
                    f.token,
                )
            })
            .collect()
    }

    fn one(html: &str, rule: &str, loc: Location, token: &str) {
        assert_eq!(
            found(html),
            vec![(rule.to_string(), loc, token.to_string())],
            "{html}"
        );
    }

    #[test]
    fn visible_text_and_entities() {
        one(
            "<p>Hallo &lt;FirstName&gt;,</p>",
            "angle",
            Location::Html,
            "<FirstName>",
        );
        one(
            "<p>Hi &#60;Vorname&#62;</p>",
            "angle",
            Location::Html,
            "<Vorname>",
        );
        one(
            "<p>Hi &#123;&#123;name&#125;&#125;</p>",
            "mustache",
            Location::Html,
            "{{name}}",
        );
        one(
            "<p>Hi {{<b>name</b>}}</p>",
            "mustache",
            Location::Html,
            "{{name}}",
        );
        one(
            "<td>Dear <span></span>,</td>",
            "failed-substitution",
            Location::Html,
            "Dear ,",
        );
        one(
            "<p>Hello&nbsp;,</p>",
            "failed-substitution",
            Location::Html,
            "Hello ,",
        );
    }

    #[test]
    fn unknown_start_tags_in_source() {
        // The browser hides the unknown element, so the reader sees "Hallo ," as well.
        assert_eq!(
            found("<p>Hallo <FirstName>,</p>"),
            [
                (
                    "angle".to_string(),
                    Location::Html,
                    "<FirstName>".to_string()
                ),
                (
                    "failed-substitution".to_string(),
                    Location::Html,
                    "Hallo ,".to_string()
                ),
            ]
        );
        one(
            "<p>Hi <first_name> and welcome</p>",
            "angle",
            Location::Html,
            "<first_name>",
        );
        one(
            "<td>Sehr geehrter <NAME></td>",
            "angle",
            Location::Html,
            "<NAME>",
        );
    }

    #[test]
    fn links_and_attributes() {
        one(
            r#"<a href="https://x.test/?n=%7B%7Bname%7D%7D">x</a>"#,
            "mustache",
            Location::Href,
            "{{name}}",
        );
        one(
            r#"<a href="https://x.test/?a=1&amp;e=*|EMAIL|*">x</a>"#,
            "mailchimp",
            Location::Href,
            "*|EMAIL|*",
        );
        one(
            r#"<img alt="Hi [FirstName]" src="x.png">"#,
            "bracket",
            Location::Attribute,
            "[FirstName]",
        );
        one(
            r#"<a title='{$name}' href=/x>y</a>"#,
            "smarty",
            Location::Attribute,
            "{$name}",
        );
        assert!(
            found(r#"<a href="https://x.test/spring-sale/?filter[name]=1&amp;p=50%25">"#)
                .is_empty()
        );
    }

    #[test]
    fn preheader() {
        for open in [
            r#"<div style="display:none;font-size:1px">"#,
            r#"<div style="DISPLAY: none !important">"#,
            r#"<div style="max-height: 0; overflow:hidden">"#,
            r#"<div style="opacity:0">"#,
            r#"<div style="font-size:0px;line-height:0">"#,
            r#"<div style="mso-hide:all">"#,
            r#"<div class="email-preheader">"#,
            r#"<div hidden>"#,
        ] {
            let html = format!(
                "{open}Your deal, {{{{name}}}}<div>inner</div> more</div><p>Hi {{{{x}}}}</p>"
            );
            assert_eq!(
                found(&html),
                vec![
                    (
                        "mustache".to_string(),
                        Location::Preheader,
                        "{{name}}".to_string()
                    ),
                    ("mustache".to_string(), Location::Html, "{{x}}".to_string()),
                ],
                "{open}"
            );
        }
        assert!(!Detector::new(&PlaceholderPolicy::default())
            .unwrap()
            .hides("font-size:14px; opacity:0.5; display:block; max-height:0.5em"));
    }

    #[test]
    fn code_samples_are_low_severity() {
        let f = scan("<p>Use this:</p><pre><code>Hello {{name}}</code></pre><p>{{x}}</p>");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].severity, Severity::Low);
        assert_eq!(f[0].action, crate::model::Action::Log);
        assert_eq!(f[1].severity, Severity::High);
    }

    #[test]
    fn invisible_markup_is_ignored() {
        let html = r#"<!DOCTYPE html><html><head><title>{{title}}</title>
<style>.a { color: red } .b {{ x }} @media (max-width:600px) { .c { width:100% } }</style>
<script type="application/ld+json">{"@context": "{{x}}", "name": "[FirstName]"}</script>
<!--[if mso]><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings></xml><![endif]-->
</head><body style="margin:0">
<!-- {{ comment }} <FirstName> -->
<!--[if !mso]><!--><div>Hello</div><!--<![endif]-->
<center><font face="Arial"><marquee>Sale</marquee></font></center>
<p class="x" data-x='a > b'>50% off, [1] footnote, $5 and $10, Anna &lt;anna@x.test&gt;</p>
<p><a href="mailto:a@b.test">&lt;https://x.test/&gt;</a><o:p></o:p><v:rect></v:rect></p>
<amp-img src="x"></amp-img><my-widget></my-widget>
</body></html>"#;
        assert_eq!(found(html), vec![]);
    }

    #[test]
    fn mso_conditional_content_is_scanned() {
        one(
            "<!--[if mso]><table><tr><td>Hi {{name}}</td></tr></table><![endif]-->",
            "mustache",
            Location::Html,
            "{{name}}",
        );
    }

    #[test]
    fn broken_html_does_not_panic() {
        for html in [
            "<",
            "<!",
            "<!--",
            "<!--[if",
            "</",
            "</a",
            "<a href=\"",
            "<a href='x",
            "<a href=",
            "<p",
            "<style>{{x}}",
            "<title>",
            "<div style=\"display:none\">",
            "<a =x>",
            "</>",
            "<é>",
            "&",
            "&#",
            "&#xD800;",
            "<a href=\"%\">",
            "<a href=\"%F\">",
            "<a href=\"%FF\">",
        ] {
            let _ = scan(html);
        }
        one("<p>Hi <b>{{x}}", "mustache", Location::Html, "{{x}}");
    }

    #[test]
    fn entities() {
        for (input, want) in [
            (
                "a &lt;b&gt; &amp;amp; &nbsp;&#123;&#x7B;&#X7d;",
                "a <b> &amp; \u{a0}{{}",
            ),
            (
                "&bdquo;x&ldquo; &hearts; &auml;",
                "\u{201e}x\u{201c} \u{2665} \u{e4}",
            ),
            (
                "&nbsp &copy &#128; &#0; & &; &#xD800;",
                "&nbsp &copy \u{20ac} \u{fffd} & &; \u{fffd}",
            ),
            (
                "Tom & Jerry &unknownname; &#99999999999;",
                "Tom & Jerry &unknownname; \u{fffd}",
            ),
        ] {
            let mut out = String::new();
            decode_entities(input, &mut out);
            assert_eq!(out, want, "{input}");
        }
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("%7B%7Bx%7d%7D %ZZ %"), "{{x}} %ZZ %");
    }
}
