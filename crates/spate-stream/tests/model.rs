//! Beam's model on TestStream scripts: early, on-time and late panes in
//! both accumulation modes, late data kept, sessions, processing-time
//! triggers; the batch run of a pipeline gives the streaming run's windows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::time::Duration;

use spate_core::Context;
use spate_stream::{
    BatchTrigger, DirectorySource, Pane, StreamPipeline, TestStream, Trigger, Windows,
};

/// Every committed line under `dir`, sorted (hidden files are not output).
fn lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        out.extend(text.lines().map(str::to_string));
    }
    out.sort();
    out
}

fn pipeline() -> StreamPipeline {
    StreamPipeline::new(Context::builder().threads(2).build().unwrap())
}

fn pane_line(p: Pane<String, u64>) -> String {
    format!(
        "{}..{} {}={} {} #{}{}",
        p.window.start,
        p.window.end,
        p.key,
        p.value,
        p.pane.timing.as_str(),
        p.pane.index,
        if p.pane.is_last { " last" } else { "" }
    )
}

const MIN: i64 = 60_000;

/// The script of Beam's TestStream examples: two on-time elements, one
/// more, the watermark past the window, a late element within the
/// allowed lateness, then one past it.
fn script() -> TestStream<String> {
    let a = || "a".to_string();
    TestStream::new()
        .add_elements([(1_000, a()), (2_000, a())])
        .add_elements([(3_000, a())])
        .advance_watermark_to(MIN)
        .add_elements([(4_000, a())])
        .advance_watermark_to(MIN + 30_000)
        .add_elements([(5_000, a()), (MIN + 40_000, a())])
        .advance_watermark_to_infinity()
}

/// The script's counts per 60 s window: early after 2, late after 1, 30 s
/// of allowed lateness; panes to `out`, late elements to `late`.
fn script_pipeline(accumulating: bool, out: &Path, late: &Path) -> StreamPipeline {
    let p = pipeline();
    let mut windowed = p
        .read("Events", script())
        .window_into(Windows::fixed(Duration::from_secs(60)))
        .triggering(
            Trigger::after_watermark()
                .with_early_firings(Trigger::after_count(2))
                .with_late_firings(Trigger::after_count(1)),
        )
        .with_allowed_lateness(Duration::from_secs(30));
    if accumulating {
        windowed = windowed.accumulating_fired_panes();
    }
    let counts = windowed.count_per_element("Count");
    counts
        .output
        .map("Format", pane_line)
        .write_text("Write", out);
    counts
        .late
        .map_with_timestamp("FormatLate", |ts, (k, _)| format!("{ts} {k}"))
        .write_text("WriteLate", late);
    p
}

fn run_script(accumulating: bool, out: &Path, late: &Path, cp: &Path) {
    let result = script_pipeline(accumulating, out, late)
        .run_streaming(cp, BatchTrigger::AvailableNow)
        .unwrap();
    assert_eq!(result.late_total(), 1);
}

