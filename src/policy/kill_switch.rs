//! Interim kill-switch model (replaced by the full implementation).
#![allow(missing_docs)]
use crate::model::{domain_of, Scope};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub scope: Scope,
    pub reason: String,
    pub actor: String,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
}

impl Pause {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
    pub fn matches(&self, q: &PauseQuery) -> bool {
        match &self.scope {
            Scope::Global => true,
            Scope::Campaign(c) => q.campaign == Some(c.as_str()),
            Scope::Tenant(t) => q.tenant == Some(t.as_str()),
            Scope::Sender(s) if s.starts_with('@') => {
                domain_of(q.sender).eq_ignore_ascii_case(&s[1..])
            }
            Scope::Sender(s) => q.sender.eq_ignore_ascii_case(s),
            Scope::Domain(d) => q
                .recipient_domain
                .is_some_and(|r| r.eq_ignore_ascii_case(d)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PauseQuery<'a> {
    pub campaign: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub sender: &'a str,
    pub recipient_domain: Option<&'a str>,
}

#[derive(Debug, Clone, Default)]
pub struct PauseSet {
    pauses: Vec<Pause>,
}

impl PauseSet {
    pub fn new(pauses: impl IntoIterator<Item = Pause>) -> Self {
        PauseSet {
            pauses: pauses.into_iter().collect(),
        }
    }
    pub fn empty() -> Self {
        PauseSet::default()
    }
    pub fn find(&self, q: &PauseQuery, now: SystemTime) -> Option<&Pause> {
        self.pauses
            .iter()
            .filter(|p| !p.is_expired(now) && p.matches(q))
            .max_by_key(|p| p.scope.rank())
    }
    pub fn get(&self, scope: &Scope) -> Option<&Pause> {
        self.pauses.iter().find(|p| &p.scope == scope)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Pause> {
        self.pauses.iter()
    }
    pub fn len(&self) -> usize {
        self.pauses.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pauses.is_empty()
    }
    pub fn expired(&self, now: SystemTime) -> Vec<Pause> {
        self.pauses
            .iter()
            .filter(|p| p.is_expired(now))
            .cloned()
            .collect()
    }
    pub fn with(&self, pause: Pause) -> PauseSet {
        let mut v: Vec<Pause> = self
            .pauses
            .iter()
            .filter(|p| p.scope != pause.scope)
            .cloned()
            .collect();
        v.push(pause);
        PauseSet { pauses: v }
    }
    pub fn without(&self, scope: &Scope) -> PauseSet {
        PauseSet {
            pauses: self
                .pauses
                .iter()
                .filter(|p| &p.scope != scope)
                .cloned()
                .collect(),
        }
    }
}
