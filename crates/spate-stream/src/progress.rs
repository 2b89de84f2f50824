//! A running stream's progress as a file the job service reads: the
//! recent batches (Spark's `recentProgress`) and the run's totals,
//! rewritten whole after every batch. The job service names the file in
//! `SPATE_JOB_PROGRESS` for the jobs it runs; a program can name one with
//! [`StreamPipeline::record_progress`](crate::StreamPipeline::record_progress).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::driver::BatchProgress;
use crate::time::Millis;

/// Batches kept in the file (Spark keeps 100 in `recentProgress`).
const RECENT: usize = 100;

/// The file's content.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    /// When the run started (ms since the epoch, the system's clock).
    run_started: Millis,
    /// When the file was written.
    updated: Millis,
    /// Whether the run reads its input as a batch job (`run_bounded`).
    bounded: bool,
    /// Batches this run ran.
    batches: u64,
    /// Input rows over this run.
    input_rows: u64,
    /// Lines the sinks committed over this run.
    output_lines: u64,
    /// Late elements per stateful step, over the life of the checkpoint.
    late_records_by_step: &'a BTreeMap<String, u64>,
    /// The last batches, oldest first.
    recent: &'a VecDeque<BatchProgress>,
}

/// Keeps the recent batches and writes the file after each.
pub(crate) struct ProgressFile {
    path: PathBuf,
    run_started: Millis,
    bounded: bool,
    batches: u64,
    input_rows: u64,
    output_lines: u64,
    recent: VecDeque<BatchProgress>,
    /// A write failed once (said on standard error; the stream goes on:
    /// its progress is a view of it, not its output).
    failed: bool,
}

impl ProgressFile {
    pub fn new(path: &Path, bounded: bool) -> Self {
        Self {
            path: path.to_path_buf(),
            run_started: crate::time::now(),
            bounded,
            batches: 0,
            input_rows: 0,
            output_lines: 0,
            recent: VecDeque::new(),
            failed: false,
        }
    }

    /// Adds a batch and writes the file.
    pub fn record(&mut self, p: &BatchProgress, late: &BTreeMap<String, u64>) {
        self.batches += 1;
        self.input_rows += p.input_rows;
        self.output_lines += p.output_lines;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(p.clone());
        let report = Report {
            run_started: self.run_started,
            updated: crate::time::now(),
            bounded: self.bounded,
            batches: self.batches,
            input_rows: self.input_rows,
            output_lines: self.output_lines,
            late_records_by_step: late,
            recent: &self.recent,
        };
        let written = serde_json::to_vec(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| replace(&self.path, &json));
        if let Err(e) = written
            && !self.failed
        {
            self.failed = true;
            eprintln!(
                "spate stream: warning: the progress file {} cannot be written ({e}); the stream goes on",
                self.path.display()
            );
        }
    }
}

/// Replaces the file at `path` whole (a reader never sees half of it), by
/// a rename; not flushed to disk: the file is a view of the stream, which
/// its next batch rewrites, not state a restart needs.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
