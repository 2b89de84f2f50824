//! TPC-H at scale factor 0.1: the 22 queries through `SqlSession` on data
//! from `tpchgen-cli` (`pip install tpchgen-cli`; `scripts/test.sh` installs
//! it), compared with answers computed by DuckDB (`tests/tpch/answers.py`,
//! see `tests/tpch/README.md`). Numbers match to 1e-6 relative. Shared by
//! `tests/tpch.rs` and the cluster's differential tests.

use std::path::{Path, PathBuf};

use spate_core::context::Context;
use spate_sql::{Outcome, SqlSession, split};

const TABLES: [&str; 8] = [
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spate-sql/tests/tpch")
}

/// The generated data, made once per package's target directory.
pub fn data() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tpch-sf0.1");
    if dir.join("lineitem.parquet").exists() {
        return dir;
    }
    let staging = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let status = std::process::Command::new("tpchgen-cli")
        .args(["parquet", "-s", "0.1", "--output-dir"])
        .arg(staging.path())
        .status()
        .expect("tpchgen-cli generates the TPC-H data: pip install tpchgen-cli");
    assert!(status.success());
    // Another test run may have won the race; either copy is complete.
    let _ = std::fs::rename(staging.keep(), &dir);
    dir
}

fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Runs the 22 queries on `ctx` over the data in `data`: the failures.
pub fn run_all(ctx: &Context, data: &Path) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    let mut session = SqlSession::open(ctx, home.path()).unwrap();
    for t in TABLES {
        session
            .run(&format!(
                "CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{}'",
                data.join(format!("{t}.parquet")).display()
            ))
            .unwrap();
    }
    let mut failures = Vec::new();
    for n in 1..=22 {
        let text = std::fs::read_to_string(here().join(format!("queries/q{n}.sql"))).unwrap();
        let mut rows = None;
        for piece in split::split(&text) {
            match session.run(piece.text) {
                Ok(Outcome::Rows { batches, .. }) => {
                    rows = Some(spate_sql::format::text_rows(&batches).unwrap());
                }
                Ok(Outcome::Done(_)) => {}
                Err(e) => failures.push(format!("q{n}: {e}")),
            }
        }
        let Some(rows) = rows else { continue };
        let answer = std::fs::read_to_string(here().join(format!("answers/q{n}.tsv"))).unwrap();
        let want: Vec<Vec<&str>> = answer
            .lines()
            .skip(1)
            .map(|l| l.split('\t').collect())
            .collect();
        if rows.len() != want.len() {
            failures.push(format!(
                "q{n}: {} rows, expected {}",
                rows.len(),
                want.len()
            ));
            continue;
        }
        for (i, (got, exp)) in rows.iter().zip(&want).enumerate() {
            let ok = got.len() == exp.len() && got.iter().zip(exp).all(|(g, e)| same(g, e));
            if !ok {
                failures.push(format!("q{n} row {}: got {got:?}, expected {exp:?}", i + 1));
                break;
            }
        }
    }
    failures
}
