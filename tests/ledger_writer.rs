//! The ledger's writer: batching, back-pressure with a slowed writer, clean close.

use sendguard::ledger::{Ledger, LedgerConfig, LedgerRecord, Outcome};
use sendguard::model::Envelope;
use std::time::Duration;

fn rec(campaign: &str, i: usize) -> LedgerRecord {
    let env = Envelope::new("news@shop.test").with_campaign(campaign);
    LedgerRecord::new(
        Outcome::Relayed,
        &env,
        &format!("r{i}@d{}.test", i % 7),
        "smtp",
    )
    .with_reply(250, "2.0.0 ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowed_writer_loses_nothing_under_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        queue_capacity: 256,
        batch_size: 500,
        test_delay_per_batch: Some(Duration::from_millis(5)),
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(dir.path(), config).unwrap();
    let producers = 5;
    let per = 10_000;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let l = ledger.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                l.record([rec(&format!("c{p}"), i)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    ledger.close().await.unwrap();
    let stats = ledger.stats();
    assert_eq!(stats.queued, 50_000);
    assert_eq!(stats.written, 50_000);
    assert!(
        stats.producer_waits > 0,
        "the slowed writer never made a producer wait: {stats:?}"
    );
    assert!(
        stats.batches < 50_000,
        "records were not batched: {stats:?}"
    );
    assert_eq!(ledger.count().unwrap(), 50_000);
    for p in 0..producers {
        let r = ledger.campaign_report(&format!("c{p}")).unwrap();
        assert_eq!(r.records, per as u64);
        assert_eq!(r.outcome(Outcome::Relayed), per as u64);
        assert_eq!(r.relayed_recipients, per as u64);
    }
    // Closed: further records are refused, not silently dropped.
    assert!(ledger.record([rec("late", 0)]).await.is_err());
}

#[test]
fn blocking_producers_from_plain_threads() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        queue_capacity: 64,
        batch_size: 100,
        test_delay_per_batch: Some(Duration::from_millis(2)),
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(dir.path(), config).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let l = ledger.clone();
            std::thread::spawn(move || {
                let recs: Vec<_> = (0..2_500).map(|i| rec("blk", t * 10_000 + i)).collect();
                l.blocking_record(recs).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    ledger.blocking_flush().unwrap();
    assert_eq!(ledger.count().unwrap(), 10_000);
    assert!(ledger.stats().producer_waits > 0);
}

#[tokio::test]
async fn reopened_ledger_keeps_records_and_retention_deletes_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(10 * 86_400);
        ledger
            .record([rec("keep", 1), rec("old", 2).at(old)])
            .await
            .unwrap();
        ledger.close().await.unwrap();
    }
    let config = LedgerConfig {
        retention: Duration::from_secs(86_400),
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(dir.path(), config).unwrap();
    assert_eq!(ledger.count().unwrap(), 2);
    assert_eq!(ledger.purge_expired().await.unwrap(), 1);
    assert_eq!(ledger.count().unwrap(), 1);
    assert!(ledger.has_received("keep", "<R1@D1.test>").unwrap());
    assert!(!ledger.has_received("old", "r2@d2.test").unwrap());
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn retention_deletes_old_records_of_every_campaign_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        retention: Duration::from_secs(86_400),
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(dir.path(), config).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    let no_campaign = |i: usize, at: Option<std::time::SystemTime>| {
        let r = LedgerRecord::new(
            Outcome::Relayed,
            &Envelope::new("news@shop.test"),
            &format!("n{i}@d.test"),
            "http",
        );
        match at {
            Some(at) => r.at(at),
            None => r,
        }
    };
    // New and old records interleaved, in campaigns that sort before and after one another,
    // the empty campaign name, and records without a campaign.
    let mut records = Vec::new();
    for (i, campaign) in ["b-spring", "", "a-winter", "zz", "b-spring"]
        .iter()
        .enumerate()
    {
        records.push(rec(campaign, i));
        records.push(rec(campaign, 100 + i).at(old));
    }
    records.push(no_campaign(1, Some(old)));
    records.push(no_campaign(2, None));
    ledger.record(records).await.unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(ledger.count().unwrap(), 12);

    assert_eq!(ledger.purge_expired().await.unwrap(), 6);
    assert_eq!(ledger.count().unwrap(), 6);
    for (i, campaign) in ["b-spring", "", "a-winter", "zz", "b-spring"]
        .iter()
        .enumerate()
    {
        let kept = format!("r{i}@d{}.test", i % 7);
        let gone = format!("r{}@d{}.test", 100 + i, (100 + i) % 7);
        assert!(
            ledger.has_received(campaign, &kept).unwrap(),
            "{campaign}: {kept}"
        );
        assert!(
            !ledger.has_received(campaign, &gone).unwrap(),
            "{campaign}: {gone}"
        );
    }
    assert_eq!(ledger.purge_expired().await.unwrap(), 0);
    ledger.close().await.unwrap();
}
