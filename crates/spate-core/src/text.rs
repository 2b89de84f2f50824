//! Text helpers: the canonical word tokenizer.

use crate::word::INLINE;
pub use crate::word::Word;

/// Byte → its lowercase form if it belongs to a word (`[A-Za-z']`), else 0:
/// one lookup both classifies and lowercases.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
static LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = c;
        t[(c - b'a' + b'A') as usize] = c;
        c += 1;
    }
    t[b'\'' as usize] = b'\'';
    t
};

/// The words of a line: maximal runs of `[A-Za-z']`, lowercased (the
/// tokenizer of Beam's word count example). Every other character, including
/// non-ASCII letters, separates words.
///
/// The line is classified 64 bytes at a time into a bit mask (SSE2 on
/// x86_64), and words are cut at the mask's edges: no branch per byte, so
/// short English words cost no mispredicted loop exit each.
///
/// ```
/// use spate_core::text::words;
/// let w: Vec<_> = words("It's a Dog's-life, 2 times!").collect();
/// assert_eq!(w, ["it's", "a", "dog's", "life", "times"]);
/// ```
#[inline]
pub fn words(line: &str) -> Words<'_> {
    Words {
        line: line.as_bytes(),
        cursor: Cursor::new(line.as_bytes()),
    }
}

/// Iterator returned by [`words`].
#[derive(Clone)]
pub struct Words<'a> {
    line: &'a [u8],
    cursor: Cursor,
}

impl std::fmt::Debug for Words<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Words")
            .field("line", &String::from_utf8_lossy(self.line))
            .field("at", &self.cursor.base)
            .finish()
    }
}

impl Iterator for Words<'_> {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        let (start, end) = self.cursor.next_span(self.line)?;
        Some(self.cursor.word(self.line, start, end))
    }

    #[inline]
    fn fold<B, F: FnMut(B, Word) -> B>(mut self, init: B, f: F) -> B {
        self.cursor.fold(self.line, init, f)
    }
}

/// Where a tokenizer is in its line (16 bytes: the iterators are moved
/// around by value, once per line).
#[derive(Clone)]
struct Cursor {
    /// Start of the current 64-byte block.
    base: usize,
    /// Word bytes of the current block not yet returned (bit i: byte base+i).
    rest: u64,
}

/// The 16 bytes of `line` from `at` (which is inside it) on, zeros past its
/// end. Near the end the load is the line's last 16 bytes, shifted: no copy
/// of the line, no read past it, and no branch on where the word lies.
#[inline(always)]
fn load16(line: &[u8], at: usize) -> u128 {
    let len = line.len();
    if len >= 16 {
        let from = at.min(len - 16);
        chunk_at(line, from) >> (8 * (at - from))
    } else {
        small_value(line) >> (8 * at)
    }
}

/// The `N` bytes of `line` at `at` (`at + N` is at most its length).
#[inline(always)]
fn bytes_at<const N: usize>(line: &[u8], at: usize) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&line[at..at + N]);
    b
}

/// The 16 bytes of `line` at `at` (`at + 16` is at most its length).
#[inline(always)]
fn chunk_at(line: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(bytes_at(line, at))
}

/// A line shorter than 16 bytes as one value: its bytes, zeros after them.
/// Two overlapping loads from each end (the overlap holds the same bytes,
/// so or-ing them is exact), no copy through memory.
#[inline(always)]
fn small_value(line: &[u8]) -> u128 {
    let n = line.len();
    if n >= 8 {
        let at = |i| u128::from(u64::from_le_bytes(bytes_at(line, i)));
        return at(0) | at(n - 8) << (8 * (n - 8));
    }
    let v = if n >= 4 {
        let at = |i| u64::from(u32::from_le_bytes(bytes_at(line, i)));
        at(0) | at(n - 4) << (8 * (n - 4))
    } else if n > 0 {
        let byte = |i: usize| u64::from(line[i]) << (8 * i);
        byte(0) | byte(n / 2) | byte(n - 1)
    } else {
        0
    };
    u128::from(v)
}

/// `LOW_BYTES[n]`: the low `n` bytes set.
static LOW_BYTES: [u128; 17] = {
    let mut t = [u128::MAX; 17];
    let mut n = 0;
    while n < 16 {
        t[n] = (1u128 << (8 * n)) - 1;
        n += 1;
    }
    t
};

/// The word of `n` bytes (at most `INLINE`) starting in the low byte of
/// `v`, lowercased: letters lowercase by setting bit 5 (and `'` already has
/// it); then only the word's bytes are kept.
#[inline(always)]
fn lower_word(v: u128, n: usize) -> Word {
    let v = (v | 0x2020_2020_2020_2020_2020_2020_2020_2020) & LOW_BYTES[n];
    Word::from_ascii_le(v, n)
}

impl Cursor {
    #[inline(always)]
    fn new(line: &[u8]) -> Self {
        let mut c = Cursor { base: 0, rest: 0 };
        if !line.is_empty() {
            c.rest = mask_at(line, 0);
        }
        c
    }

