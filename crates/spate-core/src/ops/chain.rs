//! Fused chains of per-row functions.
//!
//! Consecutive closure steps (`map`, `flat_map`, `filter`, `key_by`,
//! `map_values`, MapReduce mappers) fuse into one chain: a batch is decoded
//! once, every row is pushed through all steps, and the result is encoded once
//! (or consumed directly by a combiner, never encoded at all). A chain is built
//! per partition from a [`ChainFactory`], so per-task state (mrjob's
//! `mapper_init` / `mapper_final`) has a home.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;

use super::{StepName, call_user};
use crate::error::StepError;
use crate::rows::{Data, RowCodec};

/// Where a chain's rows go: runs of rows in a `Vec`, which the receiver
/// takes whole (drains). Handing over runs instead of single rows keeps one
/// indirect call per run, not per row: the producing stage fills the run
/// with its own (inlined) code, the consumer empties it with its own.
pub type Emit<'a, T> = &'a mut dyn FnMut(&mut Vec<T>);

/// Rows a stage collects before handing them on.
const RUN: usize = 512;

/// One partition's instance of a fused chain producing rows of `T`.
pub trait Chain<T>: Send {
    /// Pushes every row the chain produces from `batch` into `emit`, in
    /// order, as runs.
    fn push_batch(&mut self, batch: &RecordBatch, emit: Emit<'_, T>) -> Result<(), StepError>;
    /// Called once after the last batch (task-final hooks emit here).
    fn finish(&mut self, emit: Emit<'_, T>) -> Result<(), StepError>;
}

/// Builds a chain for one partition.
pub type ChainFactory<T> = Arc<dyn Fn() -> Box<dyn Chain<T>> + Send + Sync>;

/// The start of every chain: decodes batches into rows.
struct Decode<T> {
    codec: RowCodec<T>,
    step: StepName,
}

impl<T: Data> Chain<T> for Decode<T> {
    fn push_batch(&mut self, batch: &RecordBatch, emit: Emit<'_, T>) -> Result<(), StepError> {
        self.codec
            .decode_runs(batch, RUN, emit)
            .map_err(|e| StepError {
                step: self.step.to_string(),
                message: e.to_string(),
            })
    }
    fn finish(&mut self, _emit: Emit<'_, T>) -> Result<(), StepError> {
        Ok(())
    }
}

/// A chain that only decodes rows of `T`.
pub fn decode_chain<T: Data>(codec: RowCodec<T>, step: StepName) -> ChainFactory<T> {
    Arc::new(move || {
        Box::new(Decode {
            codec: codec.clone(),
            step: step.clone(),
        })
    })
}

/// Per-line function of a stage that borrows its lines: outputs are pushed
/// onto the current run.
pub trait LineFn<U>: Fn(&str, &mut Vec<U>) + Send + Sync + 'static {}
impl<U, F: Fn(&str, &mut Vec<U>) + Send + Sync + 'static> LineFn<U> for F {}

/// The start of a chain whose first stage borrows each line from its
/// batch's string array, where [`Decode`] would copy it into a `String`:
/// no allocation, copy or free per line. The function's type is a
/// parameter: the loop over a batch's lines calls it directly (inlined),
/// not through a pointer per line.
struct BorrowLines<U, F> {
    codec: RowCodec<String>,
    step: StepName,
    each: Arc<F>,
    run: Vec<U>,
}

impl<U: Send + 'static, F: LineFn<U>> Chain<U> for BorrowLines<U, F> {
    fn push_batch(&mut self, batch: &RecordBatch, emit: Emit<'_, U>) -> Result<(), StepError> {
        let BorrowLines {
            codec,
            step,
            each,
            run,
        } = self;
        let strings = batch
            .columns()
            .first()
            .and_then(|c| c.as_string_opt::<i32>());
        match strings {
            Some(a) if batch.num_columns() == 1 && a.null_count() == 0 => {
                let lines = (0..a.len()).map(|i| a.value(i));
                feed_with(step, lines, run, emit, |line, run| each(line, run))
            }
            // Other string types, or nulls (which decoding reports): decoded.
            _ => codec
                .decode_runs(batch, RUN, &mut |rows: &mut Vec<String>| {
                    feed_with(step, rows.iter(), run, emit, |line, run| each(line, run))
                })
                .map_err(|e| StepError {
                    step: step.to_string(),
                    message: e.to_string(),
                })?,
        }
        flush(run, emit);
        Ok(())
    }
    fn finish(&mut self, _emit: Emit<'_, U>) -> Result<(), StepError> {
        Ok(())
    }
}

/// A chain that starts with a stage borrowing each line of its batches.
pub fn borrow_lines_chain<U: Send + 'static, F: LineFn<U>>(
    codec: RowCodec<String>,
    step: StepName,
    each: Arc<F>,
) -> ChainFactory<U> {
    Arc::new(move || {
        Box::new(BorrowLines {
            codec: codec.clone(),
            step: step.clone(),
            each: each.clone(),
            run: Vec::new(),
        })
    })
}

