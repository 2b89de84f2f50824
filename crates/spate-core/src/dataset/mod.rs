//! `Dataset<T>`: a typed, lazy, partitioned collection (Spark's Dataset/RDD).
//!
//! Operations build a DataFusion `LogicalPlan` lazily. Consecutive closure
//! operations stay *pending* as one fused chain until something needs their
//! rows as Arrow columns; keyed operations consume the chain directly
//! (map-side combining), so `flat_map(..).count_by_value()` never encodes the
//! words it counts.

use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::common::Column;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr, cast};
use spate_io::source::InputFile;

use crate::context::Context;
use crate::error::Result;
use crate::node::{OpNode, PartitionOp, TextScanNode};
use crate::ops::chain::{ChainFactory, borrow_lines_chain, decode_chain, stage, stateless};
use crate::ops::map::MapOp;
use crate::ops::partial::{CountFold, PartialAggOp};
use crate::ops::top::{KeyFn, TopOp};
use crate::rows::{Data, RowCodec};

mod actions;
mod cache;
mod keyed;
mod reduce;
mod shape;

pub use cache::SharedUse;
pub use keyed::GroupedDataset;
pub(crate) use keyed::reduce_routed;

pub(crate) type Lazy<X> = Arc<dyn Fn() -> Result<X> + Send + Sync>;

/// Key types: hashable, comparable, clonable data.
pub trait Key: Data + Hash + Eq + Clone {}
impl<K: Data + Hash + Eq + Clone> Key for K {}

enum Kind<T> {
    /// A plan whose rows are `T`.
    Plan(Lazy<LogicalPlan>),
    /// A fused chain of closures over a plan (of some other row type).
    Chain {
        base: Lazy<LogicalPlan>,
        chain: Lazy<ChainFactory<T>>,
        steps: Vec<String>,
    },
}

impl<T> Clone for Kind<T> {
    fn clone(&self) -> Self {
        match self {
            Kind::Plan(p) => Kind::Plan(p.clone()),
            Kind::Chain { base, chain, steps } => Kind::Chain {
                base: base.clone(),
                chain: chain.clone(),
                steps: steps.clone(),
            },
        }
    }
}

/// A typed, lazily evaluated, partitioned collection of `T`.
///
/// ```
/// use spate_core::prelude::*;
/// let ctx = Context::new()?;
/// let counts = ctx
///     .from_vec(vec!["a b", "b c", "b"].into_iter().map(String::from).collect())
///     .flat_map(|line: String| line.split(' ').map(String::from).collect::<Vec<_>>())
///     .count_by_value()
///     .sort_by_key(true)
///     .collect()?;
/// assert_eq!(counts, vec![("a".into(), 1), ("b".into(), 3), ("c".into(), 1)]);
/// # Ok::<(), spate_core::Error>(())
/// ```
pub struct Dataset<T> {
    ctx: Context,
    kind: Kind<T>,
    /// The cache this dataset fills and reads, if it is persisted.
    cache: Option<Arc<crate::ops::cache::CacheSlot>>,
}

impl<T> Clone for Dataset<T> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            kind: self.kind.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Dataset<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dataset<{}>", std::any::type_name::<T>())
    }
}

pub use spate_io::output::WriteSummary;

/// A scan of in-memory rows, split into `parts` partitions.
pub(crate) fn rows_plan<T: Data>(step: &str, rows: &[T], parts: usize) -> Result<LogicalPlan> {
    let codec = RowCodec::<T>::new()?;
    let per = rows.len().div_ceil(parts).max(1);
    let mut partitions: Vec<Vec<RecordBatch>> = rows
        .chunks(per)
        .map(|c| codec.encode(c).map(|b| vec![b]))
        .collect::<Result<_>>()?;
    if partitions.is_empty() {
        partitions.push(vec![]);
    }
    let table = MemTable::try_new(codec.schema().clone(), partitions)?;
    Ok(LogicalPlanBuilder::scan(step, provider_as_source(Arc::new(table)), None)?.build()?)
}

fn col(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

fn qcol(rel: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(rel), name))
}

