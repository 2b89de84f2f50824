//! The most used word as a two-step MapReduce job (count, then find the max),
//! mrjob's `MRMostUsedWord`; the job is in `src/jobs/mapreduce.rs`.
//!
//! `cargo run --release --example most_used_word_mapreduce -- INPUT...`
#![allow(missing_docs, clippy::expect_used, dead_code)]
mod common;
#[path = "../src/jobs/mapreduce.rs"]
mod mapreduce;

use spate::prelude::*;

fn main() -> spate::Result<()> {
    let args = common::args();
    let ctx = Context::new()?;
    for (word, n) in ctx
        .run_job(&mapreduce::MostUsedWordJob, ctx.read_text(&args.inputs)?)
        .collect()?
    {
        println!("{word}\t{n}");
    }
    Ok(())
}
