//! The job model, after Dataproc's `google.cloud.dataproc.v1.Job`: its
//! JSON (camelCase, as Google's APIs write it), its states, and the checks
//! a submitted job passes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A job's state (Dataproc's `JobStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Recorded; nothing done yet.
    Pending,
    /// Its work directory is ready.
    SetupDone,
    /// Waiting for a slot (substate `QUEUED`) or running.
    Running,
    /// A cancel was asked for; the job's processes are being stopped.
    CancelPending,
    /// Ended with success.
    Done,
    /// Failed, timed out, or lost when the server restarted.
    Error,
    /// Cancelled.
    Cancelled,
}

impl State {
    /// The name in the API.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::SetupDone => "SETUP_DONE",
            State::Running => "RUNNING",
            State::CancelPending => "CANCEL_PENDING",
            State::Done => "DONE",
            State::Error => "ERROR",
            State::Cancelled => "CANCELLED",
        }
    }

    /// Parses [`State::name`].
    pub fn parse(s: &str) -> Option<Self> {
        ALL_STATES.iter().copied().find(|st| st.name() == s)
    }

    /// Whether the job has ended (`done` in the API).
    pub fn is_done(self) -> bool {
        matches!(self, State::Done | State::Error | State::Cancelled)
    }
}

/// Every state, in life order.
pub const ALL_STATES: [State; 7] = [
    State::Pending,
    State::SetupDone,
    State::Running,
    State::CancelPending,
    State::Done,
    State::Error,
    State::Cancelled,
];

/// Dataproc's `JobStatus.Substate`: what a running job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Substate {
    /// Waiting for a slot (the details say why).
    Queued,
    /// Its process runs.
    Submitted,
}

/// A state with when it began and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The state.
    pub state: State,
    /// Why (a failure's cause, a queue's reason); may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the state began (RFC 3339, UTC).
    pub state_start_time: String,
    /// What a running job is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substate: Option<Substate>,
}

/// The kinds of job, each run by the `spate` verb of the same work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `spate sql ARGS`: statements (`-c`), files (`-f`).
    Sql,
    /// `spate run ARGS`: a built-in job (`wordcount`, `most-used-word`).
    Builtin,
    /// `spate streaming ARGS`: Hadoop Streaming.
    Streaming,
    /// `spate mrjob ARGS`: an mrjob script.
    Mrjob,
    /// A program built with spate, uploaded: `PROGRAM ARGS`.
    Binary,
    /// `spate stream ARGS`: a stream, resumable from its checkpoint; its
    /// progress lines (one per micro-batch) are its live log.
    Stream,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Sql,
        Kind::Builtin,
        Kind::Streaming,
        Kind::Mrjob,
        Kind::Binary,
        Kind::Stream,
    ];

    /// The job's field naming its kind (`sqlJob`, ...), as Dataproc's
    /// `sparkSqlJob`, `hadoopJob`.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Sql => "sqlJob",
            Kind::Builtin => "builtinJob",
            Kind::Streaming => "streamingJob",
            Kind::Mrjob => "mrjobJob",
            Kind::Binary => "binaryJob",
            Kind::Stream => "streamJob",
        }
    }

    /// The word for it on the command line and in listings.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Sql => "sql",
            Kind::Builtin => "builtin",
            Kind::Streaming => "streaming",
            Kind::Mrjob => "mrjob",
            Kind::Binary => "binary",
            Kind::Stream => "stream",
        }
    }

    /// The `spate` verb that runs it (`None`: the job is its own program).
    pub fn verb(self) -> Option<&'static str> {
        match self {
            Kind::Sql => Some("sql"),
            Kind::Builtin => Some("run"),
            Kind::Streaming => Some("streaming"),
            Kind::Mrjob => Some("mrjob"),
            Kind::Binary => None,
            Kind::Stream => Some("stream"),
        }
    }

    /// Parses [`Kind::word`].
    pub fn parse(word: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.word() == word)
    }
}

