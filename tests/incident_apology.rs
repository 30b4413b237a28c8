//! The apology gate: only the affected audience, each recipient once, refusal for everyone else;
//! and the apology lint.

use sendguard::apology::{is_no_reply, lint, ApologyGate, ApologyPolicy, LINT_RULE};
use sendguard::incident::IncidentDesk;
use sendguard::ledger::{Ledger, LedgerConfig, LedgerRecord, Outcome};
use sendguard::model::{Disposition, Envelope, Message, Refusal, Severity};
use sendguard::{Guard, GuardConfig};

async fn setup() -> (tempfile::TempDir, Guard, Ledger, IncidentDesk, String) {
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
    let env = Envelope::new("news@shop.test").with_campaign("leak");
    let mut recs = Vec::new();
    for i in 0..20 {
        let r = LedgerRecord::new(Outcome::Relayed, &env, &format!("a{i}@x.test"), "smtp");
        // a0..a9 accepted by the upstream; a10..a19 refused by it: not affected.
        recs.push(if i < 10 {
            r.with_reply(250, "ok")
        } else {
            r.with_reply(550, "no")
        });
    }
    // a3 already received the apology in an earlier run.
    let sorry = Envelope::new("care@shop.test").with_campaign("sorry");
    recs.push(
        LedgerRecord::new(Outcome::Relayed, &sorry, "a3@x.test", "smtp").with_reply(250, "ok"),
    );
    ledger.record(recs).await.unwrap();
    ledger.flush().await.unwrap();
    let desk = IncidentDesk::new(guard.clone(), ledger.clone());
    let id = desk.open("leak", "merge tag in subject", "ops").unwrap().id;
    (dir, guard, ledger, desk, id)
}

