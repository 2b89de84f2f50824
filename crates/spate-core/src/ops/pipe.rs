//! `PipeOp`: streams a partition through a child process — the tasks of
//! Hadoop Streaming and mrjob jobs.
//!
//! A task writes its input rows as lines to the command's stdin on the op's
//! own thread while two reader threads take its stdout (lines back into rows)
//! and its stderr (Hadoop's reporter protocol, and a tail for error messages).
//! Both directions block on full pipes, so a slow command slows its input and
//! nothing buffers a whole partition in memory.
//!
//! Retries. A command that exits non-zero is run again, up to the job's
//! attempt limit (Hadoop's `mapreduce.{map,reduce}.maxattempts`, default 4).
//! To replay a task and never pass on a failed attempt's output, a task with
//! retries left tees its input to a spool file on local disk while feeding it,
//! and sends its output on only once the attempt has succeeded (spooling
//! stdout to disk meanwhile), as Hadoop commits task output only on success.
//! With one attempt allowed, output streams straight through.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use futures::StreamExt;
use spate_io::source::{SPLIT_COLUMN, SplitTag};
use tokio::sync::mpsc::Sender;

use crate::error::StepError;
use crate::node::{InputShape, PartitionOp};
use crate::streaming::Counters;
use crate::streaming::keys::KeySpec;

/// Column names of keyed rows between tasks.
pub const KEY: &str = "key";
/// The value column (null when the line had no separator).
pub const VALUE: &str = "value";
/// The partitioner's bytes (present with a key-field partitioner).
pub const PART: &str = "part";
/// The comparator's byte-comparable key (present with a key-field comparator).
pub const SORT: &str = "sort";

/// Sorted runs fed to a combiner hold about this many bytes (less under a
/// small memory limit: a quarter of each partition's share of it).
const RUN_BYTES: usize = 32 << 20;
/// Output batches are cut at this many bytes of line data.
const BATCH_BYTES: usize = 1 << 20;
/// Lines of a failed task's stderr shown in the error.
const STDERR_TAIL: usize = 20;

/// Which kind of task a pipe runs (it decides the task ids and environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeRole {
    /// A mapper: one task per input split when the input is tagged with splits.
    Map,
    /// A combiner: one task per map partition, fed sorted runs.
    Combine,
    /// A reducer: one task per reduce partition, fed rows sorted by key.
    Reduce,
}

/// How rows reach the command as lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeInput {
    /// One line per row of a single binary column (plus a split tag column).
    Lines,
    /// `key`, `value` (and `part`, `sort`) columns as a [`PipeOutput::KeyValue`]
    /// with this spec made them, joined by its separator into lines (no
    /// separator when `value` is null).
    KeyValue(KeySpec),
}

/// How the command's output lines become rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeOutput {
    /// One binary `value` column holding each line.
    Lines,
    /// `key` and `value` columns split as the spec says, plus `part`/`sort`
    /// columns when it has a key-field partitioner/comparator.
    KeyValue(KeySpec),
}

impl PipeOutput {
    fn schema(&self) -> SchemaRef {
        match self {
            PipeOutput::Lines => Arc::new(Schema::new(vec![Field::new(
                VALUE,
                DataType::Binary,
                false,
            )])),
            PipeOutput::KeyValue(spec) => {
                let mut fields = vec![
                    Field::new(KEY, DataType::Binary, false),
                    Field::new(VALUE, DataType::Binary, true),
                ];
                if spec.partition.is_some() {
                    fields.push(Field::new(PART, DataType::Binary, false));
                }
                if spec.compare.is_some() {
                    fields.push(Field::new(SORT, DataType::Binary, false));
                }
                Arc::new(Schema::new(fields))
            }
        }
    }
}

/// What every task of a job shares: ids, environment, side files, limits.
#[derive(Debug)]
pub struct TaskSetup {
    /// Hadoop-style job id (`job_<time>_<seq>`).
    pub job_id: String,
    /// Variables every task gets (the job's properties, `-cmdenv`).
    pub env: Vec<(String, String)>,
    /// Side files (and directories) linked into every task's working
    /// directory: the path and the name it gets there.
    pub files: Vec<(PathBuf, String)>,
    /// Where task working directories and spools are made.
    pub work_root: PathBuf,
    /// Attempts per map (and combine) task.
    pub map_attempts: usize,
    /// Attempts per reduce task.
    pub reduce_attempts: usize,
    /// Where counters of successful attempts are totalled.
    pub counters: Arc<Counters>,
}

