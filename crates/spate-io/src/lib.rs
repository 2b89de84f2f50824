//! # spate-io — sources and sinks
//!
//! The parts of spate that touch files, written as DataFusion execution nodes so
//! that every face (MapReduce, `Dataset`, `Pipeline`, SQL) reads and writes the
//! same way, locally and on a cluster.
//!
//! ```text
//!  inputs (files, dirs, globs; .gz/.zst)           outputs (directory)
//!        │ expand + split on line ends                   ▲ atomic commit
//!        ▼                                                │ (_SUCCESS, rename)
//!  TextSourceExec ──► ... plan ... ──► WriteExec (part-00000, part-00001, ...)
//! ```
//!
//! - [`source`]: expands input paths and reads text files as batches of lines,
//!   splitting large uncompressed files into byte ranges on line boundaries
//!   (Hadoop's `LineRecordReader` rule) so one big file uses every core.
//! - [`output`]: every write — a job's part files, and the files of
//!   `COPY`, `CREATE TABLE AS` and `INSERT` in every format, locally or on
//!   an object store — staged, then published whole.
//! - [`sink`]: writes partitions as Hadoop-style `part-NNNNN` files (text lines
//!   or JSON lines) into a staging directory.
//! - [`commit`]: publishes a staging directory atomically: the output directory
//!   appears complete, with a `_SUCCESS` marker, or not at all.
//! - [`progress`]: shared counters (bytes read, rows) for progress reporting.

pub mod commit;
pub mod error;
pub mod format;
pub mod output;
pub mod progress;
pub mod sink;
pub mod source;
pub mod store;
pub mod text_table;

pub use error::{Error, Result};

/// This machine's host name (`/proc/sys/kernel/hostname`), for errors
/// raised on one of a cluster's hosts and for the address a server
/// advertises when bound to every interface.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
}
