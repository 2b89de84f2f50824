//! `spate server`: the job service's process. Everything it keeps is under
//! `$SPATE_HOME/server/`: `server.db` (the jobs), `jobs/UUID/` (each job's
//! log and work directory), `token` (the bearer token, mode 0600) and
//! `address` (where it listens, for the CLI on this host).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::runner::Jobs;

/// The default address: loopback, Dataproc-free port 8020.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8020";

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `$SPATE_HOME`.
    pub home: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// No bearer token (loopback only).
    pub no_auth: bool,
    /// Jobs run at once; more wait, QUEUED.
    pub max_jobs: usize,
    /// The `spate` program jobs run.
    pub program: PathBuf,
    /// Serve HTTPS with this certificate chain and private key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The largest upload, in bytes.
    pub max_upload: u64,
    /// Stop (as on SIGTERM) when standard input closes: a server tied to
    /// the process that started it.
    pub exit_with_stdin: bool,
}

/// The server's token: read from `dir/token`, or made (random, 256 bits)
/// and written there with mode 0600 at first start.
pub fn token(dir: &Path) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

/// Runs the server until SIGINT or SIGTERM; then stops its running jobs
/// (ERROR, their output kept) and returns.
pub async fn serve(config: ServerConfig) -> Result<(), String> {
    if config.no_auth && !config.listen.ip().is_loopback() {
        return Err(format!(
            "--no-auth is refused on {}: without a token, only a loopback address is safe",
            config.listen
        ));
    }
    let jobs = Jobs::open(
        &config.home,
        config.program.clone(),
        config.max_jobs,
        config.max_upload,
    )?;
    let dir = jobs.dir().to_path_buf();
    let token = if config.no_auth {
        None
    } else {
        Some(token(&dir)?)
    };
    let recovered = jobs.recover().map_err(|e| e.message)?;
    jobs.recover_clusters().map_err(|e| e.message)?;
    tokio::spawn(Arc::clone(&jobs).housekeeping());
    if recovered > 0 {
        eprintln!(
            "spate server: {recovered} job(s) were running when the server stopped: marked ERROR"
        );
    }
    let acceptor = match &config.tls {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{bound}");
    std::fs::write(dir.join("address"), &url)
        .map_err(|e| format!("cannot write {}: {e}", dir.join("address").display()))?;
    eprintln!(
        "spate server: listening on {url} ({}); web UI at {url}/; jobs and logs in {}",
        if token.is_some() {
            format!("bearer token in {}", dir.join("token").display())
        } else {
            "no authentication".to_string()
        },
        dir.display()
    );
    let app = crate::api::router(Arc::clone(&jobs), token, acceptor.is_some());
    let stopping = Arc::clone(&jobs);
    // Jobs are stopped first: their followers' streams end with them, and
    // the server then has no open request left to wait for.
    let exit_with_stdin = config.exit_with_stdin;
    let shutdown = async move {
        tokio::select! {
            () = stop_signal() => {}
            () = stdin_closed(), if exit_with_stdin => {}
        }
        eprintln!("spate server: stopping; running jobs are stopped (ERROR)");
        stopping.stop_all().await;
    };
    let served = match acceptor {
        Some(acceptor) => {
            let tls = crate::tls::TlsListener::new(listener, acceptor)
                .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
            axum::serve(tls, app).with_graceful_shutdown(shutdown).await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(|e| format!("the server failed: {e}"))
}

/// Resolves when standard input reaches its end.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let _ = rx.await;
}

async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
