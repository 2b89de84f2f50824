//! A SQL session over a spate [`Context`] and the persistent [`Catalog`].

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
pub use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Statement as SqlStatement};
use spate_core::context::Context;
use spate_core::error::{Error, Result};

use crate::catalog::{Catalog, TableDef};

/// What a statement gave.
#[derive(Debug)]
pub enum Outcome {
    /// A result set.
    Rows {
        /// Its columns.
        schema: SchemaRef,
        /// Its rows.
        batches: Vec<RecordBatch>,
    },
    /// A change, with a message for the user (`table t created`).
    Done(String),
}

/// A SQL session: the catalog's tables registered in the context's engine.
pub struct SqlSession<'a> {
    ctx: &'a Context,
    home: std::path::PathBuf,
    catalog: Catalog,
    warnings: Vec<String>,
}

/// Turns a parser or planner error into a message showing where in the
/// statement it is (a caret under `Line: L, Column: C`) and a hint.
pub fn explain_error(statement: &str, e: &DataFusionError) -> String {
    let message = match e.find_root() {
        DataFusionError::SQL(parser, _) => {
            let text = match parser.as_ref() {
                datafusion::sql::sqlparser::parser::ParserError::ParserError(m)
                | datafusion::sql::sqlparser::parser::ParserError::TokenizerError(m) => m.clone(),
                other => other.to_string(),
            };
            format!("syntax error: {text}")
        }
        _ => e.to_string(),
    };
    let mut out = message.clone();
    if let Some((line, column)) = position(&message)
        && let Some(text) = statement.lines().nth(line.saturating_sub(1))
    {
        out.push_str(&format!(
            "\n  {text}\n  {}^",
            " ".repeat(column.saturating_sub(1))
        ));
    }
    let hint = if message.contains("not found") && message.contains("table") {
        Some("SHOW TABLES lists the tables; CREATE EXTERNAL TABLE adds one")
    } else if message.contains("No field named") || message.contains("Schema error") {
        Some("DESCRIBE <table> lists a table's columns")
    } else if message.starts_with("syntax error") {
        Some("statements end with ';'; strings are in 'single quotes', names in \"double quotes\"")
    } else {
        None
    };
    if let Some(h) = hint {
        out.push_str(&format!("\nhint: {h}"));
    }
    out
}

/// `Line: L, Column: C` in a parser message.
fn position(message: &str) -> Option<(usize, usize)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

pub(crate) fn sql_error(statement: &str, e: &DataFusionError) -> Error {
    Error::Usage(explain_error(statement, e))
}

impl<'a> SqlSession<'a> {
    /// Opens the catalog under `home` and registers its tables. A table
    /// whose files are gone is reported in [`warnings`](Self::warnings) and
    /// left in the catalog.
    pub fn open(ctx: &'a Context, home: &Path) -> Result<Self> {
        let catalog = Catalog::open(home)?;
        let mut session = Self {
            ctx,
            home: home.to_path_buf(),
            catalog,
            warnings: Vec::new(),
        };
        for def in session.catalog.list()? {
            let sql = def.to_sql();
            let stores = session.register_stores(&def);
            if let Err(e) =
                stores.and_then(|()| session.execute_df(&sql).map_err(|e| e.to_string()))
            {
                session.warnings.push(format!(
                    "table {} ({}) cannot be opened: {e}",
                    def.name,
                    def.locations.join(", ")
                ));
            }
        }
        for (key, sql) in session.catalog.views()? {
            if let Err(e) = session.execute_df(&sql) {
                session
                    .warnings
                    .push(format!("view {key} cannot be opened: {e}"));
            }
        }
        Ok(session)
    }

