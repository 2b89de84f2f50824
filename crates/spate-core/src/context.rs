//! The execution context: configuration, the DataFusion session, the registry
//! of steps and the names they get.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use parking_lot::Mutex;
use spate_io::progress::Progress;

use crate::error::{Error, Result};
use crate::node::{FixedPartitions, PartitionOp, SpateQueryPlanner};
use crate::rows::Data;

/// Configuration of a [`Context`]. Defaults: every core, no memory limit.
#[derive(Debug, Clone, Default)]
pub struct Config {
    threads: Option<usize>,
    memory_limit: Option<usize>,
    batch_size: Option<usize>,
    cluster: Option<String>,
    declare_only: bool,
    graph: Option<std::path::PathBuf>,
}

impl Config {
    /// Worker threads (and partitions per stage); default: the number of cores.
    pub fn threads(&mut self, n: usize) -> &mut Self {
        self.threads = Some(n.max(1));
        self
    }

    /// Memory budget in bytes; operators spill to disk to stay below it.
    pub fn memory_limit(&mut self, bytes: usize) -> &mut Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Rows per Arrow batch (default 8192).
    pub fn batch_size(&mut self, rows: usize) -> &mut Self {
        self.batch_size = Some(rows.max(1));
        self
    }

    /// Runs every job of the context on the Ballista cluster whose scheduler
    /// is at `addr` (`HOST:PORT`, as `spate cluster up` prints it). Building
    /// the context fails, naming the address, when no scheduler answers there
    /// within 5 s. The driver plans and commits output; the executors run the
    /// tasks, so they must run this same program (see `spate::cluster`).
    pub fn cluster(&mut self, addr: impl Into<String>) -> &mut Self {
        self.cluster = Some(addr.into());
        self
    }

    /// Builds plans without running them: every action builds its job's plan
    /// (so each step is registered under its name) and returns an empty
    /// result — no rows, no output written. An executor of a job's own binary
    /// runs the job this way at start-up to hold the closures of its steps
    /// (see `spate::cluster::main`).
    pub fn declare_only(&mut self) -> &mut Self {
        self.declare_only = true;
        self
    }

    /// Records the physical plans the context runs and writes them, with
    /// their metrics, to `path` as JSON when the context goes (see
    /// [`crate::graph`]): the job service's job graph.
    pub fn record_graph(&mut self, path: impl Into<std::path::PathBuf>) -> &mut Self {
        self.graph = Some(path.into());
        self
    }

    /// Builds the context (and its thread pool).
    pub fn build(&self) -> Result<Context> {
        Context::with_config(self.clone())
    }

    /// The effective number of threads.
    pub fn effective_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// Parses a byte size such as `2GiB`, `512MiB`, `64M`, `1000`.
pub fn parse_bytes(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| {
        Error::Usage(format!(
            "invalid size {text:?}: expected a number with a unit, e.g. 2GiB"
        ))
    })?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(Error::Usage(format!(
                "invalid size {text:?}: unknown unit {other:?}"
            )));
        }
    };
    Ok((num * mult) as usize)
}

#[derive(Default)]
struct Names {
    scope: Vec<String>,
    used: HashSet<String>,
    counters: HashMap<String, usize>,
}

pub(crate) struct Inner {
    pub(crate) session: SessionContext,
    /// The context's thread pool; taken out only when the context is
    /// dropped ([`Inner`]'s `Drop`).
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
    pub(crate) config: Config,
    pub(crate) progress: Arc<Progress>,
    pub(crate) registry: Arc<Registry>,
    cluster: Option<crate::cluster::Address>,
    cluster_jobs: Arc<crate::cluster::ClusterJobs>,
    names: Mutex<Names>,
    shared: crate::shared::SharedValues,
    metrics: Arc<crate::metrics::MetricsStore>,
    plan_log: Option<Arc<crate::graph::PlanLog>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(log) = &self.plan_log
            && let Err(e) = log.write(self.cluster_jobs.since(0))
        {
            log::warn!("cannot write the job's graph: {e}");
        }
        // Dropping a runtime waits for its threads, which no thread of
        // another runtime may do: dropped inside one (a service embedding
        // spate), the pool shuts down in the background instead.
        if let Some(runtime) = self.runtime.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            runtime.shutdown_background();
        }
    }
}