/// What a job of one kind runs: the arguments its verb takes, and the
/// uploaded files it needs in its work directory (a script, side files, a
/// program).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Program {
    /// The verb's arguments, as on the command line (for `binaryJob`: the
    /// program's name among `files`, then its arguments).
    #[serde(default)]
    pub args: Vec<String>,
    /// Uploads placed in the job's work directory under their names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRef>,
    /// For `binaryJob`, a program built with spate: run its own cluster
    /// roles first, a scheduler and this many executors of the program
    /// (`PROGRAM cluster up`), and the program as their driver
    /// (`SPATE_CLUSTER`); the cluster is stopped when the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executors: Option<u32>,
    /// Settings, as Dataproc's job `properties`: `spate.threads` and
    /// `spate.memory-limit` for every kind but binary; Hadoop properties
    /// for streaming (`-D`) and mrjob (`--jobconf`) jobs; `datafusion.*`
    /// options for SQL jobs (`SET`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl Program {
    /// The verb's arguments with the properties put in: those before
    /// the given arguments, the given ones, those after. A property the
    /// kind has no place for is refused, naming it.
    pub fn args_with_properties(&self, kind: Kind) -> Result<Vec<String>, ApiError> {
        let field = |key: &str| format!("job.{}.properties.{key}", kind.field());
        let mut before = Vec::new();
        let mut after = Vec::new();
        for (key, value) in &self.properties {
            match (kind, key.as_str()) {
                (Kind::Binary, _) => {
                    return Err(ApiError::invalid(
                        field(key),
                        "a binary job takes no properties: give its program its arguments",
                    ));
                }
                (_, "spate.threads") => {
                    before.extend(["--threads".to_string(), value.clone()]);
                }
                (_, "spate.memory-limit") => {
                    before.extend(["--memory-limit".to_string(), value.clone()]);
                }
                (Kind::Streaming, _) => before.extend(["-D".to_string(), format!("{key}={value}")]),
                (Kind::Mrjob, _) => {
                    after.extend(["--jobconf".to_string(), format!("{key}={value}")])
                }
                (Kind::Sql, k) if k.starts_with("datafusion.") => {
                    before.extend([
                        "-c".to_string(),
                        format!("SET {key} = '{}'", value.replace('\'', "''")),
                    ]);
                }
                _ => {
                    return Err(ApiError::invalid(
                        field(key),
                        format!(
                            "{key}: a {} job takes spate.threads, spate.memory-limit{}",
                            kind.word(),
                            match kind {
                                Kind::Sql => " and datafusion.* options",
                                _ => "",
                            }
                        ),
                    ));
                }
            }
        }
        // Hadoop properties go after an mrjob job's script, with its own
        // options; spate's go before.
        let mut args = Vec::with_capacity(before.len() + self.args.len() + after.len());
        args.extend(before);
        args.extend(self.args.iter().cloned());
        args.extend(after);
        Ok(args)
    }
}

/// An uploaded file (`POST /api/v1/uploads`) and the name it has in the
/// job's work directory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRef {
    /// The upload's id, as the server gave it.
    pub upload: String,
    /// A plain file name: letters, digits, `.`, `_`, `-`, `+`; not hidden.
    pub name: String,
}

/// Whether `name` may name a file in a job's work directory: one plain
/// path component, never `..`, a hidden name or a separator.
pub fn valid_file_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// Whether `id` is an upload id as the server makes them.
pub fn valid_upload_id(id: &str) -> bool {
    id.strip_prefix("upl-").is_some_and(|rest| {
        rest.len() == 36 && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    })
}

/// The job's reference: its client-given id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reference {
    /// Unique among the server's jobs; the server makes one when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_id: String,
}

/// Where a job runs (Dataproc's `JobPlacement`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// The cluster's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// The cluster's uuid, set by the server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_uuid: String,
}

/// Restarts of a failed job (Dataproc's `JobScheduling`): 0 is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scheduling {
    /// Restarts allowed within any hour (at most 10).
    #[serde(default)]
    pub max_failures_per_hour: u32,
    /// Restarts allowed in all (at most 240).
    #[serde(default)]
    pub max_failures_total: u32,
}