#[test]
fn early_on_time_and_late_panes_in_both_modes() {
    for (accumulating, expect) in [
        (
            true,
            [
                "0..60000 a=2 EARLY #0",
                "0..60000 a=3 ON_TIME #1",
                "0..60000 a=4 LATE #2",
                "60000..120000 a=1 ON_TIME #0 last",
            ],
        ),
        (
            false,
            [
                "0..60000 a=2 EARLY #0",
                "0..60000 a=1 ON_TIME #1",
                "0..60000 a=1 LATE #2",
                "60000..120000 a=1 ON_TIME #0 last",
            ],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (out, late, cp) = (
            dir.path().join("out"),
            dir.path().join("late"),
            dir.path().join("cp"),
        );
        run_script(accumulating, &out, &late, &cp);
        let mut expect = expect.map(String::from).to_vec();
        expect.sort();
        assert_eq!(lines(&out), expect, "accumulating: {accumulating}");
        // 5 000 came when the watermark had passed 0..60000's end plus
        // the allowed lateness: kept in the late output, not counted.
        assert_eq!(lines(&late), ["5000 a"]);
    }
}

/// The progress file holds every batch the run ran, and the late element.
#[test]
fn a_stream_records_its_progress_for_the_job_service() {
    let dir = tempfile::tempdir().unwrap();
    let p = script_pipeline(false, &dir.path().join("out"), &dir.path().join("late"));
    let file = dir.path().join("progress.json");
    p.record_progress(&file);
    let result = p
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(progress["batches"], result.progress.len() as u64);
    assert_eq!(progress["bounded"], false);
    assert_eq!(progress["inputRows"], 6, "{progress}");
    assert_eq!(progress["lateRecordsByStep"]["Count"], 1, "{progress}");
    let recent = progress["recent"].as_array().unwrap();
    assert_eq!(recent.len(), result.progress.len());
    for (json, batch) in recent.iter().zip(&result.progress) {
        assert_eq!(json["batch"], batch.batch);
        assert_eq!(json["inputRows"], batch.input_rows);
        assert_eq!(json["watermark"], batch.watermark);
        assert_eq!(json["lateRecords"], batch.late_records);
        assert_eq!(json["outputLines"], batch.output_lines);
    }
    let out_lines: u64 = result.progress.iter().map(|b| b.output_lines).sum();
    assert_eq!(progress["outputLines"], out_lines);
}

/// Between whole snapshots, a batch's state file holds what the batch
/// changed: one word among thousands is a small delta, and a stream
/// restarted on a snapshot and deltas goes on with the right counts.
#[test]
fn state_is_written_whole_every_ten_batches_and_as_deltas_between() {
    use spate_stream::wordcount::WindowedWordCount;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // 3000 words of letters (`into_words` keeps letters): "aaa" to "ekj".
    let word = |i: usize| -> String {
        [i / 676, i / 26 % 26, i % 26]
            .iter()
            .map(|&d| char::from(b'a' + d as u8))
            .collect()
    };
    let words: String = (0..3000).map(|i| format!("1000\t{}\n", word(i))).collect();
    std::fs::write(input.join("in-000.txt"), words).unwrap();
    for f in 1..=11 {
        std::fs::write(input.join(format!("in-{f:03}.txt")), "2000\tabc\n").unwrap();
    }
    let job = |out: &str, per_batch| WindowedWordCount {
        max_files_per_trigger: per_batch,
        ..WindowedWordCount::new(
            input.clone(),
            dir.path().join(out),
            Duration::from_secs(3600),
        )
    };
    let cp = dir.path().join("cp");
    let p = pipeline();
    job("streamed", Some(1)).build(&p);
    let first = p.run_streaming(&cp, BatchTrigger::AvailableNow).unwrap();
    assert_eq!(first.progress.len(), 12);
    // Batch 10 wrote the state whole, batch 11 a delta; older states are gone.
    let mut states: Vec<String> = std::fs::read_dir(cp.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    states.sort();
    assert_eq!(states, ["10", "11.delta"]);
    let whole = std::fs::metadata(cp.join("state/10")).unwrap().len();
    let delta = std::fs::metadata(cp.join("state/11.delta")).unwrap().len();
    assert!(delta * 20 < whole, "delta {delta} bytes, whole {whole}");

    // Restarted on 10 and 11's delta: the window fires with every count.
    std::fs::write(input.join("in-012.txt"), "7200000\tend\n").unwrap();
    let p = pipeline();
    job("streamed", Some(1)).build(&p);
    p.run_streaming(&cp, BatchTrigger::AvailableNow).unwrap();
    let p = pipeline();
    job("batch", None).build(&p);
    p.run_bounded().unwrap();
    let streamed = lines(&dir.path().join("streamed"));
    assert_eq!(streamed.len(), 3000);
    assert!(streamed.contains(&"0\t3600000\tabc\t12".to_string()));
    let batch: Vec<String> = lines(&dir.path().join("batch"))
        .into_iter()
        .filter(|l| !l.contains("\tend\t"))
        .collect();
    assert_eq!(streamed, batch);
}

#[test]
fn a_finished_run_resumed_does_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (out, late, cp) = (
        dir.path().join("out"),
        dir.path().join("late"),
        dir.path().join("cp"),
    );
    run_script(true, &out, &late, &cp);
    let first = lines(&out);
    // The same job on its checkpoint: every event was read, nothing is new.
    let p = script_pipeline(true, &out, &late);
    let again = p.run_streaming(&cp, BatchTrigger::AvailableNow).unwrap();
    assert!(again.progress.is_empty(), "{:?}", again.progress);
    assert_eq!(lines(&out), first);
}

#[test]
fn a_changed_job_is_refused_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let (out, late, cp) = (
        dir.path().join("out"),
        dir.path().join("late"),
        dir.path().join("cp"),
    );
    run_script(false, &out, &late, &cp);
    let p = pipeline();
    p.read("Events", script())
        .window_into(Windows::fixed(Duration::from_secs(30)))
        .count_per_element("Count")
        .output
        .map("Format", pane_line)
        .write_text("Write", dir.path().join("out2"));
    let err = p
        .run_streaming(&cp, BatchTrigger::AvailableNow)
        .unwrap_err()
        .to_string();
    assert!(err.contains("step Count"), "{err}");
    assert!(err.contains("new checkpoint directory"), "{err}");
}

