//! Typed ↔ relational on one plan: a `Dataset<T>` as a DataFusion
//! `DataFrame` or a SQL table, a `DataFrame` (or a SQL query) as a
//! `Dataset<T>`, and a SQL step inside a `Pipeline`. Nothing is
//! materialized in between: each side sees the other's logical plan.

use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::catalog::view::ViewTable;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::prelude::ParquetReadOptions;
use datafusion::prelude::SessionContext;

use crate::context::Context;
use crate::dataset::{Dataset, WriteSummary};
use crate::error::{Error, Result, from_df};
use crate::output::{self, FileFormat, Output};
use crate::pipeline::{PCollection, PTransform};
use crate::rows::{Data, RowCodec};

impl<T: Data> Dataset<T> {
    /// The dataset as a DataFusion `DataFrame` over the same plan. Columns
    /// are `T`'s fields (`value` when `T` is not a struct).
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let plan = self.logical_plan()?;
        Ok(DataFrame::new(self.context().session().state(), plan))
    }

    /// Registers the dataset as a table named `name` for SQL in its
    /// context (a view over its plan: queries recompute it).
    pub fn register_table(&self, name: &str) -> Result<()> {
        let plan = self.logical_plan()?;
        self.context()
            .session()
            .register_table(name, Arc::new(ViewTable::new(plan, None)))
            .map_err(from_df)?;
        Ok(())
    }
}

/// How a dataset is written (Spark's `DataFrameWriter`): a format, its
/// options and partition columns, then [`save`](Self::save).
///
/// ```
/// use spate_core::prelude::*;
/// use spate_core::output::FileFormat;
///
/// # let dir = tempfile::tempdir()?;
/// # let out = dir.path().join("sales");
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct Sale { item: String, qty: i64, year: i32 }
///
/// let ctx = Context::new()?;
/// let sales = ctx.from_vec(vec![
///     Sale { item: "a".into(), qty: 3, year: 2023 },
///     Sale { item: "b".into(), qty: 5, year: 2024 },
/// ]);
/// let written = sales
///     .writer(FileFormat::Csv)
///     .option("compression", "gzip")
///     .option("has_header", "true")
///     .partition_by(["year"])
///     .save(out.to_str().unwrap())?;
/// assert_eq!(written.rows, 2);
/// assert!(out.join("year=2024").is_dir() && out.join("_SUCCESS").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DatasetWriter<T> {
    dataset: Dataset<T>,
    output: Output,
}

impl<T: Data> DatasetWriter<T> {
    /// A writer option: `compression` (Parquet: `zstd(3)`, `snappy`, ...;
    /// CSV, JSON and text: `gzip`, `zstd`, ...), `has_header`,
    /// `delimiter`, `max_row_group_size`, ...
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.output.options.push((key.into(), value.into()));
        self
    }

    /// Columns written as `key=value/` directories rather than in the files.
    pub fn partition_by<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.output.partition_by = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Writes a new directory at `location` (a path or an object store
    /// URL), which must not exist: it appears complete, with a `_SUCCESS`
    /// marker, or not at all.
    pub fn save(self, location: impl AsRef<str>) -> Result<WriteSummary> {
        self.output.check()?;
        let ctx = self.dataset.context().clone();
        let df = self.dataset.to_dataframe()?;
        let location = location.as_ref();
        Ok(ctx.block_on(output::new_directory(
            ctx.session(),
            df,
            &self.output,
            location,
        ))?)
    }
}

impl<T: Data> Dataset<T> {
    /// A writer for the rows in `format`.
    pub fn writer(self, format: FileFormat) -> DatasetWriter<T> {
        DatasetWriter {
            dataset: self,
            output: Output {
                format,
                options: Vec::new(),
                partition_by: Vec::new(),
            },
        }
    }

