//! spate's plan nodes: one logical extension node that carries a
//! [`PartitionOp`] (a fused chain of user closures, a partial combiner, a
//! grouped reducer, ...), a leaf node for text input, and their physical
//! counterparts. The physical planner, the optimizer's distribution and sort
//! rules and the codecs all see them as ordinary DataFusion nodes.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{
    Distribution, EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalExpr,
    PhysicalSortRequirement,
};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, Metric, MetricValue, MetricsSet,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;
use spate_io::source::{
    InputFile, LineOptions, TextSourceExec, line_schema_with, plan_splits, plan_whole_files,
};

/// What a [`PartitionOp`] needs of its input's layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InputShape {
    /// Any partitioning, any order: the op runs where the data is.
    Any,
    /// All rows with equal values in `keys` in one partition, sorted by them
    /// (the shuffle-sort in front of a MapReduce reducer).
    GroupedBy {
        /// The key columns.
        keys: Vec<String>,
        /// Sort keys in descending order instead of ascending.
        descending: bool,
        /// A fixed number of partitions (MapReduce's reducer count); `None`:
        /// whatever DataFusion's `target_partitions` gives.
        partitions: Option<usize>,
        /// A column whose value routes each row to its partition (a custom
        /// partitioner's choice, see [`route_values`]); needs `partitions`.
        route: Option<String>,
    },
    /// Everything in one partition.
    Single,
    /// Exactly `partitions` partitions, each row in the one its `route`
    /// value selects (see [`route_values`]), through a hash shuffle (which
    /// Ballista makes a stage boundary; it drops other repartitions).
    /// Order is not kept.
    Spread {
        /// The number of partitions.
        partitions: usize,
        /// The routing column.
        route: String,
    },
}

/// A per-partition operator: the unit spate adds to DataFusion plans.
///
/// An op is identified by its step name; the codecs encode only that name, and
/// every process of a job rebuilds the same ops under the same names.
pub trait PartitionOp: fmt::Debug + Send + Sync + 'static {
    /// The stable step name (unique in a job).
    fn step(&self) -> &str;
    /// What the op is, for EXPLAIN ("map", "partial count", "reduce", ...).
    fn describe(&self) -> String;
    /// The schema of the rows the op produces.
    fn schema(&self) -> SchemaRef;
    /// The layout the op needs of its input.
    fn input_shape(&self) -> InputShape {
        InputShape::Any
    }
    /// Runs the op over one input partition.
    fn run(
        &self,
        input: SendableRecordBatchStream,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream>;
    /// Told, before a partition runs, how many input partitions the op has
    /// (an op that must know when all of them are done, such as a cache's
    /// fill, records it).
    fn input_partitions(&self, _count: usize) {}
    /// Named counts this op's tasks gathered in this process, reported as
    /// the step's metrics: a cluster's executor sends them to the scheduler,
    /// which keeps those of each task's successful attempt.
    fn counts(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// The op as data, for an op whose definition holds no closures: it
    /// travels whole to a cluster's executors, which need not know its
    /// step (an op with closures is found there by its step name).
    fn portable(&self) -> DfResult<Option<crate::codec::PortableOp>> {
        Ok(None)
    }
}

/// Logical node running a [`PartitionOp`] over its input.
#[derive(Debug, Clone)]
pub struct OpNode {
    pub(crate) op: Arc<dyn PartitionOp>,
    pub(crate) input: LogicalPlan,
    pub(crate) schema: DFSchemaRef,
}

impl OpNode {
    /// Wraps `op` over `input` as a logical plan.
    pub fn plan(op: Arc<dyn PartitionOp>, input: LogicalPlan) -> DfResult<LogicalPlan> {
        let schema = Arc::new(DFSchema::try_from(op.schema().as_ref().clone())?);
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(OpNode { op, input, schema }),
        }))
    }

    /// The op.
    pub fn op(&self) -> &Arc<dyn PartitionOp> {
        &self.op
    }
}

impl PartialEq for OpNode {
    fn eq(&self, other: &Self) -> bool {
        self.op.step() == other.op.step() && self.input == other.input
    }
}
impl Eq for OpNode {}
impl Hash for OpNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.op.step().hash(state);
        self.input.hash(state);
    }
}
impl PartialOrd for OpNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.op.step().partial_cmp(other.op.step())
    }
}

