//! A resumed scope's accepted rate follows its ramp, also across a restart.

use sendguard::model::Scope;
use sendguard::policy::kill_switch::{Pause, PauseQuery};
use sendguard::ratelimit::{RampPolicy, RampSpec, Ramps};
use sendguard::state::{ControlState, Store};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_359_200)
}

fn query(campaign: &str) -> PauseQuery<'_> {
    PauseQuery {
        campaign: Some(campaign),
        tenant: None,
        sender: "news@shop.test",
        recipient_domain: None,
    }
}

/// A dense stream (one attempt per millisecond) over `secs` whole seconds from `from`; accepted
/// messages per second.
fn run(
    ramps: &Ramps,
    q: &PauseQuery,
    domains: &[&str],
    base: SystemTime,
    from: Duration,
    secs: u64,
) -> Vec<u32> {
    (0..secs)
        .map(|s| {
            (0..1000)
                .filter(|ms| {
                    let at = base + from + Duration::from_millis(s * 1000 + ms);
                    ramps.admit(q, domains, at).is_ok()
                })
                .count() as u32
        })
        .collect()
}

fn scheduled(spec: &RampSpec, second: u64) -> f64 {
    (0..100)
        .map(|i| {
            let at = Duration::from_millis(second * 1000 + i * 10 + 5);
            spec.rate_at(at).unwrap_or(0.0) / 100.0
        })
        .sum()
}

fn assert_follows(counts: &[u32], spec: &RampSpec, first_second: u64) {
    for (i, &got) in counts.iter().enumerate() {
        let want = scheduled(spec, first_second + i as u64);
        let off = (f64::from(got) - want).abs() / want;
        assert!(
            off <= 0.15,
            "second {}: {got} accepted, {want:.1} scheduled; {counts:?}",
            first_second + i as u64
        );
    }
}

#[test]
fn five_to_fifty_over_twenty_seconds() {
    let spec: RampSpec = "5/s..50/s/20s".parse().unwrap();
    let ramps = Ramps::new();
    ramps.start(Scope::Campaign("spring".into()), spec, start(), false);
    let counts = run(
        &ramps,
        &query("spring"),
        &["gmail.com"],
        start(),
        Duration::ZERO,
        20,
    );
    assert_follows(&counts, &spec, 0);
    // Then the ramp has ended: full speed.
    let after = run(
        &ramps,
        &query("spring"),
        &["gmail.com"],
        start(),
        Duration::from_secs(20),
        1,
    );
    assert_eq!(after, [1000]);
    assert!(ramps.is_empty());
}

#[test]
fn stepped_ramp_from_a_policy() {
    let policy: RampPolicy = toml::from_str(
        "default = \"20/s..80/s/12s\"\nshape = \"stepped\"\nsteps = 4\nper_domain = true\n",
    )
    .unwrap();
    let spec = policy.ramp_for(None).unwrap();
    let ramps = Ramps::new();
    ramps.start(Scope::Global, spec, start(), policy.per_domain);
    let gmail = run(
        &ramps,
        &query("any"),
        &["gmail.com"],
        start(),
        Duration::ZERO,
        12,
    );
    assert_follows(&gmail, &spec, 0);
    // Each recipient domain gets its own schedule.
    let web = run(
        &ramps,
        &query("any"),
        &["web.de"],
        start(),
        Duration::ZERO,
        12,
    );
    assert_follows(&web, &spec, 0);
}

#[test]
fn ramp_continues_after_a_restart() {
    // Loading drops ramps that have ended by the real clock, so this ramp runs now.
    let t0 = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let spring = Scope::Campaign("spring".into());
    let spec: RampSpec = "10/s..100/s/60s".parse().unwrap();
    {
        let control =
            ControlState::load(Store::open(dir.path()).unwrap(), &RampPolicy::default()).unwrap();
        control
            .pause(Pause::new(spring.clone(), "leak", "ops", t0))
            .unwrap();
        control
            .resume(&spring, "ops", Some(spec), false, t0)
            .unwrap();
        let early = run(
            control.ramps(),
            &query("spring"),
            &[],
            t0,
            Duration::ZERO,
            5,
        );
        assert_follows(&early, &spec, 0);
    }
    let control =
        ControlState::load(Store::open(dir.path()).unwrap(), &RampPolicy::default()).unwrap();
    // Thirty seconds in, the restored ramp allows the rate of second 30, not of second 0.
    let later = run(
        control.ramps(),
        &query("spring"),
        &[],
        t0,
        Duration::from_secs(30),
        5,
    );
    assert_follows(&later, &spec, 30);
}
