//! A client of the job service's API: what `spate jobs` uses.

use std::path::Path;

use futures::StreamExt;

use crate::error::ApiError;
use crate::model::{
    Cluster, ClusterList, CreateClusterRequest, Job, JobList, Operation, SubmitRequest,
};

/// A client of one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{0}")]
    Api(ApiError),
    /// The server could not be reached or its answer read.
    #[error("{0}")]
    Transport(String),
}

impl Client {
    /// A client of `server` (a URL), else `$SPATE_SERVER`, else the server
    /// of `home` on this host (its `server/address`), else the default
    /// address. The token is `$SPATE_TOKEN`, else `home/server/token`.
    pub fn new(server: Option<&str>, home: &Path) -> Self {
        let dir = home.join("server");
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let base = server
            .map(str::to_string)
            .or_else(|| from_env("SPATE_SERVER"))
            .or_else(|| {
                std::fs::read_to_string(dir.join("address"))
                    .ok()
                    .map(|a| a.trim().to_string())
            })
            .unwrap_or_else(|| format!("http://{}", crate::server::DEFAULT_LISTEN));
        let token = from_env("SPATE_TOKEN").or_else(|| {
            std::fs::read_to_string(dir.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
        });
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The client trusting `ca` (a PEM certificate) for HTTPS, besides
    /// the system's roots.
    pub fn trusting(mut self, ca: Option<&Path>) -> Result<Self, ClientError> {
        let Some(ca) = ca else {
            return Ok(self);
        };
        let bad = |e: String| ClientError::Transport(format!("{}: {e}", ca.display()));
        let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        self.http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(self)
    }

    /// The server's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        // reqwest's own message names only the request: the cause (refused,
        // a certificate not trusted) is down its chain.
        let mut cause = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        let cause = if cause.is_empty() {
            e.to_string()
        } else {
            cause
        };
        ClientError::Transport(format!(
            "cannot reach the spate server at {}: {cause} (start one with `spate server`, or \
             name it with --server or $SPATE_SERVER)",
            self.base
        ))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let text = String::from_utf8_lossy(&body);
        Err(ClientError::Api(ApiError::from_json(&text).unwrap_or(
            ApiError {
                code: status.as_u16(),
                message: format!("the server answered {status}: {text}"),
                field: None,
            },
        )))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let body = self.send(request).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Transport(format!("the server's answer does not read: {e}")))
    }

    /// Submits a job.
    pub async fn submit(&self, request: &SubmitRequest) -> Result<Job, ClientError> {
        self.json(self.post_json("/api/v1/jobs", request)?).await
    }

