//! `KeyTable`: the hash table of the map-side combiner.
//!
//! A word count spends most of its time looking words up, and on real text
//! the lookups miss the cache: a `(Word, u64)` bucket is 24 bytes, and a
//! table of the ~55 000 distinct words of Shakespeare fills most of a
//! core's L2 cache while the text streams through it. So short text keys —
//! a [`Word`] or `String` of at most 7 bytes, most words of any language's
//! running text — are packed into one `u64` (the bytes, and the length in
//! the top byte) and kept in a table of their own, whose buckets are 16
//! bytes with a `u64` accumulator and whose keys compare in one instruction.
//! Other keys, and longer text keys, go to an ordinary hash table. Keys
//! come out as the type they went in.

use std::any::{Any, TypeId};
use std::hash::Hash;

use hashbrown::hash_map::{Entry, HashMap, RawEntryMut};
use rustc_hash::FxBuildHasher;

use crate::text::Word;

/// Longest text key kept packed.
const PACKED: usize = 7;

/// Keys to accumulators, short text keys packed (see the module docs).
pub struct KeyTable<K, A> {
    packed: HashMap<u64, A, FxBuildHasher>,
    other: HashMap<K, A, FxBuildHasher>,
}

impl<K, A> Default for KeyTable<K, A> {
    fn default() -> Self {
        Self {
            packed: HashMap::with_hasher(FxBuildHasher),
            other: HashMap::with_hasher(FxBuildHasher),
        }
    }
}

/// `bytes` as a packed key, when short enough: little-endian bytes, the
/// length in the top byte (so keys holding zero bytes stay distinct).
#[inline(always)]
fn pack_bytes(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > PACKED {
        return None;
    }
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    b[7] = bytes.len() as u8;
    Some(u64::from_le_bytes(b))
}

/// The packed form of `k`, if its type packs and it is short.
#[inline(always)]
fn pack<K: 'static>(k: &K) -> Option<u64> {
    // Decided per key type at compile time: the type ids are constants.
    if TypeId::of::<K>() == TypeId::of::<Word>() {
        (k as &dyn Any).downcast_ref::<Word>()?.packed()
    } else if TypeId::of::<K>() == TypeId::of::<String>() {
        pack_bytes((k as &dyn Any).downcast_ref::<String>()?.as_bytes())
    } else {
        None
    }
}

/// The key a packed key was made from.
fn unpack<K: 'static>(p: u64) -> Option<K> {
    let b = p.to_le_bytes();
    let text = std::str::from_utf8(&b[..(b[7] as usize).min(PACKED)]).ok()?;
    let mut out: Option<K> = None;
    let slot = &mut out as &mut dyn Any;
    if let Some(w) = slot.downcast_mut::<Option<Word>>() {
        *w = Some(Word::new(text));
    } else if let Some(s) = slot.downcast_mut::<Option<String>>() {
        *s = Some(text.to_string());
    }
    out
}

