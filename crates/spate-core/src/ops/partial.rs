//! `PartialAggOp`: the map-side combiner.
//!
//! Runs a fused chain straight into a hash map keyed by the row's key, so a
//! word count never materializes its words as Arrow rows. The map is bounded
//! by the session's memory pool: when the pool refuses more memory, the map is
//! emitted downstream as partial results and cleared — exactly what a Hadoop
//! combiner or Spark's map-side combine does, so nothing is ever lost and the
//! final (post-shuffle) aggregation merges the partials.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};

use super::chain::{Chain, ChainFactory};
use super::table::KeyTable;
use super::{encode_chunks, guarded, stateful_stream};
use crate::combine::CombineFn;
use crate::error::StepError;
use crate::node::PartitionOp;
use crate::rows::{Data, RowCodec};

/// How a combiner folds its rows into its table: a row's key, looked at
/// ahead of its insertion so that the table's memory for it is on its way
/// by then, and the insertion. A type parameter with methods marked for
/// inlining, not closures: both run once per row, and a closure's body is
/// the compiler's to inline or not (a call per row, with its spills, was a
/// tenth of a word count's time).
pub trait Fold<I, K, A>: Send + Sync + 'static {
    /// The key of `row`.
    fn key<'r>(&self, row: &'r I) -> &'r K;
    /// Folds `row` into `map`.
    fn insert(&self, map: &mut KeyTable<K, A>, row: I);
}

/// Counts each row (`count_by_value`).
pub struct CountFold;

impl<T: Hash + Eq + 'static> Fold<T, T, u64> for CountFold {
    #[inline(always)]
    fn key<'r>(&self, row: &'r T) -> &'r T {
        row
    }
    #[inline(always)]
    fn insert(&self, map: &mut KeyTable<T, u64>, row: T) {
        *map.slot(row, || 0) += 1;
    }
}

/// Merges the values of each key with an associative, commutative function
/// (`reduce_by_key`).
pub struct ReduceFold<F>(pub Arc<F>);

impl<K, V, F> Fold<(K, V), K, V> for ReduceFold<F>
where
    K: Hash + Eq + 'static,
    F: Fn(V, V) -> V + Send + Sync + 'static,
{
    #[inline(always)]
    fn key<'r>(&self, row: &'r (K, V)) -> &'r K {
        &row.0
    }
    #[inline(always)]
    fn insert(&self, map: &mut KeyTable<K, V>, (k, v): (K, V)) {
        map.merge(k, v, |old, v| (self.0)(old, v));
    }
}

/// Adds each value to its key's accumulator (`combine_per_key`).
pub struct CombineFold<C>(pub Arc<C>);

impl<K, V, C> Fold<(K, V), K, C::Acc> for CombineFold<C>
where
    K: Hash + Eq + 'static,
    C: CombineFn<V>,
{
    #[inline(always)]
    fn key<'r>(&self, row: &'r (K, V)) -> &'r K {
        &row.0
    }
    #[inline(always)]
    fn insert(&self, map: &mut KeyTable<K, C::Acc>, (k, v): (K, V)) {
        let c = &self.0;
        c.add(map.slot(k, || c.create()), v);
    }
}

/// Rows between a key's prefetch and its insertion: enough to cover a
/// miss to memory at the few nanoseconds an insertion takes. (Measured on
/// a 1 GiB word count: prefetching saves ~7 %; distances 8 to 64 alike.)
const AHEAD: usize = 16;

/// Folds a run of rows into the table, each key prefetched `AHEAD` rows
/// before it is inserted.
#[inline(always)]
fn fold_run<I, K: Hash + Eq + 'static, A>(
    map: &mut KeyTable<K, A>,
    rows: &mut Vec<I>,
    fold: &impl Fold<I, K, A>,
) {
    for row in rows.iter().take(AHEAD) {
        map.prefetch(fold.key(row));
    }
    let mut rows = rows.drain(..);
    while let Some(row) = rows.next() {
        if let Some(ahead) = rows.as_slice().get(AHEAD - 1) {
            map.prefetch(fold.key(ahead));
        }
        fold.insert(map, row);
    }
}

/// Never hold more entries than this in one map, whatever the memory budget.
const MAX_ENTRIES: usize = 1 << 22;

/// Guess of heap bytes owned by a key/accumulator beyond its inline size.
const HEAP_GUESS: usize = 24;

/// Rows folded in before the table's reduction is judged (once).
const PROBE_ROWS: usize = 1 << 17;

/// Keys per row above which a table is judged not to reduce its input
/// (nearly every key new: ~12 M distinct words in 12 M).
const POOR_REDUCTION: f64 = 0.8;

/// Keys a table that does not reduce holds before it is emitted: it stays
/// small enough for the cache, instead of growing (and rehashing) to
/// millions of keys that combine nothing. DataFusion's partial aggregates
/// skip themselves on the same test; this one keeps combining what repeats
/// close together, and grows again when a run of its output shows keys
/// repeating.
const SMALL_TABLE: usize = 1 << 13;

/// Bucket bytes above which a map made small is replaced rather than
/// emptied in place (room for [`SMALL_TABLE`] keys of 32-byte buckets at
/// half load, in each of its packed tables, and some).
const SMALL_TABLE_BYTES: usize = SMALL_TABLE * 32 * 2 * 4;

/// A map-side combiner over a fused chain; emits `(key, accumulator)` rows.
pub struct PartialAggOp<I, K, A, G> {
    step: String,
    what: String,
    chain: ChainFactory<I>,
    fold: Arc<G>,
    codec: RowCodec<(K, A)>,
}