#[test]
fn sessions_merge_and_processing_time_fires_early() {
    let dir = tempfile::tempdir().unwrap();
    let events = TestStream::new()
        .add_elements([
            (0, "u".to_string()),
            (5_000, "u".into()),
            (30_000, "u".into()),
        ])
        .advance_processing_time(Duration::from_secs(10))
        .add_elements([(12_000, "u".to_string())])
        .advance_processing_time(Duration::from_secs(10))
        .advance_watermark_to_infinity();
    let p = pipeline();
    p.read("Clicks", events)
        .window_into(Windows::sessions(Duration::from_secs(10)))
        .triggering(
            Trigger::after_watermark()
                .with_early_firings(Trigger::after_processing_time(Duration::from_secs(10))),
        )
        .accumulating_fired_panes()
        .count_per_element("Sessions")
        .output
        .map("Format", pane_line)
        .write_text("Write", dir.path().join("out"));
    p.run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    // 0 and 5 000 are one session, 30 000 another; 10 s of processing
    // time fire both early. 12 000 joins the first session (which then
    // ends at 22 000, short of 30 000); 10 s later it fires early again,
    // and the end of the stream fires both on time.
    assert_eq!(
        lines(&dir.path().join("out")),
        [
            "0..15000 u=2 EARLY #0",
            "0..22000 u=3 EARLY #1",
            "0..22000 u=3 ON_TIME #2 last",
            "30000..40000 u=1 EARLY #0",
            "30000..40000 u=1 ON_TIME #1 last",
        ]
    );
}

fn write_input(dir: &Path, files: usize, lines_per_file: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let mut t = 1_700_000_000_000i64;
    for f in 0..files {
        let mut text = String::new();
        for i in 0..lines_per_file {
            t += 700 + (i as i64 * 37) % 900;
            let w = words[(f * 7 + i) % words.len()];
            text += &format!("{t}\t{w} {w} Zeta {}\n", words[i % 3]);
        }
        std::fs::write(dir.join(format!("in-{f:03}.txt")), text).unwrap();
    }
}

