//! `Word`: a small string stored inline (no heap allocation up to 15 bytes),
//! so tokenizing and counting words allocates almost nothing. It compares,
//! orders and serializes exactly like the `str` it holds (its hash is its
//! own: equal words hash alike).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU64;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest word stored inline. Invariant: a word is inline exactly when it
/// is at most this long, and the inline bytes are zero after it — so equal
/// words have equal representations (fast `Eq` and `Hash`).
pub(crate) const INLINE: usize = 15;

/// A word of up to [`INLINE`] bytes, as two machine words: in memory, the
/// word's bytes from byte 0, zeros after them, and its length plus one in
/// byte 15 (never zero, so the high half never is: `Repr` marks a heap word
/// by a zero high half, the niche of `NonZeroU64`; `is_small` checks it).
///
/// Two whole words, not bytes, because of how words are made and used: the
/// tokenizer builds one in a register and stores it with two plain stores,
/// and the combiner's table reads it back with two plain loads. A byte
/// array stored piece by piece and read back as a word stalls each load
/// until every piece has reached the cache (measured: 0.2–0.3 s of a 1 GiB
/// word count).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Inline {
    lo: u64,
    hi: NonZeroU64,
}

impl Inline {
    /// From its 16 bytes in memory order; `b[15]` is the length plus one.
    #[inline(always)]
    fn from_bytes(b: [u8; 16]) -> Self {
        let half = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        Inline {
            lo: half(0),
            hi: NonZeroU64::new(half(8)).unwrap_or(NonZeroU64::MIN),
        }
    }

    /// The inline word holding `b` (at most [`INLINE`] bytes).
    #[inline(always)]
    fn of(b: &[u8]) -> Self {
        debug_assert!(b.len() <= INLINE);
        let mut all = [0u8; 16];
        all[..b.len()].copy_from_slice(b);
        all[15] = b.len() as u8 + 1;
        Self::from_bytes(all)
    }

    /// Byte 15: the length plus one.
    #[inline(always)]
    fn last(&self) -> u8 {
        self.hi.get().to_ne_bytes()[7]
    }

    #[inline(always)]
    fn len(&self) -> usize {
        usize::from(self.last() - 1)
    }

    /// The word's bytes.
    #[inline(always)]
    fn text(&self) -> &[u8] {
        &self.bytes()[..self.len()]
    }

    /// The word's text: without a UTF-8 check when its 15 bytes are ASCII
    /// (a tokenizer's words; checking ran for ~4 % of a 12 M-word count).
    #[inline(always)]
    fn str(&self) -> Option<&str> {
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Byte 15 (the length) is left out of the check.
        if (self.lo | (self.hi.get() & (u64::MAX >> 8))) & HIGH == 0 {
            let text = self.text();
            // SAFETY: every byte of `text` is below 0x80 (checked above):
            // ASCII, which is UTF-8.
            #[allow(unsafe_code)]
            return Some(unsafe { std::str::from_utf8_unchecked(text) });
        }
        std::str::from_utf8(self.text()).ok()
    }

    /// The 16 bytes in memory order.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn bytes(&self) -> &[u8; 16] {
        // SAFETY: `Inline` is `repr(C)`: two 8-byte integers, 16 bytes with
        // no padding, every byte initialized; `[u8; 16]` has the same size
        // and a weaker alignment, and the borrow keeps `self`'s lifetime.
        unsafe { &*(self as *const Inline).cast::<[u8; 16]>() }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline(Inline),
    // A thin pointer keeps `Word` at 16 bytes (its tag is a zero high half
    // of `Inline`): a `(Word, u64)` hash-map bucket is 24 bytes, and most
    // English words fit inline.
    #[expect(
        clippy::box_collection,
        reason = "a thin pointer keeps Word at 16 bytes"
    )]
    Heap(Box<String>),
}

/// A short string, inline up to 15 bytes; derefs to `str`.
#[derive(Clone, PartialEq, Eq)]
pub struct Word(Repr);

impl Word {
    /// A word holding `s`.
    #[inline]
    pub fn new(s: &str) -> Self {
        let b = s.as_bytes();
        if b.len() <= INLINE {
            Word(Repr::Inline(Inline::of(b)))
        } else {
            Word(Repr::Heap(Box::new(s.to_string())))
        }
    }

    /// A word holding the ASCII bytes `b`, lowercased. Non-ASCII input is
    /// replaced lossily (the tokenizer only passes ASCII letters and `'`).
    #[inline]
    pub fn ascii_lowercase(b: &[u8]) -> Self {
        if b.len() <= INLINE && b.is_ascii() {
            let mut low = [0u8; INLINE];
            for (d, s) in low.iter_mut().zip(b) {
                *d = s.to_ascii_lowercase();
            }
            return Word(Repr::Inline(Inline::of(&low[..b.len()])));
        }
        Word::from(String::from_utf8_lossy(b).to_ascii_lowercase())
    }

    /// A word from the little-endian `v` holding `len` (at most
    /// [`INLINE`]) ASCII bytes and zeros above them: the tokenizer's fast
    /// path, kept in registers until the word is stored.
    #[inline(always)]
    pub(crate) fn from_ascii_le(v: u128, len: usize) -> Self {
        debug_assert!(
            len <= INLINE && v >> (8 * len) == 0,
            "{len} bytes in {v:#x}"
        );
        let all = (v | ((len as u128 + 1) << 120)).to_le_bytes();
        Word(Repr::Inline(Inline::from_bytes(all)))
    }

