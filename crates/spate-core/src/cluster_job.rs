//! A job on a cluster, as the driver runs it: Ballista's
//! `DistributedQueryExec` with errors that say when the scheduler itself
//! was lost.
//!
//! Ballista's client polls the scheduler for the job's status over one
//! gRPC stream; when the scheduler dies the stream breaks and the error is
//! gRPC's ("h2 protocol error: error reading a body from connection"),
//! which names neither the scheduler nor what happened. On any error the
//! driver asks the scheduler whether it still answers; if it does not, the
//! error says that the scheduler at ADDR was lost while job ID ran (its
//! jobs went with it), with Ballista's error as the cause. A job the
//! scheduler failed, or a fetch from an executor, keeps its own error.

use std::fmt;
use std::sync::Arc;

use ballista_core::execution_plans::DistributedQueryExec;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::StreamExt;

use crate::cluster::Address;

/// How an error about a lost scheduler begins (see [`is_lost_scheduler`]).
const LOST: &str = "lost the scheduler at ";

/// Ballista's plan of one cluster job, run by the driver.
#[derive(Debug)]
pub(crate) struct ClusterJobExec {
    inner: Arc<dyn ExecutionPlan>,
    scheduler: Address,
}

impl ClusterJobExec {
    pub(crate) fn new(inner: Arc<dyn ExecutionPlan>, scheduler: Address) -> Self {
        Self { inner, scheduler }
    }
}

/// The Ballista job id of a cluster job's plan, once the scheduler took it.
pub(crate) fn job_id_of(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let plan = match plan.downcast_ref::<ClusterJobExec>() {
        Some(job) => &job.inner,
        None => plan,
    };
    plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()
        .and_then(|d| d.job_id())
        .map(|id| id.to_string())
}

/// Whether `e` says the scheduler was lost while the job ran.
pub fn is_lost_scheduler(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::Context(message, inner) => {
            message.starts_with(LOST) || is_lost_scheduler(inner)
        }
        DataFusionError::Shared(inner) => is_lost_scheduler(inner),
        _ => false,
    }
}

/// `e`, or when the scheduler no longer answers, `e` as the cause of an
/// error naming the lost scheduler and the job (its id when the driver
/// knows it: Ballista tells the client a job's id with its first status
/// change after the job started, a finished task).
async fn explain(e: DataFusionError, scheduler: Address, job: Option<String>) -> DataFusionError {
    if is_lost_scheduler(&e) {
        return e;
    }
    let probe = scheduler.clone();
    let answer = tokio::task::spawn_blocking(move || crate::cluster::scheduler_version(&probe))
        .await
        .map_err(|join| crate::error::Error::Internal(join.to_string()))
        .and_then(|r| r);
    match answer {
        Ok(_) => e,
        Err(why) => {
            let job = job.map_or_else(|| "the job".to_string(), |id| format!("job {id}"));
            DataFusionError::Context(
                format!(
                    "{LOST}{scheduler} while {job} ran: it no longer answers ({why}); the jobs it \
                     ran went with it — start the cluster again and resubmit"
                ),
                Box::new(e),
            )
        }
    }
}

impl DisplayAs for ClusterJobExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for ClusterJobExec {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a cluster job's plan has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let stream = self.inner.execute(partition, context)?;
        let schema = stream.schema();
        let scheduler = self.scheduler.clone();
        let inner = self.inner.clone();
        let explained = stream.then(move |item| {
            let scheduler = scheduler.clone();
            let inner = inner.clone();
            async move {
                match item {
                    Ok(batch) => Ok(batch),
                    Err(e) => Err(explain(e, scheduler, job_id_of(&inner)).await),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, explained)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }
}
