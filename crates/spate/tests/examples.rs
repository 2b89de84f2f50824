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

#[test]
fn the_streaming_example_streams_what_it_counts_in_batch() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.txt"), "1000\tthe cat\n61000\tthe hat\n").unwrap();
    std::fs::write(input.join("b.txt"), "62000\tThe end\n200000\tlast\n").unwrap();
    let exe = example("windowed_wordcount_stream");
    for mode in ["stream", "bounded"] {
        let out = dir.path().join(mode);
        let mut cmd = Command::new(&exe);
        cmd.arg(&input).arg(&out).args(["--window", "60s"]);
        if mode == "bounded" {
            cmd.arg("--bounded");
        } else {
            cmd.arg(dir.path().join("cp"))
                .args(["--trigger", "available-now"]);
        }
        let status = cmd.output().unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let mut lines = Vec::new();
        for e in std::fs::read_dir(&out).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("part-") {
                lines.extend(
                    std::fs::read_to_string(e.path())
                        .unwrap()
                        .lines()
                        .map(String::from),
                );
            }
        }
        lines.sort();
        let mut want = vec![
            "0\t60000\tcat\t1",
            "0\t60000\tthe\t1",
            "60000\t120000\tend\t1",
            "60000\t120000\that\t1",
            "60000\t120000\tthe\t2",
        ];
        // The stream's watermark (200 000) has not passed 180 000..240 000.
        if mode == "bounded" {
            want.push("180000\t240000\tlast\t1");
            want.sort();
        }
        assert_eq!(lines, want, "{mode}");
    }
}
