//! # spate-service — the job service
//!
//! What Dataproc adds on top of Spark, for spate: one place to submit jobs,
//! watch them, read their output and keep their history.
//!
//! - [`server`]: `spate server`, listening on loopback by default, keeping
//!   everything under `$SPATE_HOME/server/` (an embedded SQLite store, each
//!   job's log and work directory, the bearer token).
//! - [`runner`]: each job runs as a child process (`spate VERB ARGS`) in
//!   its own process group and work directory; its output is appended to
//!   its log as it comes and pushed to followers; at most `--max-jobs` run
//!   at once, the others wait QUEUED.
//! - [`clusters`]: Ballista clusters the server starts, stops and deletes
//!   (`spate cluster up` process groups), jobs placed on them.
//! - [`api`]: the REST API under `/api/v1`, after Dataproc's job resource.
//! - [`ui`]: the web UI: jobs, a job's live output, its graph, cancel.
//! - [`model`]: the job, its states and filters, as Dataproc's `Job`.
//! - [`client`] and [`cli`]: `spate jobs submit|list|describe|wait|kill|delete|logs`.

pub mod api;
pub mod cli;
pub mod client;
pub mod clusters;
pub mod error;
pub mod metrics;
pub mod model;
pub mod runner;
pub mod server;
pub mod store;
pub mod tls;
pub mod ui;