impl Context {
    /// Reads text files (files, directories, globs; `.gz` and `.zst` by
    /// extension) as lines. Large files are split on line boundaries so every
    /// core reads. Missing inputs fail here, before anything runs.
    ///
    /// An input may be an object-store URL — `s3://bucket/logs/`,
    /// `gs://bucket/2024-*/part-*.gz`, `az://...`, `https://host/file` —
    /// read with ranged requests, split like a local file. Its store is the
    /// one registered for the bucket in [`Context::session`]'s runtime, or
    /// one set up from the usual environment variables (`AWS_ENDPOINT`,
    /// `AWS_ACCESS_KEY_ID`, ...; see [`spate_io::store`]).
    pub fn read_text<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Dataset<String>> {
        let files = self.list_inputs(paths)?;
        Ok(self.read_text_files(files))
    }

    /// Reads each file whole as `(path, content)` (Spark's
    /// `wholeTextFiles`): files, directories, globs, object-store URLs as
    /// [`Context::read_text`] takes them; `.gz` and `.zst` decompressed. Files are not split, so each must fit in memory;
    /// content that is not UTF-8 fails naming the file and offset.
    ///
    /// ```
    /// use spate_core::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("a.txt"), "one\r\ntwo").unwrap();
    /// let ctx = Context::new()?;
    /// let files = ctx.whole_text_files(&[dir.path()])?.collect()?;
    /// assert_eq!(files.len(), 1);
    /// assert!(files[0].0.ends_with("a.txt"));
    /// assert_eq!(files[0].1, "one\r\ntwo");
    /// # Ok::<(), spate_core::Error>(())
    /// ```
    pub fn whole_text_files<P: AsRef<Path>>(
        &self,
        paths: &[P],
    ) -> Result<Dataset<(String, String)>> {
        let files = self.list_inputs(paths)?;
        let step = self.step_name("whole_text_files");
        let total: u64 = files.iter().map(|f| f.len).sum();
        self.progress().add_total(total);
        let files = Arc::new(files);
        let options = spate_io::source::LineOptions {
            whole_files: true,
            ..Default::default()
        };
        Ok(self.dataset(Arc::new(move || {
            Ok(TextScanNode::plan_with(step.clone(), &files, options)?)
        })))
    }

    /// A dataset whose every use fails with `error` (a source that could
    /// not be opened while the plan was being built).
    pub fn failed<T>(&self, error: &crate::error::Error) -> Dataset<T> {
        let error = Arc::new(error.replay());
        Dataset {
            ctx: self.clone(),
            kind: Kind::Plan(Arc::new(move || Err(error.replay()))),
            cache: None,
        }
    }

    /// Expands input paths, globs and object-store URLs into files (see
    /// [`Context::read_text`]); an input that matches nothing is an error.
    pub fn list_inputs<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<InputFile>> {
        let runtime = self.session().runtime_env();
        let paths: Vec<&Path> = paths.iter().map(AsRef::as_ref).collect();
        Ok(self.block_on(spate_io::source::list_inputs(&paths, &runtime))?)
    }

    /// Reads already-expanded text files.
    pub fn read_text_files(&self, files: Vec<InputFile>) -> Dataset<String> {
        let step = self.step_name("read_text");
        let total: u64 = files.iter().map(|f| f.len).sum();
        self.progress().add_total(total);
        let files = Arc::new(files);
        Dataset {
            ctx: self.clone(),
            kind: Kind::Plan(Arc::new(move || {
                Ok(TextScanNode::plan(step.clone(), &files)?)
            })),
            cache: None,
        }
    }

    /// A dataset of the given rows, split over the context's threads.
    pub fn from_vec<T: Data>(&self, rows: Vec<T>) -> Dataset<T> {
        let rows = Arc::new(rows);
        let parts = self.threads();
        let step = self.step_name("from_vec");
        self.dataset(Arc::new(move || rows_plan(&step, &rows, parts)))
    }

    /// A dataset whose rows are asked for each time its plan is built
    /// (once per action): `rows()` gives the rows of this run. One plan —
    /// the same steps under the same names — then runs over successive
    /// micro-batches of a stream (`spate-stream` sets what each batch
    /// holds before it runs the batch's action).
    pub fn from_each_run<T: Data>(
        &self,
        rows: impl Fn() -> Result<Vec<T>> + Send + Sync + 'static,
    ) -> Dataset<T> {
        let parts = self.threads();
        let step = self.step_name("from_each_run");
        self.dataset(Arc::new(move || rows_plan(&step, &rows()?, parts)))
    }