    /// The word as a packed key of the combiner's table
    /// ([`KeyTable`](crate::ops::table::KeyTable)): its bytes, and its
    /// length in the top byte, when it is 1 to 7 bytes long.
    #[inline]
    pub(crate) fn packed(&self) -> Option<u64> {
        match &self.0 {
            // Bytes 7..15 of such a word are zero but for byte 15.
            Repr::Inline(i) if (2..=8).contains(&i.last()) => {
                Some(u64::from_le_bytes(i.lo.to_ne_bytes()) | (i.len() as u64) << 56)
            }
            _ => None,
        }
    }

    /// The word as a wide packed key of the combiner's table: its 16
    /// inline bytes (length plus one in byte 15), when it is 8 to
    /// [`INLINE`] bytes long.
    #[inline]
    pub(crate) fn wide(&self) -> Option<u128> {
        match &self.0 {
            Repr::Inline(i) if i.last() > 8 => {
                Some(u128::from(i.lo) | u128::from(i.hi.get()) << 64)
            }
            _ => None,
        }
    }

    /// The word whose [`wide`](Self::wide) key is `k`.
    pub(crate) fn from_wide(k: u128) -> Option<Self> {
        let i = Inline {
            lo: k as u64,
            hi: NonZeroU64::new((k >> 64) as u64)?,
        };
        if !(9..=16).contains(&i.last()) {
            return None;
        }
        // Bytes past the text zeroed, as every inline word has them.
        let i = Inline::of(i.text());
        i.str()?;
        Some(Word(Repr::Inline(i)))
    }

    /// The word whose [`packed`](Self::packed) key is `k`.
    pub(crate) fn from_packed(k: u64) -> Option<Self> {
        let b = k.to_le_bytes();
        let len = usize::from(b[7]);
        if !(1..=7).contains(&len) {
            return None;
        }
        let i = Inline::of(&b[..len]);
        i.str()?;
        Some(Word(Repr::Inline(i)))
    }

    /// The bytes of the word.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(i) => i.text(),
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// The word as a `str`.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Inline bytes always come from a `str` or from ASCII.
            Repr::Inline(i) => i.str().unwrap_or_default(),
            Repr::Heap(s) => s.as_str(),
        }
    }
}

impl Default for Word {
    fn default() -> Self {
        Word::new("")
    }
}

impl Deref for Word {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Word {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Word {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl PartialEq<&str> for Word {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl PartialEq<String> for Word {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialOrd for Word {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Word {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for Word {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            // Two fixed words instead of a byte loop (see the invariant on INLINE).
            Repr::Inline(i) => {
                state.write_u64(i.lo);
                state.write_u64(i.hi.get());
            }
            Repr::Heap(s) => {
                state.write(s.as_bytes());
                state.write_u8(0xff);
            }
        }
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for Word {
    fn from(s: &str) -> Self {
        Word::new(s)
    }
}

impl From<String> for Word {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            Word::new(&s)
        } else {
            Word(Repr::Heap(Box::new(s)))
        }
    }
}

impl From<Word> for String {
    fn from(w: Word) -> String {
        w.as_str().to_string()
    }
}

impl Serialize for Word {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Word, E> {
                Ok(Word::new(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Word, E> {
                Ok(Word::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_small() {
        assert_eq!(std::mem::size_of::<Word>(), 16);
        assert_eq!(std::mem::size_of::<(Word, u64)>(), 24);
    }

    #[test]
    fn behaves_like_str() {
        let long = "x".repeat(40);
        for s in [
            "",
            "a",
            "it's",
            "fifteen-bytes!!",
            "sixteen-bytes!!!",
            "exactly-twenty-two-ch",
            long.as_str(),
            "é中",
            "naïve",
            "ünïcödé-wörds",
        ] {
            let w = Word::new(s);
            assert_eq!(w.as_str(), s);
            assert_eq!(w, s);
            let hash = |w: &Word| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                w.hash(&mut h);
                h.finish()
            };
            // Every way of making the same word gives the same repr.
            let from_string = Word::from(s.to_string());
            assert_eq!(w, from_string);
            assert_eq!(hash(&w), hash(&from_string));
            // Packed: the bytes little-endian, the length in the top byte.
            let packed = (1..=7).contains(&s.len()).then(|| {
                let mut b = [0u8; 8];
                b[..s.len()].copy_from_slice(s.as_bytes());
                b[7] = s.len() as u8;
                u64::from_le_bytes(b)
            });
            assert_eq!(w.packed(), packed, "{s:?}");
            // A packed key gives back the same word, ASCII or not.
            if let Some(p) = w.packed() {
                assert_eq!(
                    Word::from_packed(p).map(|b| (hash(&b), b)),
                    Some((hash(&w), w.clone()))
                );
            }
            if let Some(k) = w.wide() {
                assert_eq!(
                    Word::from_wide(k).map(|b| (hash(&b), b)),
                    Some((hash(&w), w.clone()))
                );
            }
            if s.is_ascii() {
                assert_eq!(Word::ascii_lowercase(s.as_bytes()), w);
                assert_eq!(hash(&Word::ascii_lowercase(s.as_bytes())), hash(&w));
            }
        }
        // Bytes that are not UTF-8 never come back as a word.
        assert_eq!(
            Word::from_packed(u64::from_le_bytes([0xff, 0, 0, 0, 0, 0, 0, 1])),
            None
        );
        let mut b = [0u8; 16];
        b[..9].copy_from_slice(b"abcdefgh\xff");
        b[15] = 10;
        assert_eq!(Word::from_wide(u128::from_le_bytes(b)), None);
        assert!(Word::new("a") < Word::new("b"));
        assert_eq!(Word::ascii_lowercase(b"HeLLo'S"), "hello's");
        assert_eq!(
            Word::ascii_lowercase("ÉTÉ".as_bytes()),
            "ÉTÉ".to_ascii_lowercase()
        );
        assert_eq!(
            format!("{:>3}|{:?}", Word::new("a"), Word::new("b")),
            "  a|\"b\""
        );
    }
}
