//! Operations on key-value datasets: per-key reduction and combining,
//! grouping and joins.

use std::sync::Arc;

use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::{LogicalPlanBuilder, lit};

use crate::combine::CombineFn;
use crate::ops::chain::stateless;
use crate::ops::group::{GroupFactory, GroupFn, GroupOp};
use crate::ops::partial::{CombineFold, PartialAggOp, ReduceFold};
use crate::rows::{Data, Held, RowCodec};

use super::{Dataset, Key, describe, qcol};

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
            let partial = PartialAggOp::new(
                name.clone(),
                describe("reduce", &steps),
                chain()?,
                ReduceFold(f.clone()),
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
            let partial = PartialAggOp::new(
                name.clone(),
                describe("combine", &steps),
                chain()?,
                CombineFold(c.clone()),
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

    /// Right outer join on keys: every right pair, with `None` where no
    /// left value matches.
    pub fn right_join<W: Data>(self, other: Dataset<(K, W)>) -> Dataset<(K, (Option<V>, W))> {
        self.join_with(other, JoinType::Right)
    }

    #[allow(clippy::type_complexity)]
    /// Full outer join on keys: every pair of either side, with `None` for
    /// the side that has no match.
    pub fn full_outer_join<W: Data>(
        self,
        other: Dataset<(K, W)>,
    ) -> Dataset<(K, (Option<V>, Option<W>))> {
        self.join_with(other, JoinType::Full)
    }

    /// Every key of either side with all its values from each (Spark's
    /// `cogroup`, Beam's `CoGroupByKey` of two). Sort-based like
    /// [`group_by_key`](Self::group_by_key); one key's values are held as
    /// lists, so each key's values must fit in memory.
    #[allow(clippy::type_complexity)]
    pub fn cogroup<W: Data>(self, other: Dataset<(K, W)>) -> Dataset<(K, (Vec<V>, Vec<W>))> {
        // Values wrapped in `Held`, so a value that is itself `None` is kept.
        let left = self.map_values(|v| (Some(Held { v }), None::<Held<W>>));
        let right = other.map_values(|w| (None::<Held<V>>, Some(Held { v: w })));
        left.union(right).group_by_key().map_groups(|k, values| {
            let (mut vs, mut ws) = (Vec::new(), Vec::new());
            for (v, w) in values {
                vs.extend(v.map(|h| h.v));
                ws.extend(w.map(|h| h.v));
            }
            (k.clone(), (vs, ws))
        })
    }

    /// [`cogroup`](Self::cogroup) of three datasets.
    #[allow(clippy::type_complexity)]
    pub fn cogroup3<W: Data, X: Data>(
        self,
        second: Dataset<(K, W)>,
        third: Dataset<(K, X)>,
    ) -> Dataset<(K, (Vec<V>, Vec<W>, Vec<X>))> {
        let a = self.map_values(|v| (Some(Held { v }), None::<Held<W>>, None::<Held<X>>));
        let b = second.map_values(|w| (None::<Held<V>>, Some(Held { v: w }), None::<Held<X>>));
        let c = third.map_values(|x| (None::<Held<V>>, None::<Held<W>>, Some(Held { v: x })));
        a.union(b).union(c).group_by_key().map_groups(|k, values| {
            let (mut vs, mut ws, mut xs) = (Vec::new(), Vec::new(), Vec::new());
            for (v, w, x) in values {
                vs.extend(v.map(|h| h.v));
                ws.extend(w.map(|h| h.v));
                xs.extend(x.map(|h| h.v));
            }
            (k.clone(), (vs, ws, xs))
        })
    }

    /// Aggregates each key's values into a value of another type (Spark's
    /// `aggregateByKey`): `seq` folds a value in (from `zero`) map-side,
    /// `comb` merges partial results after the shuffle. `zero` must be an
    /// identity of both.
    pub fn aggregate_by_key<U: Data + Clone>(
        self,
        zero: U,
        seq: impl Fn(U, V) -> U + Send + Sync + 'static,
        comb: impl Fn(U, U) -> U + Send + Sync + 'static,
    ) -> Dataset<(K, U)> {
        self.combine_per_key(crate::combine::FoldFn::new(zero, seq, comb))
    }

    /// Folds each key's values into `zero` with `f` (Spark's `foldByKey`);
    /// `zero` must be an identity of `f`.
    pub fn fold_by_key(
        self,
        zero: V,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Dataset<(K, V)>
    where
        V: Clone,
    {
        let f = Arc::new(f);
        let merge = f.clone();
        self.aggregate_by_key(zero, move |a, b| f(a, b), move |a, b| merge(a, b))
    }

    /// Runs the job and returns the pairs as a map (Spark's
    /// `collectAsMap`); of a key's several values, one is kept.
    pub fn collect_map(self) -> crate::error::Result<std::collections::HashMap<K, V>> {
        Ok(self.collect()?.into_iter().collect())
    }

    /// Runs the job and returns the number of pairs of each key (Spark's
    /// `countByKey`), counted map-side.
    pub fn count_by_key(self) -> crate::error::Result<std::collections::HashMap<K, u64>> {
        self.keys().count_by_value().collect_map()
    }

    /// Runs the job and returns the values of `key` (Spark's `lookup`).
    pub fn lookup(self, key: &K) -> crate::error::Result<Vec<V>>
    where
        K: Sync,
    {
        let key = key.clone();
        self.filter(move |(k, _)| *k == key).values().collect()
    }

    fn join_with<W: Data, R>(self, other: Dataset<(K, W)>, how: JoinType) -> Dataset<R> {
        let ctx = self.ctx.clone();
        let (l, r) = (self.into_plan(), other.into_plan());
        ctx.dataset(Arc::new(move || {
            let left = LogicalPlanBuilder::from(l()?).alias("l")?.build()?;
            let right = LogicalPlanBuilder::from(r()?).alias("r")?.build()?;
            // The key of a row that has no left side is the right one's.
            let key = match how {
                JoinType::Right => qcol("r", "0"),
                JoinType::Full => datafusion::functions::core::expr_fn::coalesce(vec![
                    qcol("l", "0"),
                    qcol("r", "0"),
                ]),
                _ => qcol("l", "0"),
            };
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
                .project(vec![key.alias("0"), pair.alias("1")])?
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
