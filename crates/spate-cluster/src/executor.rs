//! The executor role: Ballista's executor with spate's codecs (so spate's
//! nodes decode, their closures found by step name in this process's
//! [`Registry`]), fast heartbeats, shuffle files under the cluster's work
//! directory, and `/healthz` + `/readyz`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista_core::RuntimeProducer;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::health::{ExecutorHealth, spawn_health_server};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use spate_core::cluster::{Address, check_same_build};
use spate_core::codec::{SpateLogicalCodec, SpatePhysicalCodec};
use spate_core::context::Registry;

use crate::timing;
use crate::{Error, Result};

/// How to start an executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler to register with.
    pub scheduler: Address,
    /// The interface to listen on.
    pub bind_host: String,
    /// The host name the scheduler and other executors reach this one by
    /// (default: the address the scheduler sees it connect from).
    pub advertise: Option<String>,
    /// Base port: Arrow Flight (shuffle data) on it, the task service on the
    /// next, health on the one after; `None`: free ports.
    pub port: Option<u16>,
    /// Tasks run at once.
    pub slots: usize,
    /// The cluster's work directory: this executor's shuffle files go to
    /// `executor-<id>/`.
    pub work_dir: PathBuf,
}

/// The ports an executor serves on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Arrow Flight: other executors and drivers fetch shuffle data here.
    pub flight: u16,
    /// The task service the scheduler pushes tasks to.
    pub grpc: u16,
    /// `/healthz` and `/readyz`.
    pub health: u16,
}

/// Three free ports on `host` (or the three from `base`).
fn ports(host: &str, base: Option<u16>) -> Result<Ports> {
    if let Some(p) = base {
        let over = |n: u16| {
            p.checked_add(n)
                .ok_or_else(|| Error::Usage(format!("--port {p}: needs {p}..{p}+2 free")))
        };
        return Ok(Ports {
            flight: p,
            grpc: over(1)?,
            health: over(2)?,
        });
    }
    let free = crate::ports::free_ports(host, 3)?;
    Ok(Ports {
        flight: free[0],
        grpc: free[1],
        health: free[2],
    })
}

/// The functions tasks may call: those of the session the scheduler plans in.
fn functions() -> Result<BallistaFunctionRegistry> {
    let state = ballista_core::utils::default_session_builder(SessionConfig::new())
        .map_err(|e| Error::Internal(format!("executor functions: {e}")))?;
    Ok(BallistaFunctionRegistry::from(&state))
}

/// Each job's runtime: spill files under `work_dir` (as Ballista's own) and
/// object stores from this process's environment, shared by all jobs.
fn runtime_producer(work_dir: &std::path::Path) -> RuntimeProducer {
    let stores = spate_core::cluster::stores_from_env();
    let work_dir = work_dir.to_path_buf();
    Arc::new(move |_: &SessionConfig| {
        RuntimeEnvBuilder::new()
            .with_temp_file_path(work_dir.clone())
            .with_object_store_registry(stores.clone())
            .build_arc()
    })
}

