//! A `Context` used from inside a tokio runtime, as a service embedding
//! spate uses it: actions and writes run and dropping the context does not
//! panic, on a multi-threaded runtime (its `block_on` thread and its
//! workers) and on a current-thread one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use spate::prelude::*;

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
    let mut lines: Vec<String> = std::fs::read_dir(&out)
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
    assert_eq!(lines, ["1", "2", "3"]);
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
