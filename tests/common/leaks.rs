//! The `<FirstName>` leak in a subject that the ledger, incident and quarantine tests (and the
//! ledger bench) share: as a logged finding and as a verdict that refuses the message into the
//! quarantine.
#![allow(dead_code)]

use sendguard::model::{Action, Finding, Location, Refusal, Severity, Verdict};

/// The finding: the merge tag `<FirstName>` left in the subject, logged.
pub fn leak() -> Finding {
    Finding {
        rule: "placeholder.angle".into(),
        location: Location::Subject,
        token: "<FirstName>".into(),
        detail: "unrendered merge tag".into(),
        severity: Severity::High,
        action: Action::Log,
    }
}

/// A verdict refusing the message for `<FirstName>` in the subject, to the quarantine.
pub fn quarantined_leak() -> Verdict {
    let mut v = Verdict::pass();
    v.refuse(Refusal::Placeholder {
        rule: "placeholder.angle".into(),
        token: "<FirstName>".into(),
        location: Location::Subject,
        action: Action::Quarantine,
    });
    v
}
