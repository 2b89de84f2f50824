//! A job's graph: the physical plans a context ran, each node with its step
//! name and metrics (rows, compute time, spills, rows per partition), as
//! JSON for the job service, which draws it and marks the slowest and the
//! skewed steps.
//!
//! A context records its plans only when asked ([`Config::record_graph`]);
//! the planner then keeps each physical plan it makes, and the graph is
//! written when the context goes. Metrics live in the plans' nodes, so the
//! graph written after a run holds what the run measured.
//!
//! [`Config::record_graph`]: crate::context::Config::record_graph

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use serde::Serialize;

use crate::node::OpExec;

/// Plans kept for a job's graph (at most [`PlanLog::LIMIT`]: a job that
/// runs more keeps its first ones).
#[derive(Debug, Default)]
pub struct PlanLog {
    plans: Mutex<Vec<Arc<dyn ExecutionPlan>>>,
    /// Where the graph is written when the context goes.
    pub(crate) out: Option<PathBuf>,
}

impl PlanLog {
    /// Plans kept at most.
    pub const LIMIT: usize = 200;

    /// A log writing its graph to `out`.
    pub fn writing_to(out: PathBuf) -> Self {
        Self {
            plans: Mutex::default(),
            out: Some(out),
        }
    }

    /// Keeps a plan.
    pub fn record(&self, plan: Arc<dyn ExecutionPlan>) {
        let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if plans.len() < Self::LIMIT {
            plans.push(plan);
        }
    }

    /// The graph of every plan kept, with the metrics measured so far,
    /// and the cluster's ids of the jobs that ran them there.
    pub fn graph(&self, cluster_jobs: Vec<String>) -> Graph {
        let plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        Graph {
            plans: plans.iter().map(|p| PlanGraph::of(p.as_ref())).collect(),
            cluster_jobs,
        }
    }

    /// Writes the graph to the log's file (through a temporary file, so a
    /// reader never sees half of it).
    pub fn write(&self, cluster_jobs: Vec<String>) -> std::io::Result<()> {
        let Some(out) = &self.out else {
            return Ok(());
        };
        let json = serde_json::to_vec(&self.graph(cluster_jobs)).map_err(std::io::Error::other)?;
        let tmp = out.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, out)
    }
}

/// Every plan a job ran.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// The plans, in the order they were made (on a cluster: the
    /// driver's, a node for the work the cluster did).
    pub plans: Vec<PlanGraph>,
    /// On a cluster: the scheduler's ids of the jobs it ran, which its
    /// processes' logs name (the job service collects their lines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_jobs: Vec<String>,
}

/// One plan: its nodes, the root first; edges go from a node to the node
/// that reads it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanGraph {
    /// The nodes.
    pub nodes: Vec<Node>,
}

/// A node of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Its index in the plan's nodes.
    pub id: usize,
    /// The operator (`SpateOpExec`, `AggregateExec`, ...).
    pub operator: String,
    /// The step's name for spate's steps (`read_text`, `count_by_value`),
    /// else the operator's.
    pub step: String,
    /// The node as `EXPLAIN` shows it.
    pub detail: String,
    /// The nodes it reads.
    pub inputs: Vec<usize>,
    /// What it measured.
    pub metrics: NodeMetrics,
}

/// A node's metrics, summed over its partitions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeMetrics {
    /// Rows it read: its inputs' output.
    pub input_rows: u64,
    /// Rows it produced.
    pub output_rows: u64,
    /// Bytes it produced, where the operator counts them.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_bytes: u64,
    /// Bytes it read from files or stores (sources).
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_read: u64,
    /// Time spent computing, in nanoseconds (summed over partitions).
    pub elapsed_compute_ns: u64,
    /// Spills to disk.
    pub spill_count: u64,
    /// Bytes spilled.
    pub spilled_bytes: u64,
    /// Rows produced by each partition.
    pub partition_rows: Vec<u64>,
    /// The largest partition's rows against the median partition's (1.0:
    /// even); absent with fewer than two partitions or an empty median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PlanGraph {
    /// The graph of `plan` with its metrics now.
    pub fn of(plan: &dyn ExecutionPlan) -> Self {
        let mut nodes = Vec::new();
        add(plan, &mut nodes);
        for i in 0..nodes.len() {
            let read: u64 = nodes[i]
                .inputs
                .iter()
                .map(|&input| nodes[input].metrics.output_rows)
                .sum();
            nodes[i].metrics.input_rows = read;
        }
        Self { nodes }
    }
}

fn add(plan: &dyn ExecutionPlan, nodes: &mut Vec<Node>) -> usize {
    let id = nodes.len();
    let detail = datafusion::physical_plan::displayable(plan)
        .one_line()
        .to_string()
        .trim_end()
        .to_string();
    let step = plan
        .downcast_ref::<OpExec>()
        .map_or_else(|| plan.name().to_string(), |op| op.op().step().to_string());
    nodes.push(Node {
        id,
        operator: plan.name().to_string(),
        step,
        detail,
        inputs: Vec::new(),
        metrics: metrics_of(plan),
    });
    let inputs: Vec<usize> = plan
        .children()
        .into_iter()
        .map(|child| add(child.as_ref(), nodes))
        .collect();
    nodes[id].inputs = inputs;
    id
}

fn metrics_of(plan: &dyn ExecutionPlan) -> NodeMetrics {
    let Some(set) = plan.metrics() else {
        return NodeMetrics::default();
    };
    let partitions = plan.properties().partitioning.partition_count();
    let mut partition_rows = vec![0u64; partitions];
    let (mut output_bytes, mut bytes_read) = (0u64, 0u64);
    for metric in set.iter() {
        match metric.value() {
            MetricValue::OutputRows(count) => {
                if let Some(rows) = metric.partition().and_then(|p| partition_rows.get_mut(p)) {
                    *rows += count.value() as u64;
                }
            }
            MetricValue::OutputBytes(count) => output_bytes += count.value() as u64,
            MetricValue::Count { name, count }
                if name == "bytes_read" || name == "bytes_scanned" =>
            {
                bytes_read += count.value() as u64;
            }
            _ => {}
        }
    }
    let skew = skew(&partition_rows);
    NodeMetrics {
        input_rows: 0,
        output_rows: set.output_rows().unwrap_or(0) as u64,
        output_bytes,
        bytes_read,
        elapsed_compute_ns: set.elapsed_compute().unwrap_or(0) as u64,
        spill_count: set.spill_count().unwrap_or(0) as u64,
        spilled_bytes: set.spilled_bytes().unwrap_or(0) as u64,
        partition_rows,
        skew,
    }
}

/// The largest value against the median (the lower middle value).
fn skew(rows: &[u64]) -> Option<f64> {
    if rows.len() < 2 {
        return None;
    }
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    let median = sorted[(sorted.len() - 1) / 2];
    let max = *sorted.last()?;
    (median > 0).then(|| max as f64 / median as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_the_largest_partition_against_the_median() {
        assert_eq!(skew(&[10]), None);
        assert_eq!(skew(&[10, 10, 10]), Some(1.0));
        assert_eq!(skew(&[5, 10, 10, 40]), Some(4.0));
        assert_eq!(skew(&[0, 0, 9]), None);
    }
}
