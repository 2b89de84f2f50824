//! `Word`: a small string stored inline (no heap allocation up to 14 bytes),
//! so tokenizing and counting words allocates almost nothing. It hashes,
//! compares and serializes exactly like the `str` it holds.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest word stored inline. Invariant: a word is inline exactly when it
/// is at most this long, and the inline buffer is zero after `len` — so
/// equal words have equal representations (fast `Eq` and `Hash`).
pub(crate) const INLINE: usize = 14;

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    // A thin pointer keeps `Word` at 16 bytes: a `(Word, u64)` hash-map
    // bucket is 24 bytes, and most English words fit inline.
    #[expect(
        clippy::box_collection,
        reason = "a thin pointer keeps Word at 16 bytes"
    )]
    Heap(Box<String>),
}

/// A short string, inline up to 14 bytes; derefs to `str`.
#[derive(Clone)]
pub struct Word(Repr);

impl Word {
    /// A word holding `s`.
    #[inline]
    pub fn new(s: &str) -> Self {
        let b = s.as_bytes();
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Word(Repr::Inline {
                len: b.len() as u8,
                buf,
            })
        } else {
            Word(Repr::Heap(Box::new(s.to_string())))
        }
    }

    /// A word holding the ASCII bytes `b`, lowercased. Non-ASCII input is
    /// replaced lossily (the tokenizer only passes ASCII letters and `'`).
    #[inline]
    pub fn ascii_lowercase(b: &[u8]) -> Self {
        if b.len() <= INLINE && b.is_ascii() {
            let mut buf = [0u8; INLINE];
            for (d, s) in buf.iter_mut().zip(b) {
                *d = s.to_ascii_lowercase();
            }
            return Word(Repr::Inline {
                len: b.len() as u8,
                buf,
            });
        }
        Word::from(String::from_utf8_lossy(b).to_ascii_lowercase())
    }

    /// A word from an inline buffer the caller filled with `len` ASCII bytes
    /// and zeros after them (the tokenizer's fast path).
    #[inline]
    pub(crate) fn from_ascii_buf(buf: [u8; INLINE], len: u8) -> Self {
        Word(Repr::Inline { len, buf })
    }

    /// The word as a packed key of the combiner's table
    /// ([`KeyTable`](crate::ops::table::KeyTable)): its bytes, and its
    /// length in the top byte, when it is 1 to 7 bytes long.
    #[inline]
    pub(crate) fn packed(&self) -> Option<u64> {
        match &self.0 {
            Repr::Inline { len, buf } if (1..=7).contains(len) => {
                let mut b = [0u8; 8];
                b[..7].copy_from_slice(&buf[..7]);
                b[7] = *len;
                Some(u64::from_le_bytes(b))
            }
            _ => None,
        }
    }

    /// The bytes of the word.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// The word as a `str`.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Inline bytes always come from a `str` or from ASCII.
            Repr::Inline { len, buf } => {
                std::str::from_utf8(&buf[..*len as usize]).unwrap_or_default()
            }
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

impl PartialEq for Word {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Fixed-size compares: no call to memcmp.
            (Repr::Inline { len: a, buf: x }, Repr::Inline { len: b, buf: y }) => a == b && x == y,
            (Repr::Heap(a), Repr::Heap(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Word {}

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
            Repr::Inline { len, buf } => {
                let word = |i: usize| {
                    let mut w = [0u8; 8];
                    for (d, s) in w.iter_mut().zip(&buf[i..]) {
                        *d = *s;
                    }
                    u64::from_le_bytes(w)
                };
                state.write_u64(word(0));
                state.write_u64(word(8) ^ (u64::from(*len) << 56));
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
            "exactly-twenty-two-ch",
            long.as_str(),
            "é中",
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
            if s.is_ascii() {
                assert_eq!(Word::ascii_lowercase(s.as_bytes()), w);
                assert_eq!(hash(&Word::ascii_lowercase(s.as_bytes())), hash(&w));
            }
        }
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