impl UserDefinedLogicalNodeCore for OpNode {
    fn name(&self) -> &str {
        "SpateOp"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SpateOp: step={} op={}",
            self.op.step(),
            self.op.describe()
        )
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("SpateOp needs one input".into()))?;
        Ok(Self {
            op: self.op.clone(),
            input,
            schema: self.schema.clone(),
        })
    }
}

/// Logical leaf node reading text files as lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TextScanNode {
    pub(crate) step: String,
    pub(crate) files: Vec<(PathBuf, u64)>,
    pub(crate) options: LineOptions,
    pub(crate) schema: DFSchemaRef,
}

impl TextScanNode {
    /// A scan of `files` (already expanded).
    pub fn plan(step: String, files: &[InputFile]) -> DfResult<LogicalPlan> {
        Self::plan_with(step, files, LineOptions::default())
    }

    /// A scan of `files` presenting lines as `options` say.
    pub fn plan_with(
        step: String,
        files: &[InputFile],
        options: LineOptions,
    ) -> DfResult<LogicalPlan> {
        let schema = Arc::new(DFSchema::try_from(
            line_schema_with(options).as_ref().clone(),
        )?);
        let files = files.iter().map(|f| (f.path.clone(), f.len)).collect();
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(TextScanNode {
                step,
                files,
                options,
                schema,
            }),
        }))
    }

    pub(crate) fn input_files(&self) -> Vec<InputFile> {
        self.files
            .iter()
            .map(|(path, len)| InputFile {
                path: path.clone(),
                len: *len,
            })
            .collect()
    }
}

impl PartialOrd for TextScanNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.step, &self.files, &self.options).partial_cmp(&(
            &other.step,
            &other.files,
            &other.options,
        ))
    }
}

impl UserDefinedLogicalNodeCore for TextScanNode {
    fn name(&self) -> &str {
        "TextScan"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let bytes: u64 = self.files.iter().map(|(_, l)| l).sum();
        write!(
            f,
            "TextScan: step={} files={} bytes={}",
            self.step,
            self.files.len(),
            bytes
        )
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(self.clone())
    }
}

/// Physical node running a [`PartitionOp`].
#[derive(Debug)]
pub struct OpExec {
    op: Arc<dyn PartitionOp>,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Accumulator amounts of this node's successful tasks, by name.
    accumulated: Arc<parking_lot::Mutex<std::collections::BTreeMap<String, i64>>>,
    /// Metric values of this node's successful tasks, as named counts.
    metric_counts: Arc<parking_lot::Mutex<Vec<(String, u64)>>>,
    /// A spreading op as planned, before [`FixedPartitions`] has put its
    /// shuffle in: it claims the width it will have.
    claims_width: bool,
}

impl OpExec {
    /// Runs `op` over `input`.
    pub fn new(op: Arc<dyn PartitionOp>, input: Arc<dyn ExecutionPlan>) -> Self {
        Self::with_claim(op, input, false)
    }

    /// Runs `op` over `input`, as the planner makes it: a spreading op
    /// claims the width `FixedPartitions` will give it, so that
    /// DataFusion's rules, which run before, plan the nodes above for that
    /// width. Once the shuffle is in, its width is its input's (which
    /// Ballista's per-task plans narrow).
    fn planned(op: Arc<dyn PartitionOp>, input: Arc<dyn ExecutionPlan>) -> Self {
        Self::with_claim(op, input, true)
    }

    fn with_claim(
        op: Arc<dyn PartitionOp>,
        input: Arc<dyn ExecutionPlan>,
        claims_width: bool,
    ) -> Self {
        let partitions = match op.input_shape() {
            InputShape::Single => 1,
            InputShape::Spread { partitions, .. } if claims_width => partitions.max(1),
            _ => input.properties().output_partitioning().partition_count(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(op.schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            op,
            input,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            accumulated: Default::default(),
            metric_counts: Default::default(),
            claims_width,
        }
    }

    /// The op.
    pub fn op(&self) -> &Arc<dyn PartitionOp> {
        &self.op
    }

    /// The input plan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    fn key_exprs(&self, keys: &[String]) -> DfResult<Vec<Arc<dyn PhysicalExpr>>> {
        let schema = self.input.schema();
        keys.iter()
            .map(|k| datafusion::physical_expr::expressions::col(k, &schema))
            .collect()
    }
}

impl DisplayAs for OpExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SpateOpExec: step={} op={}",
            self.op.step(),
            self.op.describe()
        )
    }
}

