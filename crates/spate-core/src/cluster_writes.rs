//! Writes on a cluster, one directory per task attempt (the protocol is in
//! `spate_io::output`'s `attempts` module). A physical rule of the
//! scheduler's session ([`WritesByAttempt`]) wraps each of DataFusion's
//! file writers (a `DataSinkExec` with a Parquet, CSV or JSON sink) in an
//! [`AttemptWriteExec`]. Spate's codec encodes the wrapper as a bare mark
//! (the writer below it encodes as usual). On the executor each execution
//! of the wrapper — each attempt — aims the writer at a directory of its
//! own and, once every file is closed, writes the attempt's completion
//! marker; the driver keeps one complete attempt after the job.
//!
//! DataFusion 55 gives no way to build a sink with another target from an
//! existing one (a Parquet sink's options are private), so the attempt's
//! writer comes from the writer's own plan encoding with its target path
//! changed — the encoding every executor already decodes it from.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_proto::physical_plan::{AsExecutionPlan, DefaultPhysicalExtensionCodec};
use datafusion_proto::protobuf::PhysicalPlanNode;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

/// A file writer whose every execution writes into its own attempt
/// directory and marks it complete at the end.
#[derive(Debug)]
pub struct AttemptWriteExec {
    sink: Arc<dyn ExecutionPlan>,
}

impl AttemptWriteExec {
    /// Wraps `sink`, a `DataSinkExec` with a Parquet, CSV or JSON sink.
    pub fn new(sink: Arc<dyn ExecutionPlan>) -> DfResult<Self> {
        if !is_file_writer(&sink) {
            return Err(DataFusionError::Internal(format!(
                "spate: an attempt write wraps a file writer, not {}",
                sink.name()
            )));
        }
        Ok(Self { sink })
    }
}

/// Is `plan` one of DataFusion's file writers (which encode with their
/// target path)?
fn is_file_writer(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let Some(exec) = plan.downcast_ref::<DataSinkExec>() else {
        return false;
    };
    let sink: &dyn std::any::Any = exec.sink();
    sink.is::<ParquetSink>() || sink.is::<CsvSink>() || sink.is::<JsonSink>()
}

/// The writer aimed at attempt `id`'s directory, and where its marker goes.
fn aim_at_attempt(
    sink: &Arc<dyn ExecutionPlan>,
    id: &str,
    ctx: &TaskContext,
) -> DfResult<(Arc<dyn ExecutionPlan>, ObjectStoreUrl, String)> {
    let input = sink
        .children()
        .first()
        .map(|c| Arc::clone(c))
        .ok_or_else(|| DataFusionError::Internal("a file writer without input".into()))?;
    // The writer alone (its input is put back after decoding).
    let bare = replace_children_if_necessary(
        Arc::clone(sink),
        vec![Arc::new(EmptyExec::new(input.schema()))],
    )?;
    let codec = DefaultPhysicalExtensionCodec {};
    let mut node = PhysicalPlanNode::try_from_physical_plan(bare, &codec)?;
    let config = match node.physical_plan_type.as_mut() {
        Some(PhysicalPlanType::ParquetSink(n)) => n.sink.as_mut().and_then(|s| s.config.as_mut()),
        Some(PhysicalPlanType::CsvSink(n)) => n.sink.as_mut().and_then(|s| s.config.as_mut()),
        Some(PhysicalPlanType::JsonSink(n)) => n.sink.as_mut().and_then(|s| s.config.as_mut()),
        _ => None,
    }
    .ok_or_else(|| DataFusionError::Internal("a file writer encoded without its target".into()))?;
    let target =
        config.table_paths.first().cloned().ok_or_else(|| {
            DataFusionError::Internal("a file writer without a target path".into())
        })?;
    let urls = spate_io::output::attempt_urls(&target, id);
    config.table_paths = vec![urls.write];
    let store_url = ObjectStoreUrl::parse(&config.object_store_url)?;
    let aimed =
        replace_children_if_necessary(node.try_into_physical_plan(ctx, &codec)?, vec![input])?;
    Ok((aimed, store_url, urls.done))
}

impl DisplayAs for AttemptWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttemptWriteExec")
    }
}

impl ExecutionPlan for AttemptWriteExec {
    fn name(&self) -> &str {
        "AttemptWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.sink.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.sink]
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
        let sink = children.pop().ok_or_else(|| {
            DataFusionError::Internal("AttemptWriteExec without its writer".into())
        })?;
        Ok(Arc::new(Self::new(sink)?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (aimed, store_url, done) = aim_at_attempt(&self.sink, &id, &context)?;
        let store = context.runtime_env().object_store(&store_url)?;
        let marker = ListingTableUrl::parse(&done)?.prefix().clone();
        let stream = aimed.execute(partition, context)?;
        let schema = stream.schema();
        // The writer's one row (its count) passes on only after the marker
        // is written: an attempt that reports success is complete.
        let finished = async move {
            let batches: Vec<_> = stream.try_collect().await?;
            let rows = spate_io::output::written_rows(&batches);
            store
                .put(&marker, rows.to_string().into())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(finished).try_flatten().boxed(),
        )))
    }
}

/// The scheduler's physical rule that puts every file writer in an
/// [`AttemptWriteExec`].
#[derive(Debug, Default)]
pub struct WritesByAttempt;

impl PhysicalOptimizerRule for WritesByAttempt {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            if node.downcast_ref::<AttemptWriteExec>().is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            if !is_file_writer(&node) {
                return Ok(Transformed::no(node));
            }
            let wrapped: Arc<dyn ExecutionPlan> = Arc::new(AttemptWriteExec::new(node)?);
            Ok(Transformed::new(wrapped, true, TreeNodeRecursion::Jump))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spate_writes_by_attempt"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
