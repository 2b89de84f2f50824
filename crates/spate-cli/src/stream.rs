//! `spate stream wordcount` and `spate run windowed-wordcount`: the
//! canonical streaming job, streamed and in batch.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use spate::prelude::*;
use spate::stream::StartingOffsets;
use spate::stream::time::parse_duration;
use spate::stream::wordcount::{Endpoint, WindowedWordCount};
use spate::stream::{BatchTrigger, StreamPipeline, StreamResult};

#[derive(Args, Debug)]
pub struct StreamArgs {
    #[command(subcommand)]
    job: StreamJob,
}

#[derive(Subcommand, Debug)]
enum StreamJob {
    /// Word count per event-time window over text files arriving in a
    /// directory: each line is `<event time ms><TAB><text>`; each output line
    /// `<window start ms><TAB><window end ms><TAB><word><TAB><count>`, written
    /// when the watermark passes the window's end. Resumes from its
    /// checkpoint with no loss and no duplicate.
    Wordcount(StreamWordCountArgs),
}

#[derive(Args, Debug)]
struct StreamWordCountArgs {
    /// Directory to watch for new files (names starting with `.` or `_` are
    /// skipped), local or on an object store (s3://BUCKET/PREFIX), or a Kafka topic: kafka://HOST:PORT[,HOST:PORT...]/TOPIC
    /// (every partition, offsets kept in the checkpoint, read-committed).
    #[arg(long, short)]
    input: String,
    /// Output directory (one file per batch, visible once committed), also
    /// on an object store (s3://BUCKET/PREFIX, gs://, az://), or a Kafka
    /// topic: kafka://HOST:PORT/TOPIC (one transaction per batch).
    #[arg(long, short)]
    output: String,
    /// Checkpoint directory (offsets, state, commits), local or on an
    /// object store (s3://BUCKET/PREFIX, gs://, az://; credentials from the
    /// usual AWS_*, GOOGLE_*, AZURE_* variables); give the same one to resume.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Window length, e.g. 60s, 5m.
    #[arg(long, value_name = "DURATION")]
    window: String,
    /// How long after a window's end it still takes late lines (each late
    /// batch rewrites the window's updated counts).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    allowed_lateness: String,
    /// How far behind the greatest event time seen lines may arrive before
    /// the watermark passes them.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    out_of_orderness: String,
    /// Where lines too late for their window go (`<event time><TAB><word>`);
    /// without it they are counted in the progress lines and the summary.
    #[arg(long, value_name = "DIR")]
    late_output: Option<PathBuf>,
    /// When batches run: available-now (all new input, then stop), once
    /// (one batch), or interval=DURATION (a batch every interval, until killed).
    #[arg(long, default_value = "interval=1s")]
    trigger: String,
    /// At most this many new files per batch (a directory input).
    #[arg(long, value_name = "N")]
    max_files_per_trigger: Option<usize>,
    /// At most about this many records per batch (a Kafka input).
    #[arg(long, value_name = "N")]
    max_offsets_per_trigger: Option<u64>,
    /// Where a Kafka input starts the first time: earliest or latest
    /// (records written after the stream starts; the default).
    #[arg(long, value_name = "WHERE")]
    starting_offsets: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Memory budget of each batch, e.g. 512MiB.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
    /// No progress line per batch.
    #[arg(long, short)]
    quiet: bool,
}

fn context(threads: Option<usize>, memory_limit: Option<&str>) -> Result<Context> {
    let mut config = Context::builder();
    if let Some(t) = threads {
        config.threads(t);
    }
    if let Some(m) = memory_limit {
        config.memory_limit(spate::context::parse_bytes(m)?);
    }
    config.build()
}

