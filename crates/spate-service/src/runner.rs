//! Running jobs: each as a child process (`spate VERB ARGS...`) in its own
//! process group and work directory, its standard output and error appended
//! to the job's log as they come and pushed to whoever follows it; state
//! changes recorded as they happen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, watch};

use crate::error::ApiError;
use crate::model::{Job, State, Status, Substate};
use crate::store::{ProcessId, Store};

/// How long a cancelled job's processes get to stop after SIGTERM before
/// SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A timer that is not running: a year away.
const NEVER: Duration = Duration::from_secs(365 * 86_400);

/// How long a job's output is still read after its process has exited
/// (from processes that left its group).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// The server's jobs: the store, and the jobs running now.
pub struct Jobs {
    pub(crate) store: Store,
    /// `$SPATE_HOME/server`.
    dir: PathBuf,
    /// `$SPATE_HOME`, which jobs run in (their catalog, their cluster).
    home: PathBuf,
    /// The `spate` program jobs run.
    program: PathBuf,
    slots: Arc<Semaphore>,
    max_jobs: usize,
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Serializes read-modify-write of job records.
    changes: Mutex<()>,
    /// The largest upload, in bytes.
    max_upload: u64,
    /// The server is stopping: jobs stopped now end in ERROR.
    stopping: AtomicBool,
    /// The server's counters.
    pub(crate) metrics: crate::metrics::ServerMetrics,
    /// The clusters' processes.
    pub(crate) procs: crate::clusters::ClusterProcs,
}

/// A job the server is running (or about to): how to stop it, and how far
/// its log has been written.
pub(crate) struct Live {
    cancel: Notify,
    cancelled: AtomicBool,
    log: watch::Sender<LogMark>,
}

/// How far a running job's log is written, and whether the job has ended
/// (nothing more will be written).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogMark {
    pub(crate) length: u64,
    pub(crate) ended: bool,
}