    /// Writes the rows as Parquet files into a new directory `dir` (one file
    /// per partition), committed atomically: the directory appears complete
    /// with a `_SUCCESS` marker, or not at all.
    pub fn write_parquet(self, dir: impl AsRef<std::path::Path>) -> Result<WriteSummary> {
        let dir = dir.as_ref().to_string_lossy().into_owned();
        self.writer(FileFormat::Parquet).save(dir)
    }

    /// Writes the rows as CSV files with a header line into a new
    /// directory `dir`, committed atomically.
    pub fn write_csv(self, dir: impl AsRef<std::path::Path>) -> Result<WriteSummary> {
        let dir = dir.as_ref().to_string_lossy().into_owned();
        self.writer(FileFormat::Csv)
            .option("has_header", "true")
            .save(dir)
    }

    /// Writes the rows as Arrow IPC files into a new directory `dir`,
    /// committed atomically.
    pub fn write_arrow(self, dir: impl AsRef<std::path::Path>) -> Result<WriteSummary> {
        let dir = dir.as_ref().to_string_lossy().into_owned();
        self.writer(FileFormat::Arrow).save(dir)
    }
}

/// DataFusion's compression for a file named `*.gz`, `*.zst`, `*.bz2`,
/// `*.xz`, and the extension its readers then look for.
fn compression_of(path: &str, extension: &str) -> (FileCompressionType, String) {
    output::compressed_suffix(path)
        .and_then(|(suffix, codec)| {
            let c: FileCompressionType = codec.parse().ok()?;
            Some((c, format!("{extension}{suffix}")))
        })
        .unwrap_or((FileCompressionType::UNCOMPRESSED, extension.to_string()))
}

/// Formats of table files [`Context::read_table_files_each_run`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// CSV with a header line (`.csv`, or compressed as `.csv.gz` and the like).
    Csv,
    /// Parquet.
    Parquet,
}

impl Context {
    /// Table files (CSV or Parquet) asked for each time the plan is built
    /// (once per action), read as rows of `T` as [`Context::read_csv`] and
    /// [`Context::read_parquet`] read them: the micro-batches of a
    /// directory stream run one plan. A file that cannot be read fails
    /// naming it.
    pub fn read_table_files_each_run<T: Data>(
        &self,
        format: TableFormat,
        files: impl Fn() -> Result<Vec<String>> + Send + Sync + 'static,
    ) -> Dataset<T> {
        let ctx = self.clone();
        let step = self.step_name(match format {
            TableFormat::Csv => "read_csv",
            TableFormat::Parquet => "read_parquet",
        });
        let parts = self.threads();
        self.dataset(Arc::new(move || {
            let mut plan: Option<LogicalPlan> = None;
            for f in files()? {
                let df = match format {
                    TableFormat::Parquet => ctx.block_on(
                        ctx.session()
                            .read_parquet(f.as_str(), ParquetReadOptions::default()),
                    ),
                    TableFormat::Csv => {
                        let (compression, extension) = compression_of(&f, ".csv");
                        let options = datafusion::prelude::CsvReadOptions::new()
                            .has_header(true)
                            .file_compression_type(compression)
                            .file_extension(&extension);
                        ctx.block_on(ctx.session().read_csv(f.as_str(), options))
                    }
                }
                .map_err(|e| Error::Usage(format!("{step}: {f}: {e}")))?;
                let one = conform::<T>(df.logical_plan().clone())
                    .map_err(|e| Error::Usage(format!("{step}: {f}: {e}")))?;
                plan = Some(match plan {
                    None => one,
                    Some(all) => LogicalPlanBuilder::from(all)
                        .union(one)
                        .and_then(|b| b.build())
                        .map_err(from_df)?,
                });
            }
            match plan {
                Some(p) => Ok(p),
                None => crate::dataset::rows_plan::<T>(&step, &[], parts),
            }
        }))
    }

