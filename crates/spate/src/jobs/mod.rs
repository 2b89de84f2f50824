//! The canonical jobs — word count and most-used word — in each face. The
//! `spate run` command runs these; `examples/` shows the same code as
//! standalone programs.
//!
//! Tokenizer: maximal runs of `[A-Za-z']`, lowercased ([`words`](spate_core::text::words)).
//! Word count output: `(word, count)` sorted by word; most-used word: the one
//! `(word, count)` with the greatest count, ties broken by the word ascending.

pub mod corpus;
pub mod mapreduce;
pub mod pipeline;

pub use pipeline::CountWords;

use std::cmp::Reverse;
use std::path::PathBuf;

use spate_core::prelude::*;
use spate_core::text::Word;

/// The face a job is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Face {
    /// Spark-style typed `Dataset`.
    #[default]
    Dataset,
    /// Beam-style `Pipeline` of named transforms.
    Pipeline,
    /// mrjob-style MapReduce steps.
    MapReduce,
}

/// The canonical jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Job {
    /// `(word, count)` for every word.
    WordCount,
    /// The most used word and its count.
    MostUsedWord,
}

/// Orders `(word, count)` so the greatest is the most used word, ties to the
/// alphabetically first word.
pub fn by_count_then_word(wc: &(Word, u64)) -> (u64, Reverse<Word>) {
    (wc.1, Reverse(wc.0.clone()))
}

/// Builds `job` in `face` over text `inputs`; the result is lazy.
pub fn build(
    ctx: &Context,
    job: Job,
    face: Face,
    inputs: &[PathBuf],
) -> Result<Dataset<(Word, u64)>> {
    let counts = match face {
        Face::Dataset => ctx.read_text(inputs)?.flat_map(into_words).count_by_value(),
        Face::Pipeline => {
            let p = Pipeline::with_context(ctx.clone());
            let counts = p
                .apply("ReadLines", ReadText::from(inputs))
                .apply("CountWords", CountWords);
            if let Some(e) = p.run().err() {
                return Err(e);
            }
            counts.into_dataset()
        }
        Face::MapReduce => match job {
            Job::WordCount => ctx.run_job(&mapreduce::WordCountJob, ctx.read_text(inputs)?),
            Job::MostUsedWord => {
                return Ok(ctx.run_job(&mapreduce::MostUsedWordJob, ctx.read_text(inputs)?));
            }
        },
    };
    Ok(match job {
        Job::WordCount => counts.sort_by(|(w, _)| w.clone(), true),
        Job::MostUsedWord => counts.top_by(1, by_count_then_word),
    })
}
