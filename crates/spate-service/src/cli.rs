//! `spate server` and `spate jobs ...`, in `gcloud dataproc`'s style.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::model::{CreateClusterRequest, Job, Kind, Scheduling, SubmitRequest};
use crate::server::{DEFAULT_LISTEN, ServerConfig};

/// `spate server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on (loopback by default; a token guards every route).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Where jobs, logs and the token are kept (default: $SPATE_HOME, else ~/.spate).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Serve without a bearer token (refused unless --listen is a loopback address).
    #[arg(long)]
    pub no_auth: bool,
    /// Jobs run at once; later ones wait, RUNNING with substate QUEUED (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The largest file a client may upload (a script, side file or job
    /// binary): 512MiB, 2GiB, ...
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    pub max_upload: u64,
    /// Stop, as on SIGTERM, when standard input closes: a server that goes
    /// with the process that started it (a test, a supervisor's pipe).
    #[arg(long)]
    pub exit_with_stdin: bool,
}

/// `512MiB`, `2GiB`, `100MB`, `4096` as bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a size is a whole number with a unit, e.g. 512MiB"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?} (KiB, MiB, GiB)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `spate jobs`.
#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    /// The server's URL (default: $SPATE_SERVER, else the server of $SPATE_HOME on this host).
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Output: table, json, yaml or value(FIELD,...) (default: table for
    /// lists, yaml for a job).
    #[arg(long, global = true, value_name = "FORMAT")]
    format: Option<String>,
    /// Trust this certificate (PEM) for an HTTPS server, as its own CA
    /// (default: $SPATE_CA_CERT, else the system's roots).
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// Submit a job: `spate jobs submit KIND [OPTIONS] -- ARGS...`, where
    /// KIND is sql, builtin, streaming, mrjob, binary or stream and ARGS
    /// what `spate sql`, `spate run`, `spate streaming`, `spate mrjob` or
    /// `spate stream` takes (binary: a program built with spate, then its
    /// arguments). Scripts, side files and programs are uploaded.
    Submit(SubmitArgs),
    /// List jobs, newest first.
    List(ListArgs),
    /// Show a job.
    Describe(IdArg),
    /// Stream a job's output until it ends; exit 0 if DONE, 1 if ERROR, 3 if CANCELLED.
    Wait(IdArg),
    /// Cancel a job.
    #[command(alias = "cancel")]
    Kill(IdArg),
    /// Delete an ended job: its record, output and work directory.
    Delete(IdArg),
    /// Print a job's output (driver output: its standard output and error).
    Logs(LogsArgs),
    /// Show the steps a job ran, with rows, compute time, spills and skew;
    /// the slowest step of each plan is marked.
    Graph(IdArg),
    /// Show a stream job's recent batches: rows in, rates, duration,
    /// watermark and its lag, state, late records and lines out.
    Progress(IdArg),
}

