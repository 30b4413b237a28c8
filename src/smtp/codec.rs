//! Bytes in, values out: client command lines, upstream replies, message data and
//! dot-stuffing. Nothing here does I/O, so all of it is unit-, property- and fuzz-tested in
//! memory.
//!
//! Command lines are split here (at LF, at most [`MAX_COMMAND_LINE`] bytes) and each complete
//! line is parsed by smtp-proto's `Request::parse`. Splitting lines ourselves rather than using
//! `RequestReceiver` keeps the exact count of bytes consumed, which pipelining needs: what
//! follows `DATA` in the same read is message data, not commands.
//!
//! Message data goes through [`DataScanner`], not smtp-proto's `DataReceiver`: that receiver
//! removes a dot after CRLF even when the line then ends in a bare LF (`CRLF . LF` loses its
//! dot), and passes bare CR and LF through unchanged. The scanner implements the rules of the
//! DESIGN's smuggling section:
//!
//! - only `CRLF . CRLF` ends the data (the first CRLF may be the one ending the `DATA` command);
//! - a bare CR or bare LF becomes CRLF (or marks the message for refusal, by configuration);
//! - a leading dot is removed (un-stuffed) only on lines that start after a real CRLF and go on
//!   with other characters; a `.` line produced by normalising (`LF . LF`) stays in the message
//!   as a one-dot line, and [`dot_stuff`] doubles it on the way out, so no upstream can read it
//!   as the end of the message.

use memchr::{memchr, memchr2};
use smtp_proto::Request;
use std::borrow::Cow;

/// Longest command line accepted, CRLF included (RFC 5321 asks for at least 512; smtp-proto's
/// own limit).
pub const MAX_COMMAND_LINE: usize = 4096;

/// Longest upstream reply accepted, all lines together.
pub const MAX_REPLY: usize = 64 * 1024;

/// What [`CommandDecoder::decode`] found at the start of the buffer.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A complete command; `consumed` bytes (its line) are used up.
    Command {
        /// The parsed command.
        request: Request<Cow<'a, str>>,
        /// The line, without its line ending.
        line: &'a [u8],
        /// Bytes used up.
        consumed: usize,
    },
    /// A complete line that is not a valid command.
    Invalid {
        /// Why.
        error: smtp_proto::Error,
        /// Bytes used up (the line).
        consumed: usize,
    },
    /// The end of a line longer than [`MAX_COMMAND_LINE`]: reply `500` once.
    TooLong {
        /// Bytes used up.
        consumed: usize,
    },
    /// Part of an over-long line was dropped; no reply yet.
    Discarded {
        /// Bytes used up.
        consumed: usize,
    },
    /// No complete line yet.
    NeedMoreData,
}

/// Splits command lines off an input buffer and parses them.
#[derive(Debug, Default, Clone)]
pub struct CommandDecoder {
    discarding: bool,
}

impl CommandDecoder {
    /// A decoder at the start of a line.
    pub fn new() -> Self {
        CommandDecoder::default()
    }

    /// Decodes the first command line of `buf`.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Decoded<'a> {
        if buf.is_empty() {
            return Decoded::NeedMoreData;
        }
        let window = &buf[..buf.len().min(MAX_COMMAND_LINE)];
        if self.discarding {
            return match memchr(b'\n', buf) {
                Some(p) => {
                    self.discarding = false;
                    Decoded::TooLong { consumed: p + 1 }
                }
                None => Decoded::Discarded {
                    consumed: buf.len(),
                },
            };
        }
        let Some(pos) = memchr(b'\n', window) else {
            if buf.len() >= MAX_COMMAND_LINE {
                // Over-long: drop it up to its end, which may already be in the buffer.
                return match memchr(b'\n', buf) {
                    Some(p) => Decoded::TooLong { consumed: p + 1 },
                    None => {
                        self.discarding = true;
                        Decoded::Discarded {
                            consumed: buf.len(),
                        }
                    }
                };
            }
            return Decoded::NeedMoreData;
        };
        let consumed = pos + 1;
        let full = &buf[..consumed];
        let line = strip_eol(full);
        match Request::parse(&mut full.iter()) {
            Ok(request) => Decoded::Command {
                request,
                line,
                consumed,
            },
            Err(smtp_proto::Error::NeedsMoreData { .. }) => Decoded::Invalid {
                error: smtp_proto::Error::SyntaxError {
                    syntax: "command line",
                },
                consumed,
            },
            Err(error) => Decoded::Invalid { error, consumed },
        }
    }
}

