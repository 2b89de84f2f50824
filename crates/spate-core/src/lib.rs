//! # spate-core — the model and the planner
//!
//! Every face of spate lowers to one DataFusion `LogicalPlan`:
//!
//! ```text
//!  Dataset<T> ops ──┐                         ┌─ OpNode(PartitionOp)  closures, fused
//!  Pipeline/PTransform ├─► LogicalPlan with ──┤─ TextScanNode          split text input
//!  MapReduce steps ─┘                         └─ native nodes          aggregate, sort, join
//!            │
//!            ▼ DataFusion optimizer + SpateQueryPlanner
//!  ExecutionPlan: TextSourceExec → OpExec(map chain) → OpExec(partial combine)
//!                 → RepartitionExec(hash) → SortExec(spills) → OpExec(group) ...
//! ```
//!
//! Extension points: [`node::PartitionOp`] (a new per-partition operator),
//! [`combine::CombineFn`] (a new aggregation), [`pipeline::PTransform`]
//! (a composite transform), [`mapreduce::MRStep`] (a MapReduce step).
//!
//! Hadoop Streaming and mrjob jobs ([`streaming`]) lower to the same plans:
//! their tasks are [`hadoop::pipe::PipeOp`] nodes streaming partitions through
//! child processes, with the engine's shuffle and external sort between them.

pub mod build;
pub mod cluster;
pub mod cluster_job;
pub mod cluster_scans;
pub mod cluster_writes;
pub mod codec;
pub mod combine;
pub mod compact;
pub mod context;
pub mod dataset;
pub mod error;
pub mod frame;
pub mod graph;
pub mod hadoop;
pub mod mapreduce;
pub mod metrics;
pub mod node;
pub mod ops;
/// Output: every write, published whole (spate-io's one output module).
pub use spate_io::output;
pub mod pipeline;
pub mod rows;
pub mod shared;
pub mod text;
pub mod word;

pub use context::{Config, Context};
pub use dataset::{Dataset, GroupedDataset, WriteSummary};
pub use error::{Error, Result};
pub use rows::Data;

/// The names most programs need.
pub mod prelude {
    pub use crate::combine::{CombineFn, Mean, Sum};
    pub use crate::context::{Config, Context};
    pub use crate::dataset::{Dataset, GroupedDataset, Key, WriteSummary};
    pub use crate::error::{Error, Result};
    pub use crate::frame::{IntoDataset, Sql};
    pub use crate::mapreduce::{Emitter, MRJob, MRMapStep, MRStep, MapReduce, Steps};
    pub use crate::ops::cache::StorageLevel;
    pub use crate::pipeline::{
        Combine, Count, Create, Filter, FlatMap, FlatMapLines, GroupByKey, Map, PCollection,
        PTransform, Pipeline, ReadText, Top, WriteText,
    };
    pub use crate::rows::Data;
    pub use crate::shared::{Accumulator, Broadcast};
    pub use crate::text::{Word, into_words, words};
}
