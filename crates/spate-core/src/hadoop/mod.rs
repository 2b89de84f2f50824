//! Hadoop Streaming jobs: any executable as mapper, combiner or reducer.
//!
//! A [`StreamingJob`] is a list of [`StreamingStep`]s lowered into one plan:
//!
//! ```text
//! TextScan (raw lines, tagged by split)
//!   → PipeOp mapper      one process per input split, lines → key/value rows
//!   → PipeOp combiner    one process per map partition, fed sorted runs
//!   → shuffle on the key (or the key-field partitioner's bytes), N reducers
//!   → external sort by key (or the key-field comparator's bytes)
//!   → PipeOp reducer     one process per reduce partition
//!   → next step's mapper ... → part files, committed atomically
//! ```
//!
//! Semantics follow Hadoop's: lines are bytes; the key is the text before the
//! first separator; a reducer sees each key's lines contiguously, keys sorted
//! bytewise (a key's values in no set order: a secondary sort uses key
//! fields); a failed task is retried. One deliberate difference: output
//! lines are written as the task printed them (Hadoop appends a tab to lines
//! that have none).

pub mod aggregate;
pub mod args;
pub mod keys;
pub mod mrjob;
pub mod pipe;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::logical_expr::LogicalPlan;
use futures::StreamExt;
use parking_lot::Mutex;
use spate_io::source::LineOptions;

use crate::context::Context;
use crate::dataset::WriteSummary;
use crate::error::{Error, Result, from_df};
use crate::node::TextScanNode;
use keys::{KeySpec, parse_key_fields};
use pipe::{PipeInput, PipeOp, PipeOutput, PipeRole, TaskProgram, TaskSetup};

/// Counter totals per job step: group → counter → amount.
pub type StepCounters = BTreeMap<String, BTreeMap<String, i64>>;

/// Counters reported by tasks (Hadoop's reporter protocol) and by spate
/// itself (records in and out per task kind), totalled over successful
/// attempts only, as Hadoop does.
#[derive(Debug, Default)]
pub struct Counters {
    steps: Mutex<BTreeMap<usize, StepCounters>>,
    statuses: Mutex<BTreeMap<String, String>>,
}

impl Counters {
    /// Adds `amount` to a counter of step `step`.
    pub fn add(&self, step: usize, group: &str, counter: &str, amount: i64) {
        *self
            .steps
            .lock()
            .entry(step)
            .or_default()
            .entry(group.to_string())
            .or_default()
            .entry(counter.to_string())
            .or_default() += amount;
    }

    /// Records the last status message of a task.
    pub fn set_status(&self, task: &str, status: &str) {
        self.statuses
            .lock()
            .insert(task.to_string(), status.to_string());
    }

    /// The totals so far, per step.
    pub fn snapshot(&self) -> BTreeMap<usize, StepCounters> {
        self.steps.lock().clone()
    }

    /// The last status message of each task that sent one.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        self.statuses.lock().clone()
    }

    /// The counters of step `step` of job `job` as named counts — the
    /// metrics a cluster's executor reports for a step's tasks. A count is
    /// unsigned: a negative counter goes as its magnitude under a name of
    /// its own.
    pub fn as_counts(&self, job: &str, step: usize) -> Vec<(String, u64)> {
        let steps = self.steps.lock();
        let Some(groups) = steps.get(&step) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (group, counters) in groups {
            for (counter, value) in counters {
                let sign = if *value < 0 { '-' } else { '+' };
                out.push((
                    format!(
                        "{COUNT_PREFIX}{job}{COUNT_SEP}{step}{COUNT_SEP}{group}{COUNT_SEP}{counter}{COUNT_SEP}{sign}"
                    ),
                    value.unsigned_abs(),
                ));
            }
        }
        out
    }

    /// Adds the counts of job `job` made by [`Counters::as_counts`] (in
    /// other processes); other metrics, and other jobs' counts (of a job
    /// run at the same time from the same context), are skipped.
    pub fn add_counts(&self, job: &str, counts: &[(String, u64)]) {
        for (name, value) in counts {
            let Some(rest) = name.strip_prefix(COUNT_PREFIX) else {
                continue;
            };
            let parts: Vec<&str> = rest.split(COUNT_SEP).collect();
            let [of, step, group, counter, sign] = parts[..] else {
                continue;
            };
            if of != job {
                continue;
            }
            let Ok(step) = step.parse() else {
                continue;
            };
            let value = i64::try_from(*value).unwrap_or(i64::MAX);
            let value = if sign == "-" { -value } else { value };
            self.add(step, group, counter, value);
        }
    }
}

