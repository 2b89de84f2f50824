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
use datafusion::common::{Column, JoinType};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr, cast, lit};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use spate_io::format::FileFormat;
use spate_io::source::{InputFile, expand_inputs};

use crate::combine::CombineFn;
use crate::context::Context;
use crate::error::{Result, from_df};
use crate::node::{OpNode, PartitionOp, TextScanNode};
use crate::ops::chain::{ChainFactory, decode_chain, stage, stateless};
use crate::ops::group::{GroupFactory, GroupFn, GroupOp};
use crate::ops::map::MapOp;
use crate::ops::partial::PartialAggOp;
use crate::ops::top::{KeyFn, TopOp};
use crate::rows::{Data, RowCodec};

type Lazy<X> = Arc<dyn Fn() -> Result<X> + Send + Sync>;

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
///     .sort_by(|(w, _)| w.clone(), true)
///     .collect()?;
/// assert_eq!(counts, vec![("a".into(), 1), ("b".into(), 3), ("c".into(), 1)]);
/// # Ok::<(), spate_core::Error>(())
/// ```
pub struct Dataset<T> {
    ctx: Context,
    kind: Kind<T>,
}

impl<T> Clone for Dataset<T> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            kind: self.kind.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Dataset<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dataset<{}>", std::any::type_name::<T>())
    }
}

pub use spate_io::output::WriteSummary;

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
    pub fn read_text<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Dataset<String>> {
        let files = expand_inputs(paths)?;
        Ok(self.read_text_files(files))
    }

    /// A dataset whose every use fails with `error` (a source that could
    /// not be opened while the plan was being built).
    pub fn failed<T>(&self, error: &crate::error::Error) -> Dataset<T> {
        let error = Arc::new(error.replay());
        Dataset {
            ctx: self.clone(),
            kind: Kind::Plan(Arc::new(move || Err(error.replay()))),
        }
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
        }
    }

    /// A dataset of the given rows, split over the context's threads.
    pub fn from_vec<T: Data>(&self, rows: Vec<T>) -> Dataset<T> {
        let rows = Arc::new(rows);
        let parts = self.threads();
        let step = self.step_name("from_vec");
        Dataset {
            ctx: self.clone(),
            kind: Kind::Plan(Arc::new(move || {
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
                Ok(LogicalPlanBuilder::scan(
                    step.as_str(),
                    provider_as_source(Arc::new(table)),
                    None,
                )?
                .build()?)
            })),
        }
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
            stateless(prev, step, move |t, out: &mut Vec<U>| out.extend(f(t)))
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
            let insert =
                |m: &mut rustc_hash::FxHashMap<T, u64>, t: T| *m.entry(t).or_insert(0) += 1;
            let op = PartialAggOp::new(
                name.clone(),
                describe("count", &steps),
                chain()?,
                insert,
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

    /// Runs the job and returns the number of elements.
    pub fn count(self) -> Result<u64> {
        let ctx = self.ctx.clone();
        let plan = (self.into_plan())()?;
        let counted = LogicalPlanBuilder::from(plan)
            .aggregate(
                Vec::<Expr>::new(),
                vec![datafusion::functions_aggregate::expr_fn::count(lit(1)).alias("value")],
            )?
            .project(vec![cast(col("value"), DataType::UInt64).alias("value")])?
            .build()?;
        let rows: Vec<u64> = ctx
            .dataset::<u64>(Arc::new(move || Ok(counted.clone())))
            .collect()?;
        Ok(rows.into_iter().sum())
    }

    /// Runs the job and returns every element.
    pub fn collect(self) -> Result<Vec<T>> {
        let batches = self.collect_batches()?;
        let codec = RowCodec::<T>::new()?;
        let mut out = Vec::new();
        for b in &batches {
            out.extend(codec.decode(b)?);
        }
        Ok(out)
    }

    /// Runs the job and returns its Arrow batches (partitions in order).
    pub fn collect_batches(self) -> Result<Vec<RecordBatch>> {
        let ctx = self.ctx.clone();
        let physical = self.physical_plan()?;
        ctx.block_on(async {
            let task = ctx.session().task_ctx();
            datafusion::physical_plan::collect(physical, task).await
        })
        .map_err(from_df)
    }

    /// The optimized physical plan.
    pub fn physical_plan(self) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = self.ctx.clone();
        let plan = (self.into_plan())()?;
        ctx.block_on(async {
            let state = ctx.session().state();
            let optimized = state.optimize(&plan)?;
            state.create_physical_plan(&optimized).await
        })
        .map_err(from_df)
    }

    /// The plan as text: the logical plan DataFusion optimized and the physical
    /// plan that runs, each node labelled with its step name.
    pub fn explain(&self) -> Result<String> {
        let ctx = self.ctx.clone();
        let plan = self.logical_plan()?;
        let state = ctx.session().state();
        let optimized = state.optimize(&plan).map_err(from_df)?;
        let physical = ctx
            .block_on(state.create_physical_plan(&optimized))
            .map_err(from_df)?;
        Ok(format!(
            "== Logical plan ==\n{}\n\n== Physical plan ==\n{}",
            optimized.display_indent(),
            displayable(physical.as_ref()).indent(false)
        ))
    }

    /// Runs the job (discarding its output) and returns the physical plan
    /// annotated with per-step metrics: rows produced, compute time, spills.
    pub fn explain_analyze(self) -> Result<String> {
        let ctx = self.ctx.clone();
        let physical = self.physical_plan()?;
        ctx.block_on(async {
            let task = ctx.session().task_ctx();
            datafusion::physical_plan::collect(physical.clone(), task).await
        })
        .map_err(from_df)?;
        Ok(format!(
            "== Physical plan with metrics ==\n{}",
            datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                physical.as_ref()
            )
            .indent(false)
        ))
    }

    /// Writes the elements as text lines into `dir` (`part-00000`, ...):
    /// `(key, value)` pairs as `key<TAB>value`. The directory appears complete
    /// with a `_SUCCESS` marker, or not at all.
    pub fn write_text(self, dir: impl AsRef<Path>) -> Result<WriteSummary> {
        self.write(dir.as_ref(), FileFormat::Text)
    }

    /// Writes the elements as JSON lines into `dir` (`part-00000.jsonl`, ...).
    pub fn write_jsonl(self, dir: impl AsRef<Path>) -> Result<WriteSummary> {
        self.write(dir.as_ref(), FileFormat::Json)
    }

    fn write(self, dir: &Path, format: FileFormat) -> Result<WriteSummary> {
        let ctx = self.ctx.clone();
        let physical = self.physical_plan()?;
        let task = ctx.session().task_ctx();
        Ok(ctx.block_on(spate_io::output::write_parts(physical, task, dir, format))?)
    }
}

