//! The most used word as a Beam-style `Pipeline`.
//!
//! `cargo run --release --example most_used_word_pipeline -- INPUT...`
#![allow(missing_docs, clippy::expect_used)]
mod common;
#[path = "../src/jobs/pipeline.rs"]
mod pipeline;

use std::cmp::Reverse;

use pipeline::CountWords;
use spate::prelude::*;

fn main() -> spate::Result<()> {
    let args = common::args();
    let p = Pipeline::new()?;
    let best = p
        .apply("ReadLines", ReadText::from(&args.inputs))
        .apply("CountWords", CountWords)
        .apply(
            "MostUsed",
            Top::by(1, |(w, n): &(Word, u64)| (*n, Reverse(w.clone()))),
        );
    p.run()?;
    for (word, n) in best.into_dataset().collect()? {
        println!("{word}\t{n}");
    }
    Ok(())
}
