//! # spate-cluster — spate on Apache DataFusion Ballista
//!
//! A cluster is a Ballista scheduler and executors, embedded through their
//! library APIs, with spate's planner and codecs installed in each:
//!
//! - [`scheduler`]: plans each job with Ballista's own session state (its
//!   optimizer rules and functions) plus spate's query planner, splits it
//!   into stages at the shuffles, hands tasks to executors and re-runs lost
//!   ones. Its gRPC service and REST API share one port.
//! - [`executor`]: runs tasks, keeps their shuffle output, serves it over
//!   Arrow Flight, and answers `/healthz` and `/readyz`.
//! - [`launch`]: a scheduler and N executors on this host, as processes of
//!   this program (`spate cluster up`).
//! - [`status`]: what the scheduler knows of its executors.
//!
//! The driver's side (a `Context` whose jobs run on a cluster) is
//! `spate_core::cluster`. Failure detection is deliberately fast
//! ([`timing`]): Ballista's defaults notice a dead executor after 3 minutes.

pub mod executor;
pub mod launch;
mod logs;
pub mod scheduler;
pub mod status;
pub mod timing;

pub use logs::log_to_file;
pub use spate_core::cluster::{Address, ExecutorInfo};

/// Errors of the cluster roles (spate's: usage errors exit 2).
pub use spate_core::{Error, Result};