    /// Where the next word starts and ends.
    #[inline(always)]
    fn next_span(&mut self, line: &[u8]) -> Option<(usize, usize)> {
        while self.rest == 0 {
            self.base += 64;
            if self.base >= line.len() {
                return None;
            }
            self.rest = mask_at(line, self.base);
        }
        let shift = self.rest.trailing_zeros() as usize;
        let start = self.base + shift;
        let run = (!(self.rest >> shift)).trailing_zeros() as usize;
        if shift + run < 64 {
            // Clear the run just found: adding its lowest bit carries
            // through it.
            self.rest &= self.rest.wrapping_add(1 << shift);
            return Some((start, start + run));
        }
        // The word goes on into the next blocks.
        self.rest = 0;
        loop {
            self.base += 64;
            if self.base >= line.len() {
                return Some((start, line.len()));
            }
            let m = mask_at(line, self.base);
            let ones = (!m).trailing_zeros() as usize;
            if ones < 64 {
                self.rest = m & m.wrapping_add(1);
                return Some((start, self.base + ones));
            }
        }
    }

    /// The word at `start..end`, lowercased.
    #[inline(always)]
    fn word(&self, line: &[u8], start: usize, end: usize) -> Word {
        if end - start <= INLINE {
            lower_word(load16(line, start), end - start)
        } else {
            Word::ascii_lowercase(&line[start..end])
        }
    }

    /// Hands every remaining word to `f`.
    #[inline(always)]
    fn fold<B>(&mut self, line: &[u8], init: B, mut f: impl FnMut(B, Word) -> B) -> B {
        let mut acc = init;
        if line.len() <= 64 {
            // One block (most lines of text): its words straight from the
            // mask, none of `next_span`'s checks for words that go on into
            // the next block.
            let mut rest = std::mem::take(&mut self.rest);
            self.base = 64;
            while rest != 0 {
                let start = rest.trailing_zeros() as usize;
                let n = (!(rest >> start)).trailing_zeros() as usize;
                rest &= rest.wrapping_add(1 << start);
                acc = hand(line, start, start + n, acc, &mut f);
            }
            return acc;
        }
        while let Some((start, end)) = self.next_span(line) {
            acc = hand(line, start, end, acc, &mut f);
        }
        acc
    }
}

/// Hands the word at `start..end`, lowercased, to `f`. Short and long words
/// reach `f` from two call sites, so each is built where `f` stores it (no
/// `Option<Word>` merged from two shapes and copied again).
#[inline(always)]
fn hand<B>(line: &[u8], start: usize, end: usize, acc: B, f: &mut impl FnMut(B, Word) -> B) -> B {
    if end - start <= INLINE {
        f(acc, lower_word(load16(line, start), end - start))
    } else {
        f(acc, Word::ascii_lowercase(&line[start..end]))
    }
}

/// Bit i set when byte `at + i` of `line` belongs to a word (`[A-Za-z']`);
/// bits past the line's end are clear.
#[inline(always)]
fn mask_at(line: &[u8], at: usize) -> u64 {
    if let Some(block) = line.get(at..at + 64) {
        return block
            .chunks_exact(16)
            .enumerate()
            .fold(0, |m, (i, c)| m | (u64::from(mask16(c)) << (16 * i)));
    }
    // The line's last block, under 64 bytes: four 16-byte pieces whose
    // loads stay inside the line (near its end they overlap what came
    // before, and the bits of bytes already classified are shifted off);
    // a line under 16 bytes is one small value.
    let len = line.len();
    if len < 16 {
        return u64::from(mask16(&small_value(line).to_le_bytes())) >> at;
    }
    (0..4).fold(0, |m, k| {
        let want = at + 16 * k;
        let from = want.min(len - 16);
        let piece = u64::from(mask16(&chunk_at(line, from).to_le_bytes()));
        m | (piece >> (want - from)) << (16 * k)
    })
}

/// Bit i set when byte i of the 16 bytes `chunk` belongs to a word.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
#[allow(unsafe_code)]
fn mask16(chunk: &[u8]) -> u16 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_sub_epi8,
    };
    let chunk: &[u8; 16] = chunk.try_into().unwrap_or(&[0; 16]);
    // SAFETY: SSE2 is enabled at compile time (the cfg above: it is part of
    // x86_64's baseline), and the load reads the 16 bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        // A letter, once bit 5 is set, lies in 'a'..='z': (b|0x20)-'a' <= 25.
        let d = _mm_sub_epi8(
            _mm_or_si128(v, _mm_set1_epi8(0x20)),
            _mm_set1_epi8(b'a' as i8),
        );
        let letter = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(25)), d);
        let hit = _mm_or_si128(letter, _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\'' as i8)));
        _mm_movemask_epi8(hit) as u16
    }
}

/// Bit i set when byte i of the 16 bytes `chunk` belongs to a word.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn mask16(chunk: &[u8]) -> u16 {
    mask16_scalar(chunk)
}

