//! Reuse: `cache`, `persist`, `unpersist` (see [`crate::ops::cache`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::ops::cache::{CacheFillOp, CacheSlot, Cached, CachedExec, StorageLevel};
use crate::rows::{Data, RowCodec};

use super::{Dataset, Kind};

impl<T: Data> Dataset<T> {
    /// Keeps the dataset once computed: the first job that needs it
    /// computes it and keeps its batches, later jobs read them (Spark's
    /// `cache`, at Spark Datasets' level: memory within the budget, the
    /// rest spilled to disk). See [`persist`](Self::persist).
    ///
    /// ```
    /// use spate_core::prelude::*;
    /// let ctx = Context::new()?;
    /// let squares = ctx.from_vec((1..=1000u64).collect()).map(|x| x * x).cache();
    /// assert_eq!(squares.clone().count()?, 1000); // computes and keeps
    /// assert_eq!(squares.max_by(|x| *x)?, Some(1_000_000)); // reads the cache
    /// # Ok::<(), spate_core::Error>(())
    /// ```
    pub fn cache(self) -> Dataset<T> {
        self.persist(StorageLevel::MemoryAndDisk)
    }

    /// Keeps the dataset once computed, at `level` (Spark's `persist`).
    /// The kept copy counts against the context's memory budget until
    /// [`unpersist`](Self::unpersist) or until the last handle on the
    /// dataset is dropped. It is published only by a job that computed
    /// every partition: a job that stopped early (`take`) or failed keeps
    /// nothing, and the next job computes it again.
    ///
    /// On a cluster, nothing is kept — Ballista's executors have no store
    /// for a driver's data — so every job computes the dataset (a warning
    /// is logged); results are the same.
    pub fn persist(self, level: StorageLevel) -> Dataset<T> {
        let ctx = self.ctx.clone();
        // A job binary's executors only declare its steps: they name them
        // as its driver on the cluster does, which keeps nothing.
        if ctx.is_declaring() {
            return self;
        }
        if ctx.cluster().is_some() {
            log::warn!(
                "persist/cache: not kept on a cluster (Ballista executors have no block store); \
                 each job computes the dataset again"
            );
            return self;
        }
        let name = ctx.step_name("cache");
        let slot = Arc::new(CacheSlot::new(name, level));
        let upstream = self.into_plan();
        let (ctx2, slot2) = (ctx.clone(), slot.clone());
        let plan = Arc::new(move || cached_plan::<T>(&ctx2, &slot2, &upstream));
        Dataset {
            ctx,
            kind: Kind::Plan(plan),
            cache: Some(slot),
        }
    }

    /// This dataset as a pipeline collection that `shared` counts the
    /// consumers of: read by more than one, it is computed once per run
    /// and kept (memory, then disk) for the others.
    ///
    /// Pending closures stay pending: a collection read once keeps fusing
    /// with its reader (the decision is made when the plan is built, once
    /// every reader is known). A cluster's driver never caches, and neither
    /// do the contexts that only declare a job's steps for its executors,
    /// so that both build the same steps under the same names.
    pub(crate) fn shared_by(self, shared: Arc<SharedUse>) -> Dataset<T> {
        let ctx = self.ctx.clone();
        if ctx.cluster().is_some() || ctx.is_declaring() {
            return self;
        }
        let cached = {
            let (ctx, shared) = (ctx.clone(), shared.clone());
            let materialized = self.clone().into_plan();
            Arc::new(move || {
                let slot = shared.slot.get_or_init(|| {
                    Arc::new(CacheSlot::new(
                        ctx.step_name("shared"),
                        StorageLevel::MemoryAndDisk,
                    ))
                });
                cached_plan::<T>(&ctx, slot, &materialized)
            })
        };
        let is_shared = move || shared.consumers.load(Ordering::Acquire) > 1;
        let kind = match self.kind {
            Kind::Plan(plan) => Kind::Plan(Arc::new(
                move || {
                    if is_shared() { cached() } else { plan() }
                },
            )),
            Kind::Chain { base, chain, steps } => {
                let is_shared2 = is_shared.clone();
                let step: Arc<str> = Arc::from(steps.last().map_or("shared", String::as_str));
                Kind::Chain {
                    base: Arc::new(move || if is_shared() { cached() } else { base() }),
                    chain: Arc::new(move || {
                        if is_shared2() {
                            Ok(crate::ops::chain::decode_chain(
                                RowCodec::<T>::new()?,
                                step.clone(),
                            ))
                        } else {
                            chain()
                        }
                    }),
                    steps,
                }
            }
        };
        Dataset {
            ctx,
            kind,
            cache: None,
        }
    }

