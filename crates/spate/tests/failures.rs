//! Bad input and failing user code: clear errors naming the step, the file
//! and the offset; no hang; no partial output that looks complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;

use spate::prelude::*;

fn ctx() -> Context {
    Context::builder()
        .threads(2)
        .batch_size(16)
        .build()
        .unwrap()
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn panicking_map_names_the_step_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = ctx()
        .from_vec((0..1000).collect::<Vec<u32>>())
        .map(|x| x + 1)
        .filter(|x| {
            if *x == 777 {
                panic!("bad record {x}");
            }
            true
        })
        .write_text(&out)
        .unwrap_err();
    match &err {
        Error::Step { step, message } => {
            assert_eq!(step, "filter");
            assert!(message.contains("bad record 777"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!err.is_user_input());
    assert!(!out.exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn a_panic_in_a_borrowed_line_closure_names_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out");
    let err = ctx()
        .read_text(&[&path])
        .unwrap()
        .flat_map_lines(|line, out| {
            if line == "line 4321" {
                panic!("bad line {line}");
            }
            out.push(line.len() as u64);
        })
        .write_text(&out)
        .unwrap_err();
    match &err {
        Error::Step { step, message } => {
            assert_eq!(step, "flat_map");
            assert!(message.contains("bad line line 4321"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!out.exists());
}

#[test]
fn panicking_reducer_and_pipeline_step_are_named() {
    let err = ctx()
        .from_vec(vec![("a".to_string(), 1u32), ("b".to_string(), 2)])
        .group_by_key()
        .map_groups(|k, vs| {
            if k == "b" {
                panic!("reducer failed on {k}");
            }
            vs.count()
        })
        .collect()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Step { step, .. } if step == "group_by_key"),
        "{err}"
    );

    let p = Pipeline::with_context(ctx());
    let pc = p
        .apply("Create", spate::pipeline::Create(vec![1u64, 2, 3]))
        .apply(
            "Explode",
            Map::new(|x: u64| if x == 2 { panic!("two") } else { x }),
        );
    let err = pc.into_dataset().collect().unwrap_err();
    assert!(
        matches!(&err, Error::Step { step, .. } if step == "Explode/map"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..1000 {
        writeln!(f, "plain ascii line").unwrap();
    }
    f.write_all(b"caf\xe9 au lait\n").unwrap();
    drop(f);
    let out = dir.path().join("out");
    let err = ctx()
        .read_text(&[&path])
        .unwrap()
        .flat_map(into_words)
        .count_by_value()
        .write_text(&out)
        .unwrap_err();
    assert!(err.is_user_input(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("latin1.txt") && msg.contains("byte offset 17003"),
        "{msg}"
    );
    assert!(!out.exists());
}

#[test]
fn missing_and_corrupt_inputs() {
    let err = ctx().read_text(&["/definitely/not/here.txt"]).unwrap_err();
    assert!(err.is_user_input());
    assert!(err.to_string().contains("/definitely/not/here.txt"));

    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("broken.txt.gz");
    std::fs::write(&gz, b"this is not gzip data").unwrap();
    let err = ctx().read_text(&[&gz]).unwrap().collect().unwrap_err();
    assert!(err.to_string().contains("broken.txt.gz"), "{err}");
}

#[test]
fn output_that_exists_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = ctx()
        .from_vec(vec![1u8])
        .write_text(dir.path())
        .unwrap_err();
    assert!(err.is_user_input());
    assert!(err.to_string().contains("already exists"));
}

#[test]
fn a_missing_read_text_input_fails_every_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file.txt");
    let p = Pipeline::with_context(ctx());
    let lines = p.apply("Read", ReadText::from(&[&missing]));
    let words = lines.clone().apply("Words", FlatMap::new(into_words));
    for err in [
        lines.clone().into_dataset().collect().unwrap_err(),
        words.into_dataset().count().unwrap_err(),
        p.run().unwrap_err(),
    ] {
        assert!(
            err.to_string().contains("no-such-file.txt"),
            "the error names the input: {err}"
        );
        assert!(err.is_user_input(), "{err}");
    }
    let asserted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spate::testing::assert_that(&lines).is_empty();
    }));
    assert!(
        asserted.is_err(),
        "assert_that must not pass on a missing input"
    );
}
