//! Output, the one place it is written: the part files of a job
//! ([`write_parts`]) and the files statements write — `COPY ... TO`,
//! `CREATE TABLE ... AS SELECT`, `INSERT INTO` — in any of spate's formats
//! (Parquet, CSV, JSON lines, Arrow IPC, text), compressed or not, on local
//! disk or an object store, published only once complete:
//!
//! - a new local directory is written in a hidden staging directory beside
//!   it, flushed, and renamed into place with its `_SUCCESS` marker (one
//!   `renameat2(RENAME_NOREPLACE)`, see [`crate::commit`]);
//! - a new directory on an object store (which has no directory rename) is
//!   written under a hidden staging prefix, its objects are moved into
//!   place, and `_SUCCESS` is written last — Hadoop's convention for
//!   knowing that an output on a store is complete;
//! - rows added to a table (`INSERT`) are written under a hidden staging
//!   directory inside it — table scans do not look into it — and then moved
//!   file by file into the table's directory (into `key=value/`
//!   subdirectories for a partitioned table). A failure while moving moves
//!   the files back, so the table keeps its old rows.
//!
//! Parquet, CSV, JSON and Arrow files of statements come from DataFusion's
//! writers (a `COPY` plan aimed at the staging place); text files, and a
//! job's text and JSON part files, from spate's own writers (columns joined
//! by a tab, one line per row — [`crate::sink`]).
//!
//! The functions are `async` and take the engine's session: callers block
//! on them in their own runtime.

mod attempts;
mod engine;
mod place;
mod publish;

use std::collections::HashMap;
use std::path::PathBuf;

pub use crate::format::{FileFormat, compressed_suffix};
use crate::{Error, Result};
pub use attempts::{AttemptUrls, attempt_urls};
pub use publish::{
    StagedWrite, add_to_directory, new_directory, new_file, remove_directory, stage_parts,
    write_parts,
};

/// What to write: a format, its options, and the columns whose values name
/// `key=value/` directories.
#[derive(Debug, Clone)]
pub struct Output {
    /// The file format.
    pub format: FileFormat,
    /// Writer options as the user gave them (`compression`,
    /// `format.compression`, `format.has_header`, ...).
    pub options: Vec<(String, String)>,
    /// Columns written as `key=value/` directories instead of in the files.
    pub partition_by: Vec<String>,
}

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The committed output (a directory or a file; a path, or an object
    /// store URL as given).
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Data files written (markers not counted).
    pub files: usize,
    /// On an object store, every object this write put in place (marker
    /// included), so that undoing it deletes nothing else. Empty for a
    /// local directory, which is renamed into place whole.
    objects: Vec<String>,
}

impl WriteSummary {
    /// What a write that did not run reports (a plan only built): nothing
    /// written at `path`.
    pub fn not_written(path: PathBuf) -> Self {
        Self {
            path,
            rows: 0,
            files: 0,
            objects: Vec::new(),
        }
    }
}

/// An option's key as DataFusion's writers know it: lowercased, `format.`
/// added to a bare key.
fn option_key(key: &str) -> String {
    let key = key.trim().to_ascii_lowercase();
    // Hive's `TBLPROPERTIES ('parquet.compression' = ...)`.
    if let Some(rest) = key.strip_prefix("parquet.") {
        return format!("format.{rest}");
    }
    if key.contains('.') {
        key
    } else {
        format!("format.{key}")
    }
}

/// The compressions spate's text reader understands, with their file
/// extensions.
fn text_compression(value: &str) -> Result<Option<&'static str>> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "none" | "uncompressed" => Ok(None),
        "gzip" | "gz" => Ok(Some("gz")),
        "zstd" | "zst" => Ok(Some("zst")),
        other => Err(Error::BadOutput(format!(
            "TEXT files are written uncompressed, gzip or zstd, not '{other}'"
        ))),
    }
}

impl Output {
    /// The options handed to DataFusion's writer. `strict`: an option that
    /// is not a format option is an error (options the user gave for this
    /// write) rather than skipped (a table's options, which may also
    /// configure reading).
    fn writer_options(&self, strict: bool) -> Result<HashMap<String, String>> {
        let mut map = HashMap::new();
        for (k, v) in &self.options {
            let key = option_key(k);
            if key.starts_with("format.") {
                map.insert(key, v.clone());
            } else if strict {
                return Err(Error::BadOutput(format!(
                    "unknown write option '{k}' (write options are the format's: \
                     compression, has_header, delimiter, ...)"
                )));
            }
        }
        if self.format == FileFormat::Text {
            for key in map.keys() {
                if key != "format.compression" && strict {
                    return Err(Error::BadOutput(format!(
                        "TEXT files take one option, compression (gzip or zstd), not '{key}'"
                    )));
                }
            }
            if let Some(c) = map.get("format.compression") {
                text_compression(c)?;
            }
        }
        Ok(map)
    }

    /// The options as a table keeps them (keys as the engine knows them).
    pub fn table_options(&self) -> Vec<(String, String)> {
        self.options
            .iter()
            .map(|(k, v)| (option_key(k), v.clone()))
            .collect()
    }

    /// Checks the options before anything is written.
    pub fn check(&self) -> Result<()> {
        self.writer_options(true).map(|_| ())
    }
}

/// The rows a writer reports: DataFusion's writers (and spate's) answer
/// with one `count` column.
pub fn written_rows(batches: &[arrow::record_batch::RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .map(|a| a.iter().flatten().sum::<u64>())
        })
        .sum()
}

/// Does `location` name a file (its last part has an extension) rather
/// than a directory?
pub fn names_a_file(location: &str) -> bool {
    if location.ends_with('/') {
        return false;
    }
    let last = location.rsplit('/').next().unwrap_or(location);
    matches!(last.rsplit_once('.'), Some((stem, ext)) if !stem.is_empty() && !ext.is_empty())
}

/// "`location` already exists" as every writer says it.
fn exists_error(location: &str) -> Error {
    Error::OutputExists {
        path: PathBuf::from(location),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_keys_and_text_options() {
        assert_eq!(option_key(" Compression "), "format.compression");
        assert_eq!(option_key("parquet.compression"), "format.compression");
        assert_eq!(option_key("format.has_header"), "format.has_header");
        let text = |k: &str, v: &str| Output {
            format: FileFormat::Text,
            options: vec![(k.into(), v.into())],
            partition_by: Vec::new(),
        };
        assert!(text("compression", "gzip").check().is_ok());
        assert!(matches!(
            text("compression", "bzip2").check(),
            Err(Error::BadOutput(m)) if m.contains("bzip2")
        ));
        assert!(text("has_header", "true").check().is_err());
        assert!(text("nonsense.key", "1").check().is_err());
    }

    #[test]
    fn file_names_and_directory_names() {
        assert!(names_a_file("out/rows.parquet"));
        assert!(names_a_file("s3://b/rows.csv.gz"));
        assert!(!names_a_file("out/rows"));
        assert!(!names_a_file("out/rows.d/"));
        assert!(!names_a_file("out/.hidden"));
    }
}
