//! Properties of the SMTP codec: it never panics, reports need-more-data for every prefix of a
//! valid pipeline, and the DATA scanner and dot-stuffing round-trip and never let a message
//! end early.

use proptest::prelude::*;
use sendguard::smtp::codec::{dot_stuff, parse_reply, CommandDecoder, DataScanner, Decoded};

const PIPELINE: &[u8] = b"EHLO client.test\r\nMAIL FROM:<a@sender.test> SIZE=1234 BODY=8BITMIME\r\nRCPT TO:<b@rcpt.test>\r\nRCPT TO:<\"quoted local\"@rcpt.test>\r\nNOOP\r\nRSET\r\nVRFY x\r\nDATA\r\n";

/// Decodes every complete command of `buf`; returns (names, bytes consumed, ended in need-more).
fn decode_all(buf: &[u8]) -> (Vec<&'static str>, usize, bool) {
    let mut d = CommandDecoder::new();
    let mut pos = 0;
    let mut names = Vec::new();
    loop {
        match d.decode(&buf[pos..]) {
            Decoded::Command {
                request, consumed, ..
            } => {
                names.push(request.name());
                pos += consumed;
            }
            Decoded::Invalid { consumed, .. }
            | Decoded::TooLong { consumed }
            | Decoded::Discarded { consumed } => {
                names.push("invalid");
                pos += consumed;
            }
            Decoded::NeedMoreData => return (names, pos, true),
        }
        if pos == buf.len() {
            return (names, pos, false);
        }
    }
}

#[test]
fn every_prefix_of_a_pipeline_needs_more_data() {
    let (all, used, _) = decode_all(PIPELINE);
    assert_eq!(used, PIPELINE.len());
    assert_eq!(
        all,
        ["EHLO", "MAIL", "RCPT", "RCPT", "NOOP", "RSET", "VRFY", "DATA"]
    );
    let line_ends: Vec<usize> = PIPELINE
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    for cut in 0..PIPELINE.len() {
        let (names, used, need_more) = decode_all(&PIPELINE[..cut]);
        let complete = line_ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(names, all[..complete], "cut at {cut}");
        assert!(!names.contains(&"invalid"), "cut at {cut}");
        let last_end = line_ends
            .iter()
            .copied()
            .filter(|&e| e <= cut)
            .max()
            .unwrap_or(0);
        assert_eq!(used, last_end, "cut at {cut}");
        assert!(need_more || cut == last_end, "cut at {cut}");
    }
}

#[test]
fn hostile_command_lines() {
    let cases: &[(&[u8], &str)] = &[
        (b"MAIL FROM:<a@b.test>\r\n", "MAIL"),
        (b"mail from:<a@b.test>\r\n", "MAIL"),
        (b"MAIL FROM:<>\r\n", "MAIL"),
        (b"RCPT TO:<a@b.test>\n", "RCPT"),
        (b"MAIL FROM:<a@b.test> FOO=bar\r\n", "invalid"),
        (b"MAIL FROM:a@b.test\r\n", "invalid"),
        // Parsed; the session refuses the empty recipient with 501.
        (b"RCPT TO:<>\r\n", "RCPT"),
        (b"DATA extra\r\n", "DATA"),
        (b"\r\n", "invalid"),
        (b"\x00\x01\x02\r\n", "invalid"),
        (b"QUIT\r\n", "QUIT"),
    ];
    for (line, want) in cases {
        let (names, used, _) = decode_all(line);
        assert_eq!(used, line.len(), "{:?}", String::from_utf8_lossy(line));
        assert_eq!(
            names.first().copied(),
            Some(*want),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // 10,000 recipients in one pipeline.
    let mut big = Vec::new();
    for i in 0..10_000 {
        big.extend_from_slice(format!("RCPT TO:<r{i}@rcpt.test>\r\n").as_bytes());
    }
    let (names, used, _) = decode_all(&big);
    assert_eq!(names.len(), 10_000);
    assert_eq!(used, big.len());
    // A 1 MB line is one error, and the next command still parses.
    let mut huge = vec![b'X'; 1 << 20];
    huge.extend_from_slice(b"\r\nNOOP\r\n");
    let (names, _, _) = decode_all(&huge);
    assert_eq!(names.iter().filter(|n| **n != "invalid").count(), 1);
    assert_eq!(names.last(), Some(&"NOOP"));
}

fn scan_whole(input: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut s = DataScanner::new(usize::MAX);
    let mut out = Vec::new();
    let fed = s.feed(input, &mut out);
    (out, fed.consumed, fed.done)
}

/// Messages as a client means them: CRLF line endings, any other bytes.
fn message() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::collection::vec(
            prop_oneof![
                4 => any::<u8>().prop_filter("no line ends", |b| *b != b'\r' && *b != b'\n'),
                1 => Just(b'.'),
            ],
            0..40,
        ),
        0..20,
    )
    .prop_map(|lines| {
        let mut m = Vec::new();
        for l in lines {
            m.extend_from_slice(&l);
            m.extend_from_slice(b"\r\n");
        }
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoder_never_panics(input in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_all(&input);
    }

    #[test]
    fn reply_parser_never_panics(input in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_reply(&input);
    }

    #[test]
    fn stuffing_round_trips(msg in message(), tail in prop::collection::vec(any::<u8>(), 0..20)) {
        let mut wire = Vec::new();
        dot_stuff(&msg, &mut wire);
        let end = wire.len();
        wire.extend_from_slice(&tail);
        let (out, consumed, done) = scan_whole(&wire);
        prop_assert!(done);
        prop_assert_eq!(consumed, end);
        prop_assert_eq!(out, msg);
    }

    #[test]
    fn scanner_output_is_safe_and_split_invariant(
        input in prop::collection::vec(prop_oneof![
            3 => any::<u8>(),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => Just(b'.'),
        ], 0..300),
        split in any::<prop::sample::Index>(),
    ) {
        let (whole, consumed, done) = scan_whole(&input);
        // Never a bare CR or LF in what is collected.
        for (i, b) in whole.iter().enumerate() {
            if *b == b'\n' {
                prop_assert!(i > 0 && whole[i - 1] == b'\r');
            }
            if *b == b'\r' {
                prop_assert_eq!(whole.get(i + 1), Some(&b'\n'));
            }
        }
        // Stuffed again, the only lone dot line is the terminator.
        let mut wire = Vec::new();
        dot_stuff(&whole, &mut wire);
        let body = &wire[..wire.len() - 3];
        prop_assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
        prop_assert!(!body.starts_with(b".\r\n"));
        // Only a real CRLF.CRLF ends the data.
        if done {
            prop_assert!(consumed >= 3 && &input[consumed - 3..consumed] == b".\r\n");
            prop_assert!(consumed == 3 || &input[consumed - 5..consumed - 3] == b"\r\n");
        }
        // Feeding in two pieces gives the same.
        let cut = split.index(input.len() + 1);
        let mut s = DataScanner::new(usize::MAX);
        let mut out = Vec::new();
        let a = s.feed(&input[..cut], &mut out);
        let mut total = a.consumed;
        if !a.done {
            total += s.feed(&input[cut..], &mut out).consumed;
        }
        prop_assert_eq!(out, whole);
        prop_assert_eq!(total, consumed);
    }
}
