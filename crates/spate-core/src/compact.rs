//! Compacting an aggregate's output before it is sorted.
//!
//! DataFusion's hash aggregates build their whole output as one batch and
//! hand it on in `batch_size` slices, each still holding the whole output's
//! buffers. A sort sizes each slice it buffers by those buffers (~150 MB per
//! 8 192-row slice for 12 M words), so its run coalescing (sorting runs of
//! up to `sort_in_place_threshold_bytes` instead of one run per batch) never
//! happens, and it merges one run per slice: ~730 runs per partition for 12
//! M distinct words, where the loser tree's comparisons were ~35 % of the
//! whole word count. [`CompactBeforeSort`] puts a [`CompactExec`] between
//! such a sort and the aggregate; it copies each column that is a slice of
//! far larger buffers into buffers of its own, so the sort sees the batch's
//! true size and merges a few large runs. Columns that are already compact
//! pass through untouched. The same plan serves the Dataset face's
//! `count_by_value().sort_by_key()` and SQL's `GROUP BY k ORDER BY k`.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, MutableArrayData, RecordBatch, RecordBatchOptions, make_array};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// A column is copied when its buffers hold more than this many times the
/// bytes its rows use (and at least [`MIN_WASTE`] bytes more).
const WASTE_FACTOR: usize = 2;
/// Below this many wasted bytes a slice is not worth a copy.
const MIN_WASTE: usize = 64 << 10;

/// Passes its input through, copying each column that is a slice of much
/// larger buffers into compact ones (same rows, same order, same
/// partitioning).
#[derive(Debug)]
pub struct CompactExec {
    input: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
}

impl CompactExec {
    /// Compacts `input`'s batches.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The plan whose batches this compacts.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for CompactExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactExec")
    }
}

