//! Clusters the server manages: a Ballista scheduler and its executors,
//! started as one `spate cluster up` process group on the server's host,
//! each cluster with its own work directory (`server/clusters/UUID/work`:
//! the processes' logs, shuffle files). Creating, starting, stopping and
//! deleting are long-running operations (`operations/UUID`), as in
//! Dataproc. Deleting a cluster deletes its processes and work directory,
//! never the history, logs, graphs or metrics of the jobs it ran: a job's
//! share of the executors' logs is copied into the job's own directory
//! when it ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::model::{
    Cluster, ClusterState, ClusterStatus, ExecutorView, Operation, OperationError,
    OperationMetadata, seconds_of,
};
use crate::runner::{Jobs, last_line, now, signal_group, start_time, still_runs};
use crate::store::ProcessId;

/// How long a cluster gets to come up (its executors to register).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a stopping cluster gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A cluster's processes, while they run.
pub(crate) struct ClusterProc {
    stop: Notify,
    stopping: AtomicBool,
    /// Told when the processes have gone.
    gone: tokio::sync::watch::Sender<bool>,
}

/// The clusters' running processes and idle times.
#[derive(Default)]
pub(crate) struct ClusterProcs {
    running: Mutex<HashMap<String, Arc<ClusterProc>>>,
    /// Since when each running cluster has had no job.
    idle_since: Mutex<HashMap<String, Instant>>,
}

impl ClusterProcs {
    fn get(&self, uuid: &str) -> Option<Arc<ClusterProc>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uuid)
            .cloned()
    }

    /// Notes that a cluster has work, or has just had it.
    pub(crate) fn touch(&self, uuid: &str) {
        self.idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uuid.to_string(), Instant::now());
    }
}

fn set_cluster_status(cluster: &mut Cluster, state: ClusterState, detail: String) {
    if let Some(old) = cluster.status.take() {
        cluster.status_history.push(old);
    }
    cluster.status = Some(ClusterStatus {
        state,
        detail,
        state_start_time: now(),
    });
}

impl Jobs {
    fn cluster_dir(&self, uuid: &str) -> PathBuf {
        self.dir().join("clusters").join(uuid)
    }

    /// The cluster named `name` (or with that uuid).
    pub fn cluster(&self, name: &str) -> Result<Cluster, ApiError> {
        self.store
            .cluster(name)?
            .ok_or_else(|| ApiError::not_found(format!("no cluster {name}")))
    }

