//! The REST API under `/api/v1`, Dataproc's resources and verbs:
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/jobs` | submits a job (`{"job": {...}, "requestId": "..."}`) |
//! | `GET /api/v1/jobs?filter=&pageSize=&pageToken=` | lists jobs, newest first |
//! | `GET /api/v1/jobs/{id}` | a job (by its id or uuid) |
//! | `POST /api/v1/jobs/{id}:cancel` | cancels it |
//! | `DELETE /api/v1/jobs/{id}` | deletes an ended job |
//! | `GET /api/v1/jobs/{id}/logs?offset=&limit=` | its output, a page of bytes |
//! | `GET /api/v1/jobs/{id}/logs?follow=true` | its output as server-sent events, live |
//! | `GET /api/v1/jobs/{id}/graph` | the plans it ran: steps, edges, metrics |
//! | `GET /api/v1/jobs/{id}/progress` | a stream job's recent batches and totals |
//! | `POST /api/v1/clusters` | creates a cluster (an operation) |
//! | `GET /api/v1/clusters` | lists clusters |
//! | `GET /api/v1/clusters/{name}` | a cluster, with its executors and active jobs |
//! | `POST /api/v1/clusters/{name}:start`, `:stop` | starts, stops it (operations) |
//! | `DELETE /api/v1/clusters/{name}` | deletes it (an operation); its jobs stay |
//! | `GET /api/v1/operations/{id}` | a cluster operation: done, error, response |
//! | `POST /api/v1/uploads` | stores a file (the body) for jobs: its id |
//! | `GET /api/v1/openapi.json` | this API as an OpenAPI 3 document, generated from the code |
//! | `GET /metrics` | the server's metrics for Prometheus |
//!
//! Every route needs `Authorization: Bearer TOKEN` unless the server runs
//! with `--no-auth`; every error is `{"error": {...}}` (see [`ApiError`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{ApiError, ErrorBody};
use crate::model::{
    Cluster, ClusterList, CreateClusterRequest, Job, JobList, Operation, SubmitRequest,
    parse_filter, valid_job_id,
};
use crate::runner::Jobs;

/// Largest request body: a job's arguments, not its data.
const MAX_BODY: usize = 1 << 20;

/// Largest page of log bytes.
const MAX_LOG_PAGE: u64 = 16 << 20;

#[derive(Clone)]
pub(crate) struct App {
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) token: Option<Arc<str>>,
    /// Served over HTTPS (the UI's cookie is then `Secure`).
    pub(crate) https: bool,
    /// Signed-in browsers' session ids (the UI's cookie): never the
    /// token itself, and gone when the server restarts.
    pub(crate) sessions: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The API's routes and the web UI over `jobs`; `token`: the bearer token
/// every request must carry (`None`: no authentication).
pub fn router(jobs: Arc<Jobs>, token: Option<String>, https: bool) -> Router {
    let app = App {
        jobs,
        token: token.map(Arc::from),
        https,
        sessions: Arc::default(),
    };
    Router::new()
        .merge(crate::ui::routes())
        .route("/api/v1/jobs", get(list).post(submit))
        .route(
            "/api/v1/jobs/{id}",
            get(describe).post(job_verb).delete(delete),
        )
        .route("/api/v1/jobs/{id}/logs", get(logs))
        .route("/api/v1/jobs/{id}/graph", get(graph))
        .route("/api/v1/jobs/{id}/progress", get(progress))
        .route("/api/v1/clusters", get(list_clusters).post(create_cluster))
        .route(
            "/api/v1/clusters/{name}",
            get(describe_cluster)
                .post(cluster_verb)
                .delete(delete_cluster),
        )
        .route("/api/v1/operations/{id}", get(operation))
        .route(
            "/api/v1/uploads",
            axum::routing::post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(prometheus))
        .fallback(|| async { ApiError::not_found("no such resource") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

async fn authenticate(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(token) = &app.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if crate::ui::is_public(path) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return if same(given.trim().as_bytes(), token.as_bytes()) {
            next.run(request).await
        } else {
            ApiError::unauthenticated("the bearer token is not this server's").into_response()
        };
    }
    if let Some(session) = crate::ui::cookie_session(request.headers())
        && app.has_session(session)
    {
        // A browser's request: a change must come from the server's own
        // pages, not from another site (or another port of this host).
        if !request.method().is_safe() && !crate::ui::same_origin(request.headers()) {
            return ApiError {
                code: 403,
                message: "a change from a browser must come from this server's own pages".into(),
                field: None,
            }
            .into_response();
        }
        return next.run(request).await;
    }
    if crate::ui::is_page(path) {
        return axum::response::Redirect::to("/login").into_response();
    }
    ApiError::unauthenticated(
        "this server needs Authorization: Bearer TOKEN (the token is in \
         $SPATE_HOME/server/token on the server's host)",
    )
    .into_response()
}

impl App {
    /// Whether `session` is a signed-in browser's.
    pub(crate) fn has_session(&self, session: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(session)
    }
}

/// A JSON request body `{"<what>": {...}, ...}`; one that does not say it
/// is JSON is refused (415), one that does not read names `what` (400).
fn json_request<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    json_body(headers)?;
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            what,
            format!("the request is not a {what} ({{\"{what}\": {{...}}}}): {e}"),
        )
    })
}

/// Refuses a body that does not say it is JSON (415): a form on another
/// site cannot send one without the browser asking first.
fn json_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError {
            code: 415,
            message: "the request body must be JSON (Content-Type: application/json)".into(),
            field: Some("Content-Type".into()),
        })
    }
}

/// Counts every request (refused ones too) by method and status.
async fn count(State(app): State<App>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    app.jobs.metrics.request(
        &method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: the server's metrics for Prometheus, with the latest
/// batch of every running stream job.
async fn prometheus(State(app): State<App>) -> Result<Response, ApiError> {
    let jobs = app.jobs.store.state_counts()?;
    let mut streams = Vec::new();
    for (job, _) in app.jobs.store.unfinished()? {
        if job.state() != crate::model::State::Running {
            continue;
        }
        if let Some(progress) = read_progress(&app, &job)? {
            streams.push((job.reference.job_id.clone(), progress));
        }
    }
    let mut text = app.jobs.metrics.render(&jobs);
    text.push_str(&crate::metrics::render_streams(&streams));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// A JSON file the job's process writes in its directory (`graph.json`,
/// `stages.json`, `progress.json`), if it wrote it.
fn read_job_json(app: &App, job: &Job, name: &str) -> Result<Option<serde_json::Value>, ApiError> {
    match std::fs::read(app.jobs.job_dir(&job.job_uuid).join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::internal(format!("reading the job's {name}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::internal(format!("reading the job's {name}: {e}"))),
    }
}

/// A job's progress file, if its process wrote one (a stream job does).
fn read_progress(app: &App, job: &Job) -> Result<Option<serde_json::Value>, ApiError> {
    read_job_json(app, job, crate::runner::PROGRESS_FILE)
}

/// Compares in time independent of where the texts differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The job a path names, by id or uuid.
fn find(app: &App, id: &str) -> Result<Job, ApiError> {
    let known = valid_job_id(id);
    let job = if known { app.jobs.store.get(id)? } else { None };
    job.ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// Submits a job; with a `requestId` already used, returns that job.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    request_body = SubmitRequest,
    responses(
        (status = 200, description = "The job, recorded (PENDING)", body = Job),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 409, description = "The job id is taken", body = ErrorBody),
    )
)]
async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Job>, ApiError> {
    let request: SubmitRequest = json_request(&headers, &body, "job")?;
    let job = app.jobs.submit(request.job, &request.request_id)?;
    Ok(axum::Json(job))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(default)]
    filter: String,
    page_size: Option<usize>,
    #[serde(default)]
    page_token: String,
}

/// Lists jobs, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    params(
        ("filter" = Option<String>, Query, description = "`status.state = ACTIVE|NON_ACTIVE|STATE`, `labels.KEY = VALUE`, `labels.KEY:*`, joined by AND"),
        ("pageSize" = Option<usize>, Query, description = "1 to 1000 (default 100)"),
        ("pageToken" = Option<String>, Query, description = "The previous page's nextPageToken"),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "A bad filter or page", body = ErrorBody),
    )
)]
async fn list(
    State(app): State<App>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<JobList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let conditions = parse_filter(&query.filter)?;
    let page_size = match query.page_size {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(
                "pageSize",
                format!("{n}: a page holds 1 to 1000 jobs"),
            ));
        }
    };
    let token = match query.page_token.as_str() {
        "" => None,
        t => Some(
            t.parse::<i64>()
                .map_err(|_| ApiError::invalid("pageToken", "not a token this server gave"))?,
        ),
    };
    let (jobs, next) = app.jobs.store.list(&conditions, page_size, token)?;
    Ok(axum::Json(JobList {
        jobs,
        next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
    }))
}

/// A job, by its id or uuid.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    params(("id" = String, Path, description = "The job's id or uuid")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
async fn describe(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<axum::Json<Job>, ApiError> {
    Ok(axum::Json(find(&app, &id)?))
}

/// Cancels a job: CANCEL_PENDING now, CANCELLED once its processes are gone.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}:cancel",
    params(("id" = String, Path, description = "The job's id or uuid")),
    responses(
        (status = 200, description = "The job, CANCEL_PENDING", body = Job),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has ended", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn cancel_doc() {}

/// `POST /jobs/{id}:VERB` (Google's custom methods).
async fn job_verb(
    State(app): State<App>,
    Path(id_verb): Path<String>,
) -> Result<axum::Json<Job>, ApiError> {
    match id_verb.rsplit_once(':') {
        Some((id, "cancel")) => {
            let job = find(&app, id)?;
            Ok(axum::Json(app.jobs.cancel(&job.job_uuid)?))
        }
        _ => Err(ApiError::not_found(format!(
            "no such resource: jobs/{id_verb} (jobs/ID:cancel cancels a job)"
        ))),
    }
}

/// Deletes an ended job: its record, log, graph and work directory.
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{id}",
    params(("id" = String, Path, description = "The job's id or uuid")),
    responses(
        (status = 200, description = "Deleted"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has not ended", body = ErrorBody),
    )
)]
async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let job = find(&app, &id)?;
    app.jobs.delete(&job.job_uuid)?;
    Ok(axum::Json(serde_json::json!({})))
}

/// The job's graph as its process wrote it when it ended: `{"plans":
/// [{"nodes": [...]}]}`, each node with its step, inputs and metrics (rows,
/// compute time, spills, rows per partition and their skew). A job on a
/// cluster also has `cluster_jobs` (the scheduler's ids) and
/// `cluster_stages` (per job id, its stages as the scheduler reports them:
/// rows, time, task duration and input percentiles). A job still running,
/// or one that ran no plan, has `{"plans": []}`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/graph",
    params(("id" = String, Path, description = "The job's id or uuid")),
    responses(
        (status = 200, description = "The plans the job ran, with their steps' metrics", body = Object),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
async fn graph(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let job = find(&app, &id)?;
    let read = |name: &str| read_job_json(&app, &job, name);
    let mut graph = read("graph.json")?.unwrap_or_else(|| serde_json::json!({"plans": []}));
    if let Some(stages) = read("stages.json")?
        && let Some(object) = graph.as_object_mut()
    {
        object.insert("cluster_stages".into(), stages);
    }
    Ok(axum::Json(graph).into_response())
}

/// `GET /api/v1/jobs/{id}/progress`: a stream job's progress, as its
/// process last wrote it (after every batch): `runStarted`, `updated`,
/// `bounded`, the run's `batches`, `inputRows` and `outputLines`,
/// `lateRecordsByStep` over the life of its checkpoint, and `recent`, its
/// last 100 batches oldest first (Spark's `recentProgress`: each with
/// `batch`, `processingTime`, `inputRows`, `inputRowsPerSecond`,
/// `processedRowsPerSecond`, `durationMs`, `watermark`, `watermarkLagMs`,
/// `stateEntries`, `panes`, `lateRecords`, `outputLines`). A job that ran
/// no batch, or is no stream, has `{"recent": []}`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/progress",
    params(("id" = String, Path, description = "The job's id or uuid")),
    responses(
        (status = 200, description = "The stream's recent batches and totals", body = Object),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
async fn progress(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let job = find(&app, &id)?;
    let progress = read_progress(&app, &job)?.unwrap_or_else(|| serde_json::json!({"recent": []}));
    Ok(axum::Json(progress).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
    #[serde(default)]
    follow: bool,
    /// `driver` (the job's own output, the default) or `executors` (its
    /// share of its cluster's processes' logs, once it has ended).
    #[serde(default)]
    source: Option<String>,
}

/// An upload's id and size.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// The id a job's `files` name it by.
    pub upload: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Stores the body as a file for a job to name in its `files` (a script,
/// side file or program); kept an hour.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The upload", body = Uploaded),
        (status = 413, description = "Larger than the server takes", body = ErrorBody),
    )
)]
async fn upload(
    State(app): State<App>,
    body: axum::body::Body,
) -> Result<axum::Json<Uploaded>, ApiError> {
    let (upload, size) = app.jobs.store_upload(body.into_data_stream()).await?;
    Ok(axum::Json(Uploaded { upload, size }))
}

/// Creates a cluster; the operation ends when it runs.
#[utoipa::path(
    post,
    path = "/api/v1/clusters",
    request_body = CreateClusterRequest,
    responses(
        (status = 200, description = "The operation creating it", body = Operation),
        (status = 400, description = "A field is wrong", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    )
)]
async fn create_cluster(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Operation>, ApiError> {
    let request: CreateClusterRequest = json_request(&headers, &body, "cluster")?;
    Ok(axum::Json(
        app.jobs
            .create_cluster(request.cluster, &request.request_id)?,
    ))
}

/// Every cluster, by name.
#[utoipa::path(
    get,
    path = "/api/v1/clusters",
    responses((status = 200, description = "The clusters", body = ClusterList))
)]
async fn list_clusters(State(app): State<App>) -> Result<axum::Json<ClusterList>, ApiError> {
    Ok(axum::Json(ClusterList {
        clusters: app.jobs.list_clusters()?,
    }))
}

