//! Text helpers: the canonical word tokenizer.

pub use crate::word::Word;

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
        let rest = self.line.as_bytes().get(self.pos..).unwrap_or_default();
        let Some(start) = rest.iter().position(|&c| WORD_BYTE[c as usize]) else {
            self.pos = self.line.len();
            return None;
        };
        let word = &rest[start..];
        let len = word
            .iter()
            .position(|&c| !WORD_BYTE[c as usize])
            .unwrap_or(word.len());
        self.pos += start + len;
        Some(Word::ascii_lowercase(&word[..len]))
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
            line: &self.line,
            pos: self.pos,
        };
        let w = it.next();
        self.pos = it.pos;
        w
    }
}
