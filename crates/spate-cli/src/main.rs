//! The `spate` command: argument parsing, progress and output. Job logic lives
//! in the `spate` library (`spate::jobs`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

mod sql;
mod stream;
use spate::io::progress::Progress;
use spate::jobs::{self, Face, Job};
use spate::prelude::*;
use spate_cluster::cli as cluster;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// spate: MapReduce, typed Datasets, Beam-style pipelines and SQL on Apache DataFusion.
#[derive(Parser, Debug)]
#[command(name = "spate", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a built-in job.
    Run(RunArgs),
    /// Print the plan of a built-in job (logical and physical, with step names) without running it.
    Explain(RunArgs),
    /// Generate a deterministic English-like text and run word count and most-used word on it.
    Demo(DemoArgs),
    /// Run a Hadoop Streaming job: any executables as mapper, combiner and reducer
    /// (Hadoop's options: -input, -output, -mapper, -reducer, -D ...; see `spate streaming -help`).
    #[command(disable_help_flag = true)]
    Streaming(PassArgs),
    /// A streaming job over files arriving in a directory, resumable from
    /// its checkpoint (`spate stream wordcount --help`).
    Stream(stream::StreamArgs),
    /// Run an mrjob script unchanged: `spate mrjob JOB.py [job options] INPUT... [-o DIR]`.
    Mrjob(MrjobArgs),
    /// SQL: an interactive shell, or statements from -c, -f or standard input;
    /// tables persist in the catalog under $SPATE_HOME (default ~/.spate).
    Sql(sql::SqlArgs),
    /// A cluster of processes on Apache DataFusion Ballista: its scheduler and
    /// executor roles, a cluster on this host (`up`), and its status.
    Cluster(cluster::ClusterArgs),
    /// The job service: runs submitted jobs and keeps their status and
    /// output (REST API under /api/v1; `spate jobs` is its client).
    Server(spate_service::cli::ServerArgs),
    /// Jobs of the job service, as `gcloud dataproc jobs`: submit, list,
    /// describe, wait, kill, delete, logs.
    Jobs(spate_service::cli::JobsArgs),
    /// Clusters of the job service, as `gcloud dataproc clusters`: create,
    /// list, describe, stop, start, delete.
    Clusters(spate_service::cli::ClustersArgs),
}

#[derive(Args, Debug)]
struct PassArgs {
    /// Hadoop Streaming options.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
}

/// Options of every verb that runs a job.
#[derive(Args, Debug)]
struct EngineArgs {
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Memory budget, e.g. 2GiB or 512MiB; sorts and aggregations spill to disk beyond it.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
    /// Never draw a progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct MrjobArgs {
    /// Interpreter for the script and its tasks (default: the job's --python-bin, else python3).
    #[arg(long, value_name = "PYTHON")]
    python_bin: Option<String>,
    /// Run on the cluster whose scheduler is at HOST:PORT (as `spate cluster
    /// up` prints it; default: $SPATE_CLUSTER, else this machine). The
    /// cluster must run this same `spate` build.
    #[arg(long, value_name = "HOST:PORT")]
    cluster: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Run combiners as separate `--combiner` processes fed sorted runs, as
    /// Hadoop Streaming does (default: inside each map task, on its
    /// in-memory output, when the job uses mrjob's JSON protocols; faster).
    #[arg(long)]
    separate_combiner: bool,
    /// The mrjob script, then its own arguments: input paths, `-o DIR`,
    /// `--jobconf k=v`, passthrough options, `--help` (the job's help).
    /// spate's options (`--threads`, `--memory-limit`, `--separate-combiner`,
    /// `--cluster`) may also come after the script, unless the job defines
    /// them itself.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 1..,
        required = true,
        value_name = "SCRIPT [ARGS]"
    )]
    job: Vec<String>,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Size of the generated text, e.g. 200MiB or 1GiB.
    #[arg(long, default_value = "200MiB")]
    size: String,
    /// Where to keep the generated text and the output (default: a `spate-demo` directory in the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum JobArg {
    /// `word<TAB>count` for every word, sorted by word.
    Wordcount,
    /// The most used word: one `word<TAB>count` line (ties: first word alphabetically).
    MostUsedWord,
    /// Word count per event-time window (needs --window): lines are
    /// `<event time ms><TAB><text>`, output lines
    /// `<window start><TAB><window end><TAB><word><TAB><count>`; the batch
    /// run of `spate stream wordcount`.
    WindowedWordcount,
}

