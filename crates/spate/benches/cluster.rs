//! The cluster path, measured: word count on real English text and TPC-H
//! (q1, q3, q5, q18), locally and on clusters of 1, 2 and 3 executors on
//! this host, plus a trivial job on a warm cluster and the overhead the
//! cluster path adds per stage.
//!
//! - Word count runs beside the hand-tuned reference program
//!   (`../shared/reference/wordcount`, `wc`), each run a whole process
//!   (start to exit, output written); every side's output is checked against
//!   the reference's.
//! - TPC-H runs in this process through spate's SQL session, locally and on
//!   each cluster (Parquet from `tpchgen-cli`, `pip install tpchgen-cli`);
//!   every cluster's answers are checked against the local ones. Each query's
//!   stages on the cluster are counted from the scheduler's REST API.
//! - The overhead per stage: four small queries on the 25-row `nation`
//!   table (1 to 5 stages) on each cluster; a line fitted through (stages,
//!   time) gives the cost per stage (its slope) and per job (its intercept).
//!
//! Every side gets the same runs (`SPATE_BENCH_RUNS`, default 3: the best is
//! shown). On 2 cores no speed-up is expected from more executors: the
//! figures show what the cluster path costs.
//!
//! This benchmark is its own job binary (`spate::cluster::main`): the
//! clusters it starts run it as their executors, and it runs itself as the
//! word-count driver.
//!
//! ```text
//! cargo bench -p spate --bench cluster                   # corpus_1g.txt, TPC-H SF 1
//! SPATE_BENCH_CORPUS=100m SPATE_TPCH_SCALE=0.1 cargo bench -p spate --bench cluster
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use spate::cluster::launch::{LocalCluster, UpOptions};
use spate::prelude::*;
use tpch_common::{Rows, same_answer};

#[path = "../../spate-sql/benches/tpch_common/mod.rs"]
mod tpch_common;

#[path = "../../spate-cli/benches/common/reference.rs"]
mod reference;
use reference::{answer, corpus, reference_wc};

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