/// Counter metrics: `spate.counter<US>job<US>step<US>group<US>counter<US>sign`.
const COUNT_PREFIX: &str = "spate.counter\u{1f}";
const COUNT_SEP: char = '\u{1f}';

/// One MapReduce step of a streaming job.
#[derive(Debug, Clone, Default)]
pub struct StreamingStep {
    /// The mapper command (`None`: lines pass through unchanged).
    pub mapper: Option<String>,
    /// The combiner command, run map-side on sorted runs.
    pub combiner: Option<String>,
    /// The reducer command (`None` with reducers: Hadoop's identity reducer).
    pub reducer: Option<String>,
    /// Reducer count: `Some(0)` makes the step map-only; `None` takes
    /// `mapreduce.job.reduces` or, failing that, one reducer per thread (per task slot on a cluster).
    pub reducers: Option<usize>,
    /// Properties of this step only (on top of the job's).
    pub properties: BTreeMap<String, String>,
    /// The partitioner class (`-partitioner`).
    pub partitioner: Option<String>,
}

/// A Hadoop Streaming job.
#[derive(Debug, Clone, Default)]
pub struct StreamingJob {
    /// Input paths: files, directories, globs.
    pub inputs: Vec<String>,
    /// The steps, run in order, each on the previous one's output.
    pub steps: Vec<StreamingStep>,
    /// Job properties (`-D key=value`); tasks see them as environment
    /// variables with every non-alphanumeric character turned into `_`.
    pub properties: BTreeMap<String, String>,
    /// Side files placed in every task's working directory (`-file`): the
    /// path and the name it gets there (`None`: its base name).
    pub files: Vec<(PathBuf, Option<String>)>,
    /// Extra environment variables for tasks (`-cmdenv`).
    pub cmdenv: Vec<(String, String)>,
}

impl StreamingJob {
    /// The job as configured, one setting per line (`-verbose`).
    pub fn describe(&self, ctx: &Context) -> Result<String> {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| out.push_str(&format!("  {k}: {v}\n"));
        line("input", &self.inputs.join(", "));
        // Side files by the name tasks see, to show commands as they run.
        let side: Vec<(PathBuf, String)> = self
            .files
            .iter()
            .filter_map(|(p, name)| Some((p.clone(), side_name(p, name.as_deref())?)))
            .collect();
        let shown = |c: &Option<String>, map: bool| match task_program(c.as_deref(), map, &side) {
            TaskProgram::Identity => "(identity)".to_string(),
            TaskProgram::Aggregate => {
                "aggregate (Hadoop's Aggregate package, in-process)".to_string()
            }
            TaskProgram::Command(c) => c,
        };
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            line(&format!("step {n} mapper"), &shown(&step.mapper, true));
            let reducers = self.reducers(step, ctx)?;
            if step.combiner.is_some() {
                let combiner = if reducers == 0 {
                    "(not run: the step is map-only)".to_string()
                } else {
                    shown(&step.combiner, false)
                };
                line(&format!("step {n} combiner"), &combiner);
            }
            if reducers == 0 {
                line(&format!("step {n} reducers"), "none (map-only)");
            } else {
                line(&format!("step {n} reducers"), &reducers.to_string());
                line(&format!("step {n} reducer"), &shown(&step.reducer, false));
            }
            if let Some(p) = &step.partitioner {
                line(&format!("step {n} partitioner"), p);
            }
            for (k, v) in &step.properties {
                line(&format!("step {n} property {k}"), v);
            }
        }
        for (k, v) in &self.properties {
            line(&format!("property {k}"), v);
        }
        for (path, name) in &self.files {
            let name = name.clone().unwrap_or_default();
            line("file", format!("{} {name}", path.display()).trim_end());
        }
        for (k, v) in &self.cmdenv {
            line("cmdenv", &format!("{k}={v}"));
        }
        Ok(out)
    }
}

