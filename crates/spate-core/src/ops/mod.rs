//! The operators spate adds to DataFusion plans, one per file.
//!
//! - [`cache`]: keeps a dataset's batches for later jobs, and serves them.
//! - [`chain`]: fused chains of per-row user functions (map, flat_map, filter,
//!   mapper tasks), built per partition.
//! - [`map`]: runs a chain and encodes its rows (`MapOp`).
//! - [`partial`]: runs a chain into a bounded hash map — the map-side combiner.
//! - [`table`]: that combiner's hash table (short text keys packed).
//! - [`group`]: hands each key's values, sorted and streamed, to a user function.
//! - [`top`]: keeps the n greatest rows.
//! - [`indexed`]: hands rows to a function with their position (take, sample,
//!   zip_with_index).
//! - [`spread`]: deals rows into a fixed number of partitions.
//! - [`pull`]: hands a partition to a function as an iterator (foreach_partition).
//! - [`pipe`]: streams rows through a child process (Hadoop Streaming tasks).

pub mod cache;
pub mod chain;
pub mod group;
pub mod indexed;
pub mod map;
mod packed;
pub mod partial;
pub mod pull;
pub mod spread;
pub mod table;
pub mod top;

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::StepError;
use crate::rows::{Data, RowCodec};

/// A panic in user code, tagged with the step it happened in.
pub(crate) struct StepPanic {
    step: String,
    message: String,
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_string()
    }
}

/// Calls user code for `step`; a panic is re-raised tagged with the step name.
#[inline]
pub(crate) fn call_user<R>(step: &str, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            if payload.is::<StepPanic>() {
                resume_unwind(payload)
            }
            let message = format!(
                "user function panicked: {}",
                panic_message(payload.as_ref())
            );
            resume_unwind(Box::new(StepPanic {
                step: step.to_string(),
                message,
            }))
        }
    }
}

/// Runs `f`, turning a panic (tagged or not) into a [`StepError`].
pub(crate) fn guarded<R>(
    step: &str,
    f: impl FnOnce() -> Result<R, StepError>,
) -> Result<R, StepError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => match payload.downcast::<StepPanic>() {
            Ok(p) => Err(StepError {
                step: p.step,
                message: p.message,
            }),
            Err(other) => Err(StepError {
                step: step.to_string(),
                message: format!("panicked: {}", panic_message(other.as_ref())),
            }),
        },
    }
}

/// Encodes rows into batches of at most `batch_rows` rows.
pub(crate) fn encode_chunks<T: Data>(
    step: &str,
    codec: &RowCodec<T>,
    rows: &[T],
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, StepError> {
    rows.chunks(batch_rows.max(1))
        .map(|chunk| {
            codec.encode(chunk).map_err(|e| StepError {
                step: step.to_string(),
                message: e.to_string(),
            })
        })
        .collect()
}

type OnBatch<S> = Box<dyn FnMut(&mut S, RecordBatch) -> DfResult<Vec<RecordBatch>> + Send>;
type OnEnd<S> = Box<dyn FnOnce(&mut S) -> DfResult<Vec<RecordBatch>> + Send>;

struct Unfold<S> {
    input: SendableRecordBatchStream,
    state: S,
    on_batch: OnBatch<S>,
    on_end: Option<OnEnd<S>>,
    pending: VecDeque<RecordBatch>,
    done: bool,
}

/// A stream that feeds each input batch to `on_batch` and, at the end, calls
/// `on_end`; both return output batches. Errors end the stream.
pub(crate) fn stateful_stream<S: Send + 'static>(
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    state: S,
    on_batch: OnBatch<S>,
    on_end: OnEnd<S>,
) -> SendableRecordBatchStream {
    let st = Unfold {
        input,
        state,
        on_batch,
        on_end: Some(on_end),
        pending: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((Ok(b), st));
            }
            if st.done {
                return None;
            }
            match st.input.next().await {
                Some(Ok(batch)) => match (st.on_batch)(&mut st.state, batch) {
                    Ok(out) => st
                        .pending
                        .extend(out.into_iter().filter(|b| b.num_rows() > 0)),
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                },
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    if let Some(f) = st.on_end.take() {
                        match f(&mut st.state) {
                            Ok(out) => st
                                .pending
                                .extend(out.into_iter().filter(|b| b.num_rows() > 0)),
                            Err(e) => return Some((Err(e), st)),
                        }
                    }
                }
            }
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Shared, cheaply clonable step name.
pub(crate) type StepName = Arc<str>;

/// A quarter of one partition's share of the memory limit, if there is one:
/// what an operator may hold outside the pool's spilling consumers (map-side
/// combine tables, sorted runs for streaming combiners).
pub(crate) fn memory_share(context: &datafusion::execution::TaskContext) -> Option<usize> {
    match context.memory_pool().memory_limit() {
        datafusion::execution::memory_pool::MemoryLimit::Finite(limit) => {
            Some(limit / (4 * context.session_config().target_partitions().max(1)))
        }
        _ => None,
    }
}
