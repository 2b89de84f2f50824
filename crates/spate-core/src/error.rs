//! Errors of spate's model and planner.

use datafusion::error::DataFusionError;

/// Result alias for spate-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A spate error. Variants follow the phase that failed; each names what the
/// user can act on (the step, the file, the offset).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user's input or arguments are wrong (missing file, bad UTF-8, output exists).
    #[error(transparent)]
    Input(spate_io::Error),
    /// A user function failed (panicked) while the job ran.
    #[error("step '{step}' failed: {message}")]
    Step {
        /// The step's stable name.
        step: String,
        /// The panic message or error.
        message: String,
    },
    /// A row type cannot be represented as Arrow columns, or rows do not match it.
    #[error("row type {type_name}: {message}")]
    Schema {
        /// The Rust type.
        type_name: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The job could not be planned.
    #[error("planning failed: {0}")]
    Plan(String),
    /// Invalid configuration or arguments.
    #[error("{0}")]
    Usage(String),
    /// The engine failed while running the job.
    #[error("execution failed: {0}")]
    Execution(DataFusionError),
    /// The job needed more memory than its budget allows, even spilling.
    #[error("out of memory budget: {0} (give a larger --memory-limit, or fewer --threads)")]
    Memory(String),
    /// Storage failed under a correct request: the catalog database, an
    /// object store, a full or failing disk (a job failure, exit code 1).
    #[error("{0}")]
    Storage(String),
    /// A bug in spate.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the error is the user's input or arguments (CLI exit code 2),
    /// as opposed to a job that failed while running (exit code 1).
    pub fn is_user_input(&self) -> bool {
        match self {
            Error::Input(e) => e.is_user_input(),
            Error::Usage(_) => true,
            _ => false,
        }
    }
}

impl Error {
    /// An owned copy of this error, for an error that must be reported
    /// again to every later use (errors hold causes that are not `Clone`;
    /// the copy keeps the variant and the message).
    pub fn replay(&self) -> Error {
        match self {
            Error::Input(e) => clone_io(e),
            Error::Step { step, message } => Error::Step {
                step: step.clone(),
                message: message.clone(),
            },
            Error::Schema { type_name, message } => Error::Schema {
                type_name,
                message: message.clone(),
            },
            Error::Plan(m) => Error::Plan(m.clone()),
            Error::Usage(m) => Error::Usage(m.clone()),
            Error::Execution(e) => Error::Execution(DataFusionError::Execution(e.to_string())),
            Error::Memory(m) => Error::Memory(m.clone()),
            Error::Storage(m) => Error::Storage(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }
}

/// An error raised inside a DataFusion node by spate code; carried through
/// DataFusion as `DataFusionError::External` and unwrapped again by [`from_df`].
#[derive(Debug, thiserror::Error)]
#[error("step '{step}' failed: {message}")]
pub struct StepError {
    /// The step's stable name.
    pub step: String,
    /// What went wrong.
    pub message: String,
}

impl From<StepError> for DataFusionError {
    fn from(e: StepError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// Turns an engine error back into the spate error it carries, if any.
pub fn from_df(e: DataFusionError) -> Error {
    fn find(e: &(dyn std::error::Error + 'static)) -> Option<Error> {
        if let Some(se) = e.downcast_ref::<StepError>() {
            return Some(Error::Step {
                step: se.step.clone(),
                message: se.message.clone(),
            });
        }
        if let Some(df) = e.downcast_ref::<DataFusionError>() {
            match df {
                DataFusionError::External(inner) => return find(inner.as_ref()),
                DataFusionError::Context(_, inner) => return find(inner.as_ref()),
                DataFusionError::Shared(inner) => return find(inner.as_ref()),
                DataFusionError::ArrowError(inner, _) => return find(inner.as_ref()),
                DataFusionError::ResourcesExhausted(msg) => {
                    return Some(Error::Memory(msg.clone()));
                }
                _ => {}
            }
        }
        if let Some(io) = e.downcast_ref::<spate_io::Error>() {
            return Some(clone_io(io));
        }
        if let Some(ae) = e.downcast_ref::<arrow::error::ArrowError>()
            && let arrow::error::ArrowError::ExternalError(inner) = ae
        {
            return find(inner.as_ref());
        }
        None
    }
    match find(&e) {
        Some(found) => found,
        None => Error::Execution(e),
    }
}

/// spate-io errors are not `Clone` (they hold `io::Error`); rebuild an owned copy.
fn clone_io(e: &spate_io::Error) -> Error {
    use spate_io::Error as E;
    Error::Input(match e {
        E::InputNotFound { path } => E::InputNotFound { path: path.clone() },
        E::BadPattern { pattern, message } => E::BadPattern {
            pattern: pattern.clone(),
            message: message.clone(),
        },
        E::Io { op, path, source } => E::Io {
            op,
            path: path.clone(),
            // The OS error number decides whether it is the disk's fault.
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        E::InvalidUtf8 {
            path,
            offset,
            line_start,
        } => E::InvalidUtf8 {
            path: path.clone(),
            offset: *offset,
            line_start: *line_start,
        },
        E::OutputExists { path } => E::OutputExists { path: path.clone() },
        E::LineTooLong {
            path,
            offset,
            limit,
        } => E::LineTooLong {
            path: path.clone(),
            offset: *offset,
            limit: *limit,
        },
        E::UnsupportedCompression { path, suffix } => E::UnsupportedCompression {
            path: path.clone(),
            suffix,
        },
        E::BadOutput(m) => return Error::Usage(m.clone()),
        E::Storage(m) => return Error::Storage(m.clone()),
        E::Engine(e) => return Error::Execution(DataFusionError::Execution(e.to_string())),
        other => return Error::Internal(other.to_string()),
    })
}

/// An I/O-layer error in the variant of its phase: a bad output location
/// or option is a usage error, a failing store a storage failure, an engine
/// error from a write keeps what it carries (a failed step, the memory
/// budget); the rest are input errors.
impl From<spate_io::Error> for Error {
    fn from(e: spate_io::Error) -> Self {
        match e {
            spate_io::Error::BadOutput(m) => Error::Usage(m),
            spate_io::Error::Storage(m) => Error::Storage(m),
            spate_io::Error::Engine(e) => from_df(e),
            e => Error::Input(e),
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        from_df(e)
    }
}