/// Where a job's output goes.
pub enum Output<'a> {
    /// Part files in a directory, committed atomically.
    Dir(PathBuf),
    /// Lines written to a stream as they come.
    Writer(&'a mut dyn Write),
}

/// What a finished job reports.
#[derive(Debug)]
pub struct JobReport {
    /// The job id tasks saw.
    pub job_id: String,
    /// The committed output (when written to a directory).
    pub output: Option<WriteSummary>,
    /// Lines written (when written to a stream).
    pub lines: u64,
    /// Counters per step.
    pub counters: BTreeMap<usize, StepCounters>,
    /// Last status message per task.
    pub statuses: BTreeMap<String, String>,
    /// What the job succeeded without (counters a cluster's scheduler
    /// could not give back).
    pub warnings: Vec<String>,
}

impl JobReport {
    /// Counters in Hadoop's layout (`Counters: N`, groups, `name=value`).
    pub fn format_counters(&self) -> String {
        let mut out = String::new();
        let many = self.counters.len() > 1;
        for (step, groups) in &self.counters {
            let n: usize = groups.values().map(BTreeMap::len).sum();
            if many {
                out.push_str(&format!("Step {} counters: {n}\n", step + 1));
            } else {
                out.push_str(&format!("Counters: {n}\n"));
            }
            for (group, counters) in groups {
                out.push_str(&format!("\t{group}\n"));
                for (name, value) in counters {
                    out.push_str(&format!("\t\t{name}={value}\n"));
                }
            }
        }
        out
    }
}

const PARTITIONER: [&str; 2] = [
    "mapreduce.job.partitioner.class",
    "mapred.partitioner.class",
];
const COMPARATOR: [&str; 2] = [
    "mapreduce.job.output.key.comparator.class",
    "mapred.output.key.comparator.class",
];
const PARTITION_OPTIONS: [&str; 2] = [
    "mapreduce.partition.keypartitioner.options",
    "mapred.text.key.partitioner.options",
];
const COMPARE_OPTIONS: [&str; 2] = [
    "mapreduce.partition.keycomparator.options",
    "mapred.text.key.comparator.options",
];

/// Properties of one step: the job's, then the step's own.
struct Props(BTreeMap<String, String>);

impl Props {
    fn get(&self, names: &[&str]) -> Option<&str> {
        names
            .iter()
            .find_map(|n| self.0.get(*n).map(String::as_str))
    }

    fn number(&self, names: &[&str]) -> Result<Option<usize>> {
        match self.get(names) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                Error::Usage(format!(
                    "property {} must be a whole number, not '{v}'",
                    names[0]
                ))
            }),
        }
    }
}

/// What a task may buffer in its own memory without a memory limit.
const MAP_BUFFER_BYTES: usize = 256 << 20;

