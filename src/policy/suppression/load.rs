//! Reading lists line by line: a streaming reader with bounded memory, and the load report.

use super::entry::{parse_ref, EntryError, EntryRef, MAX_LINE};
use super::{Entry, ListFormat};
use memchr::memchr_iter;
use std::io::{self, BufRead};
use std::path::PathBuf;

/// How many malformed lines of one list are quoted in [`LoadReport::first_errors`].
pub(crate) const ERRORS_PER_LIST: usize = 10;

/// What loading lists found: per-file figures and the first malformed lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// One report per list file, in load order (empty for [`parse_lines`]).
    pub files: Vec<FileReport>,
    /// Entries read, over all lists (duplicates included).
    pub entries: usize,
    /// Malformed lines skipped, over all lists.
    pub malformed: usize,
    /// The first few malformed lines of each list, as `global.txt:17: not an address: "foo"`
    /// (`line 17: …` for [`parse_lines`]).
    pub first_errors: Vec<String>,
}

/// What one list file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The list as named in reports and matches: its path relative to the policies directory.
    pub name: String,
    /// The file that was read.
    pub path: PathBuf,
    /// The format the lines were read in.
    pub format: ListFormat,
    /// Lines read (including blank and comment lines).
    pub lines: usize,
    /// Entries read (duplicates included).
    pub entries: usize,
    /// Malformed lines skipped.
    pub malformed: usize,
}

impl LoadReport {
    fn record_error(&mut self, name: Option<&str>, line: usize, error: &EntryError, shown: usize) {
        self.malformed += 1;
        if shown < ERRORS_PER_LIST {
            self.first_errors.push(match name {
                Some(name) => format!("{name}:{line}: {error}"),
                None => format!("line {line}: {error}"),
            });
        }
    }
}

/// Parses entries from `reader` line by line (in the `auto` format), calling `on_entry` for each
/// one; blank and comment lines are skipped, malformed lines counted and the first ten quoted in
/// the report.
///
/// Memory stays bounded whatever the input: lines are not collected, and a line longer than
/// 4096 bytes is reported as malformed without being buffered.
///
/// # Errors
/// The reader's I/O error, with the number of the line being read in its text.
pub fn parse_lines<R: BufRead>(reader: R, on_entry: impl FnMut(Entry)) -> io::Result<LoadReport> {
    parse_lines_as(reader, ListFormat::Auto, on_entry)
}

/// Like [`parse_lines`], for input declared to be in `format`.
///
/// # Errors
/// The reader's I/O error, with the number of the line being read in its text.
pub fn parse_lines_as<R: BufRead>(
    reader: R,
    format: ListFormat,
    mut on_entry: impl FnMut(Entry),
) -> io::Result<LoadReport> {
    let mut report = LoadReport::default();
    read_entries(reader, format, None, &mut report, |e| {
        on_entry(e.into_owned())
    })
    .map_err(|(line, e)| io::Error::new(e.kind(), format!("at line {line}: {e}")))?;
    Ok(report)
}

