//! Errors of the I/O layer.

use std::path::PathBuf;

/// Result alias for spate-io.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An I/O-layer error. Each variant names the file (and offset) it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input path, directory or glob matched nothing.
    #[error("input path does not exist: {}", path.display())]
    InputNotFound {
        /// The path as the user gave it.
        path: PathBuf,
    },
    /// A glob pattern could not be parsed.
    #[error("invalid input pattern {pattern:?}: {message}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "creating", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Text input that is not valid UTF-8.
    #[error(
        "invalid UTF-8 in {} at byte offset {offset} (in the line starting at byte offset {line_start})",
        path.display()
    )]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte in the (decompressed) file.
        offset: u64,
        /// Offset of the start of the line holding it.
        line_start: u64,
    },
    /// The output (a directory or a file) exists already; spate never
    /// overwrites output.
    #[error("output already exists: {} (remove it or write somewhere else)", path.display())]
    OutputExists {
        /// The output.
        path: PathBuf,
    },
    /// An input compressed in a way the text reader does not decode; it is
    /// refused rather than read as plain text.
    #[error(
        "{}: {suffix} files are not read as text (spate decodes .gz and .zst); decompress it first",
        path.display()
    )]
    UnsupportedCompression {
        /// The file.
        path: PathBuf,
        /// Its suffix (`.bz2`, `.xz`).
        suffix: &'static str,
    },
    /// An output location or write option that cannot be used (a glob
    /// character in the path, a bucket root, an unknown option).
    #[error("{0}")]
    BadOutput(String),
    /// An input location that cannot be read: an object-store URL that
    /// names no bucket, or whose store is not set up.
    #[error("{0}")]
    BadInput(String),
    /// A store failed under a correct request (an object store, a full or
    /// failing disk): the job failed.
    #[error("{0}")]
    Storage(String),
    /// The engine failed while producing the rows being written; the
    /// original error, so that its cause (a failed step, the memory budget)
    /// is kept.
    #[error(transparent)]
    Engine(datafusion::error::DataFusionError),
    /// A line longer than the reader accepts (a sign of binary input).
    #[error("line longer than {limit} bytes in {} at byte offset {offset}", path.display())]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// Offset of the start of the line.
        offset: u64,
        /// The limit in bytes.
        limit: usize,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether the error is about the user's input or arguments (exit code 2)
    /// rather than a failure while running (exit code 1).
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            Error::InputNotFound { .. }
                | Error::BadPattern { .. }
                | Error::InvalidUtf8 { .. }
                | Error::OutputExists { .. }
                | Error::LineTooLong { .. }
                | Error::UnsupportedCompression { .. }
                | Error::BadOutput(_)
                | Error::BadInput(_)
        ) || matches!(self, Error::Io { op, source, .. }
                if USER_OPS.contains(op) && !storage_failure(source))
    }
}

/// A disk that is full, read-only or failing: the job failed, whatever
/// the user asked for.
fn storage_failure(e: &std::io::Error) -> bool {
    const EIO: i32 = 5;
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::ReadOnlyFilesystem
    ) || e.raw_os_error() == Some(EIO)
}

/// I/O on the user's inputs and on preparing the output directory (before
/// anything runs); failures while writing output are job failures.
const USER_OPS: &[&str] = &[
    "opening",
    "reading",
    "listing",
    "seeking in",
    "preparing output",
];

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::Engine(e) => e,
            e => datafusion::error::DataFusionError::External(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_are_usage_errors_and_write_errors_are_failures() {
        let io = || std::io::Error::other("boom");
        assert!(Error::io("reading", "in.txt", io()).is_user_input());
        assert!(Error::io("preparing output", "out", io()).is_user_input());
        assert!(!Error::io("writing", "out/part-00000", io()).is_user_input());
        assert!(!Error::io("publishing", "out", io()).is_user_input());
        assert!(Error::InputNotFound { path: "x".into() }.is_user_input());
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(!Error::io("preparing output", "out", full()).is_user_input());
        assert!(
            !Error::io("reading", "in.txt", std::io::Error::from_raw_os_error(5)).is_user_input()
        );
    }
}
