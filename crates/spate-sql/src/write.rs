//! Statements that write files: `CREATE TABLE ... AS SELECT` and
//! `INSERT INTO`. Output is written where readers cannot see it (a hidden
//! staging directory next to the target, which table listings skip) and
//! made visible with one `rename(2)`: a statement that fails leaves the
//! table's files and the catalog as they were.

use std::path::{Path, PathBuf};

use datafusion::config::CsvOptions;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::prelude::{Expr, cast};
use datafusion::sql::sqlparser::ast::{CreateTable, Insert, TableObject};
use spate_core::error::{Error, Result};

use crate::catalog::TableDef;
use crate::session::{Outcome, SqlSession, sql_error};

/// A unique hidden directory inside `parent` for output in progress.
fn staging_dir(parent: &Path) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = parent.join(format!(".spate-staging-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Removes a staging directory when dropped (after a failure, or after its
/// content was moved out).
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `df` as one file at `path` in the table's format; the rows written.
fn write_file(session: &SqlSession<'_>, df: DataFrame, def: &TableDef, path: &Path) -> Result<u64> {
    let path = path.to_string_lossy().into_owned();
    let options = DataFrameWriteOptions::new().with_single_file_output(true);
    let header = def
        .options
        .iter()
        .any(|(k, v)| k.ends_with("has_header") && v.eq_ignore_ascii_case("true"));
    let written = session.context().block_on(async {
        match def.file_type.to_ascii_uppercase().as_str() {
            "PARQUET" => df.write_parquet(&path, options, None).await,
            "CSV" => {
                let csv = CsvOptions {
                    has_header: Some(header),
                    ..CsvOptions::default()
                };
                df.write_csv(&path, options, Some(csv)).await
            }
            "JSON" | "NDJSON" => df.write_json(&path, options, None).await,
            other => Err(datafusion::error::DataFusionError::Plan(format!(
                "spate writes PARQUET, CSV and JSON tables, not {other}"
            ))),
        }
    });
    let batches = written.map_err(spate_core::error::from_df)?;
    // DataFusion's writers report one `count` column.
    Ok(batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .map(|a| a.iter().flatten().sum::<u64>())
        })
        .sum())
}

fn extension(def: &TableDef) -> &'static str {
    match def.file_type.to_ascii_uppercase().as_str() {
        "CSV" => "csv",
        "JSON" | "NDJSON" => "json",
        _ => "parquet",
    }
}

/// `CREATE TABLE t AS SELECT ...`: a managed Parquet table in
/// `$SPATE_HOME/warehouse/t/`.
pub(crate) fn create_table_as(
    session: &mut SqlSession<'_>,
    ct: &CreateTable,
    statement: &str,
) -> Result<Outcome> {
    let key = session.key(&ct.name, statement)?;
    if session.catalog().get(&key)?.is_some() || session.provider(&key).is_some() {
        if ct.if_not_exists {
            return Ok(Outcome::Done(format!("table {key} exists")));
        }
        return Err(Error::Usage(format!(
            "table {key} already exists (DROP TABLE {key} first)"
        )));
    }
    if ct.or_replace || !ct.columns.is_empty() || ct.location.is_some() {
        return Err(Error::Usage(
            "CREATE TABLE ... AS SELECT takes a name and a query (no OR REPLACE, column list \
             or LOCATION; CREATE EXTERNAL TABLE names files elsewhere)"
                .into(),
        ));
    }
    let Some(query) = &ct.query else {
        return Err(Error::Usage("CREATE TABLE needs AS SELECT ...".into()));
    };
    let ctx = session.context();
    let df = ctx
        .block_on(ctx.session().sql(&query.to_string()))
        .map_err(|e| sql_error(statement, &e))?;
    let warehouse = session.home().join("warehouse");
    let location = warehouse.join(&key);
    if location.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; remove it or choose another table name",
            location.display()
        )));
    }
    let staging = Staging(staging_dir(&warehouse)?);
    let def = TableDef {
        name: ct.name.to_string(),
        key: key.clone(),
        columns: Vec::new(),
        file_type: "PARQUET".into(),
        locations: vec![format!("{}/", location.display())],
        partition_cols: Vec::new(),
        order: Vec::new(),
        options: Vec::new(),
        unbounded: false,
        managed: true,
    };
    let table_dir = staging.0.join("table");
    std::fs::create_dir_all(&table_dir)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", table_dir.display())))?;
    let rows = write_file(session, df, &def, &table_dir.join("part-00000.parquet"))?;
    std::fs::rename(&table_dir, &location).map_err(|e| {
        Error::Usage(format!(
            "cannot move the table into {}: {e}",
            location.display()
        ))
    })?;
    let registered = session
        .execute_df(&def.to_sql())
        .map_err(|e| sql_error(statement, &e))
        .and_then(|_| session.catalog_mut().insert(&def, false));
    if let Err(e) = registered {
        let _ = session.context().session().deregister_table(key.as_str());
        let _ = std::fs::remove_dir_all(&location);
        return Err(e);
    }
    Ok(Outcome::Done(format!(
        "table {key} created with {rows} rows"
    )))
}

/// `INSERT INTO t SELECT ...` / `VALUES ...` for a catalog table stored in
/// a directory: the new rows become one more file in it.
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
    if !def.partition_cols.is_empty() {
        return refuse("inserting into a partitioned table is not available");
    }
    let [location] = def.locations.as_slice() else {
        return refuse("the table has several locations");
    };
    let dir = PathBuf::from(location);
    if location.contains("://") || !dir.is_dir() {
        return refuse("the table's location is not a local directory");
    }
    let Some(source) = &ins.source else {
        return refuse("nothing to insert");
    };
    let Some(provider) = session.provider(&key) else {
        return refuse("the table cannot be opened");
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
        .map(|(c, f)| cast(Expr::Column(c), f.data_type().clone()).alias(f.name()))
        .collect();
    let df = df.select(exprs).map_err(|e| sql_error(statement, &e))?;
    let staging = Staging(staging_dir(&dir)?);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let file = format!("part-{nanos}-{}.{}", std::process::id(), extension(&def));
    let staged = staging.0.join(&file);
    let rows = write_file(session, df, &def, &staged)?;
    std::fs::rename(&staged, dir.join(&file))
        .map_err(|e| Error::Usage(format!("cannot move new rows into {}: {e}", dir.display())))?;
    // The engine remembers a table's file list: register it afresh.
    let _ = session.context().session().deregister_table(key.as_str());
    if let Err(e) = session.execute_df(&def.to_sql()) {
        let _ = session
            .context()
            .session()
            .register_table(key.as_str(), provider);
        return Err(sql_error(statement, &e));
    }
    Ok(Outcome::Done(format!("inserted {rows} rows into {key}")))
}
