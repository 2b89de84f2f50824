//! Word count per event-time window over files arriving in a directory
//! (or records of a Kafka topic, given as `kafka://HOST:PORT/TOPIC`):
//! the pipeline of `spate stream wordcount` (see
//! `crates/spate-stream/src/wordcount.rs`), streamed with a checkpoint, or
//! run once over the files there are with `--bounded`.
//!
//! Each input line is `<event time ms><TAB><text>`; each output line
//! `<window start><TAB><window end><TAB><word><TAB><count>`.
//!
//! `cargo run --release -p spate --example windowed_wordcount_stream -- IN_DIR OUT_DIR CHECKPOINT_DIR [--window 60s] [--trigger interval=1s]`
//! `cargo run --release -p spate --example windowed_wordcount_stream -- IN_DIR OUT_DIR --bounded [--window 60s]`
#![allow(missing_docs)]

use spate::stream::time::parse_duration;
use spate::stream::wordcount::{Endpoint, WindowedWordCount};
use spate::stream::{BatchTrigger, StreamPipeline};

fn main() -> spate::Result<()> {
    let mut positional = Vec::new();
    let (mut window, mut trigger, mut bounded) =
        ("60s".to_string(), "interval=1s".to_string(), false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--window" => window = args.next().unwrap_or_default(),
            "--trigger" => trigger = args.next().unwrap_or_default(),
            "--bounded" => bounded = true,
            _ => positional.push(a),
        }
    }
    let usage = || {
        spate::Error::Usage(
            "usage: windowed_wordcount_stream IN OUT (CHECKPOINT_DIR | --bounded) \
             [--window 60s] [--trigger available-now|once|interval=1s] \
             (IN, OUT: a directory or kafka://HOST:PORT/TOPIC)"
                .into(),
        )
    };
    let (input, output) = match &positional[..] {
        [i, o, ..] => (i.clone(), o.clone()),
        _ => return Err(usage()),
    };
    let job = WindowedWordCount::new(
        Endpoint::parse(&input)?,
        Endpoint::parse(&output)?,
        parse_duration(&window)?,
    );
    let p = StreamPipeline::new(spate::Context::new()?);
    job.build(&p);
    let result = if bounded {
        p.run_bounded()?
    } else {
        let checkpoint = positional.get(2).ok_or_else(usage)?;
        p.print_progress(true);
        p.run_streaming(checkpoint, trigger.parse::<BatchTrigger>()?)?
    };
    let lines: u64 = result.progress.iter().map(|b| b.output_lines).sum();
    println!("{} batches, {lines} lines written", result.progress.len());
    Ok(())
}