    /// Sets up the object store a URL to read needs (see
    /// [`Context::read_text`]): the one registered for its bucket, or one
    /// from the environment.
    fn store_to_read(&self, location: &str) -> Result<()> {
        if spate_io::source::is_url(location) {
            spate_io::store::resolve(&self.session().runtime_env(), location)
                .map_err(Error::Usage)?;
        }
        Ok(())
    }

    /// Reads Parquet files (a file, a directory of them, or an object-store
    /// URL such as `s3://bucket/table/`, its store set up as for
    /// [`Context::read_text`]) as rows of `T`: columns matched to `T`'s
    /// fields by name and cast to their types.
    pub fn read_parquet<T: Data>(&self, path: impl AsRef<str>) -> Result<Dataset<T>> {
        self.store_to_read(path.as_ref())?;
        let df = self
            .block_on(
                self.session()
                    .read_parquet(path.as_ref(), ParquetReadOptions::default()),
            )
            .map_err(from_df)?;
        df.into_dataset(self)
    }

    /// Reads CSV files with a header line as rows of `T` (columns by
    /// name); a file named `*.csv.gz` (`.zst`, `.bz2`, `.xz`) is
    /// decompressed. Object-store URLs are read as by
    /// [`Context::read_parquet`].
    pub fn read_csv<T: Data>(&self, path: impl AsRef<str>) -> Result<Dataset<T>> {
        self.store_to_read(path.as_ref())?;
        let (compression, extension) = compression_of(path.as_ref(), ".csv");
        let options = datafusion::prelude::CsvReadOptions::new()
            .has_header(true)
            .file_compression_type(compression)
            .file_extension(&extension);
        let df = self
            .block_on(self.session().read_csv(path.as_ref(), options))
            .map_err(from_df)?;
        df.into_dataset(self)
    }

    /// Reads JSON-lines files (`.json`, or `.json.gz` and the like) as rows
    /// of `T` (fields by name); object-store URLs as by
    /// [`Context::read_parquet`].
    pub fn read_json<T: Data>(&self, path: impl AsRef<str>) -> Result<Dataset<T>> {
        self.store_to_read(path.as_ref())?;
        let (compression, extension) = compression_of(path.as_ref(), ".json");
        let options = datafusion::datasource::file_format::options::JsonReadOptions::default()
            .file_compression_type(compression)
            .file_extension(&extension);
        let df = self
            .block_on(self.session().read_json(path.as_ref(), options))
            .map_err(from_df)?;
        df.into_dataset(self)
    }

    /// Reads Arrow IPC files (`.arrow`) as rows of `T` (fields by name);
    /// object-store URLs as by [`Context::read_parquet`].
    pub fn read_arrow<T: Data>(&self, path: impl AsRef<str>) -> Result<Dataset<T>> {
        self.store_to_read(path.as_ref())?;
        let options = datafusion::datasource::file_format::options::ArrowReadOptions::default();
        let df = self
            .block_on(self.session().read_arrow(path.as_ref(), options))
            .map_err(from_df)?;
        df.into_dataset(self)
    }
}

