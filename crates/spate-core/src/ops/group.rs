//! `GroupOp`: the reduce side of a shuffle.
//!
//! Its input is hash-partitioned on the key and sorted by it (DataFusion's
//! `EnforceDistribution` and `EnforceSorting` rules insert the repartition and
//! an external, spilling sort because the op asks for that layout). The op
//! walks the sorted rows on a blocking thread and hands each key with an
//! iterator over its values to the user function. Values are decoded one
//! batch at a time and outputs are sent on a batch at a time as the function
//! emits them (also in the middle of a group), so neither a huge group nor a
//! reducer that emits a lot for one key has to fit in memory.
//!
//! Where a whole group is in memory: only where the API hands it over as a
//! collection — `Dataset::group_by_key().collect_lists()` and
//! Beam's `GroupByKey`, whose output is `(K, Vec<V>)` by definition — and in
//! whatever a user function itself collects. `flat_map_groups`, `reduce`,
//! MapReduce reducers and Hadoop Streaming reducers stream.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use futures::StreamExt;

use super::{call_user, encode_chunks, guarded};
use crate::error::StepError;
use crate::node::{InputShape, PartitionOp};
use crate::rows::{Data, RowCodec};

/// A reducer: called once per key, in key order, within one partition.
pub trait GroupFn<K, V, O>: Send {
    /// Handles one key and all its values.
    fn group(&mut self, key: &K, values: &mut dyn Iterator<Item = V>, emit: &mut dyn FnMut(O));
    /// Called after the last key of the partition.
    fn finish(&mut self, _emit: &mut dyn FnMut(O)) {}
}

/// Builds the reducer of one partition (so reducers can keep task state).
pub type GroupFactory<K, V, O> = Arc<dyn Fn() -> Box<dyn GroupFn<K, V, O>> + Send + Sync>;

/// Groups sorted `(K, V)` rows by key and runs a [`GroupFn`] on each group.
pub struct GroupOp<K, V, O> {
    step: String,
    what: String,
    in_codec: RowCodec<(K, V)>,
    out_codec: RowCodec<O>,
    factory: GroupFactory<K, V, O>,
    descending: bool,
    partitions: Option<usize>,
    route: Option<String>,
}

impl<K: Data + PartialEq, V: Data, O: Data> GroupOp<K, V, O> {
    /// A reducer step named `step`, described as `what` in EXPLAIN.
    pub fn new(
        step: String,
        what: String,
        in_codec: RowCodec<(K, V)>,
        out_codec: RowCodec<O>,
        factory: GroupFactory<K, V, O>,
    ) -> Self {
        Self {
            step,
            what,
            in_codec,
            out_codec,
            factory,
            descending: false,
            partitions: None,
            route: None,
        }
    }

    /// Routes rows by this column (a custom partitioner's output) instead of
    /// by key hash; the column is dropped before decoding.
    pub fn route(mut self, column: Option<String>) -> Self {
        self.route = column;
        self
    }

    /// Runs exactly `count` reducers (`None`: one per thread).
    pub fn partitions(mut self, count: Option<usize>) -> Self {
        self.partitions = count;
        self
    }

    /// Hands keys to the reducer in descending order.
    pub fn descending(mut self, descending: bool) -> Self {
        self.descending = descending;
        self
    }
}

impl<K, V, O> fmt::Debug for GroupOp<K, V, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupOp({})", self.step)
    }
}

/// Sorted rows, pulled one batch at a time from the (async) input.
struct Rows<K, V> {
    input: SendableRecordBatchStream,
    handle: tokio::runtime::Handle,
    codec: RowCodec<(K, V)>,
    step: String,
    buf: std::vec::IntoIter<(K, V)>,
    peeked: Option<(K, V)>,
    error: Option<DataFusionError>,
}

impl<K: Data, V: Data> Rows<K, V> {
    /// Decodes `(key, value)`; columns past the first two (routing) are ignored.
    fn decode(&self, batch: &RecordBatch) -> crate::error::Result<Vec<(K, V)>> {
        if batch.num_columns() > 2 {
            let pair = batch
                .project(&[0, 1])
                .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
            self.codec.decode(&pair)
        } else {
            self.codec.decode(batch)
        }
    }

    fn next_row(&mut self) -> Option<(K, V)> {
        if let Some(p) = self.peeked.take() {
            return Some(p);
        }
        loop {
            if let Some(r) = self.buf.next() {
                return Some(r);
            }
            if self.error.is_some() {
                return None;
            }
            match self.handle.block_on(self.input.next()) {
                Some(Ok(batch)) => match self.decode(&batch) {
                    Ok(rows) => self.buf = rows.into_iter(),
                    Err(e) => {
                        self.error = Some(
                            StepError {
                                step: self.step.clone(),
                                message: e.to_string(),
                            }
                            .into(),
                        );
                        return None;
                    }
                },
                Some(Err(e)) => {
                    self.error = Some(e);
                    return None;
                }
                None => return None,
            }
        }
    }
}

