//! Word count on real English text, side by side with the hand-tuned
//! reference program (`../shared/reference/wordcount`: `wc`, AVX2
//! classification and packed short words, and `wc-simple`, a byte table and
//! an FxHash map), every face of spate, and the start-up of a trivial job;
//! then word count over ~12 M distinct random words beside DuckDB, with and
//! without a memory limit; then spate's peers (polars, DuckDB, PySpark) on
//! the same text.
//!
//! - Inputs: the reference's real-text corpora (`corpus/make_corpus.sh`:
//!   Shakespeare and Milton, ~40-byte lines) of 100 MiB and 1 GiB, and the
//!   generated English-like text with long lines (`SPATE_BENCH_INPUTS`,
//!   default `100m,1g,generated`; `SPATE_BENCH_BYTES` sizes the generated
//!   one, default 1 GiB).
//! - Every side is a whole process (start to exit, output written) but the
//!   in-process Dataset face (as `spate run wordcount` writes it, with lines
//!   borrowed, and with `flat_map(into_words)` over owned lines), and every
//!   side's answer is checked against the
//!   reference's; ratios are to the reference `wc` of the same run. Peak
//!   resident memory comes from `/usr/bin/time`.
//! - Every side gets the same runs (`SPATE_BENCH_RUNS`, default 3; the best
//!   is shown). A side that fails or answers wrong fails the benchmark, after
//!   the others have run.
//! - `SPATE_BENCH_HIGHCARD=0` leaves out the high-cardinality case;
//!   `SPATE_BENCH_PEERS=polars,duckdb` picks peers (`0`: none; they need
//!   `pip install polars duckdb pyspark` and a Java runtime for PySpark).
//!
//! ```text
//! cargo bench -p spate-cli --bench wordcount
//! SPATE_BENCH_INPUTS=100m SPATE_BENCH_PEERS=0 cargo bench -p spate-cli --bench wordcount
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rustc_hash::FxHashMap;
use spate::prelude::*;

mod common;
use common::reference::{answer, corpus, reference_wc, run_process};
use common::{best_of, data_file, parse_size};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One side's result: best time, peak memory (KiB), or why it failed.
struct Side {
    label: String,
    best: Option<Duration>,
    rss_kib: Option<u64>,
}

/// Runs a process `runs` times writing to a fresh `out`; `right` checks
/// each answer.
fn process_side(
    label: &str,
    runs: usize,
    out: &Path,
    right: impl Fn(&Path) -> bool,
    failures: &mut Vec<String>,
    command: impl Fn(&Path) -> Command,
) -> Side {
    let mut side = Side {
        label: label.to_string(),
        best: None,
        rss_kib: None,
    };
    for _ in 0..runs.max(1) {
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_file(out);
        match run_process(command(out)) {
            Ok((t, rss)) => {
                if !right(out) {
                    failures.push(format!("{label}: a different answer"));
                    return Side { best: None, ..side };
                }
                side.best = Some(side.best.map_or(t, |b| b.min(t)));
                side.rss_kib = side.rss_kib.max(rss);
            }
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                return Side { best: None, ..side };
            }
        }
    }
    side
}

/// The sides' times, their ratios to `base` (named `base_name`) and their
/// peak memory.
fn print_sides(sides: &[Side], base: Option<Duration>, base_name: &str) {
    println!(
        "{:<48} {:>9} {:>9} {:>10}",
        "program",
        "seconds",
        format!("× {base_name}"),
        "peak MiB"
    );
    for s in sides {
        let secs = s
            .best
            .map_or("FAILED".to_string(), |t| format!("{:.3}", t.as_secs_f64()));
        let ratio = match (s.best, base) {
            (Some(t), Some(b)) => format!("{:.2}", t.as_secs_f64() / b.as_secs_f64()),
            _ => "-".into(),
        };
        let rss = s
            .rss_kib
            .map_or("-".to_string(), |k| format!("{:.0}", k as f64 / 1024.0));
        println!("{:<48} {secs:>9} {ratio:>9} {rss:>10}", s.label);
    }
}

