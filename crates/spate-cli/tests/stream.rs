//! `spate stream wordcount` killed with SIGKILL at seeded points and
//! restarted from its checkpoint, from a directory to a directory, with
//! input, checkpoint and output on an S3-compatible store (a real server on
//! loopback), and from a Kafka topic to a Kafka topic (a real broker on
//! loopback): its
//! committed output has every (window, word) once, and equals
//! `spate run windowed-wordcount`'s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/s3.rs"]
mod s3;
#[path = "../../spate-stream/tests/support/tansu.rs"]
mod tansu;

use spate::stream::{KafkaSource, StartingOffsets, StreamPipeline};
use tansu::Broker;

fn spate() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("spate"))
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 8] = [
    "storm", "river", "Stone", "ash", "north", "wind", "oak", "fire",
];

/// `n` lines `<ms><TAB><words>` in event-time order after `t`; returns
/// them and the greatest time.
fn gen_lines(mut t: i64, n: usize, rng: &mut Rng) -> (Vec<String>, i64) {
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        t += 50 + rng.below(400) as i64;
        let k = 1 + rng.below(6);
        let words: Vec<&str> = (0..k)
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect();
        lines.push(format!("{t}\t{}", words.join(" ")));
    }
    (lines, t)
}

const T0: i64 = 1_764_900_000_000;

/// `files` files of lines in event-time order; returns the greatest time.
fn write_input(dir: &Path, files: usize, lines: usize, rng: &mut Rng) -> i64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut t = T0;
    for f in 0..files {
        let (text, last) = gen_lines(t, lines, rng);
        t = last;
        // Written under a hidden name, then renamed: the source takes
        // whole files only.
        let tmp = dir.join(format!(".in-{f:03}.txt"));
        std::fs::write(&tmp, text.join("\n") + "\n").unwrap();
        std::fs::rename(&tmp, dir.join(format!("in-{f:03}.txt"))).unwrap();
    }
    t
}

/// The committed lines of an output directory, by file.
fn committed(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !name.starts_with('_') {
            out.extend(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    out
}

fn highest(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .max()
}

/// Whether a batch's output file is written but not yet committed (its
/// hidden name, before the commit log names it and it is renamed).
fn uncommitted_file(out: &Path) -> bool {
    std::fs::read_dir(out).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".part-"))
    })
}

