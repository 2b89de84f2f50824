//! spate's SQL: statements over DataFusion with a table catalog that
//! persists across runs, and result formats for the `spate sql` shell.
//!
//! ```no_run
//! use spate_core::context::Context;
//! use spate_sql::{Outcome, SqlSession, catalog};
//!
//! # fn main() -> spate_core::error::Result<()> {
//! let ctx = Context::new()?;
//! let mut sql = SqlSession::open(&ctx, &catalog::home())?;
//! sql.run("CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION 'data/trips/'")?;
//! if let Outcome::Rows { batches, .. } = sql.run("SELECT count(*) FROM trips")? {
//!     println!("{batches:?}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod catalog;
pub mod format;
pub mod session;
pub mod split;
mod write;

pub use format::Format;
pub use session::{Outcome, SqlSession};
pub use spate_core::output::FileFormat;