/// [`mask16`] a byte at a time, with the table.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn mask16_scalar(chunk: &[u8]) -> u16 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | (u16::from(LOWER[b as usize] != 0) << i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in line.chars() {
            if c.is_ascii_alphabetic() || c == '\'' {
                cur.push(c.to_ascii_lowercase());
            } else if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    #[test]
    fn matches_reference_on_random_lines() {
        let alphabet: Vec<char> = "aZq'-. \t0@[`{é中\u{7f}\u{80}Xy".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for case in 0..9000 {
            // A third of the lines end near a 64-byte block edge, a third
            // are short (every length of 0 to 79 characters, some of them
            // 2 or 3 bytes); some words run across several blocks.
            let len = match case % 3 {
                0 => rnd(300),
                1 => 64 * (1 + rnd(3)) + rnd(3) - 1,
                _ => case / 3 % 80,
            };
            let run = 1 + if case % 7 == 0 { rnd(150) } else { rnd(40) };
            let line: String = (0..len)
                .map(|i| {
                    alphabet[if i % run == 0 {
                        rnd(alphabet.len())
                    } else {
                        rnd(4)
                    }]
                })
                .collect();
            let got: Vec<String> = words(&line).map(String::from).collect();
            assert_eq!(got, reference(&line), "{line:?}");
            // A tokenizer-made word is the very word `Word::new` makes
            // (same representation, same hash), at every length.
            for (w, s) in words(&line).zip(&got) {
                let made = Word::new(s);
                let hash = |w: &Word| {
                    use std::hash::{BuildHasher, BuildHasherDefault};
                    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                        .hash_one(w)
                };
                assert!(w == made && hash(&w) == hash(&made), "{s:?}");
            }
            let owned: Vec<String> = into_words(line.clone()).map(String::from).collect();
            assert_eq!(owned, got);
            // Internal iteration (fold), also after some words were taken.
            let mut folded = Vec::new();
            into_words(line.clone()).for_each(|w| folded.push(String::from(w)));
            assert_eq!(folded, got);
            let mut it = words(&line);
            let mut mixed: Vec<String> = it.next().into_iter().map(String::from).collect();
            mixed.extend(it.map(String::from));
            let mut it = words(&line);
            let mut mixed2: Vec<String> = it.by_ref().take(2).map(String::from).collect();
            it.for_each(|w| mixed2.push(String::from(w)));
            assert_eq!((&mixed, &mixed2), (&got, &got));
        }
    }

    /// Every word position in every line of 0 to 80 bytes: a run of
    /// letters (mixed case, `'` inside) among other bytes, so words end
    /// exactly at the line's end, at 15 and 16 bytes, and at 64.
    #[test]
    fn every_word_position_in_short_lines() {
        for len in 0..=80usize {
            for start in 0..len {
                for n in 1..=len - start {
                    let line: String = (0..len)
                        .map(|i| match i.checked_sub(start) {
                            Some(j) if j < n => ['a', 'Q', '\'', 'z', 'M'][j % 5],
                            _ => ['.', ' ', '@', '[', '{'][i % 5],
                        })
                        .collect();
                    let want = reference(&line);
                    let next: Vec<String> = words(&line).map(String::from).collect();
                    let mut folded = Vec::new();
                    words(&line).for_each(|w| folded.push(String::from(w)));
                    assert_eq!((&next, &folded), (&want, &want), "{line:?}");
                }
            }
        }
    }

    #[test]
    fn vector_and_table_classify_alike() {
        for b in 0..=255u8 {
            let mut chunk = [b' '; 16];
            chunk[b as usize % 16] = b;
            assert_eq!(mask16(&chunk), mask16_scalar(&chunk), "byte {b}");
        }
    }

    #[test]
    fn tokenizer() {
        let w: Vec<Word> = words("Hello, WORLD! l'été café o'neil\r").collect();
        assert_eq!(w, ["hello", "world", "l'", "t", "caf", "o'neil"]);
        assert_eq!(words("").count(), 0);
        assert_eq!(words("  ...  ").count(), 0);
        let long = "A".repeat(100);
        assert_eq!(words(&long).next().unwrap(), "a".repeat(100));
    }
}

/// The words of an owned line, as an iterator that owns the line: use it
/// directly as a `flat_map` function (`.flat_map(into_words)`).
#[inline]
pub fn into_words(line: String) -> IntoWords {
    let cursor = Cursor::new(line.as_bytes());
    IntoWords { line, cursor }
}

/// Iterator returned by [`into_words`].
#[derive(Clone)]
pub struct IntoWords {
    line: String,
    cursor: Cursor,
}

impl std::fmt::Debug for IntoWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntoWords")
            .field("line", &self.line)
            .field("at", &self.cursor.base)
            .finish()
    }
}

impl Iterator for IntoWords {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        let line = self.line.as_bytes();
        let (start, end) = self.cursor.next_span(line)?;
        Some(self.cursor.word(line, start, end))
    }

    #[inline]
    fn fold<B, F: FnMut(B, Word) -> B>(mut self, init: B, f: F) -> B {
        self.cursor.fold(self.line.as_bytes(), init, f)
    }
}