impl<K: Hash + Eq + 'static, A> KeyTable<K, A> {
    /// The accumulator of `k`, made by `init` if `k` is new.
    #[inline]
    pub fn slot(&mut self, k: K, init: impl FnOnce() -> A) -> &mut A {
        match pack(&k) {
            Some(p) => self.packed.entry(p).or_insert_with(init),
            None => self.other.entry(k).or_insert_with(init),
        }
    }

    /// Like [`slot`](Self::slot), and `then` sees the key too.
    #[inline]
    pub fn slot_with<R>(
        &mut self,
        k: K,
        init: impl FnOnce() -> A,
        then: impl FnOnce(&K, &mut A) -> R,
    ) -> R {
        match pack(&k) {
            Some(p) => then(&k, self.packed.entry(p).or_insert_with(init)),
            None => {
                let (k, a) = match self.other.raw_entry_mut().from_key(&k) {
                    RawEntryMut::Occupied(e) => e.into_key_value(),
                    RawEntryMut::Vacant(e) => e.insert(k, init()),
                };
                then(k, a)
            }
        }
    }

    /// Removes `k` and its accumulator.
    pub fn remove(&mut self, k: &K) -> Option<A> {
        match pack(k) {
            Some(p) => self.packed.remove(&p),
            None => self.other.remove(k),
        }
    }

    /// Stores `v` for a new `k`, else replaces `k`'s value `old` with
    /// `f(old, v)` (one lookup).
    #[inline]
    pub fn merge(&mut self, k: K, v: A, f: impl FnOnce(A, A) -> A) {
        fn put<Q: Hash + Eq, A>(
            e: Entry<'_, Q, A, FxBuildHasher>,
            v: A,
            f: impl FnOnce(A, A) -> A,
        ) {
            match e {
                Entry::Occupied(e) => {
                    e.replace_entry_with(|_, old| Some(f(old, v)));
                }
                Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        match pack(&k) {
            Some(p) => put(self.packed.entry(p), v, f),
            None => put(self.other.entry(k), v, f),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.packed.len() + self.other.len()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the tables' buckets take (their capacity, not their length),
    /// with `extra` more per key for what keys and accumulators own.
    pub fn bytes(&self, extra: usize) -> usize {
        let bucket = |entry: usize, cap: usize| cap * (entry + 1 + extra);
        bucket(std::mem::size_of::<(u64, A)>(), self.packed.capacity())
            + bucket(std::mem::size_of::<(K, A)>(), self.other.capacity())
    }

    /// Takes every key and accumulator out; the table keeps its memory.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, A)> + '_ {
        self.packed
            .drain()
            .filter_map(|(p, a)| Some((unpack::<K>(p)?, a)))
            .chain(self.other.drain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<K: Ord, A: Ord>(mut v: Vec<(K, A)>) -> Vec<(K, A)> {
        v.sort();
        v
    }

    #[test]
    fn text_keys_come_back_as_they_went_in() {
        let keys = [
            "",
            "a",
            "a\0",
            "\0",
            "seven77",
            "eight888",
            "é",
            "中文字",
            "x",
        ];
        let mut words: KeyTable<Word, u64> = KeyTable::default();
        let mut strings: KeyTable<String, u64> = KeyTable::default();
        let mut ints: KeyTable<u64, u64> = KeyTable::default();
        for (i, k) in keys.iter().enumerate() {
            for _ in 0..=i {
                *words.slot(Word::new(k), || 0) += 1;
                strings.merge(k.to_string(), 1, |a, b| a + b);
                *ints.slot(i as u64, || 0) += 1;
            }
        }
        assert_eq!(words.len(), keys.len());
        assert!(words.packed.len() >= 5, "short words are packed");
        let want: Vec<(String, u64)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), i as u64 + 1))
            .collect();
        let got: Vec<(String, u64)> = words.drain().map(|(w, n)| (w.to_string(), n)).collect();
        assert_eq!(sorted(got), sorted(want.clone()));
        assert!(words.is_empty());
        assert_eq!(sorted(strings.drain().collect()), sorted(want));
        assert_eq!(ints.len(), keys.len());
        assert!(ints.packed.is_empty());
        // Keys seen by slot_with, and removed.
        let mut lists: KeyTable<Word, Vec<u8>> = KeyTable::default();
        for k in ["short", "a-much-longer-key", "short"] {
            let seen = lists.slot_with(Word::new(k), Vec::new, |key, l| {
                l.push(1);
                key.to_string()
            });
            assert_eq!(seen, k);
        }
        assert_eq!(lists.remove(&Word::new("short")), Some(vec![1, 1]));
        assert_eq!(lists.remove(&Word::new("short")), None);
        assert_eq!(lists.remove(&Word::new("a-much-longer-key")), Some(vec![1]));
        assert!(lists.is_empty());
        // A word made by the tokenizer and one made from a str pack alike.
        let mut t: KeyTable<Word, u64> = KeyTable::default();
        for w in crate::text::words("The THE the") {
            *t.slot(w, || 0) += 1;
        }
        assert_eq!(t.drain().collect::<Vec<_>>(), [(Word::new("the"), 3)]);
    }
}
