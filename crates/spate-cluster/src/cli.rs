//! `PROGRAM cluster ...`: the roles of a Ballista cluster (scheduler,
//! executor), a cluster on this host (`up`), and its status — for the
//! `spate` binary and for every job binary built on spate ([`crate::main`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use spate_core::context::{Context, Registry};

use crate::executor::{self, ExecutorOptions};
use crate::launch::{LocalCluster, UpOptions};
use crate::scheduler::{self, SchedulerOptions};
use crate::{Address, Error, Result, status};

/// A job: what a job binary runs, as the driver (on a cluster or locally)
/// and, to register its steps, as an executor. `args` are the job's own
/// arguments.
pub type Job<'a> = dyn Fn(&Context, &[String]) -> Result<()> + 'a;

/// Where a program's executors get the steps (closures) of its jobs.
pub enum Steps<'a> {
    /// The program has no steps of its own: executors run SQL and other
    /// plans without closures.
    None,
    /// A job binary's job, built with the executor's job arguments in a
    /// context that only declares it ([`crate::main`]).
    Job(&'a Job<'a>),
    /// Steps the program declares itself, whatever the arguments (the
    /// `spate` program: the steps of its built-in jobs).
    Declared(&'a (dyn Fn() -> Result<Arc<Registry>> + 'a)),
}

/// The environment variable naming the cluster when `--cluster` is not given.
pub const CLUSTER_ENV: &str = "SPATE_CLUSTER";

/// `cluster` and its subcommands.
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
        /// A job binary's arguments (after `--`): the executor builds the
        /// job's plan with them at start-up to hold its steps' closures.
        #[arg(last = true, value_name = "JOB_ARGS")]
        job_args: Vec<String>,
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
        /// (default: a new spate-cluster-PID-TIME in the temporary directory).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Return once the cluster is up, leaving it running.
        #[arg(long)]
        detach: bool,
        /// A job binary's arguments (after `--`), given to every executor.
        #[arg(last = true, value_name = "JOB_ARGS")]
        job_args: Vec<String>,
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

/// The registry an executor serves tasks with: a job binary's job built
/// with `args` in a context that only declares it, or the program's own.
fn declared_steps(steps: &Steps<'_>, args: &[String]) -> Result<Arc<Registry>> {
    let job = match steps {
        Steps::Job(job) => job,
        Steps::None | Steps::Declared(_) if !args.is_empty() => {
            return Err(Error::Usage(format!(
                "this program defines no job: an executor takes no job arguments (got {})",
                args.join(" ")
            )));
        }
        Steps::None => return Ok(Arc::new(Registry::default())),
        Steps::Declared(declare) => return declare(),
    };
    let ctx = Context::builder().threads(1).declare_only().build()?;
    job(&ctx, args).map_err(|e| {
        Error::Usage(format!(
            "building the job's steps for this executor (with arguments [{}]) failed: {e}",
            args.join(" ")
        ))
    })?;
    Ok(ctx.registry().clone())
}

/// Runs `PROGRAM cluster ...`; `steps` are the program's steps, which its
/// executors hold.
pub fn run(args: ClusterArgs, steps: Steps<'_>) -> Result<()> {
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
            crate::log_to_file(&work_dir.join("scheduler.log"))?;
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
            job_args,
        } => {
            if exit_with_stdin {
                exit_when_stdin_closes();
            }
            let registry = declared_steps(&steps, &job_args)?;
            let opts = ExecutorOptions {
                scheduler: Address::parse(&scheduler)?,
                bind_host: bind,
                advertise,
                port,
                slots: slots.unwrap_or_else(cores),
                work_dir: work_dir.unwrap_or_else(|| default_work_dir("executor")),
            };
            runtime()?.block_on(executor::run(opts, registry))
        }
        ClusterCommand::Up {
            executors,
            port,
            slots,
            host,
            work_dir,
            detach,
            job_args,
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
                job_args,
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

/// The exit code for a run's result, after printing its error (with each
/// cause it does not already say) as `PROGRAM: error: ...`: 0, 2 for the
/// user's input or arguments, 1 for a job that failed.
pub fn exit_code(program: &str, result: Result<()>) -> std::process::ExitCode {
    let Err(e) = result else {
        return std::process::ExitCode::SUCCESS;
    };
    let mut msg = format!("{program}: error: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!("\n  caused by: {text}"));
        }
        source = s.source();
    }
    eprintln!("{msg}");
    std::process::ExitCode::from(if e.is_user_input() { 2 } else { 1 })
}
