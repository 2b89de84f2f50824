//! `spate sql`: statements, formats, errors, and the catalog that persists
//! across processes (each test has its own `SPATE_HOME`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use assert_cmd::Command;
use predicates::prelude::*;

/// A spate home and a data directory with a partitioned JSON table and a CSV file.
struct Setup {
    home: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        for (year, rows) in [
            (
                "2023",
                "{\"item\":\"a\",\"qty\":3}\n{\"item\":\"b\",\"qty\":5}\n",
            ),
            ("2024", "{\"item\":\"a\",\"qty\":7}\n"),
        ] {
            let dir = data.path().join(format!("sales/year={year}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("part-0.json"), rows).unwrap();
        }
        std::fs::write(data.path().join("words.csv"), "word,n\ncat,2\ndog,5\n").unwrap();
        Self {
            home: tempfile::tempdir().unwrap(),
            data,
        }
    }

    /// `spate sql` with this home, run from the data directory.
    fn sql(&self) -> Command {
        self.sql_in(self.data.path())
    }

    fn sql_in(&self, dir: &Path) -> Command {
        let mut cmd = Command::cargo_bin("spate").unwrap();
        cmd.env("SPATE_HOME", self.home.path())
            .current_dir(dir)
            .arg("sql");
        cmd
    }

    fn create_tables(&self) {
        self.sql()
            .args(["-c", CREATE_SALES, "-c", CREATE_WORDS])
            .assert()
            .success()
            .stderr(predicate::str::contains("table sales created"))
            .stderr(predicate::str::contains("table words created"));
    }

    fn public_tables(&self) -> String {
        let out = self
            .sql()
            .args(["--format", "csv", "-c"])
            .arg(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = 'public' ORDER BY table_name",
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

const CREATE_SALES: &str = "CREATE EXTERNAL TABLE sales (item VARCHAR, qty INT, year INT) \
     STORED AS JSON PARTITIONED BY (year) LOCATION 'sales/'";
const CREATE_WORDS: &str = "CREATE EXTERNAL TABLE words STORED AS CSV LOCATION 'words.csv' \
     OPTIONS ('format.has_header' 'true')";

#[test]
fn tables_persist_across_processes_and_working_directories() {
    let s = Setup::new();
    s.create_tables();
    // Another process, elsewhere: relative locations were kept absolute.
    let elsewhere = tempfile::tempdir().unwrap();
    s.sql_in(elsewhere.path())
        .args([
            "-c",
            "SELECT year, sum(qty) AS total FROM sales GROUP BY year ORDER BY year",
        ])
        .assert()
        .success()
        .stdout(
            "+------+-------+\n\
             | year | total |\n\
             +------+-------+\n\
             | 2023 | 8     |\n\
             | 2024 | 7     |\n\
             +------+-------+\n",
        )
        .stderr(predicate::str::contains("2 rows in "));
    s.sql_in(elsewhere.path())
        .args(["--format", "csv", "-c", "DESCRIBE sales"])
        .assert()
        .success()
        .stdout(predicate::str::contains("item,").and(predicate::str::contains("year,Int32,NO")));
    assert_eq!(s.public_tables(), "table_name\nsales\nwords\n");
}

#[test]
fn csv_and_json_formats() {
    let s = Setup::new();
    s.create_tables();
    s.sql()
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT * FROM words ORDER BY n DESC",
        ])
        .assert()
        .success()
        .stdout("word,n\ndog,5\ncat,2\n")
        .stderr("");
    s.sql()
        .args([
            "--format",
            "json",
            "-c",
            "SELECT word, n * 2 AS twice FROM words ORDER BY word",
        ])
        .assert()
        .success()
        .stdout("{\"word\":\"cat\",\"twice\":4}\n{\"word\":\"dog\",\"twice\":10}\n");
    s.sql()
        .args(["--format", "xml", "-c", "SELECT 1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown format 'xml'"));
}

#[test]
fn syntax_errors_point_at_the_position_with_a_hint() {
    let s = Setup::new();
    s.sql()
        .args(["-c", "SELECT *\nFORM words"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "syntax error: Expected: end of statement, found: FORM at Line: 2, Column: 1",
        ))
        .stderr(predicate::str::contains("\n  FORM words\n  ^\n"))
        .stderr(predicate::str::contains("hint:"));
    s.sql()
        .args(["-c", "SELECT * FROM nowhere"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "table 'datafusion.public.nowhere' not found",
        ))
        .stderr(predicate::str::contains("hint: SHOW TABLES"));
}

#[test]
fn scripts_stop_at_the_first_failing_statement_and_name_it() {
    let s = Setup::new();
    let script = s.data.path().join("setup.sql");
    std::fs::write(
        &script,
        format!("-- tables\n{CREATE_WORDS};\n\nSELECT nope FROM words;\n{CREATE_SALES};\n"),
    )
    .unwrap();
    s.sql()
        .arg("-f")
        .arg(&script)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "setup.sql: statement 2 (line 4): ",
        ))
        .stderr(predicate::str::contains("nope"));
    // The first statement took effect; the third never ran.
    assert_eq!(s.public_tables(), "table_name\nwords\n");
    // Statements from standard input.
    s.sql()
        .write_stdin("SELECT count(*) AS n FROM words;\n")
        .args(["--format", "csv"])
        .assert()
        .success()
        .stdout("n\n2\n");
}

