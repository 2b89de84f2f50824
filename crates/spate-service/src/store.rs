//! The server's job store: an embedded SQLite database
//! (`$SPATE_HOME/server/server.db`). A job is kept as its JSON, with the
//! columns lookups and idempotency need; every change is committed before
//! the API answers, so a restarted server has every job it acknowledged.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::ApiError;
use crate::model::{Cluster, Condition, Job, Operation, matches};

/// The job store.
pub struct Store {
    db: Mutex<Connection>,
}

/// A job's process: its id (the leader of its own process group) and its
/// start time in clock ticks since boot (`/proc/PID/stat`), which tells it
/// apart from a later process given the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Its start time.
    pub start: u64,
}

/// What a submission did.
#[derive(Debug)]
pub enum Inserted {
    /// A new job.
    New(Job),
    /// The job an earlier submission with the same request id made.
    Existing(Job),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL UNIQUE,
    request_id TEXT UNIQUE,
    body TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    pid_start INTEGER
);
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    pid INTEGER,
    pid_start INTEGER
);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    body TEXT NOT NULL
);
";

impl Store {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let db = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|()| db.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| db.execute_batch(SCHEMA))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock left no transaction open.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a submitted job (its uuid and id set), or returns the job an
    /// earlier submission with the same `request_id` made.
    pub fn insert(&self, job: &Job, request_id: &str) -> Result<Inserted, ApiError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        if !request_id.is_empty() {
            let earlier: Option<String> = tx
                .query_row(
                    "SELECT body FROM jobs WHERE request_id = ?1",
                    params![request_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(body) = earlier {
                return Ok(Inserted::Existing(parse(&body)?));
            }
        }
        let taken: bool = tx
            .query_row(
                "SELECT count(*) FROM jobs WHERE job_id = ?1",
                params![job.reference.job_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if taken {
            return Err(ApiError::conflict(format!(
                "a job with id {} exists already (give another id, or none)",
                job.reference.job_id
            )));
        }
        tx.execute(
            "INSERT INTO jobs (uuid, job_id, request_id, body, done) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                job.job_uuid,
                job.reference.job_id,
                (!request_id.is_empty()).then_some(request_id),
                body(job)?,
                job.done,
            ],
        )?;
        tx.commit()?;
        Ok(Inserted::New(job.clone()))
    }

    /// The job with this id or uuid.
    pub fn get(&self, id: &str) -> Result<Option<Job>, ApiError> {
        let body: Option<String> = self
            .db()
            .query_row(
                "SELECT body FROM jobs WHERE job_id = ?1 OR uuid = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| parse(&b)).transpose()
    }

    /// Saves a job's new status (by its uuid).
    pub fn update(&self, job: &Job) -> Result<(), ApiError> {
        self.db().execute(
            "UPDATE jobs SET body = ?2, done = ?3 WHERE uuid = ?1",
            params![job.job_uuid, body(job)?, job.done],
        )?;
        Ok(())
    }

    /// Records the process running a job (`None`: no process now).
    pub fn set_process(&self, uuid: &str, process: Option<ProcessId>) -> Result<(), ApiError> {
        self.set_process_in("jobs", uuid, process)
    }

    /// Deletes a job's record.
    pub fn delete(&self, uuid: &str) -> Result<(), ApiError> {
        self.db()
            .execute("DELETE FROM jobs WHERE uuid = ?1", params![uuid])?;
        Ok(())
    }

    /// A page of the jobs meeting `conditions`, newest first, after the
    /// page `token` names; and the token of the next page, if any.
    pub fn list(
        &self,
        conditions: &[Condition],
        page_size: usize,
        token: Option<i64>,
    ) -> Result<(Vec<Job>, Option<i64>), ApiError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT seq, body FROM jobs WHERE seq < ?1 ORDER BY seq DESC")?;
        let rows = stmt.query_map(params![token.unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut jobs = Vec::new();
        let mut last = None;
        for row in rows {
            let (seq, body) = row?;
            let job = parse(&body)?;
            if !matches(&job, conditions) {
                continue;
            }
            if jobs.len() == page_size {
                return Ok((jobs, last));
            }
            jobs.push(job);
            last = Some(seq);
        }
        Ok((jobs, None))
    }

    /// How many jobs are in each (state, substate).
    pub fn state_counts(&self) -> Result<Vec<(String, String, u64)>, ApiError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT json_extract(body, '$.status.state'), \
                    coalesce(json_extract(body, '$.status.substate'), ''), count(*) \
             FROM jobs GROUP BY 1, 2",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The jobs not done, with their processes: those a restarted server
    /// finds running when it starts.
    pub fn unfinished(&self) -> Result<Vec<(Job, Option<ProcessId>)>, ApiError> {
        self.with_processes("SELECT body, pid, pid_start FROM jobs WHERE done = 0")
    }

    /// Records (`body, pid, pid_start` rows of `sql`) with their processes.
    fn with_processes<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
    ) -> Result<Vec<(T, Option<ProcessId>)>, ApiError> {
        let db = self.db();
        let mut stmt = db.prepare(sql)?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<u32>>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (body, pid, start) = row?;
            let process = pid.zip(start).map(|(pid, start)| ProcessId {
                pid,
                start: start as u64,
            });
            out.push((parse(&body)?, process));
        }
        Ok(out)
    }

    /// Records the process of the job or cluster `uuid` in `table`.
    fn set_process_in(
        &self,
        table: &str,
        uuid: &str,
        process: Option<ProcessId>,
    ) -> Result<(), ApiError> {
        self.db().execute(
            &format!("UPDATE {table} SET pid = ?2, pid_start = ?3 WHERE uuid = ?1"),
            params![
                uuid,
                process.map(|p| p.pid),
                process.map(|p| p.start as i64)
            ],
        )?;
        Ok(())
    }
}

impl Store {
    /// Records a new cluster with the operation creating it, or returns
    /// the operation an earlier request with the same `request_id` made.
    pub fn insert_cluster(
        &self,
        cluster: &Cluster,
        operation: &Operation,
        request_id: &str,
    ) -> Result<Operation, ApiError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        if !request_id.is_empty() {
            let earlier: Option<String> = tx
                .query_row(
                    "SELECT body FROM operations WHERE request_id = ?1",
                    params![request_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(body) = earlier {
                return parse(&body);
            }
        }
        let taken: i64 = tx.query_row(
            "SELECT count(*) FROM clusters WHERE name = ?1",
            params![cluster.cluster_name],
            |r| r.get(0),
        )?;
        if taken > 0 {
            return Err(ApiError::conflict(format!(
                "a cluster named {} exists already",
                cluster.cluster_name
            )));
        }
        tx.execute(
            "INSERT INTO clusters (name, uuid, body) VALUES (?1, ?2, ?3)",
            params![cluster.cluster_name, cluster.cluster_uuid, body(cluster)?],
        )?;
        tx.execute(
            "INSERT INTO operations (id, request_id, body) VALUES (?1, ?2, ?3)",
            params![
                operation.name,
                (!request_id.is_empty()).then_some(request_id),
                body(operation)?
            ],
        )?;
        tx.commit()?;
        Ok(operation.clone())
    }

    /// The cluster of this name.
    pub fn cluster(&self, name: &str) -> Result<Option<Cluster>, ApiError> {
        let body: Option<String> = self
            .db()
            .query_row(
                "SELECT body FROM clusters WHERE name = ?1 OR uuid = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| parse(&b)).transpose()
    }

    /// Saves a cluster (by its uuid).
    pub fn update_cluster(&self, cluster: &Cluster) -> Result<(), ApiError> {
        self.db().execute(
            "UPDATE clusters SET body = ?2 WHERE uuid = ?1",
            params![cluster.cluster_uuid, body(cluster)?],
        )?;
        Ok(())
    }

    /// Records the process running a cluster (`None`: none now).
    pub fn set_cluster_process(
        &self,
        uuid: &str,
        process: Option<ProcessId>,
    ) -> Result<(), ApiError> {
        self.set_process_in("clusters", uuid, process)
    }

    /// Deletes a cluster's record (its jobs keep theirs).
    pub fn delete_cluster(&self, uuid: &str) -> Result<(), ApiError> {
        self.db()
            .execute("DELETE FROM clusters WHERE uuid = ?1", params![uuid])?;
        Ok(())
    }

    /// Every cluster with its process, by name.
    pub fn clusters(&self) -> Result<Vec<(Cluster, Option<ProcessId>)>, ApiError> {
        self.with_processes("SELECT body, pid, pid_start FROM clusters ORDER BY name")
    }

    /// Records an operation (or saves its new state).
    pub fn put_operation(&self, operation: &Operation) -> Result<(), ApiError> {
        self.db().execute(
            "INSERT INTO operations (id, body) VALUES (?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![operation.name, body(operation)?],
        )?;
        Ok(())
    }

    /// The operation of this name (`operations/UUID`).
    pub fn operation(&self, name: &str) -> Result<Option<Operation>, ApiError> {
        let body: Option<String> = self
            .db()
            .query_row(
                "SELECT body FROM operations WHERE id = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| parse(&b)).transpose()
    }

    /// The jobs not done that run on the cluster with this uuid.
    pub fn active_jobs_on(&self, cluster_uuid: &str) -> Result<Vec<String>, ApiError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT job_id FROM jobs WHERE done = 0 \
             AND json_extract(body, '$.placement.clusterUuid') = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![cluster_uuid], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn body<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::internal(format!("encoding a record: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body)
        .map_err(|e| ApiError::internal(format!("a stored record does not read back: {e}")))
}
