//! A compact, immutable set of 64-bit fingerprints with the list each came from.
//!
//! The layout is an ordered linear-probing table: a key's home slot is its position scaled to the
//! table, `key * slots / 2^64`, and the keys are stored in ascending order, each at its home slot
//! or, when that is taken, at the next free slot after it; the rest of the slots hold `0`. With
//! the table 85 % full a key sits on average about three slots past its home. A lookup computes
//! the home slot and reads forward until it finds the key, a larger key or an empty slot: one
//! random memory access (one or two neighbouring cache lines), with no index to consult first.
//! It costs 8 / 0.85 ≈ 9.4 bytes per key, plus 2.4 for the list ids when several lists are
//! merged.
//!
//! Fingerprint `0` marks an empty slot, so a key `0` is stored as `1` (one more collision pair
//! among 2^64 values).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Keys per 100 slots.
const LOAD_PERCENT: usize = 85;

/// The set would need more slots than memory can address.
#[derive(Debug)]
pub(crate) struct TooManyKeys(pub(crate) usize);

/// Fingerprints in an ordered linear-probing table, with the id of the list each came from.
#[derive(Clone, Default)]
pub(crate) struct FingerprintSet {
    /// The table; `0` is an empty slot. One more empty slot than needed ends every scan.
    slots: Vec<u64>,
    /// The list id of each slot, parallel to `slots`; empty when every key came from `sole_list`.
    lists: Vec<u16>,
    sole_list: u16,
    /// The number of home slots (the table may run a little past them).
    homes: usize,
    len: usize,
}

/// The key as stored: `0` is taken by empty slots.
#[inline]
fn stored(key: u64) -> u64 {
    key.max(1)
}

/// The home slot of `key` among `homes` slots: its place in the key space, scaled.
#[inline]
fn home(key: u64, homes: usize) -> usize {
    ((u128::from(key) * homes as u128) >> 64) as usize
}

/// Asks the kernel to back a large table with transparent huge pages before it is touched.
///
/// A lookup is one random read into a table of ~100 MB; with 4 KiB pages nearly every such read
/// also misses the TLB and walks the page tables, which costs as much again as the read itself.
/// With 2 MiB pages the walk mostly hits. Only advice: where the kernel has THP off, or the
/// table is small, nothing changes.
fn advise_huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * size_of::<T>();
    if bytes < 4 * HUGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = v.as_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if end > aligned {
            // SAFETY: madvise only changes paging advice for pages of an allocation this
            // function's caller owns and has not handed out; the range lies inside it.
            // MADV_HUGEPAGE does not change the contents or the validity of the memory.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
}

impl FingerprintSet {
    /// Lays out sorted, distinct, non-zero keys (and their list ids, when `lists` is not empty).
    fn from_sorted(keys: &[u64], lists: &[u16], sole_list: u16) -> Result<Self, TooManyKeys> {
        let n = keys.len();
        if n == 0 {
            return Ok(FingerprintSet::default());
        }
        let homes = n
            .checked_mul(100)
            .map(|x| x / LOAD_PERCENT + 1)
            .ok_or(TooManyKeys(n))?;
        let reserve = homes + homes / 64 + 16;
        let mut slots: Vec<u64> = Vec::with_capacity(reserve);
        advise_huge_pages(&slots);
        let mut ids: Vec<u16> = Vec::with_capacity(if lists.is_empty() { 0 } else { reserve });
        advise_huge_pages(&ids);
        for (i, &key) in keys.iter().enumerate() {
            let at = home(key, homes).max(slots.len());
            slots.resize(at, 0);
            slots.push(key);
            if !lists.is_empty() {
                ids.resize(at, 0);
                ids.push(lists.get(i).copied().unwrap_or(sole_list));
            }
        }
        // Every home slot exists, and an empty slot ends the table.
        slots.resize(slots.len().max(homes) + 1, 0);
        if !lists.is_empty() {
            ids.resize(slots.len(), 0);
        }
        // Both tables keep their capacity (at most 1/64 more than needed): shrinking would move
        // them and could lose their huge pages.
        Ok(FingerprintSet {
            slots,
            lists: ids,
            sole_list,
            homes,
            len: n,
        })
    }

    /// The list id a key came from, when the set holds it.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<u16> {
        let key = stored(key);
        let mut i = home(key, self.homes);
        if !self.lists.is_empty() {
            // Start loading the list ids at the home slot while the keys load: the id of a key
            // that is found is almost always in the same cache line, and the two misses overlap.
            std::hint::black_box(self.lists.get(i).copied());
        }
        loop {
            let k = *self.slots.get(i)?;
            if k == key {
                break;
            }
            if k == 0 || k > key {
                return None;
            }
            i += 1;
        }
        if self.lists.is_empty() {
            Some(self.sole_list)
        } else {
            self.lists.get(i).copied()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<u64>() + self.lists.capacity() * size_of::<u16>()
    }
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
        for k in &mut keys {
            *k = stored(*k);
        }
        keys.sort_unstable();
        keys.dedup();
        self.per_list.push((list, keys));
    }

    pub(crate) fn finish(mut self) -> Result<FingerprintSet, TooManyKeys> {
        match self.per_list.len() {
            0 => Ok(FingerprintSet::default()),
            1 => {
                let (list, keys) = self.per_list.remove(0);
                FingerprintSet::from_sorted(&keys, &[], list)
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
                FingerprintSet::from_sorted(&keys, &lists, 0)
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
        let keys: Vec<u64> = (1..3000u64).map(|i| i * 7).chain([u64::MAX - 1]).collect();
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
