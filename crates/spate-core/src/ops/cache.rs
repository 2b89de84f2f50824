//! Caching (`Dataset::cache` / `persist`): the first job that computes a
//! cached dataset keeps its batches, and later jobs scan them instead of
//! computing them again.
//!
//! `CacheFillOp` passes its input on unchanged and keeps a copy of every
//! batch of every partition. The copy counts against the context's memory
//! budget (a reservation that lives as long as the cache); what does not
//! fit is written to a spill file (`MemoryAndDisk`), or makes the cache give
//! up (`MemoryOnly`: later jobs compute the data again, as Spark does for
//! partitions that do not fit). The cache is published only when every
//! partition of one job ran to its end: a job that stopped early (`take`)
//! or failed leaves it empty. [`CachedExec`] serves a published cache.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SpillFile;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use parking_lot::Mutex;

use super::stateful_stream;
use crate::node::PartitionOp;

/// Where a cached dataset is kept (Spark's `StorageLevel`, the levels that
/// mean something in one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageLevel {
    /// In memory, within the budget; if it does not fit, it is not kept
    /// and every job computes it again.
    MemoryOnly,
    /// In memory within the budget, the rest in spill files (`cache()`'s
    /// level, as for Spark's Datasets).
    MemoryAndDisk,
    /// In spill files only.
    DiskOnly,
}

/// One partition of a cache.
struct CachedPart {
    batches: Vec<RecordBatch>,
    spill: Option<Arc<dyn SpillFile>>,
    /// Holds the budget for `batches` as long as the cache lives.
    _reservation: MemoryReservation,
}

/// A published cache: every partition of one run.
pub struct Cached {
    schema: SchemaRef,
    parts: Vec<CachedPart>,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cached({} partitions)", self.parts.len())
    }
}

impl Cached {
    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Bytes held in memory and in spill files.
    pub fn sizes(&self) -> (usize, u64) {
        let memory = self
            .parts
            .iter()
            .flat_map(|p| &p.batches)
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let disk = self
            .parts
            .iter()
            .filter_map(|p| p.spill.as_ref().and_then(|s| s.size()))
            .sum();
        (memory, disk)
    }
}

/// The cache of one dataset: empty until a run publishes it.
pub struct CacheSlot {
    step: String,
    level: StorageLevel,
    cached: Mutex<Option<Arc<Cached>>>,
}

impl fmt::Debug for CacheSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheSlot({}, {:?})", self.step, self.level)
    }
}

impl CacheSlot {
    /// An empty cache for the step `step`.
    pub fn new(step: String, level: StorageLevel) -> Self {
        Self {
            step,
            level,
            cached: Mutex::new(None),
        }
    }

    /// The step that fills and reads the cache.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The level asked for.
    pub fn level(&self) -> StorageLevel {
        self.level
    }

    /// The published cache, if a run has filled it.
    pub fn get(&self) -> Option<Arc<Cached>> {
        self.cached.lock().clone()
    }

    /// Drops the cache: memory goes back to the budget, spill files are
    /// deleted (once no running job still reads them).
    pub fn clear(&self) {
        *self.cached.lock() = None;
    }
}

/// One run's filling of a cache.
struct Fill {
    slot: Arc<CacheSlot>,
    schema: SchemaRef,
    parts: Mutex<BTreeMap<usize, CachedPart>>,
    expected: AtomicUsize,
    abandoned: AtomicBool,
}

impl Fill {
    fn deposit(&self, partition: usize, part: CachedPart) {
        let mut parts = self.parts.lock();
        parts.insert(partition, part);
        let expected = self.expected.load(Ordering::Acquire);
        if parts.len() == expected && !self.abandoned.load(Ordering::Acquire) {
            let parts = std::mem::take(&mut *parts).into_values().collect();
            let cached = Cached {
                schema: self.schema.clone(),
                parts,
            };
            let mut slot = self.slot.cached.lock();
            if slot.is_none() {
                *slot = Some(Arc::new(cached));
            }
        }
    }

    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        self.parts.lock().clear();
    }
}

/// Passes its input on and fills a cache with it.
pub struct CacheFillOp {
    step: String,
    fill: Arc<Fill>,
}

impl fmt::Debug for CacheFillOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheFillOp({})", self.step)
    }
}

impl CacheFillOp {
    /// Fills `slot` with rows of `schema`.
    pub fn new(slot: Arc<CacheSlot>, schema: SchemaRef) -> Self {
        Self {
            step: slot.step.clone(),
            fill: Arc::new(Fill {
                slot,
                schema,
                parts: Mutex::new(BTreeMap::new()),
                expected: AtomicUsize::new(usize::MAX),
                abandoned: AtomicBool::new(false),
            }),
        }
    }
}

/// An Arrow IPC stream into a spill file.
type SpillStream = StreamWriter<Box<dyn datafusion::execution::SpillWriter>>;

/// A partition's copy while it is being made.
struct Filling {
    batches: Vec<RecordBatch>,
    reservation: MemoryReservation,
    spill: Option<(Arc<dyn SpillFile>, SpillStream)>,
    context: Arc<TaskContext>,
    /// The cache gave up (`MemoryOnly` out of budget): only pass on.
    off: bool,
    /// Most bytes this partition's copy may hold in memory: caches take at
    /// most half the budget, so the operators of the jobs that fill and read
    /// them keep the other half.
    cap: usize,
}

fn io_err(step: &str, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!(
        "step '{step}': writing the cache's spill file: {e}"
    ))
}

