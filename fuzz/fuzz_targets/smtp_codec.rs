//! Fuzzes the SMTP codec: command decoding, upstream reply parsing, the DATA scanner (fed in
//! two pieces) and dot-stuffing. None may panic; the scanner's output must never hold a bare
//! CR or LF, and once stuffed must hold no lone dot line before the terminator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sendguard::smtp::codec::{dot_stuff, parse_reply, CommandDecoder, DataScanner, Decoded};

fuzz_target!(|data: &[u8]| {
    let mut d = CommandDecoder::new();
    let mut pos = 0;
    while pos < data.len() {
        let used = match d.decode(&data[pos..]) {
            Decoded::Command { consumed, .. }
            | Decoded::Invalid { consumed, .. }
            | Decoded::TooLong { consumed }
            | Decoded::Discarded { consumed } => consumed,
            Decoded::NeedMoreData => break,
        };
        assert!(used > 0 && pos + used <= data.len());
        pos += used;
    }
    let _ = parse_reply(data);

    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut s = DataScanner::new(1 << 20);
    let mut out = Vec::new();
    let a = s.feed(&data[..cut], &mut out);
    if !a.done {
        let _ = s.feed(&data[cut..], &mut out);
    }
    for (i, b) in out.iter().enumerate() {
        if *b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r');
        }
        if *b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'));
        }
    }
    let mut wire = Vec::new();
    dot_stuff(&out, &mut wire);
    let body = &wire[..wire.len() - 3];
    assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
    assert!(!body.starts_with(b".\r\n"));
});
