//! Codecs: spate's plan nodes to bytes and back, for shipping plans to
//! Ballista's scheduler and executors. A node that carries closures encodes
//! its step name and what the planner needs to know of it (what it produces,
//! how it needs its input laid out), never the closures: the scheduler plans
//! and splits stages from that alone, and an executor finds the step's
//! closures in its own [`Registry`] — every process that runs a job's tasks
//! runs the job's binary, which registers the same steps under the same
//! names. Text scans and writes encode their files. Every other node (shuffle
//! reads and writes, file formats) goes to Ballista's own codecs.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::convert::{IpcSchemaEncoder, fb_to_schema};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};
use spate_io::sink::{FileFormat, WriteExec};
use spate_io::source::{
    FileRange, InputFile, LineOptions, TextSourceExec, from_split_groups, text_file_scan,
};
use spate_io::text_table::TextTable;

use crate::cluster_scans::CompressedScanExec;
use crate::cluster_writes::AttemptWriteExec;
use crate::compact::CompactExec;
use crate::context::Registry;
use crate::node::{InputShape, OpExec, OpNode, PartitionOp, TextScanNode};

/// Marks spate's encodings, so they are never mistaken for Ballista's
/// (whose decoders try protobuf first).
const MAGIC: &[u8] = b"spate1:";

/// An op that travels whole (see [`PartitionOp::portable`]).
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PortableOp {
    /// A Hadoop Streaming or mrjob step: its commands and side files.
    Pipe(Box<crate::hadoop::pipe::PortablePipe>),
}

impl PortableOp {
    fn into_op(self) -> DfResult<Arc<dyn PartitionOp>> {
        match self {
            PortableOp::Pipe(p) => Ok(Arc::new(crate::hadoop::pipe::PipeOp::from_portable(*p)?)),
        }
    }
}

/// What the planner knows of a step without its closures.
#[derive(Serialize, Deserialize)]
struct StepDecl {
    step: String,
    describe: String,
    /// The output schema as an Arrow IPC flatbuffer.
    schema: Vec<u8>,
    input_shape: InputShape,
    /// The whole op, when it has no closures.
    #[serde(default)]
    portable: Option<PortableOp>,
}

impl StepDecl {
    fn of(op: &dyn PartitionOp) -> DfResult<Self> {
        let schema = op.schema();
        let fb = IpcSchemaEncoder::new().schema_to_fb(&schema);
        Ok(Self {
            step: op.step().to_string(),
            describe: op.describe(),
            schema: fb.finished_data().to_vec(),
            input_shape: op.input_shape(),
            portable: op.portable()?,
        })
    }

    /// The op itself when it travelled whole, else the registered op of
    /// this step, else (where the step's closures are not in this process:
    /// the scheduler) its declaration.
    fn resolve(self, registry: &Registry) -> DfResult<Arc<dyn PartitionOp>> {
        if let Some(op) = self.portable {
            return op.into_op();
        }
        if let Some(op) = registry.get(&self.step) {
            return Ok(op);
        }
        let schema = arrow::ipc::root_as_schema(&self.schema)
            .map(fb_to_schema)
            .map_err(|e| {
                DataFusionError::Internal(format!(
                    "spate codec: schema of step '{}': {e}",
                    self.step
                ))
            })?;
        Ok(Arc::new(DeclaredOp {
            step: self.step,
            describe: self.describe,
            schema: Arc::new(schema),
            input_shape: self.input_shape,
        }))
    }
}

/// A step known by its declaration only: enough to plan it and to encode it
/// again, not to run it.
#[derive(Debug)]
struct DeclaredOp {
    step: String,
    describe: String,
    schema: SchemaRef,
    input_shape: InputShape,
}

