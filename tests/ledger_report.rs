//! Campaign reports from a synthetic ledger: exact counts by outcome, domain, tenant and time.

#[path = "common/leaks.rs"]
mod leaks;

use leaks::leak;
use sendguard::ledger::{Ledger, LedgerConfig, LedgerRecord, Outcome};
use sendguard::model::{Envelope, Refusal};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn report_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut recs = Vec::new();
    for i in 0..300u64 {
        let tenant = if i % 3 == 0 { "acme" } else { "globex" };
        let env = Envelope::new("news@shop.test")
            .with_campaign("spring")
            .with_tenant(tenant);
        let domain = if i % 2 == 0 { "gmail.test" } else { "web.test" };
        let rcpt = format!("user{i}@{domain}");
        let at = t0 + Duration::from_secs(i * 60);
        let r = LedgerRecord::new(Outcome::Relayed, &env, &rcpt, "smtp").at(at);
        let r = match i % 10 {
            0 => r.with_refusal(&Refusal::Suppressed {
                recipient: rcpt.clone(),
                entry: rcpt.clone(),
            }),
            1 => r.with_reply(451, "4.7.0 try later"),
            2 => r.with_reply(550, "5.1.1 no such user"),
            _ => r.with_reply(250, "2.0.0 queued").with_findings(&[leak()]),
        };
        recs.push(r);
    }
    // Another campaign must not leak into the report.
    let other = Envelope::new("x@shop.test").with_campaign("autumn");
    recs.push(LedgerRecord::new(Outcome::Relayed, &other, "z@z.test", "http").at(t0));
    ledger.record(recs).await.unwrap();
    ledger.flush().await.unwrap();

    let r = ledger.campaign_report("spring").unwrap();
    assert_eq!(r.records, 300);
    assert_eq!(r.outcome(Outcome::Relayed), 210);
    assert_eq!(r.outcome(Outcome::Suppressed), 30);
    assert_eq!(r.outcome(Outcome::UpstreamTempfail), 30);
    assert_eq!(r.outcome(Outcome::UpstreamReject), 30);
    assert_eq!(r.relayed_recipients, 210);
    // i % 10 in 3..=9 and even: 4, 6, 8 → 3 of 7 per ten → 90 gmail, 120 web.
    assert_eq!(r.by_domain[0].key, "web.test");
    assert_eq!(r.by_domain[0].count, 120);
    assert_eq!(r.by_domain[1].count, 90);
    let acme = r.by_tenant.iter().find(|c| c.key == "acme").unwrap().count;
    let globex = r
        .by_tenant
        .iter()
        .find(|c| c.key == "globex")
        .unwrap()
        .count;
    assert_eq!(acme + globex, 210);
    assert_eq!(
        acme,
        (0..300).filter(|i| i % 10 >= 3 && i % 3 == 0).count() as u64
    );
    assert_eq!(r.first_send, Some(t0 + Duration::from_secs(3 * 60)));
    assert_eq!(r.last_send, Some(t0 + Duration::from_secs(299 * 60)));
    let relayed: u64 = r.buckets.iter().map(|b| b.relayed).sum();
    let refused: u64 = r.buckets.iter().map(|b| b.refused).sum();
    assert_eq!((relayed, refused), (210, 90));
    assert!(r.buckets.len() <= 60, "{} buckets", r.buckets.len());
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].token, "<FirstName>");
    assert_eq!(r.findings[0].count, 210);
    assert_eq!(r.findings[0].relayed, 210);
    assert_eq!(ledger.affected_recipients("spring").unwrap().len(), 210);
    assert_eq!(
        ledger.affected_recipients("autumn").unwrap(),
        vec!["z@z.test"]
    );
    let since = ledger
        .outcome_counts_since("spring", SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(since.iter().map(|c| c.count).sum::<u64>(), 300);
    ledger.close().await.unwrap();
}
