//! The kill switch: pauses by scope and the snapshot the guard consults for every message.
//!
//! A [`Pause`] stops sending for one [`Scope`] (a campaign, a tenant, a sender or every sender of a
//! domain, a recipient domain, or everything). The guard keeps every active pause in one immutable
//! [`PauseSet`], swaps a new set in when an operator pauses or resumes, and asks
//! [`PauseSet::find`] for each message. Nothing here does I/O: durability is the state store's job.
//!
//! # Matching
//!
//! | scope | matches when |
//! |---|---|
//! | `Campaign(id)` | the message's campaign equals `id` (exact, case-sensitive) |
//! | `Tenant(id)` | the message's tenant equals `id` (exact, case-sensitive) |
//! | `Sender(addr)` | the sender equals `addr`, ignoring case |
//! | `Sender("@dom")` | the sender's domain equals `dom`, ignoring case (subdomains do not match) |
//! | `Domain(d)` | the recipient domain equals `d`, ignoring case (subdomains do not match) |
//! | `Global` | always |
//!
//! Domains match exactly: a pause of `example.com` does not cover `mail.example.com`. Mailbox
//! providers and sending domains are judged per exact domain, and an operator who wants several
//! pauses them one by one, which keeps a pause from reaching further than its author meant.

use crate::model::{domain_of, Envelope, Scope};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

/// One pause: sending in `scope` is stopped until it is resumed or `expires_at` passes.
///
/// In JSON the scope is flattened and times are RFC 3339 strings:
/// `{"scope": "campaign", "id": "spring", "reason": "...", "actor": "ops",
/// "created_at": "2026-03-01T10:00:00Z", "expires_at": null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// What is paused.
    #[serde(flatten)]
    pub scope: Scope,
    /// Why, as the operator wrote it; shown in refusals and in `status`.
    pub reason: String,
    /// Who paused (admin token name, CLI user, or `sendguard` for automatic pauses).
    pub actor: String,
    /// When the pause was made.
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    /// When the pause ends by itself, if it has a time-to-live.
    #[serde(with = "rfc3339::option", default)]
    pub expires_at: Option<SystemTime>,
}

impl Pause {
    /// A pause without expiry.
    pub fn new(
        scope: Scope,
        reason: impl Into<String>,
        actor: impl Into<String>,
        created_at: SystemTime,
    ) -> Pause {
        Pause {
            scope,
            reason: reason.into(),
            actor: actor.into(),
            created_at,
            expires_at: None,
        }
    }

    /// The same pause, ending `ttl` after it was made (an admin call's `"ttl": "2h"`).
    pub fn expiring_after(mut self, ttl: std::time::Duration) -> Pause {
        self.expires_at = self.created_at.checked_add(ttl);
        self
    }

    /// Whether the pause has expired at `now` (a pause without expiry never does).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }

    /// Whether the pause's scope covers the message described by `q` (expiry is not considered).
    pub fn matches(&self, q: &PauseQuery) -> bool {
        q.covered_by(&self.scope)
    }
}

/// What a message or recipient is, for matching pauses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PauseQuery<'a> {
    /// The message's campaign, when known.
    pub campaign: Option<&'a str>,
    /// The message's tenant, when known.
    pub tenant: Option<&'a str>,
    /// The envelope sender (empty for the null sender).
    pub sender: &'a str,
    /// The domain of the recipient being judged, when the question is about one recipient.
    pub recipient_domain: Option<&'a str>,
}