/// Takes one line (for AUTH continuations) off the buffer: `Some((line without its ending,
/// consumed))`, or `None` when no complete line is there yet.
pub fn take_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let pos = memchr(b'\n', buf)?;
    Some((strip_eol(&buf[..pos + 1]), pos + 1))
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One reply of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// Whether the code is 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The lines joined with a space, for logs.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

/// Why an upstream reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code and a separator.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// The lines of a multi-line reply carry different codes.
    #[error("reply lines with different codes ({0} and {1})")]
    MixedCodes(u16, u16),
    /// More than [`MAX_REPLY`] bytes without the end of the reply.
    #[error("reply longer than {MAX_REPLY} bytes")]
    TooLong,
}

/// Parses one complete reply at the start of `buf`: `Ok(Some((reply, consumed)))`,
/// `Ok(None)` when more bytes are needed.
///
/// # Errors
/// A malformed line, mixed codes, or an over-long reply.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some(nl) = memchr(b'\n', &buf[pos..]) else {
            if buf.len() > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            return Ok(None);
        };
        let line = strip_eol(&buf[pos..pos + nl + 1]);
        pos += nl + 1;
        let digits = line.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
        let (Some(d), sep) = (digits, line.get(3).copied()) else {
            return Err(ReplyError::Malformed(
                String::from_utf8_lossy(line).into_owned(),
            ));
        };
        let c = d.iter().fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
        if !(200..600).contains(&c) && !(100..200).contains(&c) {
            return Err(ReplyError::Malformed(
                String::from_utf8_lossy(line).into_owned(),
            ));
        }
        if let Some(prev) = code {
            if prev != c {
                return Err(ReplyError::MixedCodes(prev, c));
            }
        }
        code = Some(c);
        let text = line.get(4..).unwrap_or(b"");
        lines.push(String::from_utf8_lossy(text).into_owned());
        match sep {
            Some(b'-') => {
                if pos > MAX_REPLY {
                    return Err(ReplyError::TooLong);
                }
            }
            None | Some(b' ') => return Ok(Some((Reply { code: c, lines }, pos))),
            Some(_) => {
                return Err(ReplyError::Malformed(
                    String::from_utf8_lossy(line).into_owned(),
                ))
            }
        }
    }
}

/// The EHLO keywords of an upstream that sendguard uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `PIPELINING`.
    pub pipelining: bool,
    /// `STARTTLS`.
    pub starttls: bool,
    /// `AUTH` with `PLAIN` among the mechanisms.
    pub auth_plain: bool,
    /// `8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

impl Extensions {
    /// Reads the keywords from an EHLO reply (the first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut e = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => e.pipelining = true,
                "STARTTLS" => e.starttls = true,
                "8BITMIME" => e.eight_bit = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "AUTH" => e.auth_plain = words.any(|m| m.eq_ignore_ascii_case("PLAIN")),
                _ => {}
            }
        }
        e
    }
}

/// Where the [`DataScanner`] is within the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line that began after a real CRLF (or at the start of the data).
    LineStart,
    /// Inside a line.
    Body,
    /// A CR was seen; the next byte decides whether it is a line ending.
    Cr,
    /// A dot at the start of a line.
    Dot,
    /// A dot and a CR at the start of a line.
    DotCr,
    /// The terminating `CRLF . CRLF` has been seen.
    Done,
}

/// What one call of [`DataScanner::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input used up.
    pub consumed: usize,
    /// Whether the end of the data was reached (the rest of the input is the next command).
    pub done: bool,
}

/// Reads message data after `354`: un-stuffs dots, normalises bare CR and LF, finds the end.
///
/// The message collected in `out` is what the client meant: CRLF line endings, dot-stuffing
/// removed, up to and including the CRLF before the terminating dot.
#[derive(Debug, Clone)]
pub struct DataScanner {
    state: DataState,
    size: usize,
    limit: usize,
    bare: bool,
}