impl Live {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            cancel: Notify::new(),
            cancelled: AtomicBool::new(false),
            log: watch::channel(LogMark::default()).0,
        })
    }

    /// A receiver of the log's progress.
    pub(crate) fn log_mark(&self) -> watch::Receiver<LogMark> {
        self.log.subscribe()
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.cancel.notified();
            if self.cancelled.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// A stream job's progress file in its directory.
pub(crate) const PROGRESS_FILE: &str = "progress.json";

/// Now, as RFC 3339 in UTC with milliseconds.
pub fn now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs() as i64, since.subsec_millis())
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339_millis(ms: i64) -> String {
    rfc3339(ms.div_euclid(1000), ms.rem_euclid(1000) as u32)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Jobs {
    /// The jobs kept under `home/server`, run with `program`, at most
    /// `max_jobs` at once.
    pub fn open(
        home: &Path,
        program: PathBuf,
        max_jobs: usize,
        max_upload: u64,
    ) -> Result<Arc<Self>, String> {
        let dir = home.join("server");
        std::fs::create_dir_all(dir.join("jobs"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let store = Store::open(&dir.join("server.db"))?;
        let max_jobs = max_jobs.max(1);
        Ok(Arc::new(Self {
            store,
            dir,
            home: home.to_path_buf(),
            program,
            slots: Arc::new(Semaphore::new(max_jobs)),
            max_jobs,
            live: Mutex::new(HashMap::new()),
            changes: Mutex::new(()),
            max_upload,
            stopping: AtomicBool::new(false),
            metrics: crate::metrics::ServerMetrics::default(),
            procs: crate::clusters::ClusterProcs::default(),
        }))
    }

    /// `$SPATE_HOME/server`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Refuses new work once the server is stopping (503).
    pub(crate) fn refuse_when_stopping(&self) -> Result<(), ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError {
                code: 503,
                message: "the server is stopping: submit again once it has restarted".into(),
                field: None,
            });
        }
        Ok(())
    }

    /// The `spate` program jobs and clusters run.
    pub(crate) fn program(&self) -> &Path {
        &self.program
    }

    /// Holds off every other read-modify-write of a record.
    pub(crate) fn lock_changes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The directory of the job with this uuid (server-made: never a
    /// client's text).
    pub(crate) fn job_dir(&self, uuid: &str) -> PathBuf {
        self.dir.join("jobs").join(uuid)
    }

    /// The job's log file.
    pub(crate) fn log_path(&self, uuid: &str) -> PathBuf {
        self.job_dir(uuid).join("driver.log")
    }

    /// The job's graph: the plans it ran with their metrics, written by
    /// the job's process when it ends (see `spate_core::graph`).
    pub(crate) fn graph_path(&self, uuid: &str) -> PathBuf {
        self.job_dir(uuid).join("graph.json")
    }

    /// A stream job's progress: its recent batches and totals, rewritten by
    /// the job's process after every batch (see `spate_stream`'s
    /// `record_progress`).
    pub(crate) fn progress_path(&self, uuid: &str) -> PathBuf {
        self.job_dir(uuid).join(PROGRESS_FILE)
    }

    /// Where an upload is kept (its id is checked: never a client's path).
    pub(crate) fn upload_path(&self, id: &str) -> PathBuf {
        if crate::model::valid_upload_id(id) {
            self.dir.join("uploads").join(id)
        } else {
            self.dir.join("uploads").join("invalid")
        }
    }

    /// Keeps a submitted job's uploads in its directory (`files/`), where
    /// they stay for its restarts whatever happens to the uploads.
    fn keep_files(&self, job: &Job) -> Result<(), ApiError> {
        let (_, program) = job.program()?;
        if program.files.is_empty() {
            return Ok(());
        }
        let dir = self.job_dir(&job.job_uuid).join("files");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
        for file in &program.files {
            link_or_copy(&self.upload_path(&file.upload), &dir.join(&file.name))?;
        }
        Ok(())
    }

    /// Puts the job's files into its work directory (a binary job's
    /// program made executable).
    fn place_files(
        &self,
        uuid: &str,
        work: &Path,
        kind: crate::model::Kind,
    ) -> Result<(), ApiError> {
        let dir = self.job_dir(uuid).join("files");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            // A copy: the job may change its own files, never those kept
            // for its restarts (nor, through a link, an upload).
            let to = work.join(entry.file_name());
            if !to.exists() {
                std::fs::copy(entry.path(), &to).map_err(|e| {
                    ApiError::internal(format!("cannot copy {}: {e}", to.display()))
                })?;
            }
            if kind == crate::model::Kind::Binary {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755));
            }
        }
        Ok(())
    }

    /// Stores an upload (at most `max_upload` bytes) under a new id; a
    /// larger one is refused and nothing of it is kept.
    pub(crate) async fn store_upload(
        &self,
        mut body: impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin,
    ) -> Result<(String, u64), ApiError> {
        use futures::StreamExt;
        let id = format!("upl-{}", uuid::Uuid::new_v4());
        let dir = self.dir.join("uploads");
        let io = |e: std::io::Error| ApiError::internal(format!("storing an upload: {e}"));
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let partial = dir.join(format!(".{id}.partial"));
        let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
        let mut size = 0u64;
        let outcome: Result<(), ApiError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::invalid("body", format!("the upload was cut short: {e}"))
                })?;
                size += chunk.len() as u64;
                if size > self.max_upload {
                    return Err(ApiError {
                        code: 413,
                        message: format!(
                            "an upload is at most {} bytes (spate server --max-upload)",
                            self.max_upload
                        ),
                        field: Some("body".into()),
                    });
                }
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.sync_all().await.map_err(io)
        }
        .await;
        if let Err(e) = outcome {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, dir.join(&id))
            .await
            .map_err(io)?;
        Ok((id, size))
    }

    /// Deletes uploads older than an hour (their jobs keep copies).
    pub(crate) fn prune_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("uploads")) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The running job with this uuid, if it runs.
    pub(crate) fn live(&self, uuid: &str) -> Option<Arc<Live>> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uuid)
            .cloned()
    }

    /// Applies `f` to the stored job `uuid` and saves it, with no other
    /// change in between; returns the saved job.
    pub(crate) fn change(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Job) -> Result<(), ApiError>,
    ) -> Result<Job, ApiError> {
        let _one_at_a_time = self.lock_changes();
        let mut job = self
            .store
            .get(uuid)?
            .ok_or_else(|| ApiError::not_found(format!("no job {uuid}")))?;
        f(&mut job)?;
        self.store.update(&job)?;
        Ok(job)
    }

    /// Moves the job to `state` (the old status into its history).
    fn set_state(
        &self,
        uuid: &str,
        state: State,
        substate: Option<Substate>,
        details: impl Into<String>,
    ) -> Result<Job, ApiError> {
        let details = details.into();
        self.change(uuid, |job| {
            // A cancel asked for is not undone by the runner's progress.
            if job.state() == State::CancelPending && !state.is_done() {
                return Ok(());
            }
            set_status(job, state, substate, details);
            Ok(())
        })
    }

    /// Records a new job and starts running it.
    pub fn submit(self: &Arc<Self>, job: Job, request_id: &str) -> Result<Job, ApiError> {
        let mut job = job.checked_submission()?;
        job.job_uuid = uuid::Uuid::new_v4().to_string();
        if job.reference.job_id.is_empty() {
            job.reference.job_id = format!("job-{}", &job.job_uuid[..8]);
        }
        job.driver_output_resource_uri = format!("/api/v1/jobs/{}/logs", job.reference.job_id);
        if !job.placement.cluster_name.is_empty() && job.program()?.0 == crate::model::Kind::Stream
        {
            return Err(ApiError::invalid(
                "job.placement.clusterName",
                "a stream job runs on the server's host (its micro-batches run in its own \
                 process): submit it without a cluster",
            ));
        }
        if !job.placement.cluster_name.is_empty() {
            let cluster = self
                .store
                .cluster(&job.placement.cluster_name)?
                .ok_or_else(|| {
                    ApiError::invalid(
                        "job.placement.clusterName",
                        format!(
                            "no cluster {} (spate clusters list shows them)",
                            job.placement.cluster_name
                        ),
                    )
                })?;
            job.placement.cluster_uuid = cluster.cluster_uuid;
        }
        set_status(&mut job, State::Pending, None, String::new());
        job.status_history.clear();
        self.refuse_when_stopping()?;
        let (kind, program) = job.program()?;
        for (i, file) in program.files.iter().enumerate() {
            if !self.upload_path(&file.upload).is_file() {
                return Err(ApiError::invalid(
                    format!("job.{}.files[{i}].upload", kind.field()),
                    format!(
                        "no upload {} (uploads are kept for an hour: upload it again)",
                        file.upload
                    ),
                ));
            }
        }
        // The files are kept before the job is recorded: a recorded job
        // always has them.
        if let Err(e) = self.keep_files(&job) {
            let _ = std::fs::remove_dir_all(self.job_dir(&job.job_uuid));
            return Err(e);
        }
        let _one_at_a_time = self.lock_changes();
        let inserted = self.store.insert(&job, request_id);
        if !matches!(inserted, Ok(crate::store::Inserted::New(_))) {
            let _ = std::fs::remove_dir_all(self.job_dir(&job.job_uuid));
        }
        match inserted? {
            crate::store::Inserted::Existing(earlier) => Ok(earlier),
            crate::store::Inserted::New(job) => {
                self.metrics.submitted.fetch_add(1, Ordering::Relaxed);
                let live = Live::new();
                self.live
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(job.job_uuid.clone(), Arc::clone(&live));
                let jobs = Arc::clone(self);
                let uuid = job.job_uuid.clone();
                tokio::spawn(async move {
                    let outcome = jobs.run(&uuid, &live).await;
                    if let Err(e) = outcome {
                        log::error!("job {uuid}: {}", e.message);
                        let _ = jobs.set_state(
                            &uuid,
                            State::Error,
                            None,
                            format!("the server failed running it: {}", e.message),
                        );
                    }
                    jobs.live
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&uuid);
                    live.log.send_modify(|m| m.ended = true);
                });
                Ok(job)
            }
        }
    }

    /// Asks a job to stop: CANCEL_PENDING, then CANCELLED once its
    /// processes are gone. Cancelling an ended job is refused.
    pub fn cancel(&self, uuid: &str) -> Result<Job, ApiError> {
        let job = self.change(uuid, |job| {
            let state = job.state();
            if state.is_done() {
                return Err(ApiError::conflict(format!(
                    "job {} has ended ({}): there is nothing to cancel",
                    job.reference.job_id,
                    state.name()
                )));
            }
            if state != State::CancelPending {
                set_status(job, State::CancelPending, None, "cancel requested".into());
            }
            Ok(())
        })?;
        if let Some(live) = self.live(uuid) {
            live.cancelled.store(true, Ordering::SeqCst);
            live.cancel.notify_waiters();
        }
        Ok(job)
    }

    /// Deletes an ended job: its record, log and work directory.
    pub fn delete(&self, uuid: &str) -> Result<(), ApiError> {
        let _one_at_a_time = self.lock_changes();
        let job = self
            .store
            .get(uuid)?
            .ok_or_else(|| ApiError::not_found(format!("no job {uuid}")))?;
        if !job.state().is_done() {
            return Err(ApiError::conflict(format!(
                "job {} is {}: cancel it, and delete it once it has ended",
                job.reference.job_id,
                job.state().name()
            )));
        }
        self.store.delete(uuid)?;
        let dir = self.job_dir(uuid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ApiError::internal(format!(
                "job {} is deleted, but its files at {} are not: {e}",
                job.reference.job_id,
                dir.display()
            ))),
        }
    }

    /// Marks the jobs a stopped server left unfinished as failed, stopping
    /// their processes if they still run.
    pub fn recover(&self) -> Result<usize, ApiError> {
        let unfinished = self.store.unfinished()?;
        for (job, process) in &unfinished {
            if let Some(p) = process.filter(|p| still_runs(*p)) {
                signal_group(p.pid, Signal::SIGKILL);
            }
            let was = job.state().name();
            self.set_state(
                &job.job_uuid,
                State::Error,
                None,
                format!(
                    "the server restarted while the job was {was}; its output until then is in \
                     its log"
                ),
            )?;
            self.store.set_process(&job.job_uuid, None)?;
        }
        Ok(unfinished.len())
    }

    /// Stops every running job (the server is stopping): each ends in
    /// ERROR, its output until then kept.
    pub async fn stop_all(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_all_clusters().await;
        let live: Vec<(String, Arc<Live>)> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (uuid, _) in &live {
            // An ended job that is still being tidied up keeps its state.
            let _ = self.cancel(uuid);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE + Duration::from_secs(5);
        for (_, live) in live {
            let mut rx = live.log_mark();
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|m| m.ended)).await;
        }
    }

    /// Runs a recorded job to its end.
    async fn run(&self, uuid: &str, live: &Live) -> Result<(), ApiError> {
        let dir = self.job_dir(uuid);
        let work = dir.join("work");
        std::fs::create_dir_all(&work)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", work.display())))?;
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(uuid))
            .await
            .map_err(|e| ApiError::internal(format!("cannot open the job's log: {e}")))?;
        if live.cancelled.load(Ordering::SeqCst) {
            self.set_state(uuid, State::Cancelled, None, "cancelled before it started")?;
            return Ok(());
        }
        let job = self.set_state(uuid, State::SetupDone, None, "")?;
        let (kind, program) = job.program()?;
        let args = program.args_with_properties(kind)?;
        let own_executors = program.executors;
        let cluster = job.placement.cluster_uuid.clone();
        let timeout = job.timeout_seconds()?.map(Duration::from_secs_f64);
        let scheduling = job.scheduling;

        // A slot: at most max_jobs processes at once.
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.set_state(
                    uuid,
                    State::Running,
                    Some(Substate::Queued),
                    format!(
                        "waiting for a free slot: {} jobs run at once (spate server --max-jobs)",
                        self.max_jobs
                    ),
                )?;
                tokio::select! {
                    slot = Arc::clone(&self.slots).acquire_owned() => slot.map_err(|_| {
                        ApiError::internal("the server is stopping")
                    })?,
                    () = live.cancelled() => {
                        self.set_state(uuid, State::Cancelled, None, "cancelled while queued")?;
                        return Ok(());
                    }
                }
            }
        };
        self.place_files(uuid, &work, kind)?;
        // A program built with spate: its own cluster roles first.
        let mut env: Vec<(&str, String)> = Vec::new();
        let own_cluster = match (own_executors, args.first()) {
            (Some(n), Some(name)) => {
                let program = work.join(name);
                match self
                    .start_own_cluster(uuid, &program, n, &args[1..], live)
                    .await
                {
                    Ok((address, group)) => {
                        env.push(("SPATE_CLUSTER", address));
                        Some(group)
                    }
                    Err(why) => {
                        let state = if live.cancelled.load(Ordering::SeqCst) {
                            State::Cancelled
                        } else {
                            State::Error
                        };
                        self.set_state(uuid, state, None, why)?;
                        return Ok(());
                    }
                }
            }
            _ => None,
        };
        let started = Instant::now();
        let mut failure_times: Vec<Instant> = Vec::new();
        loop {
            if live.cancelled.load(Ordering::SeqCst) {
                self.set_state(uuid, State::Cancelled, None, "cancelled")?;
                break;
            }
            let details = match failure_times.len() {
                0 => String::new(),
                n => format!("restarted after failure {n}"),
            };
            self.set_state(uuid, State::Running, Some(Substate::Submitted), details)?;
            let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
            // On a cluster: the cluster must run; the job's driver is sent there.
            let mut argv = args.clone();
            if !cluster.is_empty() {
                match self.cluster_address_for(&cluster) {
                    Ok(address) => argv.splice(0..0, ["--cluster".to_string(), address]),
                    Err(e) => {
                        self.set_state(uuid, State::Error, None, e.message)?;
                        break;
                    }
                };
            }
            // A verb of this program, or the job's own uploaded program.
            let program = match kind.verb() {
                Some(verb) => {
                    argv.insert(0, verb.to_string());
                    self.program.clone()
                }
                None => work.join(argv.remove(0)),
            };
            let ended = self
                .run_process(uuid, &program, (&argv, &env), &work, &mut log, live, left)
                .await?;
            if !cluster.is_empty() {
                self.collect_cluster_logs(uuid, &cluster);
                self.collect_cluster_stages(uuid, &cluster).await;
            }
            self.store.set_process(uuid, None)?;
            match ended {
                Ended::NotStarted(why) => {
                    self.set_state(
                        uuid,
                        State::Error,
                        None,
                        format!("its program did not start: {why}"),
                    )?;
                    break;
                }
                Ended::Exited(0) => {
                    self.change(uuid, |job| {
                        job.exit_code = Some(0);
                        set_status(job, State::Done, None, String::new());
                        Ok(())
                    })?;
                    break;
                }
                Ended::Cancelled if self.stopping.load(Ordering::SeqCst) => {
                    self.set_state(
                        uuid,
                        State::Error,
                        None,
                        "the server stopped while the job ran; its output until then is in its log",
                    )?;
                    break;
                }
                Ended::Cancelled => {
                    self.set_state(uuid, State::Cancelled, None, "cancelled")?;
                    break;
                }
                Ended::TimedOut(after) => {
                    self.set_state(
                        uuid,
                        State::Error,
                        None,
                        format!(
                            "timed out: still running after {:.0}s (the job's timeout); stopped",
                            after.as_secs_f64()
                        ),
                    )?;
                    break;
                }
                Ended::Exited(code) | Ended::Signal(code) => {
                    let how = match &ended {
                        Ended::Signal(_) => format!("killed by signal {code}"),
                        _ => format!("exit code {code}"),
                    };
                    let last = last_line(&self.log_path(uuid));
                    let now = Instant::now();
                    failure_times.push(now);
                    let in_hour = failure_times
                        .iter()
                        .filter(|t| now.duration_since(**t) < Duration::from_secs(3600))
                        .count();
                    let restarts = failure_times.len() as u32;
                    let may_restart = restarts <= scheduling.max_failures_total
                        && in_hour as u32 <= scheduling.max_failures_per_hour;
                    self.change(uuid, |job| {
                        job.failures = restarts;
                        if let Ended::Exited(code) = &ended {
                            job.exit_code = Some(*code);
                        }
                        if !may_restart {
                            set_status(job, State::Error, None, format!("{how}: {last}"));
                        }
                        Ok(())
                    })?;
                    if !may_restart {
                        break;
                    }
                }
            }
        }
        if let Some(group) = own_cluster {
            stop_gracefully(group).await;
        }
        drop(slot);
        let _ = log.flush().await;
        Ok(())
    }

    /// Starts a binary job's own cluster: `PROGRAM cluster up --executors
    /// N -- ARGS` in its own process group, its work directory (logs) the
    /// job's `executors/`; its scheduler's address once every executor has
    /// registered, and the group, which ends with the job.
    async fn start_own_cluster(
        &self,
        uuid: &str,
        program: &Path,
        executors: u32,
        args: &[String],
        live: &Live,
    ) -> Result<(String, GroupGuard), String> {
        use tokio::io::AsyncBufReadExt;
        let work = self.job_dir(uuid).join("executors");
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let log_path = work.join("cluster.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(["cluster", "up", "--host", "127.0.0.1", "--executors"])
            .arg(executors.to_string())
            .arg("--work-dir")
            .arg(&work)
            .arg("--")
            .args(args)
            .current_dir(work.parent().unwrap_or(&work))
            .env("SPATE_HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("its program did not start its cluster: {e}"))?;
        let group = GroupGuard::new(child.id().unwrap_or(0));
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| "its cluster's output is not piped".to_string())?;
        // Reaped whenever it ends; the group's guard ends it.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::select! {
            line = tokio::time::timeout(Duration::from_secs(120), lines.next_line()) => line,
            () = live.cancelled() => return Err("cancelled while its cluster started".into()),
        };
        match line {
            Ok(Ok(Some(address))) if !address.trim().is_empty() => {
                Ok((address.trim().to_string(), group))
            }
            Err(_) => Err("its cluster was not up after 120s".into()),
            _ => Err(format!(
                "its cluster did not start: {} (log: {})",
                last_line(&log_path),
                log_path.display()
            )),
        }
    }

    /// Runs the job's process once: until it exits, is cancelled, or its
    /// time is up.
    #[allow(clippy::too_many_arguments)]
    async fn run_process(
        &self,
        uuid: &str,
        program: &Path,
        (args, env): (&[String], &[(&str, String)]),
        work: &Path,
        log: &mut tokio::fs::File,
        live: &Live,
        left: Option<Duration>,
    ) -> Result<Ended, ApiError> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(work)
            .env("SPATE_HOME", &self.home)
            .env("SPATE_JOB_GRAPH", self.graph_path(uuid))
            .env("SPATE_JOB_PROGRESS", self.progress_path(uuid))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            // The job's own program may not run here: the job failed.
            Err(e) if program != self.program => return Ok(Ended::NotStarted(e.to_string())),
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "cannot start {}: {e}",
                    program.display()
                )));
            }
        };
        let pid = child.id().unwrap_or(0);
        // However this ends (an error below too), the group goes with it.
        let _group = GroupGuard::new(pid);
        self.store.set_process(
            uuid,
            Some(ProcessId {
                pid,
                start: start_time(pid).unwrap_or(0),
            }),
        )?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, tx.clone()));
        }
        drop(tx);
        let deadline = async {
            match left {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut outcome: Option<Ended> = None;
        let mut stopping = false;
        let grace = tokio::time::sleep(NEVER);
        tokio::pin!(grace);
        let mut exit = None;
        let mut output_open = true;
        while exit.is_none() || output_open {
            tokio::select! {
                chunk = rx.recv(), if output_open => match chunk {
                    Some(bytes) => {
                        // Written through (tokio's file buffers): a follower
                        // woken next reads these bytes.
                        let written = match log.write_all(&bytes).await {
                            Ok(()) => log.flush().await,
                            Err(e) => Err(e),
                        };
                        written.map_err(|e| {
                            ApiError::internal(format!("cannot write the job's log: {e}"))
                        })?;
                        live.log.send_modify(|m| m.length += bytes.len() as u64);
                        self.metrics
                            .log_bytes
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    None => output_open = false,
                },
                status = child.wait(), if exit.is_none() => {
                    exit = Some(status.map_err(|e| {
                        ApiError::internal(format!("waiting for the job's process: {e}"))
                    })?);
                    // Whatever it left behind in its group goes with it; a
                    // process that left the group and holds the output open
                    // is not waited for past the drain time.
                    signal_group(pid, Signal::SIGKILL);
                    grace.as_mut().reset(tokio::time::Instant::now() + OUTPUT_DRAIN);
                }
                () = live.cancelled(), if !stopping && exit.is_none() => {
                    stopping = true;
                    outcome = Some(Ended::Cancelled);
                    signal_group(pid, Signal::SIGTERM);
                    grace.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
                }
                () = &mut deadline, if !stopping && exit.is_none() => {
                    stopping = true;
                    outcome = Some(Ended::TimedOut(left.unwrap_or_default()));
                    signal_group(pid, Signal::SIGTERM);
                    grace.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
                }
                () = &mut grace, if (stopping && exit.is_none()) || (exit.is_some() && output_open) => {
                    if exit.is_none() {
                        // Past the grace: the group goes, whatever it does.
                        signal_group(pid, Signal::SIGKILL);
                        grace.as_mut().reset(tokio::time::Instant::now() + NEVER);
                    } else {
                        output_open = false;
                    }
                }
            }
        }
        if let Some(o) = outcome {
            return Ok(o);
        }
        let status = exit.ok_or_else(|| ApiError::internal("the job's process was lost"))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(signal)) => Ended::Signal(signal),
            (None, None) => Ended::Exited(-1),
        })
    }
}