/// Runs an executor until it is stopped (SIGINT, SIGTERM, the scheduler
/// stopping it, or the scheduler lost for 5 heartbeats). Steps of jobs are
/// looked up in `registry` when their tasks arrive.
pub async fn run(opts: ExecutorOptions, registry: Arc<Registry>) -> Result<()> {
    // Fail with a message, rather than retry for ever, when the address is
    // not a scheduler, or not one of this build.
    let scheduler = opts.scheduler.clone();
    tokio::task::spawn_blocking(move || check_same_build(&scheduler, "this executor"))
        .await
        .map_err(|e| Error::Internal(format!("executor: {e}")))??;
    let ports = ports(&opts.bind_host, opts.port)?;
    let host = opts
        .advertise
        .clone()
        .unwrap_or_else(crate::scheduler::host_name);
    let id = format!("{host}-{}", ports.flight);
    crate::log_to_file(&opts.work_dir.join(format!("executor-{id}.log")))?;
    let shuffle_dir = opts.work_dir.join(format!("executor-{id}"));
    std::fs::create_dir_all(&shuffle_dir)
        .map_err(|e| Error::Usage(format!("work directory {}: {e}", shuffle_dir.display())))?;
    // Hadoop Streaming and mrjob tasks: their shipped side files and
    // working directories.
    spate_core::hadoop::pipe::set_local_root(&opts.work_dir.join(format!("tasks-{id}")));
    tokio::spawn(sweep_shipped_files());
    let health = ExecutorHealth::new();
    let health_addr: SocketAddr = format!("{}:{}", opts.bind_host, ports.health)
        .parse()
        .map_err(|e| Error::Usage(format!("executor bind address {}: {e}", opts.bind_host)))?;
    let (_stop_health, health_stop) = tokio::sync::oneshot::channel();
    let health_server = spawn_health_server(health_addr, health.clone(), health_stop);
    let config = ExecutorProcessConfig {
        executor_id: id.clone(),
        bind_host: opts.bind_host.clone(),
        external_host: opts.advertise.clone(),
        port: ports.flight,
        grpc_port: ports.grpc,
        scheduler_host: opts.scheduler.host.clone(),
        scheduler_port: opts.scheduler.port,
        // One attempt: the address answered as a scheduler just now.
        scheduler_connect_timeout_seconds: 0,
        vcores: opts.slots.max(1),
        work_dir: Some(shuffle_dir.to_string_lossy().into_owned()),
        job_data_ttl_seconds: timing::ORPHAN_DATA_TTL_SECS,
        job_data_clean_up_interval_seconds: timing::ORPHAN_SWEEP_SECS,
        executor_heartbeat_interval_seconds: timing::HEARTBEAT_SECS,
        // Ballista's default registry lacks DataFusion's array functions
        // (`string_to_array`, `unnest`'s helpers...): tasks using them would
        // not decode. Take every function of the scheduler's session.
        override_function_registry: Some(Arc::new(functions()?)),
        override_logical_codec: Some(Arc::new(SpateLogicalCodec::new(registry.clone()))),
        override_physical_codec: Some(Arc::new(SpatePhysicalCodec::new(registry))),
        // Ballista's runtime for each job (spill files under the work
        // directory), with object stores set up from this process's
        // environment and shared by every job.
        override_runtime_producer: Some(runtime_producer(&shuffle_dir)),
        // Tasks' settings carry spate's (broadcast values).
        override_config_producer: Some(Arc::new(crate::scheduler::spate_config)),
        health: health.clone(),
        ..ExecutorProcessConfig::default()
    };
    log::info!(
        "spate executor {id}: {} slots, scheduler {}, flight port {}, task port {}, health http://{health_addr}/readyz",
        config.vcores,
        opts.scheduler,
        ports.flight,
        ports.grpc
    );
    let announce = {
        let health = health.clone();
        let (id, scheduler, slots) = (id.clone(), opts.scheduler.clone(), config.vcores);
        tokio::spawn(async move {
            let start = Instant::now();
            while !health.is_ready() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!(
                "executor {id}: registered with {scheduler} in {:.2?}, {slots} slots, health http://{health_addr}/readyz",
                start.elapsed()
            );
        })
    };
    let outcome = start_executor_process(Arc::new(config)).await;
    announce.abort();
    health_server.abort();
    outcome.map_err(|e| Error::Usage(format!("executor {id}: {e}")))
}

/// Every [`timing::ORPHAN_SWEEP_SECS`], removes the shipped side files no
/// step on this executor used for [`timing::ORPHAN_DATA_TTL_SECS`], and task
/// directories of killed tasks as old (the cache would otherwise grow with
/// every job that ships new bytes).
async fn sweep_shipped_files() {
    let every = Duration::from_secs(timing::ORPHAN_SWEEP_SECS);
    let unused_for = Duration::from_secs(timing::ORPHAN_DATA_TTL_SECS);
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let swept = tokio::task::spawn_blocking(move || {
            spate_core::hadoop::pipe::sweep_local_root(unused_for)
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => log::info!("removed {n} unused shipped side files and task directories"),
            Ok(Err(e)) => log::warn!("sweeping shipped side files: {e}"),
            Err(e) => log::warn!("sweeping shipped side files: {e}"),
        }
    }
}
