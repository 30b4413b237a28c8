//! One line of a suppression list: parsing, normalisation and the canonical line form.

use super::ListFormat;
use std::borrow::Cow;
use std::fmt;

/// Longest line accepted, in bytes; longer lines are reported as malformed without being buffered.
pub(crate) const MAX_LINE: usize = 4096;

/// How much of an offending input an error message quotes.
const QUOTE_CHARS: usize = 60;

/// One parsed suppression-list entry.
///
/// Addresses and domains hold their normalised form (trimmed, without angle brackets,
/// lower-cased), as [`Entry::parse`] produces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A single address, e.g. `anna@x.test`.
    Address(String),
    /// Every address of a domain, written `@x.test` in a list; held without the `@`.
    Domain(String),
    /// The MD5 digest of a lower-cased address, written `md5:HEX` or as a bare 32-digit hex line.
    Md5([u8; 16]),
    /// The SHA-256 digest of a lower-cased address, written `sha256:HEX` or as a bare 64-digit hex
    /// line.
    Sha256([u8; 32]),
}

/// Why a list line is not an entry. The text names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The line holds nothing but whitespace or a comment (only [`str::parse`] treats this as an
    /// error).
    #[error("empty entry")]
    Empty,
    /// Not an address: no `@`, an empty local part or domain, or characters no address has.
    #[error("not an address: {0:?}")]
    NotAnAddress(String),
    /// An `@domain` entry whose domain is not a domain name.
    #[error("not a domain: {0:?}")]
    NotADomain(String),
    /// An `md5:` entry (or a line of an MD5 list) that is not 32 hex digits.
    #[error("not an md5 hash (32 hex digits): {0:?}")]
    BadMd5(String),
    /// A `sha256:` entry (or a line of a SHA-256 list) that is not 64 hex digits.
    #[error("not a sha256 hash (64 hex digits): {0:?}")]
    BadSha256(String),
    /// Text after the entry that is not a `#` comment.
    #[error("unexpected text after the entry: {0:?}")]
    TrailingText(String),
    /// The line is not valid UTF-8.
    #[error("line is not valid utf-8")]
    NotUtf8,
    /// The line is longer than 4096 bytes.
    #[error("line too long: {0} bytes (at most 4096)")]
    TooLong(usize),
}

/// An entry borrowing from the line it was parsed from, so that bulk loading does not allocate
/// per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryRef<'a> {
    Address(Cow<'a, str>),
    Domain(Cow<'a, str>),
    Md5([u8; 16]),
    Sha256([u8; 32]),
}

impl EntryRef<'_> {
    pub(crate) fn into_owned(self) -> Entry {
        match self {
            EntryRef::Address(a) => Entry::Address(a.into_owned()),
            EntryRef::Domain(d) => Entry::Domain(d.into_owned()),
            EntryRef::Md5(h) => Entry::Md5(h),
            EntryRef::Sha256(h) => Entry::Sha256(h),
        }
    }
}

impl Entry {
    /// Parses one list line in any of the forms a list may hold (the `auto` format).
    ///
    /// Returns `Ok(None)` for a blank line or a `#` comment. Surrounding whitespace, a CR before the
    /// line end, a UTF-8 byte-order mark, `<addr>` brackets and a trailing `# comment` are
    /// tolerated. A bare line of 32 or 64 hex digits is an MD5 or SHA-256 hash.
    ///
    /// ```
    /// use sendguard::policy::suppression::Entry;
    /// assert_eq!(Entry::parse(" <Anna@X.test>\r").unwrap(), Some(Entry::Address("anna@x.test".into())));
    /// assert_eq!(Entry::parse("@X.test # whole domain").unwrap(), Some(Entry::Domain("x.test".into())));
    /// assert_eq!(Entry::parse("# comment").unwrap(), None);
    /// assert!(Entry::parse("not-an-address").is_err());
    /// ```
    ///
    /// # Errors
    /// An [`EntryError`] naming what is wrong with the line.
    pub fn parse(line: &str) -> Result<Option<Entry>, EntryError> {
        Entry::parse_as(line, ListFormat::Auto)
    }

    /// Parses one list line of a list declared to be in `format`.
    ///
    /// `plain` lists read a bare hex line as an address (and so reject it); `md5` and `sha256`
    /// lists accept only hashes of their kind, bare or prefixed.
    ///
    /// # Errors
    /// An [`EntryError`] naming what is wrong with the line.
    pub fn parse_as(line: &str, format: ListFormat) -> Result<Option<Entry>, EntryError> {
        Ok(parse_ref(line, format)?.map(EntryRef::into_owned))
    }

