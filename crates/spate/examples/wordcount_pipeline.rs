//! Word count as a Beam-style `Pipeline` with a named composite transform.
//!
//! `cargo run --release --example wordcount_pipeline -- INPUT... [-o OUTPUT]`
#![allow(missing_docs, clippy::expect_used)]
mod common;
#[path = "../src/jobs/pipeline.rs"]
mod pipeline;

use pipeline::CountWords;
use spate::pipeline::WriteText;
use spate::prelude::*;

fn main() -> spate::Result<()> {
    let args = common::args();
    let p = Pipeline::new()?;
    let counts = p
        .apply("ReadLines", ReadText::from(&args.inputs))
        .apply("CountWords", CountWords);
    match args.output {
        Some(dir) => {
            counts.apply("Write", WriteText::to(dir));
            println!("{:?}", p.run()?);
        }
        None => {
            p.run()?;
            let sorted = counts.into_dataset().sort_by_key(true);
            for (word, n) in sorted.collect()? {
                println!("{word}\t{n}");
            }
        }
    }
    Ok(())
}