/// Streams each partition (or each input split) through a command.
pub struct PipeOp {
    spec: Arc<Spec>,
}

/// What a pipe step is; shared by the op and its driver threads.
struct Spec {
    step: String,
    /// Index of the job step (for counters and messages).
    step_index: usize,
    /// `None`: the identity (rows are only re-keyed, no process is started).
    command: Option<String>,
    role: PipeRole,
    input: PipeInput,
    output: PipeOutput,
    /// Reducer count (reduce role only).
    reducers: usize,
    setup: Arc<TaskSetup>,
    schema: SchemaRef,
}

impl fmt::Debug for PipeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PipeOp({})", self.spec.step)
    }
}

impl PipeOp {
    /// A pipe step named `step`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        step: String,
        step_index: usize,
        command: Option<String>,
        role: PipeRole,
        input: PipeInput,
        output: PipeOutput,
        reducers: usize,
        setup: Arc<TaskSetup>,
    ) -> Self {
        let schema = output.schema();
        Self {
            spec: Arc::new(Spec {
                step,
                step_index,
                command,
                role,
                input,
                output,
                reducers: reducers.max(1),
                setup,
                schema,
            }),
        }
    }
}

impl PartitionOp for PipeOp {
    fn step(&self) -> &str {
        &self.spec.step
    }

    fn describe(&self) -> String {
        let what = match self.spec.role {
            PipeRole::Map => "mapper",
            PipeRole::Combine => "combiner",
            PipeRole::Reduce => "reducer",
        };
        match &self.spec.command {
            Some(c) => format!("{what} `{c}`"),
            None => format!("identity {what}"),
        }
    }

    fn schema(&self) -> SchemaRef {
        self.spec.schema.clone()
    }

    fn input_shape(&self) -> InputShape {
        match (self.spec.role, &self.spec.input) {
            (PipeRole::Reduce, PipeInput::KeyValue(spec)) => {
                // By key only, as Hadoop: a key's values come in no set
                // order (a secondary sort is done with key fields). Adding
                // the value as a tie-break cost a third of a word count.
                let sort = if spec.compare.is_some() { SORT } else { KEY };
                let route = if spec.partition.is_some() { PART } else { KEY };
                InputShape::GroupedBy {
                    keys: vec![sort.to_string()],
                    descending: false,
                    partitions: Some(self.spec.reducers),
                    route: Some(route.to_string()),
                }
            }
            _ => InputShape::Any,
        }
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_rows = context.session_config().batch_size().max(1);
        let run_bytes =
            super::memory_share(&context).map_or(RUN_BYTES, |s| s.clamp(1 << 20, RUN_BYTES));
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.spec.schema.clone(), 2);
        let tx = builder.tx();
        let handle = tokio::runtime::Handle::current();
        let driver = Driver {
            op: OpView {
                spec: self.spec.clone(),
                batch_rows,
                run_bytes,
            },
            partition,
            tx,
        };
        builder.spawn_blocking(move || driver.drive(input, handle));
        Ok(builder.build())
    }
}

/// What the driver thread needs of the op.
struct OpView {
    spec: Arc<Spec>,
    batch_rows: usize,
    run_bytes: usize,
}

impl std::ops::Deref for OpView {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        &self.spec
    }
}

/// Whether to go on after a task: downstream may have stopped reading.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Closed,
}

/// Runs the tasks of one partition on a blocking thread.
struct Driver {
    op: OpView,
    partition: usize,
    tx: Sender<DfResult<RecordBatch>>,
}

