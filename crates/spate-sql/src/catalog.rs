//! The table catalog that outlives a process (the Hive metastore's role):
//! table definitions in an embedded SQLite database under the spate home
//! directory (`$SPATE_HOME`, default `~/.spate`).
//!
//! Each table is kept as a structured definition (columns, format,
//! absolute locations, partition columns, options) from which its
//! `CREATE EXTERNAL TABLE` statement is rebuilt when a session starts.
//! SQLite runs in WAL mode with a busy timeout and every change is one
//! transaction, so concurrent `spate sql` processes serialize their writes
//! and never see a half-written catalog.

use std::path::{Path, PathBuf};
use std::time::Duration;

use datafusion::sql::parser::CreateExternalTable;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use spate_core::error::{Error, Result};

/// The spate home directory: `$SPATE_HOME`, else `~/.spate`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("SPATE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    user_home.join(".spate")
}

/// A table as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// The name as written (`t`, `sales."Q1"`).
    pub name: String,
    /// The name as the engine resolves it (unquoted parts lowercased).
    pub key: String,
    /// Column definitions as SQL (`a INT NOT NULL`); empty: inferred.
    pub columns: Vec<String>,
    /// `PARQUET`, `CSV`, `JSON`, `ARROW`, `AVRO`.
    pub file_type: String,
    /// Absolute paths or URLs.
    pub locations: Vec<String>,
    /// `PARTITIONED BY` columns (`key=value/` directories).
    pub partition_cols: Vec<String>,
    /// `WITH ORDER` expressions as SQL.
    pub order: Vec<String>,
    /// `OPTIONS ('k' 'v', ...)`.
    pub options: Vec<(String, String)>,
    /// `CREATE UNBOUNDED EXTERNAL TABLE`.
    pub unbounded: bool,
    /// A table spate made (`CREATE TABLE ... AS SELECT`) in its warehouse
    /// directory: `DROP TABLE` deletes its files.
    #[serde(default)]
    pub managed: bool,
    /// Options for writing only (`INSERT`): a Parquet table's
    /// `compression`, which the engine refuses as a table option.
    #[serde(default)]
    pub write_options: Vec<(String, String)>,
}

