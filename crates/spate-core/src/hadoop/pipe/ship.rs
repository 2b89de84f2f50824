//! A pipe step as data, to run on a cluster's executors: its commands,
//! settings and side files travel inside the plan (no shared disk is
//! assumed), and an executor puts the files on its own disk before the
//! step's first task starts there.
//!
//! Side files are kept on an executor in a cache by content
//! (`<root>/shipped/<hash>/<name>`), so the tasks of one job (and later
//! jobs shipping the same file) write it once. The root is the executor's
//! work directory ([`set_local_root`]), else the system's temporary
//! directory. An executor sweeps the cache now and then
//! ([`sweep_local_root`]): entries no step on it has used for a while go,
//! and so do task directories a killed task left; what a decoded step on
//! this host uses stays.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use datafusion::error::{DataFusionError, Result as DfResult};
use serde::{Deserialize, Serialize};

use super::{PipeInput, PipeOp, PipeOutput, PipeRole, TaskProgram, TaskSetup};
use crate::hadoop::Counters;

/// The most side-file bytes a job's plan may carry on a cluster, counted
/// once per task step that carries them: the plan travels base64-encoded
/// (4/3 the size) in one message, and Ballista's gRPC messages are at most
/// 16 MiB.
pub const MAX_SHIPPED_BYTES: u64 = 10 << 20;

static LOCAL_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The cache entries and task directories the decoded steps of this
/// process use, with how many steps use each. Held while a step writes its
/// files and while the sweep decides, so the sweep never removes what a
/// step is about to use.
static IN_USE: parking_lot::Mutex<BTreeMap<PathBuf, usize>> =
    parking_lot::Mutex::new(BTreeMap::new());

/// Where this process keeps shipped side files and the working directories
/// of the tasks it runs for a cluster (an executor: its work directory).
/// Only the first call counts.
pub fn set_local_root(dir: &Path) {
    let _ = LOCAL_ROOT.set(dir.to_path_buf());
}

fn local_root() -> PathBuf {
    LOCAL_ROOT
        .get()
        .cloned()
        .unwrap_or_else(|| std::env::temp_dir().join("spate-tasks"))
}

/// One file of a shipped side file (a side directory ships every file
/// under it): its path under the side file's name, whether it is
/// executable, its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShippedEntry {
    path: String,
    executable: bool,
    /// Base64.
    content: String,
}

/// A side file with the name tasks see it by.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShippedFile {
    name: String,
    /// Whether it is a directory (its entries are under it).
    directory: bool,
    entries: Vec<ShippedEntry>,
}

/// A pipe step, whole: what an executor needs to run its tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortablePipe {
    step: String,
    step_index: usize,
    program: TaskProgram,
    role: PipeRole,
    input: PipeInput,
    output: PipeOutput,
    reducers: usize,
    job_id: String,
    env: Vec<(String, String)>,
    files: Vec<ShippedFile>,
    map_attempts: usize,
    reduce_attempts: usize,
    task_slots: usize,
}

impl PortablePipe {
    /// Refuses a step whose names would place files outside this host's
    /// cache or task directories: a side file's name and each path under
    /// it are plain names, the job id is Hadoop's `job_<digits>_<digits>`.
    fn check(&self) -> DfResult<()> {
        let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('/');
        let bad = |what: String| {
            Err(DataFusionError::Plan(format!(
                "shipped step {}: {what}: refused (a side file is a plain name in the \
                 task's directory)",
                self.step
            )))
        };
        if !self
            .job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad(format!("job id '{}'", self.job_id));
        }
        for f in &self.files {
            if !plain(&f.name) {
                return bad(format!("side file name '{}'", f.name));
            }
            for e in &f.entries {
                // A plain file's one entry has the empty path: the file itself.
                let whole_file = e.path.is_empty() && !f.directory;
                if !whole_file && !e.path.split('/').all(plain) {
                    return bad(format!("path '{}' under side file {}", e.path, f.name));
                }
            }
        }
        Ok(())
    }
}