    /// Problems met while opening the catalog.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub(crate) fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    pub(crate) fn context(&self) -> &Context {
        self.ctx
    }

    pub(crate) fn home(&self) -> &Path {
        &self.home
    }

    pub(crate) fn execute_df(
        &self,
        sql: &str,
    ) -> std::result::Result<Vec<RecordBatch>, DataFusionError> {
        let session = self.ctx.session();
        self.ctx.block_on(async {
            let df = session.sql(sql).await?;
            df.collect().await
        })
    }

    /// Registers the object stores a table's URLs need (`s3://`, ...).
    fn register_stores(&self, def: &TableDef) -> std::result::Result<(), String> {
        for location in &def.locations {
            spate_io::store::register_for(self.ctx.session(), location)?;
        }
        Ok(())
    }

    pub(crate) fn key(&self, name: &ObjectName, statement: &str) -> Result<String> {
        object_name_to_table_reference(name.clone(), true)
            .map(|r| r.to_string())
            .map_err(|e| sql_error(statement, &e))
    }

    pub(crate) fn provider(&self, key: &str) -> Option<Arc<dyn TableProvider>> {
        let session = self.ctx.session();
        self.ctx
            .block_on(async { session.table_provider(key).await })
            .ok()
    }

    /// The catalog's tables with their format, location and columns (the
    /// shell's `\d`).
    pub fn tables(&self) -> Result<Outcome> {
        use arrow::array::StringArray;
        use arrow::datatypes::{DataType, Field, Schema};
        let mut cols: [Vec<String>; 4] = Default::default();
        for def in self.catalog.list()? {
            let columns = match self.provider(&def.key) {
                Some(p) => p
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "(cannot be opened)".to_string(),
            };
            cols[0].push(def.name.clone());
            cols[1].push(def.file_type.clone());
            cols[2].push(def.locations.join(", "));
            cols[3].push(columns);
        }
        let schema = Arc::new(Schema::new(
            ["table", "format", "location", "columns"]
                .map(|n| Field::new(n, DataType::Utf8, false))
                .to_vec(),
        ));
        let arrays = cols
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as arrow::array::ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| Error::Internal(format!("table listing: {e}")))?;
        Ok(Outcome::Rows {
            schema,
            batches: vec![batch],
        })
    }

    /// Runs one statement.
    pub fn run(&mut self, statement: &str) -> Result<Outcome> {
        let (rewritten, clauses) = crate::write::ctas_clauses(statement);
        let mut parsed = DFParser::parse_sql(&rewritten).map_err(|e| sql_error(statement, &e))?;
        if parsed.len() != 1 {
            return Err(Error::Usage(format!(
                "expected one statement, found {}",
                parsed.len()
            )));
        }
        let Some(stmt) = parsed.pop_front() else {
            return Err(Error::Usage("no statement".into()));
        };
        match stmt {
            DfStatement::CreateExternalTable(create) => {
                let key = self.key(&create.name, statement)?;
                self.create_external(&create, key, statement)
            }
            DfStatement::Statement(inner) => match *inner {
                SqlStatement::Drop {
                    object_type: ObjectType::Table,
                    if_exists,
                    names,
                    ..
                } => self.drop_tables(&names, if_exists, statement),
                SqlStatement::CreateView(cv) if !cv.temporary => {
                    let key = self.key(&cv.name, statement)?;
                    self.create_view(&key, cv.or_replace, statement)
                }
                SqlStatement::Drop {
                    object_type: ObjectType::View,
                    if_exists,
                    names,
                    ..
                } => self.drop_views(&names, if_exists, statement),
                SqlStatement::CreateTable(ct) if ct.query.is_some() => {
                    crate::write::create_table_as(self, &ct, &clauses, statement)
                }
                SqlStatement::Insert(ins) => crate::write::insert(self, &ins, statement),
                SqlStatement::CreateTable(_)
                | SqlStatement::Update(_)
                | SqlStatement::Delete(_) => Err(Error::Usage(
                    "spate sql keeps tables in files: CREATE EXTERNAL TABLE, \
                     CREATE TABLE ... AS SELECT, INSERT INTO, COPY ... TO and DROP TABLE; \
                     CREATE TABLE without AS SELECT, UPDATE and DELETE are not available"
                        .into(),
                )),
                _ => self.query(statement),
            },
            DfStatement::CopyTo(copy) => crate::write::copy_to(self, &copy, statement),
            _ => self.query(statement),
        }
    }

    fn query(&self, statement: &str) -> Result<Outcome> {
        let session = self.ctx.session();
        let df = self
            .ctx
            .block_on(session.sql(statement))
            .map_err(|e| sql_error(statement, &e))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let plan = df.logical_plan().clone();
        let batches =
            self.ctx
                .block_on(df.collect())
                .map_err(|e| match spate_core::error::from_df(e) {
                    // A lost scheduler is not the tables' fault.
                    Error::Execution(inner)
                        if !spate_core::cluster_job::is_lost_scheduler(&inner) =>
                    {
                        Error::Execution(DataFusionError::Context(
                            self.reading(&plan),
                            Box::new(inner),
                        ))
                    }
                    other => other,
                })?;
        Ok(Outcome::Rows { schema, batches })
    }

    /// Names the catalog tables a plan reads and where their files are, for
    /// errors met while reading them (a malformed file).
    fn reading(&self, plan: &datafusion::logical_expr::LogicalPlan) -> String {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut tables = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
                tables.push(scan.table_name.table().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let defs = self.catalog.list().unwrap_or_default();
        let described: Vec<String> = tables
            .iter()
            .map(|t| match defs.iter().find(|d| d.key == *t) {
                Some(d) => format!("table {t} (files at {})", d.locations.join(", ")),
                None => format!("table {t}"),
            })
            .collect();
        if described.is_empty() {
            "running the statement".to_string()
        } else {
            format!("reading {}", described.join(", "))
        }
    }

    fn create_external(
        &mut self,
        create: &datafusion::sql::parser::CreateExternalTable,
        key: String,
        statement: &str,
    ) -> Result<Outcome> {
        self.expect_kind(&key, "CREATE EXTERNAL TABLE", ObjectKind::Table)?;
        let exists = self.catalog.get(&key)?.is_some();
        if exists && create.if_not_exists {
            return Ok(Outcome::Done(format!("table {key} exists")));
        }
        if exists && !create.or_replace {
            return Err(Error::Usage(format!(
                "table {key} already exists (DROP TABLE {key} first, or CREATE OR REPLACE EXTERNAL TABLE)"
            )));
        }
        let def = TableDef::from_statement(create, key.clone());
        self.register_stores(&def).map_err(Error::Usage)?;
        // The previous table stays usable until the new one is registered
        // and recorded; any failure puts it back.
        let session = self.ctx.session();
        let previous = self.provider(&key);
        if previous.is_some() {
            let _ = session.deregister_table(key.as_str());
        }
        let restore = |session: &datafusion::prelude::SessionContext| {
            let _ = session.deregister_table(key.as_str());
            if let Some(p) = &previous {
                let _ = session.register_table(key.as_str(), p.clone());
            }
        };
        if let Err(e) = self.execute_df(&def.to_sql()) {
            restore(session);
            return Err(sql_error(statement, &e));
        }
        if let Err(e) = self.catalog.insert(&def, create.or_replace) {
            restore(session);
            return Err(e);
        }
        Ok(Outcome::Done(format!("table {key} created")))
    }

    fn create_view(&mut self, key: &str, replace: bool, statement: &str) -> Result<Outcome> {
        self.expect_kind(key, "CREATE VIEW", ObjectKind::View)?;
        let known = self.catalog.views()?.iter().any(|(k, _)| k == key);
        if known && !replace {
            return Err(Error::Usage(format!(
                "view {key} already exists (CREATE OR REPLACE VIEW replaces it)"
            )));
        }
        self.execute_df(statement)
            .map_err(|e| sql_error(statement, &e))?;
        if let Err(e) = self.catalog.insert_view(key, statement, replace) {
            let _ = self.ctx.session().deregister_table(key);
            return Err(e);
        }
        Ok(Outcome::Done(format!("view {key} created")))
    }

    /// What `key` names: a catalog table or view, or an object registered
    /// only in this session (a typed dataset's view, say), by its kind.
    fn kind_of(&self, key: &str) -> Result<Option<ObjectKind>> {
        if self.catalog.get(key)?.is_some() {
            return Ok(Some(ObjectKind::Table));
        }
        if self.catalog.views()?.iter().any(|(k, _)| k == key) {
            return Ok(Some(ObjectKind::View));
        }
        Ok(self.provider(key).map(|p| match p.table_type() {
            datafusion::logical_expr::TableType::View => ObjectKind::View,
            _ => ObjectKind::Table,
        }))
    }

    /// Refuses an operation on an object of the other kind, as Spark does
    /// (`WRONG_COMMAND_FOR_OBJECT_TYPE`): a `DROP` names the statement to
    /// use instead, a `CREATE` the object in the way.
    pub(crate) fn expect_kind(&self, key: &str, operation: &str, wanted: ObjectKind) -> Result<()> {
        let Some(found) = self.kind_of(key)?.filter(|k| *k != wanted) else {
            return Ok(());
        };
        let what_to_do = if operation.starts_with("DROP") {
            format!("use DROP {} instead", found.keyword())
        } else {
            format!(
                "DROP {} {key} first, or choose another name",
                found.keyword()
            )
        };
        Err(Error::Usage(format!(
            "the operation {operation} requires a {wanted}, but {key} is a {found}; {what_to_do}"
        )))
    }

    /// The names a `DROP` statement names, resolved; an unknown one is an
    /// error unless `IF EXISTS`, and one of the other kind always is.
    fn drop_targets(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        statement: &str,
        kind: ObjectKind,
    ) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let operation = format!("DROP {}", kind.keyword());
        for name in names {
            let key = self.key(name, statement)?;
            self.expect_kind(&key, &operation, kind)?;
            if self.kind_of(&key)?.is_none() {
                if if_exists {
                    continue;
                }
                return Err(Error::Usage(format!(
                    "{kind} {key} does not exist\nhint: SHOW TABLES lists the tables and views"
                )));
            }
            keys.push(key);
        }
        Ok(keys)
    }

    fn drop_views(
        &mut self,
        names: &[ObjectName],
        if_exists: bool,
        statement: &str,
    ) -> Result<Outcome> {
        let keys = self.drop_targets(names, if_exists, statement, ObjectKind::View)?;
        for key in &keys {
            self.catalog.remove_view(key)?;
            let _ = self.ctx.session().deregister_table(key.as_str());
        }
        Ok(dropped(&keys))
    }

    fn drop_tables(
        &mut self,
        names: &[ObjectName],
        if_exists: bool,
        statement: &str,
    ) -> Result<Outcome> {
        let keys = self.drop_targets(names, if_exists, statement, ObjectKind::Table)?;
        for key in &keys {
            let def = self.catalog.get(key)?;
            self.catalog.remove(key)?;
            let _ = self.ctx.session().deregister_table(key.as_str());
            // A managed table's files go with it (Hive's managed tables).
            if let Some(def) = def.filter(|d| d.managed) {
                for location in &def.locations {
                    let _ = std::fs::remove_dir_all(location);
                }
            }
        }
        Ok(dropped(&keys))
    }
}

fn dropped(keys: &[String]) -> Outcome {
    if keys.is_empty() {
        Outcome::Done("nothing to drop".into())
    } else {
        Outcome::Done(format!("dropped {}", keys.join(", ")))
    }
}

/// The two kinds of named objects statements address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Table,
    View,
}

impl ObjectKind {
    fn keyword(self) -> &'static str {
        match self {
            Self::Table => "TABLE",
            Self::View => "VIEW",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Table => "table",
            Self::View => "view",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_read_from_parser_messages() {
        assert_eq!(
            position(
                "sql parser error: Expected: end of statement, found: FORM at Line: 2, Column: 10"
            ),
            Some((2, 10))
        );
        assert_eq!(position("no position"), None);
    }
}
