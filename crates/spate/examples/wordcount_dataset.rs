//! Word count with the Spark-style `Dataset` API.
//!
//! `cargo run --release --example wordcount_dataset -- INPUT... [-o OUTPUT]`
#![allow(missing_docs, clippy::expect_used)]
mod common;

use spate::prelude::*;

fn main() -> spate::Result<()> {
    let args = common::args();
    let ctx = Context::new()?;
    let counts = ctx
        .read_text(&args.inputs)?
        .flat_map(into_words) // maximal runs of [A-Za-z'], lowercased
        .count_by_value() // combined map-side, summed after the shuffle
        .sort_by_key(true);
    match args.output {
        Some(dir) => println!("{:?}", counts.write_text(dir)?),
        None => {
            for (word, n) in counts.collect()? {
                println!("{word}\t{n}");
            }
        }
    }
    Ok(())
}
