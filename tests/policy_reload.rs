//! Hot reload: a good change takes effect with a new generation, a broken file never does.

mod common;

use sendguard::model::{Envelope, Message, Refusal, Scope};
use sendguard::{Guard, GuardConfig};
use std::path::Path;
use std::time::{Duration, Instant};

fn guard_in(dir: &Path) -> Guard {
    common::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &dir.join("policies"),
    );
    Guard::open(GuardConfig::new(dir.join("policies"), dir.join("state"))).expect("guard opens")
}

fn leaking() -> Message {
    Message::new(
        &b"From: a@shop.test\r\nTo: b@customer.test\r\nX-Campaign-ID: c1\r\nSubject: Hi {{FirstName}}\r\n\r\nHello\r\n"[..],
    )
}

fn verdict_kind(g: &Guard) -> Option<&'static str> {
    let mut env = Envelope::new("a@shop.test").with_recipient("b@customer.test");
    g.check_message(&mut env, &leaking())
        .refusal
        .map(|r| r.kind())
}

#[test]
fn broken_policy_file_leaves_old_policies_in_force() {
    let d = tempfile::tempdir().unwrap();
    let g = guard_in(d.path());
    assert_eq!(g.policy_generation(), 1);
    assert_eq!(verdict_kind(&g), Some("placeholder"));

    // Switch placeholder findings to shadow mode: takes effect with generation 2.
    std::fs::write(
        d.path().join("policies/zz-shadow.toml"),
        "[placeholder]\naction = \"log\"\n",
    )
    .unwrap();
    assert_eq!(g.reload().unwrap(), 2);
    assert_eq!(verdict_kind(&g), None);

    // A broken file: the reload fails with file, line and key, and generation 2 stays.
    std::fs::write(
        d.path().join("policies/zz-zbroken.toml"),
        "[placeholder]\naction = \"drop-it\"\n",
    )
    .unwrap();
    let err = g.reload().unwrap_err().to_string();
    assert!(err.contains("zz-zbroken.toml:2"), "{err}");
    assert!(err.contains("placeholder.action"), "{err}");
    assert_eq!(g.policy_generation(), 2);
    assert_eq!(verdict_kind(&g), None, "old policies stay in force");
    let status = g.status();
    assert!(status.reload_error.unwrap().contains("zz-zbroken.toml"));

    // Fixing the file clears the error.
    std::fs::remove_file(d.path().join("policies/zz-zbroken.toml")).unwrap();
    assert_eq!(g.reload().unwrap(), 3);
    assert!(g.status().reload_error.is_none());
}

#[test]
fn watcher_reloads_on_file_change() {
    let d = tempfile::tempdir().unwrap();
    let g = guard_in(d.path());
    let _w = g.watch().expect("watch policies");
    std::fs::write(
        d.path().join("policies/zz-shadow.toml"),
        "[placeholder]\naction = \"log\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.policy_generation() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(g.policy_generation() >= 2, "watcher did not reload");
    assert_eq!(verdict_kind(&g), None);
}

#[test]
fn pauses_survive_reopen_and_auto_trip_fires() {
    let d = tempfile::tempdir().unwrap();
    let g = guard_in(d.path());
    // Three blocked leaks of one campaign within the window pause it.
    for _ in 0..3 {
        assert_eq!(verdict_kind(&g), Some("placeholder"));
    }
    let pauses = g.pauses();
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].scope, Scope::Campaign("c1".into()));
    assert!(pauses[0].reason.starts_with("auto: placeholder leak"));
    let env = Envelope::new("a@shop.test")
        .with_recipient("b@customer.test")
        .with_campaign("c1");
    assert!(matches!(g.admit(&env), Err(Refusal::Paused { .. })));
    drop(g);
    let g = Guard::open(GuardConfig::new(
        d.path().join("policies"),
        d.path().join("state"),
    ))
    .unwrap();
    assert_eq!(g.pauses().len(), 1, "pause restored from the state store");
    g.resume(&Scope::Campaign("c1".into()), "ops", None)
        .unwrap();
    assert!(g.admit(&env).is_ok());
}
