//! spate on a Ballista cluster of real processes: one cluster (a scheduler
//! and 2 executors, each a `spate` process) shared by the tests of this
//! binary, ended with it. The differential tests run the `.slt` files and
//! TPC-H SF 0.1 on it and expect exactly the local answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "common/rebuilt.rs"]
mod rebuilt;
#[path = "../../spate-sql/tests/common/slt.rs"]
mod slt;
#[path = "../../spate-sql/tests/common/tpch.rs"]
mod tpch;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use spate::prelude::*;
use spate_cluster::launch::{LocalCluster, UpOptions};
use spate_cluster::status::status;

const SPATE: &str = env!("CARGO_BIN_EXE_spate");

/// The cluster of this test binary: started by the first test that needs
/// it; its processes exit when this process does (their standard input is a
/// pipe from here).
fn cluster() -> &'static LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let work = tempfile::Builder::new()
            .prefix("spate-cluster-test")
            .tempdir()
            .unwrap()
            .keep();
        LocalCluster::start(&UpOptions {
            program: PathBuf::from(SPATE),
            executors: 2,
            slots: 2,
            host: "127.0.0.1".into(),
            port: 0,
            work_dir: work,
            tie_to_parent: true,
            job_args: Vec::new(),
        })
        .unwrap()
    })
}

fn on_cluster() -> Context {
    Context::builder()
        .cluster(cluster().address().to_string())
        .build()
        .unwrap()
}