/// Per-row function of a stage with task state `S` (as users write it:
/// one call of `emit` per output).
pub type EachFn<S, T, U> = Arc<dyn Fn(&mut S, T, &mut dyn FnMut(U)) + Send + Sync>;
/// Task-final function of a stage with task state `S`.
pub type EndFn<S, U> = Arc<dyn Fn(&mut S, &mut dyn FnMut(U)) + Send + Sync>;
/// Per-row function of a stage as the chain runs it: outputs are pushed
/// onto the current run.
pub type RunFn<S, T, U> = Arc<dyn Fn(&mut S, T, &mut Vec<U>) + Send + Sync>;

struct Stage<S, T, U> {
    inner: Box<dyn Chain<T>>,
    state: S,
    step: StepName,
    each: RunFn<S, T, U>,
    end: Option<EndFn<S, U>>,
    run: Vec<U>,
}

/// Hands `run` on if it holds anything; it is empty afterwards.
fn flush<U>(run: &mut Vec<U>, emit: Emit<'_, U>) {
    if !run.is_empty() {
        emit(run);
        run.clear();
    }
}

/// Runs `each` over a run of input rows, handing its outputs on whenever
/// `RUN` of them have gathered.
fn feed<S, T, U>(
    step: &StepName,
    state: &mut S,
    each: &RunFn<S, T, U>,
    rows: &mut Vec<T>,
    run: &mut Vec<U>,
    emit: Emit<'_, U>,
) {
    feed_with(step, rows.drain(..), run, emit, |t, run| {
        each(state, t, run)
    });
}

/// Calls `each` (user code) on every row, handing its outputs on whenever
/// `RUN` of them have gathered.
fn feed_with<T, U>(
    step: &StepName,
    rows: impl Iterator<Item = T>,
    run: &mut Vec<U>,
    emit: Emit<'_, U>,
    mut each: impl FnMut(T, &mut Vec<U>),
) {
    // Metrics updated by `each` belong to this step: noted once per run of
    // rows, and again after handing a run on (the stages after this one,
    // which `flush` runs, note their own).
    crate::shared::in_step(step);
    for t in rows {
        call_user(step, || each(t, run));
        if run.len() >= RUN {
            flush(run, emit);
            crate::shared::in_step(step);
        }
    }
}

impl<S: Send, T: 'static, U: Send + 'static> Chain<U> for Stage<S, T, U> {
    fn push_batch(&mut self, batch: &RecordBatch, emit: Emit<'_, U>) -> Result<(), StepError> {
        let Stage {
            inner,
            state,
            step,
            each,
            run,
            ..
        } = self;
        inner.push_batch(batch, &mut |rows| feed(step, state, each, rows, run, emit))?;
        flush(run, emit);
        Ok(())
    }

    fn finish(&mut self, emit: Emit<'_, U>) -> Result<(), StepError> {
        let Stage {
            inner,
            state,
            step,
            each,
            end,
            run,
        } = self;
        inner.finish(&mut |rows| feed(step, state, each, rows, run, emit))?;
        if let Some(end) = end {
            crate::shared::in_step(step);
            call_user(step, || end(state, &mut |u| run.push(u)));
        }
        flush(run, emit);
        Ok(())
    }
}

/// Appends a stage with per-task state to a chain.
pub fn stage<S, T, U>(
    prev: ChainFactory<T>,
    step: StepName,
    init: Arc<dyn Fn() -> S + Send + Sync>,
    each: RunFn<S, T, U>,
    end: Option<EndFn<S, U>>,
) -> ChainFactory<U>
where
    S: Send + 'static,
    T: 'static,
    U: Send + 'static,
{
    Arc::new(move || {
        crate::shared::in_step(&step);
        let state = call_user(&step, || init());
        Box::new(Stage {
            inner: prev(),
            state,
            step: step.clone(),
            each: each.clone(),
            end: end.clone(),
            run: Vec::new(),
        })
    })
}

/// Appends a stateless stage: `each` pushes a row's outputs onto the run.
pub fn stateless<T: 'static, U: Send + 'static>(
    prev: ChainFactory<T>,
    step: StepName,
    each: impl Fn(T, &mut Vec<U>) + Send + Sync + 'static,
) -> ChainFactory<U> {
    stage(
        prev,
        step,
        Arc::new(|| ()),
        Arc::new(move |_: &mut (), t, emit| each(t, emit)),
        None,
    )
}
