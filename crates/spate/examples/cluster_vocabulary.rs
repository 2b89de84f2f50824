//! The Spark vocabulary on a cluster: a broadcast value computed by an
//! earlier action, an accumulator, a metric, folds, `partition_by`, `cogroup`,
//! `combine_globally`, `take` — a job binary whose driver and executors
//! are the same program, so it writes on a cluster what it writes locally.
//!
//! ```sh
//! JOB=target/release/examples/cluster_vocabulary
//! $JOB books/ out/                                   # locally
//! $JOB cluster up --executors 2 --detach -- books/ out-cluster/
//! SPATE_CLUSTER=127.0.0.1:PORT $JOB books/ out-cluster/
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use spate::combine::Sum;
use spate::metrics::{Metrics, MetricsFilter};
use spate::pipeline::{AsSingleton, Max, Reshuffle};
use spate::prelude::*;

fn main() -> ExitCode {
    spate::cluster::main(|ctx, args| {
        let [input, output] = args else {
            return Err(Error::Usage(
                "usage: cluster_vocabulary INPUT OUTPUT_DIR".into(),
            ));
        };
        let out = Path::new(output);
        let lines = ctx.read_text(&[input])?;
        // Blank lines counted by the tasks of one job: an accumulator in a
        // step that later jobs recompute would count again in each.
        let blank = ctx.accumulator("blank lines");
        let b = blank.clone();
        let lines_with_text = lines
            .clone()
            .filter(move |l| {
                let empty = l.trim().is_empty();
                if empty {
                    b.add(1);
                }
                !empty
            })
            .count()?;
        let words = lines.flat_map(into_words).map(|w| w.to_string());

        // The ten most common words, computed by a job of their own and
        // broadcast to the tasks of the next ones (on a cluster's executors,
        // which compute nothing themselves, the driver's value arrives).
        let common: HashMap<String, u64> = words
            .clone()
            .count_by_value()
            .top_by(10, |(w, n)| (*n, std::cmp::Reverse(w.clone())))
            .collect()?
            .into_iter()
            .collect();
        let common = ctx.broadcast(common)?;
        let c = common.clone();
        words
            .clone()
            .filter(move |w| !c.value().contains_key(w))
            .count_by_value()
            .write_text(out.join("rare"))?;

        // Words per length, folded per key; letters per initial through a
        // partitioner, joined with the words per initial.
        let lengths = Metrics::distribution("words", "length");
        let by_len = words.clone().map(move |w| {
            let n = w.chars().count() as u64;
            lengths.update(n as i64);
            (n, 1u64)
        });
        by_len
            .fold_by_key(0, |a, b| a + b)
            .write_text(out.join("lengths"))?;
        let initials = words.clone().map(|w| {
            let first = w.chars().next().unwrap_or(' ').to_string();
            (first, w.len() as u64)
        });
        initials
            .clone()
            .partition_by(4, |k: &String| k.len())
            .aggregate_by_key(0u64, |a, n| a + n, |a, b| a + b)
            .cogroup(initials.map_values(|_| 1u64).reduce_by_key(|a, b| a + b))
            .map(|(k, (letters, words))| {
                (k, (letters.iter().sum::<u64>(), words.iter().sum::<u64>()))
            })
            .write_text(out.join("initials"))?;
        let total: Vec<u64> = words
            .clone()
            .map(|w| w.len() as u64)
            .combine_globally(Sum)
            .collect()?;
        let first = words.clone().sort_by(|w| w.clone(), true).take(3)?;
        // Each file whole: its lines and characters.
        ctx.whole_text_files(&[input])?
            .map(|(path, text)| {
                (
                    path,
                    (text.lines().count() as u64, text.chars().count() as u64),
                )
            })
            .write_text(out.join("files"))?;

        // The Dataset jobs' metrics (a pipeline run takes the context's
        // metrics for its result).
        let found = ctx
            .metrics()
            .query(&MetricsFilter::new().with_name("length"));
        let metric_lines: Vec<String> = found
            .distributions
            .iter()
            .map(|d| {
                let v = d.committed;
                format!(
                    "metric {}: {} words, {} letters, {} to {}",
                    d.key.step, v.count, v.sum, v.min, v.max
                )
            })
            .collect();

        // The Beam face on the same context: a side input (computed by a
        // job of its own before the step that reads it) and a reshuffle.
        let p = Pipeline::with_context(ctx.clone());
        let beam_words = p.collection(words);
        let longest = beam_words
            .clone()
            .apply("Lengths", Map::new(|w: String| w.chars().count() as u64))
            .apply("Longest", Max::globally());
        let longest = AsSingleton::of(&longest);
        let l = longest.clone();
        beam_words
            .apply("Spread", Reshuffle)
            .apply(
                "Longest words",
                Filter::new(move |w: &String| Some(w.chars().count() as u64) == *l.get())
                    .with_side(&longest),
            )
            .apply("Count", Count::per_element())
            .apply("Write", WriteText::to(out.join("longest")));
        p.run()?;
        if !ctx.is_declaring() {
            println!("common words: {}", common.value().len());
            println!("letters: {}", total.first().copied().unwrap_or(0));
            println!("first words: {}", first.join(" "));
            println!(
                "lines: {lines_with_text} with text, {} blank",
                blank.value()
            );
            for line in &metric_lines {
                println!("{line}");
            }
        }
        Ok(())
    })
}
