//! Suppression lists as operators keep them: real files in a policies directory, in every format
//! they are traded in.

use md5::Digest as _;
use sendguard::model::Action;
use sendguard::policy::suppression::{
    check, parse_lines, Entry, ListFormat, ListSpec, Overlay, SuppressionError, SuppressionIndex,
    SuppressionPolicy,
};
use std::path::Path;

fn md5_hex(address: &str) -> String {
    hex::encode(md5::Md5::digest(address.as_bytes()))
}

fn sha256_hex(address: &str) -> String {
    hex::encode(sha2::Sha256::digest(address.as_bytes()))
}

fn write(dir: &Path, name: &str, content: &[u8]) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            panic!("cannot create {}: {e}", parent.display());
        }
    }
    if let Err(e) = std::fs::write(&path, content) {
        panic!("cannot write {}: {e}", path.display());
    }
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    }
}

fn build(
    policy: &SuppressionPolicy,
    dir: &Path,
) -> (SuppressionIndex, sendguard::policy::suppression::LoadReport) {
    match SuppressionIndex::build(policy, dir, &[]) {
        Ok(built) => built,
        Err(e) => panic!("build failed: {e}"),
    }
}

fn lists(specs: Vec<ListSpec>) -> SuppressionPolicy {
    SuppressionPolicy {
        lists: specs,
        ..SuppressionPolicy::default()
    }
}

/// Which entry of which list suppresses `address`, as `(entry, list)`.
fn matched(index: &SuppressionIndex, address: &str) -> Option<(String, String)> {
    index.lookup(address).map(|m| (m.entry, m.list.to_string()))
}

/// A mixed list as an ESP exports it: BOM, CRLF, comments, brackets, domains, prefixed hashes,
/// and a few lines that are not entries.
fn mixed_list() -> Vec<u8> {
    let mut text = String::from("\u{feff}# global suppression list, exported 2026-11-01\r\n");
    text.push_str("Anna@Example.TEST\r\n");
    text.push_str("  <bob@example.test>  \r\n");
    text.push_str("\r\n");
    text.push_str("carol@example.test # complained 2026-10-30\r\n");
    text.push_str("@competitor.test\r\n");
    text.push_str("not-an-address\r\n");
    text.push_str(&format!("md5:{}\r\n", md5_hex("dave@example.test")));
    text.push_str(&format!(
        "SHA256:{}\r\n",
        sha256_hex("erin@example.test").to_uppercase()
    ));
    text.push_str("md5:1234\r\n");
    text.push_str("frank@example.test, grace@example.test\r\n");
    text.push_str("last@example.test");
    text.into_bytes()
}

#[test]
fn mixed_list_with_crlf_bom_and_comments() {
    let dir = tempdir();
    write(dir.path(), "suppressions/global.txt", &mixed_list());
    let (index, report) = build(&SuppressionPolicy::default(), dir.path());

    let list = "suppressions/global.txt".to_string();
    let table = [
        ("anna@example.test", Some("anna@example.test")),
        ("ANNA@EXAMPLE.TEST", Some("anna@example.test")),
        ("<Bob@Example.Test>", Some("bob@example.test")),
        ("carol@example.test", Some("carol@example.test")),
        ("ceo@competitor.test", Some("@competitor.test")),
        ("last@example.test", Some("last@example.test")),
        ("frank@example.test", None),
        ("zoe@example.test", None),
    ];
    for (address, want) in table {
        let want = want.map(|e| (e.to_string(), list.clone()));
        assert_eq!(matched(&index, address), want, "{address}");
    }
    assert_eq!(
        matched(&index, "Dave@example.test"),
        Some((
            format!("md5:{}", md5_hex("dave@example.test")),
            list.clone()
        ))
    );
    assert_eq!(
        matched(&index, "erin@example.test"),
        Some((
            format!("sha256:{}", sha256_hex("erin@example.test")),
            list.clone()
        ))
    );

    assert_eq!(report.entries, 7);
    assert_eq!(report.malformed, 3);
    assert_eq!(
        report.first_errors,
        vec![
            "suppressions/global.txt:7: not an address: \"not-an-address\"".to_string(),
            "suppressions/global.txt:10: not an md5 hash (32 hex digits): \"md5:1234\"".to_string(),
            "suppressions/global.txt:11: unexpected text after the entry: \"grace@example.test\""
                .to_string(),
        ]
    );
    assert_eq!(report.files.len(), 1);
    let file = &report.files[0];
    assert_eq!(file.name, list);
    assert_eq!((file.lines, file.entries, file.malformed), (12, 7, 3));
    assert_eq!(file.format, ListFormat::Auto);
    assert_eq!(index.len(), 7);
}