#[derive(Args, Debug)]
struct SubmitArgs {
    /// sql, builtin, streaming, mrjob, binary or stream.
    kind: String,
    /// Run it on this cluster of the server's (default: in a process on
    /// the server's host).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// A binary job (a program built with spate): run its own cluster
    /// roles, this many executors of the program, and the program as
    /// their driver.
    #[arg(long, value_name = "N")]
    executors: Option<u32>,
    /// The job's id (default: one the server makes).
    #[arg(long)]
    id: Option<String>,
    /// Labels: KEY=VALUE,... (lowercase).
    #[arg(long, value_name = "KEY=VALUE,...")]
    labels: Option<String>,
    /// Settings: spate.threads, spate.memory-limit; Hadoop properties for
    /// streaming and mrjob jobs; datafusion.* options for SQL jobs.
    #[arg(long, value_name = "KEY=VALUE,...")]
    properties: Option<String>,
    /// Makes the submission idempotent: submitting again with the same id
    /// gives the same job.
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// Restarts allowed after failures within an hour (at most 10).
    #[arg(long, default_value_t = 0)]
    max_failures_per_hour: u32,
    /// Restarts allowed after failures in all (at most 240).
    #[arg(long, default_value_t = 0)]
    max_failures_total: u32,
    /// Stop the job with ERROR past this long: 90s, 10m, 2h.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Return once the job is submitted instead of streaming its output.
    #[arg(long = "async")]
    no_wait: bool,
    /// The arguments of the job's `spate` verb.
    #[arg(last = true, num_args = 0.., allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Dataproc's filter: `status.state = ACTIVE AND labels.env = staging`.
    #[arg(long, default_value = "")]
    filter: String,
    /// Jobs per request.
    #[arg(long, default_value_t = 100)]
    page_size: usize,
    /// At most this many jobs in all.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args, Debug)]
struct IdArg {
    /// The job's id (or uuid).
    id: String,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// The job's id (or uuid).
    id: String,
    /// Keep printing as the job writes, until it ends.
    #[arg(long, short, conflicts_with = "executors")]
    follow: bool,
    /// The job's lines of its cluster's processes' logs (scheduler and
    /// executors), each after its process's name.
    #[arg(long)]
    executors: bool,
}

/// `spate clusters`.
#[derive(Args, Debug)]
pub struct ClustersArgs {
    #[command(subcommand)]
    command: ClustersCommand,
    /// The server's URL (default: $SPATE_SERVER, else the server of $SPATE_HOME on this host).
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Output: table, json, yaml or value(FIELD,...).
    #[arg(long, global = true, value_name = "FORMAT")]
    format: Option<String>,
    /// Trust this certificate (PEM) for an HTTPS server (default: $SPATE_CA_CERT).
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ClustersCommand {
    /// Create a cluster: a scheduler and executors on the server's host.
    Create(CreateClusterArgs),
    /// List clusters.
    List,
    /// Show a cluster: its executors, their health, the jobs it runs.
    Describe(ClusterName),
    /// Stop a cluster's processes (it can be started again).
    Stop(ClusterVerb),
    /// Start a stopped cluster.
    Start(ClusterVerb),
    /// Delete a cluster; the jobs it ran keep their history and logs.
    Delete(ClusterVerb),
}

#[derive(Args, Debug)]
struct CreateClusterArgs {
    /// Its name: lowercase letters, digits and hyphens, starting with a letter.
    name: String,
    /// Executors to start on the server's host (default: 2; none with --hosts).
    #[arg(long)]
    executors: Option<u32>,
    /// Hosts whose executors join by themselves (run there: spate cluster
    /// executor --scheduler ADDRESS --advertise HOST); the server starts
    /// only the scheduler.
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    hosts: Vec<String>,
    /// The IP address the scheduler listens on for executors on other
    /// hosts (default: every interface).
    #[arg(long, value_name = "IP", requires = "hosts")]
    scheduler_host: Option<String>,
    /// Task slots per executor (default: the cores shared among them).
    #[arg(long)]
    slots: Option<u32>,
    /// Delete it after this long without a job: 10m, 2h, 1d.
    #[arg(long, value_name = "DURATION")]
    idle_delete_ttl: Option<String>,
    /// Labels: KEY=VALUE,...
    #[arg(long, value_name = "KEY=VALUE,...")]
    labels: Option<String>,
    /// Makes the request idempotent.
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// Return at once instead of waiting for the cluster to run.
    #[arg(long = "async")]
    no_wait: bool,
}

#[derive(Args, Debug)]
struct ClusterName {
    /// The cluster's name.
    name: String,
}

#[derive(Args, Debug)]
struct ClusterVerb {
    /// The cluster's name.
    name: String,
    /// Return at once instead of waiting for the operation.
    #[arg(long = "async")]
    no_wait: bool,
}

/// Runs `spate clusters ...`; returns the process's exit code.
pub fn clusters(args: ClustersArgs, home: &Path) -> i32 {
    let connection = (args.server.clone(), args.ca_cert.clone());
    with_client(connection, home, |client| async move {
        run_clusters(&client, args).await
    })
}

fn client_for(
    server: Option<&str>,
    ca_cert: Option<PathBuf>,
    home: &Path,
) -> Result<Client, ClientError> {
    let ca = ca_cert.or_else(|| std::env::var_os("SPATE_CA_CERT").map(PathBuf::from));
    Client::new(server, home).trusting(ca.as_deref())
}

fn exit_code(result: Result<i32, ClientError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spate: error: {e}");
            match e {
                ClientError::Api(a) if a.code < 500 => 2,
                _ => 1,
            }
        }
    }
}

