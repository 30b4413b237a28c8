//! A message as raw RFC 5322 bytes, decoded only as far as a check needs.

use bytes::Bytes;
use std::sync::OnceLock;

/// One message: the raw bytes as the client sent them (dot-stuffing removed, CRLF line ends),
/// with its header block located lazily and its MIME structure parsed on demand.
#[derive(Debug, Clone)]
pub struct Message {
    raw: Bytes,
    header_end: OnceLock<usize>,
}

impl Message {
    /// Wraps raw message bytes. Nothing is parsed until a check asks for it.
    pub fn new(raw: impl Into<Bytes>) -> Self {
        Message {
            raw: raw.into(),
            header_end: OnceLock::new(),
        }
    }

    /// The raw bytes, exactly as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the message has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The header block, up to and including the blank line that ends it (the whole message when
    /// there is no body).
    pub fn header_block(&self) -> &[u8] {
        let end = *self.header_end.get_or_init(|| find_header_end(&self.raw));
        &self.raw[..end]
    }

    /// The first header field with this name (case-insensitive), unfolded and trimmed.
    ///
    /// Values are returned as the raw header text (lossy UTF-8); RFC 2047 encoded words are not
    /// decoded here — use [`Message::parse`] for display text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).next()
    }

    /// Every header field with this name, in order, unfolded and trimmed.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        HeaderIter {
            block: self.header_block(),
            pos: 0,
        }
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| unfold(v))
    }

    /// Parses the MIME structure. Returns `None` only for input mail-parser cannot make anything
    /// of (it is lenient: broken MIME still yields what can be read).
    pub fn parse(&self) -> Option<mail_parser::Message<'_>> {
        mail_parser::MessageParser::default().parse(&self.raw[..])
    }
}

fn find_header_end(raw: &[u8]) -> usize {
    // A message may start with a blank line (no headers at all).
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    if raw.starts_with(b"\n") {
        return 1;
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &raw[i..]) {
        let nl = i + p;
        let rest = &raw[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return nl + 3;
        }
        if rest.starts_with(b"\n") {
            return nl + 2;
        }
        i = nl + 1;
    }
    raw.len()
}

struct HeaderIter<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.block.len() {
                return None;
            }
            let start = self.pos;
            // Find the end of this field: a newline not followed by a continuation (SP / HTAB).
            let mut end = start;
            loop {
                match memchr::memchr(b'\n', &self.block[end..]) {
                    Some(p) => {
                        end += p + 1;
                        match self.block.get(end) {
                            Some(b' ') | Some(b'\t') => continue,
                            _ => break,
                        }
                    }
                    None => {
                        end = self.block.len();
                        break;
                    }
                }
            }
            self.pos = end;
            let field = &self.block[start..end];
            let Some(colon) = memchr::memchr(b':', field) else {
                continue; // blank line or garbage: skip
            };
            let name = trim_ascii(&field[..colon]);
            if name.is_empty() {
                continue;
            }
            return Some((name, &field[colon + 1..]));
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &b[s..e]
}

fn unfold(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, line) in String::from_utf8_lossy(v).split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 && !line.is_empty() {
            out.push(' ');
        }
        out.push_str(line.trim());
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_headers() {
        let m = Message::new(
            &b"From: a@b.test\r\nX-Campaign-ID:  spring\r\n  -2026\r\nSubject: hi\r\n\r\nX-Campaign-ID: body\r\n"[..],
        );
        assert_eq!(m.header("x-campaign-id").as_deref(), Some("spring -2026"));
        assert_eq!(m.headers("X-Campaign-ID").count(), 1);
        assert_eq!(m.header("subject").as_deref(), Some("hi"));
        assert_eq!(m.header("missing"), None);
        assert!(m.header_block().ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn bare_lf_and_no_body() {
        let m = Message::new(&b"A: 1\nB: 2\n"[..]);
        assert_eq!(m.header("b").as_deref(), Some("2"));
        let m = Message::new(&b"\r\nbody: x"[..]);
        assert_eq!(m.header("body"), None);
    }
}

/// The visible parts of a message that arrives already decoded, as an email service's HTTP send
/// API carries them (subject, sender name, text and HTML bodies), so they can be checked without
/// building and re-parsing MIME.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content<'a> {
    /// The subject as the recipient will see it.
    pub subject: Option<&'a str>,
    /// Display names of From / Reply-To.
    pub names: Vec<&'a str>,
    /// text/plain bodies.
    pub text: Vec<&'a str>,
    /// text/html bodies.
    pub html: Vec<&'a str>,
    /// Header values that identify the message (for campaign and tenant lookup), name and value.
    pub headers: Vec<(&'a str, &'a str)>,
}