#[test]
fn the_same_wordcount_streamed_and_in_batch() {
    use spate_stream::wordcount::WindowedWordCount;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_input(&input, 6, 300);
    let job = |out: &str, per_batch| WindowedWordCount {
        max_files_per_trigger: per_batch,
        ..WindowedWordCount::new(input.clone(), dir.path().join(out), Duration::from_secs(60))
    };
    let p = pipeline();
    job("streamed", Some(1)).build(&p);
    let streamed = p
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert_eq!(streamed.progress.len(), 6);
    let p = pipeline();
    job("batch", None).build(&p);
    let batch = p.run_bounded().unwrap();
    assert_eq!(batch.late_total(), 0);

    // The stream fired every window its watermark passed; the batch run
    // fired them all.
    let wm = streamed.watermark;
    let closed = |l: &String| l.split('\t').nth(1).unwrap().parse::<i64>().unwrap() <= wm;
    let streamed_lines = lines(&dir.path().join("streamed"));
    let batch_lines = lines(&dir.path().join("batch"));
    assert!(streamed_lines.iter().all(closed));
    let batch_closed: Vec<String> = batch_lines.iter().filter(|l| closed(l)).cloned().collect();
    assert_eq!(streamed_lines, batch_closed);
    assert!(batch_lines.len() > streamed_lines.len());

    // And both agree with a plain Dataset count of (window, word).
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut expect: Vec<String> = ctx
        .read_text(&[&input])
        .unwrap()
        .flat_map(|line: String| {
            let (t, text) = spate_stream::wordcount::parse_line(line);
            let start = t - t.rem_euclid(60_000);
            spate_core::text::into_words(text)
                .map(move |w| format!("{start}\t{}\t{w}", start + 60_000))
                .collect::<Vec<_>>()
        })
        .count_by_value()
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, n)| format!("{k}\t{n}"))
        .collect();
    expect.sort();
    assert_eq!(batch_lines, expect);
}

#[test]
fn bad_input_names_the_step_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), "1000\tfine\nnot a time\tbad\n").unwrap();
    let p = pipeline();
    p.read("Lines", DirectorySource::text(&input))
        .map("ParseEventTime", spate_stream::wordcount::parse_line)
        .map("Format", |(t, s)| format!("{t} {s}"))
        .write_text("Write", dir.path().join("out"));
    let err = p
        .run_streaming(dir.path().join("cp"), BatchTrigger::Once)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ParseEventTime"), "{err}");
    assert!(err.contains("not a time"), "{err}");
    // Nothing of the failed batch is visible.
    assert!(lines(&dir.path().join("out")).is_empty());
}

#[test]
fn dedup_remembers_keys_only_until_the_watermark_passes_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let s = |t: i64, k: &str| (t, k.to_string());
    let build = || {
        let events = TestStream::new()
            .add_elements([s(1_000, "a"), s(1_500, "a"), s(2_000, "b")])
            .advance_watermark_to(5_000)
            .add_elements([s(6_000, "a")])
            .advance_watermark_to(12_000)
            .add_elements([s(13_000, "a"), s(1_000, "c")])
            .advance_watermark_to_infinity();
        let p = pipeline();
        let deduped = p.read("Events", events).dedup_within_watermark(
            "Dedup",
            |k: &String| k.clone(),
            Duration::from_secs(10),
        );
        deduped
            .output
            .map_with_timestamp("Format", |t, k| format!("{t} {k}"))
            .write_text("Write", dir.path().join("out"));
        deduped
            .late
            .map_with_timestamp("FormatLate", |t, k| format!("{t} {k}"))
            .write_text("WriteLate", dir.path().join("late"));
        p
    };
    let result = build()
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    // Its state after the first batch was whole, then deltas: a restart
    // rebuilds it from them and has nothing left to do.
    let states = std::fs::read_dir(dir.path().join("cp/state")).unwrap();
    assert!(
        states
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .any(|n| n.ends_with(".delta"))
    );
    let again = build()
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert!(again.progress.is_empty(), "{:?}", again.progress);
    // `a` at 6 000 repeats the one at 1 000, remembered until 11 000; at
    // 13 000 it is new again. `c` at 1 000 came when the watermark (12 000)
    // had passed 1 000 + 10 s: it cannot be checked, and is kept as late.
    assert_eq!(
        lines(&dir.path().join("out")),
        ["1000 a", "13000 a", "2000 b"]
    );
    assert_eq!(lines(&dir.path().join("late")), ["1000 c"]);
    assert_eq!(result.late_total(), 1);
    // Only keys that can still repeat are held.
    assert!(result.progress.iter().all(|b| b.state_entries <= 2));
}

