//! Global reductions: the whole dataset to one value (`reduce`, `fold`,
//! `aggregate`, `combine_globally`, `min_by`, `count_approx_distinct`).
//! Each accumulates map-side, one accumulator per partition, and merges the
//! partitions' accumulators after a shuffle of one row each.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::logical_expr::{Expr, LogicalPlanBuilder};

use crate::combine::{CombineFn, FoldFn};
use crate::error::Result;
use crate::ops::chain::EndFn;
use crate::rows::Data;

use super::{Dataset, col};

impl<T: Data> Dataset<T> {
    /// Combines all elements into one value with a [`CombineFn`]: a
    /// one-element dataset (Beam's `Combine.globally`). An empty input
    /// gives the combiner's result for no values.
    pub fn combine_globally<C: CombineFn<T>>(self, combine: C) -> Dataset<C::Output> {
        // One accumulator per partition, then all of them merged in one
        // partition, which exists (and so gives a row) also for no input.
        let c = Arc::new(combine);
        let (init, add, flush) = (c.clone(), c.clone(), c.clone());
        let (init2, merge, extract) = (c.clone(), c.clone(), c);
        let partial: EndFn<C::Acc, C::Acc> =
            Arc::new(move |acc, emit| emit(std::mem::replace(acc, flush.create())));
        let total: EndFn<C::Acc, C::Output> = Arc::new(move |acc, emit| {
            emit(extract.extract(std::mem::replace(acc, extract.create())))
        });
        self.map_partitions_with(
            "combine_globally",
            move || init.create(),
            move |acc, t, _| add.add(acc, t),
            Some(partial),
        )
        .coalesce(1)
        .map_partitions_with(
            "combine_globally/final",
            move || init2.create(),
            move |acc, a, _| merge.merge(acc, a),
            Some(total),
        )
    }

    /// Merges all elements with an associative, commutative `f` (Spark's
    /// `reduce`); `None` for an empty dataset, where Spark throws.
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Result<Option<T>> {
        Ok(self
            .map(|t| (0u8, t))
            .reduce_by_key(f)
            .collect()?
            .into_iter()
            .next()
            .map(|(_, t)| t))
    }

    /// Folds all elements into `zero` with `f` (Spark's `fold`). `zero`
    /// must be an identity of `f` (0 for +, the empty list for append): it
    /// starts each partition's fold, as in Spark. An empty dataset gives
    /// `zero`.
    pub fn fold(self, zero: T, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Result<T>
    where
        T: Clone,
    {
        let f = Arc::new(f);
        let merge = f.clone();
        self.aggregate(zero, move |a, b| f(a, b), move |a, b| merge(a, b))
    }

    /// Aggregates all elements into a value of another type (Spark's
    /// `aggregate`): `seq` folds an element into a partition's value
    /// (starting from `zero`), `comb` merges two partitions' values. `zero`
    /// must be an identity of both.
    pub fn aggregate<U: Data + Clone>(
        self,
        zero: U,
        seq: impl Fn(U, T) -> U + Send + Sync + 'static,
        comb: impl Fn(U, U) -> U + Send + Sync + 'static,
    ) -> Result<U> {
        let zero_again = zero.clone();
        let combine = FoldFn::new(zero, seq, comb);
        Ok(self
            .combine_globally(combine)
            .collect()?
            .into_iter()
            .next()
            .unwrap_or(zero_again))
    }

    /// The element with the smallest key, if any (ties: one of them).
    pub fn min_by<K: Ord + Send + 'static>(
        self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Result<Option<T>> {
        self.max_by(move |t| std::cmp::Reverse(key(t)))
    }

    /// An estimate of the number of distinct elements (Spark's
    /// `countApproxDistinct`): DataFusion's HyperLogLog `approx_distinct`
    /// over a 64-bit hash of each element, within about 2% here (tested).
    pub fn count_approx_distinct(self) -> Result<u64>
    where
        T: Hash,
    {
        let ctx = self.ctx.clone();
        let hashes = self
            .map(|t| {
                let mut h = rustc_hash::FxHasher::default();
                t.hash(&mut h);
                h.finish()
            })
            .into_plan();
        let approx: Dataset<u64> = ctx.dataset(Arc::new(move || {
            let estimate = datafusion::functions_aggregate::expr_fn::approx_distinct(col(
                crate::rows::VALUE_COLUMN,
            ));
            Ok(LogicalPlanBuilder::from(hashes()?)
                .aggregate(Vec::<Expr>::new(), vec![estimate.alias("value")])?
                .build()?)
        }));
        Ok(approx.collect()?.into_iter().next().unwrap_or(0))
    }
}