/// A cluster, with its executors (as its scheduler reports them) and the
/// jobs running on it.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}",
    params(("name" = String, Path, description = "The cluster's name")),
    responses(
        (status = 200, description = "The cluster", body = Cluster),
        (status = 404, description = "No such cluster", body = ErrorBody),
    )
)]
async fn describe_cluster(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<axum::Json<Cluster>, ApiError> {
    known_cluster(&name)?;
    Ok(axum::Json(app.jobs.describe_cluster(&name).await?))
}

fn known_cluster(name: &str) -> Result<(), ApiError> {
    if crate::model::valid_cluster_name(name) || valid_job_id(name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no cluster {name}")))
    }
}

/// Starts a STOPPED or ERROR cluster, or stops a RUNNING one.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}:start",
    params(("name" = String, Path, description = "The cluster's name")),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 409, description = "Not in a state to start or stop", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn start_stop_doc() {}

/// `POST /clusters/{name}:start|:stop`.
async fn cluster_verb(
    State(app): State<App>,
    Path(name_verb): Path<String>,
) -> Result<axum::Json<Operation>, ApiError> {
    match name_verb.rsplit_once(':') {
        Some((name, "start")) => {
            known_cluster(name)?;
            Ok(axum::Json(app.jobs.start_cluster(name)?))
        }
        Some((name, "stop")) => {
            known_cluster(name)?;
            Ok(axum::Json(app.jobs.stop_cluster(name)?))
        }
        _ => Err(ApiError::not_found(format!(
            "no such resource: clusters/{name_verb} (clusters/NAME:start and :stop)"
        ))),
    }
}

/// Deletes a cluster that runs no job; the jobs it ran keep everything.
#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{name}",
    params(("name" = String, Path, description = "The cluster's name")),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 409, description = "It runs jobs, or is busy", body = ErrorBody),
    )
)]
async fn delete_cluster(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<axum::Json<Operation>, ApiError> {
    known_cluster(&name)?;
    Ok(axum::Json(app.jobs.delete_cluster(&name)?))
}

/// A cluster operation.
#[utoipa::path(
    get,
    path = "/api/v1/operations/{id}",
    params(("id" = String, Path, description = "The operation's uuid")),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 404, description = "No such operation", body = ErrorBody),
    )
)]
async fn operation(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<axum::Json<Operation>, ApiError> {
    if !valid_job_id(&id) {
        return Err(ApiError::not_found(format!("no operation {id}")));
    }
    Ok(axum::Json(app.jobs.operation(&format!("operations/{id}"))?))
}

/// The job's output: a page of bytes (`x-spate-next-offset` says where the
/// next begins), or with `follow=true` server-sent events until it ends.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/logs",
    params(
        ("id" = String, Path, description = "The job's id or uuid"),
        ("offset" = Option<u64>, Query, description = "First byte (default 0)"),
        ("limit" = Option<u64>, Query, description = "Bytes at most (default 1 MiB, at most 16 MiB)"),
        ("follow" = Option<bool>, Query, description = "Stream as server-sent events: `log` events (id: the offset after them), then `end` with the final state"),
        ("source" = Option<String>, Query, description = "`driver` (default) or `executors`: the job's lines of its cluster's processes' logs"),
    ),
    responses(
        (status = 200, description = "Output bytes, or an event stream", body = String, content_type = "text/plain"),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
async fn logs(
    State(app): State<App>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let job = find(&app, &id)?;
    match query.source.as_deref() {
        None | Some("driver") => {}
        Some("executors") => {
            let text = app.jobs.cluster_logs(&job.job_uuid);
            return Ok(
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
            );
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "source",
                format!("{other:?}: logs come from the driver or the executors"),
            ));
        }
    }
    let path = app.jobs.log_path(&job.job_uuid);
    if query.follow {
        // A reconnecting client resumes after the last event it had.
        let resume = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let offset = resume.unwrap_or(query.offset);
        let stream = follow(app, job.job_uuid.clone(), path, offset);
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let limit = query.limit.unwrap_or(1 << 20).clamp(1, MAX_LOG_PAGE);
    let bytes = read_at(&path, query.offset, limit).await?;
    let next = query.offset + bytes.len() as u64;
    let mut response =
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response();
    let headers = response.headers_mut();
    headers.insert("x-spate-next-offset", HeaderValue::from(next));
    headers.insert(
        "x-spate-job-done",
        HeaderValue::from_static(if job.done { "true" } else { "false" }),
    );
    Ok(response)
}

/// Up to `limit` bytes of the file from `offset` (none if it is shorter
/// or does not exist yet).
async fn read_at(path: &std::path::Path, offset: u64, limit: u64) -> Result<Vec<u8>, ApiError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::internal(format!("reading the job's log: {e}"))),
    };
    let io = |e: std::io::Error| ApiError::internal(format!("reading the job's log: {e}"));
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).await.map_err(io)?;
    Ok(bytes)
}