/// A job: what the client sends (`reference`, one program, `labels`,
/// `scheduling`, `timeout`) and what the server adds (`jobUuid`,
/// `status`, `statusHistory`, `done`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// The client's id for it.
    #[serde(default)]
    pub reference: Reference,
    /// `spate sql` arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_job: Option<Program>,
    /// `spate run` arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_job: Option<Program>,
    /// `spate streaming` arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming_job: Option<Program>,
    /// `spate mrjob` arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrjob_job: Option<Program>,
    /// An uploaded program built with spate, and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_job: Option<Program>,
    /// `spate stream` arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_job: Option<Program>,
    /// Where it runs: a cluster of the server's (none: on the server's
    /// host, in the job's own process).
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// Labels: lowercase keys, for filters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Restarts after failures.
    #[serde(default, skip_serializing_if = "is_default")]
    pub scheduling: Scheduling,
    /// How long the job may run (`"600s"`, as Google's JSON writes
    /// durations); it is cancelled with ERROR past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The server's id for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_uuid: String,
    /// Its state now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Its earlier states, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_history: Vec<Status>,
    /// Whether it has ended.
    #[serde(default)]
    pub done: bool,
    /// Where its driver output (standard output and error) is read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver_output_resource_uri: String,
    /// Its process's exit code, once it has ended by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How many times it failed and was restarted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// `POST /api/v1/jobs`: Dataproc's `SubmitJobRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitRequest {
    /// The job.
    pub job: Job,
    /// Makes the submission idempotent: the same id gives the same job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// `GET /api/v1/jobs`: a page of jobs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    /// The jobs, newest first.
    #[serde(default)]
    pub jobs: Vec<Job>,
    /// Pass as `pageToken` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

impl Job {
    /// The job's kind and program; exactly one must be given.
    pub fn program(&self) -> Result<(Kind, &Program), ApiError> {
        let given: Vec<(Kind, &Program)> = [
            (Kind::Sql, &self.sql_job),
            (Kind::Builtin, &self.builtin_job),
            (Kind::Streaming, &self.streaming_job),
            (Kind::Mrjob, &self.mrjob_job),
            (Kind::Binary, &self.binary_job),
            (Kind::Stream, &self.stream_job),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.as_ref().map(|p| (k, p)))
        .collect();
        match given.as_slice() {
            [one] => Ok(*one),
            [] => Err(ApiError::invalid(
                "job",
                "a job needs one of sqlJob, builtinJob, streamingJob, mrjobJob, binaryJob, streamJob",
            )),
            _ => Err(ApiError::invalid(
                "job",
                "a job has exactly one of sqlJob, builtinJob, streamingJob, mrjobJob, binaryJob, streamJob",
            )),
        }
    }

    /// A job's program of `kind`.
    pub fn with_program(kind: Kind, args: Vec<String>) -> Self {
        let program = Some(Program {
            args,
            ..Program::default()
        });
        let mut job = Job::default();
        match kind {
            Kind::Sql => job.sql_job = program,
            Kind::Builtin => job.builtin_job = program,
            Kind::Streaming => job.streaming_job = program,
            Kind::Mrjob => job.mrjob_job = program,
            Kind::Binary => job.binary_job = program,
            Kind::Stream => job.stream_job = program,
        }
        job
    }

    /// The job's program, to change.
    pub fn program_mut(&mut self) -> Option<&mut Program> {
        [
            &mut self.sql_job,
            &mut self.builtin_job,
            &mut self.streaming_job,
            &mut self.mrjob_job,
            &mut self.binary_job,
            &mut self.stream_job,
        ]
        .into_iter()
        .find_map(Option::as_mut)
    }

    /// The job's state now (PENDING before the server has one).
    pub fn state(&self) -> State {
        self.status.as_ref().map_or(State::Pending, |s| s.state)
    }

    /// The timeout in seconds, if any.
    pub fn timeout_seconds(&self) -> Result<Option<f64>, ApiError> {
        match &self.timeout {
            Some(text) => seconds_of(text, "job.timeout").map(Some),
            None => Ok(None),
        }
    }

