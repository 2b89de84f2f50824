//! The driver of one partition: starts a task per input split (or one per
//! partition), feeds it rows as lines, retries failed attempts from the
//! spooled input and passes on the output of the attempt that succeeded.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use spate_io::source::{SPLIT_COLUMN, SplitTag};
use tokio::sync::mpsc::Sender;

use super::lines::{LineParser, RunBuffer, TextColumn, write_lines};
use super::task::{
    Attempt, ErrSummary, StdoutEnd, TaskRun, failure_message, link_side_file, read_stderr,
};
use super::{KEY, PipeOutput, PipeRole, Slot, Spec, TaskProgram, VALUE};
use crate::error::StepError;
use crate::hadoop::aggregate::{AggregateRole, AggregateTask};

/// What the driver thread needs of the op.
pub(super) struct OpView {
    pub(super) spec: Arc<Spec>,
    pub(super) batch_rows: usize,
    pub(super) run_bytes: usize,
    /// The longest output line a task may write.
    pub(super) max_line: usize,
}

impl std::ops::Deref for OpView {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        &self.spec
    }
}

/// Whether to go on after a task: downstream may have stopped reading.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Closed,
}

/// Runs the tasks of one partition on a blocking thread.
pub(super) struct Driver {
    pub(super) op: OpView,
    pub(super) partition: usize,
    pub(super) tx: Sender<DfResult<RecordBatch>>,
}