/// A reducer's outputs not yet sent on.
struct Emitted<O> {
    out: Vec<O>,
    batch_rows: usize,
    /// Encoding failed: the job fails once the reducer returns.
    failed: Option<StepError>,
    /// Downstream stopped reading: further outputs are dropped.
    closed: bool,
}

impl<O> Emitted<O> {
    /// Keeps an output; whether a batch is full and should go on.
    fn push(&mut self, o: O) -> bool {
        if self.closed || self.failed.is_some() {
            return false;
        }
        self.out.push(o);
        self.out.len() >= self.batch_rows
    }
}

/// The values of one key: stops at the first row with another key.
struct Values<'a, K, V> {
    rows: &'a mut Rows<K, V>,
    key: &'a K,
    first: Option<V>,
    done: bool,
}

impl<K: Data + PartialEq, V: Data> Iterator for Values<'_, K, V> {
    type Item = V;
    fn next(&mut self) -> Option<V> {
        if let Some(v) = self.first.take() {
            return Some(v);
        }
        if self.done {
            return None;
        }
        match self.rows.next_row() {
            Some((k, v)) if k == *self.key => Some(v),
            Some(other) => {
                self.rows.peeked = Some(other);
                self.done = true;
                None
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl<K: Data + PartialEq, V: Data, O: Data> PartitionOp for GroupOp<K, V, O> {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        if self.descending {
            format!("{} (keys descending)", self.what)
        } else {
            self.what.clone()
        }
    }

    fn schema(&self) -> SchemaRef {
        self.out_codec.schema().clone()
    }

    fn input_shape(&self) -> InputShape {
        InputShape::GroupedBy {
            keys: vec![self.in_codec.schema().field(0).name().clone()],
            descending: self.descending,
            partitions: self.partitions,
            route: self.route.clone(),
        }
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_rows = context.session_config().batch_size();
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema(), 2);
        let tx = builder.tx();
        let handle = tokio::runtime::Handle::current();
        let step = self.step.clone();
        let in_codec = self.in_codec.clone();
        let out_codec = self.out_codec.clone();
        let factory = self.factory.clone();
        // The reducer runs on its own thread, in this task's scope
        // (accumulators, metrics, broadcast values).
        let scope = crate::shared::TaskScope::current();
        builder.spawn_blocking(move || {
            let _scope = scope.as_ref().map(|s| s.guard());
            let send = |b: RecordBatch| tx.blocking_send(Ok(b)).is_ok();
            let mut rows = Rows {
                input,
                handle,
                codec: in_codec,
                step: step.clone(),
                buf: Vec::new().into_iter(),
                peeked: None,
                error: None,
            };
            let result = guarded(&step, || {
                let mut reducer = call_user(&step, || factory());
                // Outputs go on a batch at a time as the reducer emits them,
                // also in the middle of a group.
                let mut sink = Emitted {
                    out: Vec::new(),
                    batch_rows,
                    failed: None,
                    closed: false,
                };
                let flush = |sink: &mut Emitted<O>| {
                    if sink.closed || sink.failed.is_some() {
                        sink.out.clear();
                        return;
                    }
                    match encode_chunks(&step, &out_codec, &sink.out, batch_rows) {
                        Ok(batches) => {
                            sink.closed = !batches.into_iter().all(&send);
                        }
                        Err(e) => sink.failed = Some(e),
                    }
                    sink.out.clear();
                };
                while let Some((key, first)) = rows.next_row() {
                    let mut values = Values {
                        rows: &mut rows,
                        key: &key,
                        first: Some(first),
                        done: false,
                    };
                    call_user(&step, || {
                        reducer.group(&key, &mut values, &mut |o| {
                            if sink.push(o) {
                                flush(&mut sink);
                            }
                        })
                    });
                    // Skip what the reducer left unread.
                    values.by_ref().for_each(drop);
                    if let Some(e) = sink.failed.take() {
                        return Err(e);
                    }
                    if sink.closed {
                        return Ok(());
                    }
                }
                if rows.error.is_some() {
                    return Ok(());
                }
                call_user(&step, || {
                    reducer.finish(&mut |o| {
                        if sink.push(o) {
                            flush(&mut sink);
                        }
                    })
                });
                flush(&mut sink);
                match sink.failed.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            });
            if let Some(e) = rows.error.take() {
                return Err(e);
            }
            result.map_err(DataFusionError::from)
        });
        Ok(builder.build())
    }
}
