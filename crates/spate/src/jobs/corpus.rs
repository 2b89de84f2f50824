//! A deterministic English-like text generator for demos, tests and benchmarks.
//!
//! Words are drawn from a fixed vocabulary with a Zipf-like distribution (a few
//! words very common, a long tail), in sentences with capitals, punctuation,
//! apostrophes and numbers, so the tokenizer has real work. The same seed and
//! size always give the same bytes.

use std::io::{BufWriter, Write};
use std::path::Path;

const COMMON: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as",
    "his", "on", "be", "at", "by", "i", "this", "had", "not", "are", "but", "from", "or", "have",
    "an", "they", "which", "one", "you", "were", "her", "all", "she", "there", "would", "their",
    "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said",
    "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some",
    "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such",
    "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many",
    "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
    "should", "because", "each", "just", "those", "people", "mr", "how", "too", "little", "state",
    "good", "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here",
    "between", "both", "life", "being", "under", "never", "day", "same", "another", "know",
    "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against",
    "go", "came", "right", "used", "take", "three", "don't", "it's", "i'm", "o'clock", "river",
    "whale", "ship", "captain", "sea", "water", "storm", "harbor", "sail", "island", "night",
    "morning",
];

const SYLLABLES: &[&str] = &[
    "ka", "ro", "mi", "ten", "ul", "sar", "be", "lo", "qui", "var", "na", "des", "or", "pel",
    "ith", "an", "gro", "ve", "sta", "mon", "el", "tri", "pha", "zen", "cu", "dor", "ly", "ham",
    "wick", "ford",
];

/// A small, fast, deterministic PRNG: spate's SplitMix64 (the one
/// `Dataset::sample` seeds), so a seed gives the same text in every release.
#[derive(Debug, Clone)]
pub struct Rng(spate_core::ops::indexed::SplitMix64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(spate_core::ops::indexed::SplitMix64::new(seed))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

/// The vocabulary: common words, then ~50,000 generated rare words.
fn vocabulary() -> Vec<String> {
    let mut v: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
    let mut rng = Rng::new(7);
    while v.len() < 50_000 {
        let n = 2 + rng.below(3);
        let w: String = (0..n)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
            .collect();
        v.push(w);
    }
    v
}

/// Writes about `bytes` bytes of text (whole lines) to `out`.
pub fn write_text(out: &mut dyn Write, bytes: u64, seed: u64) -> std::io::Result<u64> {
    let vocab = vocabulary();
    let mut rng = Rng::new(seed);
    let mut written = 0u64;
    let mut line = String::with_capacity(256);
    while written < bytes {
        line.clear();
        let words = 4 + rng.below(14);
        for i in 0..words {
            // Zipf-like: the index is the square of a uniform number, scaled.
            let u = rng.below(1 << 16) as f64 / 65536.0;
            let idx = ((u * u * u) * vocab.len() as f64) as usize;
            let w = &vocab[idx.min(vocab.len() - 1)];
            if i > 0 {
                line.push(' ');
            }
            match rng.below(40) {
                0 => line.push_str(&w.to_uppercase()),
                1..=3 => {
                    let mut cs = w.chars();
                    if let Some(c) = cs.next() {
                        line.extend(c.to_uppercase());
                        line.push_str(cs.as_str());
                    }
                }
                _ => line.push_str(w),
            }
            match rng.below(30) {
                0 => line.push(','),
                1 => line.push_str(&format!(" {}", rng.below(2000))),
                2 => line.push_str(" --"),
                _ => {}
            }
        }
        line.push_str(if rng.below(5) == 0 { "?\n" } else { ".\n" });
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    Ok(written)
}

/// Writes the text to a file (replacing it).
pub fn write_file(path: &Path, bytes: u64, seed: u64) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let n = write_text(&mut out, bytes, seed)?;
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_text(&mut a, 10_000, 1).unwrap();
        write_text(&mut b, 10_000, 1).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 10_000 && a.ends_with(b"\n"));
        let mut c = Vec::new();
        write_text(&mut c, 10_000, 2).unwrap();
        assert_ne!(a, c);
    }
}
