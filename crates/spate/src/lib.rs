//! # spate
//!
//! One data-processing system with four faces over one engine (Apache Arrow +
//! Apache DataFusion, Ballista past one machine):
//!
//! ```text
//!  MapReduce jobs ─┐
//!  Dataset<T>     ─┼─► one DataFusion plan ─► every core, memory budget, spill
//!  Pipeline       ─┤
//!  SQL/DataFrame  ─┘
//! ```
//!
//! Start with [`prelude`]; the canonical programs are in `examples/` and
//! [`jobs`]; [`testing`] has Beam-style assertions for tests.
//!
//! ```
//! use spate::prelude::*;
//! let ctx = Context::new()?;
//! let lines = ctx.from_vec(vec!["the cat".to_string(), "the dog".to_string()]);
//! let counts = lines.flat_map(into_words).count_by_value().sort_by_key(true);
//! assert_eq!(counts.collect()?[2], ("the".into(), 2));
//! # Ok::<(), spate::Error>(())
//! ```

// Lets shared job code (also compiled into the examples) name this crate `spate`.
extern crate self as spate;

pub mod jobs;
pub mod testing;

pub use spate_cluster as cluster;
pub use spate_core::{
    Config, Context, Data, Dataset, Error, GroupedDataset, Result, WriteSummary, codec, combine,
    context, dataset, error, frame, hadoop, mapreduce, metrics, node, ops, output, pipeline, rows,
    shared, text,
};
pub use spate_io as io;
pub use spate_sql as sql;
pub use spate_stream as stream;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Everything a job needs: `use spate::prelude::*;`.
pub mod prelude {
    pub use spate_core::prelude::*;
}