impl<I, K, A, G: Fold<I, K, A>> PartialAggOp<I, K, A, G>
where
    I: 'static,
    K: Data + Hash + Eq,
    A: Data,
{
    /// A combiner named `step`, described as `what` in EXPLAIN, folding
    /// each row into the table with `fold`.
    pub fn new(
        step: String,
        what: String,
        chain: ChainFactory<I>,
        fold: G,
        codec: RowCodec<(K, A)>,
    ) -> Self {
        Self {
            step,
            what,
            chain,
            fold: Arc::new(fold),
            codec,
        }
    }
}

impl<I, K, A, G> fmt::Debug for PartialAggOp<I, K, A, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartialAggOp({})", self.step)
    }
}

struct State<I, K, A> {
    chain: Box<dyn Chain<I>>,
    map: KeyTable<K, A>,
    reservation: MemoryReservation,
    /// Most bytes this map may hold: a quarter of the budget shared by the partitions.
    cap: usize,
    /// Rows folded in since the map was last emitted.
    fed: usize,
    /// Whether the reduction was judged yet.
    probed: bool,
    /// Whether the map is kept small (it was judged not to reduce).
    small: bool,
    /// Rows a small map gave up within the current batch, to encode after it.
    out: Vec<(K, A)>,
}

/// Empties a small map onto `out` once it holds [`SMALL_TABLE`] keys,
/// checked after each run of rows, not each batch: a batch of lines can
/// hold ten times as many words, and a table grown to a batch's keys
/// misses the cache on every insertion and every drain.
#[inline]
fn drain_small<K: Hash + Eq + 'static, A>(
    map: &mut KeyTable<K, A>,
    fed: &mut usize,
    small: &mut bool,
    out: &mut Vec<(K, A)>,
) {
    if !*small || map.len() < SMALL_TABLE {
        return;
    }
    if map.len() * 2 < *fed {
        // Keys repeat again: let the map grow.
        *small = false;
    }
    *fed = 0;
    if map.bytes(0) > SMALL_TABLE_BYTES {
        // Grown before it was judged: given up for one that stays small.
        out.extend(std::mem::take(map).drain());
    } else {
        // Emptied in place: a small map keeps its memory.
        out.extend(map.drain());
    }
}

impl<I, K: Data + Hash + Eq, A: Data> State<I, K, A> {
    /// Emits and clears the map when it is over budget; returns flushed batches.
    fn maybe_flush(
        &mut self,
        step: &str,
        codec: &RowCodec<(K, A)>,
        batch_rows: usize,
    ) -> Result<Vec<RecordBatch>, StepError> {
        if !self.probed && self.fed >= PROBE_ROWS {
            self.probed = true;
            self.small = self.map.len() as f64 > POOR_REDUCTION * self.fed as f64;
            drain_small(&mut self.map, &mut self.fed, &mut self.small, &mut self.out);
        }
        let drained = encode_chunks(step, codec, &self.out, batch_rows)?;
        self.out.clear();
        if self.small {
            // A small map fits any budget the large one did: shrinking never fails.
            let _ = self.reservation.try_resize(self.map.bytes(HEAP_GUESS));
            return Ok(drained);
        }
        let want = self.map.bytes(HEAP_GUESS);
        if self.map.len() < MAX_ENTRIES
            && want <= self.cap
            && self.reservation.try_resize(want).is_ok()
        {
            return Ok(drained);
        }
        let mut batches = drained;
        batches.extend(self.flush(step, codec, batch_rows)?);
        Ok(batches)
    }

    /// Emits and clears the map, and whatever a small map gave up.
    fn flush(
        &mut self,
        step: &str,
        codec: &RowCodec<(K, A)>,
        batch_rows: usize,
    ) -> Result<Vec<RecordBatch>, StepError> {
        let mut rows: Vec<(K, A)> = std::mem::take(&mut self.out);
        rows.extend(std::mem::take(&mut self.map).drain());
        self.reservation.free();
        self.fed = 0;
        encode_chunks(step, codec, &rows, batch_rows)
    }
}

impl<I, K, A, G: Fold<I, K, A>> PartitionOp for PartialAggOp<I, K, A, G>
where
    I: 'static,
    K: Data + Hash + Eq,
    A: Data,
{
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        format!("partial {}", self.what)
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
        let cap = super::memory_share(&context).unwrap_or(usize::MAX);
        let reservation = MemoryConsumer::new(format!("{}[{partition}]", self.step))
            .with_can_spill(true)
            .register(context.memory_pool());
        let chain = guarded(&self.step, || Ok((self.chain)()))?;
        let (step, step2) = (self.step.clone(), self.step.clone());
        let (codec, codec2) = (self.codec.clone(), self.codec.clone());
        let (fold, fold2) = (self.fold.clone(), self.fold.clone());
        Ok(stateful_stream(
            self.schema(),
            input,
            State {
                chain,
                map: KeyTable::default(),
                reservation,
                cap,
                fed: 0,
                probed: false,
                small: false,
                out: Vec::new(),
            },
            Box::new(move |st: &mut State<I, K, A>, batch| {
                let State {
                    chain,
                    map,
                    fed,
                    small,
                    out,
                    ..
                } = st;
                guarded(&step, || {
                    chain.push_batch(&batch, &mut |rows: &mut Vec<I>| {
                        *fed += rows.len();
                        fold_run(map, rows, &*fold);
                        drain_small(map, fed, small, out);
                    })
                })?;
                Ok(st.maybe_flush(&step, &codec, batch_rows)?)
            }),
            Box::new(move |st: &mut State<I, K, A>| {
                let State { chain, map, .. } = st;
                guarded(&step2, || {
                    chain.finish(&mut |rows: &mut Vec<I>| fold_run(map, rows, &*fold2))
                })?;
                Ok(st.flush(&step2, &codec2, batch_rows)?)
            }),
        ))
    }
}