    /// Checks what a client may set and clears what only the server sets.
    pub fn checked_submission(mut self) -> Result<Self, ApiError> {
        let (kind, program) = self.program()?;
        let field = format!("job.{}", kind.field());
        let mut names = std::collections::BTreeSet::new();
        for (i, file) in program.files.iter().enumerate() {
            if !valid_upload_id(&file.upload) {
                return Err(ApiError::invalid(
                    format!("{field}.files[{i}].upload"),
                    format!("{:?} is not an upload id this server gave", file.upload),
                ));
            }
            if !valid_file_name(&file.name) || !names.insert(file.name.as_str()) {
                return Err(ApiError::invalid(
                    format!("{field}.files[{i}].name"),
                    format!(
                        "{:?}: a file's name is a plain, unique file name (letters, digits, \
                         '.', '_', '-', '+'; not hidden, no directories)",
                        file.name
                    ),
                ));
            }
        }
        if kind == Kind::Binary
            && !program
                .args
                .first()
                .is_some_and(|p| names.contains(p.as_str()))
        {
            return Err(ApiError::invalid(
                format!("{field}.args"),
                "a binary job's first argument names its program, one of its files",
            ));
        }
        program.args_with_properties(kind)?;
        if let Some(n) = program.executors
            && (kind != Kind::Binary || !(1..=64).contains(&n))
        {
            return Err(ApiError::invalid(
                format!("{field}.executors"),
                "a binary job runs 1 to 64 executors of its own program; other jobs run on \
                 a cluster of the server's (placement.clusterName)",
            ));
        }
        if kind == Kind::Binary && !self.placement.cluster_name.is_empty() {
            return Err(ApiError::invalid(
                "job.placement.clusterName",
                "a binary job brings its own steps: its cluster is its own (binaryJob.executors), \
                 not one of the server's",
            ));
        }
        let id = &self.reference.job_id;
        if !id.is_empty() && (!valid_job_id(id) || looks_like_uuid(id)) {
            return Err(ApiError::invalid(
                "job.reference.jobId",
                format!(
                    "{id:?}: a job id has 1 to 100 letters, digits, underscores or hyphens, \
                     and is not shaped like a uuid (those are the server's)"
                ),
            ));
        }
        check_labels(&self.labels, "job.labels")?;
        let s = self.scheduling;
        if s.max_failures_per_hour > 10 {
            return Err(ApiError::invalid(
                "job.scheduling.maxFailuresPerHour",
                "at most 10",
            ));
        }
        if s.max_failures_total > 240 {
            return Err(ApiError::invalid(
                "job.scheduling.maxFailuresTotal",
                "at most 240",
            ));
        }
        self.timeout_seconds()?;
        self.placement.cluster_uuid.clear();
        self.job_uuid.clear();
        self.status = None;
        self.status_history.clear();
        self.done = false;
        self.driver_output_resource_uri.clear();
        self.exit_code = None;
        self.failures = 0;
        Ok(self)
    }
}

/// Google's rules for labels: at most 32; keys start with a lowercase
/// letter; keys and values have at most 63 lowercase letters, digits,
/// underscores or hyphens.
fn check_labels(labels: &BTreeMap<String, String>, field: &str) -> Result<(), ApiError> {
    if labels.len() > 32 {
        return Err(ApiError::invalid(field, "at most 32 labels"));
    }
    for (key, value) in labels {
        if !valid_label(key, true) {
            return Err(ApiError::invalid(
                format!("{field}.{key}"),
                format!(
                    "{key:?}: a label key starts with a lowercase letter and has at most \
                     63 lowercase letters, digits, underscores or hyphens"
                ),
            ));
        }
        if !valid_label(value, false) {
            return Err(ApiError::invalid(
                format!("{field}.{key}"),
                format!(
                    "{value:?}: a label value has at most 63 lowercase letters, digits, \
                     underscores or hyphens"
                ),
            ));
        }
    }
    Ok(())
}

