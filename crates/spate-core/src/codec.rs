//! Codecs: spate's plan nodes to bytes and back, for shipping plans to
//! Ballista executors. A node that carries closures encodes only its step
//! name; the receiving process rebuilds the same job, so its [`Registry`]
//! holds the same ops under the same names. Text scans encode their files.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};
use spate_io::sink::{FileFormat, WriteExec};
use spate_io::source::{FileRange, InputFile, LineOptions, TextSourceExec};

use crate::context::Registry;
use crate::node::{OpExec, OpNode, TextScanNode};

#[derive(Serialize, Deserialize)]
enum LogicalNode {
    Op {
        step: String,
    },
    TextScan {
        step: String,
        files: Vec<(std::path::PathBuf, u64)>,
        #[serde(default)]
        options: LineOptions,
    },
}

#[derive(Serialize, Deserialize)]
enum PhysicalNode {
    Op {
        step: String,
    },
    TextSource {
        splits: Vec<Vec<FileRange>>,
        #[serde(default)]
        options: LineOptions,
    },
    Write {
        dir: std::path::PathBuf,
        format: FileFormat,
    },
}

fn encode<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> DfResult<()> {
    serde_json::to_writer(buf, value)
        .map_err(|e| DataFusionError::Internal(format!("spate codec: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(buf: &'a [u8]) -> DfResult<T> {
    serde_json::from_slice(buf).map_err(|e| DataFusionError::Internal(format!("spate codec: {e}")))
}

fn unknown_step(step: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "step '{step}' is not defined in this process: every process of a job must build the same steps"
    ))
}

/// Logical-plan codec for spate's nodes.
#[derive(Debug, Clone)]
pub struct SpateLogicalCodec {
    registry: Arc<Registry>,
}

impl SpateLogicalCodec {
    /// A codec resolving steps in `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl LogicalExtensionCodec for SpateLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> DfResult<Extension> {
        match decode::<LogicalNode>(buf)? {
            LogicalNode::Op { step } => {
                let op = self
                    .registry
                    .get(&step)
                    .ok_or_else(|| unknown_step(&step))?;
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
            return encode(
                &LogicalNode::Op {
                    step: n.op().step().to_string(),
                },
                buf,
            );
        }
        if let Some(n) = any.downcast_ref::<TextScanNode>() {
            return encode(
                &LogicalNode::TextScan {
                    step: n.step.clone(),
                    files: n.files.clone(),
                    options: n.options,
                },
                buf,
            );
        }
        Err(DataFusionError::NotImplemented(format!(
            "spate codec cannot encode {}",
            node.node.name()
        )))
    }

    fn try_decode_table_provider(
        &self,
        _buf: &[u8],
        table_ref: &TableReference,
        _schema: arrow::datatypes::SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        Err(DataFusionError::NotImplemented(format!(
            "spate codec: table {table_ref}"
        )))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        _node: Arc<dyn TableProvider>,
        _buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        Err(DataFusionError::NotImplemented(format!(
            "spate codec: table {table_ref}"
        )))
    }
}

/// Physical-plan codec for spate's nodes.
#[derive(Debug, Clone)]
pub struct SpatePhysicalCodec {
    registry: Arc<Registry>,
}

impl SpatePhysicalCodec {
    /// A codec resolving steps in `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl PhysicalExtensionCodec for SpatePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let first = || {
            inputs
                .first()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("node without input".into()))
        };
        Ok(match decode::<PhysicalNode>(buf)? {
            PhysicalNode::Op { step } => {
                let op = self
                    .registry
                    .get(&step)
                    .ok_or_else(|| unknown_step(&step))?;
                Arc::new(OpExec::new(op, first()?))
            }
            PhysicalNode::TextSource { splits, options } => {
                Arc::new(TextSourceExec::with_options(splits, options))
            }
            PhysicalNode::Write { dir, format } => Arc::new(WriteExec::new(first()?, dir, format)?),
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(n) = node.downcast_ref::<OpExec>() {
            return encode(
                &PhysicalNode::Op {
                    step: n.op().step().to_string(),
                },
                buf,
            );
        }
        if let Some(n) = node.downcast_ref::<TextSourceExec>() {
            return encode(
                &PhysicalNode::TextSource {
                    splits: n.splits().to_vec(),
                    options: n.options(),
                },
                buf,
            );
        }
        if let Some(n) = node.downcast_ref::<WriteExec>() {
            return encode(
                &PhysicalNode::Write {
                    dir: n.dir().to_path_buf(),
                    format: n.format(),
                },
                buf,
            );
        }
        Err(DataFusionError::NotImplemented(format!(
            "spate codec cannot encode {}",
            node.name()
        )))
    }
}
