//! Actions: the operations that run a dataset's job (`count`, `collect`,
//! `explain_analyze`, `write_*`) and return its results.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use spate_io::format::FileFormat;

use crate::error::{Result, from_df};
use crate::ops::indexed::{PosFn, Position};
use crate::ops::pull::{ForEachPartitionOp, PartitionFn, PartitionRows};
use crate::rows::{Data, RowCodec};

use super::{Dataset, WriteSummary, col};

impl<T: Data> Dataset<T> {
    /// Runs the job and returns the number of elements.
    pub fn count(self) -> Result<u64> {
        let ctx = self.ctx.clone();
        let plan = (self.into_plan())()?;
        let counted = LogicalPlanBuilder::from(plan)
            .aggregate(
                Vec::<Expr>::new(),
                vec![datafusion::functions_aggregate::expr_fn::count(lit(1)).alias("value")],
            )?
            .project(vec![cast(col("value"), DataType::UInt64).alias("value")])?
            .build()?;
        let rows: Vec<u64> = ctx
            .dataset::<u64>(Arc::new(move || Ok(counted.clone())))
            .collect()?;
        Ok(rows.into_iter().sum())
    }

    /// [`Dataset::count`] from async code (see [`crate::Context::unblock`]).
    pub async fn count_async(self) -> Result<u64> {
        crate::Context::unblock(move || self.count()).await
    }

    /// [`Dataset::collect`] from async code (see [`crate::Context::unblock`]).
    pub async fn collect_async(self) -> Result<Vec<T>> {
        crate::Context::unblock(move || self.collect()).await
    }

    /// [`Dataset::write_text`] from async code (see
    /// [`crate::Context::unblock`]).
    pub async fn write_text_async(self, dir: impl AsRef<Path>) -> Result<WriteSummary> {
        let dir = dir.as_ref().to_path_buf();
        crate::Context::unblock(move || self.write_text(dir)).await
    }

    /// The first `n` elements: partition 0's first, then partition 1's, ...
    /// (Spark's `take`). Each partition stops reading once it has `n`, so
    /// `read_text(..).take(10)` reads a few batches, not the whole input,
    /// and gives the first lines of the first file.
    pub fn take(self, n: usize) -> Result<Vec<T>> {
        let each: PosFn<T, (u64, u64, T)> =
            Arc::new(|pos: &mut Position, t: T, out: &mut Vec<(u64, u64, T)>| {
                out.push((pos.partition, pos.seq, t))
            });
        let limit = n as u64;
        let mut rows = self
            .positioned("take", &format!("take {n}"), each, None, Some(limit), 0)
            .collect()?;
        rows.sort_unstable_by_key(|(p, s, _)| (*p, *s));
        Ok(rows.into_iter().take(n).map(|(_, _, t)| t).collect())
    }

    /// The first element, if any (see [`take`](Self::take)).
    pub fn first(self) -> Result<Option<T>> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// Runs `f` on every element, for its effects (Spark's `foreach`). `f`
    /// runs on the engine's threads, in parallel; on a cluster, on the
    /// executors.
    pub fn foreach(self, f: impl Fn(T) + Send + Sync + 'static) -> Result<()> {
        let f = Arc::new(f);
        self.push_stage("foreach", move |prev, step| {
            let f = f.clone();
            crate::ops::chain::stateless(prev, step, move |t, _out: &mut Vec<u8>| f(t))
        })
        .count()
        .map(|_| ())
    }

    /// Runs `f` once per partition with an iterator over its elements
    /// (Spark's `foreachPartition`): one connection or file per partition
    /// rather than per element. An input error ends the iterator early and
    /// fails the job after `f` returns.
    pub fn foreach_partition(
        self,
        f: impl Fn(&mut PartitionRows<T>) + Send + Sync + 'static,
    ) -> Result<()> {
        let name = self.ctx.step_name("foreach_partition");
        let (ctx, base, chain, steps) = self.into_chain(&name);
        let f: PartitionFn<T> = Arc::new(f);
        let ctx2 = ctx.clone();
        ctx.dataset::<u8>(Arc::new(move || {
            let op = ForEachPartitionOp::new(
                name.clone(),
                super::describe("for each partition", &steps),
                chain()?,
                f.clone(),
            )?;
            ctx2.op_plan(Arc::new(op), base()?)
        }))
        .count()
        .map(|_| ())
    }

    /// Runs the job and returns every element.
    pub fn collect(self) -> Result<Vec<T>> {
        let batches = self.collect_batches()?;
        let codec = RowCodec::<T>::new()?;
        let mut out = Vec::new();
        for b in &batches {
            out.extend(codec.decode(b)?);
        }
        Ok(out)
    }

