//! Kafka in and out against a real Kafka-protocol broker (Tansu, started
//! on loopback by each test): the windowed word count streamed from a
//! topic to a topic equals its batch run over the same lines; records of
//! an aborted transaction never count; a resumed stream writes nothing
//! twice; a new stream refuses a transactional id that already wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "support/tansu.rs"]
mod tansu;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use spate_core::Context;
use spate_stream::wordcount::{Endpoint, WindowedWordCount};
use spate_stream::{BatchTrigger, KafkaSource, StartingOffsets, StreamPipeline};
use tansu::Broker;

fn pipeline() -> StreamPipeline {
    StreamPipeline::new(Context::builder().threads(2).build().unwrap())
}

/// `n` lines `<ms>\t<words>` from time `t0`, 250 ms apart.
fn lines_from(t0: i64, n: usize, salt: usize) -> Vec<String> {
    let words = ["storm", "river", "Stone", "ash", "north", "wind", "oak"];
    (0..n)
        .map(|i| {
            let k = i * 7 + salt;
            format!(
                "{}\t{} {} {}",
                t0 + i as i64 * 250,
                words[k % 7],
                words[(k / 7) % 7],
                words[(k / 3) % 7]
            )
        })
        .collect()
}

/// Every committed record's value in `topic`, read with spate's source.
fn read_topic(broker: &Broker, topic: &str) -> Vec<String> {
    let p = pipeline();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    p.read(
        "Read",
        KafkaSource::lines(&broker.addr, topic).starting_offsets(StartingOffsets::Earliest),
    )
    .for_each_batch("Collect", move |_, rows| {
        sink.lock().extend(rows.into_iter().map(|(_, l)| l));
        Ok(())
    });
    p.run_bounded().unwrap();
    let mut v = got.lock().clone();
    v.sort();
    v
}

