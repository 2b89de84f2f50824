//! Shaping: operations that choose, number, spread or combine whole
//! datasets (`sample`, `repartition`, `zip_with_index`, `subtract`,
//! `cartesian`, ...).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlanBuilder, SortExpr, WindowFunctionDefinition, cast,
};

use crate::error::Error;
use crate::ops::indexed::{IndexedOp, PosEndFn, PosFn, Position};
use crate::ops::spread::{ROUTE_COLUMN, RouteOp, SpreadOp};
use crate::rows::{Data, RowCodec};

use super::{Dataset, Key, describe, qcol};

/// Column names of an `(a, b)` row.
fn pair(a: Expr, b: Expr) -> Vec<Expr> {
    vec![a.alias("0"), b.alias("1")]
}

impl<T: Data> Dataset<T> {
    /// Runs `each` over every row with its [`Position`] (partition, place
    /// in the partition, random stream), in one op fused with the pending
    /// closures.
    pub(crate) fn positioned<O: Data>(
        self,
        kind: &str,
        what: &str,
        each: PosFn<T, O>,
        end: Option<PosEndFn<O>>,
        limit: Option<u64>,
        seed: u64,
    ) -> Dataset<O> {
        let name = self.ctx.step_name(kind);
        let what = what.to_string();
        let (ctx, base, chain, steps) = self.into_chain(&name);
        let ctx2 = ctx.clone();
        ctx.dataset(Arc::new(move || {
            let mut op = IndexedOp::new(
                name.clone(),
                describe(&what, &steps),
                chain()?,
                each.clone(),
                RowCodec::new()?,
            )
            .with_seed(seed);
            if let Some(end) = &end {
                op = op.with_end(end.clone());
            }
            if let Some(limit) = limit {
                op = op.with_limit(limit);
            }
            ctx2.op_plan(Arc::new(op), base()?)
        }))
    }

    /// A random sample, the same for the same `seed` and input layout
    /// (Spark's `sample`). Without replacement each element is kept with
    /// probability `fraction` (0 to 1); with replacement each appears a
    /// Poisson(`fraction`) number of times (any `fraction` ≥ 0). The size
    /// is about `fraction` × the count, not exactly.
    pub fn sample(self, with_replacement: bool, fraction: f64, seed: u64) -> Dataset<T>
    where
        T: Clone,
    {
        let valid =
            fraction.is_finite() && fraction >= 0.0 && (with_replacement || fraction <= 1.0);
        if !valid {
            let range = if with_replacement {
                "≥ 0"
            } else {
                "in [0, 1]"
            };
            let e = Error::Usage(format!(
                "sample: fraction must be {range}{}, not {fraction}",
                if with_replacement {
                    ""
                } else {
                    " without replacement"
                }
            ));
            return self.ctx.failed(&e);
        }
        let each: PosFn<T, T> = if with_replacement {
            Arc::new(move |pos: &mut Position, t: T, out: &mut Vec<T>| {
                let n = pos.rng.poisson(fraction);
                for _ in 1..n {
                    out.push(t.clone());
                }
                if n > 0 {
                    out.push(t);
                }
            })
        } else {
            Arc::new(move |pos: &mut Position, t: T, out: &mut Vec<T>| {
                if pos.rng.next_f64() < fraction {
                    out.push(t)
                }
            })
        };
        let what = format!("sample fraction={fraction} replacement={with_replacement}");
        self.positioned("sample", &what, each, None, None, seed)
    }

    /// Spreads the elements evenly over exactly `n` partitions (Spark's
    /// `repartition`), by a hash of each row's position, through a shuffle
    /// (a stage boundary on a cluster). The next operation runs
    /// `n`-wide and a write following it writes `n` part files.
    pub fn repartition(self, n: usize) -> Dataset<T> {
        self.spread("repartition", n, None)
    }

    /// A spreading op over this dataset: `n` partitions, by the route
    /// column `route` (this dataset's last, dropped) or, without one, in
    /// turn; the output rows are `Out` (this dataset's columns before the
    /// route).
    fn spread<Out>(self, kind: &str, n: usize, route: Option<&str>) -> Dataset<Out> {
        let ctx = self.ctx.clone();
        let name = ctx.step_name(kind);
        let route = route.map(String::from);
        let plan = self.into_plan();
        let ctx2 = ctx.clone();
        ctx.dataset(Arc::new(move || {
            let mut input = plan()?;
            let route = match &route {
                Some(route) => route.clone(),
                None => {
                    let schema = input.schema().inner().clone();
                    let op = RouteOp::new(format!("{name}/route"), &schema);
                    input = ctx2.op_plan(Arc::new(op), input)?;
                    ROUTE_COLUMN.to_string()
                }
            };
            let schema = input.schema().inner().clone();
            let op = SpreadOp::new(name.clone(), &schema, n, route)?;
            ctx2.op_plan(Arc::new(op), input)
        }))
    }

    /// `n` partitions (Spark's `coalesce`). spate has one way to change
    /// the partition count — a shuffle, which in-process moves batches
    /// between threads without copying them to disk — so this is
    /// [`repartition`](Self::repartition); Spark's `coalesce` merges
    /// partitions without a shuffle instead.
    pub fn coalesce(self, n: usize) -> Dataset<T> {
        self.repartition(n)
    }

