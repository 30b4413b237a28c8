//! The control state survives a crash: a pause acknowledged by the store is there after the
//! process is killed mid-flight and the state directory is opened again.

use sendguard::model::Scope;
use sendguard::policy::kill_switch::{Pause, PauseQuery};
use sendguard::ratelimit::{RampPolicy, RampSpec};
use sendguard::state::{ControlState, Store};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CHILD_DIR: &str = "SENDGUARD_TEST_CRASH_STATE_DIR";

fn created() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_772_359_200, 5)
}

/// In the child: pause, start a ramp, then die without any cleanup.
fn crash_after_writes(dir: &str) -> ! {
    let control = match Store::open(dir.as_ref())
        .and_then(|s| ControlState::load(s, &RampPolicy::default()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(3);
        }
    };
    let spring = Scope::Campaign("spring".into());
    let writes = control
        .pause(Pause::new(Scope::Global, "freeze", "ops", created()))
        .and_then(|()| control.pause(Pause::new(spring.clone(), "leak", "ops", created())))
        .and_then(|()| {
            let ramp: Option<RampSpec> = "10/s..500/s/30m".parse().ok();
            control.resume(&spring, "ana", ramp, false, SystemTime::now())
        })
        .and_then(|_| control.store().suppression_add("anna@x.test", "ana"));
    if let Err(e) = writes {
        eprintln!("{e}");
        std::process::exit(3);
    }
    std::process::abort();
}

#[test]
fn acknowledged_writes_survive_an_abort() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        crash_after_writes(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "acknowledged_writes_survive_an_abort",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the child must die by abort: {stderr}"
    );
    assert_ne!(
        out.status.code(),
        Some(3),
        "the child failed before crashing: {stderr}"
    );

    let store = Store::open(dir.path()).unwrap();
    let pauses = store.pauses().unwrap();
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].scope, Scope::Global);
    assert_eq!(pauses[0].created_at, created());
    let ramps = store.ramps().unwrap();
    assert_eq!(ramps.len(), 1);
    assert_eq!(ramps[0].1.to_string(), "10/s..500/s/30m");
    assert_eq!(store.suppression_overrides().unwrap().0, ["anna@x.test"]);
    let actions: Vec<String> = store
        .audit(10)
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["suppress", "resume", "pause", "pause"]);

    // The guard built on the reopened store is in force at once.
    let control = ControlState::load(store, &RampPolicy::default()).unwrap();
    let q = PauseQuery {
        campaign: Some("spring"),
        tenant: None,
        sender: "news@x.test",
        recipient_domain: Some("gmail.com"),
    };
    let now = SystemTime::now();
    assert_eq!(
        control.pauses().find(&q, now).map(|p| p.reason.as_str()),
        Some("freeze")
    );
    assert_eq!(control.ramps().status(now).len(), 1);
}

#[test]
fn two_stores_on_one_directory_share_writes() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = Store::open(dir.path()).unwrap();
    let threads: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            std::thread::spawn(move || {
                for i in 0..25 {
                    let scope = Scope::Tenant(format!("t{n}-{i}"));
                    store
                        .put_pause(&Pause::new(scope.clone(), "r", "ops", created()))
                        .map_err(|e| e.to_string())?;
                    if i % 5 == 0 {
                        store
                            .remove_pause(&scope, "ops", "full speed")
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok::<Store, String>(store)
            })
        })
        .collect();
    let stores: Vec<Store> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    for store in &stores {
        assert_eq!(store.pauses().unwrap().len(), 40);
        let audit = store.audit(usize::MAX).unwrap();
        assert_eq!(audit.len(), 60);
        assert!(audit.windows(2).all(|w| w[0].id > w[1].id));
    }
}
