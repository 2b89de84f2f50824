//! `spate cluster ...`: the roles of a Ballista cluster (scheduler,
//! executor), a cluster on this host (`up`), and its status.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use spate::prelude::*;
use spate_cluster::executor::{self, ExecutorOptions};
use spate_cluster::launch::{LocalCluster, UpOptions};
use spate_cluster::scheduler::{self, SchedulerOptions};
use spate_cluster::{Address, status};

/// The environment variable naming the cluster when `--cluster` is not given.
pub const CLUSTER_ENV: &str = "SPATE_CLUSTER";

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Run a scheduler: it plans each job into stages at its shuffles, hands
    /// tasks to executors and re-runs lost ones. Prints its address first.
    Scheduler {
        /// Where to listen (gRPC and the REST API on one port).
        #[arg(long, default_value = "0.0.0.0:50050", value_name = "ADDR")]
        bind: String,
        /// The host name executors and clients reach it by (default: the
        /// bind address, or this host's name when binding every interface).
        #[arg(long, value_name = "HOST")]
        advertise: Option<String>,
        /// Work directory: its log (scheduler.log) and per-job event logs.
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Exit when standard input closes (a parent's pipe: `cluster up`).
        #[arg(long, hide = true)]
        exit_with_stdin: bool,
    },
    /// Run an executor: it runs tasks and serves their shuffle output.
    Executor {
        /// The scheduler's address, HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        scheduler: String,
        /// The interface to listen on.
        #[arg(long, default_value = "0.0.0.0", value_name = "HOST")]
        bind: String,
        /// The host name the scheduler and other executors reach it by
        /// (default: the address it connects to the scheduler from).
        #[arg(long, value_name = "HOST")]
        advertise: Option<String>,
        /// Base port: shuffle data (Arrow Flight) on PORT, tasks on PORT+1,
        /// /healthz and /readyz on PORT+2 (default: free ports).
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// Tasks it runs at once (default: the number of cores).
        #[arg(long, value_name = "N")]
        slots: Option<usize>,
        /// Work directory: its log and its shuffle files.
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Exit when standard input closes (a parent's pipe: `cluster up`).
        #[arg(long, hide = true)]
        exit_with_stdin: bool,
    },
    /// Start a scheduler and N executors on this host. Prints the address
    /// HOST:PORT on the first line of standard output, then runs until
    /// interrupted (or, with --detach, returns once every executor is
    /// registered).
    Up {
        /// Executors to start.
        #[arg(long, default_value_t = 2, value_name = "N")]
        executors: usize,
        /// The scheduler's port (default: a free port).
        #[arg(long, default_value_t = 0, value_name = "PORT")]
        port: u16,
        /// Task slots per executor (default: the cores shared among them, at least 1).
        #[arg(long, value_name = "N")]
        slots: Option<usize>,
        /// The interface everything listens on.
        #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
        host: String,
        /// Work directory: logs, shuffle files, event logs, cluster.pids
        /// (default: spate-cluster-PORT in the temporary directory).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Return once the cluster is up, leaving it running.
        #[arg(long)]
        detach: bool,
    },
    /// Show a cluster's executors, their task slots and health.
    Status {
        /// The scheduler's address (default: $SPATE_CLUSTER).
        #[arg(long, value_name = "ADDR")]
        cluster: Option<String>,
    },
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spate-cluster")
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the cluster runtime: {e}")))
}

fn default_work_dir(role: &str) -> PathBuf {
    std::env::temp_dir().join(format!("spate-{role}"))
}

/// The cluster named by `--cluster`, else by $SPATE_CLUSTER.
pub fn cluster_address(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var(CLUSTER_ENV).ok().filter(|v| !v.is_empty()))
}

/// Runs `spate cluster ...`.
pub fn cluster(args: ClusterArgs) -> Result<()> {
    match args.command {
        ClusterCommand::Scheduler {
            bind,
            advertise,
            work_dir,
            exit_with_stdin,
        } => {
            if exit_with_stdin {
                exit_when_stdin_closes();
            }
            let bind = bind
                .parse()
                .map_err(|e| Error::Usage(format!("--bind {bind}: {e} (expected IP:PORT)")))?;
            let work_dir = work_dir.unwrap_or_else(|| default_work_dir("scheduler"));
            spate_cluster::log_to_file(&work_dir.join("scheduler.log"))?;
            runtime()?.block_on(async {
                let server = scheduler::start(SchedulerOptions {
                    bind,
                    advertise,
                    work_dir: work_dir.clone(),
                })
                .await?;
                println!("{}", server.address());
                let _ = std::io::stdout().flush();
                eprintln!(
                    "spate: scheduler at {}; log {}",
                    server.address(),
                    work_dir.join("scheduler.log").display()
                );
                server.wait().await
            })
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            advertise,
            port,
            slots,
            work_dir,
            exit_with_stdin,
        } => {
            if exit_with_stdin {
                exit_when_stdin_closes();
            }
            let opts = ExecutorOptions {
                scheduler: Address::parse(&scheduler)?,
                bind_host: bind,
                advertise,
                port,
                slots: slots.unwrap_or_else(cores),
                work_dir: work_dir.unwrap_or_else(|| default_work_dir("executor")),
            };
            // The executor's closures: those this program defines (none in
            // `spate` itself, whose cluster jobs are SQL and text scans).
            let registry = Arc::new(spate::context::Registry::default());
            runtime()?.block_on(executor::run(opts, registry))
        }
        ClusterCommand::Up {
            executors,
            port,
            slots,
            host,
            work_dir,
            detach,
        } => {
            let program = std::env::current_exe()
                .map_err(|e| Error::Usage(format!("cannot find this program: {e}")))?;
            let slots = slots.unwrap_or_else(|| (cores() / executors.max(1)).max(1));
            let work_dir = work_dir.unwrap_or_else(|| {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                std::env::temp_dir().join(format!("spate-cluster-{}-{stamp}", std::process::id()))
            });
            let mut cluster = LocalCluster::start(&UpOptions {
                program,
                executors,
                slots,
                host,
                port,
                work_dir,
                // In the foreground the cluster lives as long as this
                // process, even one killed with SIGKILL.
                tie_to_parent: !detach,
            })?;
            println!("{}", cluster.address());
            let _ = std::io::stdout().flush();
            eprintln!(
                "spate: cluster at {}: {executors} executors, {slots} task slots each; \
                 work directory and logs in {}",
                cluster.address(),
                cluster.work_dir().display()
            );
            if detach {
                eprintln!(
                    "spate: stop it with: kill $(cut -d' ' -f2 {})",
                    cluster.work_dir().join("cluster.pids").display()
                );
                cluster.detach();
                return Ok(());
            }
            runtime()?.block_on(interrupted())?;
            cluster.stop();
            Ok(())
        }
        ClusterCommand::Status { cluster } => {
            let addr = cluster_address(cluster.as_deref()).ok_or_else(|| {
                Error::Usage(format!(
                    "which cluster? give --cluster HOST:PORT or set {CLUSTER_ENV}"
                ))
            })?;
            print!("{}", status::status(&Address::parse(&addr)?)?.render());
            Ok(())
        }
    }
}

/// Ends this process when its standard input reaches its end: the parent
/// holding the pipe's other end has exited.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
}

/// Waits for SIGINT or SIGTERM.
async fn interrupted() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("signal handler: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
