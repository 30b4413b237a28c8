//! The per-message cost of the control state: pause lookups and ramp admission.
//!
//! Run with `cargo bench --bench control` (needs `[[bench]] name = "control"`, `harness = false`).

use divan::{black_box, Bencher};
use sendguard::model::Scope;
use sendguard::policy::kill_switch::{Pause, PauseQuery, PauseSet};
use sendguard::ratelimit::{RampSpec, Ramps};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[allow(dead_code)]
fn main() {
    divan::main();
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_359_200)
}

const QUERY: PauseQuery<'static> = PauseQuery {
    campaign: Some("spring-sale"),
    tenant: Some("acme"),
    sender: "News@Shop.test",
    recipient_domain: Some("gmail.com"),
};

fn many_pauses(n: usize) -> PauseSet {
    PauseSet::new((0..n).map(|i| {
        let scope = match i % 4 {
            0 => Scope::Campaign(format!("c{i}")),
            1 => Scope::Tenant(format!("t{i}")),
            2 => Scope::Sender(format!("s{i}@x.test")),
            _ => Scope::Domain(format!("d{i}.test")),
        };
        Pause::new(scope, "r", "ops", t0())
    }))
}

#[divan::bench]
fn find_no_pauses(b: Bencher) {
    let set = PauseSet::empty();
    b.bench(|| black_box(&set).find(black_box(&QUERY), t0()).is_some());
}

#[divan::bench(args = [10, 10_000])]
fn find_no_match(b: Bencher, n: usize) {
    let set = many_pauses(n);
    b.bench(|| black_box(&set).find(black_box(&QUERY), t0()).is_some());
}

#[divan::bench]
fn find_sender_domain_match(b: Bencher) {
    let set = many_pauses(10_000).with(Pause::new(
        Scope::Sender("@shop.test".into()),
        "r",
        "ops",
        t0(),
    ));
    b.bench(|| black_box(&set).find(black_box(&QUERY), t0()).is_some());
}

#[divan::bench]
fn admit_no_ramps(b: Bencher) {
    let ramps = Ramps::new();
    b.bench(|| {
        black_box(&ramps)
            .admit(&QUERY, &["gmail.com"], t0())
            .is_ok()
    });
}

fn ramped(per_domain: bool) -> Ramps {
    let ramps = Ramps::new();
    let spec: RampSpec = "1000/s..100000/s/1h"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    ramps.start(
        Scope::Campaign("spring-sale".into()),
        spec,
        t0(),
        per_domain,
    );
    ramps
}

#[divan::bench(args = [false, true])]
fn admit_active_ramp(b: Bencher, per_domain: bool) {
    let ramps = ramped(per_domain);
    let mut now = t0();
    b.bench_local(|| {
        now += Duration::from_micros(10);
        black_box(&ramps)
            .admit(&QUERY, &["gmail.com", "web.de"], now)
            .is_ok()
    });
}
