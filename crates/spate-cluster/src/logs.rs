//! Each cluster process logs to a file under the cluster's work directory
//! (the job service collects them); `SPATE_LOG` sets the filter
//! (`RUST_LOG` syntax, default `info`).

use std::path::Path;
use std::sync::Mutex;

use crate::{Error, Result};

/// Sends this process's log records (Ballista's `log` records among them)
/// to `path`, appending. The first call in a process wins: a process that
/// already logs somewhere keeps doing so.
pub fn log_to_file(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Usage(format!("log directory {}: {e}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Usage(format!("log file {}: {e}", path.display())))?;
    let filter = std::env::var("SPATE_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| Error::Usage(format!("SPATE_LOG={filter}: {e}")))?;
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .with_env_filter(filter)
        .try_init()
        .or_else(|_| Ok(()))
}
