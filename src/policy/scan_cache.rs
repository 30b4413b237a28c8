//! Remembers the findings of large bodies already scanned under the current policies.
//!
//! Through an email service's send API a campaign sends the same template body in request after
//! request — the service personalises it, not the sender — so the same 10–100 KB of HTML is
//! scanned again and again. The cache keys a body by its 128-bit xxh3 hash (and where it was
//! found), so a repeat costs one hash instead of a scan; a body the HTTP front-end decoded and
//! shares is already named by the hash of its encoded form ([`crate::shared_text::key_of`]), and
//! then costs no hash at all. It lives in a policy snapshot, so a reload starts it empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::Finding;

/// Bodies shorter than this are scanned every time: hashing would save little.
const MIN_LEN: usize = 1024;
/// Entries per shard before the shard is emptied (a bounded, cheap eviction).
const SHARD_CAP: usize = 256;
const SHARDS: usize = 16;

/// Findings by body hash. The keys are 128-bit hashes already: a fast hasher is enough.
type Shard = HashMap<u128, Arc<[Finding]>, foldhash::fast::RandomState>;

/// A small sharded map from body hash to findings.
pub(crate) struct ScanCache {
    shards: Vec<Mutex<Shard>>,
}

impl std::fmt::Debug for ScanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanCache").finish_non_exhaustive()
    }
}

impl Default for ScanCache {
    fn default() -> Self {
        ScanCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl ScanCache {
    /// The findings for `text` scanned as `kind` (a distinct number per location), from the
    /// cache or from `scan`.
    pub(crate) fn get_or_scan(
        &self,
        kind: u64,
        text: &str,
        scan: impl FnOnce() -> Vec<Finding>,
    ) -> Vec<Finding> {
        if text.len() < MIN_LEN {
            return scan();
        }
        let key = match crate::shared_text::key_of(text) {
            // Keys of shared texts and hashes of text bodies are both 128-bit hashes; hashing the
            // known key with a seed of its own keeps the two apart.
            Some(known) => xxhash_rust::xxh3::xxh3_128_with_seed(&known.to_le_bytes(), !kind),
            None => xxhash_rust::xxh3::xxh3_128_with_seed(text.as_bytes(), kind),
        };
        let shard = &self.shards[(key as usize) % SHARDS];
        if let Some(hit) = shard.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return hit.to_vec();
        }
        let found = scan();
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SHARD_CAP {
            map.clear();
        }
        map.insert(key, found.clone().into());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Location, Severity};

    fn finding(token: &str) -> Finding {
        Finding {
            rule: "placeholder.mustache".into(),
            location: Location::Html,
            token: token.into(),
            detail: String::new(),
            severity: Severity::High,
            action: Action::Reject,
        }
    }

    #[test]
    fn repeats_are_answered_from_the_cache() {
        let c = ScanCache::default();
        let body = "x".repeat(2000);
        let mut scans = 0;
        for _ in 0..3 {
            let f = c.get_or_scan(1, &body, || {
                scans += 1;
                vec![finding("{{a}}")]
            });
            assert_eq!(f, vec![finding("{{a}}")]);
        }
        assert_eq!(scans, 1);
        // Another location is another key; short bodies are never cached.
        c.get_or_scan(2, &body, || {
            scans += 1;
            Vec::new()
        });
        assert_eq!(scans, 2);
        for _ in 0..2 {
            c.get_or_scan(1, "short", || {
                scans += 1;
                Vec::new()
            });
        }
        assert_eq!(scans, 4);
    }

    #[test]
    fn shared_texts_are_cached_under_their_known_key() {
        let c = ScanCache::default();
        let leak = crate::shared_text::get_or_decode(0x5ca9, || {
            Ok::<_, ()>(format!("{{{{a}}}}{}", "x".repeat(2000)))
        })
        .unwrap();
        let clean =
            crate::shared_text::get_or_decode(0x5caa, || Ok::<_, ()>("y".repeat(2000))).unwrap();
        let scans = std::cell::Cell::new(0);
        let scan = |t: &str| {
            c.get_or_scan(2, t, || {
                scans.set(scans.get() + 1);
                if t.contains("{{a}}") {
                    vec![finding("{{a}}")]
                } else {
                    Vec::new()
                }
            })
        };
        for _ in 0..3 {
            assert_eq!(scan(&leak), vec![finding("{{a}}")]);
            assert_eq!(scan(&clean), Vec::new());
        }
        assert_eq!(scans.get(), 2);
        // The same text elsewhere is named by its own hash and scanned once more.
        let copy = leak.to_string();
        assert_eq!(scan(&copy), vec![finding("{{a}}")]);
        assert_eq!(scan(&copy), vec![finding("{{a}}")]);
        assert_eq!(scans.get(), 3);
    }

    #[test]
    fn stays_bounded() {
        let c = ScanCache::default();
        for i in 0..(SHARDS * SHARD_CAP * 3) {
            let body = format!("{i:>2000}");
            c.get_or_scan(1, &body, Vec::new);
        }
        for s in &c.shards {
            assert!(s.lock().unwrap().len() <= SHARD_CAP);
        }
    }
}