/// GET `path` from `host:port`: the status code.
fn http_status(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn slt_files_give_the_local_answers_on_the_cluster() {
    let ctx = on_cluster();
    let mut failures = Vec::new();
    for name in ["basics.slt", "catalog.slt", "write.slt"] {
        failures.extend(slt::run_file(&ctx, name, false, "cluster"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn tpch_sf01_gives_the_answers_on_the_cluster() {
    let ctx = on_cluster();
    let failures = tpch::run_all(&ctx, &tpch::data());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn status_lists_every_executor_alive_and_each_serves_health() {
    let cluster = cluster();
    let s = status(cluster.address()).unwrap();
    assert_eq!((s.alive(), s.slots()), (2, 4), "{}", s.render());
    let out = Command::new(SPATE)
        .args([
            "cluster",
            "status",
            "--cluster",
            &cluster.address().to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("2 of 2 executors alive, 4 task slots"),
        "{text}"
    );
    assert_eq!(text.matches(" alive").count(), 3, "{text}");
    // Each executor says where its health endpoints are once registered
    // (it looks every 20 ms: the scheduler may have it first).
    for n in 1..=2 {
        let path = cluster.work_dir().join(format!("executor-{n}.out"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            let out = std::fs::read_to_string(&path).unwrap();
            if let Some(addr) = out
                .split("health http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
            {
                break addr.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "executor {n} printed no health address:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let addr = addr.as_str();
        assert_eq!(http_status(addr, "/healthz"), 200, "executor {n}");
        assert_eq!(http_status(addr, "/readyz"), 200, "executor {n}");
    }
}

#[test]
fn a_step_whose_closures_are_not_on_the_executors_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\nc\n").unwrap();
    let ctx = on_cluster();
    // The executors run `spate`, which does not define this test's closures.
    let err = ctx
        .read_text(&[&input])
        .unwrap()
        .map(|line: String| line.len() as u64)
        .collect()
        .unwrap_err()
        .to_string();
    assert!(err.contains("step 'map'"), "{err}");
    assert!(err.contains("is not defined in this process"), "{err}");
}

/// A free port on loopback (nothing listens on it once this returns).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn no_scheduler_at_the_address_is_a_usage_error_naming_it() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let start = Instant::now();
    let out = Command::new(SPATE)
        .args(["sql", "--cluster", &addr, "-c", "SELECT 1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("no spate scheduler at {addr}")),
        "{err}"
    );
    // The same from the environment.
    let out = Command::new(SPATE)
        .env("SPATE_CLUSTER", &addr)
        .args(["cluster", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr), "{err}");
    eprintln!("refused in {:?}", start.elapsed());
}

#[test]
fn an_executor_of_another_build_is_refused_naming_both() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let (program, other) =
        rebuilt::another_build(Path::new(SPATE), dir.path(), spate_core::build::build_id_of);
    let mine = spate_core::build::build_id_of(Path::new(SPATE)).unwrap();
    let out = Command::new(&program)
        .args([
            "cluster",
            "executor",
            "--scheduler",
            &cluster.address().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--work-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "this executor is build {other}, but the cluster at {} is build {mine}",
            cluster.address()
        )),
        "{err}"
    );
    // The cluster kept its own two executors only.
    assert_eq!(status(cluster.address()).unwrap().executors.len(), 2);
}

#[test]
fn an_executor_pointed_at_something_else_exits_with_a_message() {
    // A server that answers every request with 404, like any web server.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // Read the whole request head, then answer.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let work = tempfile::tempdir().unwrap();
    let run = |scheduler: &str| {
        let out = Command::new(SPATE)
            .args([
                "cluster",
                "executor",
                "--scheduler",
                scheduler,
                "--bind",
                "127.0.0.1",
            ])
            .arg("--work-dir")
            .arg(work.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&addr);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{addr} is not a spate scheduler")),
        "{err}"
    );
    let nothing = format!("127.0.0.1:{}", closed_port());
    let (code, err) = run(&nothing);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("no spate scheduler at {nothing}")),
        "{err}"
    );
}

/// Kills the processes listed in a detached cluster's `cluster.pids`.
struct Pids(PathBuf);

impl Drop for Pids {
    fn drop(&mut self) {
        let text = std::fs::read_to_string(self.0.join("cluster.pids")).unwrap_or_default();
        for pid in text.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "waited {deadline:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cluster_up_detached_prints_the_address_first_and_stays_up() {
    let work = tempfile::tempdir().unwrap();
    let _cleanup = Pids(work.path().to_path_buf());
    let out = Command::new(SPATE)
        .args([
            "cluster",
            "up",
            "--executors",
            "1",
            "--slots",
            "1",
            "--detach",
        ])
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let addr = stdout.lines().next().unwrap().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{stdout}");
    // Registered before `up` returned; still there after it did.
    let s = status(&spate_cluster::Address::parse(&addr).unwrap()).unwrap();
    assert_eq!((s.alive(), s.slots()), (1, 1), "{}", s.render());
    // Logs and process ids are in the work directory.
    for file in [
        "scheduler.log",
        "cluster.pids",
        "scheduler.out",
        "executor-1.out",
    ] {
        assert!(work.path().join(file).exists(), "{file}");
    }
    // A query runs on it.
    let out = Command::new(SPATE)
        .env("SPATE_HOME", work.path().join("home"))
        .args(["sql", "--cluster", &addr, "--format", "csv", "-c"])
        .arg("SELECT sum(v) AS s FROM (VALUES (1), (20), (300)) AS t(v)")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s\n321\n");
    drop(_cleanup);
    let addr = spate_cluster::Address::parse(&addr).unwrap();
    wait_for(
        "the killed scheduler to stop answering",
        Duration::from_secs(10),
        || status(&addr).is_err(),
    );
}

/// The shared cluster's scheduler log records the jobs it ran.
#[test]
fn logs_go_to_the_work_directory() {
    let ctx = on_cluster();
    ctx.block_on(async {
        ctx.session()
            .sql("SELECT count(*) FROM (VALUES (1), (2)) AS t(v)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    });
    let work: &Path = cluster().work_dir();
    let jobs = spate_core::cluster::rest_json(cluster().address(), "/api/jobs").unwrap();
    let job = jobs.as_array().unwrap().last().unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = std::fs::read_to_string(work.join("scheduler.log")).unwrap();
    assert!(log.contains("spate scheduler listening on"), "{log}");
    assert!(
        log.contains(&job),
        "job {job} is not in the scheduler's log"
    );
    // And in the per-job event logs.
    let events: String = std::fs::read_dir(work.join("events"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(events.contains(&job), "job {job} has no event log");
    let executor_logs = std::fs::read_dir(work)
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("executor-") && name.ends_with(".log")
        })
        .count();
    assert_eq!(executor_logs, 2);
}

/// Ballista narrows a stage's plan to the partitions of each task only for
/// scans it knows: spate's text scans are planned as such scans, so a task
/// of one partition reads one partition's splits, not all of them.
#[test]
fn tasks_of_one_partition_read_their_own_text_splits_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lines");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("1.txt"), "a\n").unwrap();
    std::fs::write(data.join("2.txt"), "b\nb\nb\n").unwrap();
    let out = Command::new(SPATE)
        .env("SPATE_HOME", dir.path().join("home"))
        .args([
            "sql",
            "--cluster",
            &cluster().address().to_string(),
            "--format",
            "csv",
        ])
        .arg("-c")
        .arg(format!(
            "CREATE EXTERNAL TABLE lines STORED AS TEXT LOCATION '{}/'",
            data.display()
        ))
        // One partition per task, as a busy cluster gives them.
        .args(["-c", "SET ballista.scheduler.max_partitions_per_task = 1"])
        .args([
            "-c",
            "SELECT value, count(*) AS n FROM lines GROUP BY value ORDER BY value",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("value,n\na,1\nb,3\n"), "{stdout}");
}

/// `spate run --cluster`: the built-in jobs in every face, their steps'
/// closures found on the executors (which run `spate` too), equal to the
/// local answers — printed and written.
#[test]
fn builtin_jobs_give_the_local_answers_on_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("text");
    std::fs::create_dir(&input).unwrap();
    for (n, seed) in [(1, 7), (2, 8)] {
        spate::jobs::corpus::write_file(&input.join(format!("{n}.txt")), 3 << 20, seed).unwrap();
    }
    let addr = cluster().address().to_string();
    let run = |extra: &[&str]| {
        let out = Command::new(SPATE)
            .env_remove("SPATE_CLUSTER")
            .arg("run")
            .args(extra)
            .arg("-i")
            .arg(&input)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{extra:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    for job in ["wordcount", "most-used-word"] {
        for face in ["dataset", "pipeline", "mapreduce"] {
            let local = run(&[job, "--face", face]);
            assert!(local.lines().count() > 0, "{job} {face}");
            let remote = run(&[job, "--face", face, "--cluster", &addr]);
            assert_eq!(remote, local, "{job} in the {face} face on the cluster");
        }
    }
    // Written to a directory by the cluster's tasks, committed by the driver.
    let local = run(&["wordcount"]);
    let out = dir.path().join("out");
    run(&["wordcount", "--cluster", &addr, "-o", out.to_str().unwrap()]);
    assert!(out.join("_SUCCESS").exists());
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    let written: String = parts
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(written, local);
}

#[test]
fn run_on_no_scheduler_is_a_usage_error_naming_it() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let out = Command::new(SPATE)
        .env("SPATE_CLUSTER", &addr)
        .arg("run")
        .arg("wordcount")
        .arg("-i")
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr), "{err}");
}

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// `spate ARGS` from `cwd`, which must succeed: (stdout, stderr).
fn spate_in(cwd: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(SPATE)
        .env_remove("SPATE_CLUSTER")
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "spate {args:?}: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

/// The counters a run printed (Hadoop's layout), without the lines that
/// depend on how input was split among tasks: a combiner's input and
/// output, and so the reducers' input (the combiners' output; seen to
/// differ, 16 against 19, between two runs of one job under load).
fn counters_of(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with('\t') || l.contains("ounters: "))
        .filter(|l| {
            !l.contains("Combine ")
                && !l.contains("In-map combine")
                && !l.contains("Reduce input records")
        })
        .collect()
}

/// Runs `verb args` locally on 4 threads and on the cluster (2 executors
/// of 2 slots: 4 reducers either way); output and counters must be equal.
fn same_on_cluster(cwd: &Path, verb: &str, args: &[&str]) -> String {
    let addr = cluster().address().to_string();
    let local = spate_in(cwd, &[&[verb, "--threads", "4"], args].concat());
    let remote = spate_in(cwd, &[&[verb, "--cluster", &addr], args].concat());
    assert!(!local.0.is_empty(), "{verb} {args:?} printed nothing");
    assert_eq!(
        sorted_lines(&remote.0),
        sorted_lines(&local.0),
        "{verb} {args:?}: output on the cluster"
    );
    assert_eq!(
        counters_of(&remote.1),
        counters_of(&local.1),
        "{verb} {args:?}: counters on the cluster\n{}",
        remote.1
    );
    remote.1
}

/// Hadoop Streaming jobs on the cluster: commands and `-file`/`-files` side
/// files travel with the job (tasks run them from their working directory
/// on the executors), key options and Aggregate hold, the tasks' reporter
/// counters come back to the driver.
#[test]
fn streaming_jobs_give_the_local_answers_on_the_cluster() {
    let cwd = fixtures("streaming");
    let io = ["-input", "input", "-output", "-"];
    let jobs: Vec<Vec<&str>> = vec![
        vec![
            "-mapper",
            "./wc_mapper.sh",
            "-combiner",
            "awk -f wc_reducer.awk",
            "-reducer",
            "awk -f wc_reducer.awk",
            "-file",
            "wc_mapper.sh",
            "-file",
            "wc_reducer.awk",
        ],
        vec![
            "-mapper",
            "./lookup_mapper.sh | sed s/^/LongValueSum:/",
            "-reducer",
            "aggregate",
            "-file",
            "lookup_mapper.sh",
            "-files",
            "stopwords.txt",
        ],
        vec![
            "-mapper",
            "./counters_mapper.sh",
            "-reducer",
            "NONE",
            "-file",
            "counters_mapper.sh",
        ],
        vec![
            "-mapper",
            "python3 wc_mapper.py",
            "-reducer",
            "python3 wc_reducer.py",
            "-files",
            "wc_mapper.py,wc_reducer.py",
            "-D",
            "mapreduce.job.output.key.comparator.class=\
             org.apache.hadoop.mapred.lib.KeyFieldBasedComparator",
            "-D",
            "mapreduce.partition.keycomparator.options=-k1,1r",
        ],
    ];
    for job in &jobs {
        let stderr = same_on_cluster(&cwd, "streaming", &[&io[..], job].concat());
        if job.contains(&"./counters_mapper.sh") {
            assert!(stderr.contains("\tWords\n\t\tSeen="), "{stderr}");
        }
    }
}

/// A side file travels in the job: the tasks on the executors run the
/// executor's own copy of it (from its work directory), not the driver's
/// file, which an executor on another host could not see.
#[test]
fn streaming_side_files_reach_the_executors_as_copies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "x\ny\n").unwrap();
    // The mapper prints where it runs from: the task's directory on an
    // executor, whose file is a link into the executor's own copy.
    std::fs::write(
        dir.path().join("where.sh"),
        "#!/bin/sh\ncat >/dev/null\nreadlink -f where.sh\n",
    )
    .unwrap();
    let addr = cluster().address().to_string();
    let (out, _) = spate_in(
        dir.path(),
        &[
            "streaming",
            "--cluster",
            &addr,
            "-input",
            "in.txt",
            "-output",
            "-",
            "-mapper",
            "sh where.sh",
            "-reducer",
            "NONE",
            "-file",
            "where.sh",
        ],
    );
    let original = std::fs::canonicalize(dir.path().join("where.sh")).unwrap();
    assert!(!out.trim().is_empty(), "{out}");
    for line in out.lines() {
        assert_ne!(Path::new(line), original, "{out}");
        assert!(line.contains("/shipped/"), "{out}");
        assert_eq!(
            std::fs::read(line).unwrap(),
            std::fs::read(&original).unwrap()
        );
    }
}

/// mrjob scripts unchanged on the cluster: the script, spate's map-task
/// driver and the job's side files travel with the job.
#[test]
fn mrjob_jobs_give_the_local_answers_on_the_cluster() {
    let cwd = fixtures("mrjob");
    let jobs: [&[&str]; 10] = [
        &["mr_word_freq.py", "input/"],
        &["mr_complex_keys.py", "input/"],
        &["mr_most_used_word.py", "input/"],
        &["mr_map_only.py", "input/"],
        &["mr_no_combiner.py", "--min-count", "3", "input/"],
        &["mr_counters.py", "input/"],
        &["mr_side_file.py", "input/"],
        &["mr_sort_values.py", "input/"],
        &["mr_cmd_steps.py", "input/"],
        &["mr_pre_filter.py", "input/"],
    ];
    for job in jobs {
        let stderr = same_on_cluster(&cwd, "mrjob", job);
        if job[0] == "mr_counters.py" {
            assert!(stderr.contains("Counters: "), "{stderr}");
        }
    }
    // spate's own --cluster may follow the script, as its other options may.
    let addr = cluster().address().to_string();
    let (after, _) = spate_in(
        &cwd,
        &["mrjob", "mr_word_freq.py", "--cluster", &addr, "input/"],
    );
    let (local, _) = spate_in(&cwd, &["mrjob", "mr_word_freq.py", "input/"]);
    assert_eq!(sorted_lines(&after), sorted_lines(&local));
}

/// A task that fails on every attempt fails the job after the job's
/// attempts, naming the task, the host it ran on and its last error.
#[test]
fn a_streaming_task_failing_on_the_cluster_names_task_host_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = streaming_on_cluster(
        dir.path(),
        &[
            "-D",
            "mapreduce.map.maxattempts=2",
            "-reducer",
            "NONE",
            "-mapper",
            "echo broken-on-purpose >&2; exit 3",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed 2 times"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("on host "), "{err}");
    assert!(err.contains("broken-on-purpose"), "{err}");
    assert!(err.contains("step-1/mapper"), "{err}");
}

/// Side files travel inside the plan: more than it may carry is refused
/// before the job starts, saying where large side data belongs.
#[test]
fn side_files_too_big_to_ship_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![b'x'; 4 << 20]).unwrap();
    // Three task steps carry it: 12 MiB in all.
    let out = streaming_on_cluster(
        dir.path(),
        &[
            "-mapper",
            "cat",
            "-combiner",
            "cat",
            "-reducer",
            "cat",
            "-file",
            "big.bin",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("travel with each of its 3 task steps"),
        "{err}"
    );
    assert!(
        err.contains("shared filesystem or an object store"),
        "{err}"
    );
}

/// `spate streaming` on the cluster from `dir`, over a one-line `in.txt`
/// there, printing to stdout, with `args` added.
fn streaming_on_cluster(dir: &Path, args: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("in.txt"), "x\n").unwrap();
    let addr = cluster().address().to_string();
    Command::new(SPATE)
        .current_dir(dir)
        .args([
            "streaming",
            "--cluster",
            &addr,
            "-input",
            "in.txt",
            "-output",
            "-",
        ])
        .args(args)
        .output()
        .unwrap()
}