    /// A POST of `body` as JSON.
    fn post_json<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ClientError::Transport(format!("encoding the request: {e}")))?;
        Ok(self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body))
    }

    /// Uploads a file; its id on the server.
    pub async fn upload(&self, path: &Path) -> Result<String, ClientError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| ClientError::Transport(format!("cannot read {}: {e}", path.display())))?;
        let uploaded: serde_json::Value = self
            .json(
                self.request(reqwest::Method::POST, "/api/v1/uploads")
                    .header("content-type", "application/octet-stream")
                    .body(bytes),
            )
            .await?;
        uploaded["upload"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Transport("the server named no upload".into()))
    }

    /// A job by id or uuid.
    pub async fn get(&self, id: &str) -> Result<Job, ClientError> {
        self.json(self.request(reqwest::Method::GET, &format!("/api/v1/jobs/{}", enc(id))))
            .await
    }

    /// A page of jobs.
    pub async fn list(
        &self,
        filter: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<JobList, ClientError> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/jobs").query(&[
            ("filter", filter),
            ("pageSize", &page_size.to_string()),
            ("pageToken", page_token),
        ]))
        .await
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: &str) -> Result<Job, ClientError> {
        self.json(self.request(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{}:cancel", enc(id)),
        ))
        .await
    }

    /// Deletes an ended job.
    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/jobs/{}", enc(id)),
        ))
        .await
        .map(|_| ())
    }

    /// Creates a cluster.
    pub async fn create_cluster(
        &self,
        request: &CreateClusterRequest,
    ) -> Result<Operation, ClientError> {
        self.json(self.post_json("/api/v1/clusters", request)?)
            .await
    }

    /// Every cluster.
    pub async fn clusters(&self) -> Result<ClusterList, ClientError> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/clusters"))
            .await
    }

    /// A cluster, with its executors and active jobs.
    pub async fn cluster(&self, name: &str) -> Result<Cluster, ClientError> {
        self.json(self.request(
            reqwest::Method::GET,
            &format!("/api/v1/clusters/{}", enc(name)),
        ))
        .await
    }

    /// `start` or `stop` a cluster.
    pub async fn cluster_verb(&self, name: &str, verb: &str) -> Result<Operation, ClientError> {
        self.json(self.request(
            reqwest::Method::POST,
            &format!("/api/v1/clusters/{}:{verb}", enc(name)),
        ))
        .await
    }

    /// Deletes a cluster.
    pub async fn delete_cluster(&self, name: &str) -> Result<Operation, ClientError> {
        self.json(self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/clusters/{}", enc(name)),
        ))
        .await
    }

    /// An operation (`operations/UUID`).
    pub async fn operation(&self, name: &str) -> Result<Operation, ClientError> {
        self.json(self.request(reqwest::Method::GET, &format!("/api/v1/{name}")))
            .await
    }

    /// Waits for an operation to end (polling, as gcloud does); its final form.
    pub async fn wait_operation(&self, mut operation: Operation) -> Result<Operation, ClientError> {
        let mut pause = std::time::Duration::from_millis(50);
        while !operation.done {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
            operation = self.operation(&operation.name).await?;
        }
        Ok(operation)
    }

    /// A job's share of its cluster's logs.
    pub async fn executor_logs(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        self.send(
            self.request(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{}/logs", enc(id)),
            )
            .query(&[("source", "executors")]),
        )
        .await
    }

    /// A job's graph (see `GET /api/v1/jobs/{id}/graph`).
    pub async fn graph(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.json(self.request(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{}/graph", enc(id)),
        ))
        .await
    }

    /// A stream job's progress (see `GET /api/v1/jobs/{id}/progress`).
    pub async fn progress(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.json(self.request(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{}/progress", enc(id)),
        ))
        .await
    }

    /// A page of a job's log from `offset`: its bytes, the next offset,
    /// and whether the job had ended.
    pub async fn log_page(
        &self,
        id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<u8>, bool), ClientError> {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{}/logs", enc(id)),
            )
            .query(&[("offset", offset), ("limit", limit)])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let done = response
            .headers()
            .get("x-spate-job-done")
            .is_some_and(|v| v == "true");
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(ClientError::Api(ApiError::from_json(&text).unwrap_or(
                ApiError {
                    code: status.as_u16(),
                    message: text.into_owned(),
                    field: None,
                },
            )));
        }
        Ok((body.to_vec(), done))
    }

    /// Follows a job's log from `offset`, handing each piece to `out` as it
    /// is written, until the job ends; returns its final state's name. A
    /// dropped connection is resumed where it stopped (each event says its
    /// end offset), a few times, before it is an error.
    pub async fn follow(
        &self,
        id: &str,
        mut offset: u64,
        mut out: impl FnMut(&str),
    ) -> Result<String, ClientError> {
        let mut retries = 0;
        loop {
            match self.follow_once(id, &mut offset, &mut out).await {
                Ok(state) => return Ok(state),
                Err(ClientError::Transport(why)) if retries < 5 => {
                    retries += 1;
                    log::info!("the log stream of {id} dropped ({why}); resuming at {offset}");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << retries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn follow_once(
        &self,
        id: &str,
        offset: &mut u64,
        out: &mut impl FnMut(&str),
    ) -> Result<String, ClientError> {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{}/logs", enc(id)),
            )
            .query(&[("follow", "true"), ("offset", &offset.to_string())])
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
            let text = String::from_utf8_lossy(&body);
            return Err(ClientError::Api(ApiError::from_json(&text).unwrap_or(
                ApiError {
                    code: status.as_u16(),
                    message: text.into_owned(),
                    field: None,
                },
            )));
        }
        let mut body = response.bytes_stream();
        let mut events = EventParser::default();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| self.unreachable(e))?;
            for event in events.feed(&piece) {
                match event.kind.as_str() {
                    "log" => {
                        out(&event.data);
                        if let Some(next) = event.id.and_then(|i| i.parse().ok()) {
                            *offset = next;
                        }
                    }
                    "end" => return Ok(event.data),
                    "error" => {
                        return Err(ClientError::Api(ApiError::internal(format!(
                            "the server could not read the job's log: {}",
                            event.data
                        ))));
                    }
                    _ => {}
                }
            }
        }
        Err(ClientError::Transport(format!(
            "the server at {} closed the log stream before the job ended",
            self.base
        )))
    }
}

/// A path segment: job ids and uuids need no escaping; anything else is
/// percent-encoded so that it reaches the server as one segment.
fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One server-sent event.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    kind: String,
    data: String,
    id: Option<String>,
}

/// Server-sent events from a byte stream, the data lines of an event
/// joined with newlines.
#[derive(Default)]
struct EventParser {
    pending: Vec<u8>,
    kind: String,
    data: Vec<String>,
    id: Option<String>,
}

impl EventParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() || !self.kind.is_empty() {
                    let kind = std::mem::take(&mut self.kind);
                    out.push(SseEvent {
                        kind: if kind.is_empty() {
                            "message".into()
                        } else {
                            kind
                        },
                        data: std::mem::take(&mut self.data).join("\n"),
                        id: self.id.take(),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.kind = value.to_string(),
                "data" => self.data.push(value.to_string()),
                "id" => self.id = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_pieces() {
        let mut p = EventParser::default();
        assert!(p.feed(b"event: log\nid: 4\ndata: ab").is_empty());
        let got = p.feed(b"c\ndata: \n\n: keep-alive\n\nevent: end\ndata: DONE\n\n");
        assert_eq!(
            got,
            [
                SseEvent {
                    kind: "log".into(),
                    data: "abc\n".into(),
                    id: Some("4".into())
                },
                SseEvent {
                    kind: "end".into(),
                    data: "DONE".into(),
                    id: None
                }
            ]
        );
        assert_eq!(enc("job-1_a"), "job-1_a");
        assert_eq!(enc("../x"), "%2E%2E%2Fx");
    }
}
