//! The whole incident arc against the real daemon, relaying to the recording stand-in upstream:
//! a campaign to 1,000 recipients (100 suppressed) whose template breaks after 300 of them; the
//! automatic trip stops it; the incident report (admin API and CLI) counts exactly what the
//! upstream received; the audience is exactly the affected, unsuppressed recipients; the apology
//! reaches exactly them, once each, and nobody else; the campaign resumes on a ramp.

mod admin_common;
mod common;
#[path = "common/smtp_upstream.rs"]
mod smtp_upstream;
#[path = "common/smtp_wire.rs"]
mod smtp_wire;

use admin_common::{Api, TOKEN};
use common::{free_port, Daemon};
use hyper::{Method, StatusCode};
use smtp_upstream::{Script, Upstream};
use smtp_wire::Wire;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CAMPAIGN: &str = "spring-1";
const APOLOGY: &str = "sorry-1";
const TOTAL: usize = 1000;
/// Recipients 0..CLEAN get a correct rendering; the template breaks after them.
const CLEAN: usize = 300;
/// Connections sending at once.
const CONNS: usize = 8;

const DOMAINS: [&str; 3] = ["gmail.test", "web.test", "mail.test"];

fn rcpt(i: usize) -> String {
    format!("user{i}@{}", DOMAINS[i % 3])
}

/// One recipient in ten is on the suppression list before the send.
fn suppressed_before(i: usize) -> bool {
    i % 10 == 5
}

/// Whether recipient `i` gets the broken greeting (after the first `CLEAN`, those without a
/// first name: one in four).
fn leaks_for(i: usize) -> bool {
    i >= CLEAN && i.is_multiple_of(4)
}

/// Suppressed through the admin API after the send (both got the campaign).
const LATE_SUPPRESSED: [usize; 2] = [1, 2];

fn campaign_message(i: usize, leaking: bool) -> Vec<u8> {
    let greeting = if leaking {
        "{{FirstName}}".to_string()
    } else {
        format!("Kundin {i}")
    };
    format!(
        "From: Shop <news@shop.test>\r\nTo: {r}\r\nSubject: Spring sale\r\n\
         Message-ID: <c{i}@shop.test>\r\nX-Campaign-ID: {CAMPAIGN}\r\n\
         List-Unsubscribe: <mailto:unsub@shop.test>\r\n\r\n\
         Hallo {greeting},\r\n\r\nour spring sale starts today.\r\n",
        r = rcpt(i)
    )
    .into_bytes()
}

fn apology_message(r: &str, n: usize) -> Vec<u8> {
    format!(
        "From: Shop Care <care@shop.test>\r\nReply-To: care@shop.test\r\nTo: {r}\r\n\
         Subject: We are sorry about our last email\r\nMessage-ID: <s{n}@shop.test>\r\n\
         X-Campaign-ID: {APOLOGY}\r\nList-Unsubscribe: <mailto:unsub@shop.test>\r\n\r\n\
         Our last email greeted you wrongly. We are sorry.\r\n"
    )
    .into_bytes()
}

/// Where a message's fate was decided, and the reply that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Refused at RCPT.
    Rcpt(String),
    /// Answered at the end of DATA.
    Data(String),
}

impl Fate {
    fn reply(&self) -> &str {
        match self {
            Fate::Rcpt(r) | Fate::Data(r) => r,
        }
    }
}

/// A raw SMTP client that pipelines MAIL, RCPT and DATA.
struct Client {
    w: Wire,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let (w, e) = Wire::connect_ehlo(port, "arc.test").await;
        assert!(e.contains("PIPELINING"), "{e}");
        Client { w }
    }

    /// Sends one message to one recipient.
    async fn send(&mut self, from: &str, to: &str, msg: &[u8]) -> Fate {
        let cmds = format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n");
        self.w.send(cmds.as_bytes()).await;
        let mail = self.w.reply().await;
        let rcpt = self.w.reply().await;
        let data = self.w.reply().await;
        assert!(mail.starts_with("250"), "MAIL: {mail}");
        if !data.starts_with("354") {
            assert!(!rcpt.starts_with("250"), "RCPT {rcpt} but DATA {data}");
            self.w.send(b"RSET\r\n").await;
            let r = self.w.reply().await;
            assert!(r.starts_with("250"), "RSET: {r}");
            return Fate::Rcpt(rcpt);
        }
        let mut wire = Vec::with_capacity(msg.len() + 8);
        sendguard::smtp::codec::dot_stuff(msg, &mut wire);
        self.w.send(&wire).await;
        Fate::Data(self.w.reply().await)
    }
}

