//! Ledger throughput: records per second written through the bounded queue with batching.
//!
//! `cargo bench --bench ledger`

use divan::counter::ItemsCount;
use divan::Bencher;
use sendguard::ledger::{Ledger, LedgerConfig, LedgerRecord, Outcome};
use sendguard::model::Envelope;

#[path = "../tests/common/leaks.rs"]
mod leaks;

fn main() {
    divan::main();
}

const N: usize = 20_000;

fn records(n: usize, findings: bool) -> Vec<LedgerRecord> {
    let env = Envelope::new("news@shop.test")
        .with_campaign("spring-2026")
        .with_tenant("acme");
    let f = leaks::leak();
    (0..n)
        .map(|i| {
            let mut r = LedgerRecord::new(
                Outcome::Relayed,
                &env,
                &format!("user{i}@domain{}.test", i % 50),
                "smtp",
            )
            .with_reply(250, "2.0.0 Ok: queued as 4BvQ2x0Z1kz9");
            r.message_id = Some(format!("<{i}.spring@shop.test>"));
            r.fingerprint = Some(format!("{:016x}", i as u64 * 2_654_435_761));
            if findings {
                r.findings = vec![f.clone()];
            }
            r
        })
        .collect()
}

fn run(bencher: Bencher, producers: usize, findings: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).expect("ledger");
    bencher
        .counter(ItemsCount::new(N))
        .with_inputs(|| {
            (0..producers)
                .map(|_| records(N / producers, findings))
                .collect::<Vec<_>>()
        })
        .bench_values(|batches| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for batch in batches {
                    let l = ledger.clone();
                    tasks.push(tokio::spawn(async move {
                        // One record per call, as a front-end does per recipient.
                        for r in batch {
                            l.record([r]).await.expect("record");
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("producer");
                }
                ledger.flush().await.expect("flush");
            })
        });
    rt.block_on(ledger.close()).expect("close");
}

/// One producer, records without findings.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn one_producer(bencher: Bencher) {
    run(bencher, 1, false);
}

/// Eight producers (eight SMTP sessions), records carrying a finding each.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn eight_producers_with_findings(bencher: Bencher) {
    run(bencher, 8, true);
}