impl ExecutionPlan for OpExec {
    fn name(&self) -> &str {
        "SpateOpExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn required_input_distribution(&self) -> Vec<Distribution> {
        match self.op.input_shape() {
            InputShape::Any => vec![Distribution::UnspecifiedDistribution],
            InputShape::Single => vec![Distribution::SinglePartition],
            InputShape::Spread { .. } => vec![Distribution::UnspecifiedDistribution],
            InputShape::GroupedBy { keys, .. } => match self.key_exprs(&keys) {
                Ok(exprs) => vec![Distribution::KeyPartitioned(exprs)],
                // Unreachable for plans spate builds; planning then fails on ordering.
                Err(_) => vec![Distribution::SinglePartition],
            },
        }
    }
    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        match self.op.input_shape() {
            InputShape::GroupedBy {
                keys, descending, ..
            } => {
                let reqs = self
                    .key_exprs(&keys)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| {
                        PhysicalSortRequirement::new(
                            e,
                            Some(SortOptions {
                                descending,
                                nulls_first: true,
                            }),
                        )
                    });
                vec![LexRequirement::new(reqs).map(OrderingRequirements::new)]
            }
            // Per-row ops keep their input's order within a partition: asking
            // for the order the input already has keeps a sort below a `map`
            // from being dropped as useless, without moving it.
            InputShape::Any => vec![
                self.input
                    .output_ordering()
                    .and_then(|o| {
                        LexRequirement::new(o.iter().cloned().map(PhysicalSortRequirement::from))
                    })
                    .map(OrderingRequirements::new),
            ],
            InputShape::Single | InputShape::Spread { .. } => vec![None],
        }
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        // Ops change the columns, so DataFusion must not push sorts through
        // them by column index (which `true` here would allow).
        vec![false]
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(OpExec::with_claim(
                self.op.clone(),
                input,
                self.claims_width,
            ))),
            _ => Err(DataFusionError::Internal(
                "SpateOpExec takes one child".into(),
            )),
        }
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.op
            .input_partitions(self.input.output_partitioning().partition_count());
        // The task's user code runs in its scope (accumulators, broadcast
        // values): while the op is built and whenever its stream is polled.
        let scope = crate::shared::TaskScope::new(&context, self.op.step());
        let input_ns = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let output = scope.enter(|| {
            let input = self.input.execute(partition, context.clone())?;
            let input: SendableRecordBatchStream = Box::pin(TimedInput {
                inner: input,
                ns: Arc::clone(&input_ns),
            });
            self.op.run(input, partition, context)
        })?;
        // Per-step metrics: rows out, and the time spent producing them
        // less the time spent polling the input (the steps below).
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let schema = output.schema();
        let scoped = Scoped {
            inner: output,
            scope,
            accumulated: self.accumulated.clone(),
            metric_counts: self.metric_counts.clone(),
            elapsed: metrics.elapsed_compute().clone(),
            input_ns,
        };
        let counted = scoped.map(move |batch| {
            let batch = batch?;
            metrics.record_output(batch.num_rows());
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        let mut set = self.metrics.clone_inner();
        let accumulated = crate::shared::as_counts(&self.accumulated.lock());
        let metric_counts = self.metric_counts.lock().clone();
        for (name, value) in self
            .op
            .counts()
            .into_iter()
            .chain(accumulated)
            .chain(metric_counts)
        {
            let count = Count::new();
            count.add(value as usize);
            let value = MetricValue::Count {
                name: name.into(),
                count,
            };
            // The task's first partition: the scheduler files it under
            // the task, and a retried task's replaces it.
            set.push(Arc::new(Metric::new(value, Some(0))));
        }
        Some(set)
    }
}