/// One message to send: (key, sender, recipient, content).
type Job = (usize, String, String, Vec<u8>);

/// Clean campaign messages from the campaign's sender to `rcpts`, keyed 0, 1, … in their order.
fn clean_campaign_jobs<'a>(rcpts: impl Iterator<Item = &'a String>) -> Vec<Job> {
    rcpts
        .enumerate()
        .map(|(k, r)| {
            (
                k,
                "news@shop.test".into(),
                r.clone(),
                campaign_message(k, false),
            )
        })
        .collect()
}

/// Sends every job over `conns` connections at once; returns each job's fate by key.
async fn send_all(port: u16, jobs: Vec<Job>, conns: usize) -> HashMap<usize, Fate> {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (jobs, next) = (jobs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(port).await;
            let mut out = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some((key, from, to, msg)) = jobs.get(n) else {
                    break;
                };
                out.push((*key, c.send(from, to, msg).await));
            }
            c.w.quit().await;
            out
        }));
    }
    let mut fates = HashMap::new();
    for t in tasks {
        let done = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("sending finished within 120 s")
            .unwrap();
        fates.extend(done);
    }
    assert_eq!(fates.len(), jobs.len());
    fates
}

/// Recipients the upstream has accepted messages for so far, from message `from` on.
fn upstream_rcpts(up: &Upstream, from: usize) -> Vec<String> {
    let msgs = up.messages.lock().unwrap();
    msgs.iter()
        .skip(from)
        .flat_map(|m| m.rcpts.iter().map(|r| r.to_lowercase()))
        .collect()
}

