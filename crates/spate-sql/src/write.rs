//! Statements that write files: `COPY ... TO`, `CREATE TABLE ... AS
//! SELECT` and `INSERT INTO`. The files are written and published by
//! [`crate::output`]: a statement that fails leaves the tables' files and
//! the catalog as they were, and a new output appears complete or not at
//! all.

use arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{Expr, cast};
use datafusion::sql::parser::{CopyToSource, CopyToStatement};
use datafusion::sql::sqlparser::ast::{
    CreateTable, CreateTableOptions, Expr as SqlExpr, Insert, SqlOption, TableObject,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use spate_core::error::{Error, Result};

use crate::catalog::{TableDef, value_text};
use crate::session::{ObjectKind, Outcome, SqlSession, sql_error};
use spate_core::output::{self, FileFormat, Output};

/// The clauses of `CREATE TABLE ... AS SELECT` that spate reads itself
/// (Spark's and Hive's), because the SQL parser knows only Hive's few
/// `STORED AS` formats and no `PARTITIONED BY` column names for it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CtasClauses {
    pub stored_as: Option<String>,
    pub partitioned_by: Vec<String>,
}

/// Byte offset of a 1-based (line, column) position, columns in characters.
fn offset(sql: &str, line: u64, column: u64) -> usize {
    let mut start = 0;
    for (n, text) in sql.split_inclusive('\n').enumerate() {
        if n as u64 + 1 == line {
            return start
                + text
                    .char_indices()
                    .nth(column.saturating_sub(1) as usize)
                    .map_or(text.len(), |(i, _)| i);
        }
        start += text.len();
    }
    sql.len()
}

/// Takes `STORED AS format` and `PARTITIONED BY (col, ...)` out of a
/// `CREATE TABLE` statement's head (before its `AS SELECT`); the statement
/// without them and what they said. Other statements come back unchanged.
pub(crate) fn ctas_clauses(sql: &str) -> (String, CtasClauses) {
    let unchanged = || (sql.to_string(), CtasClauses::default());
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return unchanged();
    };
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let word = |k: usize| -> Option<String> {
        match &tokens[*sig.get(k)?].token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    };
    let is = |k: usize, w: &str| word(k).as_deref() == Some(w);
    let mut k = 0;
    if !is(k, "CREATE") {
        return unchanged();
    }
    k += 1;
    if is(k, "OR") && is(k + 1, "REPLACE") {
        k += 2;
    }
    if !is(k, "TABLE") {
        return unchanged();
    }
    k += 1;
    if is(k, "IF") && is(k + 1, "NOT") && is(k + 2, "EXISTS") {
        k += 3;
    }
    // The table's name (`a`, `"A"`, `s.t`): never read as a clause.
    k += 1;
    while matches!(sig.get(k).map(|&i| &tokens[i].token), Some(Token::Period)) {
        k += 2;
    }
    let mut clauses = CtasClauses::default();
    let mut cut: Vec<(usize, usize)> = Vec::new(); // token index ranges, inclusive
    let mut depth = 0i32;
    while k < sig.len() {
        let token = &tokens[sig[k]].token;
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 && is(k, "AS") {
            break;
        }
        if depth == 0
            && is(k, "STORED")
            && is(k + 1, "AS")
            && let Some(Token::Word(w)) = sig.get(k + 2).map(|&i| &tokens[i].token)
        {
            clauses.stored_as = Some(w.value.clone());
            cut.push((sig[k], sig[k + 2]));
            k += 3;
            continue;
        }
        if depth == 0
            && is(k, "PARTITIONED")
            && is(k + 1, "BY")
            && matches!(
                sig.get(k + 2).map(|&i| &tokens[i].token),
                Some(Token::LParen)
            )
        {
            let mut j = k + 3;
            let mut columns = Vec::new();
            // Names separated by commas (a name followed by a type is
            // Hive's column definition, which CTAS does not take).
            let mut want_name = true;
            while let Some(&i) = sig.get(j) {
                match (&tokens[i].token, want_name) {
                    (Token::Word(w), true) => columns.push(w.value.clone()),
                    (Token::Comma, false) => {}
                    (Token::RParen, false) => break,
                    _ => return unchanged(),
                }
                want_name = !want_name;
                j += 1;
            }
            if j >= sig.len() {
                return unchanged();
            }
            clauses.partitioned_by = columns;
            cut.push((sig[k], sig[j]));
            k = j + 1;
            continue;
        }
        k += 1;
    }
    if cut.is_empty() {
        return unchanged();
    }
    let mut out = String::new();
    let mut at = 0;
    for (first, last) in cut {
        let start = tokens[first].span.start;
        let end = tokens[last].span.end;
        let (a, b) = (
            offset(sql, start.line, start.column),
            offset(sql, end.line, end.column),
        );
        out.push_str(&sql[at..a]);
        at = b;
    }
    out.push_str(&sql[at..]);
    (out, clauses)
}