fn batch_answer(dir: &Path, lines: &[String]) -> Vec<String> {
    let input = dir.join("batch-in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("in.txt"), lines.join("\n") + "\n").unwrap();
    let out = dir.join("batch-out");
    let p = pipeline();
    WindowedWordCount::new(input, out.clone(), Duration::from_secs(10)).build(&p);
    p.run_bounded().unwrap();
    let mut v = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().starts_with(['.', '_']) {
            v.extend(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    v.sort();
    v
}

#[test]
fn kafka_to_kafka_matches_the_batch_run_and_skips_aborted_records() {
    let broker = Broker::start();
    broker.create_topic("in", 3);
    broker.create_topic("out", 2);
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_764_900_000_000i64;

    let plain = lines_from(t0, 600, 0);
    broker.produce("in", 3, &plain.join("\n"));
    // A committed transaction, then one left open by a producer that a
    // newer one with the same id fences (its records are aborted), then
    // the newer one's committed records.
    let later = t0 + 600 * 250;
    let committed = lines_from(later, 20, 1);
    let zombie: Vec<String> = (0..20)
        .map(|i| format!("{}\tzombie ghost", later + 5_000 + i * 250))
        .collect();
    let after = lines_from(later + 10_000, 20, 2);
    let stdin = [committed.join("\n"), zombie.join("\n"), after.join("\n")].join("\n--\n");
    broker.python(
        "import os, sys\nfrom kafka import KafkaProducer\n\
         B = os.environ['B']\n\
         a, z, b = [part.strip().splitlines() for part in sys.stdin.read().split('--')]\n\
         p = KafkaProducer(bootstrap_servers=B, transactional_id='writer')\n\
         p.init_transactions()\n\
         p.begin_transaction()\n\
         for i, l in enumerate(a): p.send('in', l.encode(), partition=i % 3)\n\
         p.commit_transaction()\n\
         p.begin_transaction()\n\
         for i, l in enumerate(z): p.send('in', l.encode(), partition=i % 3)\n\
         p.flush()\n\
         q = KafkaProducer(bootstrap_servers=B, transactional_id='writer')\n\
         q.init_transactions()\n\
         q.begin_transaction()\n\
         for i, l in enumerate(b): q.send('in', l.encode(), partition=i % 3)\n\
         q.commit_transaction()\n",
        &stdin,
    );

    let job = WindowedWordCount {
        max_offsets_per_trigger: Some(90),
        out_of_orderness: Duration::from_secs(5),
        ..WindowedWordCount::new(
            Endpoint::parse(&format!("kafka://{}/in", broker.addr)).unwrap(),
            Endpoint::parse(&format!("kafka://{}/out", broker.addr)).unwrap(),
            Duration::from_secs(10),
        )
    };
    let p = pipeline();
    job.build(&p);
    let cp = dir.path().join("cp");
    let result = p.run_streaming(&cp, BatchTrigger::AvailableNow).unwrap();
    assert!(
        result.progress.len() >= 6,
        "{} batches",
        result.progress.len()
    );
    let rows: u64 = result.progress.iter().map(|b| b.input_rows).sum();
    assert_eq!(rows, 640, "every committed line once, no aborted one");

    let out = read_topic(&broker, "out");
    let mut all = plain.clone();
    all.extend(committed.iter().cloned());
    all.extend(after.iter().cloned());
    let expect = batch_answer(dir.path(), &all);
    let wm = result.watermark;
    let closed = |l: &String| l.split('\t').nth(1).unwrap().parse::<i64>().unwrap() <= wm;
    assert!(!out.is_empty());
    assert!(out.iter().all(closed));
    let expect_closed: Vec<String> = expect.iter().filter(|l| closed(l)).cloned().collect();
    assert_eq!(out, expect_closed);
    assert!(!out.iter().any(|l| l.contains("zombie")));

    // More input, in one batch.
    let more = lines_from(later + 60_000, 100, 3);
    broker.produce("in", 3, &more.join("\n"));
    let p = pipeline();
    job.build(&p);
    let once = p.run_streaming(&cp, BatchTrigger::Once).unwrap();
    let [batch] = &once.progress[..] else {
        panic!("{} batches", once.progress.len())
    };
    assert!(batch.output_lines > 0);
    let out2 = read_topic(&broker, "out");
    assert_eq!(out2.len() as u64, out.len() as u64 + batch.output_lines);
    let mut keys = std::collections::BTreeSet::new();
    for l in &out2 {
        let f: Vec<&str> = l.split('\t').collect();
        assert!(
            keys.insert((f[0].to_string(), f[2].to_string())),
            "{l} twice"
        );
    }

    // A crash after that batch's Kafka transaction committed but before
    // the checkpoint recorded it: the batch runs again, and the sink finds
    // its number committed in the topic and writes nothing.
    let n = batch.batch.to_string();
    std::fs::remove_file(cp.join("commits").join(&n)).unwrap();
    // Its state is whole or a delta of the batch before.
    let state = cp.join("state").join(&n);
    let delta = cp.join("state").join(format!("{n}.delta"));
    std::fs::remove_file(if state.exists() { state } else { delta }).unwrap();
    let p = pipeline();
    job.build(&p);
    let again = p.run_streaming(&cp, BatchTrigger::Once).unwrap();
    assert_eq!(again.progress.len(), 1, "the batch, run again");
    assert_eq!(read_topic(&broker, "out"), out2);

    // A new stream under the same transactional id is refused: its batch
    // numbers would collide with the ones the topic holds.
    let p = pipeline();
    job.build(&p);
    let err = p
        .run_streaming(dir.path().join("cp2"), BatchTrigger::AvailableNow)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already committed"), "{err}");
}

#[test]
fn a_bad_line_fails_its_step_and_a_missing_topic_is_named() {
    let broker = Broker::start();
    broker.create_topic("bad", 1);
    broker.produce(
        "bad",
        1,
        &format!("{}\tfine words\nno event time here", 1_764_900_000_000i64),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline();
    WindowedWordCount::new(
        Endpoint::parse(&format!("kafka://{}/bad", broker.addr)).unwrap(),
        dir.path().join("out"),
        Duration::from_secs(10),
    )
    .build(&p);
    let err = p
        .run_streaming(dir.path().join("cp"), BatchTrigger::AvailableNow)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ParseEventTime") && err.contains("no event time here"),
        "{err}"
    );
    // Nothing was committed.
    assert!(!dir.path().join("cp").join("commits").join("0").exists());

    let err = pipeline();
    WindowedWordCount::new(
        Endpoint::parse(&format!("kafka://{}/missing", broker.addr)).unwrap(),
        dir.path().join("out2"),
        Duration::from_secs(10),
    )
    .build(&err);
    let err = err
        .run_streaming(dir.path().join("cp2"), BatchTrigger::AvailableNow)
        .unwrap_err()
        .to_string();
    assert!(err.contains("topic missing does not exist"), "{err}");
}

#[test]
fn latest_starts_after_what_is_there_and_a_restart_keeps_that_start() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    let t0 = 1_764_900_000_000i64;
    broker.produce("t", 2, &lines_from(t0, 10, 0).join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    let got = Arc::new(Mutex::new(Vec::new()));
    let run = |trigger| {
        let p = pipeline();
        let sink = got.clone();
        p.read("Read", KafkaSource::lines(&broker.addr, "t"))
            .for_each_batch("Collect", move |_, rows| {
                sink.lock().extend(rows.into_iter().map(|(_, l)| l));
                Ok(())
            });
        p.run_streaming(&cp, trigger).unwrap()
    };
    // The first run finds the partitions' ends and logs them, reading
    // nothing; records written before the next run are read by it.
    let first = run(BatchTrigger::Once);
    assert_eq!(first.progress.len(), 1);
    assert!(got.lock().is_empty());
    let new = lines_from(t0 + 10_000, 6, 1);
    broker.produce("t", 2, &new.join("\n"));
    run(BatchTrigger::AvailableNow);
    let mut v = got.lock().clone();
    v.sort();
    let mut want = new.clone();
    want.sort();
    assert_eq!(v, want);
}