pub fn stream(args: &StreamArgs) -> Result<()> {
    let StreamJob::Wordcount(a) = &args.job;
    let trigger: BatchTrigger = a.trigger.parse()?;
    if trigger == BatchTrigger::Once
        && (a.max_files_per_trigger.is_some() || a.max_offsets_per_trigger.is_some())
    {
        return Err(Error::Usage(
            "--trigger once takes all new input in one batch: drop --max-*-per-trigger, \
             or use --trigger available-now to take it N at a time"
                .into(),
        ));
    }
    let input = Endpoint::parse(&a.input)?;
    let kafka_in = matches!(input, Endpoint::Kafka { .. });
    if kafka_in && a.max_files_per_trigger.is_some() {
        return Err(Error::Usage(
            "--max-files-per-trigger limits a directory input; for Kafka give \
             --max-offsets-per-trigger"
                .into(),
        ));
    }
    if !kafka_in && a.starting_offsets.is_some() {
        return Err(Error::Usage(
            "--starting-offsets is where a Kafka input starts; a directory input reads \
             every file that has not been read yet: drop it"
                .into(),
        ));
    }
    if !kafka_in && a.max_offsets_per_trigger.is_some() {
        return Err(Error::Usage(
            "--max-offsets-per-trigger limits a Kafka input; for a directory give \
             --max-files-per-trigger"
                .into(),
        ));
    }
    let job = WindowedWordCount {
        allowed_lateness: parse_duration(&a.allowed_lateness)?,
        out_of_orderness: parse_duration(&a.out_of_orderness)?,
        late_output: a.late_output.clone(),
        max_files_per_trigger: a.max_files_per_trigger,
        max_offsets_per_trigger: a.max_offsets_per_trigger,
        starting_offsets: a
            .starting_offsets
            .as_deref()
            .unwrap_or("latest")
            .parse::<StartingOffsets>()?,
        ..WindowedWordCount::new(
            input,
            Endpoint::parse(&a.output)?,
            parse_duration(&a.window)?,
        )
    };
    let p = StreamPipeline::new(context(a.threads, a.memory_limit.as_deref())?);
    p.print_progress(!a.quiet);
    job.build(&p);
    let start = Instant::now();
    let result = p.run_streaming(&a.checkpoint, trigger)?;
    summary(&result, &job, start);
    Ok(())
}

/// `spate run windowed-wordcount`: the same job over the files there are
/// now, every window fired on time.
pub fn batch(
    input: &[PathBuf],
    output: &str,
    window: Option<&str>,
    threads: Option<usize>,
    memory_limit: Option<&str>,
) -> Result<()> {
    let [input] = input else {
        return Err(Error::Usage(
            "windowed-wordcount reads one directory: give one -i DIR".into(),
        ));
    };
    if output == "-" {
        return Err(Error::Usage(
            "windowed-wordcount writes a directory: give -o DIR".into(),
        ));
    }
    let window = window.ok_or_else(|| {
        Error::Usage("windowed-wordcount needs --window DURATION (as 60s)".into())
    })?;
    let job = WindowedWordCount::new(
        input.clone(),
        PathBuf::from(output),
        parse_duration(window)?,
    );
    let p = StreamPipeline::new(context(threads, memory_limit)?);
    job.build(&p);
    let start = Instant::now();
    let result = p.run_bounded()?;
    summary(&result, &job, start);
    Ok(())
}

fn summary(result: &StreamResult, job: &WindowedWordCount, start: Instant) {
    let rows: u64 = result.progress.iter().map(|p| p.input_rows).sum();
    let lines: u64 = result.progress.iter().map(|p| p.output_lines).sum();
    eprintln!(
        "spate: {} batches, {rows} lines in, {lines} lines out (counts in {}) in {:.3}s; watermark {}",
        result.progress.len(),
        job.output,
        start.elapsed().as_secs_f64(),
        spate::stream::time::format_timestamp(result.watermark)
    );
    let late = result.late_total();
    if late > 0 {
        match &job.late_output {
            Some(dir) => eprintln!(
                "spate: {late} words came after their window closed; they are in {}",
                dir.display()
            ),
            None => eprintln!(
                "spate: {late} words came after their window closed and are not counted; \
                 give --late-output DIR to keep them, or a larger --allowed-lateness"
            ),
        }
    }
}