impl Driver {
    fn drive(
        self,
        mut input: SendableRecordBatchStream,
        handle: tokio::runtime::Handle,
    ) -> DfResult<()> {
        let mut task: Option<TaskRun> = None;
        // A reduce task starts at once, so its command's start-up (an
        // interpreter, imports) overlaps the map phase instead of following
        // it; and every reduce task runs, even one with no input, as in Hadoop.
        if self.op.role == PipeRole::Reduce {
            task = Some(self.start(None)?);
        }
        let mut run = RunBuffer::default();
        let mut line_buf: Vec<u8> = Vec::new();
        while let Some(batch) = handle.block_on(input.next()) {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let tag = self.split_tag(&batch)?;
            if let (Some(t), Some(tag)) = (&task, &tag)
                && t.tag.as_ref() != Some(tag)
                && let Some(done) = task.take()
                && self.finish(done)? == Flow::Closed
            {
                return Ok(());
            }
            if task.is_none() {
                task = Some(self.start(tag)?);
            }
            let Some(t) = task.as_mut() else { continue };
            if self.op.role == PipeRole::Combine {
                run.push(batch);
                if run.bytes >= self.op.run_bytes {
                    let sorted = run.take_sorted(&self.op.input)?;
                    self.feed(t, &sorted, &mut line_buf)?;
                }
            } else {
                self.feed(t, &batch, &mut line_buf)?;
            }
            if t.closed {
                return Ok(());
            }
        }
        if let Some(t) = task.as_mut()
            && run.bytes > 0
        {
            let sorted = run.take_sorted(&self.op.input)?;
            self.feed(t, &sorted, &mut line_buf)?;
        }
        if let Some(t) = task {
            self.finish(t)?;
        }
        Ok(())
    }

    fn error(&self, message: String) -> DataFusionError {
        StepError {
            step: self.op.step.clone(),
            message,
        }
        .into()
    }

    fn split_tag(&self, batch: &RecordBatch) -> DfResult<Option<SplitTag>> {
        if self.op.role != PipeRole::Map {
            return Ok(None);
        }
        let Some(column) = batch.column_by_name(SPLIT_COLUMN) else {
            return Ok(None);
        };
        let Some(dict) = column.as_any_dictionary_opt() else {
            return Ok(None);
        };
        let values = dict.values().as_string_opt::<i32>();
        let key = dict.normalized_keys().first().copied().unwrap_or(0);
        let tag = values
            .filter(|v| key < v.len())
            .and_then(|v| SplitTag::decode(v.value(key)));
        match tag {
            Some(t) => Ok(Some(t)),
            None => Err(self.error("input split tag unreadable".into())),
        }
    }

    /// A name for a task's files on local disk: Hadoop's ids repeat across
    /// job steps, and a combiner shares the ids of map tasks.
    fn local_name(&self, id: &str) -> String {
        let role = match self.op.role {
            PipeRole::Map => "map",
            PipeRole::Combine => "combine",
            PipeRole::Reduce => "reduce",
        };
        format!("step{}-{role}-{id}", self.op.step_index + 1)
    }

    fn task_kind(&self) -> char {
        match self.op.role {
            PipeRole::Map | PipeRole::Combine => 'm',
            PipeRole::Reduce => 'r',
        }
    }

    fn max_attempts(&self) -> usize {
        match self.op.role {
            PipeRole::Reduce => self.op.setup.reduce_attempts,
            _ => self.op.setup.map_attempts,
        }
        .max(1)
    }

    fn start(&self, tag: Option<SplitTag>) -> DfResult<TaskRun> {
        let number = tag.as_ref().map_or(self.partition, |t| t.index);
        let setup = &self.op.setup;
        let core = setup
            .job_id
            .strip_prefix("job_")
            .unwrap_or(&setup.job_id)
            .to_string();
        let kind = self.task_kind();
        let task_id = format!("task_{core}_{kind}_{number:06}");
        let is_map = kind == 'm';
        let mut env: Vec<(String, String)> = vec![
            ("mapreduce_job_id".into(), setup.job_id.clone()),
            ("mapred_job_id".into(), setup.job_id.clone()),
            ("mapreduce_task_id".into(), task_id.clone()),
            ("mapred_tip_id".into(), task_id.clone()),
            ("mapreduce_task_partition".into(), number.to_string()),
            ("mapred_task_partition".into(), number.to_string()),
            ("mapreduce_task_ismap".into(), is_map.to_string()),
            ("mapred_task_is_map".into(), is_map.to_string()),
        ];
        if let Some(t) = &tag {
            let file = t.path.display().to_string();
            for (k, v) in [
                ("map_input_file", file),
                ("map_input_start", t.start.to_string()),
                ("map_input_length", t.length.to_string()),
            ] {
                env.push((format!("mapreduce_{k}"), v.clone()));
                env.push((k.to_string(), v));
            }
        }
        let max_attempts = self.max_attempts();
        let mut task = TaskRun {
            task_id,
            core,
            kind,
            number,
            tag,
            env,
            spool: None,
            attempt: None,
            identity: None,
            attempt_no: 0,
            max_attempts,
            records_in: 0,
            closed: false,
        };
        match &self.op.command {
            None => {
                task.identity = Some(LineParser::new(&self.op));
            }
            Some(_) => {
                if max_attempts > 1 {
                    let path = setup
                        .work_root
                        .join(format!("{}.in", self.local_name(&task.task_id)));
                    let file = File::create(&path).map_err(|e| {
                        self.error(format!("cannot create spool {}: {e}", path.display()))
                    })?;
                    task.spool = Some((path, BufWriter::with_capacity(1 << 16, file)));
                }
                let attempt = self.spawn(&task, Stdio::piped())?;
                task.attempt = Some(attempt);
            }
        }
        Ok(task)
    }

