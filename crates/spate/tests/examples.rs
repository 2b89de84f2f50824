//! Runs every example program (built by `cargo test`) and checks its output
//! against a reference word count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use spate::prelude::*;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-xxxx → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    path
}

fn run(name: &str, input: &std::path::Path) -> String {
    let out = Command::new(example(name)).arg(input).output().unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_example_prints_the_reference_answer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    spate::jobs::corpus::write_file(&input, 200_000, 3).unwrap();
    let mut counts = std::collections::BTreeMap::<Word, u64>::new();
    for line in std::fs::read_to_string(&input).unwrap().lines() {
        for w in words(line) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let wc: String = counts.iter().map(|(w, c)| format!("{w}\t{c}\n")).collect();
    let (bw, bc) = counts
        .iter()
        .max_by_key(|(w, c)| (**c, std::cmp::Reverse((*w).clone())))
        .unwrap();
    let best = format!("{bw}\t{bc}\n");
    for face in ["dataset", "pipeline", "mapreduce"] {
        assert_eq!(
            run(&format!("wordcount_{face}"), &input),
            wc,
            "wordcount_{face}"
        );
        assert_eq!(
            run(&format!("most_used_word_{face}"), &input),
            best,
            "most_used_word_{face}"
        );
    }
}
