//! A cluster on this host (`spate cluster up`): a scheduler and N executors,
//! each a process of this program in its role (`cluster scheduler`,
//! `cluster executor`), so that killing one is a real failure. Their output
//! and logs go to files in the cluster's work directory; the process ids to
//! `cluster.pids`.

use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate_core::cluster::{Address, scheduler_version};

use crate::status::status;
use crate::{Error, Result};

/// How long a local cluster may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a cluster on this host.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The program whose roles to run (this one, normally).
    pub program: PathBuf,
    /// Executors to start.
    pub executors: usize,
    /// Task slots per executor.
    pub slots: usize,
    /// The interface everything listens on.
    pub host: String,
    /// The scheduler's port (0: a free one).
    pub port: u16,
    /// Work directory: logs, shuffle files, event logs.
    pub work_dir: PathBuf,
    /// End the cluster's processes when this process ends, however it ends
    /// (each role exits when its standard input, a pipe from here, closes).
    pub tie_to_parent: bool,
    /// A job binary's arguments for its executors (`-- ARGS`).
    pub job_args: Vec<String>,
}

/// A started cluster on this host.
#[derive(Debug)]
pub struct LocalCluster {
    address: Address,
    scheduler: Child,
    executors: Vec<Child>,
    work_dir: PathBuf,
}

fn spawn(program: &Path, args: &[String], out: &Path, tie: bool) -> Result<Child> {
    let file =
        |p: &Path| File::create(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())));
    let log = file(out)?;
    let err = log
        .try_clone()
        .map_err(|e| Error::Usage(format!("{}: {e}", out.display())))?;
    let mut command = Command::new(program);
    command.args(args);
    if tie {
        command.stdin(Stdio::piped());
    } else {
        command.stdin(Stdio::null());
    }
    command
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::Usage(format!("cannot start {}: {e}", program.display())))
}

