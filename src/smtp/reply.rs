//! Every reply the SMTP front-end writes, built through named constructors.
//!
//! Refusals of the policy engine become replies in [`SmtpReply::from_refusal`] and nowhere else;
//! upstream replies are relayed through [`SmtpReply::relayed`], which turns an upstream `421`
//! (the upstream is closing) into `451 4.4.2` so the client's session goes on.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::codec::Reply;
use crate::model::{Action, Refusal};

/// One SMTP reply: a code and one or more lines of text (the enhanced status code, when there
/// is one, starts the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    code: u16,
    text: Cow<'static, str>,
}

/// Data from clients, policies or the upstream may hold line breaks; they never reach the wire.
fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

impl SmtpReply {
    /// A one-line reply; line breaks and other control characters in `text` become spaces.
    fn new(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        let text: Cow<'static, str> = text.into();
        let text = match clean(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(o) => Cow::Owned(o),
        };
        SmtpReply { code, text }
    }

    /// A multi-line reply, each line cleaned.
    fn multiline<'a>(code: u16, lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut text = String::new();
        for (i, l) in lines.into_iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(&clean(l));
        }
        SmtpReply {
            code,
            text: Cow::Owned(text),
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The text (lines separated by `\n`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the code is 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the reply in wire form: every line `CODE-text`, the last `CODE text`, CRLF each.
    /// Control characters in the text are replaced, so nothing in it can end a line early.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            let _ = write!(Wire(out), "{}{}", self.code, sep);
            for c in line.chars() {
                if c.is_control() || !c.is_ascii() {
                    out.push(b'?');
                } else {
                    out.push(c as u8);
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a string (tests, logs).
    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    // ---- the verdicts of the policy engine -------------------------------------------------

    /// The reply for a refusal of the policy engine, at whatever stage it happened.
    pub fn from_refusal(refusal: &Refusal) -> SmtpReply {
        match refusal {
            Refusal::Suppressed { recipient, .. } => SmtpReply::suppressed(recipient),
            Refusal::NotAffected {
                recipient,
                incident,
            } => SmtpReply::not_affected(recipient, incident),
            Refusal::Paused { scope, reason } => SmtpReply::paused(&scope.to_string(), reason),
            Refusal::RateLimited { scope, retry_after } => {
                SmtpReply::rate_limited(&scope.to_string(), retry_after.as_secs().max(1))
            }
            Refusal::Placeholder {
                token,
                location,
                action,
                ..
            } => SmtpReply::placeholder(token, location.as_str(), *action),
            Refusal::Policy {
                rule,
                detail,
                action,
            } => SmtpReply::policy(rule, detail, *action),
        }
    }

    /// `550 5.7.1 <rcpt>: recipient suppressed`.
    pub fn suppressed(recipient: &str) -> SmtpReply {
        SmtpReply::new(550, format!("5.7.1 <{recipient}>: recipient suppressed"))
    }

    /// `550 5.7.1 <rcpt>: recipient not affected by incident X`.
    pub fn not_affected(recipient: &str, incident: &str) -> SmtpReply {
        SmtpReply::new(
            550,
            format!("5.7.1 <{recipient}>: recipient not affected by incident {incident}"),
        )
    }

    /// `451 4.7.1 <scope> paused: <reason>`.
    pub fn paused(scope: &str, reason: &str) -> SmtpReply {
        let reason = if reason.trim().is_empty() {
            "no reason given"
        } else {
            reason
        };
        SmtpReply::new(451, format!("4.7.1 {scope} paused: {reason}"))
    }

    /// `451 4.7.0 <scope> rate limited, retry later`.
    pub fn rate_limited(scope: &str, retry_after_secs: u64) -> SmtpReply {
        SmtpReply::new(
            451,
            format!("4.7.0 {scope} rate limited, retry later (in {retry_after_secs}s)"),
        )
    }

    /// `554 5.6.0 message contains unrendered placeholder <token> in <location>`; with the
    /// `tempfail` action `451 4.6.0 …` instead.
    pub fn placeholder(token: &str, location: &str, action: Action) -> SmtpReply {
        let text = format!("message contains unrendered placeholder {token} in {location}");
        match action {
            Action::Tempfail => SmtpReply::new(451, format!("4.6.0 {text}")),
            _ => SmtpReply::new(554, format!("5.6.0 {text}")),
        }
    }

    /// Another policy rule: `554 5.7.0 rule: detail` (`451 4.7.0` with the `tempfail` action).
    pub fn policy(rule: &str, detail: &str, action: Action) -> SmtpReply {
        match action {
            Action::Tempfail => SmtpReply::new(451, format!("4.7.0 {rule}: {detail}")),
            _ => SmtpReply::new(554, format!("5.7.0 {rule}: {detail}")),
        }
    }

    // ---- the upstream ----------------------------------------------------------------------

    /// `451 4.4.1 upstream unavailable: <why>`: connecting, TLS or AUTH to the upstream failed.
    pub fn upstream_unavailable(why: &str) -> SmtpReply {
        SmtpReply::new(451, format!("4.4.1 upstream unavailable: {why}"))
    }

    /// `451 4.4.2 upstream connection lost: <why>`: the upstream closed, timed out or spoke
    /// garbage during a transaction. Nothing was accepted.
    pub fn upstream_lost(why: &str) -> SmtpReply {
        SmtpReply::new(451, format!("4.4.2 upstream connection lost: {why}"))
    }

    /// An upstream reply, relayed as it came — except `421` (the upstream is closing its
    /// connection, not ours), which becomes `451 4.4.2`.
    pub fn relayed(reply: &Reply) -> SmtpReply {
        if reply.code == 421 {
            return SmtpReply::upstream_lost(&format!("upstream said 421 {}", reply.text()));
        }
        SmtpReply::multiline(reply.code, reply.lines.iter().map(String::as_str))
    }

    // ---- the dialogue ----------------------------------------------------------------------

    /// `220 <host> ESMTP sendguard`.
    pub fn greeting(host: &str) -> SmtpReply {
        SmtpReply::new(220, format!("{host} ESMTP sendguard"))
    }

    /// The EHLO reply with its keywords.
    pub fn ehlo(
        host: &str,
        client: &str,
        max_size: usize,
        starttls: bool,
        auth: bool,
    ) -> SmtpReply {
        let first = format!("{host} greets {client}");
        let size = format!("SIZE {max_size}");
        let mut lines = vec![
            first.as_str(),
            "PIPELINING",
            size.as_str(),
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ];
        if starttls {
            lines.push("STARTTLS");
        }
        if auth {
            lines.push("AUTH PLAIN LOGIN");
        }
        lines.push("HELP");
        SmtpReply::multiline(250, lines)
    }

    /// `250 <host>` (HELO).
    pub fn helo(host: &str) -> SmtpReply {
        SmtpReply::new(250, host.to_string())
    }

    /// `250 2.0.0 OK`.
    pub fn ok() -> SmtpReply {
        SmtpReply::new(250, "2.0.0 OK")
    }

    /// `250 2.1.0 sender OK` (maildir upstream: no live answer).
    pub fn sender_ok() -> SmtpReply {
        SmtpReply::new(250, "2.1.0 sender OK")
    }

    /// `250 2.1.5 recipient OK` (maildir upstream: no live answer).
    pub fn recipient_ok() -> SmtpReply {
        SmtpReply::new(250, "2.1.5 recipient OK")
    }

    /// `354 end data with <CR><LF>.<CR><LF>`.
    pub fn start_data() -> SmtpReply {
        SmtpReply::new(354, "end data with <CR><LF>.<CR><LF>")
    }

    /// `250 2.0.0 queued as <id>` (maildir).
    pub fn queued(id: &str) -> SmtpReply {
        SmtpReply::new(250, format!("2.0.0 queued as {id}"))
    }

    /// `221 2.0.0 bye`.
    pub fn bye() -> SmtpReply {
        SmtpReply::new(221, "2.0.0 bye")
    }

    /// `252 2.5.0 cannot verify, will attempt delivery`.
    pub fn vrfy() -> SmtpReply {
        SmtpReply::new(
            252,
            "2.5.0 cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// `214` with the commands understood.
    pub fn help() -> SmtpReply {
        SmtpReply::new(
            214,
            "2.0.0 commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
        )
    }

    /// `220 2.0.0 ready to start TLS`.
    pub fn tls_ready() -> SmtpReply {
        SmtpReply::new(220, "2.0.0 ready to start TLS")
    }

    /// `454 4.7.0 TLS not available`.
    pub fn tls_unavailable() -> SmtpReply {
        SmtpReply::new(454, "4.7.0 TLS not available")
    }

    /// `334 <challenge>` during AUTH.
    pub fn auth_challenge(base64: &str) -> SmtpReply {
        SmtpReply::new(334, base64.to_string())
    }

    /// `235 2.7.0 authentication successful`.
    pub fn auth_ok() -> SmtpReply {
        SmtpReply::new(235, "2.7.0 authentication successful")
    }

    /// `535 5.7.8 authentication credentials invalid`.
    pub fn auth_failed() -> SmtpReply {
        SmtpReply::new(535, "5.7.8 authentication credentials invalid")
    }

    /// `501 5.7.0 authentication cancelled`.
    pub fn auth_cancelled() -> SmtpReply {
        SmtpReply::new(501, "5.7.0 authentication cancelled")
    }

    /// `504 5.5.4 unrecognized authentication mechanism`.
    pub fn auth_mechanism() -> SmtpReply {
        SmtpReply::new(504, "5.5.4 unrecognized authentication mechanism")
    }

    /// `530 5.7.0 authentication required`.
    pub fn auth_required() -> SmtpReply {
        SmtpReply::new(530, "5.7.0 authentication required")
    }

    /// `538 5.7.11 encryption required for requested authentication mechanism`.
    pub fn encryption_required() -> SmtpReply {
        SmtpReply::new(
            538,
            "5.7.11 encryption required for requested authentication mechanism",
        )
    }

    /// `503 5.5.1 <what>`: a command out of sequence.
    pub fn bad_sequence(what: &'static str) -> SmtpReply {
        SmtpReply::new(503, format!("5.5.1 {what}"))
    }

    /// `501 5.5.4 <what>`: bad arguments.
    pub fn bad_arguments(what: &str) -> SmtpReply {
        SmtpReply::new(501, format!("5.5.4 {what}"))
    }

    /// `500 5.5.2 command not recognized`.
    pub fn unrecognized() -> SmtpReply {
        SmtpReply::new(500, "5.5.2 command not recognized")
    }

    /// `502 5.5.1 command not implemented`.
    pub fn not_implemented() -> SmtpReply {
        SmtpReply::new(502, "5.5.1 command not implemented")
    }

    /// `555 5.5.4 <param> not supported`.
    pub fn unsupported_parameter(param: &str) -> SmtpReply {
        SmtpReply::new(555, format!("5.5.4 parameter {param} not supported"))
    }

    /// `500 5.5.2 line too long`.
    pub fn line_too_long() -> SmtpReply {
        SmtpReply::new(500, "5.5.2 line too long")
    }

    /// `421 4.7.0 too many errors, closing connection`.
    pub fn too_many_errors() -> SmtpReply {
        SmtpReply::new(421, "4.7.0 too many errors, closing connection")
    }

    /// `452 4.5.3 too many recipients`.
    pub fn too_many_recipients() -> SmtpReply {
        SmtpReply::new(452, "4.5.3 too many recipients")
    }

    /// `554 5.5.1 no valid recipients`.
    pub fn no_valid_recipients() -> SmtpReply {
        SmtpReply::new(554, "5.5.1 no valid recipients")
    }

    /// `552 5.3.4 message size exceeds fixed limit of N bytes`.
    pub fn too_large(limit: usize) -> SmtpReply {
        SmtpReply::new(
            552,
            format!("5.3.4 message size exceeds fixed limit of {limit} bytes"),
        )
    }

    /// `550 5.5.2 message contains a bare CR or LF`: with `bare_lf = "reject"`.
    pub fn bare_line_ending() -> SmtpReply {
        SmtpReply::new(
            550,
            "5.5.2 message contains a bare CR or LF; line endings must be CRLF",
        )
    }

    /// `451 4.3.0 local error: <what>`: sendguard itself failed (maildir write).
    pub fn local_error(what: &str) -> SmtpReply {
        SmtpReply::new(451, format!("4.3.0 local error: {what}"))
    }

    /// `421 4.3.2 shutting down`.
    pub fn shutting_down(host: &str) -> SmtpReply {
        SmtpReply::new(421, format!("4.3.2 {host} shutting down, try again later"))
    }

    /// `421 4.3.2 too many connections`.
    pub fn too_many_connections(host: &str) -> SmtpReply {
        SmtpReply::new(
            421,
            format!("4.3.2 {host} too many connections, try again later"),
        )
    }

    /// `421 4.4.2 timeout`.
    pub fn timeout(host: &str) -> SmtpReply {
        SmtpReply::new(421, format!("4.4.2 {host} timeout, closing connection"))
    }
}

/// `fmt::Write` over a byte buffer.
struct Wire<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Wire<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Location, Scope};
    use std::time::Duration;

    #[test]
    fn design_table() {
        let cases = [
            (
                Refusal::Suppressed {
                    recipient: "a@x.test".into(),
                    entry: "@x.test".into(),
                },
                "550 5.7.1 <a@x.test>: recipient suppressed\r\n",
            ),
            (
                Refusal::NotAffected {
                    recipient: "a@x.test".into(),
                    incident: "inc-1".into(),
                },
                "550 5.7.1 <a@x.test>: recipient not affected by incident inc-1\r\n",
            ),
            (
                Refusal::Paused {
                    scope: Scope::Campaign("spring".into()),
                    reason: "typo".into(),
                },
                "451 4.7.1 campaign spring paused: typo\r\n",
            ),
            (
                Refusal::RateLimited {
                    scope: Scope::Global,
                    retry_after: Duration::from_millis(10),
                },
                "451 4.7.0 global rate limited, retry later (in 1s)\r\n",
            ),
            (
                Refusal::Placeholder {
                    rule: "placeholder".into(),
                    token: "{{name}}".into(),
                    location: Location::Subject,
                    action: Action::Reject,
                },
                "554 5.6.0 message contains unrendered placeholder {{name}} in subject\r\n",
            ),
            (
                Refusal::Placeholder {
                    rule: "placeholder".into(),
                    token: "<FirstName>".into(),
                    location: Location::Text,
                    action: Action::Tempfail,
                },
                "451 4.6.0 message contains unrendered placeholder <FirstName> in text\r\n",
            ),
        ];
        for (refusal, wire) in cases {
            assert_eq!(SmtpReply::from_refusal(&refusal).to_wire(), wire);
        }
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = SmtpReply::paused("campaign x", "a\r\n250 ok");
        assert_eq!(r.to_wire(), "451 4.7.1 campaign x paused: a  250 ok\r\n");
        let r = SmtpReply::suppressed("a@b.test>\n250 2.0.0 fine");
        assert_eq!(r.to_wire().matches("\r\n").count(), 1);
    }

    #[test]
    fn relays_and_maps_421() {
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 no such user".into()],
        };
        assert_eq!(
            SmtpReply::relayed(&r).to_wire(),
            "550 5.1.1 no such user\r\n"
        );
        let r = Reply {
            code: 421,
            lines: vec!["bye".into()],
        };
        assert_eq!(SmtpReply::relayed(&r).code(), 451);
        let ehlo = SmtpReply::ehlo("h", "c", 10, true, false).to_wire();
        assert!(ehlo.starts_with("250-h greets c\r\n250-PIPELINING\r\n"));
        assert!(ehlo.ends_with("250 HELP\r\n"));
    }
}