/// An op's output stream polled inside its task's scope; the task's
/// accumulator additions count when the stream ends without error.
struct Scoped {
    inner: SendableRecordBatchStream,
    scope: Arc<crate::shared::TaskScope>,
    accumulated: Arc<parking_lot::Mutex<std::collections::BTreeMap<String, i64>>>,
    metric_counts: Arc<parking_lot::Mutex<Vec<(String, u64)>>>,
    /// The step's own compute time.
    elapsed: datafusion::physical_plan::metrics::Time,
    /// Nanoseconds spent polling the step's input ([`TimedInput`]).
    input_ns: Arc<std::sync::atomic::AtomicU64>,
}

/// A step's input, timing its polls: the step's own time is its polls'
/// time less its input's.
struct TimedInput {
    inner: SendableRecordBatchStream,
    ns: Arc<std::sync::atomic::AtomicU64>,
}

impl futures::Stream for TimedInput {
    type Item = DfResult<arrow::record_batch::RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let start = std::time::Instant::now();
        let polled = self.inner.poll_next_unpin(cx);
        let spent = start.elapsed().as_nanos() as u64;
        self.ns
            .fetch_add(spent, std::sync::atomic::Ordering::Relaxed);
        polled
    }
}

impl datafusion::physical_plan::RecordBatchStream for TimedInput {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl futures::Stream for Scoped {
    type Item = DfResult<arrow::record_batch::RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let before = this.input_ns.load(std::sync::atomic::Ordering::Relaxed);
        let start = std::time::Instant::now();
        let polled = this.scope.enter(|| this.inner.poll_next_unpin(cx));
        let spent = start.elapsed().as_nanos() as u64;
        let below = this
            .input_ns
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(before);
        this.elapsed
            .add_duration(std::time::Duration::from_nanos(spent.saturating_sub(below)));
        if let std::task::Poll::Ready(None) = polled {
            this.scope.commit(&this.accumulated, &this.metric_counts);
        }
        polled
    }
}

/// Plans spate's logical nodes into their physical nodes.
#[derive(Debug, Default)]
pub struct SpateExtensionPlanner;

#[async_trait]
impl ExtensionPlanner for SpateExtensionPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(n) = node.as_any().downcast_ref::<OpNode>() {
            let input = physical_inputs
                .first()
                .ok_or_else(|| DataFusionError::Internal("SpateOp needs one input".into()))?;
            return Ok(Some(Arc::new(OpExec::planned(n.op.clone(), input.clone()))));
        }
        if let Some(n) = node.as_any().downcast_ref::<TextScanNode>() {
            let partitions = session.config().target_partitions();
            let files = n.input_files();
            let splits = if n.options.whole_files {
                plan_whole_files(&files, partitions)?
            } else {
                plan_splits(&files, partitions)?
            };
            return Ok(Some(Arc::new(TextSourceExec::with_options(
                splits, n.options,
            ))));
        }
        Ok(None)
    }
}

/// Hash-partitions `input` on `keys` into exactly `count` partitions and sorts
/// each partition by the keys: the shuffle-sort in front of `count` reducers.
fn shuffle_sort(
    input: Arc<dyn ExecutionPlan>,
    keys: &[String],
    route: Option<&str>,
    descending: bool,
    count: usize,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let exprs = keys
        .iter()
        .map(|k| datafusion::physical_expr::expressions::col(k, &schema))
        .collect::<DfResult<Vec<_>>>()?;
    let shuffle_on = match route {
        Some(column) => vec![datafusion::physical_expr::expressions::col(
            column, &schema,
        )?],
        None => exprs.clone(),
    };
    let shuffled = Arc::new(RepartitionExec::try_new(
        input,
        Partitioning::Hash(shuffle_on, count.max(1)),
    )?);
    let options = SortOptions {
        descending,
        nulls_first: true,
    };
    let ordering =
        LexOrdering::new(exprs.into_iter().map(|e| PhysicalSortExpr::new(e, options)))
            .ok_or_else(|| DataFusionError::Internal("grouping without key columns".into()))?;
    Ok(Arc::new(
        SortExec::new(ordering, shuffled).with_preserve_partitioning(true),
    ))
}