fn describe(what: &str, fused: &[String]) -> String {
    if fused.is_empty() {
        what.to_string()
    } else {
        format!("{what} over [{}]", fused.join(" → "))
    }
}

/// Operations on key-value datasets.
impl<K: Key, V: Data> Dataset<(K, V)> {
    /// Applies `f` to every value, keeping keys.
    pub fn map_values<U: Data>(
        self,
        f: impl Fn(V) -> U + Send + Sync + 'static,
    ) -> Dataset<(K, U)> {
        let f = Arc::new(f);
        self.push_stage("map_values", move |prev, step| {
            let f = f.clone();
            stateless(prev, step, move |(k, v), out| out.push((k, f(v))))
        })
    }

    /// Merges the values of each key with an associative, commutative `f`
    /// (map-side first, then after the shuffle).
    pub fn reduce_by_key(self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> Dataset<(K, V)> {
        let name = self.ctx.step_name("reduce_by_key");
        let (ctx, base, chain, steps) = self.into_chain(&name);
        let f = Arc::new(f);
        let ctx2 = ctx.clone();
        ctx.dataset(Arc::new(move || {
            let f1 = f.clone();
            let insert = move |m: &mut rustc_hash::FxHashMap<K, V>, (k, v): (K, V)| match m
                .remove_entry(&k)
            {
                Some((k0, old)) => {
                    m.insert(k0, f1(old, v));
                }
                None => {
                    m.insert(k, v);
                }
            };
            let partial = PartialAggOp::new(
                name.clone(),
                describe("reduce", &steps),
                chain()?,
                insert,
                RowCodec::new()?,
            );
            let plan = ctx2.op_plan(Arc::new(partial), base()?)?;
            let f2 = f.clone();
            let factory: GroupFactory<K, V, (K, V)> = Arc::new(move || {
                let f = f2.clone();
                Box::new(FnGroup(
                    move |k: &K, vs: &mut dyn Iterator<Item = V>, emit: &mut dyn FnMut((K, V))| {
                        if let Some(first) = vs.next() {
                            emit((k.clone(), vs.fold(first, |a, b| f(a, b))));
                        }
                    },
                ))
            });
            let fin = GroupOp::new(
                format!("{name}/final"),
                "reduce (final)".into(),
                RowCodec::new()?,
                RowCodec::new()?,
                factory,
            );
            ctx2.op_plan(Arc::new(fin), plan)
        }))
    }

    /// Combines the values of each key with a [`CombineFn`]: `add` runs
    /// map-side, `merge` and `extract` after the shuffle.
    pub fn combine_per_key<C: CombineFn<V>>(self, combine: C) -> Dataset<(K, C::Output)> {
        let name = self.ctx.step_name("combine_per_key");
        let (ctx, base, chain, steps) = self.into_chain(&name);
        let c = Arc::new(combine);
        let ctx2 = ctx.clone();
        ctx.dataset(Arc::new(move || {
            let c1 = c.clone();
            let insert = move |m: &mut rustc_hash::FxHashMap<K, C::Acc>, (k, v): (K, V)| {
                c1.add(m.entry(k).or_insert_with(|| c1.create()), v)
            };
            let partial = PartialAggOp::new(
                name.clone(),
                describe("combine", &steps),
                chain()?,
                insert,
                RowCodec::new()?,
            );
            let plan = ctx2.op_plan(Arc::new(partial), base()?)?;
            let c2 = c.clone();
            let factory: GroupFactory<K, C::Acc, (K, C::Output)> = Arc::new(move || {
                let c = c2.clone();
                Box::new(FnGroup(
                    move |k: &K,
                          accs: &mut dyn Iterator<Item = C::Acc>,
                          emit: &mut dyn FnMut((K, C::Output))| {
                        let mut acc = c.create();
                        for a in accs {
                            c.merge(&mut acc, a);
                        }
                        emit((k.clone(), c.extract(acc)));
                    },
                ))
            });
            let fin = GroupOp::new(
                format!("{name}/final"),
                "combine (final)".into(),
                RowCodec::new()?,
                RowCodec::new()?,
                factory,
            );
            ctx2.op_plan(Arc::new(fin), plan)
        }))
    }

    /// Groups values by key (sort-based; values are streamed to the user,
    /// so a group never needs to fit in memory).
    pub fn group_by_key(self) -> GroupedDataset<K, V> {
        GroupedDataset {
            ds: self,
            descending: false,
            partitions: None,
        }
    }

    /// Inner join on keys: `(key, (left, right))` for every matching pair.
    pub fn join<W: Data>(self, other: Dataset<(K, W)>) -> Dataset<(K, (V, W))> {
        self.join_with(other, JoinType::Inner)
    }

    /// Left outer join on keys: every left pair, with `None` where no right value matches.
    pub fn left_join<W: Data>(self, other: Dataset<(K, W)>) -> Dataset<(K, (V, Option<W>))> {
        self.join_with(other, JoinType::Left)
    }

    fn join_with<W: Data, R>(self, other: Dataset<(K, W)>, how: JoinType) -> Dataset<R> {
        let ctx = self.ctx.clone();
        let (l, r) = (self.into_plan(), other.into_plan());
        ctx.dataset(Arc::new(move || {
            let left = LogicalPlanBuilder::from(l()?).alias("l")?.build()?;
            let right = LogicalPlanBuilder::from(r()?).alias("r")?.build()?;
            let pair = datafusion::functions::core::expr_fn::named_struct(vec![
                lit("0"),
                qcol("l", "1"),
                lit("1"),
                qcol("r", "1"),
            ]);
            Ok(LogicalPlanBuilder::from(left)
                .join(
                    right,
                    how,
                    (
                        vec![Column::new(Some("l"), "0")],
                        vec![Column::new(Some("r"), "0")],
                    ),
                    None,
                )?
                .project(vec![qcol("l", "0").alias("0"), pair.alias("1")])?
                .build()?)
        }))
    }
}

/// A [`GroupFn`] from a closure.
struct FnGroup<F>(F);

impl<K, V, O, F> GroupFn<K, V, O> for FnGroup<F>
where
    F: FnMut(&K, &mut dyn Iterator<Item = V>, &mut dyn FnMut(O)) + Send,
{
    fn group(&mut self, key: &K, values: &mut dyn Iterator<Item = V>, emit: &mut dyn FnMut(O)) {
        (self.0)(key, values, emit)
    }
}

/// The result of [`Dataset::group_by_key`]: keys with streams of values.
pub struct GroupedDataset<K, V> {
    ds: Dataset<(K, V)>,
    descending: bool,
    partitions: Option<usize>,
}

impl<K: Key, V: Data> GroupedDataset<K, V> {
    /// Groups into exactly `count` partitions (reducers, part files); by
    /// default one per thread.
    pub fn partitions(mut self, count: usize) -> Self {
        self.partitions = Some(count.max(1));
        self
    }

