//! Text splits as a DataFusion file scan, for a Ballista cluster.
//!
//! Ballista runs a task over some of a stage's partitions and narrows the
//! stage's plan to them first — but only the leaves it knows (file scans,
//! shuffle reads). Any other leaf keeps every partition, and the executor
//! runs them all: a [`TextSourceExec`] under a task for one partition would
//! read every split, once per task. So on the scheduler a text source is
//! planned as a `DataSourceExec` whose file groups are its splits (one group
//! per partition, each split carrying its number among all splits, for
//! Hadoop's map task numbering); Ballista narrows those groups, and spate's
//! codec ships the narrowed groups. The scan reads with the same reader as
//! [`TextSourceExec`].

use std::any::Any;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileOpenFuture, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::StreamExt;
use object_store::ObjectStore;

use super::{FileRange, LineOptions, TextSourceExec, line_schema_with, read_splits};

/// Splits by partition, each with its number among all splits of its source.
pub type SplitGroups = Vec<Vec<(FileRange, usize)>>;

/// A split's number among all splits of its source, carried by its file.
#[derive(Debug, Clone, Copy)]
struct SplitIndex(usize);

/// Text lines as a DataFusion [`FileSource`]: each file of a group is one
/// split (a byte range of a file, see [`FileRange`]).
#[derive(Clone)]
pub struct TextFileSource {
    table_schema: TableSchema,
    options: LineOptions,
    batch_size: usize,
    metrics: ExecutionPlanMetricsSet,
    /// The runtime whose object stores serve URLs: the executor's, given
    /// when the scan is decoded there (a file opener is given only the
    /// store of the scan's one `ObjectStoreUrl`, and splits may name
    /// several stores).
    runtime: Option<Arc<RuntimeEnv>>,
}

impl std::fmt::Debug for TextFileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextFileSource")
            .field("options", &self.options)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl TextFileSource {
    /// How the source presents lines.
    pub fn options(&self) -> LineOptions {
        self.options
    }
}

/// `exec` as a file scan with one file group per partition.
pub fn as_file_scan(exec: &TextSourceExec) -> Arc<dyn ExecutionPlan> {
    let mut index = 0;
    let groups = exec
        .splits()
        .iter()
        .map(|ranges| {
            ranges
                .iter()
                .map(|range| {
                    index += 1;
                    split_file(range.clone(), index - 1)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    from_groups(groups, exec.options(), None)
}

/// A file scan over `groups` of (split, number) pairs, reading object
/// stores through `runtime`'s (see [`list_inputs`](super::list_inputs)).
pub fn from_split_groups(
    groups: SplitGroups,
    options: LineOptions,
    runtime: Option<Arc<RuntimeEnv>>,
) -> Arc<dyn ExecutionPlan> {
    let groups = groups
        .into_iter()
        .map(|g| g.into_iter().map(|(r, i)| split_file(r, i)).collect())
        .collect();
    from_groups(groups, options, runtime)
}

fn split_file(range: FileRange, index: usize) -> PartitionedFile {
    let size = range.size;
    PartitionedFile::new(range.path.to_string_lossy().into_owned(), size)
        .with_extension(range)
        .with_extension(SplitIndex(index))
}

fn from_groups(
    groups: Vec<Vec<PartitionedFile>>,
    options: LineOptions,
    runtime: Option<Arc<RuntimeEnv>>,
) -> Arc<dyn ExecutionPlan> {
    let source = TextFileSource {
        table_schema: TableSchema::from(line_schema_with(options)),
        options,
        batch_size: 8192,
        metrics: ExecutionPlanMetricsSet::new(),
        runtime,
    };
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::from).collect())
        .build();
    DataSourceExec::from_data_source(config)
}

/// The split groups of a text file scan (`None` if `plan` is not one), in
/// partition order, each split with its number among all splits.
pub fn text_file_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<(SplitGroups, LineOptions)> {
    let config = plan
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    let source = (config.file_source().as_ref() as &dyn Any).downcast_ref::<TextFileSource>()?;
    let groups = config
        .file_groups
        .iter()
        .map(|g| g.iter().filter_map(split_of).collect())
        .collect();
    Some((groups, source.options))
}

fn split_of(file: &PartitionedFile) -> Option<(FileRange, usize)> {
    let range = file.extensions.get::<FileRange>()?.clone();
    let index = file.extensions.get::<SplitIndex>()?.0;
    Some((range, index))
}

impl FileSource for TextFileSource {
    fn create_file_opener(
        &self,
        _object_store: Arc<dyn ObjectStore>,
        _base_config: &FileScanConfig,
        partition: usize,
    ) -> DfResult<Arc<dyn FileOpener>> {
        Ok(Arc::new(SplitOpener {
            options: self.options,
            batch_size: self.batch_size,
            metrics: self.metrics.clone(),
            partition,
            runtime: self.runtime.clone(),
        }))
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        Arc::new(Self {
            batch_size,
            ..self.clone()
        })
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "text"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn supports_repartitioning(&self) -> bool {
        // The splits are already cut on line ends.
        false
    }
}

/// Opens one split.
struct SplitOpener {
    options: LineOptions,
    batch_size: usize,
    metrics: ExecutionPlanMetricsSet,
    partition: usize,
    runtime: Option<Arc<RuntimeEnv>>,
}

impl FileOpener for SplitOpener {
    fn open(&self, file: PartitionedFile) -> DfResult<FileOpenFuture> {
        let split = split_of(&file).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!(
                "text scan: {} carries no split",
                file.object_meta.location
            ))
        })?;
        let reading = (self.batch_size, None, self.runtime.clone());
        let stream = read_splits(
            vec![split],
            self.options,
            reading,
            &self.metrics,
            self.partition,
        );
        Ok(Box::pin(async move { Ok(stream.boxed()) }))
    }
}