impl PartitionOp for DeclaredOp {
    fn step(&self) -> &str {
        &self.step
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn input_shape(&self) -> InputShape {
        self.input_shape.clone()
    }

    fn run(
        &self,
        _input: SendableRecordBatchStream,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        Err(unknown_step(&self.step))
    }
}

#[derive(Serialize, Deserialize)]
enum LogicalNode {
    Op(StepDecl),
    TextScan {
        step: String,
        files: Vec<(std::path::PathBuf, u64)>,
        #[serde(default)]
        options: LineOptions,
    },
}

#[derive(Serialize, Deserialize)]
enum TableNode {
    /// A `STORED AS TEXT` table.
    Text { location: String, column: String },
}

#[derive(Serialize, Deserialize)]
enum PhysicalNode {
    Op(StepDecl),
    TextSource {
        splits: Vec<Vec<FileRange>>,
        #[serde(default)]
        options: LineOptions,
    },
    Write {
        dir: std::path::PathBuf,
        format: FileFormat,
    },
    /// A text scan planned as a file scan (on a cluster): its splits, by
    /// partition, each with its number among all the source's splits.
    TextScan {
        groups: Vec<Vec<(FileRange, usize)>>,
        options: LineOptions,
    },
    /// A compressed file scan (its child): the compression.
    CompressedScan {
        compression: String,
    },
    /// A file writer (its child) that writes by task attempt.
    AttemptWrite,
    /// Compacts its child's batches before a sort.
    Compact,
}

fn encode<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> DfResult<()> {
    buf.extend_from_slice(MAGIC);
    serde_json::to_writer(buf, value)
        .map_err(|e| DataFusionError::Internal(format!("spate codec: {e}")))
}

/// The node in `buf` if it is one of spate's, `None` if it is someone else's.
fn decode<'a, T: Deserialize<'a>>(buf: &'a [u8]) -> DfResult<Option<T>> {
    let Some(body) = buf.strip_prefix(MAGIC) else {
        return Ok(None);
    };
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| DataFusionError::Internal(format!("spate codec: {e}")))
}

/// A path as every process of a cluster can use it: relative paths are
/// the driver's, from its working directory; an object-store URL is kept.
fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    if spate_io::source::is_url(&path.to_string_lossy()) {
        return path.to_path_buf();
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn unknown_step(step: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "step '{step}' is not defined in this process ({}): every process that runs a job's tasks \
         must run the job's own binary, so that the step's closures exist there",
        process_name()
    ))
}

/// This process, for errors: its program and pid.
fn process_name() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "?".into());
    format!("{program}, pid {}", std::process::id())
}

/// Logical-plan codec for spate's nodes; every other node, table and file
/// format goes to Ballista's codec.
#[derive(Debug, Clone)]
pub struct SpateLogicalCodec {
    registry: Arc<Registry>,
    ballista: Arc<BallistaLogicalExtensionCodec>,
}

impl SpateLogicalCodec {
    /// A codec resolving steps in `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            ballista: Arc::default(),
        }
    }
}