#[test]
fn group_by_key_lists_each_keys_values_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let kv = |t: i64, k: &str, v: u32| (t, (k.to_string(), v));
    let events = TestStream::new()
        .add_elements([kv(1, "x", 1), kv(2, "x", 2), kv(3, "y", 3), kv(15, "x", 4)])
        .advance_watermark_to_infinity();
    let p = pipeline();
    p.read("Events", events)
        .window_into(Windows::fixed(Duration::from_millis(10)))
        .group_by_key("Group")
        .output
        .map("Format", |p| {
            let mut v = p.value.clone();
            v.sort();
            format!("{} {} {v:?}", p.window.start, p.key)
        })
        .write_text("Write", dir.path().join("out"));
    p.run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert_eq!(
        lines(&dir.path().join("out")),
        ["0 x [1, 2]", "0 y [3]", "10 x [4]"]
    );
}

#[test]
fn a_windowed_join_pairs_each_key_within_its_window_and_keeps_late_sides() {
    let dir = tempfile::tempdir().unwrap();
    let kv = |t: i64, k: &str, v: u32| (t, (k.to_string(), v));
    // People (by id) and their auctions (by seller), as in Nexmark's q8.
    let people = TestStream::new()
        .add_elements([kv(1, "ann", 1), kv(3, "bob", 2), kv(12, "cy", 3)])
        .advance_watermark_to(30)
        .add_elements([kv(5, "dee", 4)])
        .advance_watermark_to_infinity();
    let auctions = TestStream::new()
        .add_elements([
            kv(2, "ann", 10),
            kv(4, "ann", 11),
            kv(9, "cy", 12),
            kv(14, "cy", 13),
            kv(15, "eve", 14),
        ])
        .advance_watermark_to(30)
        .advance_watermark_to_infinity();
    let p = pipeline();
    let people = p.read("People", people);
    let auctions = p.read("Auctions", auctions);
    let joined = people
        .window_into(Windows::fixed(Duration::from_millis(10)))
        .join("NewSellers", &auctions);
    joined
        .output
        .map("Format", |p| {
            format!(
                "{} {} {:?} {}",
                p.window.start,
                p.key,
                p.value,
                p.pane.timing.as_str()
            )
        })
        .write_text("Write", dir.path().join("out"));
    joined
        .late
        .map_with_timestamp("FormatLate", |t, (k, side)| format!("{t} {k} {side:?}"))
        .write_text("WriteLate", dir.path().join("late"));
    p.run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    // ann's person and auctions meet in [0, 10); cy's person (12) meets
    // only the auction at 14, not the one at 9; bob and eve have no
    // partner; dee came after the watermark passed her window.
    assert_eq!(
        lines(&dir.path().join("out")),
        [
            "0 ann (1, 10) ON_TIME",
            "0 ann (1, 11) ON_TIME",
            "10 cy (3, 13) ON_TIME"
        ]
    );
    assert_eq!(lines(&dir.path().join("late")), ["5 dee Left(4)"]);

    // A join fires each window once: a strategy that fires more is refused.
    let p = pipeline();
    let one = TestStream::new().add_elements([kv(1, "ann", 1)]);
    let two = TestStream::new().add_elements([kv(1, "ann", 2)]);
    let two = p.read("Two", two);
    p.read("One", one)
        .window_into(Windows::fixed(Duration::from_millis(10)))
        .with_allowed_lateness(Duration::from_millis(5))
        .join("Join", &two)
        .output
        .map("Format", |p| format!("{:?}", p.value))
        .write_text("Write", dir.path().join("out2"));
    let err = p
        .run_streaming(dir.path().join("cp2"), BatchTrigger::AvailableNow)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Join: a join fires each window once"), "{err}");
}

/// Buffers each key's values until 10 ms of event time after its first
/// one, then emits them: bag and value state and an event-time timer.
struct BufferFor10ms;

impl spate_stream::StatefulDoFn<String, u32> for BufferFor10ms {
    type State = (spate_stream::BagState<u32>, spate_stream::ValueState<i64>);
    type Out = String;

