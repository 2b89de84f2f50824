//! How fast a cluster notices failures, in one place. Ballista's defaults
//! (a heartbeat a minute, an executor declared lost after 3 minutes) leave a
//! job waiting for minutes on a dead machine; spate's fail or re-run lost
//! work in seconds.

/// Seconds between an executor's heartbeats.
pub const HEARTBEAT_SECS: u64 = 2;

/// Seconds without a heartbeat after which the scheduler declares an
/// executor lost, and re-runs its tasks and the shuffle output it held.
pub const EXECUTOR_TIMEOUT_SECS: u64 = 10;

/// Seconds between the scheduler's checks for lost executors.
pub const EXPIRE_CHECK_SECS: u64 = 2;

/// Seconds a job waits for an executor when none is left, before failing
/// (Ballista warns below the executor timeout: an executor dropped after a
/// transient launch failure must have time to re-register). A job whose
/// executors all die fails within about timeout + check + grace = 22 s.
pub const NO_EXECUTORS_GRACE_SECS: u64 = EXECUTOR_TIMEOUT_SECS;

/// Attempts of one task before its job fails (Hadoop's
/// `mapreduce.map.maxattempts`).
pub const TASK_MAX_ATTEMPTS: usize = 4;

/// Seconds after a job succeeds before executors delete its shuffle files
/// (intermediate stages' go at once); the driver reads the last stage's
/// output within this time.
pub const FINISHED_JOB_DATA_SECS: u64 = 300;

/// Seconds a finished job's state stays on the scheduler (`/api/job/{id}`).
pub const FINISHED_JOB_STATE_SECS: u64 = 3600;

/// An executor's sweep of shuffle files no scheduler asked it to delete
/// (jobs of a scheduler that died): every so many seconds, files older than
/// [`ORPHAN_DATA_TTL_SECS`].
pub const ORPHAN_SWEEP_SECS: u64 = 600;

/// Age of orphaned shuffle files the sweep deletes.
pub const ORPHAN_DATA_TTL_SECS: u64 = 3600;