fn apology(from: &str, reply_to: Option<&str>, subject: &str, unsub: bool) -> Message {
    let mut s = format!("From: Shop Care <{from}>\r\nTo: a1@x.test\r\nSubject: {subject}\r\nX-Campaign-ID: sorry\r\n");
    if let Some(r) = reply_to {
        s.push_str(&format!("Reply-To: {r}\r\n"));
    }
    if unsub {
        s.push_str("List-Unsubscribe: <mailto:unsub@shop.test>\r\n");
    }
    s.push_str("\r\nWe are sorry.\r\n");
    Message::new(s.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_affected_once_each() {
    let (_dir, _guard, ledger, desk, id) = setup().await;
    let gate = ApologyGate::new();
    let policy = vec![ApologyPolicy {
        campaign: "sorry".into(),
        incident: id.clone(),
    }];
    gate.refresh(&policy, &desk).unwrap();
    assert!(gate.is_apology("sorry"));
    assert_eq!(gate.incident_for("sorry").as_deref(), Some(id.as_str()));

    // Not an apology: never refused.
    assert!(gate
        .check_recipient("newsletter", "stranger@y.test")
        .is_none());
    assert!(gate.mark_sent("newsletter", "stranger@y.test").is_ok());

    // Outside the audience (never got it, or the upstream refused it): not affected.
    for r in ["stranger@y.test", "a15@x.test"] {
        match gate.check_recipient("sorry", r) {
            Some(Refusal::NotAffected {
                recipient,
                incident,
            }) => {
                assert_eq!(recipient, r);
                assert_eq!(incident, id);
            }
            other => panic!("{r}: {other:?}"),
        }
        assert!(gate.mark_sent("sorry", r).is_err());
    }
    // Already served in an earlier run.
    assert!(gate.check_recipient("sorry", "a3@x.test").is_some());

    // Every other affected recipient exactly once, case-insensitively.
    let mut served = 0;
    for i in 0..10 {
        let r = format!("A{i}@X.test");
        if gate.mark_sent("sorry", &r).is_ok() {
            served += 1;
        }
        assert!(gate.mark_sent("sorry", &r).is_err(), "{r} twice");
        assert!(gate.check_recipient("sorry", &r).is_some());
    }
    assert_eq!(served, 9);

    // An upstream refusal gives the reservation back.
    gate.release("sorry", "a5@x.test");
    assert!(gate.check_recipient("sorry", "a5@x.test").is_none());
    assert!(gate.mark_sent("sorry", "a5@x.test").is_ok());

    // Reservations survive a refresh.
    gate.refresh(&policy, &desk).unwrap();
    assert!(gate.mark_sent("sorry", "a5@x.test").is_err());

    // Concurrent reservations of one recipient: exactly one wins.
    gate.release("sorry", "a7@x.test");
    let gate = std::sync::Arc::new(gate);
    let wins: usize = (0..8)
        .map(|_| {
            let g = gate.clone();
            std::thread::spawn(move || g.mark_sent("sorry", "a7@x.test").is_ok() as usize)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(wins, 1);
    ledger.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_incident_refuses_everyone_and_apply_marks_the_verdict() {
    let (_dir, guard, ledger, desk, id) = setup().await;
    let gate = ApologyGate::new();
    gate.refresh(
        &[ApologyPolicy {
            campaign: "sorry".into(),
            incident: "INC-missing".into(),
        }],
        &desk,
    )
    .unwrap();
    assert!(gate.check_recipient("sorry", "a1@x.test").is_some());

    gate.refresh(
        &[ApologyPolicy {
            campaign: "sorry".into(),
            incident: id,
        }],
        &desk,
    )
    .unwrap();
    let mut env = Envelope::new("care@shop.test")
        .with_recipient("a1@x.test")
        .with_recipient("stranger@y.test");
    let msg = apology("care@shop.test", None, "We are sorry", true);
    let mut verdict = guard.check_message(&mut env, &msg);
    assert_eq!(env.campaign.as_deref(), Some("sorry"));
    gate.apply(&env, &msg, &mut verdict);
    assert!(verdict.is_pass(), "{verdict:?}");
    assert_eq!(
        verdict.passing_recipients().collect::<Vec<_>>(),
        vec!["a1@x.test"]
    );
    assert_eq!(verdict.recipients[1].disposition, Disposition::Reject);
    assert!(matches!(
        verdict.recipients[1].refusal,
        Some(Refusal::NotAffected { .. })
    ));

    // Only strangers: the message is refused as not affected.
    let mut env = Envelope::new("care@shop.test").with_recipient("stranger@y.test");
    let mut verdict = guard.check_message(&mut env, &msg);
    gate.apply(&env, &msg, &mut verdict);
    assert!(
        matches!(verdict.refusal, Some(Refusal::NotAffected { .. })),
        "{verdict:?}"
    );
    ledger.close().await.unwrap();
}

#[test]
fn lint_rules() {
    let env = Envelope::new("bounces@shop.test").with_campaign("sorry");
    for (from, reply_to, subject, refused) in [
        ("care@shop.test", None, "We are sorry", false),
        ("no-reply@shop.test", None, "We are sorry", true),
        ("NoReply@shop.test", None, "We are sorry", true),
        ("donotreply@shop.test", None, "We are sorry", true),
        ("do_not_reply@shop.test", None, "We are sorry", true),
        (
            "care@shop.test",
            Some("no.reply@shop.test"),
            "We are sorry",
            true,
        ),
        (
            "care@shop.test",
            Some("help@shop.test"),
            "We are sorry",
            false,
        ),
        ("care@shop.test", None, "   ", true),
    ] {
        let (r, _) = lint(&env, &apology(from, reply_to, subject, true));
        assert_eq!(
            r.is_some(),
            refused,
            "{from} {reply_to:?} {subject:?}: {r:?}"
        );
        if let Some(Refusal::Policy { rule, .. }) = r {
            assert_eq!(rule, LINT_RULE);
        }
    }
    let (r, f) = lint(&env, &apology("care@shop.test", None, "Sorry", false));
    assert!(r.is_none());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Low);
    assert_eq!(f[0].token, "List-Unsubscribe");
    let (_, f) = lint(&env, &apology("care@shop.test", None, "Sorry", true));
    assert!(f.is_empty());
    // Missing Subject entirely.
    let m = Message::new(&b"From: care@shop.test\r\n\r\nbody\r\n"[..]);
    assert!(lint(&env, &m).0.is_some());
    assert!(is_no_reply("<No-Reply-Billing@shop.test>"));
    assert!(!is_no_reply("reply@shop.test"));
}