impl<'a> PauseQuery<'a> {
    /// The query for a whole message: its campaign, tenant (or authenticated user) and sender.
    pub fn for_envelope(envelope: &'a Envelope) -> PauseQuery<'a> {
        PauseQuery {
            campaign: envelope.campaign.as_deref(),
            tenant: envelope.effective_tenant(),
            sender: &envelope.sender,
            recipient_domain: None,
        }
    }

    /// The same query about one recipient domain (for `Domain` pauses, judged per recipient).
    pub fn with_recipient_domain(self, domain: &'a str) -> PauseQuery<'a> {
        PauseQuery {
            recipient_domain: Some(domain),
            ..self
        }
    }

    /// Whether `scope` covers this message (see the module docs for the rules).
    pub fn covered_by(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Global => true,
            Scope::Campaign(id) => self.campaign == Some(id.as_str()),
            Scope::Tenant(id) => self.tenant == Some(id.as_str()),
            Scope::Sender(s) => match s.strip_prefix('@') {
                Some(dom) => {
                    norm_domain(domain_of(self.sender)) == norm_domain(dom) && !dom.is_empty()
                }
                None => lower(self.sender.trim()) == lower(s.trim()),
            },
            Scope::Domain(d) => self
                .recipient_domain
                .is_some_and(|r| norm_domain(r) == norm_domain(d)),
        }
    }
}

/// Lower-cases without allocating when there is nothing to lower.
fn lower(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The comparison form of a domain: trimmed, no leading `@`, no trailing `.`, lower case.
fn norm_domain(d: &str) -> Cow<'_, str> {
    let d = d.trim();
    let d = d.strip_prefix('@').unwrap_or(d);
    let d = d.strip_suffix('.').unwrap_or(d);
    lower(d)
}

/// The comparison form of a scope's id: what two scopes that pause the same traffic share.
///
/// Campaign and tenant ids as written (they compare exactly); sender addresses lower-cased;
/// sender domains as `@domain` and recipient domains as `domain`, lower-cased, without a trailing
/// dot; the empty string for global. A store keys pauses by `(kind, key)`.
pub fn scope_key(scope: &Scope) -> String {
    match key_of(scope) {
        (Kind::SenderDomain, key) => format!("@{key}"),
        (_, key) => key,
    }
}

/// The key of a scope inside its kind's map.
fn key_of(scope: &Scope) -> (Kind, String) {
    match scope {
        Scope::Global => (Kind::Global, String::new()),
        Scope::Campaign(id) => (Kind::Campaign, id.clone()),
        Scope::Tenant(id) => (Kind::Tenant, id.clone()),
        Scope::Sender(s) => match s.trim().strip_prefix('@') {
            Some(dom) => (Kind::SenderDomain, norm_domain(dom).into_owned()),
            None => (Kind::Sender, lower(s.trim()).into_owned()),
        },
        Scope::Domain(d) => (Kind::Domain, norm_domain(d).into_owned()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Global,
    Campaign,
    Tenant,
    Sender,
    SenderDomain,
    Domain,
}

/// An immutable snapshot of every active pause, swapped whole (with arc-swap) by the guard.
///
/// Lookups go through one hash map per kind of scope, keyed by the scope's id in its comparison
/// form, so [`find`](PauseSet::find) costs a handful of hash lookups however many pauses there are,
/// and returns at once when the set is empty (the common case). Changes build a new set
/// ([`with`](PauseSet::with), [`without`](PauseSet::without)) for the caller to swap in.
#[derive(Debug, Clone, Default)]
pub struct PauseSet {
    /// Every pause, oldest first (ties by scope), for [`iter`](PauseSet::iter).
    pauses: Vec<Pause>,
    global: Option<usize>,
    campaigns: HashMap<String, usize>,
    tenants: HashMap<String, usize>,
    senders: HashMap<String, usize>,
    sender_domains: HashMap<String, usize>,
    domains: HashMap<String, usize>,
}

impl PauseSet {
    /// A set of `pauses`. When two pauses have the same scope, the later one in the iterator wins
    /// (as a second `PUT` of the same pause replaces the first).
    pub fn new(pauses: impl IntoIterator<Item = Pause>) -> Self {
        let mut by_key: HashMap<(u8, String), Pause> = HashMap::new();
        for p in pauses {
            let (kind, key) = key_of(&p.scope);
            by_key.insert((kind as u8, key), p);
        }
        let mut all: Vec<Pause> = by_key.into_values().collect();
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.scope.cmp(&b.scope))
        });
        let mut set = PauseSet {
            pauses: Vec::with_capacity(all.len()),
            ..PauseSet::default()
        };
        for (i, p) in all.into_iter().enumerate() {
            let (kind, key) = key_of(&p.scope);
            match kind {
                Kind::Global => set.global = Some(i),
                Kind::Campaign => drop(set.campaigns.insert(key, i)),
                Kind::Tenant => drop(set.tenants.insert(key, i)),
                Kind::Sender => drop(set.senders.insert(key, i)),
                Kind::SenderDomain => drop(set.sender_domains.insert(key, i)),
                Kind::Domain => drop(set.domains.insert(key, i)),
            }
            set.pauses.push(p);
        }
        set
    }

