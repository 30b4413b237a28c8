//! Entries added and removed at run time (through the admin API), over the loaded lists.

use super::{
    md5_of, sha256_of, with_candidates, Candidates, Entry, SuppressionIndex, SuppressionMatch,
    ADMIN_LIST,
};
use crate::model::{domain_of, normalize_address};
use std::collections::HashSet;
use std::sync::Arc;

type Set<T> = HashSet<T, foldhash::fast::RandomState>;

/// An immutable set of entries added at run time, and of addresses removed at run time.
///
/// Added entries match like list entries (named `admin` in matches). A removed address is an
/// exception: it is not suppressed even when a list holds it, its domain or its hash (with plus
/// normalisation, removing `anna@x.test` also lifts `anna+news@x.test`). An address both added and
/// removed counts as removed. The durable copy lives in the state store; build a new overlay and
/// swap it in on each change.
#[derive(Debug, Clone)]
pub struct Overlay {
    addresses: Set<Box<str>>,
    domains: Set<Box<str>>,
    md5: Set<[u8; 16]>,
    sha256: Set<[u8; 32]>,
    removed: Set<Box<str>>,
    list: Arc<str>,
}

impl Default for Overlay {
    fn default() -> Self {
        Overlay::empty()
    }
}

impl Overlay {
    /// An overlay that adds and removes nothing.
    pub fn empty() -> Self {
        Overlay {
            addresses: Set::default(),
            domains: Set::default(),
            md5: Set::default(),
            sha256: Set::default(),
            removed: Set::default(),
            list: ADMIN_LIST.into(),
        }
    }

    /// An overlay of `added` entries and `removed` addresses (normalised here).
    pub fn new(added: &[Entry], removed: &[String]) -> Self {
        let mut o = Overlay::empty();
        for entry in added {
            match entry {
                Entry::Address(a) => {
                    o.addresses.insert(normalize_address(a).into());
                }
                Entry::Domain(d) => {
                    let d = d.trim().trim_start_matches('@').to_lowercase();
                    o.domains.insert(d.into());
                }
                Entry::Md5(h) => {
                    o.md5.insert(*h);
                }
                Entry::Sha256(h) => {
                    o.sha256.insert(*h);
                }
            }
        }
        o.removed = removed
            .iter()
            .map(|a| normalize_address(a).into())
            .collect();
        o
    }

    /// Whether the overlay neither adds nor removes anything.
    pub fn is_empty(&self) -> bool {
        self.added_len() == 0 && self.removed.is_empty()
    }

    /// The number of added entries.
    pub fn added_len(&self) -> usize {
        self.addresses.len() + self.domains.len() + self.md5.len() + self.sha256.len()
    }

    /// The number of removed addresses.
    pub fn removed_len(&self) -> usize {
        self.removed.len()
    }

    /// Whether an added entry matches `address` (removals are not considered here; see [`check`]).
    pub fn lookup(&self, address: &str, normalize_plus: bool) -> Option<SuppressionMatch> {
        if self.added_len() == 0 {
            return None;
        }
        with_candidates(address, normalize_plus, |c| self.lookup_candidates(c))
    }

    /// Whether `address` was removed (is an exception to every list).
    pub fn is_removed(&self, address: &str, normalize_plus: bool) -> bool {
        !self.removed.is_empty()
            && with_candidates(address, normalize_plus, |c| self.removed_candidates(c))
    }

    fn removed_candidates(&self, c: &Candidates<'_>) -> bool {
        c.iter().any(|a| self.removed.contains(a))
    }

    fn lookup_candidates(&self, c: &Candidates<'_>) -> Option<SuppressionMatch> {
        let hit = |entry: String| SuppressionMatch {
            entry,
            list: self.list.clone(),
        };
        if let Some(a) = c.iter().find(|a| self.addresses.contains(*a)) {
            return Some(hit(a.to_string()));
        }
        let domain = domain_of(c.exact);
        if self.domains.contains(domain) {
            return Some(hit(format!("@{domain}")));
        }
        if !self.md5.is_empty() {
            for a in c.iter() {
                let digest = md5_of(a);
                if self.md5.contains(&digest) {
                    return Some(hit(format!("md5:{}", hex::encode(digest))));
                }
            }
        }
        if !self.sha256.is_empty() {
            for a in c.iter() {
                let digest = sha256_of(a);
                if self.sha256.contains(&digest) {
                    return Some(hit(format!("sha256:{}", hex::encode(digest))));
                }
            }
        }
        None
    }
}

/// Whether `address` is suppressed by the loaded lists or the run-time overlay.
///
/// A removed address is never suppressed; otherwise the index is consulted, then the added
/// entries. Plus normalisation follows the policy the index was built from.
pub fn check(
    index: &SuppressionIndex,
    overlay: &Overlay,
    address: &str,
) -> Option<SuppressionMatch> {
    if overlay.is_empty() {
        return index.lookup(address);
    }
    with_candidates(address, index.normalize_plus(), |c| {
        if overlay.removed_candidates(c) {
            return None;
        }
        index
            .lookup_candidates(c)
            .or_else(|| overlay.lookup_candidates(c))
    })
}