#[test]
fn whole_file_hashed_lists_detected_and_declared() {
    let dir = tempdir();
    let md5_people = ["m1@partner.test", "M2@Partner.test", "m3@partner.test"];
    let sha_people = ["s1@partner.test", "s2@partner.test"];
    // As traded: one bare hex digest of the lower-cased address a line, upper- or lower-case hex.
    let md5_file: String = md5_people
        .iter()
        .map(|a| format!("{}\n", md5_hex(&a.to_lowercase()).to_uppercase()))
        .collect();
    let sha_file: String = sha_people
        .iter()
        .map(|a| format!("{}\r\n", sha256_hex(a)))
        .collect();
    write(
        dir.path(),
        "suppressions/partner-md5.txt",
        md5_file.as_bytes(),
    );
    write(
        dir.path(),
        "suppressions/partner-sha256.txt",
        sha_file.as_bytes(),
    );

    // Detected line by line in the default directory of lists.
    let (index, report) = build(&SuppressionPolicy::default(), dir.path());
    assert_eq!((report.entries, report.malformed), (5, 0));
    for a in md5_people {
        let m = index.lookup(a);
        assert_eq!(
            m.map(|m| (m.entry, m.list.to_string())),
            Some((
                format!("md5:{}", md5_hex(&a.to_lowercase())),
                "suppressions/partner-md5.txt".to_string()
            )),
            "{a}"
        );
    }
    for a in sha_people {
        let m = index.lookup(&a.to_uppercase());
        assert_eq!(
            m.map(|m| m.list.to_string()),
            Some("suppressions/partner-sha256.txt".to_string())
        );
    }
    assert_eq!(index.lookup("m4@partner.test"), None);

    // Declared: the same files read as md5 and sha256 lists.
    let policy = lists(vec![
        ListSpec {
            path: "suppressions/partner-md5.txt".into(),
            format: ListFormat::Md5,
        },
        ListSpec {
            path: "suppressions/partner-sha256.txt".into(),
            format: ListFormat::Sha256,
        },
    ]);
    let (index, report) = build(&policy, dir.path());
    assert_eq!((report.entries, report.malformed), (5, 0));
    assert!(index.lookup("m3@partner.test").is_some());
    assert!(index.lookup("s2@partner.test").is_some());

    // Declared with the wrong kind: every line is reported, nothing loaded.
    let policy = lists(vec![ListSpec {
        path: "suppressions/partner-md5.txt".into(),
        format: ListFormat::Sha256,
    }]);
    let (index, report) = build(&policy, dir.path());
    assert_eq!((report.entries, report.malformed), (0, 3));
    assert!(report.first_errors[0]
        .starts_with("suppressions/partner-md5.txt:1: not a sha256 hash (64 hex digits): \""));
    assert!(index.is_empty());

    // A plain list does not take bare hex for hashes.
    let policy = lists(vec![ListSpec {
        path: "suppressions/partner-md5.txt".into(),
        format: ListFormat::Plain,
    }]);
    let (_, report) = build(&policy, dir.path());
    assert_eq!((report.entries, report.malformed), (0, 3));
}

#[test]
fn plus_tag_normalisation_on_and_off() {
    let dir = tempdir();
    let content = format!(
        "anna@x.test\nnews+only@x.test\n{}\n{}\n",
        md5_hex("hashed@x.test"),
        sha256_hex("shaed@x.test")
    );
    write(dir.path(), "lists/main.txt", content.as_bytes());
    let off = lists(vec![ListSpec::new("lists/main.txt")]);
    let on = SuppressionPolicy {
        normalize_plus: true,
        ..off.clone()
    };
    let (off, _) = build(&off, dir.path());
    let (on, _) = build(&on, dir.path());

    let table = [
        // address, suppressed without normalisation, suppressed with it
        ("anna@x.test", true, true),
        ("anna+news@x.test", false, true),
        ("Anna+Promo@X.test", false, true),
        ("news+only@x.test", true, true),
        ("news@x.test", false, false),
        ("hashed+tag@x.test", false, true),
        ("shaed+tag@x.test", false, true),
        ("+anna@x.test", false, false),
    ];
    for (address, want_off, want_on) in table {
        assert_eq!(off.lookup(address).is_some(), want_off, "off: {address}");
        assert_eq!(on.lookup(address).is_some(), want_on, "on: {address}");
    }
    assert_eq!(
        on.lookup("anna+news@x.test").map(|m| m.entry),
        Some("anna@x.test".to_string())
    );
}