    /// The entry as a list line: `anna@x.test`, `@x.test`, `md5:HEX` or `sha256:HEX` (lower-case
    /// hex). [`Entry::parse`] reads it back to the same entry (an address that would read as a
    /// comment, a domain or a hash, such as `#team@x.test`, is written in angle brackets).
    pub fn to_line(&self) -> String {
        match self {
            // An address a line could read as something else is written in brackets.
            Entry::Address(a) if needs_brackets(a) => format!("<{a}>"),
            Entry::Address(a) => a.clone(),
            Entry::Domain(d) => format!("@{d}"),
            Entry::Md5(h) => format!("md5:{}", hex::encode(h)),
            Entry::Sha256(h) => format!("sha256:{}", hex::encode(h)),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

impl std::str::FromStr for Entry {
    type Err = EntryError;

    /// Like [`Entry::parse`], but a blank or comment line is an error ([`EntryError::Empty`]).
    fn from_str(s: &str) -> Result<Entry, EntryError> {
        Entry::parse(s)?.ok_or(EntryError::Empty)
    }
}

/// Parses a line without allocating unless the entry needs lower-casing.
pub(crate) fn parse_ref(
    line: &str,
    format: ListFormat,
) -> Result<Option<EntryRef<'_>>, EntryError> {
    if line.len() > MAX_LINE {
        return Err(EntryError::TooLong(line.len()));
    }
    let s = line.strip_prefix('\u{feff}').unwrap_or(line).trim();
    if s.is_empty() || s.starts_with('#') {
        return Ok(None);
    }
    let (token, rest) = split_token(s);
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(EntryError::TrailingText(quote(rest)));
    }
    match format {
        ListFormat::Md5 => {
            let hex = strip_prefix_ci(token, "md5:").unwrap_or(token);
            decode_hex::<16>(hex)
                .map(|h| Some(EntryRef::Md5(h)))
                .ok_or_else(|| EntryError::BadMd5(quote(token)))
        }
        ListFormat::Sha256 => {
            let hex = strip_prefix_ci(token, "sha256:").unwrap_or(token);
            decode_hex::<32>(hex)
                .map(|h| Some(EntryRef::Sha256(h)))
                .ok_or_else(|| EntryError::BadSha256(quote(token)))
        }
        ListFormat::Auto | ListFormat::Plain => {
            if let Some(hex) = strip_prefix_ci(token, "md5:") {
                return decode_hex::<16>(hex)
                    .map(|h| Some(EntryRef::Md5(h)))
                    .ok_or_else(|| EntryError::BadMd5(quote(token)));
            }
            if let Some(hex) = strip_prefix_ci(token, "sha256:") {
                return decode_hex::<32>(hex)
                    .map(|h| Some(EntryRef::Sha256(h)))
                    .ok_or_else(|| EntryError::BadSha256(quote(token)));
            }
            if format == ListFormat::Auto {
                match token.len() {
                    32 => {
                        if let Some(h) = decode_hex::<16>(token) {
                            return Ok(Some(EntryRef::Md5(h)));
                        }
                    }
                    64 => {
                        if let Some(h) = decode_hex::<32>(token) {
                            return Ok(Some(EntryRef::Sha256(h)));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(domain) = token.strip_prefix('@') {
                let domain = lowercase(domain);
                return if valid_domain(&domain) {
                    Ok(Some(EntryRef::Domain(domain)))
                } else {
                    Err(EntryError::NotADomain(quote(token)))
                };
            }
            let address = lowercase(strip_brackets(token));
            if valid_address(&address) {
                Ok(Some(EntryRef::Address(address)))
            } else {
                Err(EntryError::NotAnAddress(quote(token)))
            }
        }
    }
}

/// Splits a trimmed, non-empty line into the entry and what follows it. An entry in angle
/// brackets may hold spaces inside the brackets.
fn split_token(s: &str) -> (&str, &str) {
    let end = if s.starts_with('<') {
        match s.find('>') {
            Some(gt) => gt + 1,
            None => find_whitespace(s),
        }
    } else {
        find_whitespace(s)
    };
    let (token, rest) = s.split_at(end);
    (token, rest.trim_start())
}

/// The position of the first whitespace character, or the length: a byte scan for ASCII text.
fn find_whitespace(s: &str) -> usize {
    if s.is_ascii() {
        // The ASCII characters `char::is_whitespace` accepts: space and \t \n \x0b \x0c \r.
        s.bytes()
            .position(|b| b == b' ' || (b'\t'..=b'\r').contains(&b))
            .unwrap_or(s.len())
    } else {
        s.find(char::is_whitespace).unwrap_or(s.len())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn decode_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// Trims whitespace and one `<` / `>` on either side, exactly as
/// [`normalize_address`](crate::model::normalize_address) does.
pub(crate) fn strip_brackets(address: &str) -> &str {
    let a = address.trim();
    let a = a.strip_prefix('<').unwrap_or(a);
    let a = a.strip_suffix('>').unwrap_or(a);
    a.trim()
}

/// Lower-cases, borrowing when there is nothing to change.
pub(crate) fn lowercase(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        let lower = s.to_lowercase();
        if lower == s {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(lower)
        }
    }
}

/// Normalises an address for lookup (the same result as
/// [`normalize_address`](crate::model::normalize_address)), lower-casing short ASCII addresses into
/// `buf` instead of allocating.
pub(crate) fn normalize_into<'a>(address: &'a str, buf: &'a mut [u8; 256]) -> Cow<'a, str> {
    let a = strip_brackets(address);
    if a.is_ascii() {
        if !a.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Borrowed(a);
        }
        if let Some(out) = buf.get_mut(..a.len()) {
            out.copy_from_slice(a.as_bytes());
            out.make_ascii_lowercase();
            if let Ok(s) = std::str::from_utf8(out) {
                return Cow::Borrowed(s);
            }
        }
        return Cow::Owned(a.to_ascii_lowercase());
    }
    Cow::Owned(a.to_lowercase())
}

/// Whether a line holding just `address` would read as a comment, a domain or a hash.
fn needs_brackets(address: &str) -> bool {
    address.starts_with(['#', '@'])
        || strip_prefix_ci(address, "md5:").is_some()
        || strip_prefix_ci(address, "sha256:").is_some()
}

fn bad_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '\u{feff}')
}

fn valid_address(a: &str) -> bool {
    let Some(at) = a.rfind('@') else {
        return false;
    };
    let (local, domain) = (&a[..at], &a[at + 1..]);
    let local_ok = if local.is_ascii() {
        // `bad_char` on ASCII: controls, space, DEL and the brackets.
        !local
            .bytes()
            .any(|b| b <= b' ' || matches!(b, 0x7f | b'<' | b'>'))
    } else {
        !local.chars().any(bad_char)
    };
    !local.is_empty() && local_ok && valid_domain(domain)
}

fn valid_domain(d: &str) -> bool {
    if let Some(literal) = d.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return !literal.is_empty()
            && !literal
                .chars()
                .any(|c| bad_char(c) || matches!(c, '[' | ']'));
    }
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    if d.is_ascii() {
        let b = d.as_bytes();
        return b.first() != Some(&b'.')
            && b.last() != Some(&b'.')
            && !d.contains("..")
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    }
    d.split('.').all(|label| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// The first characters of an offending input, for error messages.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Entry>, EntryError> {
        Entry::parse(line)
    }

    fn addr(a: &str) -> Option<Entry> {
        Some(Entry::Address(a.into()))
    }

    const MD5_HEX: &str = "0cc175b9c0f1b6a831c399e269772661";
    const SHA_HEX: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    #[test]
    fn parses_every_form() {
        let md5 = decode_hex::<16>(MD5_HEX).map(Entry::Md5);
        let sha = decode_hex::<32>(SHA_HEX).map(Entry::Sha256);
        let table: Vec<(&str, Option<Entry>)> = vec![
            ("anna@x.test", addr("anna@x.test")),
            ("  Anna@X.Test  ", addr("anna@x.test")),
            ("anna@x.test\r", addr("anna@x.test")),
            ("\u{feff}anna@x.test", addr("anna@x.test")),
            ("<anna@x.test>", addr("anna@x.test")),
            ("< anna@x.test >", addr("anna@x.test")),
            // Unbalanced brackets are tolerated, as by `normalize_address`.
            ("<anna@x.test", addr("anna@x.test")),
            ("anna@x.test # unsubscribed 2024-03-01", addr("anna@x.test")),
            ("anna@x.test\t#bounced", addr("anna@x.test")),
            ("a#b@x.test", addr("a#b@x.test")),
            ("anna+news@x.test", addr("anna+news@x.test")),
            ("Jürgen@Bücher.TEST", addr("jürgen@bücher.test")),
            ("anna@[192.0.2.1]", addr("anna@[192.0.2.1]")),
            ("@X.test", Some(Entry::Domain("x.test".into()))),
            (
                "@x.test # all of them",
                Some(Entry::Domain("x.test".into())),
            ),
            ("", None),
            ("   \r", None),
            ("\u{feff}", None),
            ("# a comment", None),
            ("   # indented comment", None),
        ];
        for (line, want) in table {
            assert_eq!(parse(line), Ok(want), "line {line:?}");
        }
        for line in [
            format!("md5:{MD5_HEX}"),
            format!("MD5:{}", MD5_HEX.to_uppercase()),
            MD5_HEX.to_string(),
            format!(" {MD5_HEX}\r"),
        ] {
            assert_eq!(parse(&line), Ok(md5.clone()), "line {line:?}");
        }
        for line in [
            format!("sha256:{SHA_HEX}"),
            format!("SHA256:{}", SHA_HEX.to_uppercase()),
            SHA_HEX.to_string(),
        ] {
            assert_eq!(parse(&line), Ok(sha.clone()), "line {line:?}");
        }
    }

    #[test]
    fn rejects_malformed_lines_naming_them() {
        let table = [
            ("foo", EntryError::NotAnAddress("foo".into())),
            ("@", EntryError::NotADomain("@".into())),
            ("@x..test", EntryError::NotADomain("@x..test".into())),
            ("anna@", EntryError::NotAnAddress("anna@".into())),
            ("@x.test@", EntryError::NotADomain("@x.test@".into())),
            ("anna@x test", EntryError::TrailingText("test".into())),
            (
                "anna@x.test, bob@x.test",
                EntryError::TrailingText("bob@x.test".into()),
            ),
            ("md5:abc", EntryError::BadMd5("md5:abc".into())),
            ("sha256:zz", EntryError::BadSha256("sha256:zz".into())),
            ("<>", EntryError::NotAnAddress("<>".into())),
        ];
        for (line, want) in table {
            assert_eq!(parse(line), Err(want), "line {line:?}");
        }
        let long = "a".repeat(MAX_LINE + 1);
        assert_eq!(parse(&long), Err(EntryError::TooLong(MAX_LINE + 1)));
        let err = parse(&"x".repeat(200)).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.len() < 100 && e.starts_with("not an address: \"xxx")));
    }