    /// Changes the stored cluster with no other change in between.
    fn change_cluster(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Cluster) -> Result<(), ApiError>,
    ) -> Result<Cluster, ApiError> {
        let _one_at_a_time = self.lock_changes();
        let mut cluster = self.cluster(uuid)?;
        f(&mut cluster)?;
        self.store.update_cluster(&cluster)?;
        Ok(cluster)
    }

    fn new_operation(&self, kind: &str, cluster: &Cluster) -> Operation {
        Operation {
            name: format!("operations/{}", uuid::Uuid::new_v4()),
            metadata: OperationMetadata {
                operation_type: kind.to_string(),
                cluster_name: cluster.cluster_name.clone(),
                cluster_uuid: cluster.cluster_uuid.clone(),
                start_time: now(),
                end_time: String::new(),
            },
            ..Operation::default()
        }
    }

    /// Ends an operation with the cluster as it is, or with an error.
    fn finish_operation(&self, mut operation: Operation, result: Result<Cluster, ApiError>) {
        operation.done = true;
        operation.metadata.end_time = now();
        match result {
            Ok(cluster) => operation.response = Some(cluster),
            Err(e) => {
                operation.error = Some(OperationError {
                    code: e.code,
                    message: e.message,
                })
            }
        }
        if let Err(e) = self.store.put_operation(&operation) {
            log::error!("{}: {}", operation.name, e.message);
        }
    }

    /// An operation by name.
    pub fn operation(&self, name: &str) -> Result<Operation, ApiError> {
        self.store
            .operation(name)?
            .ok_or_else(|| ApiError::not_found(format!("no operation {name}")))
    }

    /// Creates a cluster: records it (CREATING) and starts its processes;
    /// the operation ends when it runs (or failed to).
    pub fn create_cluster(
        self: &Arc<Self>,
        cluster: Cluster,
        request_id: &str,
    ) -> Result<Operation, ApiError> {
        self.refuse_when_stopping()?;
        let mut cluster = cluster.checked_submission()?;
        cluster.cluster_uuid = uuid::Uuid::new_v4().to_string();
        set_cluster_status(&mut cluster, ClusterState::Creating, String::new());
        cluster.status_history.clear();
        let operation = self.new_operation("CREATE", &cluster);
        let recorded = {
            let _one_at_a_time = self.lock_changes();
            self.store
                .insert_cluster(&cluster, &operation, request_id)?
        };
        if recorded.name == operation.name {
            self.spawn_cluster(cluster.cluster_uuid, operation.clone());
        }
        Ok(recorded)
    }

    /// Starts a stopped (or failed) cluster again.
    pub fn start_cluster(self: &Arc<Self>, name: &str) -> Result<Operation, ApiError> {
        self.refuse_when_stopping()?;
        let cluster = self.change_cluster(name, |c| match c.state() {
            ClusterState::Stopped | ClusterState::Error => {
                set_cluster_status(c, ClusterState::Starting, String::new());
                Ok(())
            }
            s => Err(ApiError::conflict(format!(
                "cluster {} is {}: only a STOPPED or ERROR cluster starts",
                c.cluster_name,
                s.name()
            ))),
        })?;
        let operation = self.new_operation("START", &cluster);
        self.store.put_operation(&operation)?;
        self.spawn_cluster(cluster.cluster_uuid, operation.clone());
        Ok(operation)
    }

    /// Stops a running cluster's processes (its record stays).
    pub fn stop_cluster(self: &Arc<Self>, name: &str) -> Result<Operation, ApiError> {
        self.refuse_when_stopping()?;
        let cluster = self.cluster(name)?;
        let cluster = self.change_cluster(&cluster.cluster_uuid, |c| match c.state() {
            ClusterState::Running => {
                // Under the lock a job's submission takes too: no job
                // is placed on it between this check and the stop.
                self.refuse_with_active_jobs(c, "stop")?;
                set_cluster_status(c, ClusterState::Stopping, String::new());
                Ok(())
            }
            s => Err(ApiError::conflict(format!(
                "cluster {} is {}: only a RUNNING cluster stops",
                c.cluster_name,
                s.name()
            ))),
        })?;
        let operation = self.new_operation("STOP", &cluster);
        self.store.put_operation(&operation)?;
        let jobs = Arc::clone(self);
        let done = operation.clone();
        tokio::spawn(async move {
            jobs.stop_processes(&cluster.cluster_uuid).await;
            let result = jobs.change_cluster(&cluster.cluster_uuid, |c| {
                set_cluster_status(c, ClusterState::Stopped, String::new());
                c.scheduler_address.clear();
                Ok(())
            });
            jobs.finish_operation(done, result);
        });
        Ok(operation)
    }

    /// Deletes a cluster: its processes, record and work directory. The
    /// jobs it ran keep their history, logs and graphs.
    pub fn delete_cluster(self: &Arc<Self>, name: &str) -> Result<Operation, ApiError> {
        let cluster = self.cluster(name)?;
        self.delete_cluster_because(&cluster, String::new())
    }

    fn delete_cluster_because(
        self: &Arc<Self>,
        cluster: &Cluster,
        detail: String,
    ) -> Result<Operation, ApiError> {
        let cluster = self.change_cluster(&cluster.cluster_uuid, |c| match c.state() {
            ClusterState::Running | ClusterState::Stopped | ClusterState::Error => {
                self.refuse_with_active_jobs(c, "delete")?;
                set_cluster_status(c, ClusterState::Deleting, detail);
                Ok(())
            }
            s => Err(ApiError::conflict(format!(
                "cluster {} is {}: wait for its operation to end",
                c.cluster_name,
                s.name()
            ))),
        })?;
        let operation = self.new_operation("DELETE", &cluster);
        self.store.put_operation(&operation)?;
        let jobs = Arc::clone(self);
        let done = operation.clone();
        tokio::spawn(async move {
            let uuid = cluster.cluster_uuid.clone();
            jobs.stop_processes(&uuid).await;
            let result = jobs.store.delete_cluster(&uuid).and_then(|()| {
                let dir = jobs.cluster_dir(&uuid);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(cluster.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(cluster.clone()),
                    Err(e) => Err(ApiError::internal(format!(
                        "cluster {} is deleted, but not its files at {}: {e}",
                        cluster.cluster_name,
                        dir.display()
                    ))),
                }
            });
            jobs.procs
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&uuid);
            jobs.finish_operation(done, result);
        });
        Ok(operation)
    }

    fn refuse_with_active_jobs(&self, cluster: &Cluster, verb: &str) -> Result<(), ApiError> {
        let active = self.store.active_jobs_on(&cluster.cluster_uuid)?;
        if active.is_empty() {
            return Ok(());
        }
        Err(ApiError::conflict(format!(
            "cluster {} runs jobs ({}): cancel them, or wait for them, before you {verb} it",
            cluster.cluster_name,
            active.join(", ")
        )))
    }

    /// A cluster with what its scheduler says now: its executors, their
    /// slots and health, and the jobs running on it.
    pub async fn describe_cluster(&self, name: &str) -> Result<Cluster, ApiError> {
        let mut cluster = self.cluster(name)?;
        cluster.active_jobs = self.store.active_jobs_on(&cluster.cluster_uuid)?;
        if cluster.state() == ClusterState::Running && !cluster.scheduler_address.is_empty() {
            cluster.executors = executors_of(&cluster.scheduler_address).await;
        }
        let joined: Vec<&str> = cluster
            .executors
            .iter()
            .filter(|e| e.healthy)
            .filter_map(|e| e.address.rsplit_once(':').map(|(host, _)| host))
            .collect();
        cluster.missing_hosts = cluster
            .config
            .executor_hosts
            .iter()
            .filter(|h| !joined.contains(&h.as_str()))
            .cloned()
            .collect();
        Ok(cluster)
    }

    /// Every cluster, by name.
    pub fn list_clusters(&self) -> Result<Vec<Cluster>, ApiError> {
        Ok(self.store.clusters()?.into_iter().map(|(c, _)| c).collect())
    }

    /// Starts a cluster's processes and follows them until they end.
    fn spawn_cluster(self: &Arc<Self>, uuid: String, operation: Operation) {
        let jobs = Arc::clone(self);
        tokio::spawn(async move {
            let result = jobs.run_cluster(&uuid).await;
            match result {
                Ok(child) => {
                    let cluster = jobs.cluster(&uuid);
                    jobs.finish_operation(operation, cluster);
                    jobs.follow_cluster(&uuid, child).await;
                }
                Err(e) => {
                    let _ = jobs.change_cluster(&uuid, |c| {
                        set_cluster_status(c, ClusterState::Error, e.message.clone());
                        c.scheduler_address.clear();
                        Ok(())
                    });
                    jobs.finish_operation(operation, Err(e));
                }
            }
        });
    }

    /// Starts `spate cluster up` for the cluster and waits for its address
    /// (printed once every executor has registered).
    async fn run_cluster(&self, uuid: &str) -> Result<tokio::process::Child, ApiError> {
        let cluster = self.cluster(uuid)?;
        let dir = self.cluster_dir(uuid);
        let work = dir.join("work");
        std::fs::create_dir_all(&work)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", work.display())))?;
        let log_path = dir.join("cluster.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| ApiError::internal(format!("cannot open {}: {e}", log_path.display())))?;
        let mut cmd = tokio::process::Command::new(self.program());
        if cluster.config.executor_hosts.is_empty() {
            cmd.args(["cluster", "up", "--host", "127.0.0.1", "--executors"])
                .arg(cluster.config.executor_count.to_string());
            if let Some(slots) = cluster.config.slots_per_executor {
                cmd.args(["--slots", &slots.to_string()]);
            }
        } else {
            // Executors elsewhere join it: only the scheduler here, on an
            // address they reach.
            let ip = cluster
                .config
                .scheduler_host
                .as_deref()
                .unwrap_or("0.0.0.0");
            let port = std::net::TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| ApiError::internal(format!("no free port on {ip}: {e}")))?;
            cmd.args(["cluster", "scheduler", "--bind"])
                .arg(format!("{ip}:{port}"));
        }
        cmd.arg("--work-dir")
            .arg(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| {
            ApiError::internal(format!("cannot start {}: {e}", self.program().display()))
        })?;
        let pid = child.id().unwrap_or(0);
        let group = crate::runner::GroupGuard::new(pid);
        self.store.set_cluster_process(
            uuid,
            Some(ProcessId {
                pid,
                start: start_time(pid).unwrap_or(0),
            }),
        )?;
        let proc = Arc::new(ClusterProc {
            stop: Notify::new(),
            stopping: AtomicBool::new(false),
            gone: tokio::sync::watch::channel(false).0,
        });
        self.procs
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uuid.to_string(), Arc::clone(&proc));
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ApiError::internal("the cluster's output is not piped"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let address = tokio::select! {
            line = tokio::time::timeout(START_TIMEOUT, lines.next_line()) => match line {
                Ok(Ok(Some(line))) if !line.trim().is_empty() => Ok(line.trim().to_string()),
                Err(_) => Err(format!("not up after {}s", START_TIMEOUT.as_secs())),
                _ => Err(format!("its processes ended: {}", last_line(&log_path))),
            },
            () = proc.stop.notified() => Err("stopped while it started".to_string()),
        };
        let address = match address {
            Ok(address) => address,
            Err(why) => {
                drop(group);
                let _ = child.wait().await;
                self.forget_processes(uuid);
                proc.gone.send_replace(true);
                return Err(ApiError::internal(format!(
                    "cluster {} did not start: {why} (log: {})",
                    cluster.cluster_name,
                    log_path.display()
                )));
            }
        };
        self.change_cluster(uuid, |c| {
            set_cluster_status(c, ClusterState::Running, String::new());
            c.scheduler_address = address;
            Ok(())
        })?;
        self.procs.touch(uuid);
        group.disarm();
        Ok(child)
    }

    /// Waits for a running cluster's processes: stopped on request, or
    /// ended by themselves (ERROR).
    async fn follow_cluster(&self, uuid: &str, mut child: tokio::process::Child) {
        let Some(proc) = self.procs.get(uuid) else {
            return;
        };
        let pid = child.id().unwrap_or(0);
        let status = tokio::select! {
            status = child.wait() => status,
            () = proc.stop.notified() => {
                proc.stopping.store(true, Ordering::SeqCst);
                signal_group(pid, Signal::SIGTERM);
                match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        signal_group(pid, Signal::SIGKILL);
                        child.wait().await
                    }
                }
            }
        };
        signal_group(pid, Signal::SIGKILL);
        self.forget_processes(uuid);
        if !proc.stopping.load(Ordering::SeqCst) {
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            let log = self.cluster_dir(uuid).join("cluster.log");
            let _ = self.change_cluster(uuid, |c| {
                set_cluster_status(
                    c,
                    ClusterState::Error,
                    format!(
                        "its processes ended by themselves ({how}): {} (log: {})",
                        last_line(&log),
                        log.display()
                    ),
                );
                c.scheduler_address.clear();
                Ok(())
            });
        }
        proc.gone.send_replace(true);
    }

    fn forget_processes(&self, uuid: &str) {
        let _ = self.store.set_cluster_process(uuid, None);
        self.procs
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uuid);
    }

    /// Stops a cluster's processes, if they run, and waits until they have gone.
    async fn stop_processes(&self, uuid: &str) {
        let Some(proc) = self.procs.get(uuid) else {
            return;
        };
        let mut gone = proc.gone.subscribe();
        proc.stop.notify_one();
        let _ = gone.wait_for(|g| *g).await;
    }

    /// The scheduler address of the cluster a job is placed on; fails
    /// unless the cluster runs.
    pub(crate) fn cluster_address_for(&self, uuid: &str) -> Result<String, ApiError> {
        let cluster = self
            .store
            .cluster(uuid)?
            .ok_or_else(|| ApiError::conflict("the job's cluster has been deleted".to_string()))?;
        match cluster.state() {
            ClusterState::Running if !cluster.scheduler_address.is_empty() => {
                self.procs.touch(uuid);
                Ok(cluster.scheduler_address)
            }
            s => Err(ApiError::conflict(format!(
                "cluster {} is {}: start it (spate clusters start {})",
                cluster.cluster_name,
                s.name(),
                cluster.cluster_name
            ))),
        }
    }

    /// After a job on a cluster ends: its share of the cluster processes'
    /// logs (the lines naming the scheduler's ids of its jobs) is copied
    /// into the job's directory (`executors/`), where it outlives the
    /// cluster.
    pub(crate) fn collect_cluster_logs(&self, job_uuid: &str, cluster_uuid: &str) {
        self.procs.touch(cluster_uuid);
        let ids = self.cluster_job_ids(job_uuid);
        if ids.is_empty() {
            return;
        }
        let work = self.cluster_dir(cluster_uuid).join("work");
        let Ok(entries) = std::fs::read_dir(&work) else {
            return;
        };
        let out_dir = self.job_dir(job_uuid).join("executors");
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".log") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let lines: String = text
                .lines()
                .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
                .map(|l| format!("{l}\n"))
                .collect();
            if lines.is_empty() {
                continue;
            }
            if std::fs::create_dir_all(&out_dir).is_ok() {
                let _ = std::fs::write(out_dir.join(&name), lines);
            }
        }
    }

    /// The scheduler's ids of the jobs a job ran on its cluster (from its
    /// graph file).
    fn cluster_job_ids(&self, job_uuid: &str) -> Vec<String> {
        std::fs::read(self.graph_path(job_uuid))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|g| g["cluster_jobs"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// After a job on a cluster ends: the stages the scheduler ran for it,
    /// with their metrics and the percentiles of their tasks' durations and
    /// inputs (`GET /api/job/ID/stages`), kept in the job's directory
    /// (`stages.json`) for its graph, where they outlive the cluster.
    pub(crate) async fn collect_cluster_stages(&self, job_uuid: &str, cluster_uuid: &str) {
        let ids = self.cluster_job_ids(job_uuid);
        let Ok(Some(cluster)) = self.store.cluster(cluster_uuid) else {
            return;
        };
        if ids.is_empty() || cluster.scheduler_address.is_empty() {
            return;
        }
        let client = reqwest::Client::new();
        let mut stages = serde_json::Map::new();
        for id in ids {
            let url = format!(
                "http://{}/api/job/{id}/stages?plan_format=metrics",
                cluster.scheduler_address
            );
            let Ok(response) = client.get(url).timeout(Duration::from_secs(5)).send().await else {
                continue;
            };
            let Ok(body) = response.bytes().await else {
                continue;
            };
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
                stages.insert(id, value["stages"].clone());
            }
        }
        let path = self.job_dir(job_uuid).join("stages.json");
        let _ = std::fs::write(path, serde_json::Value::Object(stages).to_string());
    }

    /// The job's collected cluster logs, each line after its file's name.
    pub(crate) fn cluster_logs(&self, job_uuid: &str) -> String {
        let dir = self.job_dir(job_uuid).join("executors");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return String::new();
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        let mut out = String::new();
        for path in files {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Ok(text) = std::fs::read_to_string(&path) {
                for line in text.lines() {
                    out.push_str(&format!("[{name}] {line}\n"));
                }
            }
        }
        out
    }

    /// Clusters the server found when it started: their processes (the old
    /// server's children) are stopped, and the clusters marked STOPPED;
    /// work in progress on them fails (ERROR).
    pub fn recover_clusters(&self) -> Result<(), ApiError> {
        for (cluster, process) in self.store.clusters()? {
            if let Some(p) = process.filter(|p| still_runs(*p)) {
                signal_group(p.pid, Signal::SIGKILL);
            }
            self.store
                .set_cluster_process(&cluster.cluster_uuid, None)?;
            let (state, detail) = match cluster.state() {
                ClusterState::Stopped => continue,
                ClusterState::Error => continue,
                ClusterState::Deleting => {
                    self.store.delete_cluster(&cluster.cluster_uuid)?;
                    let _ = std::fs::remove_dir_all(self.cluster_dir(&cluster.cluster_uuid));
                    continue;
                }
                ClusterState::Running | ClusterState::Stopping => (
                    ClusterState::Stopped,
                    "stopped when the server restarted: start it again".to_string(),
                ),
                ClusterState::Creating | ClusterState::Starting => (
                    ClusterState::Error,
                    "the server restarted while the cluster was starting".to_string(),
                ),
            };
            self.change_cluster(&cluster.cluster_uuid, |c| {
                set_cluster_status(c, state, detail);
                c.scheduler_address.clear();
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Deletes clusters idle past their `idleDeleteTtl` (checked twice a
    /// second) and uploads older than an hour (once a minute); runs until
    /// the server stops.
    pub async fn housekeeping(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            ticks += 1;
            if ticks % 120 == 1 {
                self.prune_uploads();
            }
            let Ok(clusters) = self.store.clusters() else {
                continue;
            };
            for (cluster, _) in clusters {
                let Some(ttl) = &cluster.config.idle_delete_ttl else {
                    continue;
                };
                let Ok(ttl) = seconds_of(ttl, "idleDeleteTtl") else {
                    continue;
                };
                if cluster.state() != ClusterState::Running {
                    continue;
                }
                if !matches!(self.store.active_jobs_on(&cluster.cluster_uuid), Ok(a) if a.is_empty())
                {
                    self.procs.touch(&cluster.cluster_uuid);
                    continue;
                }
                let idle = self
                    .procs
                    .idle_since
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&cluster.cluster_uuid)
                    .map(Instant::elapsed);
                if idle.is_some_and(|d| d.as_secs_f64() >= ttl) {
                    let detail = format!("idle for {ttl:.0}s (its idleDeleteTtl)");
                    if let Err(e) = self.delete_cluster_because(&cluster, detail) {
                        log::warn!(
                            "deleting idle cluster {}: {}",
                            cluster.cluster_name,
                            e.message
                        );
                    }
                }
            }
        }
    }
}

/// Executors as the scheduler at `address` reports them (none if it does
/// not answer).
async fn executors_of(address: &str) -> Vec<ExecutorView> {
    #[derive(serde::Deserialize)]
    struct Reported {
        id: String,
        host: String,
        port: u16,
        last_seen: Option<u64>,
        specification: Spec,
    }
    #[derive(serde::Deserialize)]
    struct Spec {
        vcores: u32,
    }
    let client = reqwest::Client::new();
    let Ok(response) = client
        .get(format!("http://{address}/api/executors"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return Vec::new();
    };
    let Ok(body) = response.bytes().await else {
        return Vec::new();
    };
    let Ok(reported) = serde_json::from_slice::<Vec<Reported>>(&body) else {
        return Vec::new();
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    reported
        .into_iter()
        .map(|e| ExecutorView {
            id: e.id,
            address: format!("{}:{}", e.host, e.port),
            slots: e.specification.vcores,
            healthy: e
                .last_seen
                .is_some_and(|seen| now_ms.saturating_sub(seen) < 30_000),
        })
        .collect()
}

impl Jobs {
    /// Stops every cluster's processes (the server is stopping): each is
    /// STOPPED, to be started again.
    pub(crate) async fn stop_all_clusters(self: &Arc<Self>) {
        let running: Vec<String> = self
            .procs
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for uuid in running {
            let _ = self.change_cluster(&uuid, |c| {
                set_cluster_status(c, ClusterState::Stopping, "the server is stopping".into());
                Ok(())
            });
            self.stop_processes(&uuid).await;
            let _ = self.change_cluster(&uuid, |c| {
                set_cluster_status(
                    c,
                    ClusterState::Stopped,
                    "stopped with the server: start it again".into(),
                );
                c.scheduler_address.clear();
                Ok(())
            });
        }
    }
}