/// The name a side file has in task directories: the one given
/// (`path#name`), else its file name.
fn side_name(path: &std::path::Path, name: Option<&str>) -> Option<String> {
    name.map(str::to_string)
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// What a task given `command` runs: the identity without one, Hadoop's
/// Aggregate package for `aggregate` as combiner or reducer, else the
/// command with its program resolved against the shipped files.
fn task_program(command: Option<&str>, map: bool, side_files: &[(PathBuf, String)]) -> TaskProgram {
    match command {
        None => TaskProgram::Identity,
        Some(c) if !map && c.trim() == aggregate::AGGREGATE => TaskProgram::Aggregate,
        Some(c) => TaskProgram::Command(resolve_program(c, side_files)),
    }
}

/// The program a task command runs: its first word.
fn program_word(command: &str) -> &str {
    let trimmed = command.trim_start();
    let end = trimmed
        .find(|c: char| c.is_whitespace())
        .unwrap_or(trimmed.len());
    &trimmed[..end]
}

/// Hadoop runs a task command's program from the task's working directory
/// when a shipped file has its name (`-file mapper.py -mapper mapper.py`),
/// and from PATH otherwise.
fn resolve_program(command: &str, side_files: &[(PathBuf, String)]) -> String {
    let program = program_word(command);
    if !program.is_empty()
        && !program.contains('/')
        && side_files.iter().any(|(_, name)| name == program)
    {
        format!("./{}", command.trim_start())
    } else {
        command.to_string()
    }
}

/// A shipped file that a task runs, executable as Hadoop makes shipped
/// files: the file itself when it already is, otherwise a copy with the
/// execute bits set in the job's work directory (the user's file is left
/// as it is).
fn executable(file: &std::path::Path, name: &str, work_root: &std::path::Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file)
        .map_err(|e| Error::Usage(format!("side file {}: {e}", file.display())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 != 0 {
        return Ok(file.to_path_buf());
    }
    let dir = work_root.join("shipped");
    let copy = dir.join(name);
    let made = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::copy(file, &copy))
        .and_then(|_| {
            std::fs::set_permissions(
                &copy,
                std::fs::Permissions::from_mode(meta.permissions().mode() | 0o755),
            )
        });
    made.map_err(|e| {
        Error::Storage(format!(
            "cannot make an executable copy of side file {} in {}: {e}",
            file.display(),
            dir.display()
        ))
    })?;
    Ok(copy)
}

/// Separators may be given with escapes, as on Hadoop command lines.
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\\\", "\\")
        .into_bytes()
}

