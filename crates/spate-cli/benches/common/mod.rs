//! Helpers shared by the benchmarks: sizes, best-of timing, generated text.
#![allow(dead_code)]

pub mod reference;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use spate::jobs::corpus;

/// `100MiB`, `1GiB`, ... as bytes.
pub fn parse_size(s: &str) -> u64 {
    spate::context::parse_bytes(s).unwrap() as u64
}

/// The best time of `runs` runs of `f`, and the last result.
pub fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.unwrap())
}

/// The deterministic English-like benchmark text of at least `bytes` bytes,
/// generated once into the target directory.
pub fn data_file(bytes: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("corpus-{bytes}.txt"));
    if std::fs::metadata(&path)
        .map(|m| m.len() < bytes)
        .unwrap_or(true)
    {
        eprintln!("generating {} of text at {}", bytes, path.display());
        corpus::write_file(&path, bytes, 42).unwrap();
    }
    path
}

/// Runs from `SPATE_BENCH_RUNS` (default `default`).
pub fn runs(default: usize) -> usize {
    std::env::var("SPATE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
