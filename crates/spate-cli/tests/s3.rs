//! Tables on an S3-compatible object store: a real server (`s3s-fs`, a Rust
//! crate serving a local directory over the S3 API; `.ci/run` installs it)
//! started on loopback for each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

const KEY: &str = "spate-test";
const SECRET: &str = "spate-test-secret";

/// An `s3s-fs` server on a free loopback port, stopped when dropped.
struct S3 {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl S3 {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Process::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs serves the test bucket: cargo install s3s-fs --version 0.14.1");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, root }
    }

    /// Puts a file into `bucket` (the server serves its root directory).
    fn put(&self, bucket: &str, key: &str, body: &str) {
        let path = self.root.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    fn sql(&self, home: &std::path::Path) -> Command {
        let mut cmd = Command::cargo_bin("spate").unwrap();
        cmd.env("SPATE_HOME", home)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ALLOW_HTTP", "true")
            .arg("sql");
        cmd
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn external_tables_on_s3_persist_and_query() {
    let s3 = S3::start();
    s3.put("data", "words.csv", "word,n\ncat,2\ndog,5\n");
    s3.put(
        "data",
        "sales/year=2023/p.json",
        "{\"item\":\"a\",\"qty\":3}\n",
    );
    s3.put(
        "data",
        "sales/year=2024/p.json",
        "{\"item\":\"a\",\"qty\":7}\n{\"item\":\"b\",\"qty\":1}\n",
    );
    let home = tempfile::tempdir().unwrap();
    s3.sql(home.path())
        .args([
            "-c",
            "CREATE EXTERNAL TABLE words STORED AS CSV LOCATION 's3://data/words.csv' \
             OPTIONS ('format.has_header' 'true')",
            "-c",
            "CREATE EXTERNAL TABLE sales (item VARCHAR, qty INT, year INT) STORED AS JSON \
             PARTITIONED BY (year) LOCATION 's3://data/sales/'",
        ])
        .assert()
        .success();
    // Another process finds the tables (and their store) in the catalog.
    s3.sql(home.path())
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT w.word, s.year, sum(s.qty) AS q FROM words w JOIN sales s ON w.n > s.qty \
             GROUP BY w.word, s.year ORDER BY w.word, s.year",
        ])
        .assert()
        .success()
        .stdout("word,year,q\ncat,2024,1\ndog,2023,3\ndog,2024,1\n");
    // A missing object names its URL.
    s3.sql(home.path())
        .args([
            "-c",
            "CREATE EXTERNAL TABLE gone STORED AS PARQUET LOCATION 's3://data/nothing/'",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("s3://data/nothing/"));
}

#[test]
fn urls_without_a_store_are_refused_clearly() {
    let home = tempfile::tempdir().unwrap();
    Command::cargo_bin("spate")
        .unwrap()
        .env("SPATE_HOME", home.path())
        .args([
            "sql",
            "-c",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'ftp://host/t.csv'",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no object store for ftp://"));
}

/// Object names under `bucket/prefix` on the server's disk (hidden ones
/// too), sorted.
fn objects(s3: &S3, bucket: &str, prefix: &str) -> Vec<String> {
    let root = s3.root.path().join(bucket);
    let mut out = Vec::new();
    let mut stack = vec![root.join(prefix)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn copy_create_table_as_and_insert_write_to_s3() {
    let s3 = S3::start();
    std::fs::create_dir_all(s3.root.path().join("lake")).unwrap();
    let home = tempfile::tempdir().unwrap();
    s3.sql(home.path())
        .args([
            "-c",
            "COPY (SELECT v, v % 2 AS odd FROM generate_series(1, 10) AS t(v)) \
             TO 's3://lake/nums/' STORED AS PARQUET PARTITIONED BY (odd)",
            "-c",
            "CREATE TABLE evens STORED AS CSV LOCATION 's3://lake/evens/' \
             WITH (has_header = 'true') AS SELECT v FROM generate_series(2, 10, 2) AS t(v)",
            "-c",
            "CREATE EXTERNAL TABLE nums (v BIGINT, odd BIGINT) STORED AS PARQUET \
             PARTITIONED BY (odd) LOCATION 's3://lake/nums/'",
            "-c",
            "INSERT INTO nums VALUES (11, 1), (12, 0)",
            "-c",
            "INSERT INTO evens VALUES (12)",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("wrote 10 rows to s3://lake/nums/"))
        .stderr(predicate::str::contains("table evens created with 5 rows"))
        .stderr(predicate::str::contains("inserted 2 rows into nums"));
    let nums = objects(&s3, "lake", "nums");
    assert!(nums.contains(&"nums/_SUCCESS".to_string()), "{nums:?}");
    assert_eq!(
        nums.iter().filter(|o| o.starts_with("nums/odd=1/")).count(),
        2,
        "{nums:?}"
    );
    assert!(nums.iter().all(|o| !o.contains("staging")), "{nums:?}");
    s3.sql(home.path())
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT odd, count(*) AS n, sum(v) AS s FROM nums GROUP BY odd ORDER BY odd",
            "-c",
            "SELECT count(*) AS n, sum(v) AS s FROM evens",
        ])
        .assert()
        .success()
        .stdout("odd,n,s\n0,6,42\n1,6,36\nn,s\n6,42\n");
    // A failing COPY leaves nothing on the store; an existing prefix is refused.
    s3.sql(home.path())
        .args([
            "-c",
            "COPY (SELECT 1 / (v - 5) AS x FROM generate_series(1, 10) AS t(v)) \
             TO 's3://lake/bad/' STORED AS JSON",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("Divide by zero"));
    s3.sql(home.path())
        .args(["-c", "COPY nums TO 's3://lake/nums/' STORED AS PARQUET"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
    s3.sql(home.path())
        .args(["-c", "COPY nums TO 's3://lake/' STORED AS PARQUET"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("names a bucket"));
    let all = objects(&s3, "lake", "");
    assert!(
        all.iter()
            .all(|o| !o.starts_with("bad") && !o.contains("staging")),
        "{all:?}"
    );
}