#[test]
fn missing_list_is_a_clear_error() {
    let dir = tempdir();
    let policy = lists(vec![ListSpec::new("suppressions/gone.txt")]);
    match SuppressionIndex::build(&policy, dir.path(), &[]) {
        Err(e @ SuppressionError::Open { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with("cannot open suppression list \"suppressions/gone.txt\""),
                "{text}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a missing list must not load"),
    }
    // The default directory may be absent: no lists, nothing suppressed.
    let (index, report) = build(&SuppressionPolicy::default(), dir.path());
    assert!(index.is_empty());
    assert!(report.files.is_empty());
    // But a directory named explicitly must exist.
    let policy = lists(vec![ListSpec::new("elsewhere")]);
    let err = SuppressionIndex::build(&policy, dir.path(), &[]).err();
    assert!(err.is_some_and(|e| e.to_string().contains("\"elsewhere\"")));
}

#[test]
fn directory_of_lists_and_admin_entries() {
    let dir = tempdir();
    write(
        dir.path(),
        "suppressions/b-complaints.txt",
        b"anna@x.test\nbob@x.test\n",
    );
    write(
        dir.path(),
        "suppressions/a-unsubscribed.txt",
        b"bob@x.test\n",
    );
    write(dir.path(), "suppressions/README.md", b"not a list\n");
    write(dir.path(), "suppressions/nested/deep.txt", b"deep@x.test\n");
    let extra = vec![
        Entry::Address("admin-added@x.test".into()),
        Entry::Domain("blocked.test".into()),
    ];
    let (index, report) =
        match SuppressionIndex::build(&SuppressionPolicy::default(), dir.path(), &extra) {
            Ok(built) => built,
            Err(e) => panic!("build failed: {e}"),
        };
    let names: Vec<&str> = report.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "suppressions/a-unsubscribed.txt",
            "suppressions/b-complaints.txt"
        ]
    );
    assert_eq!(report.entries, 5);
    // The first list holding an entry names it.
    assert_eq!(
        matched(&index, "bob@x.test").map(|m| m.1),
        Some("suppressions/a-unsubscribed.txt".to_string())
    );
    assert_eq!(
        matched(&index, "anna@x.test").map(|m| m.1),
        Some("suppressions/b-complaints.txt".to_string())
    );
    assert_eq!(
        matched(&index, "admin-added@x.test"),
        Some(("admin-added@x.test".to_string(), "admin".to_string()))
    );
    assert_eq!(
        matched(&index, "x@blocked.test"),
        Some(("@blocked.test".to_string(), "admin".to_string()))
    );
    assert_eq!(index.lookup("deep@x.test"), None);
    assert_eq!(index.len(), 4);
    assert_eq!(index.lists().len(), 3);
}

#[test]
fn policy_from_toml_loads_lists() {
    let dir = tempdir();
    write(dir.path(), "global.txt", b"anna@x.test\n");
    write(
        dir.path(),
        "partner.txt",
        format!("{}\n", sha256_hex("bob@x.test")).as_bytes(),
    );
    let policy: SuppressionPolicy = match toml::from_str(
        r#"
        action = "tempfail"
        normalize_plus = true
        lists = ["global.txt", { path = "partner.txt", format = "sha256" }]
        "#,
    ) {
        Ok(p) => p,
        Err(e) => panic!("policy does not parse: {e}"),
    };
    assert_eq!(policy.action, Action::Tempfail);
    let (index, _) = build(&policy, dir.path());
    assert!(index.lookup("anna+x@x.test").is_some());
    assert!(index.lookup("bob+y@x.test").is_some());
}

#[test]
fn overlay_over_file_lists() {
    let dir = tempdir();
    write(
        dir.path(),
        "suppressions/global.txt",
        b"anna@x.test\n@blocked.test\n",
    );
    let (index, _) = build(&SuppressionPolicy::default(), dir.path());
    let overlay = Overlay::new(
        &[Entry::Address("new@x.test".into())],
        &["anna@x.test".to_string(), "friend@blocked.test".to_string()],
    );
    assert_eq!(check(&index, &overlay, "anna@x.test"), None);
    assert_eq!(check(&index, &overlay, "friend@blocked.test"), None);
    assert!(check(&index, &overlay, "other@blocked.test").is_some());
    assert_eq!(
        check(&index, &overlay, "new@x.test").map(|m| m.list.to_string()),
        Some("admin".to_string())
    );
    assert!(index.lookup("anna@x.test").is_some());
}

#[test]
fn bulk_import_streams_lines() {
    // 200 000 lines through `parse_lines`, as the admin API streams a request body.
    let mut body = Vec::new();
    for i in 0..200_000 {
        body.extend_from_slice(format!("user{i}@x.test\r\n").as_bytes());
        if i % 50_000 == 0 {
            body.extend_from_slice(b"garbage line\n# comment\n");
        }
    }
    let mut n = 0usize;
    let report = match parse_lines(body.as_slice(), |e| {
        if matches!(e, Entry::Address(_)) {
            n += 1;
        }
    }) {
        Ok(r) => r,
        Err(e) => panic!("read failed: {e}"),
    };
    assert_eq!(n, 200_000);
    assert_eq!((report.entries, report.malformed), (200_000, 4));
    assert_eq!(
        report.first_errors[0],
        "line 2: unexpected text after the entry: \"line\""
    );
}
