use super::*;
use proptest::prelude::*;
use std::sync::OnceLock;

fn index_of(entries: &[Entry], normalize_plus: bool) -> SuppressionIndex {
    let policy = SuppressionPolicy {
        lists: Vec::new(),
        normalize_plus,
        ..SuppressionPolicy::default()
    };
    match SuppressionIndex::build(&policy, Path::new("."), entries) {
        Ok((index, _)) => index,
        Err(e) => panic!("build failed: {e}"),
    }
}

fn entries(lines: &[&str]) -> Vec<Entry> {
    lines
        .iter()
        .filter_map(|l| Entry::parse(l).ok().flatten())
        .collect()
}

fn entry_of(m: Option<SuppressionMatch>) -> Option<String> {
    m.map(|m| m.entry)
}

#[test]
fn empty_index_suppresses_nothing() {
    let index = SuppressionIndex::empty();
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
    assert_eq!(index.lookup("anna@x.test"), None);
    assert_eq!(check(&index, &Overlay::empty(), "anna@x.test"), None);
}

#[test]
fn matches_addresses_domains_and_hashes() {
    let md5 = format!("md5:{}", hex::encode(md5_of("hash@x.test")));
    let sha = format!("sha256:{}", hex::encode(sha256_of("sha@x.test")));
    let index = index_of(
        &entries(&["Anna@X.test", "@blocked.test", &md5, &sha]),
        false,
    );
    assert_eq!(index.len(), 4);
    let table = [
        ("anna@x.test", Some("anna@x.test".to_string())),
        (" <ANNA@x.TEST> ", Some("anna@x.test".to_string())),
        ("bob@x.test", None),
        ("anna@x.test.evil", None),
        ("anyone@Blocked.TEST", Some("@blocked.test".to_string())),
        ("anyone@sub.blocked.test", None),
        ("HASH@x.test", Some(md5.clone())),
        ("sha@X.test", Some(sha.clone())),
        ("anna+news@x.test", None),
        ("", None),
    ];
    for (address, want) in table {
        let got = index.lookup(address);
        assert_eq!(entry_of(got.clone()), want, "{address:?}");
        if let Some(m) = got {
            assert_eq!(&*m.list, ADMIN_LIST);
        }
    }
}

#[test]
fn plus_normalisation_checks_both_forms() {
    let lines = [
        "anna@x.test".to_string(),
        "tagged+only@x.test".to_string(),
        format!("md5:{}", hex::encode(md5_of("hashed@x.test"))),
        format!("sha256:{}", hex::encode(sha256_of("sha@x.test"))),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let off = index_of(&entries(&lines), false);
    let on = index_of(&entries(&lines), true);
    let table = [
        ("anna+news@x.test", None, Some("anna@x.test")),
        ("Anna+News@X.test", None, Some("anna@x.test")),
        ("anna@x.test", Some("anna@x.test"), Some("anna@x.test")),
        (
            "tagged+only@x.test",
            Some("tagged+only@x.test"),
            Some("tagged+only@x.test"),
        ),
        ("tagged@x.test", None, None),
        ("+anna@x.test", None, None),
        ("hashed+x@x.test", None, Some("md5:")),
        ("sha+y@x.test", None, Some("sha256:")),
    ];
    for (address, want_off, want_on) in table {
        let starts = |m: Option<SuppressionMatch>, want: Option<&str>| match (m, want) {
            (None, None) => true,
            (Some(m), Some(w)) => m.entry.starts_with(w),
            _ => false,
        };
        assert!(starts(off.lookup(address), want_off), "off: {address}");
        assert!(starts(on.lookup(address), want_on), "on: {address}");
    }
}

#[test]
fn overlay_adds_and_removes() {
    let index = index_of(&entries(&["anna@x.test", "@blocked.test"]), true);
    let overlay = Overlay::new(
        &entries(&["new@x.test", "@added.test"]),
        &["ANNA@x.test".to_string(), "boss@blocked.test".to_string()],
    );
    assert_eq!((overlay.added_len(), overlay.removed_len()), (2, 2));
    let table = [
        // A removal is an exception to every list entry, including the domain.
        ("anna@x.test", None),
        ("anna+news@x.test", None),
        ("boss@blocked.test", None),
        ("worker@blocked.test", Some(("@blocked.test", ADMIN_LIST))),
        ("new@x.test", Some(("new@x.test", ADMIN_LIST))),
        ("New+Tag@X.test", Some(("new@x.test", ADMIN_LIST))),
        ("x@added.test", Some(("@added.test", ADMIN_LIST))),
        ("other@x.test", None),
    ];
    for (address, want) in table {
        let got = check(&index, &overlay, address);
        let got = got.as_ref().map(|m| (m.entry.as_str(), &*m.list));
        assert_eq!(got, want, "{address}");
    }
    assert!(overlay.is_removed("anna@x.test", false));
    assert!(!overlay.is_removed("anna+news@x.test", false));
    assert!(overlay.is_removed("anna+news@x.test", true));
    assert_eq!(
        entry_of(overlay.lookup("new@x.test", false)),
        Some("new@x.test".into())
    );
    assert_eq!(overlay.lookup("anna@x.test", false), None);
}

#[test]
fn overlay_hashes_and_removal_wins_over_add() {
    let index = SuppressionIndex::empty();
    let overlay = Overlay::new(
        &[
            Entry::Md5(md5_of("h@x.test")),
            Entry::Sha256(sha256_of("s@x.test")),
            Entry::Address("both@x.test".into()),
        ],
        &["both@x.test".to_string()],
    );
    assert!(entry_of(check(&index, &overlay, "H@x.test")).is_some_and(|e| e.starts_with("md5:")));
    assert!(entry_of(check(&index, &overlay, "s@x.test")).is_some_and(|e| e.starts_with("sha256:")));
    assert_eq!(check(&index, &overlay, "both@x.test"), None);
    assert!(Overlay::default().is_empty());
}

#[test]
fn heap_bytes_counts_the_fingerprints() {
    let list: Vec<Entry> = (0..10_000)
        .map(|i| Entry::Address(format!("user{i}@x.test")))
        .collect();
    let index = index_of(&list, false);
    assert_eq!(index.len(), 10_000);
    assert!(index.heap_bytes() >= 10_000 * 8);
    assert!(index.heap_bytes() <= 10_000 * 16);
}

#[test]
fn hand_built_entries_are_normalised() {
    let index = index_of(
        &[
            Entry::Address(" <Anna@X.Test> ".into()),
            Entry::Domain("@Blocked.TEST".into()),
        ],
        false,
    );
    assert!(index.lookup("anna@x.test").is_some());
    assert!(index.lookup("x@blocked.test").is_some());
}

#[test]
fn index_is_shareable_and_debug_is_short() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<SuppressionIndex>();
    shareable::<Overlay>();
    let list: Vec<Entry> = (0..1000)
        .map(|i| Entry::Address(format!("u{i}@x.test")))
        .collect();
    let text = format!("{:?}", index_of(&list, false));
    assert!(
        text.starts_with("SuppressionIndex { addresses: 1000,"),
        "{text}"
    );
    assert!(text.len() < 300);
}