/// A property name as the environment variable tasks see.
pub fn env_name(property: &str) -> String {
    property
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

static JOB_SEQ: AtomicU64 = AtomicU64::new(1);

impl StreamingJob {
    fn props(&self, step: &StreamingStep) -> Props {
        let mut all = self.properties.clone();
        all.extend(step.properties.clone());
        Props(all)
    }

    /// Settings that Hadoop would ignore here, as warnings to show the user.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let props = self.props(step);
            let map_only = step.reducers == Some(0)
                || (step.reducers.is_none()
                    && (step.reducer.as_deref() == Some("NONE")
                        || props
                            .number(&["mapreduce.job.reduces", "mapred.reduce.tasks"])
                            .ok()
                            .flatten()
                            == Some(0)));
            if map_only && step.combiner.is_some() {
                out.push(format!(
                    "step {}: the combiner does not run in a map-only step (as in Hadoop)",
                    i + 1
                ));
            }
            let partitioner = step.partitioner.as_deref().or(props.get(&PARTITIONER));
            if props.get(&PARTITION_OPTIONS).is_some()
                && !partitioner.is_some_and(|p| p.contains("KeyFieldBasedPartitioner"))
            {
                out.push(format!(
                    "step {}: {} is ignored without -partitioner org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
                    i + 1,
                    PARTITION_OPTIONS[0]
                ));
            }
            if props.get(&COMPARE_OPTIONS).is_some()
                && !props
                    .get(&COMPARATOR)
                    .is_some_and(|c| c.contains("KeyFieldBasedComparator"))
            {
                out.push(format!(
                    "step {}: {} is ignored without -D {}=org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator",
                    i + 1,
                    COMPARE_OPTIONS[0],
                    COMPARATOR[0]
                ));
            }
        }
        out
    }

    fn key_spec(&self, step: &StreamingStep) -> Result<KeySpec> {
        let props = self.props(step);
        let mut spec = KeySpec::default();
        if let Some(sep) = props.get(&["stream.map.output.field.separator"]) {
            spec.separator = unescape(sep);
        }
        if let Some(n) = props.number(&["stream.num.map.output.key.fields"])? {
            spec.key_fields = n.max(1);
        }
        if let Some(sep) = props.get(&[
            "mapreduce.map.output.key.field.separator",
            "map.output.key.field.separator",
        ]) {
            spec.field_separator = unescape(sep);
        }
        let partitioner = step.partitioner.as_deref().or(props.get(&PARTITIONER));
        if let Some(p) = partitioner {
            if p.contains("KeyFieldBasedPartitioner") {
                if let Some(options) = props.get(&PARTITION_OPTIONS) {
                    spec.partition = Some(parse_key_fields(options)?);
                }
            } else if !p.contains("HashPartitioner") {
                return Err(Error::Usage(format!(
                    "partitioner {p} is not available: spate runs HashPartitioner (the default) and KeyFieldBasedPartitioner"
                )));
            }
        }
        if let Some(c) = props.get(&COMPARATOR) {
            if c.contains("KeyFieldBasedComparator") {
                let options = props.get(&COMPARE_OPTIONS).unwrap_or("");
                spec.compare = Some(parse_key_fields(options)?);
            } else {
                return Err(Error::Usage(format!(
                    "comparator {c} is not available: spate sorts keys bytewise (Hadoop's default) or with KeyFieldBasedComparator"
                )));
            }
        }
        Ok(spec)
    }

    fn reducers(&self, step: &StreamingStep, ctx: &Context) -> Result<usize> {
        if step.reducers.is_none() && step.reducer.as_deref() == Some("NONE") {
            return Ok(0);
        }
        Ok(match step.reducers {
            Some(n) => n,
            None => self
                .props(step)
                .number(&["mapreduce.job.reduces", "mapred.reduce.tasks"])?
                // One per thread; on a cluster, one per task slot.
                .unwrap_or_else(|| ctx.session().copied_config().target_partitions()),
        })
    }

    /// On a cluster every task step (mapper, combiner, reducer) carries the
    /// side files in the job's plan, which travels in one gRPC message:
    /// refuses up front what would not fit.
    fn check_shipped_size(&self, ctx: &Context, side_files: &[(PathBuf, String)]) -> Result<()> {
        let mut bytes = 0u64;
        let mut pending: Vec<PathBuf> = side_files.iter().map(|(p, _)| p.clone()).collect();
        while let Some(p) = pending.pop() {
            let meta = std::fs::metadata(&p)
                .map_err(|e| Error::Usage(format!("side file {}: {e}", p.display())))?;
            if meta.is_dir() {
                let entries = std::fs::read_dir(&p)
                    .map_err(|e| Error::Usage(format!("side file {}: {e}", p.display())))?;
                pending.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            } else {
                bytes += meta.len();
            }
        }
        let mut ops = 0u64;
        for step in &self.steps {
            let reduces = self.reducers(step, ctx)? > 0;
            ops += 1 + u64::from(reduces) * (1 + u64::from(step.combiner.is_some()));
        }
        let shipped = bytes.saturating_mul(ops);
        if shipped > pipe::MAX_SHIPPED_BYTES {
            return Err(Error::Usage(format!(
                "the job's side files ({:.1} MiB) travel with each of its {ops} task steps \
                 inside the plan sent to the cluster ({:.1} MiB in all, over the {} MiB a \
                 plan may carry): put large side data on storage every executor reads \
                 (a shared filesystem or an object store) and read it from there",
                bytes as f64 / (1u64 << 20) as f64,
                shipped as f64 / (1u64 << 20) as f64,
                pipe::MAX_SHIPPED_BYTES >> 20
            )));
        }
        Ok(())
    }

    /// Builds the job's plan (registering its ops in `ctx`). `work_root` holds
    /// task directories and spools while the job runs.
    pub fn plan(
        &self,
        ctx: &Context,
        job_id: &str,
        work_root: &std::path::Path,
        counters: &Arc<Counters>,
    ) -> Result<LogicalPlan> {
        if self.steps.is_empty() {
            return Err(Error::Usage(
                "a streaming job needs at least one step".into(),
            ));
        }
        let files = ctx.list_inputs(&self.inputs)?;
        let total: u64 = files.iter().map(|f| f.len).sum();
        ctx.progress().add_total(total);
        let mut side_files = Vec::new();
        for (f, name) in &self.files {
            if !f.exists() {
                return Err(Error::Usage(format!(
                    "side file {} does not exist",
                    f.display()
                )));
            }
            let name = side_name(f, name.as_deref())
                .ok_or_else(|| Error::Usage(format!("side file {} has no name", f.display())))?;
            let runs = self.steps.iter().any(|s| {
                [&s.mapper, &s.combiner, &s.reducer]
                    .into_iter()
                    .flatten()
                    .any(|c| program_word(c) == name)
            });
            let path = if runs {
                executable(f, &name, work_root)?
            } else {
                f.clone()
            };
            side_files.push((path, name));
        }
        if ctx.cluster().is_some() {
            self.check_shipped_size(ctx, &side_files)?;
        }
        let first_has_mapper = self.steps.first().is_some_and(|s| s.mapper.is_some());
        let mut plan = TextScanNode::plan_with(
            "input".to_string(),
            &files,
            LineOptions {
                raw: true,
                tag_splits: first_has_mapper,
                whole_files: false,
            },
        )?;
        for (i, step) in self.steps.iter().enumerate() {
            let props = self.props(step);
            let mut env: Vec<(String, String)> = props
                .0
                .iter()
                .map(|(k, v)| (env_name(k), v.clone()))
                .collect();
            env.extend(self.cmdenv.iter().cloned());
            let reducers = self.reducers(step, ctx)?;
            env.push(("mapreduce_job_reduces".into(), reducers.to_string()));
            // What a task may buffer in its own memory (mrjob's in-map
            // combine): a quarter of one thread's share of the budget.
            let buffer = ctx.memory_limit().map_or(MAP_BUFFER_BYTES, |m| {
                (m / (4 * ctx.threads().max(1))).clamp(1 << 20, MAP_BUFFER_BYTES)
            });
            env.push(("SPATE_MAP_BUFFER_BYTES".into(), buffer.to_string()));
            let attempts =
                |names: &[&str]| -> Result<usize> { Ok(props.number(names)?.unwrap_or(4).max(1)) };
            let setup = Arc::new(TaskSetup {
                job_id: job_id.to_string(),
                env,
                files: side_files.clone(),
                work_root: work_root.to_path_buf(),
                map_attempts: attempts(&["mapreduce.map.maxattempts", "mapred.map.max.attempts"])?,
                reduce_attempts: attempts(&[
                    "mapreduce.reduce.maxattempts",
                    "mapred.reduce.max.attempts",
                ])?,
                counters: counters.clone(),
                task_slots: ctx.threads(),
            });
            let spec = self.key_spec(step)?;
            let prefix = format!("step-{}", i + 1);
            let op = |name: &str,
                      command: Option<String>,
                      role: PipeRole,
                      input: PipeInput,
                      output: PipeOutput,
                      plan: LogicalPlan|
             -> Result<LogicalPlan> {
                let program = task_program(command.as_deref(), role == PipeRole::Map, &side_files);
                let op = PipeOp::new(
                    format!("{prefix}/{name}"),
                    i,
                    program,
                    role,
                    input,
                    output,
                    reducers,
                    setup.clone(),
                );
                ctx.op_plan(Arc::new(op), plan)
            };
            if reducers == 0 {
                if step.mapper.is_some() {
                    plan = op(
                        "mapper",
                        step.mapper.clone(),
                        PipeRole::Map,
                        PipeInput::Lines,
                        PipeOutput::Lines,
                        plan,
                    )?;
                }
                continue;
            }
            let keyed = PipeOutput::KeyValue(spec.clone());
            plan = op(
                "mapper",
                step.mapper.clone(),
                PipeRole::Map,
                PipeInput::Lines,
                keyed.clone(),
                plan,
            )?;
            if step.combiner.is_some() {
                plan = op(
                    "combiner",
                    step.combiner.clone(),
                    PipeRole::Combine,
                    PipeInput::KeyValue(spec.clone()),
                    keyed.clone(),
                    plan,
                )?;
            }
            let reducer = step.reducer.clone().filter(|r| r != "NONE");
            plan = op(
                "reducer",
                reducer,
                PipeRole::Reduce,
                PipeInput::KeyValue(spec.clone()),
                PipeOutput::Lines,
                plan,
            )?;
        }
        Ok(plan)
    }

    /// Runs the job in `ctx`.
    pub fn run(&self, ctx: &Context, output: Output<'_>) -> Result<JobReport> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let job_id = format!("job_{now}_{:04}", JOB_SEQ.fetch_add(1, Ordering::Relaxed));
        let work = tempfile::Builder::new()
            .prefix("spate-streaming-")
            .tempdir()
            .map_err(|e| Error::Storage(format!("cannot create a task directory: {e}")))?;
        let counters = Arc::new(Counters::default());
        let plan = self.plan(ctx, &job_id, work.path(), &counters)?;
        let cluster_mark = ctx.cluster_jobs().mark();
        let dataset = ctx.dataset::<String>(Arc::new(move || Ok(plan.clone())));
        let mut report = JobReport {
            job_id,
            output: None,
            lines: 0,
            counters: BTreeMap::new(),
            statuses: BTreeMap::new(),
            warnings: Vec::new(),
        };
        match output {
            Output::Dir(dir) => report.output = Some(dataset.write_text(dir)?),
            Output::Writer(out) => {
                let physical = dataset.physical_plan()?;
                // The writer stays on this thread: batches come one at a
                // time from the context's pool.
                let mut stream = ctx.block_on(async {
                    let task = ctx.session().task_ctx();
                    datafusion::physical_plan::execute_stream(physical, task).map_err(from_df)
                })?;
                while let Some(batch) = ctx.block_on(stream.next()) {
                    let batch = batch.map_err(from_df)?;
                    report.lines += batch.num_rows() as u64;
                    let text = spate_io::sink::batch_to_text(&batch).map_err(from_df)?;
                    if let Err(e) = out.write_all(&text) {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            break;
                        }
                        return Err(Error::Storage(format!("writing output: {e}")));
                    }
                }
            }
        }
        // On a cluster the tasks counted in the executors: the scheduler
        // kept each task's successful attempt's counts.
        if let Some(addr) = ctx.cluster() {
            // The output is committed by now: counters that cannot be read
            // make a warning, not a failed job.
            for ballista_job in ctx.cluster_jobs().since(cluster_mark) {
                match ctx.block_on(crate::cluster::job_counts(addr, &ballista_job)) {
                    Ok(counts) => counters.add_counts(&report.job_id, &counts),
                    Err(e) => report
                        .warnings
                        .push(format!("the counters below are incomplete: {e}")),
                }
            }
        }
        report.counters = counters.snapshot();
        report.statuses = counters.statuses();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_back_to_their_own_job_only() {
        let ran = Counters::default();
        ran.add(1, "Group", "records", 5);
        ran.add(1, "Group", "balance", -2);
        let other = Counters::default();
        other.add(1, "Group", "records", 100);
        // What a scheduler gives back: this job's counts, another job's
        // (run at the same time from the same context), other metrics.
        let mut metrics = ran.as_counts("job_1_0001", 1);
        metrics.extend(other.as_counts("job_1_0002", 1));
        metrics.push(("output_rows".into(), 9));
        let back = Counters::default();
        back.add_counts("job_1_0001", &metrics);
        assert_eq!(back.snapshot(), ran.snapshot());
    }
}
