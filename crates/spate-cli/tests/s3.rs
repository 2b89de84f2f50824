//! Tables on an S3-compatible object store: a real server (`s3s-fs`, a Rust
//! crate serving a local directory over the S3 API; `.ci/run` installs it)
//! started on loopback for each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use assert_cmd::Command;
use predicates::prelude::*;

#[path = "common/s3.rs"]
mod s3;
use s3::{KEY, S3, SECRET, objects};

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

/// Lines of words from a fixed seed: lines of 0 to 11 words, so that the
/// split points of a big file fall inside lines of every length.
fn words_text(lines: usize, seed: u64) -> String {
    const WORDS: [&str; 7] = ["river", "stone", "a", "lantern", "of", "quietly", "Ümlaut"];
    let mut x = seed;
    let mut text = String::new();
    for _ in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x % 12) as usize;
        let line: Vec<&str> = (0..n)
            .map(|i| WORDS[((x >> (i * 3 + 8)) % 7) as usize])
            .collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Text jobs take object-store URLs as inputs: a big object is read in
/// ranged parts (one per split, lines crossing the split ends read once),
/// compressed objects whole, hidden objects left out of listings, globs
/// matched on keys; every face answers as it does on the same files on
/// local disk.
#[test]
fn text_jobs_read_objects_split_like_local_files() {
    let s3 = S3::start();
    let big = words_text(400_000, 0x9e37_79b9_7f4a_7c15);
    assert!(big.len() > 4 << 20, "several splits: {}", big.len());
    s3.put("data", "texts/a/big.txt", &big);
    s3.put(
        "data",
        "texts/b/small.txt.gz",
        gzip("river Ümlaut\nlast line"),
    );
    s3.put("data", "texts/b/empty.txt", "");
    s3.put("data", "texts/_SUCCESS", "not words\n");
    s3.put("data", "texts/b/.hidden.txt", "not words either\n");
    let home = tempfile::tempdir().unwrap();
    let local = s3.root.path().join("data/texts");
    let run = |input: &str, face: &str| {
        let out = s3
            .spate(home.path())
            .args(["run", "wordcount", "--threads", "4", "--face", face])
            .args(["--input", input, "--output", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{input} ({face}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let want = run(local.to_str().unwrap(), "dataset");
    assert!(
        want.contains("river\t") && !want.contains("not\t"),
        "{want}"
    );
    for face in ["dataset", "pipeline", "mapreduce"] {
        assert_eq!(run("s3://data/texts/", face), want, "{face}");
    }
    // Without the trailing slash, a prefix is a directory too; a glob
    // matches keys, and the "directories" it matches are read whole.
    assert_eq!(run("s3://data/texts", "dataset"), want);
    assert_eq!(run("s3://data/texts/*", "dataset"), want);
    assert_eq!(
        run("s3://data/tex*/a/big.txt", "dataset"),
        run(local.join("a/big.txt").to_str().unwrap(), "dataset")
    );

    // Hadoop Streaming: one map task per split, each told its object's URL
    // and its range; the tasks' line counts add up to the file's.
    let out = s3
        .spate(home.path())
        .args(["streaming", "--threads", "4", "-input", "s3://data/texts/a/"])
        .args(["-output", "-", "-numReduceTasks", "1", "-reducer", "cat"])
        .args([
            "-mapper",
            "sh -c 'printf \"%s\\t%s\\t%s\\n\" \"$map_input_file\" \"$map_input_start\" \"$(wc -l)\"'",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tasks = String::from_utf8(out.stdout).unwrap();
    let mut lines = 0;
    let mut starts = Vec::new();
    for task in tasks.lines() {
        let fields: Vec<&str> = task.split('\t').collect();
        assert_eq!(fields[0], "s3://data/texts/a/big.txt", "{tasks}");
        starts.push(fields[1].parse::<u64>().unwrap());
        lines += fields[2].trim().parse::<usize>().unwrap();
    }
    assert!(starts.len() >= 3, "the object is split: {tasks}");
    assert_eq!(lines, 400_000, "{tasks}");

    // A TEXT table on the store, from SQL: the same lines.
    s3.sql(home.path())
        .args([
            "--format",
            "csv",
            "-c",
            "CREATE EXTERNAL TABLE texts STORED AS TEXT LOCATION 's3://data/texts/'",
            "-c",
            "SELECT count(*) AS n, max(length(value)) AS longest FROM texts",
        ])
        .assert()
        .success()
        .stdout(format!(
            "n,longest\n{},{}\n",
            400_000 + 2,
            big.lines().map(|l| l.chars().count()).max().unwrap()
        ));

    // Nothing there, or no bucket: errors naming the URL.
    s3.spate(home.path())
        .args([
            "run",
            "wordcount",
            "--input",
            "s3://data/nothing/",
            "-o",
            "-",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "input path does not exist: s3://data/nothing/",
        ));
    s3.spate(home.path())
        .args([
            "run",
            "wordcount",
            "--input",
            "s3://data/texts/z*",
            "-o",
            "-",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("s3://data/texts/z*"));
    s3.spate(home.path())
        .args(["run", "wordcount", "--input", "s3://nobucket/x", "-o", "-"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("s3://nobucket/x"));
}

/// The Dataset API on an object store registered by the program itself
/// (no environment): `read_text`, `whole_text_files` and the typed readers.
#[test]
fn datasets_read_text_whole_files_and_typed_rows_from_a_registered_store() {
    use object_store::aws::AmazonS3Builder;
    use spate_core::prelude::*;
    use std::sync::Arc;

    let s3 = S3::start();
    s3.put("logs", "day=1/a.txt", "one two\nthree\n");
    s3.put("logs", "day=2/b.txt.gz", gzip("four five six"));
    s3.put(
        "logs",
        "rows/r.json",
        "{\"name\":\"a\",\"n\":1}\n{\"name\":\"b\",\"n\":2}\n",
    );
    let ctx = Context::builder().threads(2).build().unwrap();
    let store = AmazonS3Builder::new()
        .with_bucket_name("logs")
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(KEY)
        .with_secret_access_key(SECRET)
        .build()
        .unwrap();
    ctx.session()
        .register_object_store(&url::Url::parse("s3://logs").unwrap(), Arc::new(store));

    let mut lines = ctx
        .read_text(&["s3://logs/day=*/"])
        .unwrap()
        .collect()
        .unwrap();
    lines.sort();
    assert_eq!(lines, ["four five six", "one two", "three"]);

    let mut files = ctx
        .whole_text_files(&["s3://logs/day=1", "s3://logs/day=2/b.txt.gz"])
        .unwrap()
        .collect()
        .unwrap();
    files.sort();
    assert_eq!(
        files,
        [
            (
                "s3://logs/day=1/a.txt".to_string(),
                "one two\nthree\n".to_string()
            ),
            (
                "s3://logs/day=2/b.txt.gz".to_string(),
                "four five six".to_string()
            ),
        ]
    );

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Row {
        name: String,
        n: i64,
    }
    let rows = ctx
        .read_json::<Row>("s3://logs/rows/")
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(
        rows,
        [
            Row {
                name: "a".into(),
                n: 1
            },
            Row {
                name: "b".into(),
                n: 2
            }
        ]
    );
    let err = ctx
        .read_text(&["s3://logs/day=3/"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3://logs/day=3/"), "{err}");
}
