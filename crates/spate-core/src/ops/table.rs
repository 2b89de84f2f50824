//! `KeyTable`: the hash table of the map-side combiner.
//!
//! A word count spends most of its time looking words up, and on real text
//! the lookups miss the cache: a `(Word, u64)` bucket is 24 bytes, and a
//! table of the ~55 000 distinct words of Shakespeare fills most of a
//! core's L2 cache while the text streams through it. So short text keys —
//! a [`Word`] or `String` of at most 7 bytes, most words of any language's
//! running text — are packed into one `u64` (the bytes, and the length in
//! the top byte), and those of 8 to 15 bytes into a `u128` (a `Word`'s
//! inline bytes), each kept in an open-addressing table of their own
//! (`PackedTable`, `packed.rs`): buckets of 16 bytes for a `u64` key and
//! count, keys that compare in one or two instructions, and lookups that
//! can be prefetched a few rows ahead ([`KeyTable::prefetch`]). Other keys,
//! and text keys over 15 bytes, go to an ordinary hash table. Keys come out
//! as the type they went in.

use std::any::{Any, TypeId};
use std::hash::Hash;

use hashbrown::hash_map::{Entry, HashMap, RawEntryMut};
use rustc_hash::FxBuildHasher;

use super::packed::PackedTable;
use crate::text::Word;
use crate::word::INLINE;

/// Longest text key kept packed in a `u64`.
const PACKED: usize = 7;

/// Keys to accumulators, short text keys packed (see the module docs).
pub struct KeyTable<K, A> {
    /// Text of 1 to 7 bytes.
    packed: PackedTable<u64, A>,
    /// Text of 8 to 15 bytes.
    wide: PackedTable<u128, A>,
    other: HashMap<K, A, FxBuildHasher>,
}

impl<K, A> Default for KeyTable<K, A> {
    fn default() -> Self {
        Self {
            packed: PackedTable::default(),
            wide: PackedTable::default(),
            other: HashMap::with_hasher(FxBuildHasher),
        }
    }
}

/// A key's packed form, if it has one.
enum Pack {
    Narrow(u64),
    Wide(u128),
    No,
}

/// `bytes` as a packed key, when short enough: for up to 7 bytes, the
/// little-endian bytes and the length in the top byte (so keys holding
/// zero bytes stay distinct); for up to 15, the same bytes as a [`Word`]
/// holds them inline.
#[inline(always)]
fn pack_str(s: &str) -> Pack {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Pack::No;
    }
    if bytes.len() > INLINE {
        return Pack::No;
    }
    if bytes.len() > PACKED {
        return Word::new(s).wide().map_or(Pack::No, Pack::Wide);
    }
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    b[7] = bytes.len() as u8;
    Pack::Narrow(u64::from_le_bytes(b))
}

/// Whether keys of type `K` can pack (a `Word` or `String`): known at
/// compile time.
#[inline(always)]
fn packs<K: 'static>() -> bool {
    TypeId::of::<K>() == TypeId::of::<Word>() || TypeId::of::<K>() == TypeId::of::<String>()
}

/// The packed form of `k`, if its type packs and it is short.
#[inline(always)]
fn pack<K: 'static>(k: &K) -> Pack {
    // Decided per key type at compile time: the type ids are constants.
    if TypeId::of::<K>() == TypeId::of::<Word>() {
        match (k as &dyn Any).downcast_ref::<Word>() {
            Some(w) => match w.packed() {
                Some(p) => Pack::Narrow(p),
                None => w.wide().map_or(Pack::No, Pack::Wide),
            },
            None => Pack::No,
        }
    } else if TypeId::of::<K>() == TypeId::of::<String>() {
        match (k as &dyn Any).downcast_ref::<String>() {
            Some(s) => pack_str(s),
            None => Pack::No,
        }
    } else {
        Pack::No
    }
}

/// `text` as a key of type `K` (a `Word` or `String`).
fn text_key<K: 'static>(text: &str) -> Option<K> {
    let mut out: Option<K> = None;
    let slot = &mut out as &mut dyn Any;
    if let Some(w) = slot.downcast_mut::<Option<Word>>() {
        *w = Some(Word::new(text));
    } else if let Some(s) = slot.downcast_mut::<Option<String>>() {
        *s = Some(text.to_string());
    }
    out
}

/// `w` as a key of type `K` (a `Word` as it is, a `String` copied).
#[inline(always)]
fn word_key<K: 'static>(w: Word) -> Option<K> {
    if TypeId::of::<K>() == TypeId::of::<Word>() {
        let mut out: Option<Word> = Some(w);
        return (&mut out as &mut dyn Any)
            .downcast_mut::<Option<K>>()
            .and_then(Option::take);
    }
    text_key(w.as_str())
}

/// The key a narrow packed key was made from.
fn unpack<K: 'static>(p: u64) -> Option<K> {
    word_key(Word::from_packed(p)?)
}

/// The key a wide packed key was made from.
fn unpack_wide<K: 'static>(p: u128) -> Option<K> {
    word_key(Word::from_wide(p)?)
}