    #[test]
    fn declared_formats() {
        // A bare 32-hex line is a hash in auto lists and not an address in plain lists.
        assert!(matches!(parse(MD5_HEX), Ok(Some(Entry::Md5(_)))));
        assert_eq!(
            Entry::parse_as(MD5_HEX, ListFormat::Plain),
            Err(EntryError::NotAnAddress(MD5_HEX.into()))
        );
        assert!(matches!(
            Entry::parse_as(&format!("md5:{MD5_HEX}"), ListFormat::Plain),
            Ok(Some(Entry::Md5(_)))
        ));
        // Declared hash lists accept only their own kind.
        assert!(matches!(
            Entry::parse_as(MD5_HEX, ListFormat::Md5),
            Ok(Some(Entry::Md5(_)))
        ));
        assert_eq!(
            Entry::parse_as(SHA_HEX, ListFormat::Md5),
            Err(EntryError::BadMd5(quote(SHA_HEX)))
        );
        assert_eq!(
            Entry::parse_as("anna@x.test", ListFormat::Sha256),
            Err(EntryError::BadSha256("anna@x.test".into()))
        );
        assert!(matches!(
            Entry::parse_as(SHA_HEX, ListFormat::Sha256),
            Ok(Some(Entry::Sha256(_)))
        ));
        assert_eq!(Entry::parse_as("# c", ListFormat::Sha256), Ok(None));
    }

