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
//! - [`ports`]: free ports for the servers Ballista binds, drawn from below
//!   the kernel's ephemeral range.
//!
//! The driver's side (a `Context` whose jobs run on a cluster) is
//! `spate_core::cluster`. A job binary gets every role through [`main`]. Failure detection is deliberately fast
//! ([`timing`]): Ballista's defaults notice a dead executor after 3 minutes.

pub mod cli;
pub mod executor;
pub mod launch;
mod logs;
pub mod ports;
pub mod scheduler;
pub mod status;
pub mod timing;

pub use logs::log_to_file;
pub use spate_core::cluster::{Address, ExecutorInfo, check_same_build, rest_json};

/// Errors of the cluster roles (spate's: usage errors exit 2).
pub use spate_core::{Error, Result};

use clap::Parser;

#[derive(Parser, Debug)]
struct RoleCli {
    #[command(subcommand)]
    command: Role,
}

#[derive(clap::Subcommand, Debug)]
enum Role {
    /// A cluster of processes on Apache DataFusion Ballista.
    Cluster(cli::ClusterArgs),
}

/// The `main` of a job binary whose job has Rust closures, so that the same
/// binary is its driver and its executors (Rust cannot ship closures: each
/// executor runs this program and finds a step's closures by its name).
///
/// - `PROGRAM ARGS...` runs `job(ctx, ARGS)` as the driver: on the cluster
///   named by `$SPATE_CLUSTER` (which must run this same build: refused
///   otherwise, naming both), or locally when it is unset.
/// - `PROGRAM cluster executor --scheduler ADDR [...] -- ARGS...` runs an
///   executor: it first runs `job` with `ARGS` in a context that only builds
///   plans ([`spate_core::Config::declare_only`]: actions return empty
///   results and write nothing), so that it holds every step's closures,
///   then serves tasks. Give it the driver's arguments. A job whose steps
///   depend on the results of its own actions may build steps there that
///   the declaring run does not: their tasks fail naming the step.
/// - `PROGRAM cluster scheduler|up|status ...` as `spate cluster ...`; `up
///   -- ARGS...` gives `ARGS` to its executors.
///
/// A whole job binary is `crates/spate/examples/cluster_wordcount.rs`:
///
/// ```text
/// fn main() -> std::process::ExitCode {
///     spate::cluster::main(|ctx, args| {
///         ctx.read_text(&[&args[0]])?.flat_map(into_words).count_by_value()
///             .map(|(w, n)| (w.to_string(), n)).write_text(&args[1])?;
///         Ok(())
///     })
/// }
/// ```
pub fn main(job: impl Fn(&spate_core::Context, &[String]) -> Result<()>) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let program = std::path::Path::new(args.first().map_or("job", String::as_str))
        .file_name()
        .map_or_else(|| "job".to_string(), |n| n.to_string_lossy().into_owned());
    let result = if args.get(1).map(String::as_str) == Some("cluster") {
        match RoleCli::try_parse_from(&args) {
            Ok(RoleCli {
                command: Role::Cluster(roles),
            }) => cli::run(roles, cli::Steps::Job(&job)),
            Err(e) => e.exit(),
        }
    } else {
        let mut config = spate_core::Context::builder();
        let address = cli::cluster_address(None);
        if let Some(addr) = &address {
            config.cluster(addr.clone());
        }
        // The executors must hold this build's closures: a rebuilt job
        // driving the cluster of its previous build would run the old
        // closures under the same step names.
        address
            .map_or(Ok(()), |addr| {
                spate_core::cluster::Address::parse(&addr)
                    .and_then(|a| spate_core::cluster::check_same_build(&a, "this job"))
            })
            .and_then(|()| config.build())
            .and_then(|ctx| job(&ctx, &args[1..]))
    };
    cli::exit_code(&program, result)
}
