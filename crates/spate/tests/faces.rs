//! The three faces give identical output on the same input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::PathBuf;

use spate::jobs::{Face, Job, build};
use spate::prelude::*;

fn corpus(dir: &std::path::Path) -> Vec<PathBuf> {
    let a = dir.join("a.txt");
    let mut f = std::fs::File::create(&a).unwrap();
    for i in 0..2000 {
        writeln!(
            f,
            "The quick brown fox {i} jumps over the lazy dog's back; ÉTÉ déjà-vu it's"
        )
        .unwrap();
        if i % 7 == 0 {
            write!(f, "Fox fox FOX\r\n").unwrap();
        }
    }
    write!(f, "last line without newline zebra").unwrap();
    let b = dir.join("b.txt");
    std::fs::write(&b, "").unwrap();
    vec![a, b]
}

fn reference(inputs: &[PathBuf]) -> Vec<(Word, u64)> {
    let mut m = std::collections::BTreeMap::<Word, u64>::new();
    for p in inputs {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            for w in words(line) {
                *m.entry(w).or_default() += 1;
            }
        }
    }
    m.into_iter().collect()
}

#[test]
fn word_count_is_identical_in_every_face() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = corpus(dir.path());
    let expected = reference(&inputs);
    for face in [Face::Dataset, Face::Pipeline, Face::MapReduce] {
        for threads in [1, 3] {
            let ctx = Context::builder()
                .threads(threads)
                .batch_size(100)
                .build()
                .unwrap();
            let got = build(&ctx, Job::WordCount, face, &inputs)
                .unwrap()
                .collect()
                .unwrap();
            assert_eq!(got, expected, "face {face:?}, {threads} threads");
        }
    }
}

#[test]
fn most_used_word_is_identical_in_every_face() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = corpus(dir.path());
    let counts = reference(&inputs);
    let best = counts
        .iter()
        .max_by_key(|(w, c)| (*c, std::cmp::Reverse(w.clone())))
        .unwrap()
        .clone();
    for face in [Face::Dataset, Face::Pipeline, Face::MapReduce] {
        let ctx = Context::builder().threads(2).build().unwrap();
        let got = build(&ctx, Job::MostUsedWord, face, &inputs)
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(got, vec![best.clone()], "face {face:?}");
    }
}
