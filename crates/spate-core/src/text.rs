//! Text helpers: the canonical word tokenizer.

use crate::word::INLINE;
pub use crate::word::Word;

/// Byte → its lowercase form if it belongs to a word (`[A-Za-z']`), else 0:
/// one lookup both classifies and lowercases.
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
/// ```
/// use spate_core::text::words;
/// let w: Vec<_> = words("It's a Dog's-life, 2 times!").collect();
/// assert_eq!(w, ["it's", "a", "dog's", "life", "times"]);
/// ```
pub fn words(line: &str) -> Words<'_> {
    Words { line, pos: 0 }
}

/// Iterator returned by [`words`].
#[derive(Debug, Clone)]
pub struct Words<'a> {
    line: &'a str,
    pos: usize,
}

impl Iterator for Words<'_> {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        let b = self.line.as_bytes();
        let mut i = self.pos;
        while i < b.len() && LOWER[b[i] as usize] == 0 {
            i += 1;
        }
        if i >= b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        // Build the lowercased word while scanning it.
        let mut buf = [0u8; INLINE];
        let mut n = 0usize;
        while i < b.len() {
            let c = LOWER[b[i] as usize];
            if c == 0 {
                break;
            }
            if n < INLINE {
                buf[n] = c;
            }
            n += 1;
            i += 1;
        }
        self.pos = i;
        Some(if n <= INLINE {
            Word::from_ascii_buf(buf, n as u8)
        } else {
            Word::ascii_lowercase(&b[start..i])
        })
    }
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
        for _ in 0..3000 {
            let len = rnd(300);
            let run = 1 + rnd(40);
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
            let owned: Vec<String> = into_words(line.clone()).map(String::from).collect();
            assert_eq!(owned, got);
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
pub fn into_words(line: String) -> IntoWords {
    IntoWords { line, pos: 0 }
}

/// Iterator returned by [`into_words`].
#[derive(Debug, Clone)]
pub struct IntoWords {
    line: String,
    pos: usize,
}

impl Iterator for IntoWords {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        let mut it = Words {
            line: &self.line,
            pos: self.pos,
        };
        let w = it.next();
        self.pos = it.pos;
        w
    }
}