impl Driver {
    pub(super) fn drive(
        self,
        mut input: SendableRecordBatchStream,
        handle: tokio::runtime::Handle,
    ) -> DfResult<()> {
        let mut task: Option<TaskRun> = None;
        // A reduce task starts at once, so its command's start-up (an
        // interpreter, imports) overlaps the map phase instead of following
        // it — when a process slot is free; otherwise it starts when its
        // input is sorted. Every reduce task runs, even one with no input,
        // as in Hadoop.
        if self.op.role == PipeRole::Reduce
            && let Some(slot) = self.free_slot()
        {
            task = Some(self.start(None, slot)?);
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
                let Some(slot) = self.slot() else {
                    return Ok(());
                };
                task = Some(self.start(tag, slot)?);
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
        if task.is_none() && self.op.role == PipeRole::Reduce {
            let Some(slot) = self.slot() else {
                return Ok(());
            };
            task = Some(self.start(None, slot)?);
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

    pub(super) fn error(&self, message: String) -> DataFusionError {
        StepError {
            step: self.op.step.clone(),
            message,
        }
        .into()
    }

    pub(super) fn split_tag(&self, batch: &RecordBatch) -> DfResult<Option<SplitTag>> {
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
    pub(super) fn local_name(&self, id: &str) -> String {
        let role = match self.op.role {
            PipeRole::Map => "map",
            PipeRole::Combine => "combine",
            PipeRole::Reduce => "reduce",
        };
        format!("step{}-{role}-{id}", self.op.step_index + 1)
    }

    pub(super) fn task_kind(&self) -> char {
        match self.op.role {
            PipeRole::Map | PipeRole::Combine => 'm',
            PipeRole::Reduce => 'r',
        }
    }

    pub(super) fn max_attempts(&self) -> usize {
        match self.op.role {
            PipeRole::Reduce => self.op.setup.reduce_attempts,
            _ => self.op.setup.map_attempts,
        }
        .max(1)
    }

    /// A process slot now, if the task runs a process and one is free.
    fn free_slot(&self) -> Option<Option<Slot>> {
        match self.op.program {
            TaskProgram::Command(_) => self.op.slots.try_take().map(Some),
            _ => Some(None),
        }
    }

    /// A process slot if the task runs a process, waiting for one: the
    /// outer `None` when the output closed meanwhile (nothing more to run).
    fn slot(&self) -> Option<Option<Slot>> {
        if self.tx.is_closed() {
            return None;
        }
        match self.op.program {
            TaskProgram::Command(_) => self.op.slots.take(|| self.tx.is_closed()).map(Some),
            _ => Some(None),
        }
    }

    pub(super) fn start(&self, tag: Option<SplitTag>, slot: Option<Slot>) -> DfResult<TaskRun> {
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
            aggregate: None,
            _slot: slot,
            attempt_no: 0,
            max_attempts,
            records_in: 0,
            closed: false,
        };
        match &self.op.program {
            TaskProgram::Identity => {
                task.identity = Some(LineParser::new(&self.op));
            }
            TaskProgram::Aggregate => {
                let role = match self.op.role {
                    PipeRole::Reduce => AggregateRole::Reduce,
                    _ => AggregateRole::Combine,
                };
                let separator = match &self.op.output {
                    PipeOutput::KeyValue(spec) => spec.separator.clone(),
                    PipeOutput::Lines => b"\t".to_vec(),
                };
                task.identity = Some(LineParser::new(&self.op));
                task.aggregate = Some(AggregateTask::new(role, &separator));
            }
            TaskProgram::Command(_) => {
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

    pub(super) fn spawn(&self, task: &TaskRun, stdin: Stdio) -> DfResult<Attempt> {
        let setup = &self.op.setup;
        let command = self.op.program.command().unwrap_or_default();
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
            .arg(command)
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
        // Beside the task directory, not in it: a side file or the task's
        // own files there must not meet the spool.
        let out_spool = (task.max_attempts > 1).then(|| {
            setup
                .work_root
                .join(format!("{}.out", self.local_name(&attempt_id)))
        });
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
    pub(super) fn feed(
        &self,
        task: &mut TaskRun,
        batch: &RecordBatch,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        buf.clear();
        if self.tx.is_closed() {
            // The job failed elsewhere or downstream stopped reading.
            task.closed = true;
            return Ok(());
        }
        if let Some(agg) = task.aggregate.as_mut() {
            task.records_in += batch.num_rows() as u64;
            let fail = |e: String| self.error(format!("task {}: {e}", task.task_id));
            aggregate_rows(agg, batch).map_err(fail)?;
            if let Some(parser) = task.identity.as_mut()
                && parser.push_bytes(&agg.out, &self.tx) == StdoutEnd::Closed
            {
                task.closed = true;
            }
            agg.out.clear();
            return Ok(());
        }
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
    pub(super) fn finish(&self, mut task: TaskRun) -> DfResult<Flow> {
        if let Some(mut parser) = task.identity.take() {
            let tx = self.tx.clone();
            if let Some(agg) = task.aggregate.as_mut() {
                agg.end_group();
                if parser.push_bytes(&agg.out, &tx) == StdoutEnd::Closed {
                    return Ok(Flow::Closed);
                }
            }
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
                if let Some(path) = &ended.out_spool {
                    let _ = std::fs::remove_file(path);
                }
                if let Some((path, _)) = &task.spool {
                    let _ = std::fs::remove_file(path);
                }
                self.count(&task, records, &ended.stderr);
                return Ok(Flow::Continue);
            }
            let _ = std::fs::remove_dir_all(&ended.dir);
            if let Some(path) = &ended.out_spool {
                let _ = std::fs::remove_file(path);
            }
            if self.tx.is_closed() {
                // Nobody wants the output any more: no retry, no error of
                // this task on top of whatever ended the job.
                if let Some((path, _)) = &task.spool {
                    let _ = std::fs::remove_file(path);
                }
                return Ok(Flow::Closed);
            }
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
            let host = self.op.shipment.as_ref().map(|_| super::ship::host_name());
            return Err(self.error(failure_message(
                &task,
                self.op.program.command().unwrap_or_default(),
                &ended,
                host.as_deref(),
            )));
        }
    }

    pub(super) fn count(&self, task: &TaskRun, records_out: u64, stderr: &ErrSummary) {
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

/// Feeds a batch of key/value rows (grouped by key) to an aggregate task.
fn aggregate_rows(agg: &mut AggregateTask, batch: &RecordBatch) -> Result<(), String> {
    let (Some(key), Some(value)) = (batch.column_by_name(KEY), batch.column_by_name(VALUE)) else {
        return Err("aggregate: input rows have no key and value columns".into());
    };
    let (keys, values) = (
        TextColumn::of(key, "keys")?,
        TextColumn::of(value, "values")?,
    );
    for row in 0..batch.num_rows() {
        let v = value.is_valid(row).then(|| values.bytes(row));
        agg.push(keys.bytes(row), v)?;
    }
    Ok(())
}