    fn spawn(&self, task: &TaskRun, stdin: Stdio) -> DfResult<Attempt> {
        let setup = &self.op.setup;
        let command = self.op.command.clone().unwrap_or_default();
        let attempt_id = format!(
            "attempt_{}_{}_{:06}_{}",
            task.core, task.kind, task.number, task.attempt_no
        );
        let dir = setup.work_root.join(self.local_name(&attempt_id));
        std::fs::create_dir_all(&dir).map_err(|e| {
            self.error(format!(
                "cannot create task directory {}: {e}",
                dir.display()
            ))
        })?;
        for (file, name) in &setup.files {
            link_side_file(file, name, &dir).map_err(|e| {
                self.error(format!(
                    "cannot put side file {} into the task directory: {e}",
                    file.display()
                ))
            })?;
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&command)
            .current_dir(&dir)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .envs(task.env.iter().map(|(k, v)| (k, v)))
            .env("mapreduce_task_attempt_id", &attempt_id)
            .env("mapred_task_id", &attempt_id)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            self.error(format!(
                "task {}: cannot start `{command}`: {e}",
                task.task_id
            ))
        })?;
        let stdin = child
            .stdin
            .take()
            .map(|s| BufWriter::with_capacity(1 << 16, s));
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| self.error("child has no stdout".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| self.error("child has no stderr".into()))?;
        let out_spool = (task.max_attempts > 1).then(|| dir.join("stdout"));
        let stdout_thread = {
            let out_spool = out_spool.clone();
            let mut parser = LineParser::new(&self.op);
            let tx = self.tx.clone();
            std::thread::Builder::new()
                .name(format!("{attempt_id}-out"))
                .spawn(move || -> StdoutEnd {
                    match out_spool {
                        Some(path) => {
                            let copied = File::create(&path).and_then(|mut f| {
                                let mut out = stdout;
                                std::io::copy(&mut out, &mut f)
                            });
                            match copied {
                                Ok(_) => StdoutEnd::Spooled,
                                Err(e) => StdoutEnd::Failed(e.to_string()),
                            }
                        }
                        None => parser.stream(stdout, &tx),
                    }
                })
                .map_err(|e| self.error(format!("cannot start a reader thread: {e}")))?
        };
        let stderr_thread = std::thread::Builder::new()
            .name(format!("{attempt_id}-err"))
            .spawn(move || read_stderr(stderr))
            .map_err(|e| self.error(format!("cannot start a reader thread: {e}")))?;
        Ok(Attempt {
            id: attempt_id,
            child,
            stdin,
            broken: false,
            stdout: Some(stdout_thread),
            stderr: Some(stderr_thread),
            dir,
            out_spool,
        })
    }

    /// Writes the rows of `batch` as lines to the task.
    fn feed(&self, task: &mut TaskRun, batch: &RecordBatch, buf: &mut Vec<u8>) -> DfResult<()> {
        buf.clear();
        let rows = write_lines(&self.op.input, batch, buf)
            .map_err(|e| self.error(format!("input rows: {e}")))?;
        task.records_in += rows as u64;
        if let Some(parser) = task.identity.as_mut() {
            let tx = self.tx.clone();
            if parser.push_bytes(buf, &tx) == StdoutEnd::Closed {
                task.closed = true;
            }
            return Ok(());
        }
        if let Some((path, w)) = task.spool.as_mut() {
            w.write_all(buf).map_err(|e| {
                self.error(format!(
                    "cannot spool task input to {}: {e}",
                    path.display()
                ))
            })?;
        }
        if let Some(a) = task.attempt.as_mut()
            && !a.broken
            && let Some(stdin) = a.stdin.as_mut()
            && stdin.write_all(buf).is_err()
        {
            // The command stopped reading (it may have exited on purpose,
            // like `head`); its exit status decides.
            a.broken = true;
        }
        Ok(())
    }

    /// Waits for the task's command, retrying it from the spooled input
    /// while attempts are left; passes on the output of the attempt that
    /// succeeded.
    fn finish(&self, mut task: TaskRun) -> DfResult<Flow> {
        if let Some(mut parser) = task.identity.take() {
            let tx = self.tx.clone();
            if parser.flush(&tx) == StdoutEnd::Closed || task.closed {
                return Ok(Flow::Closed);
            }
            self.count(&task, parser.records, &ErrSummary::default());
            return Ok(Flow::Continue);
        }
        if let Some((path, mut w)) = task.spool.take() {
            w.flush().map_err(|e| {
                self.error(format!(
                    "cannot spool task input to {}: {e}",
                    path.display()
                ))
            })?;
            task.spool = Some((path, w));
        }
        loop {
            let Some(attempt) = task.attempt.take() else {
                return Err(self.error("task has no attempt".into()));
            };
            let ended = attempt.end();
            let ended = match ended {
                Ok(e) => e,
                Err(e) => return Err(self.error(format!("task {}: {e}", task.task_id))),
            };
            if ended.stdout == StdoutEnd::Closed {
                return Ok(Flow::Closed);
            }
            let ok = ended.status.success() && !matches!(ended.stdout, StdoutEnd::Failed(_));
            if ok {
                let mut records = match ended.stdout {
                    StdoutEnd::Streamed(n) => n,
                    _ => 0,
                };
                if let Some(path) = &ended.out_spool {
                    let mut parser = LineParser::new(&self.op);
                    let file = File::open(path).map_err(|e| {
                        self.error(format!(
                            "cannot read spooled output {}: {e}",
                            path.display()
                        ))
                    })?;
                    match parser.stream(file, &self.tx) {
                        StdoutEnd::Closed => return Ok(Flow::Closed),
                        StdoutEnd::Failed(e) => {
                            return Err(self.error(format!("reading spooled output: {e}")));
                        }
                        StdoutEnd::Streamed(n) => records = n,
                        StdoutEnd::Spooled => {}
                    }
                }
                let _ = std::fs::remove_dir_all(&ended.dir);
                if let Some((path, _)) = &task.spool {
                    let _ = std::fs::remove_file(path);
                }
                self.count(&task, records, &ended.stderr);
                return Ok(Flow::Continue);
            }
            let _ = std::fs::remove_dir_all(&ended.dir);
            task.attempt_no += 1;
            let spool = task.spool.as_ref().map(|(p, _)| p.clone());
            if task.attempt_no < task.max_attempts
                && let Some(path) = spool
            {
                let input = File::open(&path).map_err(|e| {
                    self.error(format!("cannot replay spool {}: {e}", path.display()))
                })?;
                task.attempt = Some(self.spawn(&task, Stdio::from(input))?);
                continue;
            }
            if let Some((path, _)) = &task.spool {
                let _ = std::fs::remove_file(path);
            }
            return Err(self.error(failure_message(
                &task,
                self.op.command.as_deref().unwrap_or(""),
                &ended,
            )));
        }
    }

    fn count(&self, task: &TaskRun, records_out: u64, stderr: &ErrSummary) {
        let counters = &self.op.setup.counters;
        let step = self.op.step_index;
        let (i, o) = match self.op.role {
            PipeRole::Map => ("Map input records", "Map output records"),
            PipeRole::Combine => ("Combine input records", "Combine output records"),
            PipeRole::Reduce => ("Reduce input records", "Reduce output records"),
        };
        let group = "Map-Reduce Framework";
        counters.add(step, group, i, task.records_in as i64);
        counters.add(step, group, o, records_out as i64);
        for ((g, c), n) in &stderr.counters {
            counters.add(step, g, c, *n);
        }
        if let Some(s) = &stderr.status {
            counters.set_status(&task.task_id, s);
        }
    }
}

