//! `TopOp`: keeps the `n` greatest rows by a key, per partition or overall.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};

use super::chain::{Chain, ChainFactory};
use super::{call_user, encode_chunks, guarded, stateful_stream};
use crate::node::{InputShape, PartitionOp};
use crate::rows::{Data, RowCodec};

/// Computes the ordering key of a row.
pub type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Keeps the `n` rows with the greatest keys; emits them greatest first.
/// Ties keep the row seen first. Run once per partition, then once overall.
pub struct TopOp<T, K> {
    step: String,
    n: usize,
    global: bool,
    chain: ChainFactory<T>,
    key: KeyFn<T, K>,
    codec: RowCodec<T>,
}

impl<T: Data, K: Ord + Send + 'static> TopOp<T, K> {
    /// `global`: run on a single partition holding every candidate.
    pub fn new(
        step: String,
        n: usize,
        global: bool,
        chain: ChainFactory<T>,
        key: KeyFn<T, K>,
        codec: RowCodec<T>,
    ) -> Self {
        Self {
            step,
            n,
            global,
            chain,
            key,
            codec,
        }
    }
}

impl<T, K> fmt::Debug for TopOp<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopOp({}, n={})", self.step, self.n)
    }
}

/// Heap entry ordered by (key, earlier-first); the heap holds the `n` best as a
/// min-heap through `Reverse`.
struct Entry<K, T> {
    key: K,
    seq: Reverse<u64>,
    row: T,
}

impl<K: Ord, T> PartialEq for Entry<K, T> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.seq == o.seq
    }
}
impl<K: Ord, T> Eq for Entry<K, T> {}
impl<K: Ord, T> PartialOrd for Entry<K, T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<K: Ord, T> Ord for Entry<K, T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key).then(self.seq.cmp(&o.seq))
    }
}

struct State<T, K> {
    chain: Box<dyn Chain<T>>,
    heap: BinaryHeap<Reverse<Entry<K, T>>>,
    seq: u64,
}

fn offer<T, K: Ord>(
    heap: &mut BinaryHeap<Reverse<Entry<K, T>>>,
    n: usize,
    seq: &mut u64,
    key: K,
    row: T,
) {
    if n == 0 {
        return;
    }
    let e = Entry {
        key,
        seq: Reverse(*seq),
        row,
    };
    *seq += 1;
    if heap.len() < n {
        heap.push(Reverse(e));
    } else if let Some(mut min) = heap.peek_mut()
        && e > min.0
    {
        *min = Reverse(e);
    }
}

impl<T: Data, K: Ord + Send + 'static> PartitionOp for TopOp<T, K> {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        format!(
            "top n={} ({})",
            self.n,
            if self.global { "final" } else { "partial" }
        )
    }

    fn schema(&self) -> SchemaRef {
        self.codec.schema().clone()
    }

    fn input_shape(&self) -> InputShape {
        if self.global {
            InputShape::Single
        } else {
            InputShape::Any
        }
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_rows = context.session_config().batch_size();
        let chain = guarded(&self.step, || Ok((self.chain)()))?;
        let n = self.n;
        let (step, step2) = (self.step.clone(), self.step.clone());
        let (key, key2) = (self.key.clone(), self.key.clone());
        let codec = self.codec.clone();
        Ok(stateful_stream(
            self.schema(),
            input,
            State {
                chain,
                heap: BinaryHeap::new(),
                seq: 0,
            },
            Box::new(move |st: &mut State<T, K>, batch| {
                let State { chain, heap, seq } = st;
                guarded(&step, || {
                    chain.push_batch(&batch, &mut |rows: &mut Vec<T>| {
                        for row in rows.drain(..) {
                            let k = call_user(&step, || key(&row));
                            offer(heap, n, seq, k, row)
                        }
                    })
                })?;
                Ok(Vec::new())
            }),
            Box::new(move |st: &mut State<T, K>| {
                let State { chain, heap, seq } = st;
                guarded(&step2, || {
                    chain.finish(&mut |rows: &mut Vec<T>| {
                        for row in rows.drain(..) {
                            let k = call_user(&step2, || key2(&row));
                            offer(heap, n, seq, k, row)
                        }
                    })
                })?;
                let mut entries: Vec<Entry<K, T>> =
                    std::mem::take(heap).into_iter().map(|r| r.0).collect();
                entries.sort_by(|a, b| b.cmp(a));
                let rows: Vec<T> = entries.into_iter().map(|e| e.row).collect();
                Ok(encode_chunks(&step2, &codec, &rows, batch_rows)?)
            }),
        ))
    }
}