/// Makes a local path absolute (URLs are kept as they are), so the table
/// means the same files from any working directory.
pub(crate) fn absolute(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let path = Path::new(location);
    if path.is_absolute() {
        return location.to_string();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut joined = cwd.join(path).to_string_lossy().into_owned();
    // DataFusion reads a location ending in `/` as a directory.
    if location.ends_with('/') && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// A SQL option value as text (quoted strings without their quotes).
pub(crate) fn value_text(v: &datafusion::sql::sqlparser::ast::Value) -> String {
    use datafusion::sql::sqlparser::ast::Value;
    match v {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl TableDef {
    /// The definition of a parsed `CREATE EXTERNAL TABLE`; `key` is the
    /// engine's name for it.
    pub fn from_statement(c: &CreateExternalTable, key: String) -> Self {
        Self {
            name: c.name.to_string(),
            key,
            columns: c.columns.iter().map(ToString::to_string).collect(),
            file_type: c.file_type.clone(),
            locations: c.locations.iter().map(|l| absolute(l)).collect(),
            partition_cols: c.table_partition_cols.clone(),
            order: c
                .order_exprs
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect(),
            options: c
                .options
                .iter()
                .map(|(k, v)| (k.clone(), value_text(v)))
                .collect(),
            unbounded: c.unbounded,
            managed: false,
            write_options: Vec::new(),
        }
    }

    /// The `CREATE EXTERNAL TABLE` statement that registers the table.
    pub fn to_sql(&self) -> String {
        let mut sql = String::from("CREATE ");
        if self.unbounded {
            sql.push_str("UNBOUNDED ");
        }
        sql.push_str("EXTERNAL TABLE ");
        sql.push_str(&self.name);
        if !self.columns.is_empty() {
            sql.push_str(&format!(" ({})", self.columns.join(", ")));
        }
        sql.push_str(&format!(" STORED AS {}", self.file_type));
        if !self.partition_cols.is_empty() {
            sql.push_str(&format!(
                " PARTITIONED BY ({})",
                self.partition_cols.join(", ")
            ));
        }
        if !self.order.is_empty() {
            sql.push_str(&format!(" WITH ORDER ({})", self.order.join(", ")));
        }
        match self.locations.as_slice() {
            [one] => sql.push_str(&format!(" LOCATION {}", quote(one))),
            many => {
                let list: Vec<String> = many.iter().map(|l| quote(l)).collect();
                sql.push_str(&format!(" LOCATION ({})", list.join(", ")));
            }
        }
        if !self.options.is_empty() {
            let list: Vec<String> = self
                .options
                .iter()
                .map(|(k, v)| format!("{} {}", quote(k), quote(v)))
                .collect();
            sql.push_str(&format!(" OPTIONS ({})", list.join(", ")));
        }
        sql
    }
}

/// The catalog database.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// How long a change waits for another process's.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Storage(format!("catalog {}: {e}", path.display()))
}

impl Catalog {
    /// Opens (creating if needed) the catalog under `home`.
    pub fn open(home: &Path) -> Result<Self> {
        std::fs::create_dir_all(home)
            .map_err(|e| Error::Usage(format!("cannot create {}: {e}", home.display())))?;
        let path = home.join("catalog.db");
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_error(&path, e))?;
        let setup = || -> rusqlite::Result<()> {
            // WAL: readers never block the one writer; each change is atomic.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS tables (
                     key TEXT PRIMARY KEY,
                     definition TEXT NOT NULL,
                     created TEXT NOT NULL DEFAULT (datetime('now'))
                 );
                 CREATE TABLE IF NOT EXISTS views (
                     key TEXT PRIMARY KEY,
                     statement TEXT NOT NULL,
                     created TEXT NOT NULL DEFAULT (datetime('now'))
                 );",
            )
        };
        // Processes that create the catalog at once race to switch it to
        // WAL, and SQLite answers that switch's losers "database is locked"
        // at once, without its busy handler: try again, within the timeout.
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match setup() {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && start.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(db_error(&path, e)),
            }
        }
        Ok(Self { conn, path })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every table, by name.
    pub fn list(&self) -> Result<Vec<TableDef>> {
        let e = |e| db_error(&self.path, e);
        let mut stmt = self
            .conn
            .prepare("SELECT definition FROM tables ORDER BY key")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(e)?;
            let def: TableDef = serde_json::from_str(&text).map_err(|err| {
                Error::Usage(format!(
                    "catalog {}: unreadable table definition ({err}): {text}",
                    self.path.display()
                ))
            })?;
            out.push(def);
        }
        Ok(out)
    }

    /// One table.
    pub fn get(&self, key: &str) -> Result<Option<TableDef>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT definition FROM tables WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, e))?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| Error::Usage(format!("catalog: unreadable definition of {key}: {e}")))
        })
        .transpose()
    }

    /// Adds a table; with `replace`, an existing one of that name is replaced.
    /// Fails (changing nothing) when it exists and `replace` is false.
    pub fn insert(&mut self, def: &TableDef, replace: bool) -> Result<()> {
        let text = serde_json::to_string(def)
            .map_err(|e| Error::Internal(format!("table definition: {e}")))?;
        let sql = if replace {
            "INSERT OR REPLACE INTO tables (key, definition) VALUES (?1, ?2)"
        } else {
            "INSERT INTO tables (key, definition) VALUES (?1, ?2)"
        };
        match self.conn.execute(sql, params![def.key, text]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Usage(format!(
                    "table {} already exists in the catalog",
                    def.name
                )))
            }
            Err(e) => Err(db_error(&self.path, e)),
        }
    }

    /// Views (key, `CREATE VIEW` statement), oldest first: a view may use
    /// the ones before it.
    pub fn views(&self) -> Result<Vec<(String, String)>> {
        let e = |e| db_error(&self.path, e);
        let mut stmt = self
            .conn
            .prepare("SELECT key, statement FROM views ORDER BY rowid")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(e)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(e)
    }

    /// Records a view (replacing one of that name when `replace`).
    pub fn insert_view(&mut self, key: &str, statement: &str, replace: bool) -> Result<()> {
        let sql = if replace {
            "INSERT OR REPLACE INTO views (key, statement) VALUES (?1, ?2)"
        } else {
            "INSERT INTO views (key, statement) VALUES (?1, ?2)"
        };
        match self.conn.execute(sql, params![key, statement]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Usage(format!(
                    "view {key} already exists in the catalog"
                )))
            }
            Err(e) => Err(db_error(&self.path, e)),
        }
    }

    /// Removes a view; whether it was there.
    pub fn remove_view(&mut self, key: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM views WHERE key = ?1", params![key])
            .map_err(|e| db_error(&self.path, e))?;
        Ok(n > 0)
    }

    /// Removes a table; whether it was there.
    pub fn remove(&mut self, key: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM tables WHERE key = ?1", params![key])
            .map_err(|e| db_error(&self.path, e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> TableDef {
        TableDef {
            name: name.to_string(),
            key: name.to_lowercase(),
            columns: vec!["a INT".into(), "b VARCHAR NOT NULL".into()],
            file_type: "CSV".into(),
            locations: vec!["/data/it's here/".into()],
            partition_cols: vec!["year".into()],
            order: vec![],
            options: vec![("format.has_header".into(), "true".into())],
            unbounded: false,
            managed: false,
            write_options: Vec::new(),
        }
    }

    #[test]
    fn definitions_persist_and_rebuild_their_statement() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut cat = Catalog::open(dir.path()).unwrap();
            cat.insert(&def("T1"), false).unwrap();
            assert!(cat.insert(&def("T1"), false).is_err());
            cat.insert(&def("T1"), true).unwrap();
            cat.insert(&def("t2"), false).unwrap();
        }
        let mut cat = Catalog::open(dir.path()).unwrap();
        let all = cat.list().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], def("T1"));
        assert_eq!(
            all[0].to_sql(),
            "CREATE EXTERNAL TABLE T1 (a INT, b VARCHAR NOT NULL) STORED AS CSV \
             PARTITIONED BY (year) LOCATION '/data/it''s here/' \
             OPTIONS ('format.has_header' 'true')"
        );
        assert!(cat.remove("t2").unwrap());
        assert!(!cat.remove("t2").unwrap());
        assert_eq!(cat.get("t1").unwrap(), Some(def("T1")));
        assert_eq!(cat.get("t2").unwrap(), None);
    }
}
