//! The driver's side of a Ballista cluster: the scheduler's address, a check
//! that a scheduler answers there, what it knows of its executors, and the
//! remote session every face plans into (`Context::builder().cluster(addr)`).
//!
//! The scheduler serves gRPC and its REST API (`/api/...`) on one port; the
//! driver uses REST for what gRPC has no call for (the list of executors).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::error::Result as DfResult;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Deserialize;

use crate::codec::{SpateLogicalCodec, SpatePhysicalCodec};
use crate::context::Registry;
use crate::error::{Error, Result};
use crate::node::{FixedPartitions, SpateQueryPlanner};

/// The port a scheduler listens on when an address names none (Ballista's).
pub const DEFAULT_PORT: u16 = 50050;

/// How long the driver waits for a scheduler to answer before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A scheduler's address, `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Host name or IP address.
    pub host: String,
    /// The scheduler's port (gRPC and REST).
    pub port: u16,
}

impl Address {
    /// Parses `HOST:PORT`, `HOST` (port 50050), or either after `df://` or
    /// `http://`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "cluster address '{text}': {why}; expected HOST:PORT"
            ))
        };
        let rest = ["df://", "http://"]
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme))
            .unwrap_or(text)
            .trim_end_matches('/');
        if rest.is_empty() {
            return Err(bad("no host"));
        }
        if rest.contains('/') || rest.contains("://") {
            return Err(bad("not a host and port"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // `[::1]:50050`
            Some((host, port))
                if !host.is_empty() && (!host.contains(':') || host.starts_with('[')) =>
            {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
                if port == 0 {
                    return Err(bad("port 0"));
                }
                (host.to_string(), port)
            }
            Some(("", _)) => return Err(bad("no host")),
            _ => (rest.to_string(), DEFAULT_PORT),
        };
        Ok(Self { host, port })
    }

    /// The URL Ballista's client connects to.
    pub fn url(&self) -> String {
        format!("df://{self}")
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An executor as the scheduler sees it (`GET /api/executors`).
#[derive(Debug, Clone, Deserialize)]
pub struct ExecutorInfo {
    /// The executor's id.
    pub id: String,
    /// The host it serves shuffle data from.
    pub host: String,
    /// Its Arrow Flight port.
    pub port: u16,
    /// When its last heartbeat arrived (milliseconds since the epoch).
    pub last_seen: Option<u64>,
    /// Its task slots.
    pub specification: ExecutorSpec,
}

/// What an executor offers.
#[derive(Debug, Clone, Deserialize)]
pub struct ExecutorSpec {
    /// Task slots (tasks it runs at once).
    pub vcores: u32,
}

/// The versions a scheduler reports (`GET /api/version`).
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerVersion {
    /// Ballista's version.
    pub version: String,
}

/// A scheduler's state (`GET /api/state`): its id carries its build.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerState {
    /// The scheduler's id (`spate-<build>-<random>` for spate's).
    pub scheduler_id: String,
    /// Ballista's version.
    pub version: String,
}

/// One HTTP/1.0 GET to `path` on the scheduler: its status and body.
fn get(addr: &Address, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    // Every address of the host in turn (`localhost` is `::1` first on most
    // systems, and a scheduler may listen on IPv4 only).
    let host = addr.host.trim_start_matches('[').trim_end_matches(']');
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address");
    let mut connected = None;
    for target in (host, addr.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(s) => {
                connected = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = connected.ok_or(last)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a server may answer and close after the first segment.
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| head.starts_with("HTTP/"))
        .ok_or_else(invalid)?;
    Ok((status, body.to_string()))
}

/// A JSON document from the scheduler's REST API, with errors that name the
/// address and say what answered there.
fn get_json<T: for<'de> Deserialize<'de>>(addr: &Address, path: &str) -> Result<T> {
    let (status, body) = get(addr, path, CONNECT_TIMEOUT)
        .map_err(|e| Error::Usage(format!("no spate scheduler at {addr}: {e}")))?;
    if status != 200 {
        return Err(Error::Usage(format!(
            "{addr} is not a spate scheduler: GET {path} answered HTTP {status}"
        )));
    }
    serde_json::from_str(&body).map_err(|e| {
        Error::Usage(format!(
            "{addr} is not a spate scheduler: GET {path} answered something else ({e})"
        ))
    })
}

/// Any document of the scheduler's REST API (`/api/jobs`,
/// `/api/job/{id}/stages`, ...), as JSON.
pub fn rest_json(addr: &Address, path: &str) -> Result<serde_json::Value> {
    get_json(addr, path)
}

/// The scheduler's version; fails (a usage error naming the address) when
/// no scheduler answers within [`CONNECT_TIMEOUT`].
pub fn scheduler_version(addr: &Address) -> Result<SchedulerVersion> {
    get_json(addr, "/api/version")
}

/// The scheduler's state; fails like [`scheduler_version`].
pub fn scheduler_state(addr: &Address) -> Result<SchedulerState> {
    get_json(addr, "/api/state")
}

/// Checks that the scheduler at `addr` is spate's and of this program's
/// build — what an executor must be to serve it, and a job binary's driver
/// to use it: steps are found by name, and another build could hold other
/// closures under the same names. `who` names this process in the error
/// (`this executor`, `this job`).
pub fn check_same_build(addr: &Address, who: &str) -> Result<()> {
    let state = scheduler_state(addr)?;
    let mine = crate::build::build_id();
    match crate::build::build_of_scheduler(&state.scheduler_id) {
        Some(theirs) if theirs == mine => Ok(()),
        Some(theirs) => Err(Error::Usage(format!(
            "{who} is build {mine}, but the cluster at {addr} is build {theirs}: a \
             cluster's processes and its jobs' drivers must run the same program file \
             (a rebuilt program needs a new cluster)"
        ))),
        None => Err(Error::Usage(format!(
            "{addr} is a Ballista scheduler but not spate's (scheduler id '{}'): spate's \
             executors need a scheduler started by `cluster scheduler` or `cluster up` of \
             the same program",
            state.scheduler_id
        ))),
    }
}

/// The executors the scheduler knows, alive or not yet expired.
pub fn executors(addr: &Address) -> Result<Vec<ExecutorInfo>> {
    get_json(addr, "/api/executors")
}

/// Ballista's client settings spate fixes, with why.
fn client_config(mut config: SessionConfig, registry: &Arc<Registry>) -> Result<SessionConfig> {
    config = config
        .with_ballista_logical_extension_codec(Arc::new(SpateLogicalCodec::new(registry.clone())))
        .with_ballista_physical_extension_codec(Arc::new(SpatePhysicalCodec::new(registry.clone())))
        // The adaptive planner has no executor-failure handling in Ballista
        // 55 (apache/datafusion-ballista#1986): a job hangs when an executor
        // dies in a reduce stage. The static planner re-runs lost work.
        .with_ballista_adaptive_query_planner(false);
    // A scheduler that does not answer fails the job in seconds, not 20 s.
    let key = "ballista.client.grpc_connect_timeout_seconds";
    config
        .options_mut()
        .set(key, "5")
        .map_err(|e| Error::Usage(format!("cluster setting {key}: {e}")))?;
    Ok(config)
}

/// A session whose queries run on the scheduler at `addr`: checks that a
/// scheduler answers there and plans with as many partitions as the
/// cluster has task slots.
pub(crate) fn remote_session(
    addr: &Address,
    batch_size: usize,
    progress: Arc<spate_io::progress::Progress>,
    runtime_env: Arc<RuntimeEnv>,
    registry: &Arc<Registry>,
    jobs: &Arc<ClusterJobs>,
    handle: &tokio::runtime::Handle,
) -> Result<SessionContext> {
    scheduler_version(addr)?;
    let slots: usize = executors(addr)?
        .iter()
        .map(|e| e.specification.vcores as usize)
        .sum();
    let config = crate::shared::with_spate_options(SessionConfig::new_with_ballista())
        .with_target_partitions(slots.max(1))
        .with_batch_size(batch_size)
        .with_information_schema(true)
        .with_extension(progress);
    let state = SessionStateBuilder::new()
        .with_config(client_config(config, registry)?)
        .with_runtime_env(runtime_env)
        .with_default_features()
        .with_table_factory(
            "TEXT".into(),
            Arc::new(spate_io::text_table::TextTableFactory),
        )
        .build();
    let remote = handle
        .block_on(SessionContext::remote_with_state(&addr.url(), state))
        .map_err(|e| Error::Usage(format!("cluster {addr}: {e}")))?;
    // Ballista's planner, with each plan it makes noted: the driver asks
    // the scheduler about a job's metrics afterwards (its counters).
    let state = remote.state();
    let session_id = state.session_id().to_string();
    let planner = RecordingPlanner {
        inner: state.query_planner().clone(),
        jobs: jobs.clone(),
        scheduler: addr.clone(),
    };
    let state = SessionStateBuilder::new_from_existing(state)
        .with_session_id(session_id)
        .with_query_planner(Arc::new(planner))
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// The last plans a context ran on its cluster, to find their Ballista job
/// ids afterwards; at most [`ClusterJobs::KEPT`].
#[derive(Debug, Default)]
pub struct ClusterJobs {
    plans: parking_lot::Mutex<std::collections::VecDeque<Arc<dyn ExecutionPlan>>>,
    made: std::sync::atomic::AtomicUsize,
}

impl ClusterJobs {
    const KEPT: usize = 64;

    fn record(&self, plan: Arc<dyn ExecutionPlan>) {
        let mut plans = self.plans.lock();
        if plans.len() == Self::KEPT {
            plans.pop_front();
        }
        plans.push_back(plan);
        self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many plans were made so far (a mark for [`ClusterJobs::since`]).
    pub fn mark(&self) -> usize {
        self.made.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The Ballista job ids of the plans made after `mark` that the
    /// scheduler accepted.
    pub fn since(&self, mark: usize) -> Vec<String> {
        let plans = self.plans.lock();
        let made = self.mark();
        let newer = made.saturating_sub(mark).min(plans.len());
        plans
            .iter()
            .skip(plans.len() - newer)
            .filter_map(crate::cluster_job::job_id_of)
            .collect()
    }
}

/// Ballista's query planner, noting every plan it makes, each plan wrapped
/// so that its errors say when the scheduler was lost
/// ([`crate::cluster_job`]).
#[derive(Debug)]
struct RecordingPlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    jobs: Arc<ClusterJobs>,
    scheduler: Address,
}

#[async_trait::async_trait]
impl QueryPlanner for RecordingPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self
            .inner
            .create_physical_plan(logical_plan, session_state)
            .await?;
        self.jobs.record(plan.clone());
        let plan: Arc<dyn ExecutionPlan> = Arc::new(crate::cluster_job::ClusterJobExec::new(
            plan,
            self.scheduler.clone(),
        ));
        if let Some(log) = session_state
            .config()
            .get_extension::<crate::graph::PlanLog>()
        {
            log.record(Arc::clone(&plan));
        }
        Ok(plan)
    }
}

/// Every named count (`Count` metric) of a finished job's operators, as the
/// scheduler totalled them over each task's successful attempt.
pub async fn job_counts(addr: &Address, job_id: &str) -> Result<Vec<(String, u64)>> {
    use ballista_core::serde::protobuf::GetJobMetricsParams;
    use ballista_core::serde::protobuf::operator_metric::Metric as Proto;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    let lost = |e: &dyn std::fmt::Display| {
        Error::Internal(format!(
            "reading the metrics of job {job_id} from the scheduler at {addr}: {e}"
        ))
    };
    // A job's metrics list every operator of every stage per partition:
    // allow as much as Ballista's own clients do.
    let mut client = SchedulerGrpcClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| lost(&e))?
        .max_decoding_message_size(64 << 20);
    let result = client
        .get_job_metrics(GetJobMetricsParams {
            job_id: job_id.to_string(),
        })
        .await
        .map_err(|e| lost(&e.message()))?
        .into_inner();
    let mut out = Vec::new();
    for stage in result.stages {
        for op in stage.operators {
            for m in op.metrics {
                if let Some(Proto::Count(c)) = m.metric {
                    out.push((c.name, c.value));
                }
            }
        }
    }
    Ok(out)
}

/// A scheduler's session state for one job: Ballista's own (its optimizer
/// rules and functions kept) with what spate adds to every session — its
/// query planner for spate's nodes, the rule that keeps a fixed number of
/// reducers, scans that executors read exactly as a local run does
/// ([`crate::cluster_scans`]), writes by task attempt
/// ([`crate::cluster_writes`]), and `STORED AS TEXT` tables.
pub fn with_spate_planner(state: SessionState) -> SessionState {
    // `new_from_existing` would give the session a new id; Ballista keys
    // the job's session by it.
    let session_id = state.session_id().to_string();
    // Listings skip hidden files (`_SUCCESS`, an INSERT's staging
    // directory) as a local run's do.
    spate_io::store::register_local(state.runtime_env());
    SessionStateBuilder::new_from_existing(state)
        .with_session_id(session_id)
        .with_query_planner(Arc::new(SpateQueryPlanner))
        .with_physical_optimizer_rule(Arc::new(FixedPartitions))
        .with_physical_optimizer_rule(Arc::new(crate::compact::CompactBeforeSort))
        .with_physical_optimizer_rule(Arc::new(crate::cluster_scans::TextScansAsFileScans))
        .with_physical_optimizer_rule(Arc::new(crate::cluster_scans::KeepScanCompression))
        .with_physical_optimizer_rule(Arc::new(crate::cluster_writes::WritesByAttempt))
        .with_table_factory(
            "TEXT".into(),
            Arc::new(spate_io::text_table::TextTableFactory),
        )
        .build()
}

/// The object stores of a scheduler or an executor: each bucket's store set
/// up from the process's own environment the first time a job names it
/// (see [`spate_io::store::StoresFromEnv`]).
pub fn stores_from_env() -> Arc<dyn ObjectStoreRegistry> {
    spate_io::store::StoresFromEnv::new()
}

/// `state` with its runtime reading object stores from `stores` (its
/// session id kept: Ballista keys the job's session by it).
pub fn with_object_stores(
    state: SessionState,
    stores: Arc<dyn ObjectStoreRegistry>,
) -> DfResult<SessionState> {
    let session_id = state.session_id().to_string();
    let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
        .with_object_store_registry(stores)
        .build_arc()?;
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_session_id(session_id)
        .with_runtime_env(runtime)
        .build())
}

/// This machine's host name.
pub fn host_name() -> Option<String> {
    spate_io::host_name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = |s: &str| Address::parse(s).map(|a| a.to_string());
        assert_eq!(a("localhost:7000").ok().as_deref(), Some("localhost:7000"));
        assert_eq!(
            a("df://10.0.0.1:50051").ok().as_deref(),
            Some("10.0.0.1:50051")
        );
        assert_eq!(a("http://sched/").ok().as_deref(), Some("sched:50050"));
        assert_eq!(a("[::1]:9").ok().as_deref(), Some("[::1]:9"));
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:x",
            ":50",
            "s3://bucket/key",
        ] {
            assert!(matches!(Address::parse(bad), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn nothing_listening_is_a_usage_error_naming_the_address() {
        // A port nothing listens on: bind, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let addr = Address::parse(&format!("127.0.0.1:{port}")).unwrap_or(Address {
            host: "127.0.0.1".into(),
            port,
        });
        match scheduler_version(&addr) {
            Err(Error::Usage(m)) => assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}"),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }
}