    /// Text lines of files asked for each time the plan is built (once per
    /// action), read as [`Context::read_text_files`] reads them: the
    /// micro-batches of a directory stream run one plan.
    pub fn read_text_each_run(
        &self,
        files: impl Fn() -> Result<Vec<InputFile>> + Send + Sync + 'static,
    ) -> Dataset<String> {
        let step = self.step_name("read_text");
        let progress = self.progress().clone();
        self.dataset(Arc::new(move || {
            let files = files()?;
            progress.add_total(files.iter().map(|f| f.len).sum());
            Ok(TextScanNode::plan(step.clone(), &files)?)
        }))
    }

    /// A dataset of the rows an iterator yields.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<T: Data>(&self, rows: impl IntoIterator<Item = T>) -> Dataset<T> {
        self.from_vec(rows.into_iter().collect())
    }

    /// Wraps a plan producing rows of `T`.
    pub(crate) fn dataset<T>(&self, plan: Lazy<LogicalPlan>) -> Dataset<T> {
        Dataset {
            ctx: self.clone(),
            kind: Kind::Plan(plan),
            cache: None,
        }
    }

    /// Builds a logical node for `op` and registers the op by its step name.
    pub(crate) fn op_plan(
        &self,
        op: Arc<dyn PartitionOp>,
        input: LogicalPlan,
    ) -> Result<LogicalPlan> {
        self.registry().register(op.clone());
        Ok(OpNode::plan(op, input)?)
    }
}

impl<T: Data> Dataset<T> {
    /// The context this dataset runs in.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The pending chain (or a decoding chain over the plan), for a consumer named `step`.
    fn into_chain(
        self,
        step: &str,
    ) -> (
        Context,
        Lazy<LogicalPlan>,
        Lazy<ChainFactory<T>>,
        Vec<String>,
    ) {
        match self.kind {
            Kind::Chain { base, chain, steps } => (self.ctx, base, chain, steps),
            Kind::Plan(plan) => {
                let step: Arc<str> = Arc::from(step);
                let chain: Lazy<ChainFactory<T>> =
                    Arc::new(move || Ok(decode_chain(RowCodec::<T>::new()?, step.clone())));
                (self.ctx, plan, chain, Vec::new())
            }
        }
    }

    fn push_stage<U: Data>(
        self,
        kind: &str,
        make: impl Fn(ChainFactory<T>, Arc<str>) -> ChainFactory<U> + Send + Sync + 'static,
    ) -> Dataset<U> {
        let name = self.ctx.step_name(kind);
        let (ctx, base, chain, mut steps) = self.into_chain(&name);
        steps.push(name.clone());
        let step: Arc<str> = Arc::from(name.as_str());
        let chain: Lazy<ChainFactory<U>> = Arc::new(move || Ok(make(chain()?, step.clone())));
        Dataset {
            ctx,
            kind: Kind::Chain { base, chain, steps },
            cache: None,
        }
    }

    /// The logical plan producing this dataset's rows (materializing pending closures).
    pub fn logical_plan(&self) -> Result<LogicalPlan> {
        (self.clone().into_plan())()
    }

    fn into_plan(self) -> Lazy<LogicalPlan> {
        match self.kind {
            Kind::Plan(p) => p,
            Kind::Chain { base, chain, steps } => {
                let ctx = self.ctx;
                Arc::new(move || {
                    let step = steps.last().cloned().unwrap_or_else(|| "map".into());
                    let op = MapOp::new(step, steps.clone(), chain()?, RowCodec::<T>::new()?);
                    ctx.op_plan(Arc::new(op), base()?)
                })
            }
        }
    }

    /// This dataset, whose plan runs `hook` first each time it is built
    /// (a step that needs side inputs computed before it runs).
    pub(crate) fn after(self, hook: Arc<dyn Fn() -> Result<()> + Send + Sync>) -> Dataset<T> {
        let ctx = self.ctx.clone();
        let plan = self.into_plan();
        ctx.dataset(Arc::new(move || {
            hook()?;
            plan()
        }))
    }