    /// Runs the job and returns its Arrow batches (partitions in order).
    pub fn collect_batches(self) -> Result<Vec<RecordBatch>> {
        let ctx = self.ctx.clone();
        if ctx.is_declaring() {
            (self.into_plan())()?;
            return Ok(Vec::new());
        }
        // Marked once the logical plan is built: building it may run side
        // jobs, which gather their own counts.
        let logical = (self.into_plan())()?;
        let mark = ctx.cluster_jobs().mark();
        let physical = physical_of(&ctx, logical)?;
        let batches = ctx
            .block_on(async {
                let task = ctx.session().task_ctx();
                datafusion::physical_plan::collect(physical, task).await
            })
            .map_err(from_df)?;
        ctx.gather_accumulators(mark);
        Ok(batches)
    }

    /// The optimized physical plan.
    pub fn physical_plan(self) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = self.ctx.clone();
        let plan = (self.into_plan())()?;
        physical_of(&ctx, plan)
    }

    /// The plan as text: the logical plan DataFusion optimized and the physical
    /// plan that runs, each node labelled with its step name.
    pub fn explain(&self) -> Result<String> {
        let ctx = self.ctx.clone();
        let plan = self.logical_plan()?;
        let state = ctx.session().state();
        let optimized = state.optimize(&plan).map_err(from_df)?;
        let physical = ctx
            .block_on(state.create_physical_plan(&optimized))
            .map_err(from_df)?;
        Ok(format!(
            "== Logical plan ==\n{}\n\n== Physical plan ==\n{}",
            optimized.display_indent(),
            displayable(physical.as_ref()).indent(false)
        ))
    }

    /// Runs the job (discarding its output) and returns the physical plan
    /// annotated with per-step metrics: rows produced, compute time, spills.
    pub fn explain_analyze(self) -> Result<String> {
        let ctx = self.ctx.clone();
        if ctx.is_declaring() {
            (self.into_plan())()?;
            return Ok(String::new());
        }
        // Marked once the logical plan is built: building it may run side
        // jobs, which gather their own counts.
        let logical = (self.into_plan())()?;
        let mark = ctx.cluster_jobs().mark();
        let physical = physical_of(&ctx, logical)?;
        ctx.block_on(async {
            let task = ctx.session().task_ctx();
            datafusion::physical_plan::collect(physical.clone(), task).await
        })
        .map_err(from_df)?;
        ctx.gather_accumulators(mark);
        Ok(format!(
            "== Physical plan with metrics ==\n{}",
            datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                physical.as_ref()
            )
            .indent(false)
        ))
    }

    /// Writes the elements as text lines into `dir` (`part-00000`, ...):
    /// `(key, value)` pairs as `key<TAB>value`. The directory appears complete
    /// with a `_SUCCESS` marker, or not at all.
    pub fn write_text(self, dir: impl AsRef<Path>) -> Result<WriteSummary> {
        self.write(dir.as_ref(), FileFormat::Text)
    }

    /// Writes the elements as JSON lines into `dir` (`part-00000.jsonl`, ...).
    pub fn write_jsonl(self, dir: impl AsRef<Path>) -> Result<WriteSummary> {
        self.write(dir.as_ref(), FileFormat::Json)
    }

    /// Writes text lines into `dir` up to, not including, publishing it
    /// (see [`spate_io::output::StagedWrite`]); `None` when the context
    /// only declares its steps.
    pub fn stage_text(
        self,
        dir: impl AsRef<Path>,
    ) -> Result<Option<spate_io::output::StagedWrite>> {
        let ctx = self.ctx.clone();
        if ctx.is_declaring() {
            (self.into_plan())()?;
            return Ok(None);
        }
        // Marked once the logical plan is built: building it may run side
        // jobs, which gather their own counts.
        let logical = (self.into_plan())()?;
        let mark = ctx.cluster_jobs().mark();
        let physical = physical_of(&ctx, logical)?;
        let task = ctx.session().task_ctx();
        let staged = ctx.block_on(spate_io::output::stage_parts(
            physical,
            task,
            dir.as_ref(),
            FileFormat::Text,
        ))?;
        ctx.gather_accumulators(mark);
        Ok(Some(staged))
    }

    fn write(self, dir: &Path, format: FileFormat) -> Result<WriteSummary> {
        let ctx = self.ctx.clone();
        if ctx.is_declaring() {
            (self.into_plan())()?;
            return Ok(WriteSummary::not_written(dir.to_path_buf()));
        }
        // Marked once the logical plan is built: building it may run side
        // jobs, which gather their own counts.
        let logical = (self.into_plan())()?;
        let mark = ctx.cluster_jobs().mark();
        let physical = physical_of(&ctx, logical)?;
        let task = ctx.session().task_ctx();
        let written = ctx.block_on(spate_io::output::write_parts(physical, task, dir, format))?;
        ctx.gather_accumulators(mark);
        Ok(written)
    }
}

/// `plan` optimized and planned physically in `ctx`'s session.
fn physical_of(
    ctx: &crate::Context,
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<Arc<dyn ExecutionPlan>> {
    ctx.block_on(async {
        let state = ctx.session().state();
        let optimized = state.optimize(&plan)?;
        state.create_physical_plan(&optimized).await
    })
    .map_err(from_df)
}
