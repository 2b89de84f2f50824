//! Black-box tests of the `spate` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use assert_cmd::Command;
use predicates::prelude::*;

fn spate() -> Command {
    Command::cargo_bin("spate").unwrap()
}

fn text_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.txt"),
        "The cat and the hat.\r\nThe END\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.txt"), "cat's cradle, the cat").unwrap();
    dir
}

#[test]
fn wordcount_to_stdout_in_every_face() {
    let dir = text_dir();
    let want = "and\t1\ncat\t2\ncat's\t1\ncradle\t1\nend\t1\nhat\t1\nthe\t4\n";
    for face in ["dataset", "pipeline", "mapreduce"] {
        spate()
            .args(["run", "wordcount", "--face", face, "--threads", "2", "-i"])
            .arg(dir.path())
            .assert()
            .success()
            .stdout(want)
            .stderr(predicate::str::is_empty());
    }
}

#[test]
fn most_used_word_and_output_directory() {
    let dir = text_dir();
    let out = dir.path().join("out");
    spate()
        .args(["run", "most-used-word", "-i"])
        .arg(dir.path().join("*.txt"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains("wrote 1 rows"));
    assert!(out.join("_SUCCESS").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("part-00000")).unwrap(),
        "the\t4\n"
    );
    // Output is never overwritten: usage error.
    spate()
        .args(["run", "wordcount", "-i"])
        .arg(dir.path().join("a.txt"))
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2);
}

#[test]
fn exit_codes_and_messages() {
    spate()
        .args(["run", "wordcount", "-i", "/no/such/input"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "input path does not exist: /no/such/input",
        ));
    spate()
        .args(["run", "nosuchjob", "-i", "x"])
        .assert()
        .code(2);
    spate().args(["run", "wordcount"]).assert().code(2);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"good\nbad \xc3\x28 bytes\n").unwrap();
    spate()
        .args(["run", "wordcount", "-i"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.txt").and(predicate::str::contains("byte offset 9")));
    spate()
        .args(["run", "wordcount", "--memory-limit", "lots", "-i"])
        .arg(&bad)
        .assert()
        .code(2);
}

#[test]
fn explain_shows_step_names() {
    let dir = text_dir();
    spate()
        .args(["explain", "wordcount", "--face", "pipeline", "-i"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("CountWords/ExtractWords/flat_map")
                .and(predicate::str::contains(
                    "CountWords/CountPerElement/count_per_element",
                ))
                .and(predicate::str::contains("ReadLines/read_text"))
                .and(predicate::str::contains("TextSourceExec")),
        );
    spate()
        .args(["explain", "most-used-word", "--face", "mapreduce", "-i"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("step-1/mapper")
                .and(predicate::str::contains("step-2/reducer")),
        );
}

#[test]
fn version_and_help() {
    spate()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("spate "));
    for verb in ["run", "explain", "demo"] {
        spate()
            .args([verb, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage"));
    }
}

#[test]
fn closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.txt");
    spate::jobs::corpus::write_file(&path, 2 << 20, 1).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("spate"))
        .args(["run", "wordcount", "-i"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_runs_on_generated_text() {
    let dir = tempfile::tempdir().unwrap();
    spate()
        .args(["demo", "--size", "64KiB", "--threads", "2", "--dir"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("top words:")
                .and(predicate::str::contains("most used word: the")),
        );
}

#[test]
fn memory_limit_spills_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    spate::jobs::corpus::write_file(&path, 4 << 20, 9).unwrap();
    let unlimited = spate()
        .args(["run", "wordcount", "-i"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(unlimited.status.success());
    for face in ["dataset", "mapreduce"] {
        spate()
            .args([
                "run",
                "wordcount",
                "--memory-limit",
                "8MiB",
                "--face",
                face,
                "-i",
            ])
            .arg(&path)
            .assert()
            .success()
            .stdout(String::from_utf8(unlimited.stdout.clone()).unwrap());
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_killed_writer_leaves_staging_that_the_next_write_removes() {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let dir = text_dir();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let exe = assert_cmd::cargo::cargo_bin("spate");
    // A job that stays in its map task until it is killed.
    let mut job = std::process::Command::new(&exe)
        .args([
            "streaming",
            "-mapper",
            "sleep 600",
            "-reducer",
            "NONE",
            "-input",
        ])
        .arg(dir.path())
        .arg("-output")
        .arg(&out)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !names_in(work.path())
        .iter()
        .any(|n| n.contains("spate-staging"))
    {
        assert!(Instant::now() < deadline, "the job never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its whole process group (spate and the sleeping task), at once.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", job.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    job.wait().unwrap();
    assert!(!out.exists());
    let left = names_in(work.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".out.spate-staging-"), "{left:?}");

    // The next write to the same place removes it, and succeeds.
    spate()
        .args(["run", "wordcount", "-i"])
        .arg(dir.path())
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(names_in(work.path()), ["out"]);
    let published = names_in(&out);
    assert!(published.contains(&"_SUCCESS".to_string()), "{published:?}");
    assert!(
        published
            .iter()
            .all(|n| n == "_SUCCESS" || n.starts_with("part-")),
        "{published:?}"
    );
}

#[test]
fn a_closed_pipe_is_success_for_sql_too() {
    let exe = assert_cmd::cargo::cargo_bin("spate");
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' sql --format csv -c 'SELECT * FROM generate_series(1, 300000)' | head -n 2",
            exe.display()
        ))
        .env("SPATE_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "value\n1\n");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn options_that_would_do_nothing_are_refused() {
    let dir = text_dir();
    spate()
        .args(["run", "wordcount", "--analyze", "-i"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--analyze goes with explain"));
    spate()
        .args(["explain", "wordcount", "-o", "out", "-i"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("explain prints the plan"));
    spate()
        .args([
            "streaming",
            "-debug",
            "-mapper",
            "cat",
            "-output",
            "-",
            "-input",
        ])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "-debug keeps Hadoop's local job jar",
        ));
    spate()
        .args([
            "streaming",
            "-verbose",
            "-mapper",
            "cat",
            "-reducer",
            "NONE",
            "-output",
            "-",
            "-input",
        ])
        .arg(dir.path().join("b.txt"))
        .assert()
        .success()
        .stdout("cat's cradle, the cat\n")
        .stderr(predicate::str::contains("step 1 mapper: cat"))
        .stderr(predicate::str::contains("step 1 reducers: none (map-only)"));
}
