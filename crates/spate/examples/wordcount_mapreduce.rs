//! Word count as an mrjob-style MapReduce job (mapper, combiner, reducer);
//! the job is in `src/jobs/mapreduce.rs`.
//!
//! `cargo run --release --example wordcount_mapreduce -- INPUT... [-o OUTPUT]`
#![allow(missing_docs, clippy::expect_used, dead_code)]
mod common;
#[path = "../src/jobs/mapreduce.rs"]
mod mapreduce;

use spate::prelude::*;

fn main() -> spate::Result<()> {
    let args = common::args();
    let ctx = Context::new()?;
    let counts = ctx.run_job(&mapreduce::WordCountJob, ctx.read_text(&args.inputs)?);
    match args.output {
        // Hadoop layout: one part file per reducer, keys sorted within each.
        Some(dir) => println!("{:?}", counts.write_text(dir)?),
        None => {
            for (word, n) in counts.sort_by_key(true).collect()? {
                println!("{word}\t{n}");
            }
        }
    }
    Ok(())
}