impl ExecutionPlan for CompactExec {
    fn name(&self) -> &str {
        "CompactExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
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
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("CompactExec without its input".into()))?;
        Ok(Arc::new(Self::new(input)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let compacted = MetricBuilder::new(&self.metrics).counter("compacted_batches", partition);
        let stream = input.map(move |batch| {
            let batch = batch?;
            let _timer = baseline.elapsed_compute().timer();
            let batch = compact(batch, &compacted)?;
            baseline.record_output(batch.num_rows());
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `batch`, each of its columns that is a slice of much larger buffers
/// copied into buffers of its own.
fn compact(batch: RecordBatch, compacted: &Count) -> DfResult<RecordBatch> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut copied = false;
    for column in batch.columns() {
        let data = column.to_data();
        let held = column.get_buffer_memory_size();
        let used = data.get_slice_memory_size()?;
        if held <= used.saturating_mul(WASTE_FACTOR) || held - used < MIN_WASTE {
            columns.push(Arc::clone(column));
            continue;
        }
        // `MutableArrayData` copies a slice's rows (offsets rebased) for
        // every type; arrow's `concat` and `BatchCoalescer` hand a lone
        // slice of a string column back as it is.
        let mut copy = MutableArrayData::new(vec![&data], false, data.len());
        copy.try_extend(0, 0, data.len())?;
        columns.push(make_array(copy.freeze()));
        copied = true;
    }
    if !copied {
        return Ok(batch);
    }
    compacted.add(1);
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// Puts a [`CompactExec`] under every full sort (no `LIMIT`) of an
/// aggregate's output, through any projections in between (SQL's
/// `SELECT k, count(*) AS n ... GROUP BY k ORDER BY k`). Run last: it changes
/// no partitioning or ordering.
#[derive(Debug, Default)]
pub struct CompactBeforeSort;

impl PhysicalOptimizerRule for CompactBeforeSort {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            if sort.fetch().is_some() || !sorts_aggregate(sort.input()) {
                return Ok(Transformed::no(node));
            }
            let input = Arc::new(CompactExec::new(Arc::clone(sort.input())));
            let sort = SortExec::new(sort.expr().clone(), input)
                .with_preserve_partitioning(sort.preserve_partitioning());
            Ok(Transformed::yes(Arc::new(sort) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spate_compact_before_sort"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `plan` is an aggregate, or projections of one.
fn sorts_aggregate(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut plan = plan;
    loop {
        if plan.downcast_ref::<AggregateExec>().is_some() {
            return true;
        }
        match plan.downcast_ref::<ProjectionExec>() {
            Some(p) => plan = p.input(),
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::{collect, displayable};

    fn words(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("w", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let w = StringArray::from_iter_values((0..n).map(|i| format!("word{i:08}")));
        let c = Int64Array::from_iter_values((0..n as i64).map(|i| i % 7));
        RecordBatch::try_new(schema, vec![Arc::new(w), Arc::new(c)]).unwrap_or_else(|e| fail(e))
    }

    #[test]
    fn a_small_slice_of_a_large_batch_is_copied_and_unchanged() -> DfResult<()> {
        let whole = words(100_000);
        let slice = whole.slice(50_000, 8192);
        let count = Count::new();
        let out = compact(slice.clone(), &count)?;
        assert_eq!(out, slice);
        assert_eq!(count.value(), 1);
        let held: usize = out
            .columns()
            .iter()
            .map(|c| c.get_buffer_memory_size())
            .sum();
        let before: usize = slice
            .columns()
            .iter()
            .map(|c| c.get_buffer_memory_size())
            .sum();
        assert!(
            held * 10 < before,
            "{held} bytes held after, {before} before"
        );
        Ok(())
    }

    #[test]
    fn a_compact_batch_passes_through() -> DfResult<()> {
        let whole = words(8192);
        let count = Count::new();
        let out = compact(whole.clone(), &count)?;
        assert_eq!(out, whole);
        assert_eq!(count.value(), 0);
        // A slice that is most of its buffers is not worth copying.
        let out = compact(whole.slice(100, 8000), &count)?;
        assert_eq!(out, whole.slice(100, 8000));
        assert_eq!(count.value(), 0);
        Ok(())
    }

    fn fail(e: impl std::fmt::Display) -> ! {
        std::panic::panic_any(e.to_string())
    }

    /// How many batches the plan's `CompactExec`s copied.
    fn copied(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let own = plan
            .downcast_ref::<CompactExec>()
            .and_then(|c| c.metrics())
            .and_then(|m| m.sum_by_name("compacted_batches"))
            .map_or(0, |v| v.as_usize());
        own + plan.children().into_iter().map(copied).sum::<usize>()
    }

    /// The plan of `sql`, as text, its rows as (word, count), and how many
    /// batches it compacted.
    fn run(ctx: &crate::context::Context, sql: &str) -> (String, Vec<(String, i64)>, usize) {
        ctx.block_on(async {
            let frame = ctx.session().sql(sql).await.unwrap_or_else(|e| fail(e));
            let plan = frame
                .create_physical_plan()
                .await
                .unwrap_or_else(|e| fail(e));
            let text = displayable(plan.as_ref()).indent(false).to_string();
            let batches = collect(Arc::clone(&plan), ctx.session().task_ctx())
                .await
                .unwrap_or_else(|e| fail(e));
            let mut rows = Vec::new();
            for b in &batches {
                let w = b.column(0).as_string::<i32>();
                let n = b.column(1).as_primitive::<Int64Type>();
                rows.extend((0..b.num_rows()).map(|i| (w.value(i).to_string(), n.value(i))));
            }
            (text, rows, copied(&plan))
        })
    }

    #[test]
    fn a_sorted_aggregate_is_compacted_and_exact() {
        let ctx = crate::context::Context::builder()
            .threads(2)
            .batch_size(512)
            .build()
            .unwrap_or_else(|e| fail(e));
        // 40 000 distinct words, word i seen i % 5 + 1 times, in two
        // partitions: each partition's aggregate output (~500 KB) is handed
        // on in 512-row slices of it.
        let all = words(40_000);
        let mut parts = vec![Vec::new(), Vec::new()];
        for times in 0..5 {
            let keep: Vec<u32> = (0..40_000u32)
                .filter(|i| (i % 5) as usize >= times)
                .collect();
            let rows =
                arrow::compute::take_record_batch(&all, &arrow::array::UInt32Array::from(keep))
                    .unwrap_or_else(|e| fail(e));
            parts[times % 2].push(rows);
        }
        let table = MemTable::try_new(all.schema(), parts).unwrap_or_else(|e| fail(e));
        ctx.session()
            .register_table("t", Arc::new(table))
            .unwrap_or_else(|e| fail(e));
        let (plan, rows, copied) =
            run(&ctx, "SELECT w, count(*) AS n FROM t GROUP BY w ORDER BY w");
        assert!(plan.contains("CompactExec"), "{plan}");
        assert!(copied > 0, "no slice was compacted: {plan}");
        let want: Vec<(String, i64)> = (0..40_000)
            .map(|i| (format!("word{i:08}"), i % 5 + 1))
            .collect();
        assert_eq!(rows, want);
        let (plan, rows, _) = run(
            &ctx,
            "SELECT w, count(*) AS n FROM t GROUP BY w ORDER BY n DESC, w LIMIT 3",
        );
        assert!(
            !plan.contains("CompactExec"),
            "a top-k keeps no slices: {plan}"
        );
        assert_eq!(
            rows,
            vec![
                ("word00000004".to_string(), 5),
                ("word00000009".to_string(), 5),
                ("word00000014".to_string(), 5)
            ]
        );
    }
}
