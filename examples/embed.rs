//! How an MTA's own code embeds sendguard: open a `Guard`, ask it at MAIL, RCPT and end of
//! data, and pass the message on only when it says so.
//!
//! Run with `cargo run --example embed` from the repository root (it reads `policies/`).

use sendguard::model::{Envelope, Message, Refusal, Scope};
use sendguard::{Guard, GuardConfig};

/// What an MTA would answer its client, from the guard's refusal.
fn reply(refusal: &Refusal) -> String {
    let code = match refusal.disposition() {
        sendguard::model::Disposition::Tempfail => "451",
        _ => "550",
    };
    format!("{code} {refusal}")
}

/// One SMTP-like transaction against the guard; returns the replies the client would see.
fn transaction(guard: &Guard, sender: &str, rcpts: &[&str], data: &str) -> Vec<String> {
    let mut replies = Vec::new();
    let mut env = Envelope::new(sender);
    // MAIL FROM: pauses by sender, tenant or global are known now.
    if let Err(r) = guard.check_sender(&env) {
        replies.push(format!("MAIL: {}", reply(&r)));
        return replies;
    }
    // RCPT TO: suppression and recipient-domain pauses, one recipient at a time.
    for rcpt in rcpts {
        match guard.check_recipient(&env, rcpt) {
            Ok(()) => env.recipients.push(rcpt.to_string()),
            Err(r) => replies.push(format!("RCPT {rcpt}: {}", reply(&r))),
        }
    }
    if env.recipients.is_empty() {
        replies.push("DATA: 554 no valid recipients".into());
        return replies;
    }
    // End of data: the whole message (campaign from its headers, placeholder leaks).
    let msg = Message::new(data.replace('\n', "\r\n").into_bytes());
    let verdict = guard.check_message(&mut env, &msg);
    if let Some(r) = &verdict.refusal {
        replies.push(format!("DATA: {}", reply(r)));
        return replies;
    }
    // The last gate, immediately before handing the message to the next hop.
    match guard.admit(&env) {
        Ok(()) => replies.push(format!(
            "DATA: 250 relayed to {} recipient(s) (campaign {})",
            verdict.passing_recipients().count(),
            env.campaign.as_deref().unwrap_or("-")
        )),
        Err(r) => replies.push(format!("DATA: {}", reply(&r))),
    }
    replies
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = std::env::temp_dir().join(format!("sendguard-embed-{}", std::process::id()));
    let guard = Guard::open(GuardConfig::new("policies", &state))?;
    println!("policies generation {}", guard.policy_generation());

    let good = "From: News <news@shop.test>\nTo: anna@customer.test\nX-Campaign-ID: spring\nSubject: Spring is here\n\nHello Anna,\nour spring sale starts today.\n";
    let leaking = "From: News <news@shop.test>\nTo: anna@customer.test\nX-Campaign-ID: spring\nSubject: Spring is here\n\nSehr geehrter {{FirstName}},\nour spring sale starts today.\n";

    for line in transaction(
        &guard,
        "news@shop.test",
        &["anna@customer.test", "bob@example.invalid"],
        good,
    ) {
        println!("clean message      -> {line}");
    }
    for line in transaction(&guard, "news@shop.test", &["anna@customer.test"], leaking) {
        println!("leaking message    -> {line}");
    }

    // Ops pause the campaign; the next message of it is refused with a temporary reply.
    guard.pause(
        Scope::Campaign("spring".into()),
        "template broken",
        "ops",
        None,
    )?;
    for line in transaction(&guard, "news@shop.test", &["anna@customer.test"], good) {
        println!("while paused       -> {line}");
    }
    guard.resume(&Scope::Campaign("spring".into()), "ops", None)?;
    for line in transaction(&guard, "news@shop.test", &["anna@customer.test"], good) {
        println!("after resume       -> {line}");
    }
    drop(guard);
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
