//! `IndexedOp`: runs a chain and hands each row to a function together with
//! its position — the partition it is in and its place in that partition —
//! and a random stream seeded per partition. `take`, `zip_with_index` and
//! `sample` are built on it: all three depend on where a row is, which a
//! closure in a fused chain does not know.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskCx, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use futures::{Stream, StreamExt};

use super::chain::{Chain, ChainFactory};
use super::{call_user, encode_chunks, guarded, stateful_stream};
use crate::node::PartitionOp;
use crate::rows::{Data, RowCodec};

/// Where a row is, as [`IndexedOp`] tells its function.
#[derive(Debug)]
pub struct Position {
    /// The partition the row is in.
    pub partition: u64,
    /// The row's place in its partition, from 0.
    pub seq: u64,
    /// Random numbers for this partition, seeded by (seed, partition).
    pub rng: SplitMix64,
}

/// The per-row function: may push any number of outputs.
pub type PosFn<T, O> = Arc<dyn Fn(&mut Position, T, &mut Vec<O>) + Send + Sync>;
/// Called once after a partition's last row (with the count as `seq`).
pub type PosEndFn<O> = Arc<dyn Fn(&Position, &mut Vec<O>) + Send + Sync>;

/// A small, fast, seedable random generator (SplitMix64). Its own code
/// rather than a library's, so a seed gives the same sample in every
/// release of spate.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A Poisson-distributed count with mean `mean` (Knuth's method; the
    /// means sampling uses are small).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        // Large means: split into parts whose e^-mean does not underflow.
        let mut total = 0;
        let mut left = mean;
        while left > 0.0 {
            let part = left.min(30.0);
            left -= part;
            let limit = (-part).exp();
            let mut p = 1.0;
            let mut k = 0u64;
            loop {
                p *= self.next_f64();
                if p <= limit {
                    break;
                }
                k += 1;
            }
            total += k;
        }
        total
    }
}

/// Runs a chain and hands each row, with its [`Position`], to `each`.
pub struct IndexedOp<T, O> {
    step: String,
    what: String,
    chain: ChainFactory<T>,
    each: PosFn<T, O>,
    end: Option<PosEndFn<O>>,
    /// Stop reading the input after this many rows of the partition.
    limit: Option<u64>,
    seed: u64,
    codec: RowCodec<O>,
}

impl<T: Data, O: Data> IndexedOp<T, O> {
    /// An op named `step`, described as `what` in EXPLAIN.
    pub fn new(
        step: String,
        what: String,
        chain: ChainFactory<T>,
        each: PosFn<T, O>,
        codec: RowCodec<O>,
    ) -> Self {
        Self {
            step,
            what,
            chain,
            each,
            end: None,
            limit: None,
            seed: 0,
            codec,
        }
    }

    /// Calls `end` after each partition's last row.
    pub fn with_end(mut self, end: PosEndFn<O>) -> Self {
        self.end = Some(end);
        self
    }

    /// Reads at most `rows` rows of each partition.
    pub fn with_limit(mut self, rows: u64) -> Self {
        self.limit = Some(rows);
        self
    }

    /// Seeds the partitions' random streams.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl<T, O> fmt::Debug for IndexedOp<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexedOp({})", self.step)
    }
}

struct State<T, O> {
    chain: Box<dyn Chain<T>>,
    pos: Position,
    out: Vec<O>,
}

/// An input that ends as soon as `done` is set: a partition that has what
/// it needs stops reading.
struct UntilDone {
    input: SendableRecordBatchStream,
    done: Arc<AtomicBool>,
}

impl Stream for UntilDone {
    type Item = DfResult<RecordBatch>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<Self::Item>> {
        if self.done.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        self.input.poll_next_unpin(cx)
    }
}

impl RecordBatchStream for UntilDone {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

/// Feeds a run of rows to `each`, up to `limit` rows of the partition.
fn feed<T, O>(
    step: &str,
    each: &PosFn<T, O>,
    limit: Option<u64>,
    done: &AtomicBool,
    pos: &mut Position,
    rows: &mut Vec<T>,
    out: &mut Vec<O>,
) {
    for row in rows.drain(..) {
        if limit.is_some_and(|l| pos.seq >= l) {
            done.store(true, Ordering::Relaxed);
            break;
        }
        call_user(step, || each(pos, row, out));
        pos.seq += 1;
    }
    if limit.is_some_and(|l| pos.seq >= l) {
        done.store(true, Ordering::Relaxed);
    }
}

impl<T: Data, O: Data> PartitionOp for IndexedOp<T, O> {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        self.what.clone()
    }

    fn schema(&self) -> SchemaRef {
        self.codec.schema().clone()
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_rows = context.session_config().batch_size();
        let chain = guarded(&self.step, || Ok((self.chain)()))?;
        let done = Arc::new(AtomicBool::new(false));
        let input: SendableRecordBatchStream = Box::pin(UntilDone {
            input,
            done: done.clone(),
        });
        let mut seeder = SplitMix64::new(self.seed ^ (partition as u64).rotate_left(32));
        let state = State {
            chain,
            pos: Position {
                partition: partition as u64,
                seq: 0,
                rng: SplitMix64::new(seeder.next_u64()),
            },
            out: Vec::new(),
        };
        let (step, step2) = (self.step.clone(), self.step.clone());
        let (codec, codec2) = (self.codec.clone(), self.codec.clone());
        let (each, each2) = (self.each.clone(), self.each.clone());
        let (limit, end) = (self.limit, self.end.clone());
        let done2 = done.clone();
        Ok(stateful_stream(
            self.schema(),
            input,
            state,
            Box::new(move |st: &mut State<T, O>, batch| {
                let State { chain, pos, out } = st;
                if !done.load(Ordering::Relaxed) {
                    guarded(&step, || {
                        chain.push_batch(&batch, &mut |rows: &mut Vec<T>| {
                            feed(&step, &each, limit, &done, pos, rows, out)
                        })
                    })?;
                }
                let batches = encode_chunks(&step, &codec, out, batch_rows)?;
                out.clear();
                Ok(batches)
            }),
            Box::new(move |st: &mut State<T, O>| {
                let State { chain, pos, out } = st;
                if !done2.load(Ordering::Relaxed) {
                    guarded(&step2, || {
                        chain.finish(&mut |rows: &mut Vec<T>| {
                            feed(&step2, &each2, limit, &done2, pos, rows, out)
                        })
                    })?;
                }
                if let Some(end) = &end {
                    guarded(&step2, || {
                        call_user(&step2, || end(pos, out));
                        Ok(())
                    })?;
                }
                Ok(encode_chunks(&step2, &codec2, out, batch_rows)?)
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_streams_are_fixed_by_their_seed() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], SplitMix64::new(8).next_u64());
        let f = a.next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn poisson_counts_have_their_mean() {
        let mut r = SplitMix64::new(1);
        for mean in [0.3, 2.0, 75.0] {
            let n = 20_000;
            let total: u64 = (0..n).map(|_| r.poisson(mean)).sum();
            let got = total as f64 / n as f64;
            assert!((got - mean).abs() < mean * 0.05 + 0.02, "{mean}: {got}");
        }
    }
}