async fn run_clusters(client: &Client, args: ClustersArgs) -> Result<i32, ClientError> {
    let format = args.format.as_deref();
    let usage = |m: String| ClientError::Api(crate::error::ApiError::invalid("args", m));
    let (operation, wait) = match args.command {
        ClustersCommand::List => {
            let list = client.clusters().await?;
            let values: Vec<Value> = list
                .clusters
                .iter()
                .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                .collect();
            let text = match format.unwrap_or("table") {
                "table" => cluster_table(&list.clusters),
                "json" => serde_json::to_string_pretty(&values).unwrap_or_default() + "\n",
                "yaml" => values
                    .iter()
                    .map(|v| format!("---\n{}", yaml(v, 0)))
                    .collect(),
                f => values_of(&values, f)?,
            };
            print_raw(&text);
            return Ok(0);
        }
        ClustersCommand::Describe(c) => {
            let cluster = client.cluster(&c.name).await?;
            print_value(
                &serde_json::to_value(&cluster).unwrap_or(Value::Null),
                format,
                as_yaml,
            )?;
            return Ok(0);
        }
        ClustersCommand::Create(c) => {
            let mut cluster = crate::model::Cluster {
                cluster_name: c.name.clone(),
                ..Default::default()
            };
            cluster.config.executor_count =
                c.executors
                    .unwrap_or(if c.hosts.is_empty() { 2 } else { 0 });
            cluster.config.executor_hosts = c.hosts.clone();
            cluster.config.scheduler_host = c.scheduler_host.clone();
            cluster.config.slots_per_executor = c.slots;
            if let Some(ttl) = &c.idle_delete_ttl {
                cluster.config.idle_delete_ttl =
                    Some(format!("{}s", parse_duration(ttl).map_err(usage)?));
            }
            if let Some(labels) = &c.labels {
                cluster.labels = parse_labels(labels).map_err(usage)?;
            }
            let request = CreateClusterRequest {
                cluster,
                request_id: c.request_id.unwrap_or_default(),
            };
            eprintln!("Creating cluster [{}]...", c.name);
            (client.create_cluster(&request).await?, !c.no_wait)
        }
        ClustersCommand::Stop(c) => {
            eprintln!("Stopping cluster [{}]...", c.name);
            (client.cluster_verb(&c.name, "stop").await?, !c.no_wait)
        }
        ClustersCommand::Start(c) => {
            eprintln!("Starting cluster [{}]...", c.name);
            (client.cluster_verb(&c.name, "start").await?, !c.no_wait)
        }
        ClustersCommand::Delete(c) => {
            eprintln!("Deleting cluster [{}]...", c.name);
            (client.delete_cluster(&c.name).await?, !c.no_wait)
        }
    };
    let operation = if wait {
        client.wait_operation(operation).await?
    } else {
        operation
    };
    if let Some(error) = &operation.error {
        eprintln!(
            "spate: error: {} of cluster [{}] failed: {}",
            operation.metadata.operation_type, operation.metadata.cluster_name, error.message
        );
        return Ok(1);
    }
    print_value(
        &serde_json::to_value(&operation).unwrap_or(Value::Null),
        format,
        as_yaml,
    )?;
    Ok(0)
}

/// A resource read as JSON, in `format`: `table` (the default) is what
/// `table` makes of it.
fn print_value(
    value: &Value,
    format: Option<&str>,
    table: fn(&Value) -> String,
) -> Result<(), ClientError> {
    let text = match format.unwrap_or("table") {
        "json" => serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
        "yaml" => yaml(value, 0),
        "table" => table(value),
        f => values_of(std::slice::from_ref(value), f)?,
    };
    print_raw(&text);
    Ok(())
}

/// The "table" of a resource without columns of its own: its YAML.
fn as_yaml(value: &Value) -> String {
    yaml(value, 0)
}

/// gcloud's cluster listing columns.
fn cluster_table(clusters: &[crate::model::Cluster]) -> String {
    let mut out = format!(
        "{:<24} {:>9}  {:<10} {}\n",
        "NAME", "EXECUTORS", "STATUS", "SCHEDULER"
    );
    for c in clusters {
        out.push_str(&format!(
            "{:<24} {:>9}  {:<10} {}\n",
            c.cluster_name,
            c.config.executor_count,
            c.state().name(),
            c.scheduler_address
        ));
    }
    out
}

/// Runs `spate server`.
pub fn server(args: &ServerArgs, default_home: PathBuf) -> Result<(), String> {
    let program = std::env::current_exe()
        .map_err(|e| format!("cannot find the spate program to run jobs with: {e}"))?;
    let config = ServerConfig {
        home: args.home.clone().unwrap_or(default_home),
        listen: args.listen,
        no_auth: args.no_auth,
        max_jobs: args.max_jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }),
        program,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        max_upload: args.max_upload,
        exit_with_stdin: args.exit_with_stdin,
    };
    tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?
        .block_on(crate::server::serve(config))
}

