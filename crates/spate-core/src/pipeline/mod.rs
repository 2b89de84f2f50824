//! The Beam face: `Pipeline`, `PCollection<T>`, named `PTransform`s.
//!
//! `apply("Name", transform)` expands the transform inside the name scope
//! `Name`, so every step it creates is called `Name/...` (nested composites
//! give `Outer/Inner/...`). Steps applied without a name get deterministic
//! ones. Names label EXPLAIN output and metrics and address closures in the
//! codec. Writes are deferred until [`Pipeline::run`], as in Beam.
//!
//! **One run for every sink.** A collection read by more than one
//! transform is computed once per run and kept for the others (in memory
//! within the budget, then on disk; on a cluster, where nothing is kept,
//! each reader computes it). `run` stages every write, and publishes them
//! only when all have been written: if one fails, none appears.

use std::hash::Hash;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::combine::CombineFn;
use crate::context::Context;
use crate::dataset::{Dataset, Key, SharedUse, WriteSummary};
use crate::error::{Error, Result};
use crate::rows::Data;

mod combiners;
mod grouping;
mod pardo;
mod side;

pub use combiners::{
    Combined, CombinedPerKey, Extreme, Keys, KvSwap, ListOf, Max, Min, Sample, SampleN, ToList,
    TopN, Values,
};
pub use grouping::{CoGbkResult, CoGroupByKey, Distinct, Flatten, Partition, Reshuffle};
pub use pardo::{DoFn, DoOut, DoOutputs, ParDo, ParDoWithOutputs, TupleTag};
pub use side::{AsDict, AsIter, AsList, AsMultiMap, AsSingleton, Materialize, SideInput};

/// A write, staged (not yet published) when it runs.
type Sink = Box<dyn FnOnce() -> Result<Option<spate_io::output::StagedWrite>> + Send>;

struct PipelineInner {
    ctx: Context,
    sinks: Mutex<Vec<(String, PathBuf, Sink)>>,
    errors: Mutex<Vec<Error>>,
    /// Every collection's consumer count, to release what a run kept.
    shared: Mutex<Vec<Arc<SharedUse>>>,
    /// The `DoFn` instances of every `ParDo`, torn down when a run ends.
    pools: Mutex<Vec<Arc<dyn pardo::Teardown>>>,
}

/// A pipeline: a graph of named transforms, run by [`run`](Self::run).
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<PipelineInner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipeline")
    }
}

/// What [`Pipeline::run`] reports: its writes, its state and its metrics
/// (Beam's `PipelineResult`).
#[derive(Debug, Clone)]
pub struct PipelineResult {
    /// `(step name, summary)` of every write, in the order applied.
    pub writes: Vec<(String, WriteSummary)>,
    metrics: crate::metrics::MetricResults,
}

/// The state of a pipeline run (Beam's `PipelineState`). `run` returns
/// when the run has ended: a result is always `Done` (a failed run is an
/// error instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipelineState {
    /// Every write published.
    Done,
}

impl PipelineResult {
    /// The run's state.
    pub fn state(&self) -> PipelineState {
        PipelineState::Done
    }

    /// Waits for the run to end (it has: `run` returns when it ends) and
    /// returns its state.
    pub fn wait_until_finish(&self) -> PipelineState {
        self.state()
    }

    /// The metric values committed by the run's steps (Beam's
    /// `metrics().query(filter)`).
    pub fn metrics(&self) -> &crate::metrics::MetricResults {
        &self.metrics
    }
}

/// The input of root transforms (reads, `Create`).
#[derive(Clone, Debug)]
pub struct PBegin {
    pipeline: Pipeline,
}

impl PBegin {
    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

/// A transform from `In` to `Self::Out`; composites call `apply` on their input.
pub trait PTransform<In> {
    /// What the transform produces.
    type Out;
    /// Builds the transform's steps.
    fn expand(self, input: In) -> Self::Out;
}

/// A distributed collection of `T` in a pipeline.
pub struct PCollection<T> {
    pipeline: Pipeline,
    ds: Dataset<T>,
    /// How many transforms read it.
    shared: Arc<SharedUse>,
}

impl<T> Clone for PCollection<T> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
            ds: self.ds.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for PCollection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PCollection<{}>", std::any::type_name::<T>())
    }
}