/// Reads a side file (or every file under a side directory) to ship it.
fn read_side_file(path: &Path, name: &str, budget: &mut u64) -> DfResult<ShippedFile> {
    let fail = |what: &Path, e: &dyn std::fmt::Display| {
        DataFusionError::Plan(format!(
            "side file {}: cannot ship it to the cluster's executors: {e}",
            what.display()
        ))
    };
    let mut entries = Vec::new();
    let mut pending = vec![(path.to_path_buf(), String::new())];
    let directory = std::fs::metadata(path)
        .map_err(|e| fail(path, &e))?
        .is_dir();
    while let Some((p, rel)) = pending.pop() {
        let meta = std::fs::metadata(&p).map_err(|e| fail(&p, &e))?;
        if meta.is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&p)
                .map_err(|e| fail(&p, &e))?
                .collect::<std::io::Result<_>>()
                .map_err(|e| fail(&p, &e))?;
            children.sort_by_key(|c| c.file_name());
            for c in children {
                let child_name = c.file_name().to_string_lossy().into_owned();
                let child_rel = if rel.is_empty() {
                    child_name
                } else {
                    format!("{rel}/{child_name}")
                };
                pending.push((c.path(), child_rel));
            }
            continue;
        }
        let Some(left) = budget.checked_sub(meta.len()) else {
            return Err(DataFusionError::Plan(format!(
                "side files of more than {} MiB cannot be shipped to a cluster's executors \
                 (they travel inside every task's plan): put large side data on an object \
                 store or a filesystem every executor mounts, and read it from there",
                MAX_SHIPPED_BYTES >> 20
            )));
        };
        *budget = left;
        let bytes = std::fs::read(&p).map_err(|e| fail(&p, &e))?;
        entries.push(ShippedEntry {
            path: rel,
            executable: meta.permissions().mode() & 0o111 != 0,
            content: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
    }
    Ok(ShippedFile {
        name: name.to_string(),
        directory,
        entries,
    })
}

