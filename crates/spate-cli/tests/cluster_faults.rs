//! Faults on a cluster of real processes, caused by SIGKILL: the output is
//! exactly the fault-free output, only lost work re-runs, and what cannot
//! go on fails in seconds with an error instead of hanging. Each case starts
//! its own cluster (2 executors, mostly of 1 task slot: a killed executor
//! leaves the job one, so a leaked slot hangs it) and reads the job's progress from the scheduler's REST API, so it
//! kills at a known point: after a task of the stage has succeeded, before
//! the stage is done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use spate_cluster::Address;
use spate_cluster::launch::{LocalCluster, UpOptions};
use spate_core::cluster::rest_json;

const SPATE: &str = env!("CARGO_BIN_EXE_spate");

/// Word count over 8 text files as SQL: a map stage (8 tasks), a reduce
/// stage (8 tasks, hash-partitioned by word) and a final sort.
const QUERY: &str = "SELECT w, count(*) AS n FROM (SELECT unnest(string_to_array(value, ' ')) AS w \
                     FROM t) GROUP BY w ORDER BY w";

/// The input and a catalog with table `t` over it, made once.
fn data() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("spate-faults")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::create_dir(dir.join("in")).unwrap();
        // Deterministic words from a small linear congruential generator.
        let mut x: u64 = 7;
        for f in 0..8 {
            let mut text = String::new();
            for _ in 0..40_000 {
                for i in 0..8 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if i > 0 {
                        text.push(' ');
                    }
                    text.push_str(&format!("w{}", (x >> 33) % 5000));
                }
                text.push('\n');
            }
            std::fs::write(dir.join(format!("in/part-{f}.txt")), text).unwrap();
        }
        let out = sql(&dir, None)
            .arg("-c")
            .arg(format!(
                "CREATE EXTERNAL TABLE t STORED AS TEXT LOCATION '{}/in/'",
                dir.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn sql(dir: &Path, cluster: Option<&Address>) -> Command {
    let mut c = Command::new(SPATE);
    c.env("SPATE_HOME", dir.join("home"))
        .args(["sql", "--format", "csv"]);
    if let Some(addr) = cluster {
        c.args(["--cluster", &addr.to_string()]);
    }
    c
}

/// The query's answer run locally: what every faulty run must print.
fn expected() -> &'static str {
    static OUT: OnceLock<String> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = sql(data(), None).args(["-c", QUERY]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
}

/// A cluster with its work directory (deleted after the cluster stops).
struct TestCluster {
    cluster: LocalCluster,
    _work: tempfile::TempDir,
}

impl std::ops::Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

fn start_cluster(slots: usize) -> TestCluster {
    let work = tempfile::Builder::new()
        .prefix("spate-faults-cluster")
        .tempdir()
        .unwrap();
    let cluster = LocalCluster::start(&UpOptions {
        program: PathBuf::from(SPATE),
        executors: 2,
        slots,
        host: "127.0.0.1".into(),
        port: 0,
        work_dir: work.path().to_path_buf(),
        tie_to_parent: true,
        job_args: Vec::new(),
    })
    .unwrap();
    TestCluster {
        cluster,
        _work: work,
    }
}

/// Starts the query on `cluster` with 8 partitions per stage.
fn submit(cluster: &LocalCluster) -> Child {
    sql(data(), Some(cluster.address()))
        .args([
            "-c",
            "SET datafusion.execution.target_partitions = 8",
            "-c",
            QUERY,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn job_ids(addr: &Address) -> Vec<String> {
    rest_json(addr, "/api/jobs")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect()
}

/// The stages of a job by id (empty until the scheduler has planned it).
fn stages(addr: &Address, job: &str) -> Vec<Value> {
    rest_json(addr, &format!("/api/job/{job}/stages"))
        .ok()
        .and_then(|v| v["stages"].as_array().cloned())
        .unwrap_or_default()
}

fn succeeded(task: &Value) -> bool {
    task["status"] == "Successful"
}

/// The partitions the successful tasks among `tasks` ran (a task runs one
/// partition per slot it was given).
fn done_partitions(tasks: &[Value]) -> Vec<u64> {
    let mut done: Vec<u64> = tasks
        .iter()
        .filter(|t| succeeded(t))
        .flat_map(|t| t["partition_id"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_u64())
        .collect();
    done.sort_unstable();
    done
}

/// Polls until the job submitted after `before` has a stage `stage` with at
/// least one task succeeded and not all: the job id.
fn wait_inside_stage(addr: &Address, before: &[String], stage: &str, query: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the job never reached stage {stage}"
        );
        assert!(
            query.try_wait().unwrap().is_none(),
            "the job ended before stage {stage} was reached"
        );
        if let Some(job) = job_ids(addr).into_iter().find(|j| !before.contains(j))
            && let Some(s) = stages(addr, &job)
                .into_iter()
                .find(|s| s["stage_id"] == stage)
        {
            let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
            let done = done_partitions(&tasks).len();
            if (1..8).contains(&done) {
                return job;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the query with a deadline (a hang fails the test), its
/// output drained as it comes: its exit code, stdout, stderr and the time
/// since `killed_at`.
fn finish(mut query: Child, killed_at: Instant) -> (Option<i32>, String, String, Duration) {
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let out = drain(Box::new(query.stdout.take().unwrap()));
    let err = drain(Box::new(query.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(90);
    while query.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the job hangs after the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = killed_at.elapsed();
    let code = query.wait().unwrap().code();
    (code, out.join().unwrap(), err.join().unwrap(), took)
}

/// The partitions of `stage` that succeeded, and the attempts that failed
/// (with why).
fn reruns(addr: &Address, job: &str, stage: &str) -> (Vec<u64>, Vec<String>) {
    let s = stages(addr, job)
        .into_iter()
        .find(|s| s["stage_id"] == stage)
        .unwrap();
    let tasks = s["tasks"].as_array().cloned().unwrap();
    let failed: Vec<String> = tasks
        .iter()
        .filter(|t| !succeeded(t))
        .map(|t| format!("partition {} {}", t["partition_id"], t["status"]))
        .collect();
    (done_partitions(&tasks), failed)
}

fn killed_during(stage: &str, slots: usize) {
    let want = expected();
    let cluster = start_cluster(slots);
    let addr = cluster.address().clone();
    let before = job_ids(&addr);
    let mut query = submit(&cluster);
    let job = wait_inside_stage(&addr, &before, stage, &mut query);
    let (_, executors) = cluster.pids();
    kill(executors[1]);
    let killed_at = Instant::now();
    let (code, out, err, took) = finish(query, killed_at);
    assert_eq!(
        code,
        Some(0),
        "{err}\n{}",
        diagnosis(cluster.work_dir(), &addr, &job)
    );
    // Exactly the fault-free answer: no row lost, none twice.
    assert!(
        out == want,
        "the output differs from the fault-free run: {} lines, expected {}\n{}",
        out.lines().count(),
        want.lines().count(),
        diagnosis(cluster.work_dir(), &addr, &job)
    );
    // Every partition succeeded once; what re-ran failed because of the
    // lost executor, and the stages did not re-run whole.
    for s in ["1", "2"] {
        let (ok, failed) = reruns(&addr, &job, s);
        // Every partition succeeded, once.
        assert_eq!(ok, (0..8).collect::<Vec<u64>>(), "stage {s}: {failed:?}");
        assert!(failed.len() < 8, "stage {s} re-ran whole: {failed:?}");
        for f in &failed {
            assert!(
                f.contains("lost") || f.contains("FetchPartitionError"),
                "stage {s}: {f}"
            );
        }
        eprintln!(
            "killed during stage {stage}: stage {s} re-ran {failed:?} (job finished {took:.1?} after the kill)"
        );
    }
}

/// What the scheduler saw of a job that should have survived: its tasks'
/// statuses by stage and the warnings and errors of the scheduler's log.
fn diagnosis(work_dir: &Path, addr: &Address, job: &str) -> String {
    let mut text = String::from("the scheduler's view of the job:\n");
    for s in stages(addr, job) {
        let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
        for t in tasks.iter().filter(|t| !succeeded(t)) {
            text.push_str(&format!(
                "  stage {} partition {} {}\n",
                s["stage_id"], t["partition_id"], t["status"]
            ));
        }
    }
    let log = std::fs::read_to_string(work_dir.join("scheduler.log")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    text.push_str("the scheduler's warnings and errors (last 40):\n");
    for l in &lines[lines.len().saturating_sub(40)..] {
        text.push_str(l);
        text.push('\n');
    }
    text
}

#[test]
fn an_executor_killed_in_the_map_stage_changes_nothing_and_only_its_tasks_rerun() {
    killed_during("1", 1);
}

#[test]
fn an_executor_killed_in_the_reduce_stage_changes_nothing_and_only_lost_work_reruns() {
    killed_during("2", 1);
}

/// With two slots per executor, tasks still running on the survivor when
/// their stage rolls back are cancelled: their slots must come back, or the
/// job runs on ever fewer of them (and hangs with none).
#[test]
fn executors_of_two_slots_killed_in_the_reduce_stage_change_nothing() {
    killed_during("2", 2);
}

#[test]
fn every_executor_killed_fails_the_job_in_seconds() {
    let cluster = start_cluster(1);
    let addr = cluster.address().clone();
    let before = job_ids(&addr);
    let mut query = submit(&cluster);
    wait_inside_stage(&addr, &before, "1", &mut query);
    let (_, executors) = cluster.pids();
    let ids: Vec<String> = spate_cluster::status::status(&addr)
        .unwrap()
        .executors
        .iter()
        .map(|e| e.info.id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    for pid in executors {
        kill(pid);
    }
    let (code, out, err, took) = finish(query, Instant::now());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("all executors were lost"), "{err}");
    // The error names the lost executors.
    for id in &ids {
        assert!(err.contains(id.as_str()), "{id} not named: {err}");
    }
    // Lost after 10 s without heartbeats, then 10 s of grace: ~20 s, far
    // below Ballista's defaults (3 minutes to notice, 3 more of grace).
    assert!(
        took < Duration::from_secs(30),
        "the job failed only after {took:?}"
    );
    eprintln!("all executors lost: the job failed {took:.1?} after the kill");
}

#[test]
fn a_killed_scheduler_fails_its_clients() {
    let cluster = start_cluster(1);
    let addr = cluster.address().clone();
    let before = job_ids(&addr);
    let mut query = submit(&cluster);
    wait_inside_stage(&addr, &before, "1", &mut query);
    let (scheduler, _) = cluster.pids();
    kill(scheduler);
    let (code, out, err, took) = finish(query, Instant::now());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("lost the scheduler at {addr} while ")),
        "{err}"
    );
    assert!(!err.contains("reading table"), "{err}");
    assert!(out.lines().count() <= 1, "a failed job printed rows: {out}");
    assert!(
        took < Duration::from_secs(30),
        "the client failed only after {took:?}"
    );
    eprintln!("scheduler lost: the client failed {took:.1?} after the kill: {err}");
}

/// Does process `pid` hold a file open whose path contains every one of
/// `parts`?
fn has_open(pid: u32, parts: &[&str]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|p| {
            let p = p.to_string_lossy();
            parts.iter().all(|part| p.contains(part))
        })
    })
}

/// The lines of every file under `dir`, but CSV headers, sorted; and the
/// names of the entries found on the way.
fn csv_rows(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        let text = std::fs::read_to_string(&path).unwrap();
        rows.extend(text.lines().skip(1).map(str::to_string));
    }
    rows.sort_unstable();
    (rows, names)
}

/// A `COPY` on a cluster whose writing executor is killed while its files
/// are open: the writer's task runs again elsewhere, and the output holds
/// every row exactly once — nothing of the killed attempt is published.
#[test]
fn an_executor_killed_while_writing_publishes_nothing_of_its_attempt() {
    let cluster = start_cluster(1);
    let out = tempfile::Builder::new()
        .prefix("spate-faults-copy")
        .tempdir()
        .unwrap();
    let target = out.path().join("copied");
    let copy = || {
        sql(data(), Some(cluster.address()))
            .args([
                "-c",
                "SET datafusion.execution.target_partitions = 8",
                "-c",
                &format!(
                    "COPY (SELECT value, value AS again FROM t) TO '{}' STORED AS CSV",
                    target.display()
                ),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (_, executors) = cluster.pids();
    // A writer holds its files open for a few milliseconds only: a busy
    // machine can run the whole COPY between two looks. Then it runs again
    // (its output replaced), until a look lands inside a write.
    let mut tries = 0;
    let (query, writer) = 'copy: loop {
        tries += 1;
        assert!(tries <= 10, "no look ever found an executor writing");
        let mut query = copy();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "no executor ever wrote the output"
            );
            if let Some(pid) = executors
                .iter()
                .find(|pid| has_open(**pid, &["/.copied.spate-staging"]))
            {
                break 'copy (query, *pid);
            }
            if let Some(status) = query.try_wait().unwrap() {
                assert!(status.success(), "a COPY without a fault failed");
                std::fs::remove_dir_all(&target).unwrap();
                continue 'copy;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    kill(writer);
    let (code, stdout, err, took) = finish(query, Instant::now());
    assert_eq!(code, Some(0), "{stdout}{err}");
    let mut want: Vec<String> = std::fs::read_dir(data().join("in"))
        .unwrap()
        .flat_map(|f| {
            std::fs::read_to_string(f.unwrap().path())
                .unwrap()
                .lines()
                // Arrow's CSV writer quotes values with spaces.
                .map(|l| format!("\"{l}\",\"{l}\""))
                .collect::<Vec<_>>()
        })
        .collect();
    want.sort_unstable();
    let (got, names) = csv_rows(&target);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("attempt-") || n.contains('#')),
        "an attempt's files were published: {names:?}"
    );
    assert!(names.contains(&"_SUCCESS".to_string()), "{names:?}");
    assert_eq!(got.len(), want.len(), "rows lost or written twice");
    if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
        panic!("the rows differ from the table's: {g:?} where {w:?} was expected");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["copied"], "staging was left behind");
    eprintln!("writer killed: the COPY finished {took:.1?} after the kill");
}