/// For each partition `p` in `0..count`, a `u64` whose hash sends a row to
/// partition `p` of a `count`-wide hash shuffle. A custom partitioner's choice
/// is written as this value into a routing column, so the shuffle stays an
/// ordinary hash `RepartitionExec` (which Ballista turns into a stage).
pub fn route_values(count: usize) -> DfResult<Vec<u64>> {
    use datafusion::common::hash_utils::create_hashes;
    use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;
    let count = count.max(1);
    let mut found: Vec<Option<u64>> = vec![None; count];
    let mut missing = count;
    let mut candidate = 0u64;
    while missing > 0 {
        let values: Vec<u64> = (candidate..candidate + 1024).collect();
        let array: arrow::array::ArrayRef =
            Arc::new(arrow::array::UInt64Array::from(values.clone()));
        let mut hashes = vec![0u64; values.len()];
        create_hashes(
            [&array],
            REPARTITION_RANDOM_STATE.random_state(),
            &mut hashes,
        )?;
        for (v, h) in values.iter().zip(&hashes) {
            let slot = (*h % count as u64) as usize;
            if found[slot].is_none() {
                found[slot] = Some(*v);
                missing -= 1;
            }
        }
        candidate += 1024;
        if candidate > (1 << 32) {
            return Err(DataFusionError::Internal(format!(
                "no routing values for {count} partitions"
            )));
        }
    }
    Ok(found.into_iter().flatten().collect())
}

/// Gives grouping ops with a fixed partition count (MapReduce's
/// `num_reducers`) exactly that many partitions. DataFusion's
/// `EnforceDistribution` shuffles to `target_partitions`; this rule, run after
/// it, replaces that shuffle (and the sort on top) with one of the requested
/// width. The shuffle stays a `RepartitionExec`, so Ballista still cuts a
/// stage there.
#[derive(Debug, Default)]
pub struct FixedPartitions;

impl PhysicalOptimizerRule for FixedPartitions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<OpExec>() else {
                return Ok(Transformed::no(node));
            };
            if let InputShape::Spread { partitions, route } = exec.op().input_shape() {
                return Ok(match spread(exec, partitions, &route)? {
                    Some(plan) => Transformed::yes(plan),
                    None => Transformed::no(node),
                });
            }
            let InputShape::GroupedBy {
                keys,
                descending,
                partitions: Some(count),
                route,
            } = exec.op().input_shape()
            else {
                return Ok(Transformed::no(node));
            };
            if route.is_none() && exec.input().output_partitioning().partition_count() == count {
                return Ok(Transformed::no(node));
            }
            let mut base = exec.input().clone();
            if let Some(sort) = base.downcast_ref::<SortExec>() {
                base = sort.input().clone();
            }
            if let Some(shuffle) = base.downcast_ref::<RepartitionExec>()
                && matches!(shuffle.partitioning(), Partitioning::Hash(..))
            {
                base = shuffle.input().clone();
            }
            let input = shuffle_sort(base, &keys, route.as_deref(), descending, count)?;
            Ok(Transformed::yes(
                Arc::new(OpExec::new(exec.op().clone(), input)) as Arc<dyn ExecutionPlan>,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spate_fixed_partitions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Gives a spreading op its input dealt into exactly `count` partitions
/// (replacing a repartition DataFusion put there, or one this rule put
/// there before).
fn spread(exec: &OpExec, count: usize, route: &str) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let count = count.max(1);
    let schema = exec.input().schema();
    let partitioning = Partitioning::Hash(
        vec![datafusion::physical_expr::expressions::col(route, &schema)?],
        count,
    );
    let mut base = exec.input().clone();
    if let Some(shuffle) = base.downcast_ref::<RepartitionExec>() {
        if shuffle.partitioning() == &partitioning {
            if !exec.claims_width {
                return Ok(None);
            }
            return Ok(Some(Arc::new(OpExec::new(exec.op().clone(), base))));
        }
        base = shuffle.input().clone();
    }
    let input = Arc::new(RepartitionExec::try_new(base, partitioning)?);
    Ok(Some(Arc::new(OpExec::new(exec.op().clone(), input))))
}

/// The query planner spate installs in every session.
#[derive(Debug, Default)]
pub struct SpateQueryPlanner;

#[async_trait]
impl QueryPlanner for SpateQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SpateExtensionPlanner)]);
        let plan = planner.create_physical_plan(logical_plan, session).await?;
        if let Some(log) = session.config().get_extension::<crate::graph::PlanLog>() {
            log.record(Arc::clone(&plan));
        }
        Ok(plan)
    }
}