/// Dataproc's rule for job ids (a uuid's shape is the server's alone).
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `s` has a uuid's shape (8-4-4-4-12 hex digits): the server's
/// ids for jobs and clusters, which no client-given id or name may take,
/// so that a lookup by "id or uuid" finds one record.
pub fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Google's rule for label keys and values.
fn valid_label(s: &str, key: bool) -> bool {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    let first_ok = !key || s.starts_with(|c: char| c.is_ascii_lowercase());
    s.len() <= 63 && ok_chars && first_ok
}

/// A condition of a job listing's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `status.state = ACTIVE` (not done) or `NON_ACTIVE` (done), or one
    /// state.
    State(StateFilter),
    /// `labels.KEY = VALUE`.
    Label(String, String),
    /// `labels.KEY:*`: the label is set.
    HasLabel(String),
}

/// Which states a filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Not done.
    Active,
    /// Done.
    NonActive,
    /// This state.
    Is(State),
}

/// Parses a listing's filter, Dataproc's syntax: conditions joined by
/// `AND`, each `status.state = ACTIVE|NON_ACTIVE|<STATE>`,
/// `labels.KEY = VALUE` or `labels.KEY:*`.
pub fn parse_filter(filter: &str) -> Result<Vec<Condition>, ApiError> {
    let bad = |m: String| ApiError::invalid("filter", m);
    let mut out = Vec::new();
    if filter.trim().is_empty() {
        return Ok(out);
    }
    for clause in split_and(filter) {
        let clause = clause.trim();
        if let Some(key) = clause
            .strip_suffix(":*")
            .and_then(|f| f.trim().strip_prefix("labels."))
        {
            out.push(Condition::HasLabel(key.trim().to_string()));
            continue;
        }
        let Some((field, value)) = clause.split_once('=') else {
            return Err(bad(format!(
                "{clause:?}: a condition is FIELD = VALUE or labels.KEY:*"
            )));
        };
        let field = field.trim();
        let value = value.trim().trim_matches('"');
        if field == "status.state" {
            let upper = value.to_ascii_uppercase();
            let state = match upper.as_str() {
                "ACTIVE" => StateFilter::Active,
                "NON_ACTIVE" => StateFilter::NonActive,
                other => StateFilter::Is(State::parse(other).ok_or_else(|| {
                    bad(format!(
                        "{value:?} is not ACTIVE, NON_ACTIVE or a job state ({})",
                        ALL_STATES.map(State::name).join(", ")
                    ))
                })?),
            };
            out.push(Condition::State(state));
        } else if let Some(key) = field.strip_prefix("labels.") {
            out.push(Condition::Label(key.to_string(), value.to_string()));
        } else {
            return Err(bad(format!(
                "{field:?}: filters are on status.state and labels.KEY"
            )));
        }
    }
    Ok(out)
}