fn upstream_count(up: &Upstream) -> usize {
    up.messages.lock().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leak_trip_report_audience_apology_ramp() {
    let up = Upstream::start(Script::default()).await;
    let smtp = free_port();
    let admin = free_port();
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:{smtp}\"\nhostname = \"proxy.test\"\nupstream = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        up.url()
    );
    // The suppression list (upper case: addresses compare case-insensitively) is in the
    // policies when the daemon starts: written into its policies folder, then a fresh start.
    let list: String = (0..TOTAL)
        .filter(|i| suppressed_before(*i))
        .map(|i| format!("{}\n", rcpt(i).to_uppercase()))
        .collect();
    let d = tokio::task::spawn_blocking(move || {
        let mut d =
            Daemon::start_with_env(&config, &[smtp, admin], &[("SENDGUARD_ADMIN_TOKEN", TOKEN)]);
        std::fs::write(d.policies().join("suppressions").join("arc.txt"), &list).unwrap();
        d.restart();
        d
    })
    .await
    .unwrap();
    let api = Api::new(admin);
    assert_eq!(
        api.get(&format!("/v1/suppressions/{}", rcpt(5)))
            .await
            .status,
        StatusCode::OK,
        "the suppression list is loaded"
    );

    // 1. The campaign: 300 clean renderings, then the template breaks.
    let clean: Vec<Job> = (0..CLEAN)
        .map(|i| {
            (
                i,
                "news@shop.test".into(),
                rcpt(i),
                campaign_message(i, false),
            )
        })
        .collect();
    let fates = send_all(smtp, clean, CONNS).await;
    for (i, fate) in &fates {
        if suppressed_before(*i) {
            assert!(
                matches!(fate, Fate::Rcpt(r) if r.starts_with("550 5.7.1") && r.contains("suppressed")),
                "{i}: {fate:?}"
            );
        } else {
            assert!(
                matches!(fate, Fate::Data(r) if r.starts_with("250")),
                "{i}: {fate:?}"
            );
        }
    }
    // From here on the recipients without a first name (one in four) get the broken greeting.
    let rest: Vec<Job> = (CLEAN..TOTAL)
        .map(|i| {
            let m = campaign_message(i, leaks_for(i));
            (i, "news@shop.test".into(), rcpt(i), m)
        })
        .collect();
    let fates = send_all(smtp, rest, CONNS).await;
    let (mut leaks, mut paused) = (0, 0);
    let mut relayed_late = Vec::new();
    for (i, fate) in &fates {
        if suppressed_before(*i) {
            assert!(
                matches!(fate, Fate::Rcpt(r) if r.starts_with("550 5.7.1")),
                "{i}: {fate:?}"
            );
            continue;
        }
        match fate {
            Fate::Data(r)
                if leaks_for(*i) && r.starts_with("554 5.6.0") && r.contains("{{FirstName}}") =>
            {
                leaks += 1
            }
            Fate::Data(r)
                if !leaks_for(*i) && r.starts_with("451 4.7.1") && r.contains("paused") =>
            {
                paused += 1
            }
            Fate::Data(r) if !leaks_for(*i) && r.starts_with("250") => relayed_late.push(*i),
            other => panic!("{i}: {other:?}"),
        }
    }
    assert_eq!(leaks, (CLEAN..TOTAL).filter(|i| leaks_for(*i)).count());
    // The trip fires on the third leak (recipient 308); messages in flight on the other
    // connections may still pass before the pause is in force, nothing much later.
    assert!(
        relayed_late.iter().all(|i| *i < 308 + 4 * CONNS),
        "relayed after the trip: {relayed_late:?}"
    );
    assert_eq!(
        leaks + paused + relayed_late.len(),
        (CLEAN..TOTAL).filter(|i| !suppressed_before(*i)).count()
    );
    let pauses = api.get("/v1/pauses").await.json();
    let pause = pauses["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.to_string().contains(CAMPAIGN))
        .unwrap_or_else(|| panic!("the automatic trip paused the campaign: {pauses}"));
    assert!(pause.to_string().contains("auto"), "{pause}");

    // What the upstream received: the clean, unsuppressed recipients relayed before the trip,
    // once each, no leak.
    let expected: BTreeSet<String> = (0..CLEAN)
        .filter(|i| !suppressed_before(*i))
        .chain(relayed_late.iter().copied())
        .map(rcpt)
        .collect();
    let relayed = upstream_rcpts(&up, 0);
    assert_eq!(relayed.len(), expected.len(), "one message per recipient");
    assert_eq!(relayed.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(up
        .messages
        .lock()
        .unwrap()
        .iter()
        .all(|m| !String::from_utf8_lossy(&m.content()).contains("{{")));

    // 2. The incident.
    let r = api
        .call(
            Method::POST,
            "/v1/incidents",
            Some(&format!(
                r#"{{"campaign":"{CAMPAIGN}","reason":"{{{{FirstName}}}} in the greeting","actor":"maria"}}"#
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    for i in LATE_SUPPRESSED {
        let r = api
            .call(Method::PUT, &format!("/v1/suppressions/{}", rcpt(i)), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }

    let report = api.get(&format!("/v1/incidents/{id}/report")).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text());
    let report = report.json();
    let outcome = |name: &str| {
        report["campaign"]["by_outcome"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == name)
            .map_or(0, |c| c["count"].as_u64().unwrap())
    };
    let n = relayed.len() as u64;
    assert_eq!(report["campaign"]["relayed_recipients"], n, "{report}");
    assert_eq!(outcome("relayed"), n, "{report}");
    assert_eq!(outcome("rejected"), leaks as u64, "{report}");
    assert_eq!(outcome("tempfailed"), paused as u64, "{report}");
    assert_eq!(report["suppressed_now"], LATE_SUPPRESSED.len(), "{report}");
    assert_eq!(
        report["audience"],
        n - LATE_SUPPRESSED.len() as u64,
        "{report}"
    );
    let by_domain: u64 = report["campaign"]["by_domain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_domain, n);
    let findings = report["campaign"]["findings"].as_array().unwrap();
    let token = findings
        .iter()
        .find(|f| f["token"] == "{{FirstName}}")
        .unwrap_or_else(|| panic!("the leaked token is reported: {findings:?}"));
    assert_eq!(token["relayed"], 0, "no leak reached anyone: {token}");
    assert!(report["campaign"]["first_send"].is_string());
    assert!(report["campaign"]["last_send"].is_string());

    let audience = api.get(&format!("/v1/incidents/{id}/audience")).await;
    assert_eq!(audience.status, StatusCode::OK);
    let csv = audience.text();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("recipient"));
    let audience: BTreeSet<String> = lines.map(str::to_lowercase).collect();
    let mut want = expected.clone();
    for i in LATE_SUPPRESSED {
        assert!(want.remove(&rcpt(i)));
    }
    assert_eq!(audience, want, "affected minus suppressed, nobody else");
    assert_eq!(csv.lines().count(), want.len() + 1, "each once");

    // The same through the CLI: the table and the CSV export.
    let out = d.path("audience.csv");
    let (report_text, csv) = {
        let (id, out) = (id.clone(), out.clone());
        tokio::task::spawn_blocking(move || {
            let cli = |args: &[&str]| {
                let o = std::process::Command::new(env!("CARGO_BIN_EXE_sendguard"))
                    .arg("incident")
                    .args(args)
                    .args(["--admin", &format!("http://127.0.0.1:{admin}")])
                    .env("SENDGUARD_ADMIN_TOKEN", TOKEN)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{args:?}: {o:?}");
                String::from_utf8(o.stdout).unwrap()
            };
            let text = cli(&["report", &id]);
            cli(&["audience", &id, "--out", out.to_str().unwrap()]);
            (text, std::fs::read_to_string(&out).unwrap())
        })
        .await
        .unwrap()
    };
    assert!(
        report_text.contains(&format!("Recipients who got the message:  {n}")),
        "{report_text}"
    );
    assert!(report_text.contains("{{FirstName}}"), "{report_text}");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("recipient"));
    assert_eq!(lines.map(str::to_lowercase).collect::<BTreeSet<_>>(), want);

    // 3. The apology campaign, declared for the incident.
    std::fs::write(
        d.policies().join("zz-apology.toml"),
        format!("[[apology]]\ncampaign = \"{APOLOGY}\"\nincident = \"{id}\"\n"),
    )
    .unwrap();
    let r = api.call(Method::POST, "/v1/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let status = api.get("/v1/status").await.json();
    assert!(status["reload_error"].is_null(), "{status}");

    let before = upstream_count(&up);
    let jobs: Vec<Job> = (0..TOTAL)
        .map(|i| {
            let r = rcpt(i);
            let m = apology_message(&r, i);
            (i, "care@shop.test".into(), r, m)
        })
        .collect();
    let fates = send_all(smtp, jobs, CONNS).await;
    for (i, fate) in &fates {
        let r = rcpt(*i);
        if suppressed_before(*i) || LATE_SUPPRESSED.contains(i) {
            assert!(
                matches!(fate, Fate::Rcpt(x) if x.starts_with("550 5.7.1") && x.contains("suppressed")),
                "{i}: {fate:?}"
            );
        } else if want.contains(&r) {
            assert!(
                matches!(fate, Fate::Data(x) if x.starts_with("250")),
                "{i}: {fate:?}"
            );
        } else {
            assert!(
                fate.reply().starts_with("550 5.7.1") && fate.reply().contains("not affected"),
                "{i}: {fate:?}"
            );
        }
    }
    let apologised = upstream_rcpts(&up, before);
    assert_eq!(apologised.len(), want.len(), "once each");
    assert_eq!(apologised.into_iter().collect::<BTreeSet<_>>(), want);
    // A second apology to someone affected is refused.
    let first = want.iter().next().unwrap().clone();
    let mut c = Client::connect(smtp).await;
    let again = c
        .send("care@shop.test", &first, &apology_message(&first, TOTAL))
        .await;
    assert!(
        again.reply().starts_with("550 5.7.1") && again.reply().contains("not affected"),
        "{again:?}"
    );
    assert_eq!(upstream_count(&up), before + want.len());

    // 4. Resume on a ramp: 5/s growing to 20/s over 10 s.
    let ramp = r#"{"ramp":{"from":"5/s","to":"20/s","over":"10s"}}"#;
    let r = api
        .resume(&format!("/v1/pauses/campaign/{CAMPAIGN}"), ramp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let started = Instant::now();
    let burst = clean_campaign_jobs(want.iter().take(60));
    let fates = send_all(smtp, burst, 4).await;
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = fates
        .values()
        .filter(|f| f.reply().starts_with("250"))
        .count();
    let limited = fates
        .values()
        .filter(|f| {
            matches!(f, Fate::Data(r) if r.starts_with("451 4.7.0") && r.contains("rate limited"))
        })
        .count();
    assert_eq!(accepted + limited, 60, "{fates:?}");
    assert!(accepted >= 1, "the ramp lets some through");
    // At most the ramp's top rate over the elapsed time, plus a generous burst allowance.
    let ceiling = (20.0 * elapsed).ceil() as usize + 10;
    assert!(
        accepted <= ceiling,
        "{accepted} accepted in {elapsed:.2}s, ceiling {ceiling}"
    );
    assert!(limited >= 1, "a burst of 60 is over a 5/s ramp");

    // After `over` the ramp has ended: the campaign is back to normal.
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(started.elapsed())).await;
    let after = clean_campaign_jobs(want.iter().skip(60).take(30));
    let fates = send_all(smtp, after, 4).await;
    assert!(
        fates.values().all(|f| f.reply().starts_with("250")),
        "{fates:?}"
    );

    // The incident's timeline kept the pause and the resume.
    let inc = api.get(&format!("/v1/incidents/{id}")).await.json();
    let kinds = inc["timeline"].to_string();
    assert!(
        kinds.contains("opened") && kinds.contains("resume"),
        "{inc}"
    );
    drop(d);
}
