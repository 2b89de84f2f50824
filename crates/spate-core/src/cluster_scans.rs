//! What the scheduler changes in scans, so that executors read exactly what
//! a local run reads. Both are physical rules of the scheduler's session
//! (see `cluster::with_spate_planner`), applied last.
//!
//! - Text sources become file scans ([`TextScansAsFileScans`]): Ballista
//!   narrows a stage's plan to a task's partitions only for the leaves it
//!   knows, and runs every partition of any other; a text source left as it
//!   is would be read whole by every task of its stage (each line counted
//!   once per task). See `spate_io::source::as_file_scan`.
//! - Compressed CSV and JSON scans keep their compression
//!   ([`KeepScanCompression`]). DataFusion 55's plan encoding drops it
//!   (`CsvSource::try_from_proto`: "the compression type is not on the
//!   wire"), so an executor would read a `.csv.gz` table as plain text. Each
//!   compressed scan is wrapped in a [`CompressedScanExec`]; spate's codec
//!   encodes the wrapper as the compression alone (its child, the scan,
//!   encodes as usual) and decodes it as the scan with its compression back.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use spate_io::source::{TextSourceExec, as_file_scan};

/// A compressed file scan, marked so its compression survives encoding.
#[derive(Debug)]
pub struct CompressedScanExec {
    scan: Arc<dyn ExecutionPlan>,
    compression: FileCompressionType,
}

impl CompressedScanExec {
    /// The compression, as DataFusion names it (`GZIP`, `ZSTD`, ...).
    pub fn compression_name(&self) -> String {
        self.compression.get_variant().to_string()
    }

    /// `scan` (decoded without its compression) with `compression` put back.
    pub fn restore(
        scan: Arc<dyn ExecutionPlan>,
        compression: &str,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let variant = compression.parse::<CompressionTypeVariant>().map_err(|e| {
            DataFusionError::Internal(format!("spate codec: compression '{compression}': {e}"))
        })?;
        let config = file_scan(&scan).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "spate codec: a compressed scan's child is {}, not a file scan",
                scan.name()
            ))
        })?;
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_compression_type(FileCompressionType::from(variant))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

fn file_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
}

impl DisplayAs for CompressedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompressedScanExec: {}", self.compression_name())
    }
}

impl ExecutionPlan for CompressedScanExec {
    fn name(&self) -> &str {
        "CompressedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.scan.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.scan]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan = children.pop().ok_or_else(|| {
            DataFusionError::Internal("CompressedScanExec without its scan".into())
        })?;
        Ok(Arc::new(Self {
            scan,
            compression: self.compression,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.scan.execute(partition, context)
    }
}

/// The scheduler's last physical rule: marks compressed file scans.
#[derive(Debug, Default)]
pub struct KeepScanCompression;

impl PhysicalOptimizerRule for KeepScanCompression {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let compression = match file_scan(&node) {
                Some(c) if c.file_compression_type.is_compressed() => c.file_compression_type,
                _ => return Ok(Transformed::no(node)),
            };
            Ok(Transformed::yes(Arc::new(CompressedScanExec {
                scan: node,
                compression,
            }) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spate_keep_scan_compression"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The scheduler's rule that plans text sources as file scans.
#[derive(Debug, Default)]
pub struct TextScansAsFileScans;

impl PhysicalOptimizerRule for TextScansAsFileScans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match node.downcast_ref::<TextSourceExec>() {
            Some(text) => Ok(Transformed::yes(as_file_scan(text))),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spate_text_scans_as_file_scans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