/// Where a follower of a log is.
struct Following {
    app: App,
    uuid: String,
    path: std::path::PathBuf,
    offset: u64,
    mark: Option<tokio::sync::watch::Receiver<crate::runner::LogMark>>,
    finished: bool,
}

/// A job's log from `offset` as server-sent events: `log` events of whole
/// lines (each with its end offset as id, to resume from), as they are
/// written, then one `end` event with the job's final state.
fn follow(
    app: App,
    uuid: String,
    path: std::path::PathBuf,
    offset: u64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mark = app.jobs.live(&uuid).map(|live| live.log_mark());
    let start = Following {
        app,
        uuid,
        path,
        offset,
        mark,
        finished: false,
    };
    futures::stream::unfold(start, |mut f| async move {
        loop {
            if f.finished {
                return None;
            }
            let ended = f.mark.as_ref().is_none_or(|m| m.borrow().ended);
            let chunk = match read_at(&f.path, f.offset, 64 << 10).await {
                Ok(chunk) => chunk,
                Err(e) => {
                    f.finished = true;
                    let event = Event::default().event("error").data(e.message);
                    return Some((Ok(event), f));
                }
            };
            // Whole lines while the job writes; everything once it has
            // ended; a line longer than a chunk in pieces, each cut on a
            // character's boundary.
            let mut take = if ended {
                chunk.len()
            } else {
                chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
            };
            let full = chunk.len() == 64 << 10;
            if take == 0 && full {
                take = chunk.len();
            }
            if take == chunk.len()
                && full
                && let Err(e) = std::str::from_utf8(&chunk)
                && e.error_len().is_none()
            {
                // A character cut by the chunk's end waits for the next.
                take = e.valid_up_to().max(1);
            }
            if take > 0 {
                f.offset += take as u64;
                // A lone carriage return would end an event's line.
                let text = String::from_utf8_lossy(&chunk[..take])
                    .replace("\r\n", "\n")
                    .replace('\r', "\n");
                let event = Event::default()
                    .event("log")
                    .id(f.offset.to_string())
                    .data(text);
                return Some((Ok(event), f));
            }
            if ended {
                f.finished = true;
                let state = f
                    .app
                    .jobs
                    .store
                    .get(&f.uuid)
                    .ok()
                    .flatten()
                    .map_or("DELETED", |j| j.state().name());
                return Some((Ok(Event::default().event("end").data(state)), f));
            }
            if let Some(mark) = f.mark.as_mut() {
                // A closed channel: the job has ended.
                if mark.changed().await.is_err() {
                    f.mark = None;
                }
            }
        }
    })
}

/// The API's OpenAPI document, made from the handlers' and the model's
/// annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "spate job service",
        description = "Jobs after Dataproc's: submit, list, cancel, delete, logs and graphs."
    ),
    paths(
        submit,
        list,
        describe,
        cancel_doc,
        delete,
        logs,
        graph,
        progress,
        create_cluster,
        list_clusters,
        describe_cluster,
        start_stop_doc,
        delete_cluster,
        operation,
        upload
    ),
    components(schemas(
        Cluster,
        ClusterList,
        CreateClusterRequest,
        Operation,
        crate::model::ClusterConfig,
        crate::model::ClusterStatus,
        crate::model::ClusterState,
        crate::model::ExecutorView,
        crate::model::OperationMetadata,
        crate::model::OperationError,
        crate::model::Placement,
        crate::model::FileRef,
        Uploaded,
        Job,
        JobList,
        SubmitRequest,
        ErrorBody,
        crate::model::Status,
        crate::model::State,
        crate::model::Substate,
        crate::model::Program,
        crate::model::Reference,
        crate::model::Scheduling
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Every route needs the server's bearer token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The OpenAPI document.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}
