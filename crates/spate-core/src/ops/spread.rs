//! Dealing rows into a fixed number of partitions (`repartition`,
//! `coalesce`, `partition_by`, the single partition of a global combine).
//!
//! `SpreadOp` passes batches on, dropping the routing column; the optimizer
//! rule [`crate::node::FixedPartitions`] puts a hash shuffle on that column
//! in front of it, after DataFusion's own rules (which drop a repartition
//! no operator asks for). The shuffle is a hash one even for an even
//! spread, whose rows get their route from `RouteOp` (their position):
//! Ballista keeps hash shuffles as stage boundaries but drops round-robin
//! ones.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::node::{InputShape, PartitionOp};

/// The column `RouteOp` adds.
pub const ROUTE_COLUMN: &str = "__spate_route";

/// Passes batches on into exactly `partitions` partitions, by the value of
/// the routing column (the input's last), which it drops.
#[derive(Debug)]
pub struct SpreadOp {
    step: String,
    partitions: usize,
    route: String,
    schema: SchemaRef,
}

impl SpreadOp {
    /// Deals rows of `input_schema` into `partitions` partitions by its
    /// last column, `route`.
    pub fn new(
        step: String,
        input_schema: &SchemaRef,
        partitions: usize,
        route: String,
    ) -> DfResult<Self> {
        let keep = input_schema.fields().len().saturating_sub(1);
        let schema = Arc::new(input_schema.project(&(0..keep).collect::<Vec<_>>())?);
        Ok(Self {
            step,
            partitions: partitions.max(1),
            route,
            schema,
        })
    }
}

impl PartitionOp for SpreadOp {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        format!("spread into {} by {}", self.partitions, self.route)
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
        let columns: Vec<usize> = (0..self.schema.fields().len()).collect();
        let out = input.map(move |batch| Ok(batch?.project(&columns)?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            out,
        )))
    }
}

/// Appends [`ROUTE_COLUMN`]: each row's position (its partition in the
/// high bits, its place in the partition in the low ones), whose hash
/// spreads rows evenly over any number of partitions. It does not depend
/// on that number, so a job's driver and executors build the same op
/// whatever their thread counts.
#[derive(Debug)]
pub struct RouteOp {
    step: String,
    schema: SchemaRef,
}

impl RouteOp {
    /// Routes rows of `input_schema` by position.
    pub fn new(step: String, input_schema: &SchemaRef) -> Self {
        let mut fields: Vec<Arc<Field>> = input_schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(ROUTE_COLUMN, DataType::UInt64, false)));
        Self {
            step,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

impl PartitionOp for RouteOp {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        "route by position".into()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let mut next = (partition as u64) << 40;
        let out = input.map(move |batch| {
            let batch = batch?;
            let start = next;
            next = next.wrapping_add(batch.num_rows() as u64);
            let values: UInt64Array = (0..batch.num_rows() as u64).map(|i| start + i).collect();
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns.push(Arc::new(values));
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            out,
        )))
    }
}
