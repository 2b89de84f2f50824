//! Golden SQL tests in the sqllogictest (`.slt`) format, run through
//! `SqlSession` (so the catalog, CREATE TABLE AS and INSERT are covered).
//!
//! Records: `statement ok`, `statement error <regex>`, and
//! `query <types> [rowsort|nosort]` followed by the SQL, `----` and the
//! expected rows (values separated by spaces; `NULL`; `(empty)` for an
//! empty string). A record ends at a blank line; `#` starts a comment.
//!
//! `SPATE_SLT_REWRITE=1 cargo test -p spate-sql --test slt` rewrites the
//! expected rows of every query with what spate returns now (review the
//! diff before committing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use spate_core::context::Context;
use spate_sql::{Outcome, SqlSession};

enum Record {
    /// Text kept as it is (comments, blank lines).
    Verbatim(String),
    Statement {
        header: String,
        sql: String,
        error: Option<String>,
        line: usize,
    },
    Query {
        header: String,
        sql: String,
        sort: bool,
        expected: Vec<String>,
        line: usize,
    },
}

fn parse(text: &str) -> Vec<Record> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let start = i + 1;
        if let Some(rest) = line.strip_prefix("statement ") {
            let error = rest.strip_prefix("error").map(|r| r.trim().to_string());
            i += 1;
            let mut sql = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                sql.push(lines[i]);
                i += 1;
            }
            out.push(Record::Statement {
                header: line.to_string(),
                sql: sql.join("\n"),
                error,
                line: start,
            });
        } else if let Some(rest) = line.strip_prefix("query ") {
            let sort = rest.split_whitespace().any(|w| w == "rowsort");
            i += 1;
            let mut sql = Vec::new();
            while i < lines.len() && lines[i] != "----" {
                sql.push(lines[i]);
                i += 1;
            }
            i += 1;
            let mut expected = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].to_string());
                i += 1;
            }
            out.push(Record::Query {
                header: line.to_string(),
                sql: sql.join("\n"),
                sort,
                expected,
                line: start,
            });
        } else {
            out.push(Record::Verbatim(line.to_string()));
            i += 1;
        }
    }
    out
}

fn render(batches: &[RecordBatch]) -> Vec<String> {
    spate_sql::format::text_rows(batches)
        .unwrap()
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| {
                    if v.is_empty() {
                        "(empty)".to_string()
                    } else {
                        v
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Runs one `.slt` file; in rewrite mode, writes it back with new results.
fn run(name: &str) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slt")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let rewrite = std::env::var_os("SPATE_SLT_REWRITE").is_some();
    let home = tempfile::tempdir().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let mut session = SqlSession::open(&ctx, home.path()).unwrap();
    // `__WORK__` in a statement: a fresh directory for files it writes.
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().to_string_lossy().into_owned();
    let prepare = |sql: &str| sql.replace("__WORK__", &work_dir);
    let mut failures = Vec::new();
    let mut output = String::new();
    for record in parse(&text) {
        match record {
            Record::Verbatim(line) => {
                let _ = writeln!(output, "{line}");
            }
            Record::Statement {
                header,
                sql,
                error,
                line,
            } => {
                let result = session.run(&prepare(&sql));
                match (&error, result) {
                    (None, Ok(_)) => {}
                    (None, Err(e)) => failures.push(format!("{name}:{line}: failed: {e}\n{sql}")),
                    (Some(_), Ok(_)) => {
                        failures.push(format!("{name}:{line}: expected an error\n{sql}"));
                    }
                    (Some(pattern), Err(e)) => {
                        let message = e.to_string();
                        if !message.contains(pattern.as_str()) {
                            failures.push(format!(
                                "{name}:{line}: error does not contain '{pattern}':\n{message}"
                            ));
                        }
                    }
                }
                let _ = writeln!(output, "{header}\n{sql}");
            }
            Record::Query {
                header,
                sql,
                sort,
                expected,
                line,
            } => {
                let mut got = match session.run(&prepare(&sql)) {
                    Ok(Outcome::Rows { batches, .. }) => render(&batches),
                    Ok(Outcome::Done(msg)) => vec![msg],
                    Err(e) => {
                        failures.push(format!("{name}:{line}: failed: {e}\n{sql}"));
                        expected.clone()
                    }
                };
                if sort {
                    got.sort();
                }
                if got != expected && !rewrite {
                    failures.push(format!(
                        "{name}:{line}: results differ\n{sql}\n-- expected:\n{}\n-- got:\n{}",
                        expected.join("\n"),
                        got.join("\n")
                    ));
                }
                let _ = writeln!(output, "{header}\n{sql}\n----");
                for row in &got {
                    let _ = writeln!(output, "{row}");
                }
            }
        }
    }
    if rewrite {
        std::fs::write(&path, output).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn basics() {
    run("basics.slt");
}

#[test]
fn catalog_and_writes() {
    run("catalog.slt");
}

#[test]
fn copy_and_formats() {
    run("write.slt");
}