impl ShippedFile {
    /// Where this file lives in the cache: by a hash of its name, kind and
    /// every entry.
    fn cached_path(&self) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.name.hash(&mut h);
        self.directory.hash(&mut h);
        for e in &self.entries {
            e.path.hash(&mut h);
            e.executable.hash(&mut h);
            e.content.hash(&mut h);
        }
        local_root()
            .join("shipped")
            .join(format!("{:016x}", h.finish()))
            .join(&self.name)
    }

    /// Writes the file into the cache unless it is there: into a fresh
    /// directory first, renamed into place whole, so a task never sees a
    /// half-written file (another task racing to write it wins or loses
    /// the rename; both copies are equal).
    fn materialize(&self) -> std::io::Result<PathBuf> {
        let target = self.cached_path();
        let Some(hash_dir) = target.parent() else {
            return Ok(target);
        };
        if hash_dir.exists() {
            return Ok(target);
        }
        let parent = hash_dir.parent().unwrap_or(hash_dir);
        std::fs::create_dir_all(parent)?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(parent)?;
        let root = staging.path().join(&self.name);
        if self.directory {
            std::fs::create_dir_all(&root)?;
        }
        for e in &self.entries {
            let path = if e.path.is_empty() {
                root.clone()
            } else {
                root.join(&e.path)
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&e.content)
                .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            // Read-only: every task of every job shipping these bytes
            // links this copy, so none may change it.
            let mode = if e.executable { 0o555 } else { 0o444 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        match std::fs::rename(staging.path(), hash_dir) {
            Ok(()) => {
                // The directory moved: nothing is left for the guard.
                let _ = staging.keep();
                Ok(target)
            }
            Err(_) if hash_dir.exists() => Ok(target),
            Err(e) => Err(e),
        }
    }
}

/// The side files of a decoded step: written to local disk when its first
/// task starts here (a scheduler decodes steps to plan them, and never
/// writes them).
#[derive(Debug)]
pub(super) struct Shipment {
    files: Vec<ShippedFile>,
    written: OnceLock<Result<(), String>>,
    /// This op's task directories; removed with the op.
    work_root: PathBuf,
    /// What this step marked in use (in [`IN_USE`]); given back when the
    /// step is dropped.
    held: parking_lot::Mutex<Vec<PathBuf>>,
}

impl Shipment {
    /// Puts the files on disk (once), and marks them and the task
    /// directory in use until the step is dropped.
    pub(super) fn ensure(&self) -> DfResult<()> {
        self.written
            .get_or_init(|| {
                let mut in_use = IN_USE.lock();
                let mut held = self.held.lock();
                let mut hold = |path: &Path| {
                    *in_use.entry(path.to_path_buf()).or_default() += 1;
                    held.push(path.to_path_buf());
                };
                hold(&self.work_root);
                for f in &self.files {
                    let target = f.materialize().map_err(|e| {
                        format!(
                            "cannot write shipped side file {} under {}: {e}",
                            f.name,
                            local_root().display()
                        )
                    })?;
                    if let Some(entry) = target.parent() {
                        hold(entry);
                        touch(entry);
                    }
                }
                std::fs::create_dir_all(&self.work_root).map_err(|e| {
                    format!(
                        "cannot create task directory {}: {e}",
                        self.work_root.display()
                    )
                })
            })
            .clone()
            .map_err(DataFusionError::Execution)
    }
}

impl Drop for Shipment {
    fn drop(&mut self) {
        let mut in_use = IN_USE.lock();
        for path in self.held.lock().drain(..) {
            touch(&path);
            if let Some(n) = in_use.get_mut(&path) {
                *n -= 1;
                if *n == 0 {
                    in_use.remove(&path);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.work_root);
    }
}

/// Sets a cache entry's time of last use (its modification time).
fn touch(path: &Path) {
    if let Ok(dir) = std::fs::File::open(path) {
        let _ = dir.set_modified(std::time::SystemTime::now());
    }
}

/// Removes, under this process's root ([`set_local_root`]), the shipped
/// side files no decoded step here has used for `unused_for` and the task
/// directories (of killed tasks) as old: how many entries went.
pub fn sweep_local_root(unused_for: std::time::Duration) -> std::io::Result<usize> {
    let root = local_root();
    let in_use = IN_USE.lock();
    let mut removed = 0;
    for dir in [root.join("shipped"), root.join("tasks")] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if in_use.contains_key(&path) {
                continue;
            }
            let age = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default())?;
            if age >= unused_for {
                std::fs::remove_dir_all(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

impl PipeOp {
    /// The step as data, side files read from disk (or, for a step that
    /// was itself shipped here, as they came).
    pub fn to_portable(&self) -> DfResult<PortablePipe> {
        let spec = &self.spec;
        let setup = &spec.setup;
        let files = match &spec.shipment {
            Some(s) => s.files.clone(),
            None => {
                let mut budget = MAX_SHIPPED_BYTES;
                setup
                    .files
                    .iter()
                    .map(|(path, name)| read_side_file(path, name, &mut budget))
                    .collect::<DfResult<_>>()?
            }
        };
        Ok(PortablePipe {
            step: spec.step.clone(),
            step_index: spec.step_index,
            program: spec.program.clone(),
            role: spec.role,
            input: spec.input.clone(),
            output: spec.output.clone(),
            reducers: spec.reducers,
            job_id: setup.job_id.clone(),
            env: setup.env.clone(),
            files,
            map_attempts: setup.map_attempts,
            reduce_attempts: setup.reduce_attempts,
            task_slots: setup.task_slots,
        })
    }

    /// The step again from its data, its side files to be put on this
    /// host's disk when its first task starts. Its counters are this op's
    /// own: an executor reports them as the step's metrics.
    pub fn from_portable(p: PortablePipe) -> DfResult<Self> {
        p.check()?;
        let work_root = local_root().join("tasks").join(format!(
            "{}-{}-{}",
            p.job_id,
            p.step.replace('/', "-"),
            unique()
        ));
        let files = p
            .files
            .iter()
            .map(|f| (f.cached_path(), f.name.clone()))
            .collect();
        let setup = Arc::new(TaskSetup {
            job_id: p.job_id,
            env: p.env,
            files,
            work_root: work_root.clone(),
            map_attempts: p.map_attempts,
            reduce_attempts: p.reduce_attempts,
            counters: Arc::new(Counters::default()),
            task_slots: p.task_slots,
        });
        let mut op = PipeOp::new(
            p.step,
            p.step_index,
            p.program,
            p.role,
            p.input,
            p.output,
            p.reducers,
            setup,
        );
        if let Some(spec) = Arc::get_mut(&mut op.spec) {
            spec.shipment = Some(Shipment {
                files: p.files,
                written: OnceLock::new(),
                work_root,
                held: parking_lot::Mutex::default(),
            });
        }
        Ok(op)
    }
}

/// A number unique in this process, for directory names.
fn unique() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// This host's name, for errors of tasks that ran here.
pub(super) fn host_name() -> String {
    spate_io::host_name().unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, path: &str, job_id: &str) -> PortablePipe {
        serde_json::from_value(serde_json::json!({
            "step": "step-1/mapper", "step_index": 0, "program": {"Command": "cat"},
            "role": "Map", "input": "Lines", "output": "Lines", "reducers": 1,
            "job_id": job_id, "env": [], "map_attempts": 1, "reduce_attempts": 1,
            "task_slots": 1,
            "files": [{"name": name, "directory": true,
                       "entries": [{"path": path, "executable": false, "content": ""}]}],
        }))
        .unwrap()
    }

    #[test]
    fn the_sweep_removes_only_what_no_step_uses() {
        let mut p = step("lib", "a.py", "job_1_0001");
        // Bytes no other test ships: an entry of its own in the cache.
        let unique = format!("# {}\n", unique());
        p.files[0].entries[0].content = base64::engine::general_purpose::STANDARD.encode(&unique);
        let entry = p.files[0].cached_path().parent().unwrap().to_path_buf();
        let op = PipeOp::from_portable(p).unwrap();
        let shipment = op.spec.shipment.as_ref().unwrap();
        shipment.ensure().unwrap();
        let work_root = shipment.work_root.clone();
        assert!(entry.join("lib/a.py").exists());
        // In use: kept however old.
        sweep_local_root(std::time::Duration::ZERO).unwrap();
        assert!(entry.join("lib/a.py").exists());
        assert!(work_root.exists());
        // Unused, but used just now: kept for a while.
        drop(op);
        sweep_local_root(std::time::Duration::from_secs(3600)).unwrap();
        assert!(entry.exists());
        // Unused for longer than the sweep allows: gone, read-only files too.
        sweep_local_root(std::time::Duration::ZERO).unwrap();
        assert!(!entry.exists());
        assert!(!work_root.exists());
    }

    #[test]
    fn shipped_names_stay_inside_the_task_directories() {
        assert!(step("lib", "a/b.py", "job_1_0001").check().is_ok());
        for (name, path, job) in [
            ("../x", "a", "job_1_0001"),
            ("lib/x", "a", "job_1_0001"),
            ("lib", "../../etc/x", "job_1_0001"),
            ("lib", "/etc/x", "job_1_0001"),
            ("lib", "a/./b", "job_1_0001"),
            ("lib", "a", "../job"),
        ] {
            let err = step(name, path, job).check().unwrap_err().to_string();
            assert!(err.contains("refused"), "{name} {path} {job}: {err}");
        }
    }
}