    /// Applies `f` to every element.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Dataset<U> {
        let f = Arc::new(f);
        self.push_stage("map", move |prev, step| {
            let f = f.clone();
            stateless(prev, step, move |t, out| out.push(f(t)))
        })
    }

    /// Applies `f` to every element and flattens the results.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Dataset<U> {
        let f = Arc::new(f);
        self.push_stage("flat_map", move |prev, step| {
            let f = f.clone();
            // Internal iteration (`fold`): an iterator that implements it
            // (the tokenizer does, as do std's adapters) hands each output
            // straight to the push, with no `Option` in between.
            stateless(prev, step, move |t, out: &mut Vec<U>| {
                f(t).into_iter().for_each(|u| out.push(u))
            })
        })
    }

    /// Keeps the elements for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Dataset<T> {
        let f = Arc::new(f);
        self.push_stage("filter", move |prev, step| {
            let f = f.clone();
            stateless(prev, step, move |t, out| {
                if f(&t) {
                    out.push(t)
                }
            })
        })
    }

    /// Pairs each element with a key computed from it.
    pub fn key_by<K: Data>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> Dataset<(K, T)> {
        let f = Arc::new(f);
        self.push_stage("key_by", move |prev, step| {
            let f = f.clone();
            stateless(prev, step, move |t, out| out.push((f(&t), t)))
        })
    }

    /// Runs a per-partition task: `init` builds task state once per partition,
    /// `each` handles one element, `finish` runs after the last one (mrjob's
    /// `mapper_init` / `mapper` / `mapper_final`).
    pub fn map_partitions_with<S: Send + 'static, U: Data>(
        self,
        kind: &str,
        init: impl Fn() -> S + Send + Sync + 'static,
        each: impl Fn(&mut S, T, &mut dyn FnMut(U)) + Send + Sync + 'static,
        finish: Option<crate::ops::chain::EndFn<S, U>>,
    ) -> Dataset<U> {
        let init: Arc<dyn Fn() -> S + Send + Sync> = Arc::new(init);
        let each: crate::ops::chain::RunFn<S, T, U> =
            Arc::new(move |s: &mut S, t: T, out: &mut Vec<U>| each(s, t, &mut |u| out.push(u)));
        self.push_stage(kind, move |prev, step| {
            stage(prev, step, init.clone(), each.clone(), finish.clone())
        })
    }

    /// Counts each distinct element: `(element, count)` pairs. The count is
    /// combined map-side, then summed by DataFusion after the shuffle.
    pub fn count_by_value(self) -> Dataset<(T, u64)>
    where
        T: Hash + Eq,
    {
        self.count_named("count_by_value")
    }

    /// Beam's name for [`count_by_value`](Self::count_by_value).
    pub fn count_per_element(self) -> Dataset<(T, u64)>
    where
        T: Hash + Eq,
    {
        self.count_named("count_per_element")
    }

    fn count_named(self, kind: &str) -> Dataset<(T, u64)>
    where
        T: Hash + Eq,
    {
        let name = self.ctx.step_name(kind);
        let (ctx, base, chain, steps) = self.into_chain(&name);
        let ctx2 = ctx.clone();
        ctx.dataset(Arc::new(move || {
            let op = PartialAggOp::new(
                name.clone(),
                describe("count", &steps),
                chain()?,
                CountFold,
                RowCodec::new()?,
            );
            let partial = ctx2.op_plan(Arc::new(op), base()?)?;
            let sum = datafusion::functions_aggregate::expr_fn::sum(col("1"));
            Ok(LogicalPlanBuilder::from(partial)
                .aggregate(vec![col("0")], vec![sum.alias("1")])?
                .project(vec![col("0"), cast(col("1"), DataType::UInt64).alias("1")])?
                .build()?)
        }))
    }

    /// Removes duplicate elements.
    pub fn distinct(self) -> Dataset<T> {
        let ctx = self.ctx.clone();
        let plan = self.into_plan();
        ctx.dataset(Arc::new(move || {
            Ok(LogicalPlanBuilder::from(plan()?).distinct()?.build()?)
        }))
    }

    /// All elements of both datasets.
    pub fn union(self, other: Dataset<T>) -> Dataset<T> {
        let ctx = self.ctx.clone();
        let (a, b) = (self.into_plan(), other.into_plan());
        ctx.dataset(Arc::new(move || {
            Ok(LogicalPlanBuilder::from(a()?).union(b()?)?.build()?)
        }))
    }

    /// Sorts all elements by a key (a global sort: one ordered result).
    /// The key is computed by a closure pass before the sort and dropped by
    /// another after it; pairs sorted by their own key sort faster with
    /// [`sort_by_key`](Dataset::sort_by_key), which sorts the key column
    /// directly.
    pub fn sort_by<K: Data>(
        self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        ascending: bool,
    ) -> Dataset<T> {
        let ctx = self.ctx.clone();
        let keyed = self.key_by(key).into_plan();
        let sorted: Dataset<(K, T)> = ctx.dataset(Arc::new(move || {
            let sort = SortExpr::new(col("0"), ascending, true);
            Ok(LogicalPlanBuilder::from(keyed()?)
                .sort(vec![sort])?
                .build()?)
        }));
        sorted.map(|(_, t)| t)
    }

    /// The `n` elements with the greatest keys, greatest first (ties: first seen).
    pub fn top_by<K: Ord + Send + 'static>(
        self,
        n: usize,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Dataset<T> {
        let name = self.ctx.step_name("top");
        let (ctx, base, chain, _steps) = self.into_chain(&name);
        let key: KeyFn<T, K> = Arc::new(key);
        let ctx2 = ctx.clone();
        ctx.dataset(Arc::new(move || {
            let partial = TopOp::new(
                name.clone(),
                n,
                false,
                chain()?,
                key.clone(),
                RowCodec::new()?,
            );
            let plan = ctx2.op_plan(Arc::new(partial), base()?)?;
            let final_step = format!("{name}/final");
            let decode = decode_chain(RowCodec::<T>::new()?, Arc::from(final_step.as_str()));
            let fin = TopOp::new(final_step, n, true, decode, key.clone(), RowCodec::new()?);
            ctx2.op_plan(Arc::new(fin), plan)
        }))
    }

    /// The `n` greatest elements, greatest first (Beam's `Top.of`).
    pub fn top(self, n: usize) -> Dataset<T>
    where
        T: Ord + Clone,
    {
        self.top_by(n, T::clone)
    }

    /// The element with the greatest key, if any.
    pub fn max_by<K: Ord + Send + 'static>(
        self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Result<Option<T>> {
        Ok(self.top_by(1, key).collect()?.into_iter().next())
    }
}

