//! Fused chains of per-row functions.
//!
//! Consecutive closure steps (`map`, `flat_map`, `filter`, `key_by`,
//! `map_values`, MapReduce mappers) fuse into one chain: a batch is decoded
//! once, every row is pushed through all steps, and the result is encoded once
//! (or consumed directly by a combiner, never encoded at all). A chain is built
//! per partition from a [`ChainFactory`], so per-task state (mrjob's
//! `mapper_init` / `mapper_final`) has a home.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use super::{StepName, call_user};
use crate::error::StepError;
use crate::rows::{Data, RowCodec};

/// One partition's instance of a fused chain producing rows of `T`.
pub trait Chain<T>: Send {
    /// Pushes every row the chain produces from `batch` into `emit`.
    fn push_batch(&mut self, batch: &RecordBatch, emit: &mut dyn FnMut(T))
    -> Result<(), StepError>;
    /// Called once after the last batch (task-final hooks emit here).
    fn finish(&mut self, emit: &mut dyn FnMut(T)) -> Result<(), StepError>;
}

/// Builds a chain for one partition.
pub type ChainFactory<T> = Arc<dyn Fn() -> Box<dyn Chain<T>> + Send + Sync>;

/// The start of every chain: decodes batches into rows.
struct Decode<T> {
    codec: RowCodec<T>,
    step: StepName,
}

impl<T: Data> Chain<T> for Decode<T> {
    fn push_batch(
        &mut self,
        batch: &RecordBatch,
        emit: &mut dyn FnMut(T),
    ) -> Result<(), StepError> {
        self.codec.for_each(batch, emit).map_err(|e| StepError {
            step: self.step.to_string(),
            message: e.to_string(),
        })
    }
    fn finish(&mut self, _emit: &mut dyn FnMut(T)) -> Result<(), StepError> {
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

/// Per-row function of a stage with task state `S`.
pub type EachFn<S, T, U> = Arc<dyn Fn(&mut S, T, &mut dyn FnMut(U)) + Send + Sync>;
/// Task-final function of a stage with task state `S`.
pub type EndFn<S, U> = Arc<dyn Fn(&mut S, &mut dyn FnMut(U)) + Send + Sync>;

struct Stage<S, T, U> {
    inner: Box<dyn Chain<T>>,
    state: S,
    step: StepName,
    each: EachFn<S, T, U>,
    end: Option<EndFn<S, U>>,
    _u: PhantomData<fn() -> U>,
}

impl<S: Send, T: 'static, U: 'static> Chain<U> for Stage<S, T, U> {
    fn push_batch(
        &mut self,
        batch: &RecordBatch,
        emit: &mut dyn FnMut(U),
    ) -> Result<(), StepError> {
        let Stage {
            inner,
            state,
            step,
            each,
            ..
        } = self;
        inner.push_batch(batch, &mut |t| call_user(step, || each(state, t, emit)))
    }

    fn finish(&mut self, emit: &mut dyn FnMut(U)) -> Result<(), StepError> {
        let Stage {
            inner,
            state,
            step,
            each,
            end,
            ..
        } = self;
        inner.finish(&mut |t| call_user(step, || each(state, t, emit)))?;
        if let Some(end) = end {
            call_user(step, || end(state, emit));
        }
        Ok(())
    }
}

/// Appends a stage with per-task state to a chain.
pub fn stage<S, T, U>(
    prev: ChainFactory<T>,
    step: StepName,
    init: Arc<dyn Fn() -> S + Send + Sync>,
    each: EachFn<S, T, U>,
    end: Option<EndFn<S, U>>,
) -> ChainFactory<U>
where
    S: Send + 'static,
    T: 'static,
    U: 'static,
{
    Arc::new(move || {
        let state = call_user(&step, || init());
        Box::new(Stage {
            inner: prev(),
            state,
            step: step.clone(),
            each: each.clone(),
            end: end.clone(),
            _u: PhantomData,
        })
    })
}

/// Appends a stateless stage.
pub fn stateless<T: 'static, U: 'static>(
    prev: ChainFactory<T>,
    step: StepName,
    each: impl Fn(T, &mut dyn FnMut(U)) + Send + Sync + 'static,
) -> ChainFactory<U> {
    stage(
        prev,
        step,
        Arc::new(|| ()),
        Arc::new(move |_: &mut (), t, emit| each(t, emit)),
        None,
    )
}
