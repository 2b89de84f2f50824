//! Hadoop Streaming and mrjob, side by side:
//!
//! 1. one mrjob word-frequency script (`tests/fixtures/mrjob/mr_word_freq.py`)
//!    run by `spate mrjob` and by mrjob's own `-r local` runner;
//! 2. word count as a Hadoop Streaming job with an awk mapper, combiner and
//!    reducer, vs the engine's native Dataset word count (`spate run`).
//!
//! Every side gets the same number of runs (`SPATE_BENCH_RUNS`, best of
//! each) and has its answer checked against the others; any side that fails
//! fails the benchmark. Prints times and ratios.
//!
//! The input is the reference's real English text (`corpus_100m.txt`, made
//! by `../shared/reference/corpus/make_corpus.sh`); `SPATE_BENCH_INPUT=1g`
//! takes its 1 GiB corpus, `SPATE_BENCH_INPUT=generated` the generated
//! English-like text of `SPATE_BENCH_BYTES` (default 100 MiB).
//!
//! ```text
//! cargo bench -p spate-cli --bench streaming                         # 100 MiB of real text
//! SPATE_BENCH_INPUT=generated SPATE_BENCH_BYTES=1GiB SPATE_BENCH_RUNS=1 cargo bench -p spate-cli --bench streaming
//! SPATE_BENCH_SKIP_MRJOB=1 cargo bench -p spate-cli --bench streaming # spate only
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::reference::corpus;
use common::{best_of, data_file, parse_size};

/// Awk word count tasks: the mapper tokenizes like spate's default tokenizer
/// (runs of `[A-Za-z']`, lowercased); the reducer sums contiguous keys.
const AWK_MAPPER: &str = r#"awk '{ n = split(tolower($0), w, /[^a-z'"'"']+/); for (i = 1; i <= n; i++) if (w[i] != "") print w[i] "\t1" }'"#;
const AWK_REDUCER: &str = r#"awk -F '\t' '$1 != k { if (NR > 1) print k "\t" t; k = $1; t = 0 } { t += $2 } END { if (NR > 0) print k "\t" t }'"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A command in a standard environment: with PYTHONUNBUFFERED set (some
/// sandboxes set it) Python tasks make one syscall per record, on both sides.
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("PYTHONUNBUFFERED");
    cmd
}

/// Runs `cmd`, panicking with its stderr if it fails.
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `word<TAB>count` lines of every part file in `dir`; mrjob's JSON-quoted
/// keys are unquoted.
fn read_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let (k, v) = line.split_once('\t').unwrap();
            let k = k.trim_matches('"').to_string();
            assert!(out.insert(k, v.parse().unwrap()).is_none(), "{line}");
        }
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let input = std::env::var("SPATE_BENCH_INPUT").unwrap_or_else(|_| "100m".into());
    let (path, kind) = match input.as_str() {
        "generated" => {
            let bytes = std::env::var("SPATE_BENCH_BYTES").unwrap_or_else(|_| "100MiB".into());
            (data_file(parse_size(&bytes)), "generated text")
        }
        name => (corpus(name), "real text"),
    };
    let runs = common::runs(1);
    let mib = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    println!("streaming word count on {mib:.0} MiB of {kind}, {threads} threads, best of {runs}");
    let exe = env!("CARGO_BIN_EXE_spate");
    let work = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut out_dir = || {
        n += 1;
        work.path().join(format!("out-{n}"))
    };

    let script = fixture("mrjob/mr_word_freq.py");
    let mut spate_mrjob = None;
    let (t_spate_mrjob, _) = best_of(runs, || {
        let out = out_dir();
        run(command(exe)
            .args(["mrjob", "--quiet"])
            .arg(&script)
            .arg(&path)
            .arg("-o")
            .arg(&out));
        spate_mrjob = Some(read_counts(&out));
    });
    let spate_mrjob = spate_mrjob.unwrap();

    let (t_separate, _) = best_of(runs, || {
        let out = out_dir();
        run(command(exe)
            .args(["mrjob", "--quiet", "--separate-combiner"])
            .arg(&script)
            .arg(&path)
            .arg("-o")
            .arg(&out));
        assert_eq!(read_counts(&out), spate_mrjob);
    });

    let mut t_local = None;
    if std::env::var_os("SPATE_BENCH_SKIP_MRJOB").is_none() {
        // The same number of runs as spate's sides: best against best.
        let (t, counts) = best_of(runs, || {
            let out = out_dir();
            run(command("python3")
                .arg(&script)
                .args(["-r", "local", "--no-conf", "-o"])
                .arg(&out)
                .arg(&path));
            read_counts(&out)
        });
        assert_eq!(counts, spate_mrjob, "mrjob -r local and spate mrjob differ");
        t_local = Some(t);
    }

    let (t_native, native) = best_of(runs, || {
        let out = out_dir();
        run(command(exe)
            .args(["run", "wordcount", "--quiet", "-i"])
            .arg(&path)
            .arg("-o")
            .arg(&out));
        read_counts(&out)
    });
    assert_eq!(native, spate_mrjob, "native and mrjob word counts differ");

    let mut awk_job = |combiner: &[&str]| {
        best_of(runs, || {
            let out = out_dir();
            run(command(exe)
                .args(["streaming", "--quiet", "-input"])
                .arg(&path)
                .arg("-output")
                .arg(&out)
                .args(["-mapper", AWK_MAPPER, "-reducer", AWK_REDUCER])
                .args(combiner));
            read_counts(&out)
        })
    };
    let (t_awk, awk) = awk_job(&["-combiner", AWK_REDUCER]);
    assert_eq!(awk, native, "awk streaming and native word counts differ");
    let (t_awk_nocomb, awk) = awk_job(&[]);
    assert_eq!(awk, native, "awk streaming (no combiner) and native differ");

    let secs = |d: Duration| d.as_secs_f64();
    println!("{:<52} {:>9} {:>8}", "program", "seconds", "ratio");
    let line = |name: &str, t: Duration, base: Duration| {
        println!("{name:<52} {:>9.3} {:>8.2}", secs(t), secs(t) / secs(base));
    };
    println!("-- mrjob word frequency (ratio: mrjob -r local / spate; higher is better)");
    println!(
        "{:<52} {:>9.3} {:>8}",
        "spate mrjob mr_word_freq.py",
        secs(t_spate_mrjob),
        "1.00"
    );
    println!(
        "{:<52} {:>9.3} {:>8}",
        "spate mrjob --separate-combiner",
        secs(t_separate),
        "-"
    );
    if let Some(t) = t_local {
        println!(
            "{:<52} {:>9.3} {:>8.2}",
            "python3 mr_word_freq.py -r local",
            secs(t),
            secs(t) / secs(t_spate_mrjob)
        );
        println!(
            "mrjob -r local / spate mrjob: {:.2}x; / spate mrjob --separate-combiner: {:.2}x",
            secs(t) / secs(t_spate_mrjob),
            secs(t) / secs(t_separate)
        );
    }
    println!("-- Hadoop Streaming word count (ratio: time / native spate)");
    line("spate run wordcount (native Dataset)", t_native, t_native);
    line(
        "spate streaming, awk mapper+combiner+reducer",
        t_awk,
        t_native,
    );
    line(
        "spate streaming, awk mapper+reducer, no combiner",
        t_awk_nocomb,
        t_native,
    );
    println!(
        "throughput: spate mrjob {:.1} MiB/s, awk streaming {:.1} MiB/s, native {:.1} MiB/s",
        mib / secs(t_spate_mrjob),
        mib / secs(t_awk),
        mib / secs(t_native)
    );
}