    fn process(
        &self,
        _key: &String,
        v: u32,
        ts: i64,
        state: &mut Self::State,
        timers: &mut spate_stream::Timers,
        _out: &mut spate_stream::Emit<String>,
    ) {
        state.0.add(v);
        if state.1.read().is_none() {
            state.1.write(ts + 10);
            timers.set(ts + 10);
        }
    }

    fn on_timer(
        &self,
        key: &String,
        at: i64,
        state: &mut Self::State,
        _timers: &mut spate_stream::Timers,
        out: &mut spate_stream::Emit<String>,
    ) {
        let values = state.0.take();
        state.1.clear();
        out.push((at, format!("{key}@{at}: {values:?}")));
    }
}

fn buffered(p: &StreamPipeline, out: &Path) {
    let kv = |t: i64, k: &str, v: u32| (t, (k.to_string(), v));
    let events = TestStream::new()
        .add_elements([kv(1, "k", 1), kv(5, "k", 2), kv(3, "j", 7)])
        .advance_watermark_to(12)
        .add_elements([kv(20, "k", 3)])
        .advance_watermark_to_infinity();
    p.read("Events", events)
        .stateful("Buffer", BufferFor10ms)
        .write_text("Write", out);
}

#[test]
fn stateful_dofns_keep_state_and_fire_timers_across_restarts() {
    let want = ["j@13: [7]", "k@11: [1, 2]", "k@30: [3]"];
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    buffered(&p, &dir.path().join("out"));
    p.run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert_eq!(lines(&dir.path().join("out")), want);

    // The same, one batch per run: each run restores the state and the
    // timers the one before it checkpointed.
    let (out, cp) = (dir.path().join("out2"), dir.path().join("cp2"));
    let mut runs = 0;
    loop {
        let p = pipeline();
        buffered(&p, &out);
        let r = p.run_streaming(&cp, BatchTrigger::Once).unwrap();
        if r.progress.is_empty() {
            break;
        }
        runs += 1;
    }
    assert_eq!(runs, 4);
    assert_eq!(lines(&out), want);
}

#[test]
fn a_socket_stream_ends_with_its_connection() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"1000\tto be\n2000\tor not to be\n")
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    p.read("Lines", spate_stream::SocketSource::lines(addr))
        .map("Parse", spate_stream::wordcount::parse_line)
        .with_timestamps("EventTime", |(t, _): &(i64, String)| *t)
        .flat_map("Words", |(_, s): (i64, String)| {
            spate_core::text::into_words(s)
        })
        .window_into(Windows::fixed(Duration::from_secs(60)))
        .count_per_element("Count")
        .output
        .map("Format", |p| format!("{} {}", p.key, p.value))
        .write_text("Write", dir.path().join("out"));
    // The stream ends when the server closes the connection: its
    // watermark goes to the end of time and every window fires.
    p.run_streaming(
        dir.path().join("cp"),
        BatchTrigger::Interval(Duration::from_millis(5)),
    )
    .unwrap();
    server.join().unwrap();
    assert_eq!(
        lines(&dir.path().join("out")),
        ["be 2", "not 1", "or 1", "to 2"]
    );
}

#[test]
fn a_cascade_takes_late_panes_from_upstream_as_input_not_as_late_data() {
    let dir = tempfile::tempdir().unwrap();
    let events = TestStream::new()
        .add_elements([(1_000, "x".to_string())])
        .advance_watermark_to(MIN)
        .add_elements([(2_000, "x".to_string())])
        .advance_watermark_to_infinity();
    let p = pipeline();
    let counts = p
        .read("Events", events)
        .window_into(Windows::fixed(Duration::from_secs(60)))
        .with_allowed_lateness(Duration::from_secs(60))
        .accumulating_fired_panes()
        .count_per_element("Count");
    // The upstream late pane (stamped 59 999) reaches the second step when
    // the watermark is already past 60 000: input, not late data.
    let totals = counts
        .output
        .map("Key", |p| ("all".to_string(), p.value))
        .window_into(Windows::fixed(Duration::from_secs(60)))
        .combine_per_key("Total", spate_core::combine::Sum);
    totals
        .output
        .map("Format", |p| format!("{} {}", p.window.start, p.value))
        .write_text("Write", dir.path().join("out"));
    totals
        .late
        .map("FormatLate", |(k, v)| format!("{k} {v}"))
        .write_text("WriteLate", dir.path().join("late"));
    let r = p
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert_eq!(lines(&dir.path().join("out")), ["0 1", "0 2"]);
    assert!(lines(&dir.path().join("late")).is_empty());
    assert_eq!(r.late_total(), 0);
}