/// The steps of a job by name: how the codecs find a step's closures again.
#[derive(Default)]
pub struct Registry {
    ops: Mutex<HashMap<String, Arc<dyn PartitionOp>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("steps", &self.ops.lock().len())
            .finish()
    }
}

impl Registry {
    /// Registers an op under its step name.
    pub fn register(&self, op: Arc<dyn PartitionOp>) {
        self.ops.lock().insert(op.step().to_string(), op);
    }

    /// Finds an op by step name.
    pub fn get(&self, step: &str) -> Option<Arc<dyn PartitionOp>> {
        self.ops.lock().get(step).cloned()
    }

    /// Adds every step of `other`; a name both hold is refused (two steps
    /// under one name could run one's closures for the other's tasks).
    pub fn merge(&self, other: &Registry) -> Result<()> {
        let theirs = other.ops.lock();
        let mut ours = self.ops.lock();
        if let Some(name) = theirs.keys().find(|k| ours.contains_key(*k)) {
            return Err(Error::Internal(format!(
                "two steps are named '{name}': give the jobs' steps scopes of their own"
            )));
        }
        ours.extend(theirs.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }
}

/// The largest estimated build side of a broadcast hash join.
const BROADCAST_JOIN_BYTES: usize = 64 << 20;

/// The estimated bytes and rows up to which a hash join's build side is
/// broadcast. Join tables do not spill, so under a memory limit the
/// estimate stays within a quarter of it (the table itself is larger than
/// the estimate); never below DataFusion's defaults (1 MiB, 131 072 rows).
fn broadcast_join_threshold(memory_limit: Option<usize>) -> (usize, usize) {
    let bytes = memory_limit
        .map_or(BROADCAST_JOIN_BYTES, |limit| {
            (limit / 4).min(BROADCAST_JOIN_BYTES)
        })
        .max(1 << 20);
    (bytes, (bytes / 16).max(128 << 10))
}

/// The largest sort run, in bytes of buffered batches (see where it is set):
/// 16 MiB, or under a memory limit a quarter of each thread's share of it,
/// never below DataFusion's 1 MiB.
fn sort_run_bytes(memory_limit: Option<usize>, threads: usize) -> usize {
    const RUN: usize = 16 << 20;
    memory_limit
        .map_or(RUN, |limit| (limit / (4 * threads.max(1))).min(RUN))
        .max(1 << 20)
}

/// Where jobs run: a DataFusion session on a thread pool, with spate's planner,
/// a memory budget and the registry of steps. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Context {
    /// A context with the default configuration (every core, no memory limit).
    pub fn new() -> Result<Self> {
        Config::default().build()
    }

    /// A configuration builder.
    pub fn builder() -> Config {
        Config::default()
    }