fn failure_message(task: &TaskRun, command: &str, ended: &Ended) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (ended.status.code(), ended.status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    };
    let mut msg = format!(
        "task {} failed {} time{}: command `{command}` {how}",
        task.task_id,
        task.attempt_no,
        if task.attempt_no == 1 { "" } else { "s" },
    );
    if let Some(t) = &task.tag {
        msg.push_str(&format!(
            " (input {} bytes {}..{})",
            t.path.display(),
            t.start,
            t.start + t.length
        ));
    }
    if let StdoutEnd::Failed(e) = &ended.stdout {
        msg.push_str(&format!("; reading its output failed: {e}"));
    }
    if ended.stderr.tail.is_empty() {
        msg.push_str("; it wrote nothing to stderr");
    } else {
        msg.push_str("\nlast lines of its stderr:");
        for line in &ended.stderr.tail {
            msg.push_str("\n  ");
            msg.push_str(line);
        }
    }
    msg
}

/// Puts a side file into a task directory under `name`.
fn link_side_file(file: &Path, name: &str, dir: &Path) -> std::io::Result<()> {
    let target = std::fs::canonicalize(file)?;
    let link = dir.join(name);
    if link.exists() {
        return Ok(());
    }
    std::os::unix::fs::symlink(&target, &link)
}

