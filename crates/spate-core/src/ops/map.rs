//! `MapOp`: runs a fused chain and encodes the rows it produces.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};

use super::chain::{Chain, ChainFactory};
use super::{encode_chunks, guarded, stateful_stream};
use crate::node::PartitionOp;
use crate::rows::{Data, RowCodec};

/// Runs a chain of closure steps and encodes its output rows.
pub struct MapOp<T> {
    step: String,
    steps: Vec<String>,
    chain: ChainFactory<T>,
    codec: RowCodec<T>,
}

impl<T: Data> MapOp<T> {
    /// `steps` are the fused step names (for EXPLAIN); `step` names the node.
    pub fn new(
        step: String,
        steps: Vec<String>,
        chain: ChainFactory<T>,
        codec: RowCodec<T>,
    ) -> Self {
        Self {
            step,
            steps,
            chain,
            codec,
        }
    }
}

impl<T> fmt::Debug for MapOp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MapOp({})", self.step)
    }
}

struct MapState<T> {
    chain: Box<dyn Chain<T>>,
    out: Vec<T>,
}

impl<T: Data> PartitionOp for MapOp<T> {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        format!("map [{}]", self.steps.join(" → "))
    }

    fn schema(&self) -> SchemaRef {
        self.codec.schema().clone()
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_rows = context.session_config().batch_size();
        let step = self.step.clone();
        let step2 = self.step.clone();
        let codec = self.codec.clone();
        let codec2 = self.codec.clone();
        let chain = guarded(&step, || Ok((self.chain)()))?;
        Ok(stateful_stream(
            self.schema(),
            input,
            MapState {
                chain,
                out: Vec::new(),
            },
            Box::new(move |st: &mut MapState<T>, batch| {
                let MapState { chain, out } = st;
                guarded(&step, || {
                    chain.push_batch(&batch, &mut |ts: &mut Vec<T>| out.append(ts))
                })?;
                let batches = encode_chunks(&step, &codec, out, batch_rows)?;
                out.clear();
                Ok(batches)
            }),
            Box::new(move |st: &mut MapState<T>| {
                let MapState { chain, out } = st;
                guarded(&step2, || {
                    chain.finish(&mut |ts: &mut Vec<T>| out.append(ts))
                })?;
                Ok(encode_chunks(&step2, &codec2, out, batch_rows)?)
            }),
        ))
    }
}
