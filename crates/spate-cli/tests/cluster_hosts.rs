//! A cluster on separate network hosts: Linux network namespaces made by
//! this test (`ip netns`, from Debian's iproute2, which `scripts/test.sh`
//! installs; it needs root, as CI and these machines run). The scheduler's
//! host holds a bridge; the executors' hosts and the driver's are joined to
//! it by veth pairs, each with its own address. Input and output live on an
//! S3-compatible server (`s3s-fs`) on the scheduler's host, so nothing goes
//! through loopback or a shared directory: the scheduler lists and plans
//! from the store, the executors read and write it, the driver commits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "common/hosts.rs"]
mod hosts;
use hosts::Hosts;

const SPATE: &str = env!("CARGO_BIN_EXE_spate");
const SCHEDULER_IP: &str = "10.77.0.1";
const DRIVER_IP: &str = "10.77.0.2";
const EXECUTOR_IPS: [&str; 2] = ["10.77.0.11", "10.77.0.12"];
const KEY: &str = "spate-hosts";
const SECRET: &str = "spate-hosts-secret";

/// The store's credentials and address, as every host gets them.
fn with_store(mut cmd: Command) -> Command {
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://{SCHEDULER_IP}:9000"))
        .env("AWS_ALLOW_HTTP", "true");
    cmd
}

/// Runs `cmd` to its end, with a deadline.
fn run(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {deadline:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Files of rows `k,v` (keys `k0`..`k39`): the table and, per key, the sum
/// and count a GROUP BY gives.
fn write_input(dir: &Path) -> BTreeMap<String, (i64, i64)> {
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for file in 0..4 {
        let mut text = String::from("k,v\n");
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{}", x % 40);
            let value = ((x >> 20) % 1000) as i64;
            text.push_str(&format!("{key},{value}\n"));
            let e = expected.entry(key).or_default();
            e.0 += value;
            e.1 += 1;
        }
        std::fs::write(dir.join(format!("part-{file}.csv")), text).unwrap();
    }
    expected
}

/// About 3 MiB of text in `dir`: lines of 0 to 9 words, split by the
/// reader into several ranges.
fn write_text(dir: &Path) {
    const WORDS: [&str; 6] = ["ash", "birch", "cedar", "elm", "fir", "oak"];
    let mut x: u64 = 0x853c_49e6_748f_ea9b;
    let mut text = String::new();
    while text.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let words: Vec<&str> = (0..x % 10)
            .map(|i| WORDS[((x >> (i * 3 + 8)) % 6) as usize])
            .collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("trees.txt"), text).unwrap();
}

/// `spate cluster status` on the driver's host.
fn status(hosts: &Hosts) -> Output {
    let mut status = hosts.command("driver", SPATE);
    status.args([
        "cluster",
        "status",
        "--cluster",
        &format!("{SCHEDULER_IP}:50050"),
    ]);
    run(status, Duration::from_secs(30))
}

fn wait_for_scheduler(hosts: &Hosts) {
    let start = Instant::now();
    loop {
        let out = status(hosts);
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the scheduler does not answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_executors(hosts: &Hosts) {
    let start = Instant::now();
    loop {
        let out = status(hosts);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("2 of 2 executors alive") {
            for address in EXECUTOR_IPS {
                assert!(text.contains(address), "{text}");
            }
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the executors did not register: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_job_on_executors_of_other_hosts_reads_and_writes_an_object_store() {
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("store/data");
    std::fs::create_dir_all(bucket.join("in")).unwrap();
    let expected = write_input(&bucket.join("in"));

    let mut hosts = Hosts::new(
        SCHEDULER_IP,
        &[
            ("driver", DRIVER_IP),
            ("exec1", EXECUTOR_IPS[0]),
            ("exec2", EXECUTOR_IPS[1]),
        ],
    );
    let mut store = hosts.command("sched", "s3s-fs");
    store
        .args(["--host", SCHEDULER_IP, "--port", "9000"])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(work.path().join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    hosts.spawn(store);
    let mut scheduler = hosts.command("sched", SPATE);
    scheduler
        .args(["cluster", "scheduler", "--exit-with-stdin"])
        .args(["--bind", &format!("{SCHEDULER_IP}:50050")])
        .arg("--work-dir")
        .arg(work.path().join("sched"))
        .stdout(Stdio::null());
    hosts.spawn(with_store(scheduler));
    // An executor checks once that a scheduler answers, and exits if not.
    wait_for_scheduler(&hosts);
    for (i, address) in EXECUTOR_IPS.iter().enumerate() {
        let name = format!("exec{}", i + 1);
        let mut executor = hosts.command(&name, SPATE);
        executor
            .args(["cluster", "executor", "--exit-with-stdin"])
            .args(["--scheduler", &format!("{SCHEDULER_IP}:50050")])
            .args(["--bind", address, "--advertise", address, "--slots", "2"])
            .arg("--work-dir")
            .arg(work.path().join(&name))
            .stdout(Stdio::null());
        hosts.spawn(with_store(executor));
    }
    wait_for_executors(&hosts);

    let home: PathBuf = work.path().join("home");
    let sql = |statements: &[&str]| {
        let mut cmd = hosts.command("driver", SPATE);
        cmd.env("SPATE_HOME", &home)
            .args(["sql", "--format", "csv", "--cluster"])
            .arg(format!("{SCHEDULER_IP}:50050"));
        for s in statements {
            cmd.args(["-c", s]);
        }
        let out = run(with_store(cmd), Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Two stages (a shuffle between the executors' hosts), the output
    // written by the executors and committed by the driver.
    sql(&[
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 's3://data/in/' \
         OPTIONS ('format.has_header' 'true')",
        "COPY (SELECT k, sum(v) AS s, count(*) AS n FROM t GROUP BY k) \
         TO 's3://data/out/' STORED AS PARQUET",
        "CREATE EXTERNAL TABLE out STORED AS PARQUET LOCATION 's3://data/out/'",
    ]);
    let read = sql(&["SELECT k, s, n FROM out ORDER BY k"]);
    let mut want = String::from("k,s,n\n");
    for (k, (s, n)) in &expected {
        want.push_str(&format!("{k},{s},{n}\n"));
    }
    assert_eq!(read, want);
    let out = bucket.join("out");
    assert!(out.join("_SUCCESS").is_file());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n == "_SUCCESS" || n.ends_with(".parquet")),
        "only the committed files: {names:?}"
    );

    // A text job: the executors read the object in ranged parts (one per
    // split, a task on each host), as a job on local files answers.
    write_text(&bucket.join("text"));
    let mut wordcount = hosts.command("driver", SPATE);
    wordcount
        .env("SPATE_HOME", &home)
        .args(["run", "wordcount", "--cluster"])
        .arg(format!("{SCHEDULER_IP}:50050"))
        .args(["--input", "s3://data/text/", "--output", "-"]);
    let out = run(with_store(wordcount), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut local = Command::new(SPATE);
    local
        .args(["run", "wordcount", "--output", "-", "--input"])
        .arg(bucket.join("text"));
    let want = run(local, Duration::from_secs(60));
    assert!(want.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want.stdout)
    );

    // Both executors ran tasks (each logs the tasks it finished).
    for name in ["exec1", "exec2"] {
        let logs: String = std::fs::read_dir(work.path().join(name))
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension().is_some_and(|x| x == "log"))
                    .then(|| std::fs::read_to_string(p).unwrap())
            })
            .collect();
        assert!(logs.contains("Finished task"), "{name} ran no task: {logs}");
    }
}