/// Runs `stream` 6 times, killing it with SIGKILL when the checkpoint's
/// batch log reaches a seeded point: right after a batch is recorded (its
/// output not yet committed), right after one is committed, or — with an
/// output directory `out` — while a batch's output file is written but not
/// committed; then runs it to its end.
fn kill_and_resume(
    stream: &dyn Fn() -> Command,
    cp: &Path,
    out: Option<&Path>,
    rng: &mut Rng,
    seed: u64,
) {
    let mut kills = 0;
    for round in 0..6 {
        let mut child = stream().spawn().unwrap();
        let done = highest(&cp.join("commits")).map_or(0, |n| n + 1);
        let target = done + 1 + rng.below(5);
        let (log, in_sink) = match (rng.below(3), out) {
            (0, _) => ("offsets", None),
            (1, _) | (_, None) => ("commits", None),
            (_, Some(out)) => ("offsets", Some(out)),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut killed = false;
        loop {
            if highest(&cp.join(log)).is_some_and(|n| n >= target)
                && in_sink.is_none_or(uncommitted_file)
            {
                child.kill().unwrap();
                killed = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        let status = child.wait_with_output().unwrap();
        if killed {
            kills += 1;
        } else {
            assert!(
                status.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&status.stderr)
            );
        }
        let at = if in_sink.is_some() {
            "an uncommitted output file after offsets"
        } else {
            log
        };
        eprintln!("round {round}: killed at {at} {target}: {killed} (seed {seed:#x})");
    }
    assert!(
        kills >= 3,
        "only {kills} of 6 runs were killed before they ended"
    );
    let last = stream().output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
}

#[test]
fn a_killed_stream_resumes_with_no_loss_and_no_duplicate() {
    let seed = 0x5eed_2026_1205;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (input, out, cp, batch) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("cp"),
        dir.path().join("batch"),
    );
    let files = 40;
    let last_time = write_input(&input, files, 300, &mut rng);

    let stream = || {
        let mut c = spate();
        c.args(["stream", "wordcount", "--window", "10s", "--threads", "2"])
            .args([
                "--trigger",
                "available-now",
                "--max-files-per-trigger",
                "1",
                "-q",
            ])
            .arg("-i")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .arg("--checkpoint")
            .arg(&cp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };

    kill_and_resume(&stream, &cp, Some(&out), &mut rng, seed);

    // Every batch committed once, in its own file.
    let logged = std::fs::read_dir(out.join("_spate_log")).unwrap().count();
    assert!(logged >= files, "{logged} batches logged for {files} files");
    same_as_batch(&out, &input, &batch, last_time);
}

/// The stream's committed output in `out` has every (window, word) once
/// (no duplicate) and equals the batch run of the same job over `input`,
/// for the windows the stream's watermark (the last event time) has
/// passed (no gap).
fn same_as_batch(out: &Path, input: &Path, batch: &Path, last_time: i64) {
    let mut got = committed(out);
    once_each(&got);
    let mut expect = batch_answer(input, batch, last_time);
    expect.sort();
    got.sort();
    assert!(!expect.is_empty());
    assert_eq!(got, expect);
}

#[test]
fn a_killed_stream_with_input_checkpoint_and_output_on_s3_resumes_with_no_loss_and_no_duplicate() {
    let seed = 0x5eed_2026_1206;
    let mut rng = Rng(seed);
    let s3 = s3::S3::start();
    let bucket = s3.root.path().join("stream");
    std::fs::create_dir_all(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The input is on the store too: files put under its root appear as
    // objects of the bucket.
    let (input, batch) = (bucket.join("in"), dir.path().join("batch"));
    let files = 24;
    let last_time = write_input(&input, files, 200, &mut rng);

    let stream_on = |checkpoint: &str| {
        let mut c = spate();
        c.args(["stream", "wordcount", "--window", "10s", "--threads", "2"])
            .args(["--trigger", "available-now", "--max-files-per-trigger", "1"])
            .args(["-q", "-i", "s3://stream/in", "-o", "s3://stream/out"])
            .args(["--checkpoint", checkpoint])
            .envs(s3.env())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let stream = || stream_on("s3://stream/cp/");
    // The server keeps each object as a file under its root: the test
    // watches the checkpoint's logs there.
    kill_and_resume(
        &stream,
        &bucket.join("cp"),
        Some(&bucket.join("out")),
        &mut rng,
        seed,
    );

    let out = bucket.join("out");
    let logged = highest(&out.join("_spate_log")).unwrap();
    assert!(
        logged + 1 >= files as u64,
        "{logged} batches logged for {files} files"
    );
    // Nothing is left under a hidden name: every batch finished its rename.
    let hidden: Vec<_> = s3::objects(&s3, "stream", "out")
        .into_iter()
        .filter(|o| o.contains("/."))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    same_as_batch(&out, &input, &batch, last_time);

    // A second stream on the same output is refused, naming it.
    let other = stream_on("s3://stream/cp2").output().unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("output directory s3://stream/out is not empty"),
        "{err}"
    );
}

/// `spate run windowed-wordcount` over `input`: the lines of windows
/// ending by `until`.
fn batch_answer(input: &Path, out: &Path, until: i64) -> Vec<String> {
    let status = spate()
        .args([
            "run",
            "windowed-wordcount",
            "--window",
            "10s",
            "--threads",
            "2",
            "-i",
        ])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    committed(out)
        .into_iter()
        .filter(|l| l.split('\t').nth(1).unwrap().parse::<i64>().unwrap() <= until)
        .collect()
}

/// Each (window, word) once: the line of every output key.
fn once_each(lines: &[String]) {
    let mut keys = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.len(), 4, "{l}");
        let prior = keys.insert((f[0].to_string(), f[2].to_string()), f[3].to_string());
        assert!(prior.is_none(), "{l} committed twice");
    }
}

#[test]
fn a_killed_kafka_stream_resumes_with_no_loss_and_no_duplicate() {
    let seed = 0x5eed_2026_1206;
    let mut rng = Rng(seed);
    let broker = Broker::start();
    broker.create_topic("in", 3);
    broker.create_topic("out", 2);
    let dir = tempfile::tempdir().unwrap();
    let (cp, input, batch) = (
        dir.path().join("cp"),
        dir.path().join("in"),
        dir.path().join("batch"),
    );
    let (lines, last_time) = gen_lines(T0, 6_000, &mut rng);
    broker.produce("in", 3, &lines.join("\n"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("in.txt"), lines.join("\n") + "\n").unwrap();

    let (from, to) = (
        format!("kafka://{}/in", broker.addr),
        format!("kafka://{}/out", broker.addr),
    );
    let stream = || {
        let mut c = spate();
        c.args(["stream", "wordcount", "--window", "10s", "--threads", "2"])
            .args([
                "--out-of-orderness",
                "30s",
                "--starting-offsets",
                "earliest",
            ])
            .args([
                "--trigger",
                "available-now",
                "--max-offsets-per-trigger",
                "300",
            ])
            .args(["-q", "-i", &from, "-o", &to, "--checkpoint"])
            .arg(&cp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    kill_and_resume(&stream, &cp, None, &mut rng, seed);

    // The topic's committed records, read back with spate's Kafka source.
    let p = StreamPipeline::new(spate::Context::builder().threads(2).build().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    p.read(
        "Read",
        KafkaSource::lines(&broker.addr, "out").starting_offsets(StartingOffsets::Earliest),
    )
    .for_each_batch("Collect", move |_, rows| {
        sink.lock()
            .unwrap()
            .extend(rows.into_iter().map(|(_, l)| l));
        Ok(())
    });
    p.run_bounded().unwrap();
    let mut got = got.lock().unwrap().clone();
    once_each(&got);
    let mut expect = batch_answer(&input, &batch, last_time - 30_000);
    expect.sort();
    got.sort();
    assert!(!expect.is_empty());
    assert_eq!(got, expect);
}

#[test]
fn stream_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = spate()
        .args(["stream", "wordcount", "--window", "soon", "-i"])
        .arg(dir.path())
        .arg("-o")
        .arg(dir.path().join("o"))
        .arg("--checkpoint")
        .arg(dir.path().join("c"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad duration 'soon'"));
    let out = spate()
        .args(["run", "windowed-wordcount", "-i"])
        .arg(dir.path())
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --window"));
    let out = spate()
        .args(["stream", "wordcount", "--window", "10s"])
        .args(["--starting-offsets", "earliest", "-i"])
        .arg(dir.path())
        .arg("-o")
        .arg(dir.path().join("o"))
        .arg("--checkpoint")
        .arg(dir.path().join("c"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--starting-offsets is where a Kafka input starts")
    );
}