    /// A set without pauses.
    pub fn empty() -> Self {
        PauseSet::default()
    }

    /// The pause that decides for this query, ignoring pauses expired at `now`.
    ///
    /// The most specific scope wins ([`Scope::rank`]: campaign, then sender, then recipient domain,
    /// then tenant, then global); among equal ranks (a sender address and its `@domain`) the oldest.
    /// The narrowest pause is the one an operator made on purpose for this traffic, so its reason
    /// is the most useful one to put in the refusal; a broader pause still stops the message when
    /// the narrow one is gone.
    pub fn find(&self, q: &PauseQuery, now: SystemTime) -> Option<&Pause> {
        if self.pauses.is_empty() {
            return None;
        }
        let live = |i: &usize| self.pauses.get(*i).filter(|p| !p.is_expired(now));
        if let Some(c) = q.campaign {
            if let Some(p) = self.campaigns.get(c).and_then(live) {
                return Some(p);
            }
        }
        if !self.senders.is_empty() || !self.sender_domains.is_empty() {
            let by_addr = if self.senders.is_empty() {
                None
            } else {
                self.senders
                    .get(lower(q.sender.trim()).as_ref())
                    .and_then(live)
            };
            let dom = domain_of(q.sender);
            let by_dom = if self.sender_domains.is_empty() || dom.is_empty() {
                None
            } else {
                self.sender_domains
                    .get(norm_domain(dom).as_ref())
                    .and_then(live)
            };
            match (by_addr, by_dom) {
                (Some(a), Some(d)) => return Some(if d.created_at < a.created_at { d } else { a }),
                (Some(p), None) | (None, Some(p)) => return Some(p),
                (None, None) => {}
            }
        }
        if let (Some(d), false) = (q.recipient_domain, self.domains.is_empty()) {
            if let Some(p) = self.domains.get(norm_domain(d).as_ref()).and_then(live) {
                return Some(p);
            }
        }
        if let Some(t) = q.tenant {
            if let Some(p) = self.tenants.get(t).and_then(live) {
                return Some(p);
            }
        }
        self.global.as_ref().and_then(live)
    }

    /// The pause of exactly this scope, if there is one (expired or not).
    pub fn get(&self, scope: &Scope) -> Option<&Pause> {
        let (kind, key) = key_of(scope);
        let i = match kind {
            Kind::Global => self.global,
            Kind::Campaign => self.campaigns.get(&key).copied(),
            Kind::Tenant => self.tenants.get(&key).copied(),
            Kind::Sender => self.senders.get(&key).copied(),
            Kind::SenderDomain => self.sender_domains.get(&key).copied(),
            Kind::Domain => self.domains.get(&key).copied(),
        }?;
        self.pauses.get(i)
    }

    /// Every pause, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Pause> {
        self.pauses.iter()
    }

    /// How many pauses the set holds (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.pauses.len()
    }

    /// Whether the set holds no pause.
    pub fn is_empty(&self) -> bool {
        self.pauses.is_empty()
    }

    /// The pauses that have expired at `now`, for the sweeper to remove (and record) durably.
    pub fn expired(&self, now: SystemTime) -> Vec<Pause> {
        self.pauses
            .iter()
            .filter(|p| p.is_expired(now))
            .cloned()
            .collect()
    }

    /// A copy of this set with `pause` added, replacing any pause of the same scope.
    pub fn with(&self, pause: Pause) -> PauseSet {
        let key = key_of(&pause.scope);
        PauseSet::new(
            self.pauses
                .iter()
                .filter(|p| key_of(&p.scope) != key)
                .cloned()
                .chain(std::iter::once(pause)),
        )
    }

    /// A copy of this set without the pause of `scope`.
    pub fn without(&self, scope: &Scope) -> PauseSet {
        let key = key_of(scope);
        PauseSet::new(
            self.pauses
                .iter()
                .filter(|p| key_of(&p.scope) != key)
                .cloned(),
        )
    }
}

