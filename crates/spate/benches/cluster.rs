//! Word count on real English text, locally and on clusters of 1, 2 and 3
//! executors on this host, beside the hand-tuned reference program
//! (`../shared/reference/wordcount`, `wc`), plus a trivial job (4 KiB) on a
//! warm cluster against the same job run locally. Every side gets the same
//! runs and has its output checked against the reference's. On 2 cores no
//! speed-up is expected from more executors: the figures show what the
//! cluster path costs.
//!
//! This benchmark is its own job binary (`spate::cluster::main`): the
//! clusters it starts run it as their executors, and it runs itself as the
//! driver.
//!
//! ```text
//! cargo bench -p spate --bench cluster                   # corpus_1g.txt
//! SPATE_BENCH_CORPUS=100m cargo bench -p spate --bench cluster
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use spate::cluster::launch::{LocalCluster, UpOptions};
use spate::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set when this binary runs as the benchmark's driver.
const JOB_ENV: &str = "SPATE_BENCH_CLUSTER_JOB";

fn job(ctx: &Context, args: &[String]) -> Result<()> {
    let [input, output] = args else {
        return Err(Error::Usage("usage: INPUT OUTPUT".into()));
    };
    ctx.read_text(&[input])?
        .flat_map(into_words)
        .count_by_value()
        .map(|(word, n)| (word.to_string(), n))
        .write_text(output)?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "cluster") || std::env::var_os(JOB_ENV).is_some() {
        return spate::cluster::main(job);
    }
    bench();
    ExitCode::SUCCESS
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference")
}

/// The real-text corpora, made once by the reference's script.
fn corpus(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus");
    let path = dir.join(format!("corpus_{name}.txt"));
    if !path.exists() {
        let status = Command::new("bash")
            .arg(reference_dir().join("corpus/make_corpus.sh"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "make_corpus.sh failed");
    }
    path
}

/// The reference word count, built once outside the project.
fn reference_wc() -> PathBuf {
    let target = Path::new(&std::env::var("HOME").unwrap()).join(".cache/reference-wordcount");
    let exe = target.join("release/reference-wordcount");
    if !exe.exists() {
        let status = Command::new("cargo")
            .args(["build", "--release", "--manifest-path"])
            .arg(reference_dir().join("wordcount/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .unwrap();
        assert!(status.success(), "building the reference word count failed");
    }
    exe
}

/// The lines of a file or of a directory's part files, sorted.
fn answer(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    lines.sort_unstable();
    lines
}

/// Runs `command` (writing to `out`) `runs` times: the best time; fails on
/// a non-zero exit or an answer other than `want`.
fn timed(
    what: &str,
    runs: usize,
    out: &Path,
    want: &[String],
    mut command: impl FnMut() -> Command,
) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_file(out);
        let start = Instant::now();
        let result = command().output().unwrap();
        let took = start.elapsed();
        assert!(
            result.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(answer(out) == want, "{what}: wrong answer");
        best = best.min(took);
    }
    best
}

fn bench() {
    let runs: usize = std::env::var("SPATE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let name = std::env::var("SPATE_BENCH_CORPUS").unwrap_or_else(|_| "1g".into());
    let input = corpus(&name);
    let tiny = corpus("tiny");
    let me = std::env::current_exe().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let wc = reference_wc();
    let size = std::fs::metadata(&input).unwrap().len();
    println!(
        "word count, {} ({:.0} MiB of real text), best of {runs}, 2 cores",
        input.display(),
        size as f64 / 1048576.0
    );

    // The reference, then spate locally: the floor and the local figure.
    let ref_out = work.path().join("reference.tsv");
    let status = Command::new(&wc)
        .arg("wc")
        .arg(&input)
        .arg(&ref_out)
        .status()
        .unwrap();
    assert!(status.success());
    let want = answer(&ref_out);
    let reference = timed("reference wc", runs, &ref_out, &want, || {
        let mut c = Command::new(&wc);
        c.arg("wc").arg(&input).arg(&ref_out);
        c
    });
    let job_cmd = |cluster: Option<&str>, input: &Path| {
        let mut c = Command::new(&me);
        c.env(JOB_ENV, "1").arg(input).arg(&out);
        match cluster {
            Some(addr) => c.env("SPATE_CLUSTER", addr),
            None => c.env_remove("SPATE_CLUSTER"),
        };
        c
    };
    let local = timed("spate locally", runs, &out, &want, || job_cmd(None, &input));
    let mut rows = vec![
        ("reference wc".to_string(), reference),
        ("spate, local".into(), local),
    ];

    // Clusters of 1, 2, 3 executors (the cores shared among them).
    let mut trivial = None;
    for executors in 1..=3usize {
        let cluster = LocalCluster::start(&UpOptions {
            program: me.clone(),
            executors,
            slots: (2 / executors).max(1),
            host: "127.0.0.1".into(),
            port: 0,
            work_dir: work.path().join(format!("cluster-{executors}")),
            tie_to_parent: true,
            job_args: vec![
                input.to_string_lossy().into_owned(),
                out.to_string_lossy().into_owned(),
            ],
        })
        .unwrap();
        let addr = cluster.address().to_string();
        let t = timed(&format!("{executors} executors"), runs, &out, &want, || {
            job_cmd(Some(&addr), &input)
        });
        rows.push((format!("spate, {executors} executor(s)"), t));
        if executors == 2 {
            // A trivial job on this warm cluster, and the same job locally.
            let tiny_want = {
                let status = Command::new(&wc)
                    .arg("wc")
                    .arg(&tiny)
                    .arg(&ref_out)
                    .status()
                    .unwrap();
                assert!(status.success());
                answer(&ref_out)
            };
            let on_cluster = timed("trivial job on the cluster", runs, &out, &tiny_want, || {
                job_cmd(Some(&addr), &tiny)
            });
            let locally = timed("trivial job locally", runs, &out, &tiny_want, || {
                job_cmd(None, &tiny)
            });
            trivial = Some((on_cluster, locally));
        }
    }

    println!(
        "{:<28} {:>10} {:>12} {:>12}",
        "", "time", "vs wc", "vs local"
    );
    for (what, t) in &rows {
        println!(
            "{what:<28} {:>9.2}s {:>11.2}x {:>11.2}x",
            t.as_secs_f64(),
            t.as_secs_f64() / reference.as_secs_f64(),
            t.as_secs_f64() / local.as_secs_f64()
        );
    }
    if let Some((on_cluster, locally)) = trivial {
        println!(
            "trivial job (4 KiB, process start to exit): {:.0} ms on a warm 2-executor cluster, {:.0} ms locally ({:.1}x)",
            on_cluster.as_secs_f64() * 1000.0,
            locally.as_secs_f64() * 1000.0,
            on_cluster.as_secs_f64() / locally.as_secs_f64()
        );
    }
}