impl<K: Hash + Eq + 'static, A> KeyTable<K, A> {
    /// Asks for the memory `k`'s lookup will read (short text keys only):
    /// called a few rows ahead of [`slot`](Self::slot) or
    /// [`merge`](Self::merge), it lets a run of lookups wait for the cache
    /// together instead of one after another.
    #[inline(always)]
    pub fn prefetch(&self, k: &K) {
        match pack(k) {
            Pack::Narrow(p) => self.packed.prefetch(p),
            Pack::Wide(p) => self.wide.prefetch(p),
            Pack::No => {}
        }
    }

    /// The accumulator of `k`, made by `init` if `k` is new.
    #[inline(always)]
    pub fn slot(&mut self, k: K, init: impl FnOnce() -> A) -> &mut A {
        match pack(&k) {
            Pack::Narrow(p) => self.packed.slot(p, init),
            Pack::Wide(p) => self.wide.slot(p, init),
            // An unpacked text key (over 15 bytes, or empty) is rare: its
            // lookup, out of line, keeps the packed ones small enough to
            // inline into the combiner's loop.
            Pack::No if packs::<K>() => self.long_slot(k, init),
            Pack::No => self.other.entry(k).or_insert_with(init),
        }
    }

    #[inline(never)]
    fn long_slot(&mut self, k: K, init: impl FnOnce() -> A) -> &mut A {
        self.other.entry(k).or_insert_with(init)
    }

    /// Like [`slot`](Self::slot), and `then` sees the key too.
    #[inline(always)]
    pub fn slot_with<R>(
        &mut self,
        k: K,
        init: impl FnOnce() -> A,
        then: impl FnOnce(&K, &mut A) -> R,
    ) -> R {
        match pack(&k) {
            Pack::Narrow(p) => then(&k, self.packed.slot(p, init)),
            Pack::Wide(p) => then(&k, self.wide.slot(p, init)),
            Pack::No => {
                let (k, a) = match self.other.raw_entry_mut().from_key(&k) {
                    RawEntryMut::Occupied(e) => e.into_key_value(),
                    RawEntryMut::Vacant(e) => e.insert(k, init()),
                };
                then(k, a)
            }
        }
    }

    /// Stores `v` for a new `k`, else replaces `k`'s value `old` with
    /// `f(old, v)` (one lookup).
    #[inline(always)]
    pub fn merge(&mut self, k: K, v: A, f: impl FnOnce(A, A) -> A) {
        match pack(&k) {
            Pack::Narrow(p) => self.packed.merge(p, v, f),
            Pack::Wide(p) => self.wide.merge(p, v, f),
            // Out of line for text keys, as in `slot`.
            Pack::No if packs::<K>() => self.long_merge(k, v, f),
            Pack::No => self.other_merge(k, v, f),
        }
    }

    #[inline(never)]
    fn long_merge(&mut self, k: K, v: A, f: impl FnOnce(A, A) -> A) {
        self.other_merge(k, v, f)
    }

    #[inline(always)]
    fn other_merge(&mut self, k: K, v: A, f: impl FnOnce(A, A) -> A) {
        match self.other.entry(k) {
            Entry::Occupied(e) => {
                e.replace_entry_with(|_, old| Some(f(old, v)));
            }
            Entry::Vacant(e) => {
                e.insert(v);
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.packed.len() + self.wide.len() + self.other.len()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the tables' buckets take (all allocated, not only those in
    /// use), and `extra` more for what a key and its accumulator own: per
    /// packed key in use, and per hashbrown bucket (as hashbrown reports
    /// capacity, not buckets).
    pub fn bytes(&self, extra: usize) -> usize {
        self.packed.bytes()
            + self.wide.bytes()
            + (self.packed.len() + self.wide.len()) * extra
            + self.other.capacity() * (std::mem::size_of::<(K, A)>() + 1 + extra)
    }

    /// Takes every key and accumulator out; the table keeps its memory.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, A)> + '_ {
        self.packed
            .drain()
            .filter_map(|(p, a)| Some((unpack::<K>(p)?, a)))
            .chain(
                self.wide
                    .drain()
                    .filter_map(|(p, a)| Some((unpack_wide::<K>(p)?, a))),
            )
            .chain(self.other.drain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::panic_any;

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
            "fifteen-bytes-1",
            "sixteen-bytes-16",
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
        assert_eq!(words.wide.len(), 3, "8 to 15 bytes are packed wide");
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
        assert_eq!(ints.packed.len() + ints.wide.len(), 0);
        // A String and a Word of the same text pack alike, at every length.
        for text in [
            "a",
            "seven77",
            "eight888",
            "nul\0in-the-mid",
            "fifteen-bytes-1",
            "sixteen-bytes-16",
            "é中文字",
            "\0\0\0\0\0\0\0\0",
        ] {
            let (w, s) = (pack(&Word::new(text)), pack(&text.to_string()));
            match (w, s) {
                (Pack::Narrow(a), Pack::Narrow(b)) => {
                    assert_eq!((a, unpack::<String>(a)), (b, Some(text.to_string())))
                }
                (Pack::Wide(a), Pack::Wide(b)) => {
                    assert_eq!((a, unpack_wide::<Word>(a)), (b, Some(Word::new(text))))
                }
                (Pack::No, Pack::No) => assert!(text.len() > INLINE, "{text:?}"),
                _ => panic_any(format!("{text:?} packs differently as Word and String")),
            }
        }
        // Keys seen by slot_with.
        let mut lists: KeyTable<Word, Vec<u8>> = KeyTable::default();
        for k in ["short", "a-much-longer-key", "short"] {
            lists.prefetch(&Word::new(k));
            let seen = lists.slot_with(Word::new(k), Vec::new, |key, l| {
                l.push(1);
                key.to_string()
            });
            assert_eq!(seen, k);
        }
        let mut got: Vec<(String, Vec<u8>)> =
            lists.drain().map(|(k, l)| (k.to_string(), l)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("a-much-longer-key".to_string(), vec![1]),
                ("short".to_string(), vec![1, 1])
            ]
        );
        assert!(lists.is_empty());
        // A word made by the tokenizer and one made from a str pack alike.
        let mut t: KeyTable<Word, u64> = KeyTable::default();
        for w in crate::text::words("The THE the") {
            *t.slot(w, || 0) += 1;
        }
        assert_eq!(t.drain().collect::<Vec<_>>(), [(Word::new("the"), 3)]);
    }
}