/// The last lines of a role's output, for an error.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Whether an executor's Arrow Flight port, on the interface the
/// executors listen on, accepts a connection.
fn serves(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

impl LocalCluster {
    /// Starts the scheduler, then the executors, and returns once every
    /// executor has registered and serves its Flight port (within
    /// [`START_TIMEOUT`]).
    pub fn start(opts: &UpOptions) -> Result<Self> {
        if opts.executors == 0 {
            return Err(Error::Usage("--executors must be at least 1".into()));
        }
        std::fs::create_dir_all(&opts.work_dir).map_err(|e| {
            Error::Usage(format!("work directory {}: {e}", opts.work_dir.display()))
        })?;
        let port = match opts.port {
            0 => crate::ports::free_ports(&opts.host, 1)?[0],
            p => p,
        };
        let address = Address::parse(&format!("{}:{port}", opts.host))?;
        let work = opts.work_dir.to_string_lossy().into_owned();
        let mut args: Vec<String> = vec![
            "cluster".into(),
            "scheduler".into(),
            "--bind".into(),
            address.to_string(),
            "--work-dir".into(),
            work.clone(),
        ];
        if opts.tie_to_parent {
            args.push("--exit-with-stdin".into());
        }
        let scheduler = spawn(
            &opts.program,
            &args,
            &opts.work_dir.join("scheduler.out"),
            opts.tie_to_parent,
        )?;
        let mut cluster = LocalCluster {
            address,
            scheduler,
            executors: Vec::new(),
            work_dir: opts.work_dir.clone(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        cluster.wait_until(deadline, "the scheduler to answer", |c| {
            Ok(scheduler_version(&c.address).is_ok())
        })?;
        // Every executor's three ports at once (the scheduler's is taken
        // by now): no two executors can draw the same one.
        let bases = match crate::ports::free_runs(&opts.host, opts.executors, 3) {
            Ok(b) => b,
            Err(e) => {
                cluster.stop();
                return Err(e);
            }
        };
        for (n, base) in bases.into_iter().enumerate() {
            let mut args: Vec<String> = vec![
                "cluster".into(),
                "executor".into(),
                "--scheduler".into(),
                cluster.address.to_string(),
                "--bind".into(),
                opts.host.clone(),
                "--port".into(),
                base.to_string(),
                "--slots".into(),
                opts.slots.to_string(),
                "--work-dir".into(),
                work.clone(),
            ];
            if opts.tie_to_parent {
                args.push("--exit-with-stdin".into());
            }
            if !opts.job_args.is_empty() {
                args.push("--".into());
                args.extend(opts.job_args.iter().cloned());
            }
            let child = spawn(
                &opts.program,
                &args,
                &opts.work_dir.join(format!("executor-{}.out", n + 1)),
                opts.tie_to_parent,
            )?;
            cluster.executors.push(child);
        }
        let (wanted, host) = (opts.executors, opts.host.clone());
        // An executor registers before it binds its Arrow Flight port:
        // ready once every one also accepts connections there, and none
        // has exited on the way (a port taken in between ends it).
        cluster.wait_until(deadline, "every executor to register and serve", |c| {
            let st = status(&c.address)?;
            Ok(st.alive() >= wanted
                && st
                    .executors
                    .iter()
                    .filter(|e| e.alive())
                    .all(|e| serves(&host, e.info.port)))
        })?;
        cluster.fail_if_exited()?;
        cluster.write_pids()?;
        Ok(cluster)
    }

    /// Polls `ready` until it holds; fails when a process of the cluster
    /// exits or the deadline passes, with the output of the processes.
    fn wait_until(
        &mut self,
        deadline: Instant,
        what: &str,
        ready: impl Fn(&Self) -> Result<bool>,
    ) -> Result<()> {
        loop {
            // Exits first: with a port already taken, another scheduler may
            // answer there while ours has gone.
            self.fail_if_exited()?;
            if ready(self)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let outputs = self.outputs();
                self.stop();
                return Err(Error::Usage(format!(
                    "local cluster: waited {START_TIMEOUT:?} for {what}\n{outputs}"
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the cluster and fails, with the process's output, if any of
    /// its processes has exited.
    fn fail_if_exited(&mut self) -> Result<()> {
        match self.exited() {
            Some(exited) => {
                self.stop();
                Err(Error::Usage(format!("local cluster: {exited}")))
            }
            None => Ok(()),
        }
    }

    /// The first process found to have exited, with its output.
    fn exited(&mut self) -> Option<String> {
        let work = self.work_dir.clone();
        if let Ok(Some(status)) = self.scheduler.try_wait() {
            let out = work.join("scheduler.out");
            return Some(format!("the scheduler exited ({status}):\n{}", tail(&out)));
        }
        for (n, child) in self.executors.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                let out = work.join(format!("executor-{}.out", n + 1));
                return Some(format!(
                    "executor {} exited ({status}):\n{}",
                    n + 1,
                    tail(&out)
                ));
            }
        }
        None
    }

    fn outputs(&self) -> String {
        let mut files = vec![self.work_dir.join("scheduler.out")];
        files.extend(
            (1..=self.executors.len()).map(|n| self.work_dir.join(format!("executor-{n}.out"))),
        );
        files
            .iter()
            .map(|f| format!("{}:\n{}", f.display(), tail(f)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn write_pids(&self) -> Result<()> {
        let mut text = format!("scheduler {}\n", self.scheduler.id());
        for (n, child) in self.executors.iter().enumerate() {
            text.push_str(&format!("executor-{} {}\n", n + 1, child.id()));
        }
        let path = self.work_dir.join("cluster.pids");
        std::fs::write(&path, text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
    }

    /// The scheduler's address, `HOST:PORT`.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Process ids: the scheduler's, then the executors'.
    pub fn pids(&self) -> (u32, Vec<u32>) {
        (
            self.scheduler.id(),
            self.executors.iter().map(Child::id).collect(),
        )
    }

    /// Leaves the processes running after this handle is gone
    /// (`spate cluster up --detach`).
    pub fn detach(self) {
        std::mem::forget(self);
    }

    /// Waits until any process of the cluster exits; says which.
    pub fn wait_any(&mut self) -> String {
        loop {
            if let Some(exited) = self.exited() {
                return exited;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every process: SIGTERM to the executors, then to the
    /// scheduler; SIGKILL for any still running 5 s later.
    pub fn stop(&mut self) {
        terminate(&mut self.executors);
        terminate(std::slice::from_mut(&mut self.scheduler));
    }
}

fn terminate(children: &mut [Child]) {
    for child in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for child in children.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
