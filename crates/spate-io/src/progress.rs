//! Progress counters shared by sources and whoever reports progress.
//!
//! A [`Progress`] lives in the session config as an extension; sources add to
//! it as they read, and the CLI samples it to draw a progress bar.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a running job updates. Cheap to update (relaxed atomics, once per batch).
#[derive(Debug, Default)]
pub struct Progress {
    bytes_read: AtomicU64,
    rows_read: AtomicU64,
    bytes_total: AtomicU64,
}

impl Progress {
    /// Adds to the bytes and rows read.
    pub fn add_read(&self, bytes: u64, rows: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
    }

    /// Adds to the total bytes the job will read (known once inputs are planned).
    pub fn add_total(&self, bytes: u64) {
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Rows (lines) read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Total input bytes planned (0 when unknown).
    pub fn bytes_total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }
}
