//! `ForEachPartitionOp`: hands a whole partition to a user function as an
//! iterator that it pulls (Spark's `foreachPartition`), for work that wants
//! one connection or one file per partition.
//!
//! The engine pushes batches; a user's iterator pulls rows. The function
//! runs on a blocking thread of the runtime, and its iterator waits there
//! for the partition's next batch, so the runtime's workers keep producing
//! the input meanwhile.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use super::chain::{Chain, ChainFactory};
use super::{call_user, guarded};
use crate::error::StepError;
use crate::node::PartitionOp;
use crate::rows::{Data, RowCodec};

/// The user's per-partition function.
pub type PartitionFn<T> = Arc<dyn Fn(&mut PartitionRows<T>) + Send + Sync>;

/// Runs a user function once per partition over an iterator of its rows;
/// produces no rows.
pub struct ForEachPartitionOp<T> {
    step: String,
    what: String,
    chain: ChainFactory<T>,
    f: PartitionFn<T>,
    schema: SchemaRef,
}

impl<T: Data> ForEachPartitionOp<T> {
    /// An op named `step`, described as `what` in EXPLAIN.
    pub fn new(
        step: String,
        what: String,
        chain: ChainFactory<T>,
        f: PartitionFn<T>,
    ) -> crate::error::Result<Self> {
        Ok(Self {
            step,
            what,
            chain,
            f,
            schema: RowCodec::<u8>::new()?.schema().clone(),
        })
    }
}

impl<T> fmt::Debug for ForEachPartitionOp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ForEachPartitionOp({})", self.step)
    }
}

/// A partition's rows, pulled batch by batch from the engine: an iterator.
pub struct PartitionRows<T> {
    input: SendableRecordBatchStream,
    chain: Box<dyn Chain<T>>,
    rows: VecDeque<T>,
    handle: tokio::runtime::Handle,
    finished: bool,
    /// The input's failure: the iterator ends, and the step fails with it.
    error: Option<DataFusionError>,
}

impl<T> Iterator for PartitionRows<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(t) = self.rows.pop_front() {
                return Some(t);
            }
            if self.finished {
                return None;
            }
            let rows = &mut self.rows;
            let mut take = |run: &mut Vec<T>| rows.extend(run.drain(..));
            let pushed = match self.handle.block_on(self.input.next()) {
                Some(Ok(batch)) => self.chain.push_batch(&batch, &mut take),
                Some(Err(e)) => {
                    self.error = Some(e);
                    self.finished = true;
                    return None;
                }
                None => {
                    self.finished = true;
                    self.chain.finish(&mut take)
                }
            };
            if let Err(e) = pushed {
                self.error = Some(e.into());
                self.finished = true;
                return None;
            }
        }
    }
}

impl<T: Data> PartitionOp for ForEachPartitionOp<T> {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        self.what.clone()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let chain = guarded(&self.step, || Ok((self.chain)()))?;
        let (step, f) = (self.step.clone(), self.f.clone());
        // The function runs on another thread, in this task's scope.
        let scope = crate::shared::TaskScope::current();
        let work = async move {
            let handle = tokio::runtime::Handle::current();
            let joined = tokio::task::spawn_blocking(move || -> DfResult<()> {
                let mut rows = PartitionRows {
                    input,
                    chain,
                    rows: VecDeque::new(),
                    handle,
                    finished: false,
                    error: None,
                };
                let _scope = scope.as_ref().map(|s| s.guard());
                guarded(&step, || {
                    call_user(&step, || f(&mut rows));
                    Ok::<(), StepError>(())
                })?;
                match rows.error {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            })
            .await;
            match joined {
                Ok(done) => done,
                Err(e) => Err(DataFusionError::Execution(format!(
                    "a partition's task was cancelled: {e}"
                ))),
            }
        };
        let out = futures::stream::once(work).filter_map(|done| async move { done.err().map(Err) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            out,
        )))
    }
}