/// Projects `plan` onto `T`'s columns: matched by name, cast to `T`'s types.
fn conform<T: Data>(plan: LogicalPlan) -> Result<LogicalPlan> {
    let codec = RowCodec::<T>::new()?;
    let mut exprs = Vec::new();
    for field in codec.schema().fields() {
        let found = plan
            .schema()
            .qualified_field_with_unqualified_name(field.name())
            .map_err(|_| Error::Schema {
                type_name: std::any::type_name::<T>(),
                message: format!(
                    "no column named '{}' (the query gives: {})",
                    field.name(),
                    plan.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let column = Expr::Column(Column::from(found));
        exprs.push(cast(column, field.data_type().clone()).alias(field.name()));
    }
    LogicalPlanBuilder::from(plan)
        .project(exprs)
        .and_then(LogicalPlanBuilder::build)
        .map_err(from_df)
}

/// Turns a DataFusion `DataFrame` into a typed [`Dataset`].
pub trait IntoDataset {
    /// Rows of `T`, read from the columns named as `T`'s fields (cast to
    /// their types), in `ctx`.
    fn into_dataset<T: Data>(self, ctx: &Context) -> Result<Dataset<T>>;
}

impl IntoDataset for DataFrame {
    fn into_dataset<T: Data>(self, ctx: &Context) -> Result<Dataset<T>> {
        let plan = conform::<T>(self.logical_plan().clone())?;
        Ok(ctx.dataset(Arc::new(move || Ok(plan.clone()))))
    }
}

impl Context {
    /// A SQL query over the context's tables as a typed dataset.
    pub fn sql<T: Data>(&self, query: &str) -> Result<Dataset<T>> {
        let df = self.block_on(self.session().sql(query)).map_err(from_df)?;
        df.into_dataset(self)
    }
}

/// A SQL step in a pipeline (Beam's `SqlTransform`): the input collection
/// is the table `PCOLLECTION`; the context's tables can be joined too.
///
/// ```
/// use spate_core::prelude::*;
/// use spate_core::frame::Sql;
///
/// let p = Pipeline::new()?;
/// let words = p.apply("Words", Create(vec!["a".to_string(), "b".into(), "a".into()]));
/// let counts = words.apply(
///     "Count",
///     Sql::<(String, i64)>::query(
///         r#"SELECT value AS "0", count(*) AS "1" FROM PCOLLECTION GROUP BY value ORDER BY value"#,
///     ),
/// );
/// assert_eq!(counts.into_dataset().collect()?, vec![("a".into(), 2), ("b".into(), 1)]);
/// # Ok::<(), spate_core::Error>(())
/// ```
pub struct Sql<U> {
    query: String,
    _u: PhantomData<fn() -> U>,
}

impl<U> Sql<U> {
    /// A query reading `PCOLLECTION`; its columns must be named as `U`'s
    /// fields (`"0"`, `"1"`, ... for tuples; `value` for plain values).
    pub fn query(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            _u: PhantomData,
        }
    }
}

/// Plans `query` with `input` as the table `pcollection`, in a scope of its
/// own (the context's tables are visible; nothing is registered in it).
fn plan_with_input(ctx: &Context, query: &str, input: LogicalPlan) -> Result<LogicalPlan> {
    let main = ctx.session();
    let existing = main.state();
    let config = existing
        .config()
        .clone()
        .with_create_default_catalog_and_schema(true);
    let state = SessionStateBuilder::new_from_existing(existing)
        .with_config(config)
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .build();
    let scoped = SessionContext::new_with_state(state);
    ctx.block_on(async {
        // The fresh catalog gets the default schema; copy the context's
        // tables into it so queries can join them.
        for name in main.catalog_names() {
            let Some(catalog) = main.catalog(&name) else {
                continue;
            };
            if let Some(schema) = catalog.schema("public") {
                for table in schema.table_names() {
                    if let Ok(Some(provider)) = schema.table(&table).await {
                        let _ = scoped.register_table(table.as_str(), provider);
                    }
                }
            }
        }
        scoped.register_table("pcollection", Arc::new(ViewTable::new(input, None)))?;
        let df = scoped.sql(query).await?;
        Ok::<_, datafusion::error::DataFusionError>(df.logical_plan().clone())
    })
    .map_err(from_df)
}

impl<T: Data, U: Data> PTransform<PCollection<T>> for Sql<U> {
    type Out = PCollection<U>;

    fn expand(self, input: PCollection<T>) -> PCollection<U> {
        let ctx = input.dataset().context().clone();
        let source = input.dataset().clone();
        let query = self.query;
        let inner = ctx.clone();
        let ds = ctx.dataset::<U>(Arc::new(move || {
            let plan = source.logical_plan()?;
            conform::<U>(plan_with_input(&inner, &query, plan)?)
        }));
        input.with(ds)
    }
}