impl FromIterator<Pause> for PauseSet {
    fn from_iter<I: IntoIterator<Item = Pause>>(iter: I) -> Self {
        PauseSet::new(iter)
    }
}

/// RFC 3339 timestamps (`2026-03-01T10:00:00Z`, `2026-03-01T10:00:00.250Z`) for `SystemTime`,
/// with serde helpers (`#[serde(with = "rfc3339")]`, `#[serde(with = "rfc3339::option")]`).
///
/// Formatting is always UTC with `Z` and as many fraction digits as the time needs (none, 3, 6 or
/// 9); parsing also accepts a numeric offset (`+02:00`) and a lower-case `t`/`z` or a space.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A timestamp could not be parsed.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("cannot parse timestamp {input:?}: expected RFC 3339, e.g. 2026-03-01T10:00:00Z")]
    pub struct ParseError {
        input: String,
    }

    /// Formats `t` in UTC, e.g. `2026-03-01T10:00:00Z`.
    pub fn format(t: SystemTime) -> String {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let s = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
                match d.subsec_nanos() {
                    0 => (s, 0),
                    n => (s.saturating_sub(1), 1_000_000_000 - n),
                }
            }
        };
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let frac = if nanos == 0 {
            String::new()
        } else if nanos % 1_000_000 == 0 {
            format!(".{:03}", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!(".{:06}", nanos / 1_000)
        } else {
            format!(".{nanos:09}")
        };
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )
    }

    /// Parses an RFC 3339 timestamp.
    ///
    /// # Errors
    /// Anything that is not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with valid fields.
    pub fn parse(input: &str) -> Result<SystemTime, ParseError> {
        parse_inner(input.trim()).ok_or_else(|| ParseError {
            input: input.to_string(),
        })
    }

    fn parse_inner(s: &str) -> Option<SystemTime> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            part.iter()
                .try_fold(0i64, |acc, c| Some(acc * 10 + i64::from(c - b'0')))
        };
        if b.len() < 20
            || b.get(4) != Some(&b'-')
            || b.get(7) != Some(&b'-')
            || !matches!(b.get(10), Some(b'T' | b't' | b' '))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
        {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
            return None;
        }
        if sec > 59 {
            return None;
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = b.get(start..i)?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            let mut n: u32 = 0;
            for k in 0..9 {
                n = n * 10 + digits.get(k).map_or(0, |c| u32::from(c - b'0'));
            }
            nanos = n;
        }
        let offset = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return None,
        };
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
        let t = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))?
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
                .checked_add(Duration::from_nanos(u64::from(nanos)))?
        };
        Some(t)
    }

    fn is_leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    fn days_in_month(y: i64, m: i64) -> i64 {
        match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date of a day count since 1970-01-01.
    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z.saturating_add(719_468);
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }

    /// Serializes a `SystemTime` as an RFC 3339 string.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    /// Deserializes a `SystemTime` from an RFC 3339 string.
    ///
    /// # Errors
    /// A value that is not a string or not a valid timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    use std::borrow::Cow;

    /// The same for `Option<SystemTime>` (`null` for `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::borrow::Cow;
        use std::time::SystemTime;

        /// Serializes an optional time as an RFC 3339 string or `null`.
        ///
        /// # Errors
        /// Only the serializer's own.
        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::format(*t)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional RFC 3339 string (`null` or missing for `None`).
        ///
        /// # Errors
        /// A value that is neither `null` nor a valid timestamp string.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            match Option::<Cow<'de, str>>::deserialize(d)? {
                Some(s) => super::parse(&s).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_770_000_000 + secs)
    }

    fn pause(scope: Scope, reason: &str, at: u64) -> Pause {
        Pause::new(scope, reason, "ops", t(at))
    }

    fn q<'a>(
        campaign: Option<&'a str>,
        tenant: Option<&'a str>,
        sender: &'a str,
        rcpt: Option<&'a str>,
    ) -> PauseQuery<'a> {
        PauseQuery {
            campaign,
            tenant,
            sender,
            recipient_domain: rcpt,
        }
    }

    #[test]
    fn empty_set_finds_nothing() {
        let set = PauseSet::empty();
        assert!(set.is_empty());
        assert_eq!(
            set.find(&q(Some("c"), Some("t"), "a@b.test", None), t(0)),
            None
        );
    }

    #[test]
    fn matching_rules() {
        let cases: &[(Scope, PauseQuery, bool)] = &[
            (Scope::Global, q(None, None, "", None), true),
            (
                Scope::Campaign("Spring".into()),
                q(Some("Spring"), None, "a@x.test", None),
                true,
            ),
            (
                Scope::Campaign("Spring".into()),
                q(Some("spring"), None, "a@x.test", None),
                false,
            ),
            (
                Scope::Campaign("Spring".into()),
                q(None, None, "a@x.test", None),
                false,
            ),
            (
                Scope::Tenant("acme".into()),
                q(None, Some("acme"), "a@x.test", None),
                true,
            ),
            (
                Scope::Tenant("acme".into()),
                q(None, Some("ACME"), "a@x.test", None),
                false,
            ),
            (
                Scope::Sender("news@x.test".into()),
                q(None, None, "News@X.Test", None),
                true,
            ),
            (
                Scope::Sender("news@x.test".into()),
                q(None, None, "other@x.test", None),
                false,
            ),
            (
                Scope::Sender("@x.test".into()),
                q(None, None, "Anyone@X.TEST", None),
                true,
            ),
            (
                Scope::Sender("@x.test".into()),
                q(None, None, "a@mail.x.test", None),
                false,
            ),
            (
                Scope::Sender("@x.test".into()),
                q(None, None, "", None),
                false,
            ),
            (
                Scope::Domain("gmail.com".into()),
                q(None, None, "a@x.test", Some("GMail.com")),
                true,
            ),
            (
                Scope::Domain("gmail.com".into()),
                q(None, None, "a@x.test", Some("gmail.com.")),
                true,
            ),
            (
                Scope::Domain("gmail.com".into()),
                q(None, None, "a@x.test", Some("m.gmail.com")),
                false,
            ),
            (
                Scope::Domain("gmail.com".into()),
                q(None, None, "a@gmail.com", None),
                false,
            ),
        ];
        for (scope, query, want) in cases {
            let p = pause(scope.clone(), "r", 0);
            assert_eq!(p.matches(query), *want, "{scope} vs {query:?}");
            let set = PauseSet::new([p.clone()]);
            assert_eq!(
                set.find(query, t(1)).is_some(),
                *want,
                "set: {scope} vs {query:?}"
            );
        }
    }

    #[test]
    fn most_specific_wins_then_oldest() {
        let set = PauseSet::new([
            pause(Scope::Global, "global", 1),
            pause(Scope::Tenant("acme".into()), "tenant", 2),
            pause(Scope::Domain("gmail.com".into()), "domain", 3),
            pause(Scope::Sender("@x.test".into()), "sender-domain", 5),
            pause(Scope::Sender("news@x.test".into()), "sender", 4),
            pause(Scope::Campaign("spring".into()), "campaign", 6),
        ]);
        let now = t(100);
        let reason = |query: PauseQuery| set.find(&query, now).map(|p| p.reason.as_str());
        let all = q(
            Some("spring"),
            Some("acme"),
            "news@x.test",
            Some("gmail.com"),
        );
        assert_eq!(reason(all), Some("campaign"));
        assert_eq!(
            reason(PauseQuery {
                campaign: None,
                ..all
            }),
            Some("sender")
        );
        assert_eq!(
            reason(PauseQuery {
                campaign: None,
                sender: "a@x.test",
                ..all
            }),
            Some("sender-domain")
        );
        assert_eq!(
            reason(PauseQuery {
                campaign: None,
                sender: "a@y.test",
                ..all
            }),
            Some("domain")
        );
        assert_eq!(
            reason(q(None, Some("acme"), "a@y.test", Some("web.de"))),
            Some("tenant")
        );
        assert_eq!(reason(q(None, None, "a@y.test", None)), Some("global"));
    }

    #[test]
    fn expired_pauses_are_ignored() {
        let mut narrow = pause(Scope::Campaign("spring".into()), "narrow", 1);
        narrow.expires_at = Some(t(10));
        let set = PauseSet::new([narrow.clone(), pause(Scope::Global, "global", 2)]);
        let query = q(Some("spring"), None, "a@x.test", None);
        assert_eq!(
            set.find(&query, t(9)).map(|p| &p.reason[..]),
            Some("narrow")
        );
        assert_eq!(
            set.find(&query, t(10)).map(|p| &p.reason[..]),
            Some("global")
        );
        assert_eq!(set.expired(t(10)), vec![narrow.clone()]);
        assert!(set.expired(t(9)).is_empty());
        assert!(narrow.is_expired(t(11)));
        assert!(!pause(Scope::Global, "g", 0).is_expired(t(1_000_000)));
    }

    #[test]
    fn copy_on_write_and_lookup() {
        let set = PauseSet::empty().with(pause(Scope::Sender("@X.test".into()), "a", 1));
        assert_eq!(set.len(), 1);
        let set = set.with(pause(Scope::Sender("@x.TEST".into()), "b", 2));
        assert_eq!(set.len(), 1, "same scope in another case replaces");
        assert_eq!(
            set.get(&Scope::Sender("@x.test".into()))
                .map(|p| &p.reason[..]),
            Some("b")
        );
        let set = set.with(pause(Scope::Global, "g", 0));
        let order: Vec<_> = set.iter().map(|p| p.reason.clone()).collect();
        assert_eq!(order, ["g", "b"], "oldest first");
        let smaller = set.without(&Scope::Sender("@x.test".into()));
        assert_eq!(smaller.len(), 1);
        assert_eq!(set.len(), 2, "the original snapshot is untouched");
        assert!(smaller.get(&Scope::Global).is_some());
        assert!(smaller.without(&Scope::Global).is_empty());
        assert!(smaller
            .without(&Scope::Tenant("nope".into()))
            .get(&Scope::Global)
            .is_some());
    }

    #[test]
    fn pause_json_shape_and_round_trip() {
        let mut p = pause(Scope::Campaign("spring".into()), "leak", 0);
        p.created_at = UNIX_EPOCH + Duration::from_millis(1_772_359_200_250);
        p.expires_at = Some(UNIX_EPOCH + Duration::from_secs(1_772_366_400));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "scope": "campaign", "id": "spring", "reason": "leak", "actor": "ops",
                "created_at": "2026-03-01T10:00:00.250Z", "expires_at": "2026-03-01T12:00:00Z"
            })
        );
        let back: Pause = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let g = pause(Scope::Global, "all", 0);
        let json = serde_json::to_string(&g).unwrap();
        assert!(
            json.starts_with(r#"{"scope":"global","reason":"all""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Pause>(&json).unwrap(), g);
    }

    #[test]
    fn rfc3339_table() {
        use rfc3339::{format, parse};
        let at = |s: u64, n: u32| UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(format(at(951_782_400, 0)), "2000-02-29T00:00:00Z");
        assert_eq!(
            format(at(1_772_359_200, 1_000)),
            "2026-03-01T10:00:00.000001Z"
        );
        assert_eq!(
            format(at(1_772_359_200, 7)),
            "2026-03-01T10:00:00.000000007Z"
        );
        assert_eq!(
            format(UNIX_EPOCH - Duration::from_millis(500)),
            "1969-12-31T23:59:59.500Z"
        );
        assert_eq!(
            parse("2026-03-01T12:00:00+02:00").unwrap(),
            at(1_772_359_200, 0)
        );
        assert_eq!(
            parse("2026-03-01 10:00:00.5z").unwrap(),
            at(1_772_359_200, 500_000_000)
        );
        assert_eq!(
            parse("1969-12-31T23:59:59.500Z").unwrap(),
            UNIX_EPOCH - Duration::from_millis(500)
        );
        for bad in [
            "",
            "2026-03-01",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:00:00",
            "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00.1234567890Z",
            "2026-03-01T10:00:00+2:00",
            "x026-03-01T10:00:00Z",
            "2026-03-01T10:00:00Zjunk",
            "2026-03-01T10:00:60Z",
            "٢٠٢٦-03-01T10:00:00Z",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot parse timestamp {bad:?}: expected RFC 3339, e.g. 2026-03-01T10:00:00Z"
                )
            );
        }
    }

    #[test]
    fn queries_from_envelopes() {
        let mut env = Envelope::new("news@x.test")
            .with_recipient("a@gmail.com")
            .with_campaign("spring");
        env.auth_user = Some("acme".into());
        let q = PauseQuery::for_envelope(&env);
        assert_eq!(
            q,
            PauseQuery {
                campaign: Some("spring"),
                tenant: Some("acme"),
                sender: "news@x.test",
                recipient_domain: None
            }
        );
        let r = q.with_recipient_domain("gmail.com");
        assert!(r.covered_by(&Scope::Domain("gmail.com".into())));
        assert!(!q.covered_by(&Scope::Domain("gmail.com".into())));
        let p = pause(Scope::Global, "g", 0).expiring_after(Duration::from_secs(7200));
        assert_eq!(p.expires_at, Some(t(7200)));
    }

    fn arb_scope() -> impl proptest::strategy::Strategy<Value = Scope> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Scope::Global),
            "[ab]".prop_map(Scope::Tenant),
            "[aB]".prop_map(Scope::Campaign),
            "[ab]@[xY]\\.test".prop_map(Scope::Sender),
            "@[xY]\\.test".prop_map(Scope::Sender),
            "[xY]\\.test".prop_map(Scope::Domain),
        ]
    }

    proptest::proptest! {
        /// `find` agrees with a plain scan: the matching, unexpired pause of the highest rank,
        /// the oldest among equal ranks.
        #[test]
        fn find_agrees_with_a_scan(
            specs in proptest::collection::vec((arb_scope(), proptest::option::of(0u64..20)), 0..12),
            campaign in proptest::option::of("[aB]"),
            tenant in proptest::option::of("[ab]"),
            sender in "[ab]@[xXyY]\\.test",
            rcpt in proptest::option::of("[xXyY]\\.test"),
            now in 0u64..20,
        ) {
            // Distinct creation times, so "oldest" is never a tie.
            let pauses: Vec<Pause> = specs.into_iter().enumerate().map(|(i, (scope, ttl))| {
                let mut p = pause(scope, &format!("p{i}"), 100 - i as u64);
                p.expires_at = ttl.map(t);
                p
            }).collect();
            let set = PauseSet::new(pauses);
            let query = q(campaign.as_deref(), tenant.as_deref(), &sender, rcpt.as_deref());
            let scan = set
                .iter()
                .filter(|p| p.matches(&query) && !p.is_expired(t(now)))
                .max_by(|a, b| a.scope.rank().cmp(&b.scope.rank()).then(b.created_at.cmp(&a.created_at)));
            proptest::prop_assert_eq!(set.find(&query, t(now)), scan);
        }

        #[test]
        fn rfc3339_round_trips(secs in -5_000_000_000i64..250_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = if secs >= 0 {
                UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(nanos))
            };
            let s = rfc3339::format(t);
            proptest::prop_assert_eq!(rfc3339::parse(&s).ok(), Some(t), "{}", s);
        }

        #[test]
        fn rfc3339_parse_never_panics(s in "\\PC{0,40}") {
            let _ = rfc3339::parse(&s);
        }
    }
}