fn ratio(a: &Side, b: &Side) -> String {
    match (a.best, b.best) {
        (Some(a), Some(b)) => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = common::runs(3);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let exe = env!("CARGO_BIN_EXE_spate");
    let wc = reference_wc();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    let mut failures = Vec::new();
    let inputs = std::env::var("SPATE_BENCH_INPUTS").unwrap_or_else(|_| "100m,1g,generated".into());
    let ctx = Context::builder().threads(threads).build().unwrap();
    let mut first_real: Option<PathBuf> = None;
    for input in inputs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let path = if input == "generated" {
            let bytes =
                parse_size(&std::env::var("SPATE_BENCH_BYTES").unwrap_or_else(|_| "1GiB".into()));
            data_file(bytes)
        } else {
            let p = corpus(input);
            first_real.get_or_insert(p.clone());
            p
        };
        let mib = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
        println!(
            "\nword count on {} ({mib:.0} MiB), {threads} threads, best of {runs}",
            if input == "generated" {
                "generated text"
            } else {
                "real text"
            }
        );
        let want_file = scratch.path().join("want.tsv");
        run_process({
            let mut c = Command::new(&wc);
            c.arg("wc").arg(&path).arg(&want_file);
            c.env("WC_THREADS", threads.to_string());
            c
        })
        .unwrap();
        let want = answer(&want_file);

        let reference = |mode: &'static str| {
            let (wc, path) = (wc.clone(), path.clone());
            move |out: &Path| {
                let mut c = Command::new(&wc);
                c.arg(mode).arg(&path).arg(out);
                c.env("WC_THREADS", threads.to_string());
                c
            }
        };
        let spate = |face: &'static str| {
            let path = path.clone();
            move |out: &Path| {
                let mut c = Command::new(exe);
                c.args(["run", "wordcount", "--quiet", "--face", face, "--threads"])
                    .arg(threads.to_string())
                    .arg("-i")
                    .arg(&path)
                    .arg("-o")
                    .arg(out);
                c
            }
        };
        let mut sides = vec![
            process_side(
                "reference wc (tuned)",
                runs,
                &out,
                |out: &Path| answer(out) == want,
                &mut failures,
                reference("wc"),
            ),
            process_side(
                "reference wc-simple",
                runs,
                &out,
                |out: &Path| answer(out) == want,
                &mut failures,
                reference("wc-simple"),
            ),
        ];
        // The Dataset face in this process (no output written), as
        // `spate run wordcount` writes it (each line borrowed from its
        // batch), and as a Spark user first would (`flat_map` over owned
        // lines: a `String` per line).
        let borrowed = || {
            ctx.read_text(&[&path])
                .unwrap()
                .flat_map_lines(|line, out| words(line).for_each(|w| out.push(w)))
                .count_by_value()
                .collect()
                .unwrap()
        };
        let owned = || {
            ctx.read_text(&[&path])
                .unwrap()
                .flat_map(into_words)
                .count_by_value()
                .collect()
                .unwrap()
        };
        for (label, job) in [
            (
                "spate Dataset face, in-process",
                &borrowed as &dyn Fn() -> Vec<(Word, u64)>,
            ),
            ("  the same, flat_map(into_words)", &owned),
        ] {
            let (t_ds, ds) = best_of(runs, job);
            let mut got: Vec<String> = ds.iter().map(|(w, n)| format!("{w}\t{n}")).collect();
            got.sort_unstable();
            if got != want {
                failures.push(format!("{input}: {label}: a different answer"));
            }
            sides.push(Side {
                label: label.into(),
                best: (got == want).then_some(t_ds),
                rss_kib: None,
            });
        }
        for (face, label) in [
            ("dataset", "spate run wordcount (Dataset face)"),
            ("pipeline", "spate run wordcount --face pipeline"),
            ("mapreduce", "spate run wordcount --face mapreduce"),
        ] {
            sides.push(process_side(
                label,
                runs,
                &out,
                |out: &Path| answer(out) == want,
                &mut failures,
                spate(face),
            ));
        }
        print_sides(&sides, sides[0].best, "wc");
        println!(
            "Pipeline face {} the Dataset face; MapReduce face {} (both as `spate run`)",
            ratio(&sides[5], &sides[4]),
            ratio(&sides[6], &sides[4])
        );
        let _ = std::fs::remove_dir_all(&out);
    }

    // Start-up: a trivial job, process start to exit.
    let tiny = corpus("tiny");
    let (t_small, _) = best_of(runs.max(10), || {
        let st = Command::new(exe)
            .args(["run", "wordcount", "--quiet", "-i"])
            .arg(&tiny)
            .output()
            .unwrap();
        assert!(st.status.success());
    });
    println!(
        "\nspate run wordcount on 4 KiB (start → exit): {:.1} ms",
        t_small.as_secs_f64() * 1e3
    );

    if std::env::var("SPATE_BENCH_HIGHCARD").as_deref() != Ok("0") {
        high_cardinality(exe, threads, runs, scratch.path(), &mut failures);
    }

    let chosen = std::env::var("SPATE_BENCH_PEERS").unwrap_or_default();
    if chosen != "0"
        && let Some(path) = first_real
    {
        peers(&chosen, &path, threads, runs, scratch.path(), &mut failures);
    }
    assert!(
        failures.is_empty(),
        "sides failed (SPATE_BENCH_PEERS picks peers):\n{}",
        failures.join("\n")
    );
}