/// The `WITH (...)`, `OPTIONS (...)` or `TBLPROPERTIES (...)` of a CTAS.
fn table_options(ct: &CreateTable) -> Result<Vec<(String, String)>> {
    let list = match &ct.table_options {
        CreateTableOptions::None => return Ok(Vec::new()),
        CreateTableOptions::With(l)
        | CreateTableOptions::Options(l)
        | CreateTableOptions::Plain(l)
        | CreateTableOptions::TableProperties(l) => l,
    };
    list.iter()
        .map(|o| match o {
            SqlOption::KeyValue { key, value } => {
                let value = match value {
                    SqlExpr::Value(v) => value_text(&v.value),
                    SqlExpr::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                };
                Ok((key.value.clone(), value))
            }
            other => Err(Error::Usage(format!(
                "table option {other}: options are written key = 'value'"
            ))),
        })
        .collect()
}

/// A column's SQL type, for the tables spate declares (partitioned CTAS
/// tables, whose `key=value/` columns would otherwise be read as strings).
fn sql_type(t: &DataType) -> Option<String> {
    use arrow::datatypes::TimeUnit;
    Some(
        match t {
            DataType::Boolean => "BOOLEAN",
            DataType::Int8 => "TINYINT",
            DataType::Int16 => "SMALLINT",
            DataType::Int32 => "INT",
            DataType::Int64 => "BIGINT",
            DataType::UInt8 => "TINYINT UNSIGNED",
            DataType::UInt16 => "SMALLINT UNSIGNED",
            DataType::UInt32 => "INT UNSIGNED",
            DataType::UInt64 => "BIGINT UNSIGNED",
            DataType::Float32 => "REAL",
            DataType::Float64 => "DOUBLE",
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR",
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA",
            DataType::Date32 => "DATE",
            DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP",
            DataType::Decimal128(p, s) => return Some(format!("DECIMAL({p}, {s})")),
            DataType::Dictionary(_, value) => return sql_type(value),
            _ => return None,
        }
        .to_string(),
    )
}

/// `1 row`, `2 rows`.
fn rows(n: u64) -> String {
    format!("{n} row{}", if n == 1 { "" } else { "s" })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `COPY (query) TO 'path'` / `COPY table TO 'path'`: a new file, or a new
/// directory of files (`path/`, or `PARTITIONED BY`) with `_SUCCESS`.
pub(crate) fn copy_to(
    session: &mut SqlSession<'_>,
    copy: &CopyToStatement,
    statement: &str,
) -> Result<Outcome> {
    let target = copy.target.trim();
    let file = output::names_a_file(target) && copy.partitioned_by.is_empty();
    let mut options: Vec<(String, String)> = copy
        .options
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect();
    // `out.csv.gz`: CSV, gzip-compressed (unless options say otherwise).
    let mut name = target.rsplit('/').next().unwrap_or(target).to_string();
    if file && let Some((ext, codec)) = output::compressed_suffix(&name) {
        name.truncate(name.len() - ext.len());
        let given = options
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().ends_with("compression"));
        if !given {
            options.push(("compression".into(), codec.into()));
        }
    }
    let format = match (&copy.stored_as, name.rsplit_once('.')) {
        (Some(f), _) => FileFormat::parse(f).map_err(Error::Usage)?,
        (None, Some((_, ext))) if file => FileFormat::parse(match ext {
            "txt" => "TEXT",
            "jsonl" | "ndjson" => "JSON",
            "arrow" | "ipc" | "feather" => "ARROW",
            other => other,
        })
        .map_err(Error::Usage)?,
        _ => {
            return Err(Error::Usage(format!(
                "COPY TO '{target}': say which format with STORED AS PARQUET|CSV|JSON|ARROW|TEXT"
            )));
        }
    };
    let output = Output {
        format,
        options,
        partition_by: copy.partitioned_by.clone(),
    };
    output.check()?;
    let query = match &copy.source {
        CopyToSource::Relation(name) => format!("SELECT * FROM {name}"),
        CopyToSource::Query(q) => q.to_string(),
    };
    let ctx = session.context();
    let df = ctx
        .block_on(ctx.session().sql(&query))
        .map_err(|e| sql_error(statement, &e))?;
    let written = if file {
        ctx.block_on(output::new_file(ctx.session(), df, &output, target))?
    } else {
        ctx.block_on(output::new_directory(ctx.session(), df, &output, target))?
            .rows
    };
    Ok(Outcome::Done(format!(
        "wrote {} to {target}",
        rows(written)
    )))
}

