//! TPC-H, side by side: the 22 queries through spate's SQL session, through
//! DataFusion used directly (a plain `SessionContext` on the same files:
//! spate's own overhead), and through DuckDB (`pip install duckdb`) when it
//! is installed. Prints each query's best time and the ratios; checks that
//! spate and DataFusion return the same number of rows.
//!
//! ```text
//! cargo bench -p spate-sql --bench tpch                      # scale factor 1
//! SPATE_TPCH_SCALE=0.1 SPATE_BENCH_RUNS=3 cargo bench -p spate-sql --bench tpch
//! ```
//! Data comes from `tpchgen-cli` (`pip install tpchgen-cli`), generated once
//! into the target directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use spate_core::context::Context;
use spate_sql::{Outcome, SqlSession, split};

const TABLES: [&str; 8] = [
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

fn queries() -> Vec<(usize, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tpch/queries");
    (1..=22)
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(format!("q{n}.sql"))).unwrap();
            (n, text)
        })
        .collect()
}

fn data(scale: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tpch-sf{scale}"));
    if !dir.join("lineitem.parquet").exists() {
        eprintln!("generating TPC-H scale factor {scale} in {}", dir.display());
        let staging = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ok = Command::new("tpchgen-cli")
            .args(["parquet", "-s", scale, "--output-dir"])
            .arg(staging.path())
            .status()
            .expect("pip install tpchgen-cli")
            .success();
        assert!(ok);
        std::fs::rename(staging.keep(), &dir).unwrap();
    }
    dir
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        out = Some(f());
        best = best.min(t.elapsed());
    }
    (best, out.unwrap())
}

/// Rows of the last result of a query's statements, through spate.
fn run_spate(session: &mut SqlSession<'_>, text: &str) -> usize {
    let mut rows = 0;
    for piece in split::split(text) {
        if let Outcome::Rows { batches, .. } = session.run(piece.text).unwrap() {
            rows = batches.iter().map(|b| b.num_rows()).sum();
        }
    }
    rows
}

/// The same through a plain DataFusion context.
fn run_datafusion(rt: &tokio::runtime::Runtime, ctx: &SessionContext, text: &str) -> usize {
    let mut rows = 0;
    for piece in split::split(text) {
        let batches = rt
            .block_on(async { ctx.sql(piece.text).await?.collect().await })
            .unwrap();
        if !batches.is_empty() {
            rows = batches.iter().map(|b| b.num_rows()).sum();
        }
    }
    rows
}

/// DuckDB's best time per query (seconds), or `None` if it is not installed.
fn duckdb_times(data: &Path, runs: usize) -> Option<Vec<f64>> {
    let script = format!(
        r#"
import sys, time, duckdb
con = duckdb.connect()
con.execute("SET threads TO {threads}")
for t in {tables:?}:
    con.execute(f"CREATE VIEW {{t}} AS SELECT * FROM read_parquet('{data}/{{t}}.parquet')")
for n in range(1, 23):
    text = open(f"{queries}/q{{n}}.sql").read()
    statements = [s for s in text.split(";") if s.strip()]
    best = None
    for _ in range({runs}):
        t = time.perf_counter()
        for s in statements:
            r = con.sql(s)
            if r is not None:
                r.fetchall()
        e = time.perf_counter() - t
        best = e if best is None else min(best, e)
    print(best)
"#,
        threads = std::thread::available_parallelism().map_or(2, |n| n.get()),
        tables = TABLES,
        data = data.display(),
        queries = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tpch/queries")
            .display(),
        runs = runs,
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "DuckDB skipped: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .map(|l| l.trim().parse().ok())
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scale = std::env::var("SPATE_TPCH_SCALE").unwrap_or_else(|_| "1".into());
    let runs: usize = std::env::var("SPATE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let data = data(&scale);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("TPC-H scale factor {scale}, {threads} threads, best of {runs}");

    let home = tempfile::tempdir().unwrap();
    let ctx = Context::new().unwrap();
    let mut session = SqlSession::open(&ctx, home.path()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let df = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(threads),
    );
    for t in TABLES {
        let location = data.join(format!("{t}.parquet"));
        let sql = format!(
            "CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{}'",
            location.display()
        );
        session.run(&sql).unwrap();
        rt.block_on(async { df.sql(&sql).await?.collect().await })
            .unwrap();
    }

    let duck = duckdb_times(&data, runs);
    println!(
        "{:<6} {:>10} {:>12} {:>10} {:>14} {:>14}",
        "query", "spate s", "datafusion s", "duckdb s", "spate/DF", "spate/duckdb"
    );
    let (mut total_spate, mut total_df, mut total_duck) = (0.0, 0.0, 0.0);
    for (n, text) in queries() {
        let (t_spate, rows_spate) = best(runs, || run_spate(&mut session, &text));
        let (t_df, rows_df) = best(runs, || run_datafusion(&rt, &df, &text));
        assert_eq!(rows_spate, rows_df, "q{n}: row counts differ");
        let s = t_spate.as_secs_f64();
        let d = t_df.as_secs_f64();
        total_spate += s;
        total_df += d;
        let k = duck.as_ref().map(|v| v[n - 1]);
        if let Some(k) = k {
            total_duck += k;
        }
        println!(
            "q{n:<5} {s:>10.3} {d:>12.3} {:>10} {:>14.2} {:>14}",
            k.map_or("-".into(), |k| format!("{k:.3}")),
            s / d,
            k.map_or("-".into(), |k| format!("{:.2}", s / k)),
        );
    }
    println!(
        "total  {total_spate:>10.3} {total_df:>12.3} {:>10} {:>14.2} {:>14}",
        duck.as_ref()
            .map_or("-".into(), |_| format!("{total_duck:.3}")),
        total_spate / total_df,
        duck.as_ref()
            .map_or("-".into(), |_| format!("{:.2}", total_spate / total_duck)),
    );
}