/// Splits on the word `AND` (any case), outside quotes.
fn split_and(filter: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let words: Vec<&str> = filter.split(' ').collect();
    for word in words {
        quoted ^= word.matches('"').count() % 2 == 1;
        if !quoted && word.eq_ignore_ascii_case("and") {
            parts.push(std::mem::take(&mut current));
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
    }
    parts.push(current);
    parts
}

/// Whether `job` meets every condition.
pub fn matches(job: &Job, conditions: &[Condition]) -> bool {
    conditions.iter().all(|c| match c {
        Condition::State(StateFilter::Active) => !job.state().is_done(),
        Condition::State(StateFilter::NonActive) => job.state().is_done(),
        Condition::State(StateFilter::Is(s)) => job.state() == *s,
        Condition::Label(k, v) => job.labels.get(k) == Some(v),
        Condition::HasLabel(k) => job.labels.contains_key(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_dataproc_writes_them() {
        let f = parse_filter("status.state = ACTIVE AND labels.env = staging").unwrap();
        assert_eq!(
            f,
            [
                Condition::State(StateFilter::Active),
                Condition::Label("env".into(), "staging".into())
            ]
        );
        assert_eq!(
            parse_filter("labels.team:* and status.state = done").unwrap(),
            [
                Condition::HasLabel("team".into()),
                Condition::State(StateFilter::Is(State::Done))
            ]
        );
        let e = parse_filter("status.state = SLEEPING").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("filter"));
        assert!(parse_filter("placement = x").is_err());
        assert!(parse_filter("").unwrap().is_empty());
    }

    #[test]
    fn submissions_are_checked_field_by_field() {
        let job = Job::with_program(Kind::Sql, vec!["-c".into(), "SELECT 1".into()]);
        assert!(job.clone().checked_submission().is_ok());
        let mut two = job.clone();
        two.builtin_job = Some(Program::default());
        assert_eq!(
            two.checked_submission().unwrap_err().field.as_deref(),
            Some("job")
        );
        let mut id = job.clone();
        id.reference.job_id = "../etc".into();
        assert_eq!(
            id.checked_submission().unwrap_err().field.as_deref(),
            Some("job.reference.jobId")
        );
        let mut label = job.clone();
        label.labels.insert("Env".into(), "x".into());
        assert_eq!(
            label.checked_submission().unwrap_err().field.as_deref(),
            Some("job.labels.Env")
        );
        let mut timeout = job;
        timeout.timeout = Some("10m".into());
        assert_eq!(
            timeout.checked_submission().unwrap_err().field.as_deref(),
            Some("job.timeout")
        );
    }
}

/// A cluster's state (Dataproc's `ClusterStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterState {
    /// Its processes are starting.
    Creating,
    /// Its scheduler answers and every executor has registered.
    Running,
    /// Its processes failed (the detail says how); `start` tries again.
    Error,
    /// Its processes are being stopped.
    Stopping,
    /// Stopped: no process; `start` brings it back.
    Stopped,
    /// Its processes are starting again.
    Starting,
    /// Being deleted.
    Deleting,
}

impl ClusterState {
    /// The name in the API.
    pub fn name(self) -> &'static str {
        match self {
            ClusterState::Creating => "CREATING",
            ClusterState::Running => "RUNNING",
            ClusterState::Error => "ERROR",
            ClusterState::Stopping => "STOPPING",
            ClusterState::Stopped => "STOPPED",
            ClusterState::Starting => "STARTING",
            ClusterState::Deleting => "DELETING",
        }
    }
}

/// A cluster's state with when it began and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The state.
    pub state: ClusterState,
    /// Why, when there is more to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// When the state began (RFC 3339, UTC).
    pub state_start_time: String,
}

/// What a cluster is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// Executors the server starts on its own host (1 to 64; 0 with
    /// `executorHosts`).
    pub executor_count: u32,
    /// Hosts whose executors join by themselves (`spate cluster executor
    /// --scheduler ADDRESS --advertise HOST`, run there): the server starts
    /// only the scheduler, and shows which of these hosts have joined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executor_hosts: Vec<String>,
    /// The IP address the scheduler listens on for executors on other
    /// hosts (default: every interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_host: Option<String>,
    /// Task slots per executor (default: the cores shared among them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_per_executor: Option<u32>,
    /// Deleted after this long without a job (`"600s"`), as Dataproc's
    /// `lifecycleConfig.idleDeleteTtl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_delete_ttl: Option<String>,
}

/// An executor as its scheduler reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorView {
    /// Its id.
    pub id: String,
    /// `host:port` of its shuffle service.
    pub address: String,
    /// Its task slots.
    pub slots: u32,
    /// Whether its last heartbeat is recent.
    pub healthy: bool,
}

/// A cluster: a Ballista scheduler and its executors, processes on the
/// server's host that the server starts, stops and deletes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Its name: 1 to 54 lowercase letters, digits or hyphens, starting
    /// with a letter (Dataproc's rule).
    pub cluster_name: String,
    /// What it is made of.
    #[serde(default)]
    pub config: ClusterConfig,
    /// Labels, for filters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The server's id for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_uuid: String,
    /// Its state now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterStatus>,
    /// Its earlier states, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_history: Vec<ClusterStatus>,
    /// The scheduler's `host:port` while it runs (jobs are sent there).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheduler_address: String,
    /// Its executors, as the scheduler reports them (in `describe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executors: Vec<ExecutorView>,
    /// Its jobs not yet ended (in `describe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_jobs: Vec<String>,
    /// Of its `executorHosts`, those with no healthy executor (in `describe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_hosts: Vec<String>,
}

