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

impl Job {
    /// Every canonical job.
    pub const ALL: [Job; 2] = [Job::WordCount, Job::MostUsedWord];

    /// The job's name on the command line (`spate run NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Job::WordCount => "wordcount",
            Job::MostUsedWord => "most-used-word",
        }
    }
}

impl Face {
    /// Every face.
    pub const ALL: [Face; 3] = [Face::Dataset, Face::Pipeline, Face::MapReduce];

    /// The face's name on the command line (`--face NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Face::Dataset => "dataset",
            Face::Pipeline => "pipeline",
            Face::MapReduce => "mapreduce",
        }
    }
}

/// Builds `job` in `face` over text `inputs`; the result is lazy. Its steps
/// are named under `JOB/FACE/` (`wordcount/dataset/flat_map`), so that one
/// executor can hold the steps of every job and face ([`declare_all`]).
pub fn build(
    ctx: &Context,
    job: Job,
    face: Face,
    inputs: &[PathBuf],
) -> Result<Dataset<(Word, u64)>> {
    ctx.in_scope(job.name(), || {
        ctx.in_scope(face.name(), || build_unscoped(ctx, job, face, inputs))
    })
}

/// The steps of every job in every face, for an executor of the `spate`
/// program: a cluster's executors find the steps of `spate run`'s jobs
/// here. Each job is built (not run) in a context that only declares it.
pub fn declare_all() -> Result<std::sync::Arc<spate_core::context::Registry>> {
    let empty = tempfile::Builder::new()
        .prefix("spate-declare-")
        .suffix(".txt")
        .tempfile()
        .map_err(|e| Error::Storage(format!("cannot create a temporary file: {e}")))?;
    let inputs = [empty.path().to_path_buf()];
    let all = std::sync::Arc::new(spate_core::context::Registry::default());
    for job in Job::ALL {
        for face in Face::ALL {
            let ctx = Context::builder().threads(1).declare_only().build()?;
            build(&ctx, job, face, &inputs)?.collect_batches()?;
            all.merge(ctx.registry())?;
        }
    }
    Ok(all)
}

fn build_unscoped(
    ctx: &Context,
    job: Job,
    face: Face,
    inputs: &[PathBuf],
) -> Result<Dataset<(Word, u64)>> {
    let counts = match face {
        Face::Dataset => ctx
            .read_text(inputs)?
            .flat_map_lines(|line, out| words(line).for_each(|w| out.push(w)))
            .count_by_value(),
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
        Job::WordCount => counts.sort_by_key(true),
        Job::MostUsedWord => counts.top_by(1, by_count_then_word),
    })
}
