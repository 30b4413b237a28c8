//! The kill switch under load, in process: worker threads judge and admit messages of one
//! campaign in a tight loop while the main thread pauses it. Once `Guard::pause` has returned,
//! no admit that starts afterwards may succeed. Repeated many times; the time a pause takes and
//! the time until the first refusal are printed (measurements, not assertions).

use sendguard::{Envelope, Guard, GuardConfig, Message, Scope};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 200;
const WORKERS: usize = 4;
const CAMPAIGN: &str = "race-campaign";

fn message() -> Message {
    Message::new(
        format!(
            "From: news@shop.example\r\nTo: reader@example.org\r\nSubject: Hello\r\n\
             X-Campaign-ID: {CAMPAIGN}\r\n\r\nHello reader, our spring sale starts now.\r\n"
        )
        .into_bytes(),
    )
}

struct Round {
    pause_call: Duration,
    first_refusal_after_return: Option<Duration>,
    refused_before_return: bool,
    admitted_in_flight: u64,
    admitted_total: u64,
}

fn round() -> Round {
    let guard = Guard::open(GuardConfig::in_memory()).expect("guard");
    let msg = message();
    let admitted = AtomicU64::new(0);
    let attempts = AtomicU64::new(0);
    let paused = AtomicBool::new(false);
    let violations = AtomicU64::new(0);
    let in_flight = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let first_refusal: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut call = Duration::ZERO;
    let mut returned_at = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                let mut refusals_after = 0;
                while !stop.load(Ordering::SeqCst) {
                    let mut env = Envelope::new("news@shop.example")
                        .with_recipient("reader@example.org")
                        .with_campaign(CAMPAIGN);
                    let verdict = guard.check_message(&mut env, &msg);
                    // Read before the last gate: was the pause already returned?
                    let after_return = paused.load(Ordering::SeqCst);
                    let ok = verdict.is_pass() && guard.admit(&env).is_ok();
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if ok {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        if after_return {
                            violations.fetch_add(1, Ordering::SeqCst);
                        } else if paused.load(Ordering::SeqCst) {
                            // Started before pause() returned, finished after: in flight.
                            in_flight.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        let now = Instant::now();
                        let mut f = first_refusal.lock().unwrap();
                        if f.is_none() {
                            *f = Some(now);
                        }
                        drop(f);
                        if after_return {
                            refusals_after += 1;
                            if refusals_after >= 50 {
                                break;
                            }
                        }
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Let the workers get going, then pull the switch.
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts.load(Ordering::Relaxed) < 200 {
            assert!(Instant::now() < deadline, "workers did not start");
            std::thread::yield_now();
        }
        let started = Instant::now();
        guard
            .pause(Scope::Campaign(CAMPAIGN.into()), "race test", "test", None)
            .expect("pause");
        returned_at = Instant::now();
        paused.store(true, Ordering::SeqCst);
        call = returned_at - started;
        // Workers stop by themselves after 50 refusals each; bound the wait anyway.
        let deadline = Instant::now() + Duration::from_secs(10);
        while done.load(Ordering::SeqCst) < WORKERS as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "an admit succeeded after pause() returned"
    );
    let first = *first_refusal.lock().unwrap();
    Round {
        pause_call: call,
        first_refusal_after_return: first.map(|f| f.saturating_duration_since(returned_at)),
        refused_before_return: first.is_some_and(|f| f < returned_at),
        admitted_in_flight: in_flight.load(Ordering::Relaxed),
        admitted_total: admitted.load(Ordering::Relaxed),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn no_admit_succeeds_after_pause_returns() {
    let mut calls = Vec::new();
    let mut to_refusal = Vec::new();
    let mut before_return = 0;
    let mut in_flight = 0;
    let mut admitted = 0;
    for _ in 0..ITERATIONS {
        let r = round();
        calls.push(r.pause_call);
        if let Some(d) = r.first_refusal_after_return {
            to_refusal.push(d);
        }
        before_return += usize::from(r.refused_before_return);
        in_flight += r.admitted_in_flight;
        admitted += r.admitted_total;
    }
    assert_eq!(to_refusal.len(), ITERATIONS, "every round saw refusals");
    calls.sort();
    to_refusal.sort();
    println!(
        "kill switch race: {ITERATIONS} rounds x {WORKERS} workers, {admitted} messages admitted before the pauses"
    );
    println!(
        "  pause() call:                   p50 {:?}  p99 {:?}  max {:?}",
        percentile(&calls, 0.5),
        percentile(&calls, 0.99),
        calls[calls.len() - 1]
    );
    println!(
        "  pause() return -> first refusal: p50 {:?}  p99 {:?}  max {:?} ({} rounds refused before pause() returned)",
        percentile(&to_refusal, 0.5),
        percentile(&to_refusal, 0.99),
        to_refusal[to_refusal.len() - 1],
        before_return
    );
    println!("  admits in flight across the return (started before, finished after): {in_flight}");
}