    fn with_config(config: Config) -> Result<Self> {
        let threads = config.effective_threads();
        let progress = Arc::new(Progress::default());
        let metrics = Arc::new(crate::metrics::MetricsStore::default());
        let mut session_config = crate::shared::with_spate_options(SessionConfig::new())
            .with_target_partitions(threads)
            .with_batch_size(config.batch_size.unwrap_or(8192))
            .with_information_schema(true)
            .with_extension(progress.clone())
            .with_extension(metrics.clone());
        let plan_log = config
            .graph
            .clone()
            .map(|out| Arc::new(crate::graph::PlanLog::writing_to(out)));
        if let Some(log) = &plan_log {
            session_config = session_config.with_extension(Arc::clone(log));
        }
        // Keep repartitioning to where the plan needs it (shuffles); spate's
        // sources already read with one partition per thread.
        session_config
            .options_mut()
            .optimizer
            .repartition_file_scans = true;
        // Hash joins whose build side is estimated under 64 MiB build one
        // table every partition probes (broadcast, DataFusion's
        // `CollectLeft`), not a table per partition after a shuffle of both
        // sides; Dataset joins and SQL alike. DataFusion's default is 1 MiB
        // (Spark's broadcast threshold is 10 MB); the sweep in spate-sql's
        // TPC-H benchmark measured 64 MiB 12 % faster over the 22 queries
        // (q7 and q18 by a third); every other setting it tried was noise,
        // slower, or (a lower perfect-hash-join density) too costly in
        // memory. The cluster's sessions keep Ballista's settings.
        let (bytes, rows) = broadcast_join_threshold(config.memory_limit);
        let optimizer = &mut session_config.options_mut().optimizer;
        optimizer.hash_join_single_partition_threshold = bytes;
        optimizer.hash_join_single_partition_threshold_rows = rows;
        // A sort under this many bytes is sorted as one run; over it, in runs
        // of this size merged together (single-column sorts). DataFusion's 1
        // MiB makes a sort of 12 M distinct words (the aggregate's output,
        // compacted: see `crate::compact`) merge ~400 runs per partition;
        // 16 MiB took that word count from ~10.7 s to ~7.6 s. Under a memory
        // limit the run is bounded by the sort's share of it: sorting a run
        // copies it first.
        session_config
            .options_mut()
            .execution
            .sort_in_place_threshold_bytes = sort_run_bytes(config.memory_limit, threads);
        let mut runtime_env = RuntimeEnvBuilder::new();
        if let Some(limit) = config.memory_limit {
            // Fair shares: every spilling operator (sorts, aggregates, spate's
            // combiners) gets its part of the budget; none can starve the others.
            runtime_env = runtime_env.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
            // Each sort pre-reserves this much for merging its spills (enough
            // for a few spill streams); DataFusion's default, 10 MiB per
            // partition, is too much for a small budget.
            let per_sort = (limit / (8 * threads)).clamp(256 << 10, 10 << 20);
            session_config
                .options_mut()
                .execution
                .sort_spill_reservation_bytes = per_sort;
            // Merge at most 8 spill files at once, so one partition's merge
            // cannot take the whole pool and starve the others.
            runtime_env = runtime_env.with_disk_manager_builder(
                DiskManagerBuilder::default().with_max_spill_merge_fan_in(8),
            );
        }
        let runtime_env = runtime_env
            .build_arc()
            .map_err(|e| Error::Usage(format!("runtime: {e}")))?;
        // Local tables, like those on object stores, skip hidden files
        // (`_SUCCESS`, staging directories) when listing their files.
        spate_io::store::register_local(&runtime_env);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("spate-worker")
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start {threads} worker threads: {e}")))?;
        let registry = Arc::new(Registry::default());
        let cluster_jobs = Arc::new(crate::cluster::ClusterJobs::default());
        let (session, cluster) = match &config.cluster {
            None => {
                let state = SessionStateBuilder::new()
                    .with_config(session_config)
                    .with_runtime_env(runtime_env)
                    .with_default_features()
                    // `CREATE EXTERNAL TABLE ... STORED AS TEXT`: lines, read by spate.
                    .with_table_factory(
                        "TEXT".into(),
                        Arc::new(spate_io::text_table::TextTableFactory),
                    )
                    .with_query_planner(Arc::new(SpateQueryPlanner))
                    .with_physical_optimizer_rule(Arc::new(FixedPartitions))
                    .with_physical_optimizer_rule(Arc::new(crate::compact::CompactBeforeSort))
                    .build();
                (SessionContext::new_with_state(state), None)
            }
            Some(addr) => {
                if config.memory_limit.is_some() {
                    return Err(Error::Usage(
                        "--memory-limit bounds a local run; on a cluster each executor's \
                         memory is its own (Ballista gives every task slot a share of 70% of \
                         the executor host's memory)"
                            .into(),
                    ));
                }
                let addr = crate::cluster::Address::parse(addr)?;
                let session = crate::cluster::remote_session(
                    &addr,
                    session_config.batch_size(),
                    progress.clone(),
                    runtime_env,
                    &registry,
                    &cluster_jobs,
                    runtime.handle(),
                )?;
                if let Some(log) = &plan_log {
                    session
                        .state_ref()
                        .write()
                        .config_mut()
                        .set_extension(Arc::clone(log));
                }
                (session, Some(addr))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                runtime: Some(runtime),
                config,
                progress,
                registry,
                cluster,
                cluster_jobs,
                names: Mutex::new(Names::default()),
                shared: crate::shared::SharedValues::default(),
                metrics,
                plan_log,
            }),
        })
    }

    /// The underlying DataFusion session (for SQL and DataFrames).
    pub fn session(&self) -> &SessionContext {
        &self.inner.session
    }

    /// Progress counters of jobs run in this context.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.inner.progress
    }

    /// Whether actions only build plans (see [`Config::declare_only`]).
    pub fn is_declaring(&self) -> bool {
        self.inner.config.declare_only
    }

    /// The scheduler this context's jobs run on, if it runs on a cluster.
    pub fn cluster(&self) -> Option<&crate::cluster::Address> {
        self.inner.cluster.as_ref()
    }

    /// The jobs this context ran on its cluster (none when local).
    pub fn cluster_jobs(&self) -> &Arc<crate::cluster::ClusterJobs> {
        &self.inner.cluster_jobs
    }

    /// The registry of steps.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.inner.config.effective_threads()
    }

    /// The memory budget in bytes, if one was set.
    pub fn memory_limit(&self) -> Option<usize> {
        self.inner.config.memory_limit
    }

    /// Runs a future on the context's thread pool, blocking until it is
    /// done. Also from inside another tokio runtime (a service embedding
    /// spate): a thread of its own then waits for the future (a thread of
    /// a runtime may not block on another), and a multi-threaded caller's
    /// worker hands its other tasks to its siblings while it waits.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.inner.runtime else {
            unreachable!("the runtime is taken only when the context is dropped")
        };
        let Ok(caller) = tokio::runtime::Handle::try_current() else {
            return runtime.block_on(fut);
        };
        let wait = || {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| runtime.block_on(fut))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        };
        match caller.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }

    /// Runs blocking spate work — an action, a write,
    /// [`crate::pipeline::Pipeline::run`] — from async code: on tokio's
    /// blocking threads, so the caller's runtime goes on serving while the
    /// job runs on the context's pool. Call it within a tokio runtime. The
    /// `*_async` actions are this around their blocking forms.
    pub async fn unblock<R: Send + 'static>(
        work: impl FnOnce() -> Result<R> + Send + 'static,
    ) -> Result<R> {
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => Err(Error::Internal(format!(
                    "the job's thread was cancelled: {e}"
                ))),
            },
        }
    }

    /// The accumulator named `name` (made on first use; the same name gives
    /// the same accumulator). See [`crate::shared::Accumulator`].
    pub fn accumulator(&self, name: &str) -> crate::shared::Accumulator {
        self.inner.shared.accumulator(name)
    }

    /// A read-only value for closures to read (Spark's `broadcast`). On a
    /// cluster the value travels with every job to the executors (encoded
    /// as CBOR, at most 4 MiB; larger lookups belong in a join), which
    /// decode it once. Broadcasts are named in the order they are made, as
    /// steps are: a job binary's driver and executors make the same ones.
    pub fn broadcast<T: Data>(&self, value: T) -> Result<crate::shared::Broadcast<T>> {
        let id = self.step_name("broadcast");
        self.ship_broadcast(&id, &value)?;
        Ok(crate::shared::Broadcast::new(id, value))
    }

    /// On a cluster, puts `value` into the settings every later job
    /// carries to its executors, as broadcast `id`.
    pub(crate) fn ship_broadcast<T: Data>(&self, id: &str, value: &T) -> Result<()> {
        if self.cluster().is_none() {
            return Ok(());
        }
        let encoded = crate::shared::encode(value)?;
        if encoded.len() > crate::shared::MAX_BROADCAST_BYTES {
            return Err(Error::Usage(format!(
                "broadcast {id}: {} bytes encoded, more than the {} a cluster job can carry \
                 to its executors; join with the data instead",
                encoded.len(),
                crate::shared::MAX_BROADCAST_BYTES
            )));
        }
        let all = self.inner.shared.add_broadcast(id, encoded)?;
        let state = self.inner.session.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .options_mut()
            .set("spate.broadcasts", &all)
            .map_err(|e| Error::Internal(format!("setting broadcast {id}: {e}")))
    }

    /// Adds the accumulator amounts of the cluster jobs run since `mark`
    /// (see [`crate::cluster::ClusterJobs::mark`]) to this context's
    /// accumulators. Amounts that cannot be read make a warning: the
    /// action's output is complete by then.
    pub(crate) fn gather_accumulators(&self, mark: usize) {
        let Some(addr) = self.cluster() else {
            return;
        };
        if !self.inner.shared.has_accumulators() && !crate::shared::metrics_made() {
            return;
        }
        for job in self.cluster_jobs().since(mark) {
            match self.block_on(crate::cluster::job_counts(addr, &job)) {
                Ok(counts) => {
                    self.inner.shared.add_counts(&counts);
                    self.inner.metrics.add_counts(&counts);
                }
                Err(e) => log::warn!("accumulators and metrics: {e}"),
            }
        }
    }

    /// The metric values the steps of this context's jobs committed (see
    /// [`crate::metrics`]); a pipeline run takes those of its own steps.
    pub fn metrics(&self) -> crate::metrics::MetricResults {
        crate::metrics::MetricResults::new(self.inner.metrics.snapshot())
    }

    /// Takes the metric values committed since the last take.
    pub(crate) fn take_metrics(&self) -> crate::metrics::MetricResults {
        crate::metrics::MetricResults::new(self.inner.metrics.take())
    }

    /// A new unique, deterministic step name: `Scope/kind`, with `#2`, `#3`
    /// ... appended when the same name was given before.
    pub(crate) fn step_name(&self, kind: &str) -> String {
        let mut names = self.inner.names.lock();
        let base = if names.scope.is_empty() {
            kind.to_string()
        } else {
            format!("{}/{kind}", names.scope.join("/"))
        };
        let mut name = base.clone();
        while names.used.contains(&name) {
            let n = names.counters.entry(base.clone()).or_insert(1);
            *n += 1;
            name = format!("{base}#{n}");
        }
        names.used.insert(name.clone());
        name
    }

    /// Runs `f` with `name` pushed on the step-name scope: the steps `f`
    /// builds are named `name/...` (as a Beam composite's are). Gives the
    /// steps of several jobs built by one program names of their own.
    pub fn in_scope<R>(&self, name: &str, f: impl FnOnce() -> R) -> R {
        let unique = {
            let mut names = self.inner.names.lock();
            let path = names
                .scope
                .iter()
                .map(String::as_str)
                .chain([name])
                .collect::<Vec<_>>()
                .join("/");
            let mut unique = name.to_string();
            let mut n = 1;
            let mut full = path.clone();
            while names.used.contains(&full) {
                n += 1;
                unique = format!("{name}#{n}");
                full = format!("{path}#{n}");
            }
            names.used.insert(full);
            names.scope.push(unique.clone());
            unique
        };
        let out = f();
        let mut names = self.inner.names.lock();
        if names.scope.last() == Some(&unique) {
            names.scope.pop();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_joins_shrink_with_the_memory_limit() {
        let t = broadcast_join_threshold;
        assert_eq!(t(None), (64 << 20, 4 << 20));
        assert_eq!(t(Some(1 << 30)), (64 << 20, 4 << 20));
        assert_eq!(t(Some(64 << 20)), (16 << 20, 1 << 20));
        // Never below DataFusion's own defaults.
        assert_eq!(t(Some(2 << 20)), (1 << 20, 128 << 10));
    }

    #[test]
    fn sort_runs_shrink_with_the_memory_limit() {
        assert_eq!(sort_run_bytes(None, 2), 16 << 20);
        assert_eq!(sort_run_bytes(Some(1 << 30), 2), 16 << 20);
        assert_eq!(sort_run_bytes(Some(64 << 20), 2), 8 << 20);
        // Never below DataFusion's own default.
        assert_eq!(sort_run_bytes(Some(4 << 20), 8), 1 << 20);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn names_are_deterministic_and_unique() {
        let ctx = Context::builder().threads(1).build().unwrap();
        assert_eq!(ctx.step_name("map"), "map");
        assert_eq!(ctx.step_name("map"), "map#2");
        ctx.in_scope("Count", || {
            assert_eq!(ctx.step_name("map"), "Count/map");
            ctx.in_scope("Inner", || {
                assert_eq!(ctx.step_name("flat_map"), "Count/Inner/flat_map")
            });
        });
        ctx.in_scope("Count", || assert_eq!(ctx.step_name("map"), "Count#2/map"));
    }
}