/// The TPC-H tables, as `tpchgen-cli` names their files.
const TPCH_TABLES: [&str; 8] = [
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

/// The TPC-H queries measured.
const TPCH_QUERIES: [usize; 4] = [1, 3, 5, 18];

/// Small queries (25 and 5 rows) with more and more stages on a cluster:
/// what they cost there is the cluster path's own.
const SMALL: [&str; 4] = [
    "SELECT n_name FROM nation WHERE n_nationkey = 7",
    "SELECT n_regionkey, count(*) FROM nation GROUP BY n_regionkey ORDER BY n_regionkey",
    "SELECT r_name, count(*) AS n FROM nation JOIN region ON n_regionkey = r_regionkey \
     GROUP BY r_name ORDER BY n DESC, r_name",
    "SELECT c, count(*) FROM (SELECT n_regionkey, count(*) AS c FROM nation \
     GROUP BY n_regionkey) GROUP BY c ORDER BY c",
];

/// One query on one side: the best time, the answer and (on a cluster) the
/// stages the scheduler ran.
struct Measured {
    best: Duration,
    rows: Rows,
    stages: usize,
}

/// The TPC-H queries, then the small ones, through spate's SQL session on
/// `ctx` (local or on a cluster), each `runs` times.
fn run_sql(ctx: &Context, data: &Path, runs: usize) -> Vec<Measured> {
    let home = tempfile::tempdir().unwrap();
    let mut session = spate::sql::SqlSession::open(ctx, home.path()).unwrap();
    for t in TPCH_TABLES {
        let location = data.join(format!("{t}.parquet"));
        session
            .run(&format!(
                "CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{}'",
                location.display()
            ))
            .unwrap();
    }
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spate-sql/tests/tpch/queries");
    let texts = TPCH_QUERIES
        .iter()
        .map(|n| std::fs::read_to_string(queries.join(format!("q{n}.sql"))).unwrap())
        .chain(SMALL.iter().map(|q| q.to_string()));
    let mut measured = Vec::new();
    for text in texts {
        let mut best = Duration::MAX;
        let mut rows = Rows::new();
        let mut stages = 0;
        for _ in 0..runs {
            let mark = ctx.cluster_jobs().mark();
            let start = Instant::now();
            for piece in spate::sql::split::split(&text) {
                if let spate::sql::Outcome::Rows { batches, .. } = session.run(piece.text).unwrap()
                {
                    rows = spate::sql::format::text_rows(&batches).unwrap();
                }
            }
            best = best.min(start.elapsed());
            if let Some(addr) = ctx.cluster() {
                stages = ctx
                    .cluster_jobs()
                    .since(mark)
                    .iter()
                    .map(|id| {
                        let doc = spate::cluster::rest_json(addr, &format!("/api/job/{id}/stages"))
                            .unwrap();
                        doc["stages"].as_array().map_or(0, Vec::len)
                    })
                    .sum();
            }
        }
        measured.push(Measured { best, rows, stages });
    }
    measured
}

/// The least-squares line through `(stages, seconds)`: (seconds per stage,
/// seconds per job).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

fn bench() {
    let runs: usize = std::env::var("SPATE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let name = std::env::var("SPATE_BENCH_CORPUS").unwrap_or_else(|_| "1g".into());
    let scale = std::env::var("SPATE_TPCH_SCALE").unwrap_or_else(|_| "1".into());
    let input = corpus(&name);
    let tiny = corpus("tiny");
    let data = tpch_common::data(Path::new(env!("CARGO_TARGET_TMPDIR")), &scale);
    let me = std::env::current_exe().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let wc = reference_wc();
    let size = std::fs::metadata(&input).unwrap().len();
    println!(
        "word count on {} ({:.0} MiB of real text) and TPC-H SF {scale} (q{}), best of {runs}, \
         {} cores",
        input.display(),
        size as f64 / 1048576.0,
        TPCH_QUERIES.map(|n| n.to_string()).join(", q"),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
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
    let local_sql = run_sql(&Context::new().unwrap(), &data, runs);
    let mut sql_sides = Vec::new();

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
        let ctx = Context::builder().cluster(addr).build().unwrap();
        let measured = run_sql(&ctx, &data, runs);
        for (i, (m, l)) in measured.iter().zip(&local_sql).enumerate() {
            assert!(
                same_answer(&m.rows, &l.rows),
                "query {} on {executors} executor(s) answers differently: {} rows, locally {}",
                i + 1,
                m.rows.len(),
                l.rows.len()
            );
        }
        sql_sides.push((executors, measured));
    }

    println!("\nword count (each run a whole process, output written)");
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

    println!(
        "\nTPC-H SF {scale} (in-process SQL session; seconds, stages on the cluster, x local)"
    );
    print!("{:<7} {:>8}", "query", "local");
    for (executors, _) in &sql_sides {
        print!(" {:>22}", format!("{executors} executor(s)"));
    }
    println!();
    let labels = TPCH_QUERIES
        .iter()
        .map(|n| format!("q{n}"))
        .chain((1..=SMALL.len()).map(|i| format!("small{i}")));
    for (i, label) in labels.enumerate() {
        let l = local_sql[i].best.as_secs_f64();
        print!("{label:<7} {l:>7.3}s");
        for (_, measured) in &sql_sides {
            let m = &measured[i];
            let t = m.best.as_secs_f64();
            print!(
                " {:>22}",
                format!("{t:.3}s {:>2} st {:>5.2}x", m.stages, t / l)
            );
        }
        println!();
    }
    println!("small1..4: {}", SMALL.join("; "));
    for (executors, measured) in &sql_sides {
        let points: Vec<(f64, f64)> = measured[TPCH_QUERIES.len()..]
            .iter()
            .map(|m| (m.stages as f64, m.best.as_secs_f64()))
            .collect();
        let (per_stage, per_job) = fit(&points);
        let tpch_over: Vec<String> = TPCH_QUERIES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let m = &measured[i];
                let over = m.best.as_secs_f64() - local_sql[i].best.as_secs_f64();
                format!("q{n} {:.0} ms", over * 1000.0 / m.stages.max(1) as f64)
            })
            .collect();
        println!(
            "{executors} executor(s): the cluster path costs {:.0} ms per stage and {:.0} ms per \
             job (fitted on the small queries); TPC-H, time over local per stage: {}",
            per_stage * 1000.0,
            per_job * 1000.0,
            tpch_over.join(", ")
        );
    }
}