/// Marks a transform that produces nothing (a write).
#[derive(Debug, Clone, Copy)]
pub struct PDone;

impl Pipeline {
    /// A pipeline on a new default context (every core).
    pub fn new() -> Result<Self> {
        Ok(Self::with_context(Context::new()?))
    }

    /// A pipeline on the given context.
    pub fn with_context(ctx: Context) -> Self {
        Self {
            inner: Arc::new(PipelineInner {
                ctx,
                sinks: Mutex::new(Vec::new()),
                errors: Mutex::new(Vec::new()),
                shared: Mutex::new(Vec::new()),
                pools: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The context the pipeline runs in.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// Applies a root transform under the step name `name`.
    pub fn apply<X: PTransform<PBegin>>(&self, name: &str, transform: X) -> X::Out {
        let begin = PBegin {
            pipeline: self.clone(),
        };
        self.inner.ctx.in_scope(name, || transform.expand(begin))
    }

    /// Wraps a dataset as a collection of this pipeline.
    pub fn collection<T: Data>(&self, ds: Dataset<T>) -> PCollection<T> {
        let shared = Arc::new(SharedUse::default());
        self.inner.shared.lock().push(shared.clone());
        PCollection {
            pipeline: self.clone(),
            ds: ds.shared_by(shared.clone()),
            shared,
        }
    }

    /// Keeps a `ParDo`'s instances, to tear them down when a run ends.
    pub(crate) fn keep_for_teardown(&self, pool: Arc<dyn pardo::Teardown>) {
        self.inner.pools.lock().push(pool);
    }

    /// Records an error found while building (reported by `run`).
    pub(crate) fn fail(&self, e: Error) {
        self.inner.errors.lock().push(e);
    }

    /// [`Pipeline::run`] from async code (see [`crate::Context::unblock`]).
    pub async fn run_async(&self) -> Result<PipelineResult> {
        let pipeline = self.clone();
        crate::Context::unblock(move || pipeline.run()).await
    }

    /// Runs every write of the pipeline, in the order they were applied,
    /// each collection computed once; publishes the writes only when all
    /// of them are written (if one fails, none appears).
    pub fn run(&self) -> Result<PipelineResult> {
        if let Some(e) = self.inner.errors.lock().drain(..).next() {
            return Err(e);
        }
        let sinks: Vec<(String, PathBuf, Sink)> = std::mem::take(&mut *self.inner.sinks.lock());
        // Writes are published one after another: targets that collide
        // would fail the second after the first is in place.
        for (i, (name, dir, _)) in sinks.iter().enumerate() {
            for (other, odir, _) in &sinks[..i] {
                let (a, b) = (absolute(dir), absolute(odir));
                if a.starts_with(&b) || b.starts_with(&a) {
                    return Err(Error::Usage(format!(
                        "writes {other} and {name} go to {} and {}: one is inside the other",
                        odir.display(),
                        dir.display()
                    )));
                }
            }
        }
        // Metrics committed before the run are not the run's.
        let _ = self.context().take_metrics();
        let staged = self.stage_all(sinks);
        for shared in self.inner.shared.lock().iter() {
            shared.release();
        }
        for pool in self.inner.pools.lock().iter() {
            pool.teardown_all();
        }
        let mut writes = Vec::new();
        for (name, dir, staged) in staged? {
            let summary = match staged {
                Some(staged) => staged.publish()?,
                None => WriteSummary::not_written(dir),
            };
            writes.push((name, summary));
        }
        Ok(PipelineResult {
            writes,
            metrics: self.context().take_metrics(),
        })
    }

    /// Runs each sink up to publishing; the first failure drops (removes)
    /// the ones staged before it.
    #[allow(clippy::type_complexity)]
    fn stage_all(
        &self,
        sinks: Vec<(String, PathBuf, Sink)>,
    ) -> Result<Vec<(String, PathBuf, Option<spate_io::output::StagedWrite>)>> {
        let mut staged = Vec::new();
        for (name, dir, sink) in sinks {
            let write = sink().map_err(|e| match e {
                Error::Step { .. } | Error::Input(_) | Error::Usage(_) => e,
                other => Error::Plan(format!("write {name} to {}: {other}", dir.display())),
            })?;
            staged.push((name, dir, write));
        }
        Ok(staged)
    }
}

/// `dir` made absolute (as far as it can be) for comparing write targets.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

impl<T: Data> PCollection<T> {
    /// Applies a transform under the step name `name`.
    pub fn apply<X: PTransform<PCollection<T>>>(self, name: &str, transform: X) -> X::Out {
        let ctx = self.pipeline.inner.ctx.clone();
        ctx.in_scope(name, || transform.expand(self))
    }

    /// The collection as a `Dataset` (same plan).
    pub fn dataset(&self) -> &Dataset<T> {
        &self.ds
    }

    /// Consumes the collection into its `Dataset`.
    pub fn into_dataset(self) -> Dataset<T> {
        self.ds
    }

    /// The pipeline the collection belongs to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// A new collection of the same pipeline.
    pub fn with<U: Data>(&self, ds: Dataset<U>) -> PCollection<U> {
        self.pipeline.collection(ds)
    }

    /// This collection's dataset, counted as read by one more transform
    /// (what every transform reads its input with: a collection read by
    /// several is computed once per run).
    pub fn consume(&self) -> Dataset<T> {
        self.shared.consumed();
        self.ds.clone()
    }

    /// EXPLAIN output for the collection's plan.
    pub fn explain(&self) -> Result<String> {
        self.ds.explain()
    }
}

/// Reads text files as lines (Beam's `ReadFromText`).
#[derive(Debug, Clone)]
pub struct ReadText {
    paths: Vec<PathBuf>,
}

impl ReadText {
    /// Reads files, directories or globs.
    pub fn from<P: AsRef<Path>>(paths: &[P]) -> Self {
        Self {
            paths: paths.iter().map(|p| p.as_ref().to_path_buf()).collect(),
        }
    }
}

impl PTransform<PBegin> for ReadText {
    type Out = PCollection<String>;
    fn expand(self, input: PBegin) -> PCollection<String> {
        let p = input.pipeline;
        let ds = match p.context().read_text(&self.paths) {
            Ok(ds) => ds,
            Err(e) => {
                // Every consumer of the collection gets the error, and so
                // does `run`.
                let ds = p.context().failed(&e);
                p.fail(e);
                ds
            }
        };
        p.collection(ds)
    }
}

/// Creates a collection from in-memory values (Beam's `Create`).
#[derive(Debug, Clone)]
pub struct Create<T>(pub Vec<T>);

impl<T: Data> PTransform<PBegin> for Create<T> {
    type Out = PCollection<T>;
    fn expand(self, input: PBegin) -> PCollection<T> {
        let ds = input.pipeline.context().from_vec(self.0);
        input.pipeline.collection(ds)
    }
}

/// Writes text lines into a directory, when the pipeline runs (Beam's `WriteToText`).
#[derive(Debug, Clone)]
pub struct WriteText {
    dir: PathBuf,
}

impl WriteText {
    /// Writes into `dir` (which must not exist yet).
    pub fn to(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
        }
    }
}

impl<T: Data> PTransform<PCollection<T>> for WriteText {
    type Out = PDone;
    fn expand(self, input: PCollection<T>) -> PDone {
        let name = input.pipeline.context().step_name("write_text");
        let ds = input.consume();
        let dir = self.dir;
        let target = dir.clone();
        input.pipeline.inner.sinks.lock().push((
            name,
            target,
            Box::new(move || ds.stage_text(&dir)),
        ));
        PDone
    }
}

/// Side inputs a step declared.
type Sides = Vec<Arc<dyn Materialize>>;

/// Applies a function to each element (Beam's `Map`).
pub struct Map<F, U> {
    f: F,
    sides: Sides,
    _u: PhantomData<fn() -> U>,
}

impl<F, U> Map<F, U> {
    /// Maps with `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            sides: Vec::new(),
            _u: PhantomData,
        }
    }

    /// Declares a side input `f` reads (computed before the step runs).
    pub fn with_side<S: Data>(mut self, side: &SideInput<S>) -> Self {
        self.sides.push(Arc::new(side.clone()));
        self
    }
}

impl<T: Data, U: Data, F: Fn(T) -> U + Send + Sync + 'static> PTransform<PCollection<T>>
    for Map<F, U>
{
    type Out = PCollection<U>;
    fn expand(self, input: PCollection<T>) -> PCollection<U> {
        let ds = side::after_sides(input.consume(), self.sides).map(self.f);
        input.with(ds)
    }
}

/// Applies a function returning many elements to each element (Beam's `FlatMap`).
pub struct FlatMap<F, I> {
    f: F,
    sides: Sides,
    _i: PhantomData<fn() -> I>,
}

impl<F, I> FlatMap<F, I> {
    /// Flat-maps with `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            sides: Vec::new(),
            _i: PhantomData,
        }
    }

    /// Declares a side input `f` reads (computed before the step runs).
    pub fn with_side<S: Data>(mut self, side: &SideInput<S>) -> Self {
        self.sides.push(Arc::new(side.clone()));
        self
    }
}