    /// Hands keys to the group function in descending order (ascending by default).
    pub fn keys_descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Calls `f` once per key with an iterator over its values (keys sorted
    /// within each partition); `f` emits any number of outputs.
    pub fn flat_map_groups<U: Data>(
        self,
        f: impl Fn(&K, &mut dyn Iterator<Item = V>, &mut dyn FnMut(U)) + Send + Sync + 'static,
    ) -> Dataset<U> {
        let f = Arc::new(f);
        self.reduce_with(
            "group_by_key",
            Arc::new(move || {
                let f = f.clone();
                Box::new(FnGroup(
                    move |k: &K, vs: &mut dyn Iterator<Item = V>, emit: &mut dyn FnMut(U)| {
                        f(k, vs, emit)
                    },
                ))
            }),
        )
    }

    /// Calls `f` once per key with an iterator over its values.
    pub fn map_groups<U: Data>(
        self,
        f: impl Fn(&K, &mut dyn Iterator<Item = V>) -> U + Send + Sync + 'static,
    ) -> Dataset<U> {
        self.flat_map_groups(move |k, vs, emit| emit(f(k, vs)))
    }

    /// Collects each key's values into a list: `(key, values)` (Spark's
    /// `groupByKey`). Each group must fit in memory; prefer `map_groups`.
    pub fn collect_lists(self) -> Dataset<(K, Vec<V>)> {
        self.map_groups(|k, vs| (k.clone(), vs.collect()))
    }

    /// Runs a reducer built per partition by `factory` (MapReduce's reduce task).
    pub fn reduce_with<U: Data>(self, kind: &str, factory: GroupFactory<K, V, U>) -> Dataset<U> {
        let layout = GroupLayout {
            descending: self.descending,
            partitions: self.partitions,
            route: None,
        };
        group_plan(self.ds, kind, layout, factory)
    }
}

/// How a grouping op wants its input: key order, reducer count, routing column.
struct GroupLayout {
    descending: bool,
    partitions: Option<usize>,
    route: Option<&'static str>,
}

/// Plans a `GroupOp` over `ds`, whose first two columns are `(key, value)`.
fn group_plan<R: Data, K: Key, V: Data, U: Data>(
    ds: Dataset<R>,
    kind: &str,
    layout: GroupLayout,
    factory: GroupFactory<K, V, U>,
) -> Dataset<U> {
    let ctx = ds.ctx.clone();
    let name = ctx.step_name(kind);
    let plan = ds.into_plan();
    let ctx2 = ctx.clone();
    let what = if layout.route.is_some() {
        "group by key (custom partitioner)"
    } else {
        "group by key"
    };
    ctx.dataset(Arc::new(move || {
        let op = GroupOp::new(
            name.clone(),
            what.into(),
            RowCodec::new()?,
            RowCodec::new()?,
            factory.clone(),
        )
        .descending(layout.descending)
        .partitions(layout.partitions)
        .route(layout.route.map(String::from));
        ctx2.op_plan(Arc::new(op), plan()?)
    }))
}

/// Runs a reducer over `(key, value, route)` rows: rows go to the partition
/// their route value selects (see [`crate::node::route_values`]), sorted by key.
pub(crate) fn reduce_routed<K: Key, V: Data, U: Data>(
    ds: Dataset<(K, V, u64)>,
    kind: &str,
    count: usize,
    descending: bool,
    factory: GroupFactory<K, V, U>,
) -> Dataset<U> {
    let layout = GroupLayout {
        descending,
        partitions: Some(count),
        route: Some("2"),
    };
    group_plan(ds, kind, layout, factory)
}