    #[test]
    fn from_str_and_lines() {
        assert_eq!("".parse::<Entry>(), Err(EntryError::Empty));
        assert_eq!("# x".parse::<Entry>(), Err(EntryError::Empty));
        let e: Result<Entry, _> = "@x.test".parse();
        assert_eq!(e.map(|e| e.to_line()), Ok("@x.test".to_string()));
        assert_eq!(
            Entry::Md5([0xab; 16]).to_string(),
            format!("md5:{}", "ab".repeat(16))
        );
    }

    #[test]
    fn ascii_fast_paths_agree_with_the_char_rules() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            let local = format!("a{c}b");
            assert_eq!(
                valid_address(&format!("{local}@x.test")),
                !bad_char(c),
                "{b:#x}"
            );
            assert_eq!(
                find_whitespace(&format!("ab{c}")),
                if c.is_whitespace() { 2 } else { 3 },
                "{b:#x}"
            );
            let label_ok = c.is_alphanumeric() || c == '-' || c == '_';
            assert_eq!(
                valid_domain(&format!("a{c}b.test")),
                label_ok || c == '.',
                "{b:#x}"
            );
        }
        assert!(!valid_domain(".x.test") && !valid_domain("x.test.") && !valid_domain("x..test"));
    }

    #[test]
    fn lookup_normalisation_matches_the_model() {
        let mut buf = [0u8; 256];
        for a in [
            " <Anna@X.Test> ",
            "anna@x.test",
            "ÄNNA@x.test",
            "<x>",
            "",
            &"A".repeat(300),
        ] {
            assert_eq!(
                normalize_into(a, &mut buf),
                crate::model::normalize_address(a),
                "{a:?}"
            );
        }
    }
}