impl DataScanner {
    /// A scanner at the start of the data, keeping at most `limit` bytes of message.
    pub fn new(limit: usize) -> Self {
        DataScanner {
            state: DataState::LineStart,
            size: 0,
            limit,
            bare: false,
        }
    }

    /// Size of the message so far (counted past the limit too).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the message is larger than the limit (its bytes past the limit were dropped).
    pub fn too_large(&self) -> bool {
        self.size > self.limit
    }

    /// Whether a bare CR or LF was seen (and normalised).
    pub fn saw_bare_line_ending(&self) -> bool {
        self.bare
    }

    /// Whether the end of the data has been reached.
    pub fn is_done(&self) -> bool {
        self.state == DataState::Done
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len();
        if self.size <= self.limit {
            out.extend_from_slice(bytes);
        }
    }

    /// Feeds bytes; message bytes are appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                DataState::Done => break,
                DataState::Body => {
                    let rest = &input[i..];
                    match memchr2(b'\r', b'\n', rest) {
                        None => {
                            self.emit(out, rest);
                            i = input.len();
                        }
                        Some(p) => {
                            self.emit(out, &rest[..p]);
                            if rest[p] == b'\r' {
                                self.state = DataState::Cr;
                            } else {
                                // A bare LF: a line ending, but not a real one.
                                self.bare = true;
                                self.emit(out, b"\r\n");
                            }
                            i += p + 1;
                        }
                    }
                }
                DataState::Cr => {
                    if input[i] == b'\n' {
                        self.emit(out, b"\r\n");
                        self.state = DataState::LineStart;
                        i += 1;
                    } else {
                        // A bare CR; the byte after it is read inside the (normalised) line.
                        self.bare = true;
                        self.emit(out, b"\r\n");
                        self.state = DataState::Body;
                    }
                }
                DataState::LineStart => match input[i] {
                    b'.' => {
                        self.state = DataState::Dot;
                        i += 1;
                    }
                    _ => self.state = DataState::Body,
                },
                DataState::Dot => match input[i] {
                    b'\r' => {
                        self.state = DataState::DotCr;
                        i += 1;
                    }
                    b'\n' => {
                        // `. LF`: a one-dot line after normalising; kept as content.
                        self.bare = true;
                        self.emit(out, b".\r\n");
                        self.state = DataState::Body;
                        i += 1;
                    }
                    _ => {
                        // A stuffed dot: removed.
                        self.state = DataState::Body;
                    }
                },
                DataState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = DataState::Done;
                        i += 1;
                    } else {
                        // `. CR x`: a one-dot line ended by a bare CR; kept as content.
                        self.bare = true;
                        self.emit(out, b".\r\n");
                        self.state = DataState::Body;
                    }
                }
            }
        }
        Fed {
            consumed: i,
            done: self.state == DataState::Done,
        }
    }
}