impl<T, I, F> PTransform<PCollection<T>> for FlatMap<F, I>
where
    T: Data,
    I: IntoIterator + 'static,
    I::Item: Data,
    F: Fn(T) -> I + Send + Sync + 'static,
{
    type Out = PCollection<I::Item>;
    fn expand(self, input: PCollection<T>) -> PCollection<I::Item> {
        let ds = side::after_sides(input.consume(), self.sides).flat_map(self.f);
        input.with(ds)
    }
}

/// [`FlatMap`] for lines of text with each line borrowed from its batch
/// ([`Dataset::flat_map_lines`](crate::dataset::Dataset::flat_map_lines)):
/// no `String` is made per line. `f` pushes the line's outputs onto `out`.
///
/// ```
/// use spate_core::prelude::*;
/// let p = Pipeline::new()?;
/// let words = p
///     .apply("Lines", Create(vec!["To be, or".to_string(), "not to be".into()]))
///     .apply("Words", FlatMapLines::new(|line, out| out.extend(words(line))));
/// p.run()?;
/// assert_eq!(words.into_dataset().count()?, 6);
/// # Ok::<(), spate_core::Error>(())
/// ```
pub struct FlatMapLines<F, U> {
    f: F,
    sides: Sides,
    _u: PhantomData<fn() -> U>,
}