/// `CREATE TABLE t [STORED AS f] [PARTITIONED BY (c, ...)] [LOCATION 'p']
/// [WITH|OPTIONS|TBLPROPERTIES (k = 'v', ...)] AS SELECT ...`: a managed
/// table in `$SPATE_HOME/warehouse/t/` (Parquet unless `STORED AS` says),
/// or, with `LOCATION`, a table at that new directory whose files `DROP
/// TABLE` keeps (Spark's and Hive's external tables).
pub(crate) fn create_table_as(
    session: &mut SqlSession<'_>,
    ct: &CreateTable,
    clauses: &CtasClauses,
    statement: &str,
) -> Result<Outcome> {
    let key = session.key(&ct.name, statement)?;
    session.expect_kind(&key, "CREATE TABLE AS SELECT", ObjectKind::Table)?;
    if session.catalog().get(&key)?.is_some() || session.provider(&key).is_some() {
        if ct.if_not_exists {
            return Ok(Outcome::Done(format!("table {key} exists")));
        }
        return Err(Error::Usage(format!(
            "table {key} already exists (DROP TABLE {key} first)"
        )));
    }
    if ct.or_replace || !ct.columns.is_empty() {
        return Err(Error::Usage(
            "CREATE TABLE ... AS SELECT takes its columns from the query (no OR REPLACE or \
             column list)"
                .into(),
        ));
    }
    let Some(query) = &ct.query else {
        return Err(Error::Usage("CREATE TABLE needs AS SELECT ...".into()));
    };
    let format = match &clauses.stored_as {
        Some(f) => FileFormat::parse(f).map_err(Error::Usage)?,
        None => FileFormat::Parquet,
    };
    let output = Output {
        format,
        options: table_options(ct)?,
        partition_by: clauses.partitioned_by.clone(),
    };
    output.check()?;
    let ctx = session.context();
    let df = ctx
        .block_on(ctx.session().sql(&query.to_string()))
        .map_err(|e| sql_error(statement, &e))?;
    let given = ct
        .location
        .clone()
        .or_else(|| ct.hive_formats.as_ref().and_then(|h| h.location.clone()));
    let managed = given.is_none();
    let location = match given {
        Some(l) => crate::catalog::absolute(&l),
        None => session
            .home()
            .join("warehouse")
            .join(&key)
            .to_string_lossy()
            .into_owned(),
    };
    let location = format!("{}/", location.trim_end_matches('/'));
    // The table declares the query's columns (when SQL can name every
    // type): re-inferring them from the files would read `key=value/`
    // columns as strings, CSV text as whatever it looks like, and fail on
    // a table with no rows (no files to infer from).
    let schema = df.schema().as_arrow().clone();
    let mut columns = Vec::new();
    let fields = schema.fields();
    let (parts, rest): (Vec<_>, Vec<_>) = fields
        .iter()
        .partition(|f| clauses.partitioned_by.iter().any(|p| p == f.name()));
    for f in rest.into_iter().chain(parts) {
        match sql_type(f.data_type()) {
            Some(t) => columns.push(format!("{} {t}", quote_ident(f.name()))),
            None => {
                columns.clear();
                break;
            }
        }
    }
    // Parquet and Arrow compress inside the file: the engine takes their
    // `compression` only when writing.
    let (write_options, options): (Vec<_>, Vec<_>) =
        output.table_options().into_iter().partition(|(k, _)| {
            k == "format.compression" && matches!(format, FileFormat::Parquet | FileFormat::Arrow)
        });
    let def = TableDef {
        name: ct.name.to_string(),
        key: key.clone(),
        columns,
        file_type: format.table_type().into(),
        locations: vec![location.clone()],
        partition_cols: clauses.partitioned_by.clone(),
        order: Vec::new(),
        options,
        unbounded: false,
        managed,
        write_options,
    };
    let written = ctx.block_on(output::new_directory(ctx.session(), df, &output, &location))?;
    let registered = session
        .execute_df(&def.to_sql())
        .map_err(|e| sql_error(statement, &e))
        .and_then(|_| session.catalog_mut().insert(&def, false));
    if let Err(e) = registered {
        let _ = session.context().session().deregister_table(key.as_str());
        let ctx = session.context();
        ctx.block_on(output::remove_directory(ctx.session(), &written));
        return Err(e);
    }
    let written = written.rows;
    Ok(Outcome::Done(format!(
        "table {key} created with {}",
        rows(written)
    )))
}