/// Kills a process group when dropped, unless disarmed: no error path
/// leaves a job's or cluster's processes behind.
pub(crate) struct GroupGuard {
    pid: u32,
    armed: bool,
}

impl GroupGuard {
    pub(crate) fn new(pid: u32) -> Self {
        Self { pid, armed: true }
    }

    /// The group outlives this guard (someone else follows it now).
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

/// Stops a group as Ctrl-C would (SIGTERM: a cluster stops its
/// executors), then kills what is left after the grace.
async fn stop_gracefully(group: GroupGuard) {
    signal_group(group.pid, Signal::SIGTERM);
    let path = format!("/proc/{}", group.pid);
    let deadline = Instant::now() + STOP_GRACE;
    while Path::new(&path).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(group);
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

/// A hard link (the same file system), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), ApiError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| {
        ApiError::internal(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

/// How a job's process ended.
#[derive(Debug, Clone)]
enum Ended {
    Exited(i32),
    Signal(i32),
    Cancelled,
    TimedOut(Duration),
    /// Its program could not be started (an uploaded program that is not
    /// one for this host).
    NotStarted(String),
}

/// Copies a pipe into the log channel, 64 KiB at most at a time.
async fn pump(mut from: impl AsyncRead + Unpin, to: tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn set_status(job: &mut Job, state: State, substate: Option<Substate>, details: String) {
    if let Some(old) = job.status.take() {
        job.status_history.push(old);
    }
    job.status = Some(Status {
        state,
        details,
        state_start_time: now(),
        substate,
    });
    job.done = state.is_done();
}

/// The last non-empty line of a log (for a failure's details), at most
/// 300 characters of it.
pub(crate) fn last_line(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return "no output".into();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut tail = Vec::new();
    let _ = file.read_to_end(&mut tail);
    let text = String::from_utf8_lossy(&tail);
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => line.chars().take(300).collect(),
        None => "no output".into(),
    }
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

/// Whether the process a job record names still runs (and is that one).
pub(crate) fn still_runs(p: ProcessId) -> bool {
    p.pid != 0 && start_time(p.pid) == Some(p.start)
}

/// Sends `signal` to the process group led by `pid`.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // A group already gone is what was wanted.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_400_000, 999), "2026-12-04T16:00:00.999Z");
    }
}
