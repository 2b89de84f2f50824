//! The most used word with the Spark-style `Dataset` API.
//!
//! `cargo run --release --example most_used_word_dataset -- INPUT...`
#![allow(missing_docs, clippy::expect_used)]
mod common;

use std::cmp::Reverse;

use spate::prelude::*;

fn main() -> spate::Result<()> {
    let args = common::args();
    let ctx = Context::new()?;
    let best = ctx
        .read_text(&args.inputs)?
        .flat_map(into_words)
        .count_by_value()
        // Greatest count; on a tie, the alphabetically first word.
        .max_by(|(word, n)| (*n, Reverse(word.clone())))?;
    if let Some((word, n)) = best {
        println!("{word}\t{n}");
    }
    Ok(())
}