#[test]
fn duplicates_count_once() {
    let index = index_of(
        &entries(&["a@x.test", "A@X.TEST", "@d.test", "@D.test"]),
        false,
    );
    assert_eq!(index.len(), 2);
}

/// A 100 k-address index shared by the property tests, with the addresses it holds.
fn big_index() -> &'static (SuppressionIndex, Vec<String>) {
    static BIG: OnceLock<(SuppressionIndex, Vec<String>)> = OnceLock::new();
    BIG.get_or_init(|| {
        let addresses: Vec<String> = (0..100_000u64)
            .map(|i| {
                format!(
                    "u{:x}.{}@d{}.test",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    i,
                    i % 97
                )
            })
            .collect();
        let entries: Vec<Entry> = addresses.iter().cloned().map(Entry::Address).collect();
        (index_of(&entries, false), addresses)
    })
}

fn address_strategy() -> impl Strategy<Value = String> {
    (
        "[a-z0-9äöüé#@:!$%&'*/=?^_`{|}~.+-]{1,20}",
        "[a-z0-9äé_-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}",
    )
        .prop_map(|(local, domain)| format!("{local}@{domain}"))
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    prop_oneof![
        address_strategy().prop_map(Entry::Address),
        "[a-z0-9äé_-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}".prop_map(Entry::Domain),
        any::<[u8; 16]>().prop_map(Entry::Md5),
        any::<[u8; 32]>().prop_map(Entry::Sha256),
    ]
}

proptest! {
    #[test]
    fn to_line_parses_back(e in entry_strategy()) {
        prop_assert_eq!(Entry::parse(&e.to_line()), Ok(Some(e.clone())));
        prop_assert_eq!(e.to_line().parse::<Entry>(), Ok(e));
    }

    #[test]
    fn parse_never_panics(line in any::<String>()) {
        for format in [ListFormat::Auto, ListFormat::Plain, ListFormat::Md5, ListFormat::Sha256] {
            // Whatever parses reads back the same from its own line.
            if let Ok(Some(e)) = Entry::parse_as(&line, format) {
                prop_assert_eq!(Entry::parse(&e.to_line()), Ok(Some(e)));
            }
        }
    }

    #[test]
    fn parse_never_panics_on_list_like_lines(
        line in "[ \t\u{feff}<>#@a-zA-Z0-9.:+\r-]{0,80}"
    ) {
        if let Ok(Some(e)) = Entry::parse(&line) {
            prop_assert_eq!(Entry::parse(&e.to_line()), Ok(Some(e)));
        }
    }

    #[test]
    fn parse_lines_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut n = 0usize;
        let report = parse_lines(bytes.as_slice(), |_| n += 1);
        let report = report.unwrap_or_default();
        prop_assert_eq!(report.entries, n);
    }

    #[test]
    fn every_inserted_address_is_found_in_any_case(i in 0usize..100_000, mask in any::<u64>()) {
        let (index, addresses) = big_index();
        let address = &addresses[i];
        let mixed: String = address
            .chars()
            .enumerate()
            .map(|(j, c)| if mask >> (j % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        let found = index.lookup(&mixed);
        prop_assert_eq!(found.map(|m| m.entry), Some(address.clone()));
    }

    #[test]
    fn other_addresses_are_not_found(address in address_strategy()) {
        let (index, _) = big_index();
        // The big index holds only addresses at d0.test..d96.test.
        let address = format!("{address}.example");
        prop_assert_eq!(index.lookup(&address), None);
    }

    #[test]
    fn lookup_is_case_insensitive(address in address_strategy()) {
        let index = index_of(&[Entry::Address(address.clone())], false);
        prop_assert!(index.lookup(&address.to_uppercase()).is_some());
        let bracketed = format!(" <{address}> ");
        prop_assert!(index.lookup(&bracketed).is_some());
    }
}