    /// Drops what [`persist`](Self::persist) kept; the next job computes
    /// the dataset again (and keeps it again).
    pub fn unpersist(&self) {
        if let Some(slot) = &self.cache {
            slot.clear();
        }
    }

    /// The level this dataset is persisted at, if it is.
    pub fn storage_level(&self) -> Option<StorageLevel> {
        self.cache.as_ref().map(|s| s.level())
    }

    /// Whether a job has filled this dataset's cache: `(bytes in memory,
    /// bytes on disk)`, or `None`.
    pub fn cached_size(&self) -> Option<(usize, u64)> {
        self.cache.as_ref().and_then(|s| s.get()).map(|c| c.sizes())
    }
}

/// The plan of a cached dataset: a scan of the cache once a job has filled
/// it, else the dataset's own plan under the op that fills it.
fn cached_plan<T: Data>(
    ctx: &crate::Context,
    slot: &Arc<CacheSlot>,
    upstream: &super::Lazy<datafusion::logical_expr::LogicalPlan>,
) -> crate::error::Result<datafusion::logical_expr::LogicalPlan> {
    let name = slot.step().to_string();
    if let Some(cached) = slot.get() {
        let table = CachedTable {
            step: name.clone(),
            cached,
        };
        return Ok(LogicalPlanBuilder::scan(
            name.as_str(),
            provider_as_source(Arc::new(table)),
            None,
        )?
        .build()?);
    }
    let schema = RowCodec::<T>::new()?.schema().clone();
    let op = CacheFillOp::new(slot.clone(), schema);
    ctx.op_plan(Arc::new(op), upstream()?)
}

/// How many consumers a pipeline collection has, and the cache it is kept
/// in when it has more than one.
#[derive(Debug, Default)]
pub struct SharedUse {
    consumers: AtomicUsize,
    slot: std::sync::OnceLock<Arc<CacheSlot>>,
}

impl SharedUse {
    /// Counts one more consumer.
    pub(crate) fn consumed(&self) {
        self.consumers.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops what was kept (a run is over).
    pub(crate) fn release(&self) {
        if let Some(slot) = self.slot.get() {
            slot.clear();
        }
    }
}

/// A published cache as a table, so plans scan it like any source.
#[derive(Debug)]
struct CachedTable {
    step: String,
    cached: Arc<Cached>,
}

#[async_trait::async_trait]
impl TableProvider for CachedTable {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.cached.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let exec: Arc<dyn ExecutionPlan> =
            Arc::new(CachedExec::new(self.step.clone(), self.cached.clone()));
        match projection {
            Some(columns)
                if columns.len() != self.cached.schema().fields().len()
                    || columns.iter().enumerate().any(|(i, c)| i != *c) =>
            {
                let schema = exec.schema();
                let exprs = columns
                    .iter()
                    .map(|&i| {
                        let name = schema.field(i).name().clone();
                        datafusion::physical_expr::expressions::col(&name, &schema)
                            .map(|e| (e, name))
                    })
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                Ok(Arc::new(
                    datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, exec)?,
                ))
            }
            _ => Ok(exec),
        }
    }
}