impl Dataset<String> {
    /// [`flat_map`](Dataset::flat_map) for lines of text, with each line
    /// borrowed from the Arrow batch it was read into instead of handed
    /// over as a `String` (no allocation, copy or free per line); `f`
    /// pushes the line's outputs onto `out`. Lines that an earlier closure
    /// made are borrowed from it.
    ///
    /// ```
    /// use spate_core::prelude::*;
    /// let ctx = Context::builder().threads(1).build()?;
    /// let lines = ctx.from_vec(vec!["To be, or".to_string(), "not to be".into()]);
    /// let counts = lines
    ///     .flat_map_lines(|line, out| words(line).for_each(|w| out.push(w)))
    ///     .count_by_value()
    ///     .sort_by_key(true)
    ///     .collect()?;
    /// assert_eq!(counts, [("be".into(), 2), ("not".into(), 1), ("or".into(), 1), ("to".into(), 2)]);
    /// # Ok::<(), spate_core::Error>(())
    /// ```
    pub fn flat_map_lines<U: Data>(
        self,
        f: impl Fn(&str, &mut Vec<U>) + Send + Sync + 'static,
    ) -> Dataset<U> {
        let f = Arc::new(f);
        match self.kind {
            Kind::Plan(base) => {
                let name = self.ctx.step_name("flat_map");
                let step: Arc<str> = Arc::from(name.as_str());
                let chain: Lazy<ChainFactory<U>> = Arc::new(move || {
                    Ok(borrow_lines_chain(
                        RowCodec::<String>::new()?,
                        step.clone(),
                        f.clone(),
                    ))
                });
                Dataset {
                    ctx: self.ctx,
                    kind: Kind::Chain {
                        base,
                        chain,
                        steps: vec![name],
                    },
                    cache: None,
                }
            }
            Kind::Chain { .. } => self.push_stage("flat_map", move |prev, step| {
                let f = f.clone();
                stateless(prev, step, move |line: String, out| f(&line, out))
            }),
        }
    }
}

fn describe(what: &str, fused: &[String]) -> String {
    if fused.is_empty() {
        what.to_string()
    } else {
        format!("{what} over [{}]", fused.join(" → "))
    }
}
