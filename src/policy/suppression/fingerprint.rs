//! A compact, immutable set of 64-bit fingerprints with the list each came from.
//!
//! The keys are kept sorted in one `Vec<u64>`. A small table of `2^bits + 1` offsets, indexed by
//! the top `bits` bits of a key, says where the keys with that prefix start (about 128 of them).
//! The table is a few hundred kilobytes at ten million keys, small enough to stay in cache.
//! Fingerprints are uniformly distributed, so within a bucket the position of a key is guessed
//! from its remaining bits (interpolation) and is usually within a few slots of the guess: a
//! lookup reads one or two neighbouring cache lines of the key vector instead of the ~24 scattered
//! ones of a binary search over the whole vector.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Keys per bucket aimed at: `bits` is chosen so that there are 128 to 256 keys per bucket.
const KEYS_PER_BUCKET_LOG2: u32 = 7;
/// The offset table never grows beyond `2^MAX_BITS` entries (64 MiB, at 2^31 keys).
const MAX_BITS: u32 = 24;

/// The set held more keys than the `u32` offsets can address.
#[derive(Debug)]
pub(crate) struct TooManyKeys(pub(crate) usize);

/// Sorted fingerprints with the id of the list each came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct FingerprintSet {
    keys: Vec<u64>,
    /// The list id of each key, parallel to `keys`; empty when every key came from `sole_list`.
    lists: Vec<u16>,
    sole_list: u16,
    /// `offsets[b]..offsets[b + 1]` are the keys whose top `bits` bits are `b`.
    offsets: Vec<u32>,
    bits: u32,
}

impl FingerprintSet {
    fn from_sorted(keys: Vec<u64>, lists: Vec<u16>, sole_list: u16) -> Result<Self, TooManyKeys> {
        let n = u32::try_from(keys.len()).map_err(|_| TooManyKeys(keys.len()))?;
        if n == 0 {
            return Ok(FingerprintSet::default());
        }
        let bits = n.ilog2().saturating_sub(KEYS_PER_BUCKET_LOG2).min(MAX_BITS);
        let buckets = 1usize << bits;
        let mut offsets = Vec::with_capacity(buckets + 1);
        offsets.push(0u32);
        let mut next = 0usize;
        for (i, &key) in keys.iter().enumerate() {
            let b = bucket(key, bits);
            while next < b {
                // `i` fits in u32: it is below `n`.
                offsets.push(i as u32);
                next += 1;
            }
        }
        while offsets.len() < buckets + 1 {
            offsets.push(n);
        }
        Ok(FingerprintSet {
            keys,
            lists,
            sole_list,
            offsets,
            bits,
        })
    }

    /// The list id a key came from, when the set holds it.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<u16> {
        let b = bucket(key, self.bits);
        let lo = *self.offsets.get(b)? as usize;
        let hi = *self.offsets.get(b + 1)? as usize;
        let keys = self.keys.get(lo..hi)?;
        let guess = guess(keys.len(), key, self.bits);
        if !self.lists.is_empty() {
            // Start loading the list ids near the guess while the keys load: the id of a key that
            // is found is almost always in the same cache line, and the two misses overlap.
            std::hint::black_box(self.lists.get(lo + guess));
        }
        let i = lo + search(keys, key, guess)?;
        if self.lists.is_empty() {
            Some(self.sole_list)
        } else {
            self.lists.get(i).copied()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.capacity() * size_of::<u64>()
            + self.lists.capacity() * size_of::<u16>()
            + self.offsets.capacity() * size_of::<u32>()
    }
}

/// Where `key` should be among the `n` keys of its bucket, judging by its bits below the
/// bucket's `bits` (fingerprints are uniformly distributed).
#[inline]
fn guess(n: usize, key: u64, bits: u32) -> usize {
    // The key's position within its bucket, as a fraction of 2^64.
    let fraction = key.checked_shl(bits).unwrap_or(0);
    ((u128::from(fraction) * n as u128) >> 64) as usize
}

/// Finds `key` in the sorted `keys` of one bucket, walking from the guessed position.
#[inline]
fn search(keys: &[u64], key: u64, guess: usize) -> Option<usize> {
    let mut i = guess;
    let mut k = *keys.get(i)?;
    if k < key {
        while k < key {
            i += 1;
            k = *keys.get(i)?;
        }
    } else {
        while k > key {
            i = i.checked_sub(1)?;
            k = *keys.get(i)?;
        }
    }
    (k == key).then_some(i)
}

#[inline]
fn bucket(key: u64, bits: u32) -> usize {
    // `checked_shr` is `None` for a shift of 64 (`bits == 0`): one bucket.
    key.checked_shr(64 - bits).unwrap_or(0) as usize
}

