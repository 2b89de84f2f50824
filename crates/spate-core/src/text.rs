//! Text helpers: the canonical word tokenizer.

/// A word: a small string stored inline (no heap allocation up to 24 bytes),
/// so tokenizing and counting words allocates almost nothing.
pub type Word = compact_str::CompactString;

static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = true;
        t[(c - b'a' + b'A') as usize] = true;
        c += 1;
    }
    t[b'\'' as usize] = true;
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
    Words {
        bytes: line.as_bytes(),
        pos: 0,
    }
}

/// Iterator returned by [`words`].
#[derive(Debug, Clone)]
pub struct Words<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Words<'_> {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        let b = self.bytes;
        let mut i = self.pos;
        while i < b.len() && !WORD_BYTE[b[i] as usize] {
            i += 1;
        }
        if i == b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < b.len() && WORD_BYTE[b[i] as usize] {
            i += 1;
        }
        self.pos = i;
        let mut buf = [0u8; 64];
        let len = i - start;
        if len <= buf.len() {
            for (d, s) in buf.iter_mut().zip(&b[start..i]) {
                *d = s.to_ascii_lowercase();
            }
            // ASCII letters and apostrophes only: always valid UTF-8.
            Some(Word::from_utf8_lossy(&buf[..len]))
        } else {
            Some(Word::from(
                b[start..i]
                    .to_ascii_lowercase()
                    .iter()
                    .map(|&c| c as char)
                    .collect::<String>(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            bytes: self.line.as_bytes(),
            pos: self.pos,
        };
        let w = it.next();
        self.pos = it.pos;
        w
    }
}