impl Cluster {
    /// The cluster's state now.
    pub fn state(&self) -> ClusterState {
        self.status
            .as_ref()
            .map_or(ClusterState::Creating, |s| s.state)
    }

    /// Checks what a client may set and clears what only the server sets.
    pub fn checked_submission(mut self) -> Result<Self, ApiError> {
        if !valid_cluster_name(&self.cluster_name) || looks_like_uuid(&self.cluster_name) {
            return Err(ApiError::invalid(
                "cluster.clusterName",
                format!(
                    "{:?}: a cluster name has 1 to 54 lowercase letters, digits or hyphens, \
                     starting with a letter",
                    self.cluster_name
                ),
            ));
        }
        let hosts = &self.config.executor_hosts;
        let local = if hosts.is_empty() { 1..=64 } else { 0..=0 };
        if !local.contains(&self.config.executor_count) {
            return Err(ApiError::invalid(
                "cluster.config.executorCount",
                if hosts.is_empty() {
                    "a cluster has 1 to 64 executors"
                } else {
                    "a cluster of executorHosts has its executors there: executorCount is 0"
                },
            ));
        }
        if hosts.len() > 64
            || hosts.iter().any(|h| {
                h.is_empty()
                    || h.len() > 253
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            })
        {
            return Err(ApiError::invalid(
                "cluster.config.executorHosts",
                "at most 64 host names or IP addresses",
            ));
        }
        if let Some(ip) = &self.config.scheduler_host
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(ApiError::invalid(
                "cluster.config.schedulerHost",
                format!("{ip:?} is not an IP address"),
            ));
        }
        if self.config.slots_per_executor == Some(0) {
            return Err(ApiError::invalid(
                "cluster.config.slotsPerExecutor",
                "an executor has at least one task slot",
            ));
        }
        if let Some(ttl) = &self.config.idle_delete_ttl {
            seconds_of(ttl, "cluster.config.idleDeleteTtl")?;
        }
        check_labels(&self.labels, "cluster.labels")?;
        self.cluster_uuid.clear();
        self.status = None;
        self.status_history.clear();
        self.scheduler_address.clear();
        self.executors.clear();
        self.active_jobs.clear();
        self.missing_hosts.clear();
        Ok(self)
    }
}

/// Dataproc's rule for cluster names.
pub fn valid_cluster_name(name: &str) -> bool {
    (1..=54).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// The longest duration a job's timeout or a cluster's TTL may have.
const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

/// A duration as Google's JSON writes it (`"600s"`), in seconds: more
/// than zero, at most a year.
pub fn seconds_of(text: &str, field: &str) -> Result<f64, ApiError> {
    text.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n > 0.0 && *n <= MAX_DURATION_SECS)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{text:?} is not a duration in seconds such as \"600s\" (at most a year)"),
            )
        })
}

/// `POST /api/v1/clusters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateClusterRequest {
    /// The cluster.
    pub cluster: Cluster,
    /// Makes the request idempotent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// `GET /api/v1/clusters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterList {
    /// The clusters, by name.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

/// Slow work on a cluster (create, start, stop, delete), as Google's
/// long-running `Operation`: `done` once it has ended, with an `error` or
/// the cluster as its `response`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// `operations/UUID`.
    pub name: String,
    /// What it does and to which cluster.
    pub metadata: OperationMetadata,
    /// Whether it has ended.
    #[serde(default)]
    pub done: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    /// The cluster, once the operation succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Cluster>,
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationMetadata {
    /// CREATE, START, STOP or DELETE.
    pub operation_type: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// The cluster's uuid.
    pub cluster_uuid: String,
    /// When it began.
    pub start_time: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end_time: String,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationError {
    /// The HTTP code of the failure.
    pub code: u16,
    /// What went wrong.
    pub message: String,
}
