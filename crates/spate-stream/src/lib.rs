//! Streaming in spate: one pipeline over bounded and unbounded input.
//!
//! A [`StreamPipeline`] reads [`Source`]s with offsets, applies
//! element-wise steps, windows and aggregates by key with Beam's model —
//! event time, [`Windows`], watermarks, [`Trigger`]s, accumulation modes,
//! allowed lateness, a late output — and writes sinks exactly once.
//!
//! It runs as **incremental batch**: each micro-batch runs the same
//! DataFusion plan (built once, through `spate-core`'s `Dataset`) over the
//! batch's input, and windowed aggregations merge each batch's partial
//! aggregates into keyed state. The checkpoint directory keeps the offset
//! log, state snapshots and commits, so a killed stream resumes with no
//! loss and no duplicate. [`StreamPipeline::run_bounded`] runs the same
//! pipeline as a batch job over the input there is now.
//!
//! ```no_run
//! use std::time::Duration;
//! use spate_stream::{BatchTrigger, DirectorySource, StreamPipeline, Windows};
//!
//! let p = StreamPipeline::new(spate_core::Context::new()?);
//! let counts = p
//!     .read("ReadLines", DirectorySource::text("in/"))
//!     .with_timestamps("EventTime", |line: &String| {
//!         line.split('\t').next().and_then(|t| t.parse().ok()).unwrap_or(0)
//!     })
//!     .flat_map("Words", |line: String| spate_core::text::into_words(line))
//!     .window_into(Windows::fixed(Duration::from_secs(60)))
//!     .count_per_element("CountWords");
//! counts
//!     .output
//!     .map("Format", |p| format!("{}\t{}\t{}\t{}", p.window.start, p.window.end, p.key, p.value))
//!     .write_text("Write", "out/");
//! p.run_streaming("checkpoint/", BatchTrigger::AvailableNow)?;
//! # Ok::<(), spate_core::Error>(())
//! ```

mod checkpoint;
mod dedup;
mod dir;
mod driver;
mod join;
pub mod kafka;
mod pipeline;
mod progress;
mod sink;
mod source;
mod state;
mod stateful;
pub mod time;
mod trigger;
mod window;
pub mod wordcount;

pub use dedup::Deduped;
pub use driver::{BatchProgress, BatchTrigger, StreamResult};
pub use join::{CoGrouped, Side};
pub use kafka::{KafkaSink, KafkaSource, StartingOffsets};
pub use pipeline::{Aggregated, StopHandle, Stream, StreamPipeline, Watermarks, WindowedStream};
pub use source::{
    Current, DirectorySource, JsonLinesSource, SocketSource, Source, TableFilesSource, TestStream,
};
pub use state::Pane;
pub use stateful::{BagState, Emit, StatefulDoFn, Timers, ValueState};
pub use time::Millis;
pub use trigger::{Accumulation, AfterWatermark, PaneInfo, Timing, Trigger, WindowingStrategy};
pub use window::{Window, Windows};