/// Runs `spate jobs ...`; returns the process's exit code.
pub fn jobs(args: JobsArgs, home: &Path) -> i32 {
    let connection = (args.server.clone(), args.ca_cert.clone());
    with_client(connection, home, |client| async move {
        run_jobs(&client, args).await
    })
}

/// Runs `work` with a client of the server named by `(--server,
/// --ca-cert)`; the process's exit code.
fn with_client<F, W>(
    (server, ca_cert): (Option<String>, Option<PathBuf>),
    home: &Path,
    work: W,
) -> i32
where
    W: FnOnce(Client) -> F,
    F: std::future::Future<Output = Result<i32, ClientError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spate: error: {e}");
            return 1;
        }
    };
    let client = match client_for(server.as_deref(), ca_cert, home) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spate: error: {e}");
            return 2;
        }
    };
    exit_code(runtime.block_on(work(client)))
}

async fn run_jobs(client: &Client, args: JobsArgs) -> Result<i32, ClientError> {
    let format = args.format.as_deref();
    match args.command {
        JobsCommand::Submit(s) => submit(client, s, format).await,
        JobsCommand::List(l) => {
            let mut jobs = Vec::new();
            let mut token = String::new();
            loop {
                let page = client.list(&l.filter, l.page_size, &token).await?;
                jobs.extend(page.jobs);
                if l.limit.is_some_and(|n| jobs.len() >= n) {
                    jobs.truncate(l.limit.unwrap_or(usize::MAX));
                    break;
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            print_jobs(&jobs, format.unwrap_or("table"))?;
            Ok(0)
        }
        JobsCommand::Describe(i) => {
            let job = client.get(&i.id).await?;
            print_job(&job, format.unwrap_or("yaml"))?;
            Ok(0)
        }
        JobsCommand::Wait(i) => wait(client, &i.id).await,
        JobsCommand::Kill(i) => {
            let job = client.cancel(&i.id).await?;
            eprintln!("Job [{}] is being cancelled.", job.reference.job_id);
            print_job(&job, format.unwrap_or("yaml"))?;
            Ok(0)
        }
        JobsCommand::Delete(i) => {
            client.delete(&i.id).await?;
            eprintln!("Deleted job [{}].", i.id);
            Ok(0)
        }
        JobsCommand::Graph(i) => {
            print_value(&client.graph(&i.id).await?, format, graph_table)?;
            Ok(0)
        }
        JobsCommand::Progress(i) => {
            print_value(&client.progress(&i.id).await?, format, progress_table)?;
            Ok(0)
        }
        JobsCommand::Logs(l) => {
            if l.executors {
                let bytes = client.executor_logs(&l.id).await?;
                let _ = std::io::stdout().write_all(&bytes);
            } else if l.follow {
                client.follow(&l.id, 0, print_raw).await?;
            } else {
                let mut offset = 0;
                loop {
                    let (bytes, _) = client.log_page(&l.id, offset, 4 << 20).await?;
                    if bytes.is_empty() {
                        break;
                    }
                    offset += bytes.len() as u64;
                    let _ = std::io::stdout().write_all(&bytes);
                }
            }
            Ok(0)
        }
    }
}

fn print_raw(text: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn submit(client: &Client, s: SubmitArgs, format: Option<&str>) -> Result<i32, ClientError> {
    let usage = |m: String| ClientError::Api(crate::error::ApiError::invalid("args", m));
    let kind = Kind::parse(&s.kind).ok_or_else(|| {
        usage(format!(
            "{:?} is not a kind of job: sql, builtin, streaming, mrjob or binary",
            s.kind
        ))
    })?;
    let (args, uploads) = files_to_upload(kind, &s.args).map_err(usage)?;
    let uploaded: Vec<&str> = uploads.iter().map(|(_, name)| name.as_str()).collect();
    let mut job = Job::with_program(kind, absolute_paths(&args, &uploaded));
    for (path, name) in uploads {
        let upload = client.upload(&path).await?;
        if let Some(program) = job.program_mut() {
            program.files.push(crate::model::FileRef { upload, name });
        }
    }
    let properties = match &s.properties {
        Some(p) => parse_labels(p).map_err(usage)?,
        None => BTreeMap::new(),
    };
    if let Some(program) = job.program_mut() {
        program.executors = s.executors;
        program.properties = properties;
    }
    job.reference.job_id = s.id.unwrap_or_default();
    job.placement.cluster_name = s.cluster.unwrap_or_default();
    if let Some(labels) = &s.labels {
        job.labels = parse_labels(labels).map_err(usage)?;
    }
    job.scheduling = Scheduling {
        max_failures_per_hour: s.max_failures_per_hour,
        max_failures_total: s.max_failures_total,
    };
    if let Some(t) = &s.timeout {
        job.timeout = Some(format!("{}s", parse_duration(t).map_err(usage)?));
    }
    let request = SubmitRequest {
        job,
        request_id: s.request_id.unwrap_or_default(),
    };
    let job = client.submit(&request).await?;
    eprintln!(
        "Job [{}] submitted ({} {}).",
        job.reference.job_id,
        job.program().map_or("?", |(k, _)| k.word()),
        job.job_uuid
    );
    if s.no_wait {
        print_job(&job, format.unwrap_or("yaml"))?;
        return Ok(0);
    }
    eprintln!("Waiting for job output...");
    wait(client, &job.job_uuid).await
}

/// Streams the job's output; the exit code of its end (gcloud's: 0 DONE,
/// 1 ERROR, 3 CANCELLED).
async fn wait(client: &Client, id: &str) -> Result<i32, ClientError> {
    // On a terminal, a spinner with the job's state until its output
    // begins (a queued job shows why it waits).
    let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("Job [{id}]: waiting for it to start"));
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar
    });
    let poller = spinner.clone().map(|bar| {
        let client = client.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                if let Ok(job) = client.get(&id).await
                    && let Some(status) = &job.status
                {
                    let substate = status
                        .substate
                        .map(|s| format!(" ({s:?})").to_uppercase())
                        .unwrap_or_default();
                    let details = if status.details.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", status.details)
                    };
                    bar.set_message(format!(
                        "Job [{id}]: {}{substate}{details}",
                        status.state.name()
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    });
    let mut started = false;
    let state = client
        .follow(id, 0, |text| {
            if !started {
                started = true;
                if let Some(bar) = &spinner {
                    bar.finish_and_clear();
                }
            }
            print_raw(text);
        })
        .await;
    if let Some(poller) = poller {
        poller.abort();
    }
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    let state = state?;
    let job = client.get(id).await?;
    let details = job
        .status
        .as_ref()
        .map(|s| s.details.clone())
        .unwrap_or_default();
    let code = match state.as_str() {
        "DONE" => 0,
        "CANCELLED" => 3,
        _ => 1,
    };
    if details.is_empty() {
        eprintln!("Job [{}] finished: {state}.", job.reference.job_id);
    } else {
        eprintln!(
            "Job [{}] finished: {state}: {details}",
            job.reference.job_id
        );
    }
    Ok(code)
}

/// Local files to upload, each with its name in the job's directory.
type Uploads = Vec<(PathBuf, String)>;

/// The files a job of `kind` needs in its work directory, uploaded so
/// that a server on another host has them: an mrjob script and its
/// `--file`/`--py-file`(s) values, `spate sql -f` files, Hadoop
/// Streaming's `-file`/`-files`, a binary job's program. Each argument is
/// replaced by the file's name there (a `path#name` alias keeps its name).
/// Input data is not uploaded: it is read where the job runs.
fn files_to_upload(kind: Kind, args: &[String]) -> Result<(Vec<String>, Uploads), String> {
    let single: &[&str] = match kind {
        Kind::Sql => &["-f", "--file"],
        Kind::Mrjob => &["--file", "--py-file", "--archive"],
        Kind::Streaming => &["-file"],
        Kind::Builtin | Kind::Binary | Kind::Stream => &[],
    };
    let listed: &[&str] = match kind {
        Kind::Mrjob => &["--files", "--py-files"],
        Kind::Streaming => &["-files"],
        _ => &[],
    };
    let mut out = Vec::with_capacity(args.len());
    let mut uploads: Uploads = Vec::new();
    let mut take = |spec: &str| -> Result<String, String> {
        let (path, alias) = match spec.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (spec, None),
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!("{}: no such file to upload", path.display()));
        }
        let name = match alias {
            Some(a) => a.to_string(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !crate::model::valid_file_name(&name) {
            return Err(format!(
                "{name:?}: uploaded files need plain names (letters, digits, '.', '_', '-', \
                 '+'; not hidden): rename it, or give path#name"
            ));
        }
        match uploads.iter().find(|(_, n)| *n == name) {
            Some((p, _)) if *p != path => {
                return Err(format!(
                    "two files named {name}: {} and {} (give one path#othername)",
                    p.display(),
                    path.display()
                ));
            }
            Some(_) => {}
            None => uploads.push((path, name.clone())),
        }
        Ok(name)
    };
    let mut next_is: Option<bool> = None;
    for (i, arg) in args.iter().enumerate() {
        let first_is_program = i == 0 && matches!(kind, Kind::Mrjob | Kind::Binary);
        match next_is.take() {
            Some(false) => out.push(take(arg)?),
            Some(true) => {
                let names: Vec<String> = arg.split(',').map(&mut take).collect::<Result<_, _>>()?;
                out.push(names.join(","));
            }
            None if first_is_program => out.push(take(arg)?),
            None => {
                if let Some((flag, value)) = arg.split_once('=')
                    && (single.contains(&flag) || listed.contains(&flag))
                {
                    let value = if listed.contains(&flag) {
                        value
                            .split(',')
                            .map(&mut take)
                            .collect::<Result<Vec<_>, _>>()?
                            .join(",")
                    } else {
                        take(value)?
                    };
                    out.push(format!("{flag}={value}"));
                    continue;
                }
                if single.contains(&arg.as_str()) {
                    next_is = Some(false);
                } else if listed.contains(&arg.as_str()) {
                    next_is = Some(true);
                }
                out.push(arg.clone());
            }
        }
    }
    Ok((out, uploads))
}

/// Arguments naming files here are made absolute (a job runs in its own
/// directory on the server's host); so are the paths after an output
/// flag (`-o`, `--output`, `-output`), which do not exist yet. The names
/// of uploaded files stay as they are: they are in the job's directory.
fn absolute_paths(args: &[String], uploaded: &[&str]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut after_output_flag = false;
    for arg in args {
        let path = Path::new(arg);
        let relative_path = !arg.starts_with('-')
            && !arg.contains("://")
            && path.is_relative()
            && !uploaded.contains(&arg.as_str());
        let absolute = relative_path && (after_output_flag || path.exists());
        match std::path::absolute(path) {
            Ok(p) if absolute => out.push(p.to_string_lossy().into_owned()),
            _ => out.push(arg.clone()),
        }
        after_output_flag = matches!(arg.as_str(), "-o" | "--output" | "-output");
    }
    out
}

/// `KEY=VALUE,...` (labels, properties).
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// `90s`, `10m`, `2h`, `1d` (or plain seconds) as seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 10m, 2h or 1d");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n * scale {
        0 => Err(bad()),
        s => Ok(s),
    }
}

