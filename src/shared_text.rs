//! Large texts decoded once per thread and shared, each named by a 128-bit hash.
//!
//! Through a send API a campaign posts the same template body in request after request. The HTTP
//! dialects decode such a body once per worker thread and share it, keyed by the hash of its
//! encoded form ([`get_or_decode`]). The findings cache then needs a name for the decoded text;
//! hashing 10–100 KB again for it would cost as much as the first hash, so it asks
//! [`key_of`] instead, which knows every text this thread's memo holds by its address.
//!
//! An address names one text only while that text is alive: the memo holds every text it
//! indexes, and forgets the address when it lets the text go.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The memo's keys are hashes and addresses already: a fast hasher is enough.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Decoded bytes a thread keeps before it starts over: dozens of templates, and a bound per
/// thread that parses requests (the proxy's workers, or an embedder's runtime threads).
const MEMO_BYTES: usize = 4 * 1024 * 1024;

/// The text named `key`, from this thread's memo or from `decode` (then kept).
pub(crate) fn get_or_decode<E>(
    key: u128,
    decode: impl FnOnce() -> Result<String, E>,
) -> Result<Arc<str>, E> {
    if let Some(hit) = MEMO.with(|m| m.borrow().texts.get(&key).cloned()) {
        return Ok(hit);
    }
    let decoded: Arc<str> = decode()?.into();
    MEMO.with(|m| m.borrow_mut().insert(key, decoded.clone()));
    Ok(decoded)
}

/// The key of `text` when it is (the whole of) a text this thread's memo holds.
pub(crate) fn key_of(text: &str) -> Option<u128> {
    MEMO.with(|m| {
        let m = m.borrow();
        match m.by_address.get(&(text.as_ptr() as usize)) {
            Some(&(len, key)) if len == text.len() => Some(key),
            _ => None,
        }
    })
}

#[derive(Default)]
struct Memo {
    texts: Map<u128, Arc<str>>,
    /// Address of each text in `texts` → its length and key.
    by_address: Map<usize, (usize, u128)>,
    bytes: usize,
}

impl Memo {
    fn insert(&mut self, key: u128, text: Arc<str>) {
        if self.bytes + text.len() > MEMO_BYTES {
            self.texts.clear();
            self.by_address.clear();
            self.bytes = 0;
        }
        self.bytes += text.len();
        self.by_address
            .insert(text.as_ptr() as usize, (text.len(), key));
        if let Some(old) = self.texts.insert(key, text) {
            self.bytes -= old.len();
            self.by_address.remove(&(old.as_ptr() as usize));
        }
    }
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_decoded_once_and_known_by_its_address() {
        let mut decodes = 0;
        let mut get = || {
            get_or_decode(7, || {
                decodes += 1;
                Ok::<_, ()>("x".repeat(2000))
            })
            .unwrap()
        };
        let a = get();
        let b = get();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(decodes, 1);
        assert_eq!(key_of(&a), Some(7));
        // A part of it, or an equal text elsewhere, is not that text.
        assert_eq!(key_of(&a[..1000]), None);
        assert_eq!(key_of(&a[1..]), None);
        assert_eq!(key_of(&"x".repeat(2000)), None);
        // A failed decode keeps nothing.
        assert_eq!(get_or_decode(8, || Err::<String, _>("bad")), Err("bad"));
        assert_eq!(
            get_or_decode(8, || Ok::<_, ()>("y".into())).as_deref(),
            Ok("y")
        );
    }

    #[test]
    fn the_memo_stays_bounded_and_forgets_the_addresses_of_what_it_lets_go() {
        let mut m = Memo::default();
        let big = 1024 * 1024;
        for i in 0..100u128 {
            // Texts the memo let go are freed, and their addresses may come back.
            m.insert(i, Arc::from("x".repeat(big)));
            assert!(m.bytes <= MEMO_BYTES);
            assert_eq!(m.bytes, m.texts.values().map(|v| v.len()).sum::<usize>());
            assert_eq!(m.by_address.len(), m.texts.len());
            for (addr, (len, key)) in &m.by_address {
                let t = &m.texts[key];
                assert_eq!((t.as_ptr() as usize, t.len()), (*addr, *len));
            }
        }
        // Replacing a key's text drops the old address.
        m.insert(99, Arc::from("new"));
        assert_eq!(m.by_address.len(), m.texts.len());
    }
}
