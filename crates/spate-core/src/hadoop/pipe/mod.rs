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

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use serde::{Deserialize, Serialize};

use super::Counters;
use super::keys::KeySpec;
use crate::node::{InputShape, PartitionOp};

mod driver;
mod lines;
mod ship;
mod task;

pub use ship::{MAX_SHIPPED_BYTES, PortablePipe, set_local_root, sweep_local_root};

use driver::{Driver, OpView};

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
/// The longest line a task may write to stdout (less under a memory limit:
/// a quarter of one partition's share, at least 1 MiB); a longer one — or
/// output that never ends a line — fails the task rather than grow without
/// bound.
const MAX_LINE: usize = 256 << 20;
/// Bytes of one stderr line kept (reporter lines are short; the rest of a
/// longer line is skipped).
const STDERR_LINE: usize = 4096;

/// Which kind of task a pipe runs (it decides the task ids and environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipeRole {
    /// A mapper: one task per input split when the input is tagged with splits.
    Map,
    /// A combiner: one task per map partition, fed sorted runs.
    Combine,
    /// A reducer: one task per reduce partition, fed rows sorted by key.
    Reduce,
}

/// How rows reach the command as lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipeInput {
    /// One line per row of a single binary column (plus a split tag column).
    Lines,
    /// `key`, `value` (and `part`, `sort`) columns as a [`PipeOutput::KeyValue`]
    /// with this spec made them, joined by its separator into lines (no
    /// separator when `value` is null).
    KeyValue(KeySpec),
}

/// How the command's output lines become rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Processes of one step kind (mapper, combiner, reducer) that may run
    /// at once: the job's thread count, whatever the partition count
    /// (`-numReduceTasks 200` runs 200 reduce tasks, this many at a time).
    pub task_slots: usize,
}

/// Slots for a step's task processes: a task takes one before its process
/// starts and gives it back when it is done (after any retries).
#[derive(Debug)]
struct Slots {
    free: parking_lot::Mutex<usize>,
    freed: parking_lot::Condvar,
}

/// A taken slot; dropping it gives it back.
struct Slot(Arc<Slots>);

impl Slots {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            free: parking_lot::Mutex::new(n.max(1)),
            freed: parking_lot::Condvar::new(),
        })
    }

    /// A slot if one is free now.
    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut free = self.free.lock();
        (*free > 0).then(|| {
            *free -= 1;
            Slot(self.clone())
        })
    }

    /// A slot, waiting for one to be given back; `None` once `cancelled`
    /// says the job no longer wants the task (its output is closed: the
    /// job failed or downstream stopped reading).
    fn take(self: &Arc<Self>, cancelled: impl Fn() -> bool) -> Option<Slot> {
        let mut free = self.free.lock();
        while *free == 0 {
            if cancelled() {
                return None;
            }
            self.freed
                .wait_for(&mut free, std::time::Duration::from_millis(50));
        }
        *free -= 1;
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.freed.notify_one();
    }
}

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskProgram {
    /// Nothing: rows are only re-keyed, no process is started (Hadoop's
    /// identity mapper and reducer).
    Identity,
    /// Hadoop's Aggregate package, in-process (see [`super::aggregate`]);
    /// combiner and reducer only.
    Aggregate,
    /// A shell command (`sh -c`), one process per task attempt.
    Command(String),
}

impl TaskProgram {
    /// The command, if the task runs one.
    pub fn command(&self) -> Option<&str> {
        match self {
            TaskProgram::Command(c) => Some(c),
            _ => None,
        }
    }
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
    program: TaskProgram,
    role: PipeRole,
    input: PipeInput,
    output: PipeOutput,
    /// Reducer count (reduce role only).
    reducers: usize,
    setup: Arc<TaskSetup>,
    schema: SchemaRef,
    slots: Arc<Slots>,
    /// The side files of a step shipped to this process (a cluster's).
    shipment: Option<ship::Shipment>,
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
        program: TaskProgram,
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
                program,
                role,
                input,
                output,
                reducers: reducers.max(1),
                slots: Slots::new(setup.task_slots),
                setup,
                schema,
                shipment: None,
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
        match &self.spec.program {
            TaskProgram::Command(c) => format!("{what} `{c}`"),
            TaskProgram::Identity => format!("identity {what}"),
            TaskProgram::Aggregate => format!("aggregate {what}"),
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

    fn counts(&self) -> Vec<(String, u64)> {
        // Only a step shipped to this process has counters of its own; a
        // local job's are the job's, read by its driver.
        if self.spec.shipment.is_none() {
            return Vec::new();
        }
        self.spec
            .setup
            .counters
            .as_counts(&self.spec.setup.job_id, self.spec.step_index)
    }

    fn portable(&self) -> DfResult<Option<crate::codec::PortableOp>> {
        Ok(Some(crate::codec::PortableOp::Pipe(Box::new(
            self.to_portable()?,
        ))))
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if let Some(shipment) = &self.spec.shipment {
            shipment.ensure()?;
        }
        let batch_rows = context.session_config().batch_size().max(1);
        let run_bytes =
            crate::ops::memory_share(&context).map_or(RUN_BYTES, |s| s.clamp(1 << 20, RUN_BYTES));
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.spec.schema.clone(), 2);
        let tx = builder.tx();
        let handle = tokio::runtime::Handle::current();
        let driver = Driver {
            op: OpView {
                spec: self.spec.clone(),
                batch_rows,
                run_bytes,
                max_line: crate::ops::memory_share(&context)
                    .map_or(MAX_LINE, |s| s.clamp(1 << 20, MAX_LINE)),
            },
            partition,
            tx,
        };
        builder.spawn_blocking(move || driver.drive(input, handle));
        Ok(builder.build())
    }
}