fn print_job(job: &Job, format: &str) -> Result<(), ClientError> {
    let value = serde_json::to_value(job)
        .map_err(|e| ClientError::Transport(format!("encoding the job: {e}")))?;
    let text = match format {
        "json" => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
        "yaml" => yaml(&value, 0),
        "table" => table(std::slice::from_ref(job)),
        f => values_of(&[value], f)?,
    };
    print_raw(&text);
    Ok(())
}

fn print_jobs(jobs: &[Job], format: &str) -> Result<(), ClientError> {
    let values: Vec<Value> = jobs
        .iter()
        .map(|j| serde_json::to_value(j).unwrap_or(Value::Null))
        .collect();
    let text = match format {
        "json" => serde_json::to_string_pretty(&values).unwrap_or_default() + "\n",
        "yaml" => values
            .iter()
            .map(|v| format!("---\n{}", yaml(v, 0)))
            .collect(),
        "table" => table(jobs),
        f => values_of(&values, f)?,
    };
    print_raw(&text);
    Ok(())
}

/// gcloud's job listing columns.
fn table(jobs: &[Job]) -> String {
    let rows: Vec<[String; 4]> = jobs
        .iter()
        .map(|j| {
            [
                j.reference.job_id.clone(),
                j.program().map_or("?", |(k, _)| k.word()).to_string(),
                j.state().name().to_string(),
                j.status
                    .as_ref()
                    .map(|s| s.state_start_time.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["JOB_ID", "TYPE", "STATUS", "SINCE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `value(status.state,reference.jobId)`: the fields, tab-separated, one
/// line per item.
/// A job graph's steps, one plan after another: indented by depth, with
/// their metrics; `<- slowest` marks each plan's most expensive step and
/// `<- skewed` a step whose largest partition has over twice the median's
/// rows.
/// A stream job's progress as a table of its last 20 batches under a line
/// of the run's totals.
fn progress_table(progress: &Value) -> String {
    let recent = progress["recent"].as_array().cloned().unwrap_or_default();
    if recent.is_empty() {
        return "no batch recorded (the job is no stream, or has run no batch yet)\n".into();
    }
    let late: u64 = progress["lateRecordsByStep"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    let batches = progress["batches"].as_u64().unwrap_or(0);
    let mut out = format!(
        "{batches} {} this run: {} rows in, {} lines out; {} late records over the checkpoint's life\n",
        if batches == 1 { "batch" } else { "batches" },
        progress["inputRows"].as_u64().unwrap_or(0),
        progress["outputLines"].as_u64().unwrap_or(0),
        late
    );
    out.push_str(&format!(
        "{:>7} {:>10} {:>11} {:>11} {:>8} {:<24} {:>9} {:>8} {:>6} {:>6} {:>8}\n",
        "BATCH",
        "ROWS IN",
        "IN ROWS/S",
        "PROC ROWS/S",
        "MS",
        "WATERMARK",
        "LAG S",
        "STATE",
        "PANES",
        "LATE",
        "OUT"
    ));
    for b in recent.iter().skip(recent.len().saturating_sub(20)) {
        // spate-stream's least and greatest timestamps: no event time seen
        // yet, and the end of the input.
        let watermark = match b["watermark"].as_i64() {
            Some(w) if w <= i64::MIN / 4 => "-".to_string(),
            Some(w) if w >= i64::MAX / 4 => "end of input".to_string(),
            Some(w) => crate::runner::rfc3339_millis(w),
            None => "-".to_string(),
        };
        let lag = b["watermarkLagMs"]
            .as_i64()
            .map_or("-".to_string(), |l| format!("{:.1}", l as f64 / 1000.0));
        out.push_str(&format!(
            "{:>7} {:>10} {:>11.0} {:>11.0} {:>8} {:<24} {:>9} {:>8} {:>6} {:>6} {:>8}\n",
            b["batch"].as_u64().unwrap_or(0),
            b["inputRows"].as_u64().unwrap_or(0),
            b["inputRowsPerSecond"].as_f64().unwrap_or(0.0),
            b["processedRowsPerSecond"].as_f64().unwrap_or(0.0),
            b["durationMs"].as_u64().unwrap_or(0),
            watermark,
            lag,
            b["stateEntries"].as_u64().unwrap_or(0),
            b["panes"].as_u64().unwrap_or(0),
            b["lateRecords"].as_u64().unwrap_or(0),
            b["outputLines"].as_u64().unwrap_or(0),
        ));
    }
    out
}

fn graph_table(graph: &Value) -> String {
    let mut out = String::new();
    let plans = graph["plans"].as_array().cloned().unwrap_or_default();
    if plans.is_empty() {
        return "no plan recorded (the job is running, or ran none)\n".into();
    }
    if let Some(jobs) = graph["cluster_stages"].as_object() {
        out.push_str(&format!(
            "cluster stages\n{:<16} {:>5} {:<11} {:>12} {:>12} {:>6} {:>16}\n",
            "JOB", "STAGE", "STATUS", "INPUT", "OUTPUT", "TASKS", "TASK MS P50/MAX"
        ));
        for (id, stages) in jobs {
            for stage in stages.as_array().into_iter().flatten() {
                let d = &stage["task_duration_percentiles"];
                out.push_str(&format!(
                    "{:<16} {:>5} {:<11} {:>12} {:>12} {:>6} {:>16}\n",
                    id,
                    stage["stage_id"].as_str().unwrap_or("?"),
                    stage["stage_status"].as_str().unwrap_or("?"),
                    stage["input_rows"].as_u64().unwrap_or(0),
                    stage["output_rows"].as_u64().unwrap_or(0),
                    stage["tasks"].as_array().map_or(0, Vec::len),
                    format!(
                        "{}/{}",
                        d["median"].as_u64().unwrap_or(0),
                        d["max"].as_u64().unwrap_or(0)
                    ),
                ));
            }
        }
    }
    for (i, plan) in plans.iter().enumerate() {
        let nodes = plan["nodes"].as_array().cloned().unwrap_or_default();
        let time = |n: &Value| n["metrics"]["elapsed_compute_ns"].as_u64().unwrap_or(0);
        let slowest = nodes
            .iter()
            .max_by_key(|n| time(n))
            .map(|n| n["id"].clone());
        let mut depth = vec![0usize; nodes.len()];
        for n in &nodes {
            let id = n["id"].as_u64().unwrap_or(0) as usize;
            let below = depth.get(id).copied().unwrap_or(0) + 1;
            for input in n["inputs"].as_array().into_iter().flatten() {
                if let Some(d) = depth.get_mut(input.as_u64().unwrap_or(0) as usize) {
                    *d = below;
                }
            }
        }
        let width = nodes
            .iter()
            .map(|n| {
                let id = n["id"].as_u64().unwrap_or(0) as usize;
                2 * depth.get(id).copied().unwrap_or(0) + n["step"].as_str().map_or(1, str::len)
            })
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "plan {}\n{:<width$} {:>12} {:>10} {:>7} {:>6}\n",
            i + 1,
            "STEP",
            "ROWS",
            "TIME",
            "SPILLS",
            "SKEW"
        ));
        for n in &nodes {
            let id = n["id"].as_u64().unwrap_or(0) as usize;
            let m = &n["metrics"];
            let skew = m["skew"].as_f64();
            let name = format!(
                "{}{}",
                "  ".repeat(depth.get(id).copied().unwrap_or(0)),
                n["step"].as_str().unwrap_or("?")
            );
            let mut marks = String::new();
            if Some(&n["id"]) == slowest.as_ref() && time(n) > 0 {
                marks.push_str("  <- slowest");
            }
            if skew.is_some_and(|s| s > 2.0) {
                marks.push_str("  <- skewed");
            }
            out.push_str(&format!(
                "{name:<width$} {:>12} {:>9.3}s {:>7} {:>6}{marks}\n",
                m["output_rows"].as_u64().unwrap_or(0),
                time(n) as f64 / 1e9,
                m["spill_count"].as_u64().unwrap_or(0),
                skew.map_or("-".to_string(), |s| format!("{s:.1}")),
            ));
        }
    }
    out
}

fn values_of(items: &[Value], format: &str) -> Result<String, ClientError> {
    let fields = format
        .strip_prefix("value(")
        .and_then(|f| f.strip_suffix(')'))
        .ok_or_else(|| {
            ClientError::Api(crate::error::ApiError::invalid(
                "format",
                format!("{format:?}: formats are table, json, yaml and value(FIELD,...)"),
            ))
        })?;
    let mut out = String::new();
    for item in items {
        let cells: Vec<String> = fields
            .split(',')
            .map(|f| {
                let mut v = item;
                for part in f.trim().split('.') {
                    v = v.get(part).unwrap_or(&Value::Null);
                }
                match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            })
            .collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    Ok(out)
}

/// A JSON value as YAML (block style; strings JSON-quoted when plain
/// style would change them).
fn yaml(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n{}", yaml(v, indent + 2)));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n{}", yaml(v, indent)));
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let inner = yaml(item, indent + 2);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        v => out.push_str(&format!("{pad}{}\n", scalar(v))),
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
                && !matches!(s.as_str(), "true" | "false" | "null" | "yes" | "no")
                && s.parse::<f64>().is_err();
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_labels_and_yaml() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1w").is_err());
        assert_eq!(
            parse_labels("env=staging,team=data").unwrap(),
            BTreeMap::from([
                ("env".to_string(), "staging".to_string()),
                ("team".to_string(), "data".to_string())
            ])
        );
        assert!(parse_labels("env").is_err());
        let v = serde_json::json!({
            "done": true,
            "labels": {},
            "reference": {"jobId": "wc-1"},
            "statusHistory": [{"details": "a: b", "state": "PENDING"}],
        });
        assert_eq!(
            yaml(&v, 0),
            "done: true\nlabels: {}\nreference:\n  jobId: wc-1\nstatusHistory:\n\
             - details: \"a: b\"\n  state: PENDING\n"
        );
        assert_eq!(
            values_of(&[v], "value(reference.jobId,done)").unwrap(),
            "wc-1\ttrue\n"
        );
    }
}
