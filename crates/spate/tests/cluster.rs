//! A job with Rust closures on a cluster: the example job binary
//! (`examples/cluster_wordcount.rs`) is its own driver and its own
//! executors, and writes exactly what it writes locally.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spate::cluster::launch::{LocalCluster, UpOptions};

#[path = "../../spate-cli/tests/common/rebuilt.rs"]
mod rebuilt;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/cluster-xxxx → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    path
}

/// The part files of an output directory, lines sorted.
fn lines(dir: &Path) -> Vec<String> {
    assert!(
        dir.join("_SUCCESS").exists(),
        "{} is not complete",
        dir.display()
    );
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            out.extend(
                std::fs::read_to_string(entry.path())
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    out.sort();
    out
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A job binary run on `input` twice: locally into `dir/local`, then as
/// the driver of a cluster of 2 executors (which run the same binary with
/// the same arguments) into `dir/remote`.
struct HereAndThere {
    local: PathBuf,
    remote: PathBuf,
    here: Output,
    there: Output,
    cluster: LocalCluster,
}

fn run_here_and_there(job: &Path, input: &Path, dir: &Path) -> HereAndThere {
    let (local, remote) = (dir.join("local"), dir.join("remote"));
    let args: Vec<String> = [input, &remote]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let here = ok(Command::new(job)
        .arg(input)
        .arg(&local)
        .env_remove("SPATE_CLUSTER")
        .output()
        .unwrap());
    // Its executors build the job's steps from the same arguments.
    let cluster = LocalCluster::start(&UpOptions {
        program: job.to_path_buf(),
        executors: 2,
        slots: 1,
        host: "127.0.0.1".into(),
        port: 0,
        work_dir: dir.join("cluster"),
        tie_to_parent: true,
        job_args: args.clone(),
    })
    .unwrap();
    let there = ok(Command::new(job)
        .args(&args)
        .env("SPATE_CLUSTER", cluster.address().to_string())
        .output()
        .unwrap());
    HereAndThere {
        local,
        remote,
        here,
        there,
        cluster,
    }
}

#[test]
fn a_job_binary_with_closures_writes_on_a_cluster_what_it_writes_locally() {
    let job = example("cluster_wordcount");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for n in 0..4 {
        spate::jobs::corpus::write_file(&input.join(format!("{n}.txt")), 50_000, n).unwrap();
    }
    let HereAndThere {
        local,
        remote,
        there: out,
        cluster,
        ..
    } = run_here_and_there(&job, &input, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrote "), "{stderr}");
    assert_eq!(lines(&remote), lines(&local));
    // It ran on the cluster, as one job of the scheduler's.
    let jobs = spate::cluster::rest_json(cluster.address(), "/api/jobs").unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    assert_eq!(jobs[0]["status"], "Completed", "{jobs}");

    // A rebuilt job refuses to drive the cluster of the previous build,
    // whose executors hold the old closures under the same step names.
    let (rebuilt, other) = rebuilt::another_build(&job, dir.path(), spate_core::build::build_id_of);
    let out = Command::new(&rebuilt)
        .arg(&input)
        .arg(dir.path().join("never"))
        .env("SPATE_CLUSTER", cluster.address().to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let built = spate_core::build::build_id_of(&job).unwrap();
    assert!(
        err.contains(&format!(
            "this job is build {other}, but the cluster at {} is build {built}",
            cluster.address()
        )),
        "{err}"
    );
    assert!(!dir.path().join("never").exists());
}

#[test]
fn an_executor_whose_job_arguments_are_wrong_says_so() {
    let job = example("cluster_wordcount");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&job)
        .args([
            "cluster",
            "executor",
            "--scheduler",
            "127.0.0.1:9",
            "--work-dir",
        ])
        .arg(work.path())
        .args(["--", "only-one-argument"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("building the job's steps"), "{err}");
    assert!(
        err.contains("usage: cluster_wordcount INPUT OUTPUT"),
        "{err}"
    );
}

/// Broadcast values, accumulators and the rest of the Spark vocabulary
/// give on a cluster what they give locally: the broadcast value is the
/// driver's (computed by an action, which executors never run), and each
/// task's accumulator additions count once.
#[test]
fn the_spark_vocabulary_gives_on_a_cluster_what_it_gives_locally() {
    let job = example("cluster_vocabulary");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for n in 0..3 {
        let path = input.join(format!("{n}.txt"));
        spate::jobs::corpus::write_file(&path, 40_000, n).unwrap();
        // Blank lines for the accumulator to count.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n\n   \n");
        std::fs::write(&path, text).unwrap();
    }
    let HereAndThere {
        local,
        remote,
        here,
        there,
        cluster: _cluster,
    } = run_here_and_there(&job, &input, dir.path());
    let (here, there) = (
        String::from_utf8_lossy(&here.stdout).into_owned(),
        String::from_utf8_lossy(&there.stdout).into_owned(),
    );
    assert!(here.contains("common words: 10\n"), "{here}");
    assert!(here.contains(" with text, 9 blank\n"), "{here}");
    assert!(here.contains("metric map#"), "{here}");
    assert_eq!(there, here);
    for part in ["rare", "lengths", "initials", "longest", "files"] {
        let (l, r) = (lines(&local.join(part)), lines(&remote.join(part)));
        assert!(!l.is_empty(), "{part}");
        assert_eq!(r, l, "{part}");
    }
    // The common words were left out on the executors too.
    let rare = lines(&remote.join("rare"));
    assert!(!rare.iter().any(|l| l.starts_with("the\t")), "{rare:?}");
}