/// ~108 MB of random lowercase words (6-10 letters, 8 per line, 1.5 M
/// lines: ~12 M distinct), made once.
fn high_cardinality_file() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("highcard-1500000.txt");
    if path.exists() {
        return path;
    }
    let tmp = path.with_extension("part");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut line = Vec::with_capacity(96);
    for _ in 0..1_500_000 {
        line.clear();
        for w in 0..8 {
            if w > 0 {
                line.push(b' ');
            }
            let len = 6 + (next() % 5) as usize;
            for _ in 0..len {
                line.push(b'a' + (next() % 26) as u8);
            }
        }
        line.push(b'\n');
        f.write_all(&line).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Word count over ~12 M distinct words: `spate run wordcount` with and
/// without a memory limit, beside DuckDB writing the same sorted output;
/// the outputs must be identical.
fn high_cardinality(
    exe: &str,
    threads: usize,
    runs: usize,
    scratch: &Path,
    failures: &mut Vec<String>,
) {
    let path = high_cardinality_file();
    let mib = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
    println!(
        "\nhigh cardinality: word count over {mib:.0} MiB of random words (~12 M distinct), sorted and written, best of {runs}"
    );
    let duck_out = scratch.join("duck.tsv");
    let script = r#"
import sys, time
try:
    import duckdb
except ImportError as e:
    print(f"duckdb is not installed: {e}", file=sys.stderr); sys.exit(3)
path, out, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
con.execute(f"SET threads TO {threads}")
best = None
for _ in range(runs):
    t = time.perf_counter()
    con.execute(f"""COPY (SELECT w, count(*) AS n FROM (
        SELECT unnest(string_split(line, ' ')) AS w
        FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, header = false,
                      delim = chr(1), quote = '', escape = '', auto_detect = false))
      WHERE w <> '' GROUP BY w ORDER BY w) TO '{out}' (HEADER false, DELIMITER '\t')""")
    e = time.perf_counter() - t
    best = e if best is None else min(best, e)
print(best)
"#;
    let duck = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(&duck_out)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .env_remove("PYTHONUNBUFFERED")
        .output();
    let duck_time = match duck {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<f64>().ok()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            failures.push(format!(
                "DuckDB (high cardinality): {}",
                err.lines().last().unwrap_or("")
            ));
            None
        }
        Err(e) => {
            failures.push(format!(
                "DuckDB (high cardinality): cannot run python3: {e}"
            ));
            None
        }
    };
    let want = duck_time.map(|_| std::fs::read(&duck_out).unwrap());
    let out = scratch.join("highcard-out");
    let same = |out: &Path| {
        let got = std::fs::read(out.join("part-00000")).unwrap_or_default();
        want.as_ref().is_none_or(|w| *w == got)
    };
    let spate = |limit: Option<&'static str>| {
        let path = path.clone();
        move |out: &Path| {
            let mut c = Command::new(exe);
            c.args(["run", "wordcount", "--quiet", "--threads"])
                .arg(threads.to_string())
                .arg("-i")
                .arg(&path)
                .arg("-o")
                .arg(out);
            if let Some(l) = limit {
                c.args(["--memory-limit", l]);
            }
            c
        }
    };
    let sides = vec![
        Side {
            label: "DuckDB COPY (... GROUP BY w ORDER BY w) (in-process)".into(),
            best: duck_time.map(Duration::from_secs_f64),
            rss_kib: None,
        },
        process_side(
            "spate run wordcount (high cardinality)",
            runs,
            &out,
            same,
            failures,
            spate(None),
        ),
        process_side(
            "spate run wordcount --memory-limit 64MiB",
            runs,
            &out,
            same,
            failures,
            spate(Some("64MiB")),
        ),
    ];
    print_sides(&sides, sides[0].best, "DuckDB");
    let _ = std::fs::remove_dir_all(&out);
}

/// spate's peers on the real text, their counts checked against spate's.
fn peers(
    chosen: &str,
    path: &Path,
    threads: usize,
    runs: usize,
    scratch: &Path,
    failures: &mut Vec<String>,
) {
    let ctx = Context::builder().threads(threads).build().unwrap();
    let (t_ds, ds) = best_of(runs, || {
        ctx.read_text(&[path])
            .unwrap()
            .flat_map(into_words)
            .count_by_value()
            .collect()
            .unwrap()
    });
    println!(
        "\npeers on {} (best of {runs}; engine start-up not timed)",
        path.display()
    );
    println!("{:<48} {:>9} {:>9}", "program", "seconds", "× spate");
    println!(
        "{:<48} {:>9.3} {:>9}",
        "spate Dataset face, in-process",
        t_ds.as_secs_f64(),
        "1.00"
    );
    let want: FxHashMap<String, u64> = ds.iter().map(|(w, c)| (w.to_string(), *c)).collect();
    for (engine, label) in [
        ("polars", "polars (lazy, str.extract_all)"),
        ("duckdb", "DuckDB (SQL, regexp_extract_all)"),
        ("pyspark", "PySpark local mode (JVM warm)"),
    ] {
        if !chosen.is_empty() && !chosen.split(',').any(|c| c.trim() == engine) {
            continue;
        }
        match peer(engine, path, threads, runs, scratch) {
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
                println!("{label:<48} {t:>9.3} {:>9.2}", t / t_ds.as_secs_f64());
            }
            Err(e) => {
                println!("{label:<48} {:>9} {:>9}", "FAILED", "-");
                failures.push(format!("{engine}: {e}"));
            }
        }
    }
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