impl Filling {
    fn keep(&mut self, step: &str, level: StorageLevel, batch: &RecordBatch) -> DfResult<bool> {
        if self.off {
            return Ok(true);
        }
        let size = batch.get_array_memory_size();
        // Once a partition spills, the rest of it follows into the file, so
        // its batches are served back in their order (memory, then file).
        if level != StorageLevel::DiskOnly
            && self.spill.is_none()
            && self.reservation.size() + size <= self.cap
            && self.reservation.try_grow(size).is_ok()
        {
            self.batches.push(batch.clone());
            return Ok(true);
        }
        if level == StorageLevel::MemoryOnly {
            self.off = true;
            self.batches.clear();
            self.reservation.free();
            return Ok(false);
        }
        if self.spill.is_none() {
            let file = self
                .context
                .runtime_env()
                .disk_manager
                .create_tmp_file(&format!("cache of step {step}"))?;
            let writer = file.open_writer()?;
            let writer =
                StreamWriter::try_new(writer, &batch.schema()).map_err(|e| io_err(step, e))?;
            self.spill = Some((file, writer));
        }
        if let Some((_, writer)) = &mut self.spill {
            writer.write(batch).map_err(|e| io_err(step, e))?;
        }
        Ok(true)
    }

    fn finish(&mut self, step: &str) -> DfResult<Option<Arc<dyn SpillFile>>> {
        match self.spill.take() {
            Some((file, mut writer)) => {
                writer.finish().map_err(|e| io_err(step, e))?;
                let mut inner = writer.into_inner().map_err(|e| io_err(step, e))?;
                inner.flush().map_err(|e| io_err(step, e))?;
                inner.finish()?;
                Ok(Some(file))
            }
            None => Ok(None),
        }
    }
}

impl PartitionOp for CacheFillOp {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        format!("cache ({:?})", self.fill.slot.level)
    }

    fn schema(&self) -> SchemaRef {
        self.fill.schema.clone()
    }

    fn input_partitions(&self, count: usize) {
        self.fill.expected.store(count, Ordering::Release);
    }

    fn run(
        &self,
        input: SendableRecordBatchStream,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let reservation = MemoryConsumer::new(format!("{}[{partition}]", self.step))
            .register(context.memory_pool());
        let cap = match context.memory_pool().memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(limit) => {
                limit / (2 * context.session_config().target_partitions().max(1))
            }
            _ => usize::MAX,
        };
        let filling = Filling {
            batches: Vec::new(),
            reservation,
            spill: None,
            context,
            off: false,
            cap,
        };
        let (fill, fill2) = (self.fill.clone(), self.fill.clone());
        let (step, step2) = (self.step.clone(), self.step.clone());
        let level = self.fill.slot.level;
        Ok(stateful_stream(
            self.schema(),
            input,
            filling,
            Box::new(move |st: &mut Filling, batch| {
                if !st.keep(&step, level, &batch)? {
                    fill.abandon();
                }
                Ok(vec![batch])
            }),
            Box::new(move |st: &mut Filling| {
                if st.off {
                    return Ok(Vec::new());
                }
                let spill = st.finish(&step2)?;
                let part = CachedPart {
                    batches: std::mem::take(&mut st.batches),
                    spill,
                    _reservation: st.reservation.take(),
                };
                fill2.deposit(partition, part);
                Ok(Vec::new())
            }),
        ))
    }
}

/// Serves a published cache: each partition's batches from memory, then
/// from its spill file.
#[derive(Debug)]
pub struct CachedExec {
    step: String,
    cached: Arc<Cached>,
    properties: Arc<datafusion::physical_plan::PlanProperties>,
}

impl CachedExec {
    /// Scans `cached`, the cache of step `step`.
    pub fn new(step: String, cached: Arc<Cached>) -> Self {
        use datafusion::physical_expr::EquivalenceProperties;
        use datafusion::physical_plan::Partitioning;
        use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
        let properties = Arc::new(datafusion::physical_plan::PlanProperties::new(
            EquivalenceProperties::new(cached.schema.clone()),
            Partitioning::UnknownPartitioning(cached.parts.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            step,
            cached,
            properties,
        }
    }
}

impl datafusion::physical_plan::DisplayAs for CachedExec {
    fn fmt_as(
        &self,
        _t: datafusion::physical_plan::DisplayFormatType,
        f: &mut fmt::Formatter,
    ) -> fmt::Result {
        let (memory, disk) = self.cached.sizes();
        write!(
            f,
            "SpateCachedExec: step={} partitions={} memory={memory} disk={disk}",
            self.step,
            self.cached.parts.len()
        )
    }
}

impl datafusion::physical_plan::ExecutionPlan for CachedExec {
    fn name(&self) -> &str {
        "SpateCachedExec"
    }
    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Ok(self)
    }
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.cached.schema.clone();
        let Some(part) = self.cached.parts.get(partition) else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let memory: Vec<DfResult<RecordBatch>> = part.batches.iter().cloned().map(Ok).collect();
        let spilled: Box<dyn Iterator<Item = DfResult<RecordBatch>> + Send> = match &part.spill {
            Some(file) => {
                let step = self.step.clone();
                let path = file.path().ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "step '{step}': the cache's spill file has no local path"
                    ))
                })?;
                let reader = std::fs::File::open(path)
                    .map_err(|e| {
                        DataFusionError::Execution(format!(
                            "step '{step}': reading the cache's spill file {}: {e}",
                            path.display()
                        ))
                    })
                    .and_then(|f| {
                        StreamReader::try_new(std::io::BufReader::new(f), None)
                            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
                    })?;
                // The file lives while this stream does.
                let keep = file.clone();
                Box::new(reader.map(move |b| {
                    let _ = &keep;
                    b.map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
                }))
            }
            None => Box::new(std::iter::empty()),
        };
        let batches = futures::stream::iter(memory.into_iter().chain(spilled));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
