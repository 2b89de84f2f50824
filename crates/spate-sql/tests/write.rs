//! What statements that write leave on disk: compression inside Parquet
//! files, nothing visible (or left over) after a failure, `_SUCCESS` on
//! new directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use spate_core::context::Context;
use spate_sql::{Outcome, SqlSession};

/// Every file below `dir`, hidden ones included, relative and sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn count(session: &mut SqlSession<'_>, table: &str) -> i64 {
    let Outcome::Rows { batches, .. } = session
        .run(&format!("SELECT count(*) FROM {table}"))
        .unwrap()
    else {
        panic!("no rows")
    };
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

fn parquet_codecs(dir: &Path) -> Vec<Compression> {
    let mut codecs = Vec::new();
    for f in files(dir).iter().filter(|f| f.ends_with(".parquet")) {
        let reader = SerializedFileReader::new(std::fs::File::open(dir.join(f)).unwrap()).unwrap();
        for rg in reader.metadata().row_groups() {
            codecs.extend(rg.columns().iter().map(|c| c.compression()));
        }
    }
    codecs
}

#[test]
fn parquet_tables_keep_their_compression_for_inserts() {
    let home = tempfile::tempdir().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut sql = SqlSession::open(&ctx, home.path()).unwrap();
    sql.run(
        "CREATE TABLE z TBLPROPERTIES ('parquet.compression' = 'zstd(3)') AS \
         SELECT v, v * 2 AS w FROM generate_series(1, 1000) AS t(v)",
    )
    .unwrap();
    sql.run("INSERT INTO z SELECT v, 0 FROM generate_series(1, 10) AS t(v)")
        .unwrap();
    let dir: PathBuf = home.path().join("warehouse/z");
    let codecs = parquet_codecs(&dir);
    assert_eq!(files(&dir).len(), 3, "{:?}", files(&dir)); // 2 data files + _SUCCESS
    assert!(!codecs.is_empty());
    assert!(
        codecs.iter().all(|c| matches!(c, Compression::ZSTD(_))),
        "{codecs:?}"
    );
    // Reopened from the catalog in another session, it still inserts zstd.
    drop(sql);
    let mut sql = SqlSession::open(&ctx, home.path()).unwrap();
    sql.run("INSERT INTO z VALUES (1, 1)").unwrap();
    assert_eq!(count(&mut sql, "z"), 1011);
    assert!(
        parquet_codecs(&dir)
            .iter()
            .all(|c| matches!(c, Compression::ZSTD(_)))
    );
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut sql = SqlSession::open(&ctx, home.path()).unwrap();
    let w = work.path().display();
    // The error surfaces only after some rows were written.
    let failing = "SELECT v, CASE WHEN v = 90000 THEN 1 / (v - v) ELSE v END AS x \
                   FROM generate_series(1, 100000) AS t(v)";
    for statement in [
        format!("COPY ({failing}) TO '{w}/out/' STORED AS PARQUET"),
        format!("COPY ({failing}) TO '{w}/out.csv'"),
        format!("COPY ({failing}) TO '{w}/text/' STORED AS TEXT"),
        format!("CREATE TABLE t STORED AS JSON AS {failing}"),
    ] {
        let e = sql.run(&statement).unwrap_err().to_string();
        assert!(e.contains("Divide by zero"), "{statement}: {e}");
    }
    assert_eq!(files(work.path()), Vec::<String>::new());
    assert!(files(&home.path().join("warehouse")).is_empty());
    assert!(sql.catalog().get("t").unwrap().is_none());

    sql.run(&format!(
        "COPY (SELECT v, v AS x FROM generate_series(1, 5) AS t(v)) TO '{w}/p/' \
         STORED AS PARQUET PARTITIONED BY (x)"
    ))
    .unwrap();
    let before = files(&work.path().join("p"));
    assert_eq!(before.len(), 6, "{before:?}"); // 5 partitions + _SUCCESS
    assert!(before.contains(&"_SUCCESS".to_string()));
    sql.run(&format!(
        "CREATE EXTERNAL TABLE p (v BIGINT, x BIGINT) STORED AS PARQUET PARTITIONED BY (x) \
         LOCATION '{w}/p/'"
    ))
    .unwrap();
    // Three partitions get files before the error.
    let e = sql
        .run(
            "INSERT INTO p SELECT v, CASE WHEN v = 90000 THEN 1 / (v - v) ELSE v % 3 END \
             FROM generate_series(1, 100000) AS t(v)",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("Divide by zero"), "{e}");
    assert_eq!(files(&work.path().join("p")), before);
    assert_eq!(count(&mut sql, "p"), 5);
    sql.run("INSERT INTO p VALUES (6, 6), (7, 1)").unwrap();
    assert_eq!(count(&mut sql, "p"), 7);
    assert_eq!(files(&work.path().join("p")).len(), 8);
}