/// One task (all its attempts).
struct TaskRun {
    task_id: String,
    core: String,
    kind: char,
    number: usize,
    tag: Option<SplitTag>,
    env: Vec<(String, String)>,
    spool: Option<(PathBuf, BufWriter<File>)>,
    attempt: Option<Attempt>,
    identity: Option<LineParser>,
    attempt_no: usize,
    max_attempts: usize,
    records_in: u64,
    closed: bool,
}

/// One running attempt of a task's command.
struct Attempt {
    id: String,
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    broken: bool,
    stdout: Option<JoinHandle<StdoutEnd>>,
    stderr: Option<JoinHandle<ErrSummary>>,
    dir: PathBuf,
    out_spool: Option<PathBuf>,
}

/// How an attempt ended.
struct Ended {
    status: ExitStatus,
    stdout: StdoutEnd,
    stderr: ErrSummary,
    dir: PathBuf,
    out_spool: Option<PathBuf>,
}

impl Attempt {
    fn end(mut self) -> Result<Ended, String> {
        if let Some(mut stdin) = self.stdin.take() {
            // A command that stopped reading makes this fail; its status tells.
            let _ = stdin.flush();
        }
        let stdout = match self.stdout.take().map(JoinHandle::join) {
            Some(Ok(end)) => end,
            Some(Err(_)) => StdoutEnd::Failed("output reader panicked".into()),
            None => StdoutEnd::Failed("no output reader".into()),
        };
        if stdout == StdoutEnd::Closed {
            let _ = self.child.kill();
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for {}: {e}", self.id))?;
        let stderr = match self.stderr.take().map(JoinHandle::join) {
            Some(Ok(s)) => s,
            _ => ErrSummary::default(),
        };
        Ok(Ended {
            status,
            stdout,
            stderr,
            dir: self.dir.clone(),
            out_spool: self.out_spool.clone(),
        })
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // An attempt abandoned by an error elsewhere must not outlive the job.
        if self.stdout.is_some() {
            self.stdin.take();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How reading a command's stdout ended.
#[derive(Debug, PartialEq, Eq)]
enum StdoutEnd {
    /// All lines parsed and sent on (this many).
    Streamed(u64),
    /// Copied to the spool file.
    Spooled,
    /// Downstream stopped reading; the rest was discarded.
    Closed,
    /// Reading failed.
    Failed(String),
}

/// What a command wrote to stderr: reporter counters, the last status, the tail.
#[derive(Debug, Default)]
struct ErrSummary {
    counters: BTreeMap<(String, String), i64>,
    status: Option<String>,
    tail: VecDeque<String>,
}

fn read_stderr(stderr: impl Read) -> ErrSummary {
    let mut summary = ErrSummary::default();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(rest) = text.strip_prefix("reporter:counter:") {
            let mut parts = rest.splitn(2, ',');
            let group = parts.next().unwrap_or_default();
            if let Some((counter, amount)) = parts.next().and_then(|r| r.rsplit_once(','))
                && let Ok(n) = amount.trim().parse::<i64>()
            {
                *summary
                    .counters
                    .entry((group.to_string(), counter.to_string()))
                    .or_default() += n;
                continue;
            }
        } else if let Some(status) = text.strip_prefix("reporter:status:") {
            summary.status = Some(status.to_string());
            continue;
        }
        let mut shown: String = text.chars().take(1000).collect();
        if shown.len() < text.len() {
            shown.push_str(" ...");
        }
        summary.tail.push_back(shown);
        if summary.tail.len() > STDERR_TAIL {
            summary.tail.pop_front();
        }
    }
    summary
}

/// A column whose values a task reads as bytes.
enum TextColumn<'a> {
    Binary(&'a arrow::array::BinaryArray),
    LargeBinary(&'a arrow::array::LargeBinaryArray),
    BinaryView(&'a arrow::array::BinaryViewArray),
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
}

impl<'a> TextColumn<'a> {
    /// The column as bytes; any other type is an error naming the column
    /// (a task must never be fed empty lines in its place).
    fn of(a: &'a ArrayRef, what: &str) -> Result<Self, String> {
        Ok(match a.data_type() {
            DataType::Binary => Self::Binary(a.as_binary()),
            DataType::LargeBinary => Self::LargeBinary(a.as_binary()),
            DataType::BinaryView => Self::BinaryView(a.as_binary_view()),
            DataType::Utf8 => Self::Utf8(a.as_string()),
            DataType::LargeUtf8 => Self::LargeUtf8(a.as_string()),
            DataType::Utf8View => Self::Utf8View(a.as_string_view()),
            other => {
                return Err(format!(
                    "the {what} written to the command must be text or bytes, not {other} \
                     (convert it to a string first)"
                ));
            }
        })
    }

    fn bytes(&self, row: usize) -> &'a [u8] {
        match self {
            Self::Binary(a) => a.value(row),
            Self::LargeBinary(a) => a.value(row),
            Self::BinaryView(a) => a.value(row),
            Self::Utf8(a) => a.value(row).as_bytes(),
            Self::LargeUtf8(a) => a.value(row).as_bytes(),
            Self::Utf8View(a) => a.value(row).as_bytes(),
        }
    }
}

/// Writes each row of `batch` as one line; returns the row count.
fn write_lines(input: &PipeInput, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<usize, String> {
    let rows = batch.num_rows();
    match input {
        PipeInput::Lines => {
            let col = TextColumn::of(batch.column(0), "lines")?;
            for row in 0..rows {
                out.extend_from_slice(col.bytes(row));
                out.push(b'\n');
            }
        }
        PipeInput::KeyValue(spec) => {
            let key = batch
                .column_by_name(KEY)
                .ok_or_else(|| "no key column".to_string())?;
            let value = batch
                .column_by_name(VALUE)
                .ok_or_else(|| "no value column".to_string())?;
            let (keys, values) = (
                TextColumn::of(key, "keys")?,
                TextColumn::of(value, "values")?,
            );
            for row in 0..rows {
                out.extend_from_slice(keys.bytes(row));
                if value.is_valid(row) {
                    out.extend_from_slice(&spec.separator);
                    out.extend_from_slice(values.bytes(row));
                }
                out.push(b'\n');
            }
        }
    }
    Ok(rows)
}

/// Batches gathered into one sorted run for a combiner.
#[derive(Default)]
struct RunBuffer {
    batches: Vec<RecordBatch>,
    bytes: usize,
}

impl RunBuffer {
    fn push(&mut self, batch: RecordBatch) {
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
    }

    fn take_sorted(&mut self, input: &PipeInput) -> DfResult<RecordBatch> {
        let batches = std::mem::take(&mut self.batches);
        self.bytes = 0;
        let Some(first) = batches.first() else {
            return Err(DataFusionError::Internal("empty run".into()));
        };
        let schema = first.schema();
        let all = arrow::compute::concat_batches(&schema, &batches)?;
        let sort_name = match input {
            PipeInput::KeyValue(spec) if spec.compare.is_some() => SORT,
            _ => KEY,
        };
        let Some(column) = all.column_by_name(sort_name) else {
            return Ok(all);
        };
        let options = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let indices = sort_to_indices(column, Some(options), None)?;
        Ok(take_record_batch(&all, &indices)?)
    }
}

/// Turns a command's output lines into rows of the op's schema.
struct LineParser {
    output: PipeOutput,
    schema: SchemaRef,
    batch_rows: usize,
    key: BinaryBuilder,
    value: BinaryBuilder,
    part: BinaryBuilder,
    sort: BinaryBuilder,
    scratch: Vec<u8>,
    rows: usize,
    bytes: usize,
    records: u64,
    carry: Vec<u8>,
}

impl LineParser {
    fn new(op: &OpView) -> Self {
        Self {
            output: op.output.clone(),
            schema: op.schema.clone(),
            batch_rows: op.batch_rows,
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            part: BinaryBuilder::new(),
            sort: BinaryBuilder::new(),
            scratch: Vec::new(),
            rows: 0,
            bytes: 0,
            records: 0,
            carry: Vec::new(),
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.records += 1;
        self.rows += 1;
        self.bytes += line.len();
        match &self.output {
            PipeOutput::Lines => self.value.append_value(line),
            PipeOutput::KeyValue(spec) => {
                let (key, value) = spec.split(line);
                self.key.append_value(key);
                match value {
                    Some(v) => self.value.append_value(v),
                    None => self.value.append_null(),
                }
                self.scratch.clear();
                if spec.partition_bytes(key, &mut self.scratch) {
                    self.part.append_value(&self.scratch);
                }
                self.scratch.clear();
                if spec.sort_bytes(key, &mut self.scratch) {
                    self.sort.append_value(&self.scratch);
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.rows >= self.batch_rows || self.bytes >= BATCH_BYTES
    }

    fn batch(&mut self) -> DfResult<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        self.rows = 0;
        self.bytes = 0;
        let columns: Vec<ArrayRef> = match &self.output {
            PipeOutput::Lines => vec![Arc::new(self.value.finish())],
            PipeOutput::KeyValue(spec) => {
                let mut c: Vec<ArrayRef> =
                    vec![Arc::new(self.key.finish()), Arc::new(self.value.finish())];
                if spec.partition.is_some() {
                    c.push(Arc::new(self.part.finish()));
                }
                if spec.compare.is_some() {
                    c.push(Arc::new(self.sort.finish()));
                }
                c
            }
        };
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    fn send(&mut self, tx: &Sender<DfResult<RecordBatch>>) -> StdoutEnd {
        match self.batch() {
            Ok(Some(b)) => {
                if tx.blocking_send(Ok(b)).is_err() {
                    return StdoutEnd::Closed;
                }
                StdoutEnd::Streamed(self.records)
            }
            Ok(None) => StdoutEnd::Streamed(self.records),
            Err(e) => StdoutEnd::Failed(e.to_string()),
        }
    }

    /// Parses complete lines of `bytes` (keeping a partial last line).
    fn push_bytes(&mut self, bytes: &[u8], tx: &Sender<DfResult<RecordBatch>>) -> StdoutEnd {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            if self.carry.is_empty() {
                self.line(&bytes[start..nl]);
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(&bytes[start..nl]);
                self.line(&carry);
                carry.clear();
                self.carry = carry;
            }
            start = nl + 1;
            if self.full() {
                let end = self.send(tx);
                if !matches!(end, StdoutEnd::Streamed(_)) {
                    return end;
                }
            }
        }
        self.carry.extend_from_slice(&bytes[start..]);
        StdoutEnd::Streamed(self.records)
    }

    /// Sends what is left, including a last line without a newline.
    fn flush(&mut self, tx: &Sender<DfResult<RecordBatch>>) -> StdoutEnd {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.line(&carry);
        }
        self.send(tx)
    }

    /// Parses everything `reader` yields and sends it on. When downstream
    /// stops reading, the rest is drained (so the command never blocks on a
    /// full pipe) and `Closed` is returned.
    fn stream(&mut self, reader: impl Read, tx: &Sender<DfResult<RecordBatch>>) -> StdoutEnd {
        let mut reader = BufReader::with_capacity(1 << 17, reader);
        loop {
            let n = match reader.fill_buf() {
                Ok([]) => break,
                Ok(buf) => {
                    let end = self.push_bytes(buf, tx);
                    let n = buf.len();
                    if end == StdoutEnd::Closed {
                        reader.consume(n);
                        let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        return StdoutEnd::Closed;
                    }
                    if let StdoutEnd::Failed(e) = end {
                        return StdoutEnd::Failed(e);
                    }
                    n
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return StdoutEnd::Failed(e.to_string()),
            };
            reader.consume(n);
        }
        self.flush(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_and_bytes_become_lines() {
        let batch = |a: ArrayRef| RecordBatch::try_from_iter([("value", a)]).unwrap();
        let mut out = Vec::new();
        let text: ArrayRef = Arc::new(arrow::array::StringViewArray::from(vec!["a", "b"]));
        assert_eq!(
            write_lines(&PipeInput::Lines, &batch(text), &mut out),
            Ok(2)
        );
        assert_eq!(out, b"a\nb\n");
        let numbers: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
        let err = write_lines(&PipeInput::Lines, &batch(numbers), &mut Vec::new()).unwrap_err();
        assert!(err.contains("must be text or bytes, not Int64"), "{err}");
    }
}