/// Collects the keys of each list, then merges them into one [`FingerprintSet`].
#[derive(Debug, Default)]
pub(crate) struct SetBuilder {
    per_list: Vec<(u16, Vec<u64>)>,
}

impl SetBuilder {
    /// Adds the keys of one list; lists added earlier win when a key is in several.
    pub(crate) fn add_list(&mut self, list: u16, mut keys: Vec<u64>) {
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        keys.dedup();
        self.per_list.push((list, keys));
    }

    pub(crate) fn finish(mut self) -> Result<FingerprintSet, TooManyKeys> {
        match self.per_list.len() {
            0 => Ok(FingerprintSet::default()),
            1 => {
                let (list, mut keys) = self.per_list.remove(0);
                keys.shrink_to_fit();
                FingerprintSet::from_sorted(keys, Vec::new(), list)
            }
            _ => {
                let total: usize = self.per_list.iter().map(|(_, k)| k.len()).sum();
                let mut keys = Vec::with_capacity(total);
                let mut lists = Vec::with_capacity(total);
                // A k-way merge; on equal keys the heap yields the lowest list id first.
                let mut heap: BinaryHeap<Reverse<(u64, u16, usize)>> = self
                    .per_list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (list, k))| k.first().map(|&key| Reverse((key, *list, i))))
                    .collect();
                let mut pos = vec![0usize; self.per_list.len()];
                while let Some(Reverse((key, list, i))) = heap.pop() {
                    if keys.last() != Some(&key) {
                        keys.push(key);
                        lists.push(list);
                    }
                    let (Some(p), Some((_, k))) = (pos.get_mut(i), self.per_list.get(i)) else {
                        continue;
                    };
                    *p += 1;
                    if let Some(&next) = k.get(*p) {
                        heap.push(Reverse((next, list, i)));
                    }
                }
                drop(self.per_list);
                keys.shrink_to_fit();
                lists.shrink_to_fit();
                FingerprintSet::from_sorted(keys, lists, 0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn finds_every_key_and_no_other() {
        for n in [0usize, 1, 2, 7, 8, 9, 100, 5000] {
            let mut s = n as u64;
            let keys: Vec<u64> = (0..n).map(|_| splitmix(&mut s)).collect();
            let mut b = SetBuilder::default();
            b.add_list(3, keys.clone());
            let set = b.finish().ok().unwrap_or_default();
            assert_eq!(set.len(), n);
            for &k in &keys {
                assert_eq!(set.get(k), Some(3), "n={n}");
            }
            for _ in 0..1000 {
                let k = splitmix(&mut s);
                assert_eq!(set.get(k), keys.contains(&k).then_some(3));
            }
        }
    }

    #[test]
    fn skewed_keys_are_still_found() {
        // Not what fingerprints look like, but the walk from the guess must still find them.
        let keys: Vec<u64> = (0..3000u64).map(|i| i * 7).chain([u64::MAX - 1]).collect();
        let mut b = SetBuilder::default();
        b.add_list(1, keys.clone());
        let set = b.finish().ok().unwrap_or_default();
        for &k in &keys {
            assert_eq!(set.get(k), Some(1));
            assert_eq!(set.get(k + 1), None);
        }
        assert_eq!(set.get(u64::MAX), None);
    }

    #[test]
    fn extreme_keys() {
        let mut b = SetBuilder::default();
        b.add_list(0, vec![0, u64::MAX, 1 << 63, (1 << 63) - 1, 5, 5, 5]);
        let set = b.finish().ok().unwrap_or_default();
        assert_eq!(set.len(), 5);
        for k in [0, u64::MAX, 1 << 63, (1 << 63) - 1, 5] {
            assert_eq!(set.get(k), Some(0));
        }
        assert_eq!(set.get(6), None);
        assert_eq!(FingerprintSet::default().get(0), None);
    }

    #[test]
    fn merges_lists_keeping_the_first() {
        let mut b = SetBuilder::default();
        b.add_list(0, vec![10, 30, 50]);
        b.add_list(1, vec![]);
        b.add_list(2, vec![50, 20, 10, 60]);
        b.add_list(3, vec![60, 70]);
        let set = b.finish().ok().unwrap_or_default();
        assert_eq!(set.len(), 6);
        let got: Vec<_> = [10, 20, 30, 50, 60, 70, 40].map(|k| set.get(k)).to_vec();
        assert_eq!(
            got,
            [Some(0), Some(2), Some(0), Some(0), Some(2), Some(3), None]
        );
    }
}
