//! The `.slt` runner, shared by the local tests (`tests/slt.rs`) and the
//! cluster's differential tests (`spate-cli/tests/cluster.rs`).
//!
//! Records: `statement ok`, `statement error <regex>`, and
//! `query <types> [rowsort|nosort]` followed by the SQL, `----` and the
//! expected rows (values separated by spaces; `NULL`; `(empty)` for an
//! empty string). A record ends at a blank line; `#` starts a comment.
//! `skipif ENGINE` / `onlyif ENGINE` on the line before a record skip it on,
//! or run it only on, an engine: `local` or `cluster`.

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

/// The `.slt` files.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spate-sql/tests/slt")
}

/// Runs one `.slt` file in a fresh catalog on `ctx` as `engine` (`local`
/// or `cluster`): the failures, each naming the file and line. With
/// `rewrite`, writes the file back with the results spate returns now. On
/// a cluster a string column's type `Utf8View` and `Utf8` are the same
/// (Ballista plans string columns as `Utf8`: view types make its Arrow
/// Flight frames too large).
pub fn run_file(ctx: &Context, name: &str, rewrite: bool, engine: &str) -> Vec<String> {
    let plain_strings = engine == "cluster";
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut session = SqlSession::open(ctx, home.path()).unwrap();
    // `__WORK__` in a statement: a fresh directory for files it writes.
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().to_string_lossy().into_owned();
    // Data paths are relative to the `.slt` files' package; made absolute,
    // they hold for any working directory (and for a cluster's executors).
    let data = dir().join("data").to_string_lossy().into_owned();
    let prepare = |sql: &str| {
        sql.replace("__WORK__", &work_dir)
            .replace("'tests/slt/data", &format!("'{data}"))
    };
    let mut failures = Vec::new();
    let mut output = String::new();
    // Whether the next record runs on this engine.
    let mut runs = true;
    for record in parse(&text) {
        if !matches!(record, Record::Verbatim(_)) && !std::mem::replace(&mut runs, true) {
            // Kept as it is, not run.
            match &record {
                Record::Statement { header, sql, .. } => {
                    let _ = writeln!(output, "{header}\n{sql}");
                }
                Record::Query {
                    header,
                    sql,
                    expected,
                    ..
                } => {
                    let _ = writeln!(output, "{header}\n{sql}\n----");
                    for row in expected {
                        let _ = writeln!(output, "{row}");
                    }
                }
                Record::Verbatim(_) => {}
            }
            continue;
        }
        match record {
            Record::Verbatim(line) => {
                if let Some(on) = line.strip_prefix("skipif ") {
                    runs = on.trim() != engine;
                } else if let Some(on) = line.strip_prefix("onlyif ") {
                    runs = on.trim() == engine;
                }
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
                let same = |a: &[String], b: &[String]| {
                    let plain = |rows: &[String]| -> Vec<String> {
                        rows.iter()
                            .map(|r| {
                                if plain_strings {
                                    r.replace("Utf8View", "Utf8")
                                } else {
                                    r.clone()
                                }
                            })
                            .collect()
                    };
                    plain(a) == plain(b)
                };
                if !same(&got, &expected) && !rewrite {
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
    failures
}