#[test]
fn a_stream_stopped_before_its_first_batch_restarts_and_one_run_holds_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let build = || {
        let p = pipeline();
        p.read("Lines", DirectorySource::text(&input))
            .write_text("Write", dir.path().join("out"));
        p
    };
    // Nothing to read: no batch, an empty output and checkpoint.
    let r = build()
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert!(r.progress.is_empty());
    let r = build()
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap();
    assert!(r.progress.is_empty());

    // A running stream holds its checkpoint: a second run is refused.
    std::fs::write(input.join("a.txt"), "one line\n").unwrap();
    let running = build();
    let stop = running.stop_handle();
    let cp = dir.path().join("cp");
    let handle = std::thread::spawn(move || {
        running.run_streaming(&cp, BatchTrigger::Interval(Duration::from_millis(5)))
    });
    // Its first batch committed: it holds the checkpoint.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dir.path().join("out/part-00000").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run made no batch"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let err = build()
        .run_streaming(dir.path().join("cp"), BatchTrigger::Once)
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use by another run"), "{err}");
    stop.stop();
    handle.join().unwrap().unwrap();
}

#[test]
fn json_lines_arrive_typed_and_a_bad_one_names_its_line() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Click {
        at: i64,
        user: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("a.json"),
        "{\"at\": 1000, \"user\": \"ann\"}\n{\"at\": 2000, \"user\": \"bob\"}\n{\"at\": 3000, \"user\": \"ann\"}\n",
    )
    .unwrap();
    let build = |out: &str| {
        let p = pipeline();
        p.read(
            "Clicks",
            DirectorySource::text(&input).json_lines::<Click>(),
        )
        .with_timestamps("At", |c: &Click| c.at)
        .map("User", |c: Click| c.user)
        .window_into(Windows::fixed(Duration::from_secs(60)))
        .count_per_element("PerUser")
        .output
        .map("Format", |p| format!("{} {}", p.key, p.value))
        .write_text("Write", dir.path().join(out));
        p
    };
    build("out").run_bounded().unwrap();
    assert_eq!(lines(&dir.path().join("out")), ["ann 2", "bob 1"]);
    std::fs::write(input.join("b.json"), "{\"at\": 4000}\n").unwrap();
    let err = build("out2").run_bounded().unwrap_err().to_string();
    assert!(err.contains("Clicks"), "{err}");
    assert!(err.contains("4000"), "{err}");
    assert!(err.contains("missing field `user`"), "{err}");
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sale {
    t: i64,
    item: String,
    qty: i64,
}

/// Sums of `qty` per item and 10 ms window, as `window item sum` lines.
fn sales_per_window(dir: &Path, source: impl spate_stream::Source<Item = Sale>) -> Vec<String> {
    sales_per_window_on(pipeline(), dir.join("out"), dir.join("cp"), source)
}

/// The sales' sums per 10 ms window, streamed by `p` into `out` with its
/// checkpoint in `cp`, a batch per file.
fn sales_per_window_on(
    p: StreamPipeline,
    out: impl AsRef<Path>,
    cp: impl AsRef<Path>,
    source: impl spate_stream::Source<Item = Sale>,
) -> Vec<String> {
    p.read("Sales", source)
        .with_timestamps("EventTime", |s: &Sale| s.t)
        .map("ByItem", |s: Sale| (s.item, s.qty as u64))
        .window_into(Windows::fixed(Duration::from_millis(10)))
        .combine_per_key("Sum", spate_core::combine::Sum)
        .output
        .map("Format", |p| {
            format!("{} {} {}", p.window.start, p.key, p.value)
        })
        .write_text("Write", out.as_ref());
    let r = p.run_streaming(cp, BatchTrigger::AvailableNow).unwrap();
    assert_eq!(r.progress.len(), 3, "a batch per file");
    lines(out.as_ref())
}