/// Writes `message` (CRLF line endings) as SMTP DATA content: every line starting with a dot
/// gets another dot, a missing final CRLF is added, and the terminating `.` line follows.
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut start = 0;
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    while let Some(p) = memchr::memmem::find(&message[start..], b"\n.") {
        let end = start + p + 1;
        out.extend_from_slice(&message[start..end]);
        out.push(b'.');
        start = end;
    }
    out.extend_from_slice(&message[start..]);
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (AUTH exchanges).
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, surrounding whitespace ignored); `None` for
/// anything else.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let input = input.trim_ascii();
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(input: &[u8]) -> (Vec<u8>, Fed, bool) {
        let mut s = DataScanner::new(usize::MAX);
        let mut out = Vec::new();
        let fed = s.feed(input, &mut out);
        (out, fed, s.saw_bare_line_ending())
    }

    #[test]
    fn decodes_a_pipeline() {
        let input = b"MAIL FROM:<a@b.test> SIZE=10\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject";
        let mut d = CommandDecoder::new();
        let mut pos = 0;
        let mut names = Vec::new();
        loop {
            match d.decode(&input[pos..]) {
                Decoded::Command {
                    request, consumed, ..
                } => {
                    names.push(request.name());
                    pos += consumed;
                }
                Decoded::NeedMoreData => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(names, ["MAIL", "RCPT", "DATA"]);
        assert_eq!(&input[pos..], b"Subject");
    }

    #[test]
    fn long_lines_are_reported_once() {
        let mut d = CommandDecoder::new();
        let long = vec![b'x'; MAX_COMMAND_LINE + 10];
        assert!(matches!(d.decode(&long), Decoded::Discarded { .. }));
        assert!(matches!(
            d.decode(b"yyy"),
            Decoded::Discarded { consumed: 3 }
        ));
        assert!(matches!(
            d.decode(b"z\r\nNOOP\r\n"),
            Decoded::TooLong { consumed: 3 }
        ));
        assert!(matches!(d.decode(b"NOOP\r\n"), Decoded::Command { .. }));
    }

    #[test]
    fn data_ends_only_at_crlf_dot_crlf() {
        let (out, fed, bare) = scan(b"a\r\n..b\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"a\r\n.b\r\n");
        assert!(fed.done);
        assert_eq!(fed.consumed, 11);
        assert!(!bare);
        let (out, fed, _) = scan(b".\r\n");
        assert!(fed.done);
        assert!(out.is_empty());
    }

    #[test]
    fn smuggling_sequences_do_not_end_data() {
        for seq in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\n.\r",
            b"\r.\n",
            b"\r.\r\n",
        ] {
            let mut input = b"a".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"MAIL FROM:<x@y.test>\r\n");
            let (out, fed, bare) = scan(&input);
            assert!(!fed.done, "{seq:?} ended the data");
            assert!(bare, "{seq:?}");
            let mut stuffed = Vec::new();
            dot_stuff(&out, &mut stuffed);
            assert!(
                !stuffed[..stuffed.len() - 3]
                    .windows(5)
                    .any(|w| w == b"\r\n.\r\n"),
                "{seq:?} -> {:?}",
                String::from_utf8_lossy(&stuffed)
            );
            assert!(out.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'));
        }
    }

    #[test]
    fn split_feeding_matches_whole_feeding() {
        let input = b"x\r\n.\n..y\r\n\r.\rz\r\n.\r\nNEXT";
        let (whole, fed, _) = scan(input);
        for split in 0..input.len() {
            let mut s = DataScanner::new(usize::MAX);
            let mut out = Vec::new();
            let a = s.feed(&input[..split], &mut out);
            let b = s.feed(&input[a.consumed..], &mut out);
            assert_eq!(out, whole, "split at {split}");
            assert_eq!(a.consumed + b.consumed, fed.consumed);
        }
    }

    #[test]
    fn size_limit_keeps_scanning() {
        let mut s = DataScanner::new(4);
        let mut out = Vec::new();
        let fed = s.feed(b"123456\r\n.\r\n", &mut out);
        assert!(fed.done);
        assert!(s.too_large());
        assert_eq!(s.size(), 8);
    }

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        dot_stuff(b".a\r\nb\r\n.\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb\r\n..\r\n.\r\n");
        out.clear();
        dot_stuff(b"", &mut out);
        assert_eq!(out, b".\r\n");
        out.clear();
        dot_stuff(b"x", &mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }

    #[test]
    fn replies() {
        let (r, n) = parse_reply(b"250-a.test\r\n250-PIPELINING\r\n250 AUTH LOGIN PLAIN\r\nX")
            .unwrap()
            .unwrap();
        assert_eq!(n, 50);
        assert_eq!(r.code, 250);
        let e = Extensions::from_ehlo(&r);
        assert!(e.pipelining && e.auth_plain && !e.starttls);
        assert_eq!(parse_reply(b"250-a\r\n").unwrap(), None);
        assert!(parse_reply(b"25x ok\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err());
        assert_eq!(parse_reply(b"354\r\n").unwrap().unwrap().0.code, 354);
    }

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"\0user\0pass", b"\xff\xfe"] {
            assert_eq!(base64_decode(base64_encode(s).as_bytes()).unwrap(), s);
        }
        assert_eq!(base64_encode(b"\0u\0p"), "AHUAcA==");
        assert!(base64_decode(b"a*b").is_none());
    }
}
