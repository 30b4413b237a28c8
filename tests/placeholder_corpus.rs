//! The placeholder detector against a corpus of real-looking messages.
//!
//! Each `tests/fixtures/placeholder/NAME.eml` may have a `NAME.expect` next to it listing every
//! finding the default policy must report, one a line: `[low] RULE LOCATION TOKEN` (the token is
//! the rest of the line). A message without `.expect` must pass with no finding at all.

use sendguard::model::{Action, Location, Message, Severity};
use sendguard::policy::placeholder::{Detector, PlaceholderPolicy};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "support/newsletter.rs"]
mod newsletter;

type Expected = BTreeSet<(Severity, String, String, String)>;

fn detector() -> Detector {
    Detector::new(&PlaceholderPolicy::default()).expect("default policy compiles")
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/placeholder");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

fn expected(eml: &Path) -> Expected {
    let path = eml.with_extension("expect");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Expected::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (severity, line) = match line.strip_prefix("low ") {
                Some(rest) => (Severity::Low, rest),
                None => (Severity::High, line),
            };
            let mut it = line.splitn(3, ' ');
            let rule = it.next().unwrap_or_default().to_string();
            let location = it.next().unwrap_or_default().to_string();
            let token = it.next().unwrap_or_default().to_string();
            assert!(!token.is_empty(), "{}: bad line {line:?}", path.display());
            (severity, rule, location, token)
        })
        .collect()
}

#[test]
fn corpus_matches_expectations() {
    let d = detector();
    let files = fixtures();
    assert!(
        files.len() >= 30,
        "corpus has only {} messages",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let raw = std::fs::read(file).expect("readable fixture");
        let findings = d.scan(&Message::new(raw));
        let got: Expected = findings
            .iter()
            .map(|f| {
                (
                    f.severity,
                    f.rule.clone(),
                    f.location.to_string(),
                    f.token.clone(),
                )
            })
            .collect();
        for f in &findings {
            let want = if f.severity == Severity::Low {
                Action::Log
            } else {
                Action::Reject
            };
            assert_eq!(f.action, want, "{}: {f:?}", file.display());
            assert!(f.detail.contains(&f.token), "{}: {f:?}", file.display());
        }
        let want = expected(file);
        if got != want {
            failures.push(format!(
                "{}\n  missing: {:?}\n  unexpected: {:?}",
                file.file_name().unwrap_or_default().to_string_lossy(),
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_covers_every_rule_and_location() {
    let mut rules = BTreeSet::new();
    let mut locations = BTreeSet::new();
    for file in fixtures() {
        for (_, rule, location, _) in expected(&file) {
            rules.insert(rule);
            locations.insert(location);
        }
    }
    for family in [
        "angle",
        "mustache",
        "mailchimp",
        "ampscript",
        "bracket",
        "dollar",
        "sendgrid-legacy",
        "smarty",
        "dollar-pair",
        "failed-substitution",
    ] {
        assert!(
            rules.contains(&format!("placeholder.{family}")),
            "no fixture for {family}"
        );
    }
    for loc in [
        Location::Subject,
        Location::FromName,
        Location::Text,
        Location::Html,
        Location::Href,
        Location::Attribute,
        Location::Preheader,
    ] {
        assert!(
            locations.contains(loc.as_str()),
            "no fixture for location {loc}"
        );
    }
}

#[test]
fn realistic_newsletter_is_clean() {
    let d = detector();
    for articles in [1, 10, 28, 60] {
        let msg = Message::new(newsletter::message(articles, newsletter::Leak::None));
        assert_eq!(d.scan(&msg), vec![], "{articles} articles");
    }
}

#[test]
fn realistic_newsletter_leaks_are_found() {
    let d = detector();
    let msg = Message::new(newsletter::message(28, newsletter::Leak::Greeting));
    let f = d.scan(&msg);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule, "placeholder.mustache");
    assert_eq!(f[0].token, "{{ first_name }}");
    assert_eq!(f[0].location, Location::Html);

    let msg = Message::new(newsletter::message(28, newsletter::Leak::Late));
    let f = d.scan(&msg);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].token, "*|FNAME|*");
}

#[test]
fn shadow_mode_policy_reports_with_log() {
    let p: PlaceholderPolicy = toml::from_str("action = \"log\"").expect("valid section");
    let d = Detector::new(&p).expect("compiles");
    let msg = Message::new(newsletter::message(3, newsletter::Leak::Greeting));
    let f = d.scan(&msg);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].action, Action::Log);
}
