//! The scheduler role: Ballista's scheduler with spate's planner and codecs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::error::BallistaError;
use ballista_scheduler::SessionBuilder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use spate_core::codec::{SpateLogicalCodec, SpatePhysicalCodec};
use spate_core::context::Registry;
use tokio::task::JoinHandle;

use crate::timing;
use crate::{Error, Result};

/// How to start a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where to listen (gRPC and REST on one port; port 0: any free port).
    pub bind: SocketAddr,
    /// The host name executors and clients reach this scheduler by (default:
    /// the bind address, or this host's name when binding every interface).
    pub advertise: Option<String>,
    /// The cluster's work directory: the per-job event logs go to `events/`.
    pub work_dir: PathBuf,
}

/// A running scheduler.
pub struct Scheduler {
    addr: SocketAddr,
    advertised: String,
    service: JoinHandle<std::result::Result<(), BallistaError>>,
}

impl Scheduler {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `HOST:PORT` as executors and clients should use it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.advertised, self.addr.port())
    }

    /// Serves until the service fails.
    pub async fn wait(self) -> Result<()> {
        match self.service.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Internal(format!("scheduler: {e}"))),
            Err(e) => Err(Error::Internal(format!("scheduler task: {e}"))),
        }
    }
}

/// The host name of this machine (for advertising an every-interface bind).
pub(crate) fn host_name() -> String {
    spate_core::cluster::host_name().unwrap_or_else(|| "localhost".into())
}

/// Ballista's session configuration with spate's settings registered.
pub(crate) fn spate_config() -> SessionConfig {
    spate_core::shared::with_spate_options(ballista_core::utils::default_config_producer())
}

/// Ballista's scheduler configuration as spate sets it (each setting that
/// differs from Ballista's default says why, in [`timing`]).
fn config(opts: &SchedulerOptions, port: u16, advertised: &str) -> SchedulerConfig {
    let registry = Arc::new(Registry::default());
    // Ballista's own session state for each job (its optimizer rules and
    // functions), with spate's planner for spate's nodes. Ballista's
    // documentation builds one from scratch and loses those rules. Object
    // stores come from this process's environment, set up on first use and
    // shared by every job.
    let stores = spate_core::cluster::stores_from_env();
    let session_builder: SessionBuilder = Arc::new(move |config: SessionConfig| {
        let state = ballista_core::utils::default_session_builder(config)?;
        let state = spate_core::cluster::with_object_stores(state, stores.clone())?;
        Ok(spate_core::cluster::with_spate_planner(state))
    });
    SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: port,
        external_host: advertised.to_string(),
        override_session_builder: Some(session_builder),
        // Jobs' sessions accept spate's settings (broadcast values).
        override_config_producer: Some(Arc::new(spate_config)),
        // Steps are planned from their declarations: the scheduler holds no
        // job's closures (an empty registry).
        override_logical_codec: Some(Arc::new(SpateLogicalCodec::new(registry.clone()))),
        override_physical_codec: Some(Arc::new(SpatePhysicalCodec::new(registry))),
        executor_timeout_seconds: timing::EXECUTOR_TIMEOUT_SECS,
        expire_dead_executor_interval_seconds: timing::EXPIRE_CHECK_SECS,
        no_executors_grace_period_seconds: timing::NO_EXECUTORS_GRACE_SECS,
        task_max_failures: timing::TASK_MAX_ATTEMPTS,
        finished_job_data_clean_up_interval_seconds: timing::FINISHED_JOB_DATA_SECS,
        finished_job_state_clean_up_interval_seconds: timing::FINISHED_JOB_STATE_SECS,
        event_log_dir: Some(opts.work_dir.join("events").to_string_lossy().into_owned()),
        // Executors read this program's build from it (`/api/state`) and
        // refuse to serve a scheduler of another build.
        scheduler_id: spate_core::build::scheduler_id(),
        ..SchedulerConfig::default()
    }
}

/// Starts a scheduler; it serves until [`Scheduler::wait`] ends or the
/// process exits.
pub async fn start(opts: SchedulerOptions) -> Result<Scheduler> {
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .map_err(|e| Error::Usage(format!("scheduler: cannot listen on {}: {e}", opts.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("scheduler address: {e}")))?;
    let advertised = match &opts.advertise {
        Some(host) => host.clone(),
        None if addr.ip().is_unspecified() => host_name(),
        None => addr.ip().to_string(),
    };
    std::fs::create_dir_all(opts.work_dir.join("events"))
        .map_err(|e| Error::Usage(format!("work directory {}: {e}", opts.work_dir.display())))?;
    let config = Arc::new(config(&opts, addr.port(), &advertised));
    config
        .validate()
        .map_err(|e| Error::Usage(format!("scheduler: {e}")))?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::Internal(format!("scheduler state: {e}")))?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config)
        .await
        .map_err(|e| Error::Internal(format!("scheduler: {e}")))?;
    let service = tokio::spawn(start_grpc_service_with_listener(listener, server));
    log::info!(
        "spate scheduler listening on {addr}, advertised as {advertised}:{}",
        addr.port()
    );
    Ok(Scheduler {
        addr,
        advertised,
        service,
    })
}
