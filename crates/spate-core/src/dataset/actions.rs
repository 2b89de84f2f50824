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
        let physical = self.physical_plan()?;
        ctx.block_on(async {
            let task = ctx.session().task_ctx();
            datafusion::physical_plan::collect(physical, task).await
        })
        .map_err(from_df)
    }

    /// The optimized physical plan.
    pub fn physical_plan(self) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = self.ctx.clone();
        let plan = (self.into_plan())()?;
        ctx.block_on(async {
            let state = ctx.session().state();
            let optimized = state.optimize(&plan)?;
            state.create_physical_plan(&optimized).await
        })
        .map_err(from_df)
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
        let physical = self.physical_plan()?;
        ctx.block_on(async {
            let task = ctx.session().task_ctx();
            datafusion::physical_plan::collect(physical.clone(), task).await
        })
        .map_err(from_df)?;
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

    fn write(self, dir: &Path, format: FileFormat) -> Result<WriteSummary> {
        let ctx = self.ctx.clone();
        if ctx.is_declaring() {
            (self.into_plan())()?;
            return Ok(WriteSummary::not_written(dir.to_path_buf()));
        }
        let physical = self.physical_plan()?;
        let task = ctx.session().task_ctx();
        Ok(ctx.block_on(spate_io::output::write_parts(physical, task, dir, format))?)
    }
}