    /// Pairs each element with its index: partitions in order, then the
    /// order within each partition (Spark's `zipWithIndex`). The indices
    /// are `0..count`, each once. The input is computed twice (once to
    /// count each partition), as in Spark; cache it if that is costly.
    /// Where rows sit after a shuffle is not fixed, so neither is which
    /// element gets which index there.
    pub fn zip_with_index(self) -> Dataset<(T, u64)> {
        let ctx = self.ctx.clone();
        let each: PosFn<T, (u64, u64, T)> =
            Arc::new(|pos: &mut Position, t: T, out: &mut Vec<(u64, u64, T)>| {
                out.push((pos.partition, pos.seq, t))
            });
        let rows = self
            .clone()
            .positioned("zip_with_index", "position", each, None, None, 0)
            .into_plan();
        let none: PosFn<T, (u64, u64)> = Arc::new(|_, _, _| {});
        let end: PosEndFn<(u64, u64)> = Arc::new(|pos: &Position, out: &mut Vec<(u64, u64)>| {
            out.push((pos.partition, pos.seq))
        });
        let counts = self
            .positioned(
                "zip_with_index/count",
                "count partition",
                none,
                Some(end),
                None,
                0,
            )
            .into_plan();
        ctx.dataset(Arc::new(move || {
            // Offsets: the running total of the counts of earlier partitions.
            let sum = datafusion::functions_aggregate::sum::sum_udaf();
            let running = Expr::from(WindowFunction::new(
                WindowFunctionDefinition::AggregateUDF(sum),
                vec![qcol("c", "1")],
            ))
            .order_by(vec![SortExpr::new(qcol("c", "0"), true, true)])
            .build()?
            .alias("running");
            let offsets = LogicalPlanBuilder::from(counts()?)
                .alias("c")?
                .window(vec![running])?
                .project(vec![
                    qcol("c", "0").alias("part"),
                    (cast(Expr::Column("running".into()), DataType::UInt64) - qcol("c", "1"))
                        .alias("offset"),
                ])?
                .alias("o")?
                .build()?;
            let rows = LogicalPlanBuilder::from(rows()?).alias("r")?.build()?;
            Ok(LogicalPlanBuilder::from(rows)
                .join(
                    offsets,
                    JoinType::Inner,
                    (
                        vec![Column::new(Some("r"), "0")],
                        vec![Column::new(Some("o"), "part")],
                    ),
                    None,
                )?
                .project(pair(qcol("r", "2"), qcol("o", "offset") + qcol("r", "1")))?
                .build()?)
        }))
    }

    /// The elements of this dataset that do not occur in `other`, with
    /// their repetitions (Spark's `subtract`; SQL's `EXCEPT` without
    /// removing duplicates).
    pub fn subtract(self, other: Dataset<T>) -> Dataset<T> {
        let ctx = self.ctx.clone();
        let (a, b) = (self.into_plan(), other.into_plan());
        ctx.dataset(Arc::new(move || {
            Ok(LogicalPlanBuilder::except(a()?, b()?, true)?)
        }))
    }

    /// The distinct elements that occur in both datasets (Spark's
    /// `intersection`; SQL's `INTERSECT`).
    pub fn intersection(self, other: Dataset<T>) -> Dataset<T> {
        let ctx = self.ctx.clone();
        let (a, b) = (self.into_plan(), other.into_plan());
        ctx.dataset(Arc::new(move || {
            Ok(LogicalPlanBuilder::intersect(a()?, b()?, false)?)
        }))
    }

    /// Every pair of an element of this dataset and one of `other`
    /// (Spark's `cartesian`; a cross join).
    pub fn cartesian<U: Data>(self, other: Dataset<U>) -> Dataset<(T, U)> {
        let ctx = self.ctx.clone();
        // As the value of a pair, each side is one column whatever its type.
        let left = self.map(|t| (0u8, t)).into_plan();
        let right = other.map(|u| (0u8, u)).into_plan();
        ctx.dataset(Arc::new(move || {
            let right = LogicalPlanBuilder::from(right()?).alias("r")?.build()?;
            Ok(LogicalPlanBuilder::from(left()?)
                .alias("l")?
                .cross_join(right)?
                .project(pair(qcol("l", "1"), qcol("r", "1")))?
                .build()?)
        }))
    }
}

/// Shaping key-value datasets.
impl<K: Key, V: Data> Dataset<(K, V)> {
    /// The keys.
    pub fn keys(self) -> Dataset<K> {
        self.map(|(k, _)| k)
    }

    /// The values.
    pub fn values(self) -> Dataset<V> {
        self.map(|(_, v)| v)
    }

    /// Sorts the pairs by key (a global sort; Spark's `sortByKey`).
    pub fn sort_by_key(self, ascending: bool) -> Dataset<(K, V)> {
        let ctx = self.ctx.clone();
        let plan = self.into_plan();
        ctx.dataset(Arc::new(move || {
            let sort = SortExpr::new(super::col("0"), ascending, true);
            Ok(LogicalPlanBuilder::from(plan()?)
                .sort(vec![sort])?
                .build()?)
        }))
    }

    /// Puts each pair in partition `partitioner(key)` of `n` (Spark's
    /// `partitionBy`): a write that follows writes part file `i` with the
    /// keys the partitioner sent to `i`. Answers of `n` or more wrap
    /// (`% n`), as a MapReduce partitioner's do.
    pub fn partition_by(
        self,
        n: usize,
        partitioner: impl Fn(&K) -> usize + Send + Sync + 'static,
    ) -> Dataset<(K, V)> {
        let n = n.max(1);
        let routes = match crate::node::route_values(n) {
            Ok(r) => Arc::new(r),
            Err(e) => return self.ctx.failed(&crate::error::from_df(e)),
        };
        let partitioner = Arc::new(partitioner);
        let routed = self.push_stage("partition_by", move |prev, step| {
            let (routes, partitioner) = (routes.clone(), partitioner.clone());
            crate::ops::chain::stateless(prev, step, move |(k, v): (K, V), out| {
                let route = routes[partitioner(&k) % n];
                out.push((k, v, route))
            })
        });
        routed.spread("partition_by/spread", n, Some("2"))
    }
}