impl LogicalExtensionCodec for SpateLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        let Some(node) = decode::<LogicalNode>(buf)? else {
            return self.ballista.try_decode(buf, inputs, ctx);
        };
        match node {
            LogicalNode::Op(decl) => {
                let op = decl.resolve(&self.registry)?;
                let input = inputs
                    .first()
                    .cloned()
                    .ok_or_else(|| DataFusionError::Internal("op without input".into()))?;
                match OpNode::plan(op, input)? {
                    LogicalPlan::Extension(ext) => Ok(ext),
                    _ => Err(DataFusionError::Internal(
                        "op plan is not an extension".into(),
                    )),
                }
            }
            LogicalNode::TextScan {
                step,
                files,
                options,
            } => {
                let files: Vec<InputFile> = files
                    .into_iter()
                    .map(|(path, len)| InputFile { path, len })
                    .collect();
                match TextScanNode::plan_with(step, &files, options)? {
                    LogicalPlan::Extension(ext) => Ok(ext),
                    _ => Err(DataFusionError::Internal(
                        "scan plan is not an extension".into(),
                    )),
                }
            }
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        let any = node.node.as_any();
        if let Some(n) = any.downcast_ref::<OpNode>() {
            return encode(&LogicalNode::Op(StepDecl::of(n.op().as_ref())?), buf);
        }
        if let Some(n) = any.downcast_ref::<TextScanNode>() {
            return encode(
                &LogicalNode::TextScan {
                    step: n.step.clone(),
                    files: n
                        .files
                        .iter()
                        .map(|(path, len)| (absolute(path), *len))
                        .collect(),
                    options: n.options,
                },
                buf,
            );
        }
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        match decode::<TableNode>(buf)? {
            Some(TableNode::Text { location, column }) => {
                Ok(Arc::new(TextTable::new(&location, &column)))
            }
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        if let Some(t) = node.downcast_ref::<TextTable>() {
            return encode(
                &TableNode::Text {
                    location: t.location().to_string(),
                    column: t.column().to_string(),
                },
                buf,
            );
        }
        self.ballista
            .try_encode_table_provider(table_ref, node, buf)
            .map_err(|e| {
                DataFusionError::Plan(format!(
                    "table {table_ref} cannot be sent to the cluster's executors ({e}): on a \
                     cluster, queries read tables over files (CREATE EXTERNAL TABLE, CREATE \
                     TABLE AS); table functions such as generate_series run locally only"
                ))
            })
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

/// Physical-plan codec for spate's nodes; every other node (Ballista's
/// shuffle readers and writers among them) goes to Ballista's codec.
#[derive(Debug, Clone)]
pub struct SpatePhysicalCodec {
    registry: Arc<Registry>,
    ballista: Arc<BallistaPhysicalExtensionCodec>,
}

impl SpatePhysicalCodec {
    /// A codec resolving steps in `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            ballista: Arc::default(),
        }
    }
}

impl PhysicalExtensionCodec for SpatePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(node) = decode::<PhysicalNode>(buf)? else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let first = || {
            inputs
                .first()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("node without input".into()))
        };
        Ok(match node {
            PhysicalNode::Op(decl) => {
                Arc::new(OpExec::new(decl.resolve(&self.registry)?, first()?))
            }
            PhysicalNode::TextSource { splits, options } => {
                Arc::new(TextSourceExec::with_options(splits, options))
            }
            PhysicalNode::Write { dir, format } => Arc::new(WriteExec::new(first()?, dir, format)?),
            PhysicalNode::TextScan { groups, options } => {
                from_split_groups(groups, options, Some(ctx.runtime_env()))
            }
            PhysicalNode::CompressedScan { compression } => {
                CompressedScanExec::restore(first()?, &compression)?
            }
            PhysicalNode::AttemptWrite => Arc::new(AttemptWriteExec::new(first()?)?),
            PhysicalNode::Compact => Arc::new(CompactExec::new(first()?)),
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(n) = node.downcast_ref::<OpExec>() {
            return encode(&PhysicalNode::Op(StepDecl::of(n.op().as_ref())?), buf);
        }
        if let Some(n) = node.downcast_ref::<TextSourceExec>() {
            return encode(
                &PhysicalNode::TextSource {
                    splits: n
                        .splits()
                        .iter()
                        .map(|group| {
                            group
                                .iter()
                                .map(|r| FileRange {
                                    path: absolute(&r.path),
                                    ..r.clone()
                                })
                                .collect()
                        })
                        .collect(),
                    options: n.options(),
                },
                buf,
            );
        }
        if let Some((groups, options)) = text_file_scan(&node) {
            return encode(&PhysicalNode::TextScan { groups, options }, buf);
        }
        if let Some(n) = node.downcast_ref::<CompressedScanExec>() {
            return encode(
                &PhysicalNode::CompressedScan {
                    compression: n.compression_name(),
                },
                buf,
            );
        }
        if node.downcast_ref::<AttemptWriteExec>().is_some() {
            return encode(&PhysicalNode::AttemptWrite, buf);
        }
        if node.downcast_ref::<CompactExec>().is_some() {
            return encode(&PhysicalNode::Compact, buf);
        }
        if let Some(n) = node.downcast_ref::<WriteExec>() {
            return encode(
                &PhysicalNode::Write {
                    dir: absolute(n.dir()),
                    format: n.format(),
                },
                buf,
            );
        }
        self.ballista.try_encode(node, buf, proto_converter)
    }
}
