//! Text files as a SQL table (`STORED AS TEXT`): one `value` column, a row
//! per line, read by spate's own text source (splits on line ends, `.gz` and
//! `.zst`, invalid UTF-8 reported with file and offset).

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{CreateExternalTable, Expr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

use datafusion::physical_expr::expressions::Column;

use datafusion::execution::runtime_env::RuntimeEnv;

use crate::source::{LINE_COLUMN, TextSourceExec, line_schema, list_inputs, plan_splits};

/// Lines of the files at a location (a file, a directory or a glob), as
/// one column (`value` unless the table declares another name).
#[derive(Debug)]
pub struct TextTable {
    location: String,
    schema: SchemaRef,
}

fn external(e: crate::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl TextTable {
    /// A table over `location` (local files, or an object-store URL; see
    /// [`list_inputs`]) whose column of lines is named `column`. The files
    /// are listed at each scan; [`TextTable::open`] also checks now that
    /// there are some.
    pub fn new(location: &str, column: &str) -> Self {
        let location = location.strip_prefix("file://").unwrap_or(location);
        let field = line_schema().field(0).clone().with_name(column);
        Self {
            location: location.to_string(),
            schema: Arc::new(arrow::datatypes::Schema::new(vec![field])),
        }
    }

    /// [`TextTable::new`], failing when the location matches no file.
    pub async fn open(location: &str, column: &str, runtime: &RuntimeEnv) -> Result<Self> {
        let table = Self::new(location, column);
        list_inputs(&[table.location.as_str()], runtime)
            .await
            .map_err(external)?;
        Ok(table)
    }

    /// Where the table's files are (a file, a directory or a glob).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The name of the table's one column.
    pub fn column(&self) -> &str {
        self.schema.field(0).name()
    }
}

#[async_trait]
impl TableProvider for TextTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Files are listed at each scan: lines appended since are read.
        let files = list_inputs(&[self.location.as_str()], state.runtime_env())
            .await
            .map_err(external)?;
        let partitions = state.config().target_partitions().max(1);
        let source: Arc<dyn ExecutionPlan> = Arc::new(TextSourceExec::new(
            plan_splits(&files, partitions).map_err(external)?,
        ));
        let column = self.schema.field(0).name();
        match projection {
            // `count(*)` and friends want no columns, only rows.
            Some(p) if p.is_empty() => Ok(Arc::new(ProjectionExec::try_new(
                Vec::<ProjectionExpr>::new(),
                source,
            )?)),
            _ if column != LINE_COLUMN => {
                let line = Arc::new(Column::new(LINE_COLUMN, 0));
                Ok(Arc::new(ProjectionExec::try_new(
                    vec![ProjectionExpr::new(line, column.clone())],
                    source,
                )?))
            }
            _ => Ok(source),
        }
    }
}

/// Makes [`TextTable`]s for `CREATE EXTERNAL TABLE ... STORED AS TEXT`.
#[derive(Debug, Default)]
pub struct TextTableFactory;

#[async_trait]
impl TableProviderFactory for TextTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let fields = cmd.schema.fields();
        let one_text_column = fields.len() == 1
            && matches!(
                fields[0].data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            );
        if !fields.is_empty() && !one_text_column {
            return Err(DataFusionError::Plan(
                "a TEXT table has one column of lines: declare none, or one VARCHAR column".into(),
            ));
        }
        if !cmd.table_partition_cols.is_empty() {
            return Err(DataFusionError::Plan(
                "TEXT tables are not partitioned".into(),
            ));
        }
        let [location] = cmd.locations.as_slice() else {
            return Err(DataFusionError::Plan(
                "a TEXT table has one location".into(),
            ));
        };
        let column = fields.first().map_or(LINE_COLUMN, |f| f.name().as_str());
        Ok(Arc::new(
            TextTable::open(location, column, state.runtime_env()).await?,
        ))
    }
}
