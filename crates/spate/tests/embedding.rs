//! A `Context` used from inside a tokio runtime, as a service embedding
//! spate uses it: actions and writes run and dropping the context does not
//! panic, on a multi-threaded runtime (its `block_on` thread and its
//! workers) and on a current-thread one; the `*_async` actions and
//! `Pipeline::run_async` give the same results from async code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use spate::prelude::*;

/// The lines of a written directory's part files, sorted.
fn part_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// A small job's actions and a write, checked, then the context dropped.
fn job() {
    let ctx = Context::new().unwrap();
    let doubled: u64 = ctx
        .from_vec((1..=1000u64).collect())
        .map(|x| x * 2)
        .collect()
        .unwrap()
        .into_iter()
        .sum();
    assert_eq!(doubled, 1000 * 1001);
    let words = ctx
        .from_vec(
            vec!["a b", "b c", "c"]
                .into_iter()
                .map(String::from)
                .collect(),
        )
        .flat_map(into_words);
    assert_eq!(words.count().unwrap(), 5);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ctx.from_vec(vec![3u64, 1, 2])
        .map(|x| x.to_string())
        .write_text(&out)
        .unwrap();
    assert_eq!(part_lines(&out), ["1", "2", "3"]);
    drop(ctx);
}

#[test]
fn a_context_runs_and_drops_inside_a_multi_threaded_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // On the runtime's `block_on` thread, and on one of its workers.
    rt.block_on(async { job() });
    rt.block_on(async { tokio::spawn(async { job() }).await.unwrap() });
}

#[test]
fn a_context_runs_and_drops_inside_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { job() });
}

#[test]
fn the_async_actions_run_from_async_code() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "b a\na\n").unwrap();
    rt.block_on(async {
        let ctx = Context::new().unwrap();
        let numbers = ctx.from_vec((1..=100u64).collect());
        assert_eq!(numbers.clone().count_async().await.unwrap(), 100);
        let mut got = numbers.map(|x| x % 3).collect_async().await.unwrap();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got, [0, 1, 2]);
        let out = dir.path().join("out");
        let summary = ctx
            .from_vec(vec!["x".to_string()])
            .write_text_async(&out)
            .await
            .unwrap();
        assert_eq!(summary.rows, 1);
        assert!(out.join("_SUCCESS").exists());

        let p = Pipeline::new().unwrap();
        let counted = dir.path().join("counted");
        p.apply("Read", ReadText::from(&[&input]))
            .apply("Words", FlatMap::new(into_words))
            .apply("Count", Count::per_element())
            .apply("Write", spate::pipeline::WriteText::to(&counted));
        p.run_async().await.unwrap();
        assert_eq!(part_lines(&counted), ["a\t2", "b\t1"]);
    });
}
