//! Word count and most-used word as mrjob-style MapReduce jobs.
//! (Also compiled into `examples/*_mapreduce.rs`.)

use std::cmp::Reverse;

use spate::prelude::*;

/// Step: lines → `(word, count)`, with a combiner.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountWordsStep;

impl MRStep for CountWordsStep {
    type Input = String;
    type Key = Word;
    type Value = u64;
    type Output = (Word, u64);

    fn mapper(&mut self, line: String, out: &mut Emitter<'_, (Word, u64)>) {
        for word in words(&line) {
            out.emit_kv(word, 1);
        }
    }

    fn has_combiner(&self) -> bool {
        true
    }

    fn combiner(
        &mut self,
        word: &Word,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (Word, u64)>,
    ) {
        out.emit_kv(word.clone(), counts.sum());
    }

    fn reducer(
        &mut self,
        word: &Word,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut Emitter<'_, (Word, u64)>,
    ) {
        out.emit((word.clone(), counts.sum()));
    }
}

/// Step: `(word, count)` → the one with the greatest count (ties: first word).
/// All pairs go to one key, as in mrjob's `MRMostUsedWord`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FindMaxStep;

impl MRStep for FindMaxStep {
    type Input = (Word, u64);
    type Key = u8;
    type Value = (u64, Word);
    type Output = (Word, u64);

    fn mapper(&mut self, (word, count): (Word, u64), out: &mut Emitter<'_, (u8, (u64, Word))>) {
        out.emit_kv(0, (count, word));
    }

    fn reducer(
        &mut self,
        _key: &u8,
        pairs: &mut dyn Iterator<Item = (u64, Word)>,
        out: &mut Emitter<'_, (Word, u64)>,
    ) {
        if let Some((count, word)) = pairs.max_by_key(|(c, w)| (*c, Reverse(w.clone()))) {
            out.emit((word, count));
        }
    }
}

/// Word count: one step.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordCountJob;

impl MRJob for WordCountJob {
    type Input = String;
    type Output = (Word, u64);
    fn steps(&self) -> Steps<String, (Word, u64)> {
        Steps::of(CountWordsStep)
    }
}

/// Most-used word: count, then find the maximum.
#[derive(Debug, Clone, Copy, Default)]
pub struct MostUsedWordJob;

impl MRJob for MostUsedWordJob {
    type Input = String;
    type Output = (Word, u64);
    fn steps(&self) -> Steps<String, (Word, u64)> {
        Steps::of(CountWordsStep).then(FindMaxStep)
    }
}