/// `INSERT INTO t SELECT ...` / `VALUES ...` for a catalog table stored in
/// a directory (local or on an object store, partitioned or not): the new
/// rows become more files in it, in the table's format and options.
pub(crate) fn insert(
    session: &mut SqlSession<'_>,
    ins: &Insert,
    statement: &str,
) -> Result<Outcome> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(Error::Usage("INSERT INTO takes a table name".into()));
    };
    let key = session.key(name, statement)?;
    let Some(def) = session.catalog().get(&key)? else {
        return Err(Error::Usage(format!(
            "INSERT INTO works on catalog tables; {key} is not one\nhint: SHOW TABLES lists the tables"
        )));
    };
    let refuse = |why: &str| Err(Error::Usage(format!("INSERT INTO {key}: {why}")));
    if ins.overwrite {
        return refuse("INSERT OVERWRITE is not available");
    }
    if !ins.columns.is_empty() {
        return refuse("give values for every column, in the table's order, without a column list");
    }
    let [location] = def.locations.as_slice() else {
        return refuse("the table has several locations");
    };
    let local_file = !location.contains("://") && std::path::Path::new(location).is_file();
    if local_file || (location.contains("://") && output::names_a_file(location)) {
        return refuse(
            "the table is one file; INSERT adds files to a table stored in a directory \
             (LOCATION 'dir/')",
        );
    }
    let Some(source) = &ins.source else {
        return refuse("nothing to insert");
    };
    let Some(provider) = session.provider(&key) else {
        return refuse("the table cannot be opened");
    };
    let output = Output {
        format: FileFormat::parse(&def.file_type).map_err(Error::Usage)?,
        options: def
            .options
            .iter()
            .chain(&def.write_options)
            .cloned()
            .collect(),
        partition_by: def.partition_cols.clone(),
    };
    let ctx = session.context();
    let df = ctx
        .block_on(ctx.session().sql(&source.to_string()))
        .map_err(|e| sql_error(statement, &e))?;
    let target = provider.schema();
    let columns = df.schema().columns();
    if columns.len() != target.fields().len() {
        return refuse(&format!(
            "the query gives {} columns, the table has {}",
            columns.len(),
            target.fields().len()
        ));
    }
    let exprs: Vec<Expr> = columns
        .into_iter()
        .zip(target.fields())
        .map(|(c, f)| {
            // `key=value/` columns are written as directory names.
            let data_type = match f.data_type() {
                DataType::Dictionary(_, value) => value.as_ref().clone(),
                other => other.clone(),
            };
            cast(Expr::Column(c), data_type).alias(f.name())
        })
        .collect();
    let df: DataFrame = df.select(exprs).map_err(|e| sql_error(statement, &e))?;
    let written = ctx.block_on(output::add_to_directory(
        ctx.session(),
        df,
        &output,
        location,
    ))?;
    // The engine remembers a table's file list: register it afresh.
    let _ = session.context().session().deregister_table(key.as_str());
    if let Err(e) = session.execute_df(&def.to_sql()) {
        let _ = session
            .context()
            .session()
            .register_table(key.as_str(), provider);
        return Err(sql_error(statement, &e));
    }
    Ok(Outcome::Done(format!(
        "inserted {} into {key}",
        rows(written)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctas_clauses_are_taken_out_of_the_head_only() {
        let (sql, c) = ctas_clauses(
            "CREATE TABLE t STORED AS csv PARTITIONED BY (a, \"B\")\nWITH (compression = 'gzip') \
             AS SELECT 'it''s' AS x, 1 AS a, 2 AS \"B\" STORED",
        );
        assert_eq!(
            sql,
            "CREATE TABLE t  \nWITH (compression = 'gzip') AS SELECT 'it''s' AS x, 1 AS a, 2 AS \"B\" STORED"
        );
        assert_eq!(c.stored_as.as_deref(), Some("csv"));
        assert_eq!(c.partitioned_by, vec!["a".to_string(), "B".to_string()]);
        let plain = "SELECT 1 STORED AS x";
        assert_eq!(
            ctas_clauses(plain),
            (plain.to_string(), CtasClauses::default())
        );
        let nothing = "CREATE TABLE t AS SELECT 1";
        assert_eq!(ctas_clauses(nothing).0, nothing);
        // A table named like a keyword is a name, not a clause.
        let named = "CREATE TABLE IF NOT EXISTS stored AS SELECT 1";
        assert_eq!(ctas_clauses(named).0, named);
        let (sql, c) = ctas_clauses("CREATE TABLE s.stored STORED AS csv AS SELECT 1");
        assert_eq!(sql, "CREATE TABLE s.stored  AS SELECT 1");
        assert_eq!(c.stored_as.as_deref(), Some("csv"));
        // Hive's typed partition columns are left to the parser (an error).
        let typed = "CREATE TABLE t PARTITIONED BY (a INT) AS SELECT 1 AS a";
        assert_eq!(ctas_clauses(typed).0, typed);
    }

    #[test]
    fn offsets_count_characters_per_line() {
        let sql = "é a\nbc d";
        assert_eq!(offset(sql, 1, 3), 3);
        assert_eq!(offset(sql, 2, 1), 5);
        assert_eq!(offset(sql, 2, 4), 8);
    }
}