impl<F, U> FlatMapLines<F, U>
where
    U: Data,
    F: Fn(&str, &mut Vec<U>) + Send + Sync + 'static,
{
    /// Flat-maps each line with `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            sides: Vec::new(),
            _u: PhantomData,
        }
    }

    /// Declares a side input `f` reads (computed before the step runs).
    pub fn with_side<S: Data>(mut self, side: &SideInput<S>) -> Self {
        self.sides.push(Arc::new(side.clone()));
        self
    }
}

impl<F, U> PTransform<PCollection<String>> for FlatMapLines<F, U>
where
    U: Data,
    F: Fn(&str, &mut Vec<U>) + Send + Sync + 'static,
{
    type Out = PCollection<U>;
    fn expand(self, input: PCollection<String>) -> PCollection<U> {
        let ds = side::after_sides(input.consume(), self.sides).flat_map_lines(self.f);
        input.with(ds)
    }
}

/// Keeps the elements a predicate accepts (Beam's `Filter`).
pub struct Filter<F> {
    f: F,
    sides: Sides,
}

impl<F> Filter<F> {
    /// Filters with `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            sides: Vec::new(),
        }
    }

    /// Declares a side input `f` reads (computed before the step runs).
    pub fn with_side<S: Data>(mut self, side: &SideInput<S>) -> Self {
        self.sides.push(Arc::new(side.clone()));
        self
    }
}

impl<T: Data, F: Fn(&T) -> bool + Send + Sync + 'static> PTransform<PCollection<T>> for Filter<F> {
    type Out = PCollection<T>;
    fn expand(self, input: PCollection<T>) -> PCollection<T> {
        let ds = side::after_sides(input.consume(), self.sides).filter(self.f);
        input.with(ds)
    }
}

/// Counting transforms (Beam's `Count`).
#[derive(Debug, Clone, Copy)]
pub struct Count;