#[test]
fn csv_and_parquet_files_arriving_in_a_directory_are_streams() {
    let dir = tempfile::tempdir().unwrap();
    let sale = |t: i64, item: &str, qty: i64| Sale {
        t,
        item: item.to_string(),
        qty,
    };
    let files = [
        vec![sale(1, "oak", 2), sale(3, "ash", 1)],
        vec![sale(5, "oak", 3), sale(12, "ash", 4)],
        vec![sale(14, "oak", 1), sale(30, "elm", 7)],
    ];
    // The last file's element at 30 moves the watermark past [10, 20).
    let want = ["0 ash 1", "0 oak 5", "10 ash 4", "10 oak 1"];

    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    for (i, rows) in files.iter().enumerate() {
        let mut text = String::from("t,item,qty\n");
        for r in rows {
            text += &format!("{},{},{}\n", r.t, r.item, r.qty);
        }
        std::fs::write(csv.join(format!("sales-{i}.csv")), text).unwrap();
        // Distinct modification times: the source takes files oldest first.
        std::thread::sleep(Duration::from_millis(20));
    }
    let source = DirectorySource::text(&csv)
        .max_files_per_trigger(1)
        .csv::<Sale>();
    assert_eq!(sales_per_window(&dir.path().join("c"), source), want);

    let parquet = dir.path().join("parquet");
    std::fs::create_dir_all(&parquet).unwrap();
    let ctx = Context::builder().threads(1).build().unwrap();
    for (i, rows) in files.iter().enumerate() {
        let written = dir.path().join(format!("w{i}"));
        ctx.from_vec(rows.clone()).write_parquet(&written).unwrap();
        for e in std::fs::read_dir(&written).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(['.', '_']) {
                std::fs::rename(e.path(), parquet.join(format!("{i}-{name}"))).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let source = DirectorySource::text(&parquet)
        .max_files_per_trigger(1)
        .parquet::<Sale>();
    assert_eq!(sales_per_window(&dir.path().join("p"), source), want);
}

#[test]
fn csv_files_arriving_in_an_object_store_prefix_are_a_stream() {
    use object_store::{ObjectStore, ObjectStoreExt};
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    ctx.session()
        .runtime_env()
        .register_object_store(&url::Url::parse("s3://landing").unwrap(), store.clone());
    let put = |name: &str, text: &str| {
        let path = object_store::path::Path::from(format!("sales/{name}"));
        ctx.block_on(store.put(&path, text.as_bytes().to_vec().into()))
            .unwrap();
    };
    put("sales-0.csv", "t,item,qty\n1,oak,2\n3,ash,1\n");
    put("sales-1.csv", "t,item,qty\n5,oak,3\n12,ash,4\n");
    // Hidden objects (an upload in progress, a marker) are not input.
    put(".sales-2.csv.tmp", "t,item,qty\n1,oak,100\n");
    put("_SUCCESS", "");
    put("sales-2.csv", "t,item,qty\n14,oak,1\n30,elm,7\n");

    let source = DirectorySource::text("s3://landing/sales")
        .max_files_per_trigger(1)
        .csv::<Sale>();
    let p = StreamPipeline::new(ctx.clone());
    assert_eq!(
        sales_per_window_on(p, dir.path().join("out"), "s3://landing/ck", source),
        ["0 ash 1", "0 oak 5", "10 ash 4", "10 oak 1"]
    );
    // The checkpoint is in the store: a rerun finds every file read.
    let listed = ctx
        .block_on(store.list_with_delimiter(Some(&"ck/commits".into())))
        .unwrap();
    assert_eq!(listed.objects.len(), 3);
}