#[derive(Copy, Clone, Debug, ValueEnum, Default)]
enum FaceArg {
    /// Spark-style typed Dataset code.
    #[default]
    Dataset,
    /// Beam-style Pipeline of named transforms.
    Pipeline,
    /// mrjob-style MapReduce steps.
    Mapreduce,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The job to run.
    job: JobArg,
    /// Input files, directories or glob patterns (.gz and .zst are decompressed).
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output directory (must not exist), or `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: String,
    /// Which face of spate runs the job (default: dataset).
    #[arg(long, value_enum)]
    face: Option<FaceArg>,
    /// Window length of windowed-wordcount, e.g. 60s or 5m.
    #[arg(long, value_name = "DURATION")]
    window: Option<String>,
    /// Run on the cluster whose scheduler is at HOST:PORT (as `spate cluster
    /// up` prints it; default: $SPATE_CLUSTER, else this machine). The
    /// cluster must run this same `spate` build.
    #[arg(long, value_name = "HOST:PORT")]
    cluster: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    /// With `explain`: run the job and show each step's metrics (rows, time, spills).
    #[arg(long)]
    analyze: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Jobs(args) => {
            let code = spate_service::cli::jobs(args, &spate::sql::catalog::home());
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::Clusters(args) => {
            let code = spate_service::cli::clusters(args, &spate::sql::catalog::home());
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::Server(args) => {
            match spate_service::cli::server(&args, spate::sql::catalog::home()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spate: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        command => cluster::exit_code("spate", run(Cli { command })),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run_job(&args),
        Command::Explain(args) => {
            if args.output != "-" {
                return Err(Error::Usage(
                    "explain prints the plan and writes no output: drop -o/--output, \
                     or use `spate run` to write it"
                        .into(),
                ));
            }
            let (_ctx, ds) = build(&args)?;
            if args.analyze {
                println!("{}", ds.explain_analyze()?);
            } else {
                println!("{}", ds.explain()?);
            }
            Ok(())
        }
        Command::Demo(args) => demo(&args),
        Command::Streaming(args) => streaming(&args.args),
        Command::Stream(args) => stream::stream(&args),
        Command::Mrjob(args) => mrjob(&args),
        Command::Sql(args) => sql::sql(&args, |e, on| {
            let mut config = config(e.threads, e.memory_limit.as_deref())?;
            if let Some(addr) = cluster::cluster_address(on) {
                config.cluster(addr);
            }
            config.build()
        }),
        // Executors of `spate` hold the steps of its built-in jobs.
        Command::Cluster(args) => cluster::run(args, cluster::Steps::Declared(&jobs::declare_all)),
        Command::Server(_) | Command::Jobs(_) | Command::Clusters(_) => {
            Err(Error::Usage("the job service's verbs run from main".into()))
        }
    }
}

fn config(threads: Option<usize>, memory_limit: Option<&str>) -> Result<Config> {
    let mut config = Context::builder();
    // Set by the job service for the jobs it runs: where the job's graph goes.
    if let Some(path) = std::env::var_os("SPATE_JOB_GRAPH").filter(|p| !p.is_empty()) {
        config.record_graph(path);
    }
    if let Some(t) = threads {
        config.threads(t);
    }
    if let Some(m) = memory_limit {
        config.memory_limit(spate::context::parse_bytes(m)?);
    }
    Ok(config)
}

/// The context of a job with closures or commands: local, or on the
/// cluster named by `--cluster` or $SPATE_CLUSTER — which must run this
/// build, as its executors run this program's steps.
fn context(
    threads: Option<usize>,
    memory_limit: Option<&str>,
    cluster_flag: Option<&str>,
) -> Result<Context> {
    let mut config = config(threads, memory_limit)?;
    if let Some(addr) = cluster::cluster_address(cluster_flag) {
        let parsed = spate_cluster::Address::parse(&addr)?;
        spate_cluster::check_same_build(&parsed, "this spate")?;
        config.cluster(addr);
    }
    config.build()
}

fn streaming(raw: &[String]) -> Result<()> {
    use spate::hadoop::args::{StreamingArgs, USAGE};
    let args = StreamingArgs::parse(raw)?;
    if args.help {
        print!("{USAGE}");
        return Ok(());
    }
    let ctx = context(
        args.threads,
        args.memory_limit.as_deref(),
        args.cluster.as_deref(),
    )?;
    let output = (args.output != "-").then(|| PathBuf::from(&args.output));
    if args.verbose {
        eprint!(
            "spate: streaming job\n  output: {}\n  threads: {}\n{}",
            args.output,
            ctx.threads(),
            args.job.describe(&ctx)?
        );
    }
    run_streaming(&ctx, &args.job, output, args.quiet)
}

fn mrjob(args: &MrjobArgs) -> Result<()> {
    use spate::hadoop::mrjob::MrjobScript;
    let script = MrjobScript {
        script: PathBuf::from(&args.job[0]),
        args: args.job[1..].to_vec(),
        python: args.python_bin.clone(),
        separate_combiner: args.separate_combiner,
    };
    if script.asks_for_help() {
        let code = script.help()?;
        println!(
            "\nspate mrjob runs this job on every core of this machine, or on a cluster \
             (--cluster HOST:PORT); its own options (--threads, --memory-limit, \
             --separate-combiner, --cluster, --python-bin) may come before or after the \
             script: spate mrjob --help"
        );
        std::process::exit(code);
    }
    let mut plan = script.plan()?;
    let memory_limit = args
        .engine
        .memory_limit
        .clone()
        .or(plan.memory_limit.take());
    let cluster = args.cluster.clone().or(plan.cluster.take());
    let ctx = context(
        args.engine.threads.or(plan.threads),
        memory_limit.as_deref(),
        cluster.as_deref(),
    )?;
    // mrjob reads standard input when given no input paths (or `-`).
    if plan.reads_stdin && ctx.cluster().is_some() {
        return Err(Error::Usage(
            "on a cluster the executors read the input, and they cannot read this \
             process's standard input: give input paths every executor can read"
                .into(),
        ));
    }
    let _stdin_copy = if plan.reads_stdin {
        let mut file = tempfile::Builder::new()
            .prefix("spate-stdin-")
            .tempfile()
            .map_err(|e| Error::Usage(format!("cannot buffer standard input: {e}")))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut file)
            .map_err(|e| Error::Usage(format!("reading standard input: {e}")))?;
        plan.job
            .inputs
            .push(file.path().to_string_lossy().into_owned());
        Some(file)
    } else {
        None
    };
    run_streaming(&ctx, &plan.job, plan.output_dir, args.engine.quiet)
}

fn run_streaming(
    ctx: &Context,
    job: &spate::hadoop::StreamingJob,
    output: Option<PathBuf>,
    quiet: bool,
) -> Result<()> {
    use spate::hadoop::Output;
    let start = Instant::now();
    for w in job.warnings() {
        eprintln!("spate: warning: {w}");
    }
    let progress = (!quiet && std::io::stderr().is_terminal())
        .then(|| ProgressBar::start(ctx.progress().clone()));
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::new(stdout.lock());
    let result = match &output {
        Some(dir) => job.run(ctx, Output::Dir(dir.clone())),
        None => job.run(ctx, Output::Writer(&mut lock)),
    };
    if let Some(p) = progress {
        p.finish();
    }
    if let Err(e) = lock.flush()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(Error::Internal(format!("writing to stdout: {e}")));
    }
    let report = result?;
    for w in &report.warnings {
        eprintln!("spate: warning: {w}");
    }
    eprint!("{}", report.format_counters());
    for (task, status) in &report.statuses {
        eprintln!("status of {task}: {status}");
    }
    match &report.output {
        Some(s) => eprintln!(
            "spate: job {} wrote {} lines to {} ({} part files) in {:.3}s",
            report.job_id,
            s.rows,
            s.path.display(),
            s.files,
            start.elapsed().as_secs_f64()
        ),
        None => eprintln!(
            "spate: job {} printed {} lines in {:.3}s",
            report.job_id,
            report.lines,
            start.elapsed().as_secs_f64()
        ),
    }
    Ok(())
}

fn demo(args: &DemoArgs) -> Result<()> {
    let bytes = spate::context::parse_bytes(&args.size)? as u64;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("spate-demo"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let text = dir.join(format!("corpus-{bytes}.txt"));
    if std::fs::metadata(&text)
        .map(|m| m.len() < bytes)
        .unwrap_or(true)
    {
        let t = Instant::now();
        eprintln!("generating {} of text in {} ...", args.size, text.display());
        spate::jobs::corpus::write_file(&text, bytes, 42)
            .map_err(|e| Error::Internal(format!("writing {}: {e}", text.display())))?;
        eprintln!("  done in {:.2}s", t.elapsed().as_secs_f64());
    }
    let mut config = Context::builder();
    if let Some(t) = args.threads {
        config.threads(t);
    }
    let ctx = config.build()?;
    let inputs = vec![text.clone()];
    println!(
        "input: {} ({:.0} MiB), {} threads",
        text.display(),
        bytes as f64 / (1u64 << 20) as f64,
        ctx.threads()
    );

    let out = dir.join(format!("wordcount-{}", std::process::id()));
    let t = Instant::now();
    let summary = jobs::build(&ctx, Job::WordCount, Face::Dataset, &inputs)?.write_text(&out)?;
    let wc_secs = t.elapsed().as_secs_f64();
    println!(
        "word count: {} distinct words written to {} in {wc_secs:.3}s",
        summary.rows,
        summary.path.display()
    );
    let top = ctx
        .read_text(&inputs)?
        .flat_map_lines(|line, out| words(line).for_each(|w| out.push(w)))
        .count_by_value()
        .top_by(10, jobs::by_count_then_word)
        .collect()?;
    println!("top words:");
    for (w, c) in &top {
        println!("  {w:<12} {c}");
    }
    let t = Instant::now();
    let best = jobs::build(&ctx, Job::MostUsedWord, Face::Dataset, &inputs)?.collect()?;
    let mu_secs = t.elapsed().as_secs_f64();
    if let Some((w, c)) = best.first() {
        println!("most used word: {w}\t{c} ({mu_secs:.3}s)");
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

fn build(args: &RunArgs) -> Result<(Context, Dataset<(Word, u64)>)> {
    let ctx = context(
        args.engine.threads,
        args.engine.memory_limit.as_deref(),
        args.cluster.as_deref(),
    )?;
    if args.window.is_some() {
        return Err(Error::Usage("--window goes with windowed-wordcount".into()));
    }
    let job = match args.job {
        JobArg::Wordcount => Job::WordCount,
        JobArg::MostUsedWord => Job::MostUsedWord,
        JobArg::WindowedWordcount => {
            return Err(Error::Usage(
                "windowed-wordcount has no plan to explain here; run it with `spate run`".into(),
            ));
        }
    };
    let face = match args.face.unwrap_or_default() {
        FaceArg::Dataset => Face::Dataset,
        FaceArg::Pipeline => Face::Pipeline,
        FaceArg::Mapreduce => Face::MapReduce,
    };
    let ds = jobs::build(&ctx, job, face, &args.input)?;
    Ok((ctx, ds))
}

fn run_job(args: &RunArgs) -> Result<()> {
    if args.analyze {
        return Err(Error::Usage(
            "--analyze goes with explain: `spate explain JOB -i INPUT --analyze` runs the job \
             and shows each step's rows and time"
                .into(),
        ));
    }
    if matches!(args.job, JobArg::WindowedWordcount) {
        if args.face.is_some() || args.cluster.is_some() {
            return Err(Error::Usage(
                "windowed-wordcount runs on this machine with spate's stream pipeline: \
                 drop --face and --cluster"
                    .into(),
            ));
        }
        return stream::batch(
            &args.input,
            &args.output,
            args.window.as_deref(),
            args.engine.threads,
            args.engine.memory_limit.as_deref(),
        );
    }
    let start = Instant::now();
    let (ctx, ds) = build(args)?;
    let progress = (!args.engine.quiet && std::io::stderr().is_terminal())
        .then(|| ProgressBar::start(ctx.progress().clone()));
    let result = if args.output == "-" {
        print_stdout(ds)
    } else {
        ds.write_text(&args.output).map(Some)
    };
    if let Some(p) = progress {
        p.finish();
    }
    let summary = result?;
    if let Some(s) = summary {
        eprintln!(
            "spate: wrote {} rows to {} ({} part files) in {:.3}s",
            s.rows,
            s.path.display(),
            s.files,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Prints rows as `key<TAB>value` lines; a closed pipe (`| head`) is not an error.
fn print_stdout(ds: Dataset<(Word, u64)>) -> Result<Option<WriteSummary>> {
    let batches = ds.collect_batches()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for b in &batches {
        let text = spate::io::sink::batch_to_text(b).map_err(spate::error::from_df)?;
        if let Err(e) = out.write_all(&text) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(None);
            }
            return Err(Error::Internal(format!("writing to stdout: {e}")));
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Internal(format!("writing to stdout: {e}")))
        }
        _ => Ok(None),
    }
}

/// A progress bar on stderr for jobs that run over a second.
struct ProgressBar {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    fn start(progress: Arc<Progress>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut bar: Option<indicatif::ProgressBar> = None;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let b = bar.get_or_insert_with(|| {
                    let b = indicatif::ProgressBar::new(progress.bytes_total().max(1));
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
                    ) {
                        b.set_style(style);
                    }
                    b
                });
                b.set_position(progress.bytes_read());
                b.set_message(format!("{} rows", progress.rows_read()));
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Self {
            done,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the command line (unique names, ...), which
    /// otherwise only run when a debug build parses that subcommand.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