/// Counts each distinct element: `(element, count)`.
#[derive(Debug, Clone, Copy)]
pub struct CountPerElement;

/// Counts all elements: one `u64`.
#[derive(Debug, Clone, Copy)]
pub struct CountGlobally;

impl Count {
    /// `(element, count)` for each distinct element.
    pub fn per_element() -> CountPerElement {
        CountPerElement
    }
    /// The number of elements, as a one-element collection.
    pub fn globally() -> CountGlobally {
        CountGlobally
    }
}

impl<T: Data + Hash + Eq> PTransform<PCollection<T>> for CountPerElement {
    type Out = PCollection<(T, u64)>;
    fn expand(self, input: PCollection<T>) -> PCollection<(T, u64)> {
        let ds = input.consume().count_per_element();
        input.with(ds)
    }
}

impl<T: Data> PTransform<PCollection<T>> for CountGlobally {
    type Out = PCollection<u64>;
    fn expand(self, input: PCollection<T>) -> PCollection<u64> {
        // Counted per partition, then summed in one partition, which gives
        // 0 for an empty input, as in Beam.
        let ds = input
            .consume()
            .map(|_| 1u64)
            .combine_globally(crate::combine::Sum);
        input.with(ds)
    }
}

/// Combining transforms (Beam's `Combine`).
#[derive(Debug, Clone, Copy)]
pub struct Combine;

/// See [`Combine::globally`].
pub struct CombineGlobally<C>(C);

/// See [`Combine::per_key`].
pub struct CombinePerKey<C>(C);

impl Combine {
    /// Combines all elements into one value.
    pub fn globally<C>(c: C) -> CombineGlobally<C> {
        CombineGlobally(c)
    }
    /// Combines the values of each key.
    pub fn per_key<C>(c: C) -> CombinePerKey<C> {
        CombinePerKey(c)
    }
}

impl<T: Data, C: CombineFn<T>> PTransform<PCollection<T>> for CombineGlobally<C> {
    type Out = PCollection<C::Output>;
    fn expand(self, input: PCollection<T>) -> PCollection<C::Output> {
        let ds = input.consume().combine_globally(self.0);
        input.with(ds)
    }
}

impl<K: Key, V: Data, C: CombineFn<V>> PTransform<PCollection<(K, V)>> for CombinePerKey<C> {
    type Out = PCollection<(K, C::Output)>;
    fn expand(self, input: PCollection<(K, V)>) -> PCollection<(K, C::Output)> {
        let ds = input.consume().combine_per_key(self.0);
        input.with(ds)
    }
}

/// Groups values by key into lists (Beam's `GroupByKey`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupByKey;

impl<K: Key, V: Data> PTransform<PCollection<(K, V)>> for GroupByKey {
    type Out = PCollection<(K, Vec<V>)>;
    fn expand(self, input: PCollection<(K, V)>) -> PCollection<(K, Vec<V>)> {
        let ds = input.consume().group_by_key().collect_lists();
        input.with(ds)
    }
}

/// The greatest elements (Beam's `Top`).
#[derive(Debug, Clone, Copy)]
pub struct Top;

/// See [`Top::of`] and [`Top::by`].
pub struct TopOf<F, K> {
    n: usize,
    key: F,
    _k: PhantomData<fn() -> K>,
}

impl Top {
    /// The `n` greatest elements, greatest first.
    #[allow(clippy::type_complexity)]
    pub fn of<T: Ord + Clone>(n: usize) -> TopOf<fn(&T) -> T, T> {
        TopOf {
            n,
            key: T::clone,
            _k: PhantomData,
        }
    }
    /// The `n` elements with the greatest keys, greatest first.
    pub fn by<F, K>(n: usize, key: F) -> TopOf<F, K> {
        TopOf {
            n,
            key,
            _k: PhantomData,
        }
    }
}

impl<T: Data, K: Ord + Send + 'static, F: Fn(&T) -> K + Send + Sync + 'static>
    PTransform<PCollection<T>> for TopOf<F, K>
{
    type Out = PCollection<T>;
    fn expand(self, input: PCollection<T>) -> PCollection<T> {
        let ds = input.consume().top_by(self.n, self.key);
        input.with(ds)
    }
}
