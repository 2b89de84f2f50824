//! `SpreadOp`: deals its input into a fixed number of partitions
//! (`repartition`, `coalesce`, `partition_by`). The op itself only passes
//! batches on, keeping the first `keep` columns; the optimizer rule
//! [`crate::node::FixedPartitions`] puts the repartition in front of it,
//! after DataFusion's own rules, which would otherwise drop a repartition
//! no operator asks for.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::node::{InputShape, PartitionOp};

/// Passes batches on into exactly `partitions` partitions.
#[derive(Debug)]
pub struct SpreadOp {
    step: String,
    partitions: usize,
    route: Option<String>,
    keep: usize,
    schema: SchemaRef,
}

impl SpreadOp {
    /// Deals `input_schema`'s rows into `partitions` partitions — by the
    /// value of `route`, else in turn — and keeps their first `keep`
    /// columns.
    pub fn new(
        step: String,
        input_schema: &SchemaRef,
        partitions: usize,
        route: Option<String>,
        keep: usize,
    ) -> DfResult<Self> {
        let keep = keep.min(input_schema.fields().len());
        let schema = Arc::new(input_schema.project(&(0..keep).collect::<Vec<_>>())?);
        Ok(Self {
            step,
            partitions: partitions.max(1),
            route,
            keep,
            schema,
        })
    }
}

impl PartitionOp for SpreadOp {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        match &self.route {
            Some(_) => format!("partition by key into {}", self.partitions),
            None => format!("spread into {}", self.partitions),
        }
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn input_shape(&self) -> InputShape {
        InputShape::Spread {
            partitions: self.partitions,
            route: self.route.clone(),
        }
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let columns: Vec<usize> = (0..self.keep).collect();
        let out = input.map(move |batch| Ok(batch?.project(&columns)?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            out,
        )))
    }
}
