//! What the TPC-H benchmarks share (spate-sql's `tpch` and spate's
//! `cluster`, which includes this file by path): the data, generated once,
//! and how two answers are compared.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A query's answer: its rows, values as text.
pub type Rows = Vec<Vec<String>>;

/// TPC-H data at `scale` as Parquet (`pip install tpchgen-cli`), generated
/// once into `target_tmp` (the workspace's `target/tmp`).
pub fn data(target_tmp: &Path, scale: &str) -> PathBuf {
    let dir = target_tmp.join(format!("tpch-sf{scale}"));
    if !dir.join("lineitem.parquet").exists() {
        eprintln!("generating TPC-H scale factor {scale} in {}", dir.display());
        let staging = tempfile::tempdir_in(target_tmp).unwrap();
        let ok = Command::new("tpchgen-cli")
            .args(["parquet", "-s", scale, "--output-dir"])
            .arg(staging.path())
            .status()
            .expect("pip install tpchgen-cli")
            .success();
        assert!(ok, "tpchgen-cli failed");
        std::fs::rename(staging.keep(), &dir).unwrap();
    }
    dir
}

/// Whether two answers agree: the same rows in the same order, values equal
/// as text or as numbers to 1e-6 relative (engines, and one engine on
/// another split, add and average in another order), NULL as `NULL`.
pub fn same_answer(a: &Rows, b: &Rows) -> bool {
    let same = |x: &str, y: &str| {
        x == y
            || match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
                _ => false,
            }
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(r, s)| r.len() == s.len() && r.iter().zip(s).all(|(x, y)| same(x, y)))
}