/// Reads every line of `reader`, calling `on_entry` for each entry and recording malformed lines
/// in `report` (under `name`). Returns the number of lines read.
///
/// An I/O error comes back with the number of the line being read.
pub(crate) fn read_entries<R: BufRead>(
    reader: R,
    format: ListFormat,
    name: Option<&str>,
    report: &mut LoadReport,
    mut on_entry: impl FnMut(EntryRef<'_>),
) -> Result<usize, (usize, io::Error)> {
    let mut shown = 0usize;
    let mut entries = 0usize;
    let lines = for_each_line(reader, |line_no, line| {
        let parsed = line.and_then(|l| parse_ref(l, format));
        match parsed {
            Ok(Some(entry)) => {
                entries += 1;
                on_entry(entry);
            }
            Ok(None) => {}
            Err(e) => {
                report.record_error(name, line_no, &e, shown);
                shown += 1;
            }
        }
    })?;
    report.entries += entries;
    Ok(lines)
}

/// Calls `f` with the number and text of each line (without its `\n`), or the reason the line
/// cannot be text. Returns the number of lines.
fn for_each_line<R: BufRead>(
    mut reader: R,
    mut f: impl FnMut(usize, Result<&str, EntryError>),
) -> Result<usize, (usize, io::Error)> {
    fn text(bytes: &[u8]) -> Result<&str, EntryError> {
        std::str::from_utf8(bytes).map_err(|_| EntryError::NotUtf8)
    }
    let mut carry: Vec<u8> = Vec::new();
    let mut line_no = 0usize;
    // The length so far of an over-long line being skipped.
    let mut overlong: Option<usize> = None;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((line_no + 1, e)),
        };
        if buf.is_empty() {
            if let Some(len) = overlong {
                line_no += 1;
                f(line_no, Err(EntryError::TooLong(len)));
            } else if !carry.is_empty() {
                line_no += 1;
                f(line_no, text(&carry));
            }
            return Ok(line_no);
        }
        let mut start = 0;
        for nl in memchr_iter(b'\n', buf) {
            line_no += 1;
            let piece = &buf[start..nl];
            if let Some(len) = overlong.take() {
                f(line_no, Err(EntryError::TooLong(len + piece.len())));
            } else if carry.is_empty() {
                if piece.len() > MAX_LINE {
                    f(line_no, Err(EntryError::TooLong(piece.len())));
                } else {
                    f(line_no, text(piece));
                }
            } else if carry.len() + piece.len() > MAX_LINE {
                f(line_no, Err(EntryError::TooLong(carry.len() + piece.len())));
            } else {
                carry.extend_from_slice(piece);
                f(line_no, text(&carry));
            }
            carry.clear();
            start = nl + 1;
        }
        let rest = &buf[start..];
        match overlong.as_mut() {
            Some(len) => *len += rest.len(),
            None if carry.len() + rest.len() > MAX_LINE => {
                overlong = Some(carry.len() + rest.len());
                carry.clear();
            }
            None => carry.extend_from_slice(rest),
        }
        let n = buf.len();
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    fn lines_of(input: &[u8], capacity: usize) -> Vec<(usize, Result<String, EntryError>)> {
        let mut out = Vec::new();
        let r = BufReader::with_capacity(capacity, input);
        let n = for_each_line(r, |i, l| out.push((i, l.map(str::to_string))));
        assert_eq!(n.ok(), Some(out.len()));
        out
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        let input = b"a@x.test\r\nbb@x.test\n\nlast@x.test";
        for cap in [1, 2, 3, 5, 8, 64] {
            let got = lines_of(input, cap);
            let want = vec![
                (1, Ok("a@x.test\r".to_string())),
                (2, Ok("bb@x.test".to_string())),
                (3, Ok(String::new())),
                (4, Ok("last@x.test".to_string())),
            ];
            assert_eq!(got, want, "capacity {cap}");
        }
        assert!(lines_of(b"", 8).is_empty());
        assert_eq!(lines_of(b"x\n", 8), vec![(1, Ok("x".to_string()))]);
    }

    #[test]
    fn long_and_binary_lines_are_errors_not_buffers() {
        let mut input = b"ok@x.test\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE * 3));
        input.extend(b"\n\xff\xfe@x.test\nfine@x.test\n");
        input.extend(std::iter::repeat_n(b'b', MAX_LINE + 1));
        for cap in [7, 1000, 1 << 16] {
            let got = lines_of(&input, cap);
            let want = vec![
                (1, Ok("ok@x.test".to_string())),
                (2, Err(EntryError::TooLong(MAX_LINE * 3))),
                (3, Err(EntryError::NotUtf8)),
                (4, Ok("fine@x.test".to_string())),
                (5, Err(EntryError::TooLong(MAX_LINE + 1))),
            ];
            assert_eq!(got, want, "capacity {cap}");
        }
    }

    #[test]
    fn parse_lines_counts_and_quotes() {
        let input = "# list\nanna@x.test\nfoo\n\n@x.test\nmd5:12\n";
        let mut got = Vec::new();
        let report = parse_lines(input.as_bytes(), |e| got.push(e)).ok();
        assert_eq!(
            got,
            vec![
                Entry::Address("anna@x.test".into()),
                Entry::Domain("x.test".into())
            ]
        );
        let report = report.unwrap_or_default();
        assert_eq!((report.entries, report.malformed), (2, 2));
        assert_eq!(
            report.first_errors,
            vec![
                "line 3: not an address: \"foo\"".to_string(),
                "line 6: not an md5 hash (32 hex digits): \"md5:12\"".to_string(),
            ]
        );
    }

    #[test]
    fn quotes_only_the_first_errors() {
        let input = "bad\n".repeat(25);
        let report = parse_lines(input.as_bytes(), |_| {})
            .ok()
            .unwrap_or_default();
        assert_eq!(report.malformed, 25);
        assert_eq!(report.first_errors.len(), ERRORS_PER_LIST);
    }

    #[test]
    fn io_errors_carry_the_line() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                let line = b"a@x.test\n";
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            }
        }
        let r = BufReader::with_capacity(64, Failing(2));
        let err = parse_lines(r, |_| {}).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("at line 3: disk on fire"));
    }
}