#[test]
fn failed_or_refused_changes_leave_the_catalog_as_it_was() {
    let s = Setup::new();
    s.create_tables();
    // No such files, no columns to go by: the table cannot be created.
    s.sql()
        .args([
            "-c",
            "CREATE EXTERNAL TABLE ghost STORED AS PARQUET LOCATION 'nowhere/'",
        ])
        .assert()
        .failure();
    // A name that exists is refused, and the old table is untouched.
    s.sql()
        .args([
            "-c",
            "CREATE EXTERNAL TABLE words STORED AS JSON LOCATION 'sales/'",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("table words already exists"));
    s.sql()
        .args([
            "-c",
            "CREATE EXTERNAL TABLE IF NOT EXISTS words STORED AS JSON LOCATION 'sales/'",
        ])
        .assert()
        .success();
    // Statements whose results would not be kept are refused, not half-done.
    for stmt in [
        "UPDATE words SET n = 1",
        "DELETE FROM words",
        "INSERT INTO words VALUES ('eel', 1)",
        "COPY words TO 'words.csv'",
    ] {
        s.sql().args(["-c", stmt]).assert().code(2);
    }
    assert_eq!(
        std::fs::read_to_string(s.data.path().join("words.csv")).unwrap(),
        "word,n\ncat,2\ndog,5\n"
    );
    assert_eq!(s.public_tables(), "table_name\nsales\nwords\n");
    // A partitioned table takes new rows into their `key=value/` directory;
    // COPY writes a new file.
    s.sql()
        .args([
            "-c",
            "INSERT INTO sales VALUES ('eel', 1, 2025)",
            "-c",
            "COPY (SELECT * FROM sales ORDER BY qty) TO 'out.csv'",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("inserted 1 row into sales"))
        .stderr(predicate::str::contains("wrote 4 rows to out.csv"));
    assert!(s.data.path().join("sales/year=2025").is_dir());
    assert_eq!(
        std::fs::read_to_string(s.data.path().join("out.csv")).unwrap(),
        "item,qty,year\neel,1,2025\na,3,2023\nb,5,2023\na,7,2024\n"
    );
    s.sql()
        .args(["--format", "csv", "-c", "SELECT sum(n) AS n FROM words"])
        .assert()
        .success()
        .stdout("n\n7\n");
    // Replacing is explicit.
    s.sql()
        .args([
            "-c",
            "CREATE OR REPLACE EXTERNAL TABLE words (item VARCHAR, qty INT) STORED AS JSON LOCATION 'sales/year=2023/'",
            "-c",
            "SELECT sum(qty) AS n FROM words",
            "--format",
            "csv",
        ])
        .assert()
        .success()
        .stdout("n\n8\n");
}

#[test]
fn drop_table_is_kept_and_missing_files_warn() {
    let s = Setup::new();
    s.create_tables();
    s.sql()
        .args(["-c", "DROP TABLE words"])
        .assert()
        .success()
        .stderr(predicate::str::contains("dropped words"));
    assert_eq!(s.public_tables(), "table_name\nsales\n");
    s.sql().args(["-c", "DROP TABLE words"]).assert().code(2);
    s.sql()
        .args(["-c", "DROP TABLE IF EXISTS words"])
        .assert()
        .success();
    // A table whose files are gone: a warning at start; the others work.
    s.sql().args(["-c", CREATE_WORDS]).assert().success();
    std::fs::remove_file(s.data.path().join("words.csv")).unwrap();
    s.sql()
        .args(["--format", "csv", "-c", "SELECT count(*) AS n FROM sales"])
        .assert()
        .success()
        .stdout("n\n3\n")
        .stderr(predicate::str::contains("warning: table words"))
        .stderr(predicate::str::contains("words.csv"));
}

#[test]
fn concurrent_processes_do_not_corrupt_the_catalog() {
    let s = Setup::new();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_spate"));
    let children: Vec<_> = (0..6)
        .map(|i| {
            std::process::Command::new(&exe)
                .env("SPATE_HOME", s.home.path())
                .current_dir(s.data.path())
                .args(["sql", "-c"])
                .arg(format!(
                    "CREATE EXTERNAL TABLE w{i}a STORED AS CSV LOCATION 'words.csv' OPTIONS ('format.has_header' 'true'); \
                     CREATE EXTERNAL TABLE w{i}b STORED AS CSV LOCATION 'words.csv' OPTIONS ('format.has_header' 'true')"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut want = String::from("table_name\n");
    for i in 0..6 {
        want.push_str(&format!("w{i}a\nw{i}b\n"));
    }
    assert_eq!(s.public_tables(), want);
}

/// The interactive shell, driven through a pseudo-terminal by `script(1)`.
#[test]
fn interactive_shell_runs_multi_line_statements_and_backslash_commands() {
    let s = Setup::new();
    s.create_tables();
    let exe = env!("CARGO_BIN_EXE_spate");
    let input =
        "SELECT word,\n  n FROM words WHERE n > 3;\n\\d\n\\d words\nSELECT * FORM x;\n\\q\n";
    // Lines are fed one by one: the shell discards typeahead when it starts.
    let feeder = format!(
        "sleep 1; printf '%s' '{}' | while IFS= read -r line; do printf '%s\\n' \"$line\"; sleep 0.3; done",
        input
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("({feeder}) | script -qec '{exe} sql' /dev/null"))
        .env("SPATE_HOME", s.home.path())
        .current_dir(s.data.path())
        .output()
        .expect("script(1) from util-linux runs the shell in a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("| dog  | 5 |"), "{text}");
    assert!(text.contains("1 row in "), "{text}");
    assert!(text.contains("| sales | JSON"), "{text}");
    assert!(text.contains("| word        | Utf8"), "{text}");
    assert!(text.contains("error: syntax error"), "{text}");
    let history = std::fs::read_to_string(s.home.path().join("history")).unwrap();
    assert!(history.contains("n FROM words WHERE n > 3;"), "{history}");
}

#[test]
fn a_malformed_file_names_the_table_and_its_files() {
    let s = Setup::new();
    std::fs::write(s.data.path().join("bad.csv"), "1,2\n3\n").unwrap();
    s.sql()
        .args([
            "-c",
            "CREATE EXTERNAL TABLE bad (a INT, b INT) STORED AS CSV LOCATION 'bad.csv'",
            "-c",
            "SELECT sum(a) FROM bad",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("statement 2 (line 2)"))
        .stderr(predicate::str::contains("reading table bad (files at "))
        .stderr(predicate::str::contains("bad.csv"))
        .stderr(predicate::str::contains("line 2"));
}

#[test]
fn create_table_as_and_insert_commit_whole_files_or_nothing() {
    let s = Setup::new();
    s.create_tables();
    s.sql()
        .args([
            "-c",
            "CREATE TABLE totals AS SELECT item, sum(qty) AS qty FROM sales GROUP BY item",
            "-c",
            "INSERT INTO totals VALUES ('z', 100)",
            "-c",
            "INSERT INTO totals SELECT item, qty * 10 FROM totals WHERE item = 'a'",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("table totals created with 2 rows"))
        .stderr(predicate::str::contains("inserted 1 row into totals"));
    let table = s.home.path().join("warehouse/totals");
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(&table)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files().len(), 4, "{:?}", files()); // 3 files and _SUCCESS
    let query = "SELECT item, qty FROM totals ORDER BY item, qty";
    let want = "item,qty\na,10\na,100\nb,5\nz,100\n";
    s.sql()
        .args(["--format", "csv", "-c", query])
        .assert()
        .success()
        .stdout(want);
    // A failing insert adds nothing and leaves no staging files behind.
    s.sql()
        .args(["-c", "INSERT INTO totals VALUES ('bad', 'not a number')"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "Cannot cast string 'not a number'",
        ));
    assert_eq!(files().len(), 4, "{:?}", files());
    s.sql()
        .args(["--format", "csv", "-c", query])
        .assert()
        .success()
        .stdout(want);
    // A failing CREATE TABLE AS leaves neither a table nor files.
    s.sql()
        .args([
            "-c",
            "CREATE TABLE broken AS SELECT CAST(item AS INT) AS n FROM sales",
        ])
        .assert()
        .code(1);
    assert!(!s.home.path().join("warehouse/broken").exists());
    assert_eq!(s.public_tables(), "table_name\nsales\ntotals\nwords\n");
    let warehouse: Vec<_> = std::fs::read_dir(s.home.path().join("warehouse"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(warehouse, vec![std::ffi::OsString::from("totals")]);
    // Dropping a table spate made deletes its files.
    s.sql().args(["-c", "DROP TABLE totals"]).assert().success();
    assert!(!table.exists());
}

#[test]
fn views_are_kept_in_the_catalog() {
    let s = Setup::new();
    s.create_tables();
    s.sql()
        .args([
            "-c",
            "CREATE VIEW east AS SELECT item, qty FROM sales WHERE year = 2023",
        ])
        .assert()
        .success();
    s.sql()
        .args(["--format", "csv", "-c", "SELECT sum(qty) AS n FROM east"])
        .assert()
        .success()
        .stdout("n\n8\n");
    s.sql().args(["-c", "DROP VIEW east"]).assert().success();
    s.sql()
        .args(["-c", "SELECT * FROM east"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not found"));
}

#[test]
fn drop_and_replace_refuse_the_other_kind_and_change_nothing() {
    let s = Setup::new();
    s.create_tables();
    s.sql()
        .args(["-c", "CREATE VIEW v AS SELECT item FROM sales"])
        .assert()
        .success();
    for (statement, message) in [
        (
            "DROP TABLE v",
            "the operation DROP TABLE requires a table, but v is a view; use DROP VIEW instead",
        ),
        (
            "DROP VIEW sales",
            "the operation DROP VIEW requires a view, but sales is a table; use DROP TABLE instead",
        ),
        (
            "CREATE OR REPLACE EXTERNAL TABLE v STORED AS CSV LOCATION 'words.csv'",
            "but v is a view; DROP VIEW v first",
        ),
        (
            "CREATE OR REPLACE VIEW sales AS SELECT 1",
            "but sales is a table; DROP TABLE sales first",
        ),
        (
            "CREATE TABLE v AS SELECT 1 AS one",
            "the operation CREATE TABLE AS SELECT requires a table, but v is a view; \
             DROP VIEW v first",
        ),
    ] {
        s.sql()
            .args(["-c", statement])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    // Nothing changed, in this session or the next.
    assert_eq!(s.public_tables(), "table_name\nsales\nv\nwords\n");
    s.sql()
        .args(["--format", "csv", "-c", "SELECT count(*) AS n FROM v"])
        .assert()
        .success()
        .stdout("n\n3\n");
    // The right statement drops exactly what it names, for good.
    s.sql().args(["-c", "DROP VIEW v"]).assert().success();
    s.sql().args(["-c", "DROP TABLE words"]).assert().success();
    assert_eq!(s.public_tables(), "table_name\nsales\n");
}
