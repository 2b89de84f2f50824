//! Word count, side by side: a hand-written multi-threaded Rust program (the
//! floor) vs spate's Dataset word count (in-process and as the `spate` CLI),
//! plus the start-up cost of a trivial job (a 4 KiB input, process start to
//! exit), then the same job in polars, DuckDB and PySpark (`pip install
//! polars duckdb pyspark`, and a Java runtime for PySpark). Every side gets
//! the same number of runs and has every word's count checked against
//! spate's; a peer that is missing or crashes fails the benchmark (after
//! the others have run). `SPATE_BENCH_PEERS=polars,duckdb` picks peers,
//! `SPATE_BENCH_PEERS=0` leaves them out. Prints times and ratios.
//!
//! ```text
//! cargo bench -p spate-cli --bench wordcount            # 1 GiB
//! SPATE_BENCH_BYTES=100MiB cargo bench -p spate-cli --bench wordcount
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use spate::jobs::corpus;
use spate::prelude::*;

mod common;
use common::{best_of, data_file, parse_size};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = true;
        t[(c - b'a' + b'A') as usize] = true;
        c += 1;
    }
    t[b'\'' as usize] = true;
    t
};

/// The hand-written program: each thread reads its byte range of the file
/// (adjusted to line ends) in 4 MiB blocks, tokenizes with a byte table,
/// lowercases into a stack buffer and counts in an FxHashMap; maps are merged.
fn handwritten(path: &Path, threads: usize) -> FxHashMap<Box<[u8]>, u64> {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let per = len.div_ceil(threads as u64);
    let maps: Vec<FxHashMap<Box<[u8]>, u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let file = &file;
                s.spawn(move || count_range(file, len, t * per, ((t + 1) * per).min(len)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut it = maps.into_iter();
    let mut total = it.next().unwrap_or_default();
    for m in it {
        for (k, v) in m {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

fn count_range(file: &File, len: u64, start: u64, end: u64) -> FxHashMap<Box<[u8]>, u64> {
    let mut map: FxHashMap<Box<[u8]>, u64> = FxHashMap::default();
    // Start after the first newline at or after start-1 (unless at 0).
    let mut pos = start;
    if start > 0 {
        let mut b = [0u8; 1];
        let mut p = start - 1;
        loop {
            if p >= len || file.read_at(&mut b, p).unwrap() == 0 {
                return map;
            }
            p += 1;
            if b[0] == b'\n' {
                break;
            }
        }
        pos = p;
    }
    let mut buf = vec![0u8; 4 << 20];
    let mut carry = 0usize;
    let mut word = [0u8; 64];
    loop {
        let n = file.read_at(&mut buf[carry..], pos).unwrap();
        let filled = carry + n;
        // Process whole lines that start before `end` (or everything at EOF).
        let mut cut = if n == 0 {
            filled
        } else {
            buf[..filled]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |i| i + 1)
        };
        let block_start = pos - carry as u64;
        let mut stop = false;
        if block_start + cut as u64 > end {
            // Only lines starting at or before `end - 1` are ours.
            let limit = (end - block_start) as usize;
            cut = buf[limit.saturating_sub(1)..filled]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(filled, |i| limit.saturating_sub(1) + i + 1);
            stop = true;
        }
        let data = &buf[..cut];
        let mut i = 0;
        while i < data.len() {
            while i < data.len() && !WORD_BYTE[data[i] as usize] {
                i += 1;
            }
            let s = i;
            while i < data.len() && WORD_BYTE[data[i] as usize] {
                i += 1;
            }
            if i > s {
                let w = &data[s..i];
                let key: &[u8] = if w.len() <= word.len() {
                    for (d, c) in word.iter_mut().zip(w) {
                        *d = c.to_ascii_lowercase();
                    }
                    &word[..w.len()]
                } else {
                    w
                };
                match map.get_mut(key) {
                    Some(c) => *c += 1,
                    None => {
                        map.insert(key.to_ascii_lowercase().into_boxed_slice(), 1);
                    }
                }
            }
        }
        if stop || n == 0 {
            return map;
        }
        buf.copy_within(cut..filled, 0);
        carry = filled - cut;
        pos += n as u64;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bytes = parse_size(&std::env::var("SPATE_BENCH_BYTES").unwrap_or_else(|_| "1GiB".into()));
    let runs = common::runs(3);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let path = data_file(bytes);
    let mib = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
    println!("word count on {mib:.0} MiB, {threads} threads, best of {runs}");

    let (t_hand, hand) = best_of(runs, || handwritten(&path, threads));

    let ctx = Context::new().unwrap();
    let (t_ds, ds) = best_of(runs, || {
        ctx.read_text(&[&path])
            .unwrap()
            .flat_map(into_words)
            .count_by_value()
            .collect()
            .unwrap()
    });
    assert_eq!(ds.len(), hand.len(), "distinct words differ");
    for (w, c) in &ds {
        assert_eq!(hand.get(w.as_bytes()), Some(c), "count of {w}");
    }

    let exe = env!("CARGO_BIN_EXE_spate");
    let out_dir = tempfile::tempdir().unwrap();
    let (t_cli, _) = best_of(runs, || {
        let out = out_dir
            .path()
            .join(format!("wc-{}", Instant::now().elapsed().as_nanos()));
        let st = Command::new(exe)
            .args(["run", "wordcount", "--quiet", "-i"])
            .arg(&path)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        std::fs::remove_dir_all(&out).unwrap();
    });

    let small = out_dir.path().join("small.txt");
    let mut text = Vec::new();
    corpus::write_text(&mut text, 4096, 1).unwrap();
    text.truncate(4096);
    std::fs::write(&small, &text).unwrap();
    let (t_small, _) = best_of(runs.max(10), || {
        let st = Command::new(exe)
            .args(["run", "wordcount", "--quiet", "-i"])
            .arg(&small)
            .output()
            .unwrap();
        assert!(st.status.success());
    });

    let secs = |d: Duration| d.as_secs_f64();
    println!("{:<44} {:>9} {:>8}", "program", "seconds", "ratio");
    println!(
        "{:<44} {:>9.3} {:>8.2}",
        "hand-written Rust (FxHashMap, threads)",
        secs(t_hand),
        1.0
    );
    println!(
        "{:<44} {:>9.3} {:>8.2}",
        "spate Dataset word count (in-process)",
        secs(t_ds),
        secs(t_ds) / secs(t_hand)
    );
    println!(
        "{:<44} {:>9.3} {:>8.2}",
        "spate run wordcount (CLI, sorted output)",
        secs(t_cli),
        secs(t_cli) / secs(t_hand)
    );
    println!(
        "{:<44} {:>9.3} {:>8}",
        "spate run wordcount on 4 KiB (start→exit)",
        secs(t_small),
        "-"
    );
    println!(
        "throughput: spate {:.0} MiB/s, hand-written {:.0} MiB/s",
        mib / secs(t_ds),
        mib / secs(t_hand)
    );
    let chosen = std::env::var("SPATE_BENCH_PEERS").unwrap_or_default();
    if chosen == "0" {
        return;
    }
    let want: FxHashMap<&str, u64> = ds.iter().map(|(w, c)| (w.as_str(), *c)).collect();
    let mut failures = Vec::new();
    for (engine, label) in [
        ("polars", "polars (lazy, str.extract_all)"),
        ("duckdb", "DuckDB (SQL, regexp_extract_all)"),
        ("pyspark", "PySpark local mode (JVM warm)"),
    ] {
        if !chosen.is_empty() && !chosen.split(',').any(|c| c.trim() == engine) {
            continue;
        }
        match peer(engine, &path, threads, runs, out_dir.path()) {
            Ok((t, counts)) => {
                let wrong = counts.len() != want.len()
                    || counts.iter().any(|(w, c)| want.get(w.as_str()) != Some(c));
                if wrong {
                    failures.push(format!(
                        "{engine}: a different answer ({} distinct words, spate {})",
                        counts.len(),
                        want.len()
                    ));
                }
                println!("{label:<44} {t:>9.3} {:>8.2}", t / secs(t_hand));
            }
            Err(e) => {
                println!("{label:<44} {:>9} {:>8}", "FAILED", "-");
                failures.push(format!("{engine}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "peers failed (SPATE_BENCH_PEERS picks peers):\n{}",
        failures.join("\n")
    );
}

/// Runs the word count in a Python engine (`benches/peers_wordcount.py`):
/// its best time and its counts, or why it did not run.
fn peer(
    engine: &str,
    path: &Path,
    threads: usize,
    runs: usize,
    scratch: &Path,
) -> Result<(f64, Vec<(String, u64)>), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers_wordcount.py");
    let counts_file = scratch.join(format!("{engine}-counts.tsv"));
    let out = Command::new("python3")
        .arg(script)
        .arg(engine)
        .arg(path)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .arg(&counts_file)
        // Per-record flushing would slow the Python side.
        .env_remove("PYTHONUNBUFFERED")
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(match out.status.code() {
            Some(3) => format!("not installed ({last}); pip install {engine}"),
            _ => format!("crashed ({}): {last}", out.status),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let t: f64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("printed no time: {text}"))?;
    let counts = std::fs::read_to_string(&counts_file)
        .map_err(|e| format!("wrote no counts: {e}"))?
        .lines()
        .map(|l| {
            let (w, n) = l
                .rsplit_once('\t')
                .ok_or_else(|| format!("bad line {l:?}"))?;
            Ok((
                w.to_string(),
                n.parse().map_err(|_| format!("bad count {l:?}"))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((t, counts))
}
