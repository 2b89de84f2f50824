//! The job service: a real `spate server` process on a loopback port,
//! driven through `spate jobs` (the CLI) and through the API's client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use spate_service::model::{Job, Kind, SubmitRequest};

#[path = "common/hosts.rs"]
mod hosts;
#[path = "common/server.rs"]
mod server;
use server::{SPATE, Server, runs, text};

/// One server for the tests that need nothing of their own.
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(&["--max-jobs", "2"]))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The server's `/metrics`, read with its token.
fn prometheus(server: &Server) -> String {
    let token = std::fs::read_to_string(server.home.path().join("server/token")).unwrap();
    runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("{}/metrics", server.url))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("words.txt");
    std::fs::write(&path, "b a c\na b\nb\n").unwrap();
    path
}

#[test]
fn a_submitted_job_streams_its_output_and_keeps_its_history() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let words = input(dir.path());
    // Without --async, submit streams the job's output and exits with it.
    let out = server.jobs(&[
        "submit",
        "builtin",
        "--id",
        "wc-first",
        "--labels",
        "env=test,team=data",
        "--",
        "wordcount",
        "--input",
        words.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\t2\nb\t3\nc\t1\n");
    assert!(
        text(&out.stderr).contains("Job [wc-first] finished: DONE"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(server.value("wc-first", "status.state"), "DONE");
    assert_eq!(server.value("wc-first", "done"), "true");
    assert_eq!(server.value("wc-first", "exitCode"), "0");
    let job: Job = serde_json::from_slice(
        &server
            .jobs(&["describe", "wc-first", "--format", "json"])
            .stdout,
    )
    .unwrap();
    let history: Vec<&str> = job.status_history.iter().map(|s| s.state.name()).collect();
    assert_eq!(history, ["PENDING", "SETUP_DONE", "RUNNING"]);
    assert_eq!(job.labels["team"], "data");
    // Its graph: the steps it ran, with their metrics.
    let graph: serde_json::Value = serde_json::from_slice(
        &server
            .jobs(&["graph", "wc-first", "--format", "json"])
            .stdout,
    )
    .unwrap();
    let nodes = graph["plans"][0]["nodes"].as_array().unwrap();
    let node = |step: &str| {
        nodes
            .iter()
            .find(|n| n["step"].as_str().unwrap().ends_with(step))
            .unwrap_or_else(|| panic!("no step {step}: {graph}"))
    };
    assert_eq!(node("TextSourceExec")["metrics"]["output_rows"], 3);
    let counted = node("count_by_value");
    assert!(
        counted["inputs"].as_array().unwrap().len() == 1,
        "{counted}"
    );
    let table = text(&server.jobs(&["graph", "wc-first"]).stdout);
    assert!(
        table.contains("count_by_value") && table.contains("<- slowest"),
        "{table}"
    );
    // The output is kept: read again, whole.
    let logs = server.jobs(&["logs", "wc-first"]);
    assert_eq!(text(&logs.stdout), "a\t2\nb\t3\nc\t1\n");
    // Listed, and found by label.
    let listed = server.jobs(&[
        "list",
        "--filter",
        "labels.env = test AND status.state = NON_ACTIVE",
        "--format",
        "value(reference.jobId,status.state)",
    ]);
    assert!(
        text(&listed.stdout).contains("wc-first\tDONE\n"),
        "{}",
        text(&listed.stdout)
    );
    let table = text(&server.jobs(&["list"]).stdout);
    assert!(table.starts_with("JOB_ID"), "{table}");

    // An SQL job, its id made by the server.
    let out = server.jobs(&[
        "submit",
        "sql",
        "--",
        "--format",
        "csv",
        "-c",
        "SELECT 40 + 2 AS answer",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "answer\n42\n");

    // Properties: settings of the job's engine, as Dataproc's.
    let out = server.jobs(&[
        "submit",
        "sql",
        "--properties",
        "datafusion.execution.batch_size=77,spate.threads=1",
        "--",
        "--format",
        "csv",
        "-c",
        "SHOW datafusion.execution.batch_size",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(",77"), "{}", text(&out.stdout));
    let refused = server.jobs(&[
        "submit",
        "builtin",
        "--properties",
        "spark.executor.memory=4g",
        "--",
        "wordcount",
        "--input",
        words.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("spark.executor.memory"),
        "{}",
        text(&refused.stderr)
    );

    // A failing job: exit 1, the failure's cause in its status.
    let out = server.jobs(&[
        "submit",
        "builtin",
        "--id",
        "wc-missing",
        "--",
        "wordcount",
        "--input",
        "/no/such/input",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(server.value("wc-missing", "status.state"), "ERROR");
    let details = server.value("wc-missing", "status.details");
    assert!(
        details.contains("exit code 2") && details.contains("/no/such/input"),
        "{details}"
    );
    // The same id again is refused; an ended job is deleted.
    let again = server.jobs(&[
        "submit",
        "sql",
        "--id",
        "wc-missing",
        "--async",
        "--",
        "-c",
        "SELECT 1",
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists already"),
        "{}",
        text(&again.stderr)
    );
    assert!(server.jobs(&["delete", "wc-missing"]).status.success());
    let gone = server.jobs(&["describe", "wc-missing"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(text(&gone.stderr).contains("no job wc-missing"));
}

#[test]
fn a_cancelled_job_stops_with_every_process_of_its_group() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let words = input(dir.path());
    let marker = "sleep 6123";
    let out = server.jobs(&[
        "submit",
        "streaming",
        "--id",
        "sleeper",
        "--async",
        "--",
        "-input",
        words.to_str().unwrap(),
        "-output",
        "-",
        "-mapper",
        marker,
        "-reducer",
        "cat",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_for("sleeper", "RUNNING");
    let start = Instant::now();
    while !runs(marker) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the mapper never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Deleting a running job is refused.
    let refused = server.jobs(&["delete", "sleeper"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("is RUNNING"),
        "{}",
        text(&refused.stderr)
    );
    let killed = server.jobs(&["kill", "sleeper", "--format", "value(status.state)"]);
    assert!(killed.status.success(), "{}", text(&killed.stderr));
    assert_eq!(text(&killed.stdout), "CANCEL_PENDING\n");
    let waited = server.jobs(&["wait", "sleeper"]);
    assert_eq!(waited.status.code(), Some(3), "{}", text(&waited.stderr));
    assert_eq!(server.value("sleeper", "status.state"), "CANCELLED");
    assert!(!runs(marker), "the mapper outlived its cancelled job");
    // Cancelling an ended job is refused.
    assert_eq!(server.jobs(&["kill", "sleeper"]).status.code(), Some(2));

    // A process that leaves the job's group and keeps its output open
    // does not keep the job from ending.
    let escape = dir.path().join("escape");
    std::fs::write(&escape, "#!/bin/sh\necho started\nsetsid sleep 6127 &\n").unwrap();
    let out = server.jobs(&[
        "submit",
        "binary",
        "--id",
        "escape",
        "--",
        escape.to_str().unwrap(),
    ]);
    let _ = Command::new("pkill").args(["-f", "sleep 6127"]).status();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "started\n");
    assert_eq!(server.value("escape", "status.state"), "DONE");

    // A timeout stops a job with ERROR.
    let out = server.jobs(&[
        "submit",
        "streaming",
        "--id",
        "slow",
        "--timeout",
        "1s",
        "--",
        "-input",
        words.to_str().unwrap(),
        "-output",
        "-",
        "-mapper",
        "sleep 6124",
        "-reducer",
        "cat",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        server.value("slow", "status.details").contains("timed out"),
        "{}",
        server.value("slow", "status.details")
    );
    assert!(!runs("sleep 6124"));
}

#[test]
fn concurrent_submissions_are_all_kept_once_and_queue_for_slots() {
    let server = shared();
    let client = server.client();
    let submit = |i: usize, request_id: bool| {
        let mut job = Job::with_program(Kind::Sql, vec!["-c".into(), format!("SELECT {i} AS n")]);
        job.labels.insert("batch".into(), "fifty".into());
        let request = SubmitRequest {
            job,
            request_id: if request_id {
                format!("req-{i}")
            } else {
                String::new()
            },
        };
        let client = &client;
        async move { client.submit(&request).await.unwrap() }
    };
    let rt = runtime();
    let first: Vec<Job> = rt.block_on(futures::future::join_all(
        (0..50).map(|i| submit(i, i % 2 == 0)),
    ));
    // The even ones again, with their request ids: the same jobs.
    let again: Vec<Job> = rt.block_on(futures::future::join_all(
        (0..50).step_by(2).map(|i| submit(i, true)),
    ));
    for (a, b) in first.iter().step_by(2).zip(&again) {
        assert_eq!(a.job_uuid, b.job_uuid);
    }
    let mut uuids: Vec<&str> = first.iter().map(|j| j.job_uuid.as_str()).collect();
    uuids.sort_unstable();
    uuids.dedup();
    assert_eq!(uuids.len(), 50);
    // Every one runs to DONE; with two slots, some waited QUEUED.
    for job in &first {
        let state = rt
            .block_on(client.follow(&job.job_uuid, 0, |_| {}))
            .unwrap();
        assert_eq!(state, "DONE");
    }
    let listed = rt
        .block_on(client.list("labels.batch = fifty", 7, ""))
        .unwrap();
    assert_eq!(listed.jobs.len(), 7);
    assert!(!listed.next_page_token.is_empty());
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = rt
            .block_on(client.list("labels.batch = fifty", 7, &token))
            .unwrap();
        all.extend(page.jobs);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all.len(), 50, "every job listed once");
    let queued = all.iter().any(|j| {
        j.status_history
            .iter()
            .any(|s| s.substate == Some(spate_service::model::Substate::Queued))
    });
    assert!(queued, "50 jobs on 2 slots: some waited");
}

#[test]
fn bad_requests_get_one_error_shape() {
    let server = shared();
    let rt = runtime();
    let call = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let url = format!("{}{path}", server.url);
        let client = reqwest::Client::new();
        let mut request = client
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        rt.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, body)
        })
    };
    let secret = std::fs::read_to_string(server.home.path().join("server/token")).unwrap();
    let token = Some(secret.as_str());
    let (status, body) = call("GET", "/api/v1/jobs", None, "");
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(call("GET", "/api/v1/jobs", Some("wrong"), "").0, 401);
    let (status, body) = call("POST", "/api/v1/jobs", token, "{\"job\": {}}");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "job");
    let (status, body) = call(
        "POST",
        "/api/v1/jobs",
        token,
        "{\"job\": {\"sqlJob\": {\"args\": []}, \"reference\": {\"jobId\": \"a/b\"}}}",
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "job.reference.jobId");
    // An id shaped like a uuid is the server's alone; a year is the
    // longest timeout.
    let (status, body) = call(
        "POST",
        "/api/v1/jobs",
        token,
        "{\"job\": {\"sqlJob\": {\"args\": []}, \"reference\": {\"jobId\": \"0b4123b0-aaaa-4bbb-8ccc-123456789abc\"}}}",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "job.reference.jobId");
    let (status, body) = call(
        "POST",
        "/api/v1/jobs",
        token,
        "{\"job\": {\"sqlJob\": {\"args\": []}, \"timeout\": \"1e20s\"}}",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "job.timeout");
    // A body that does not say it is JSON is refused (a form cannot post one).
    let refused = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/v1/jobs", server.url))
            .bearer_auth(&secret)
            .header("content-type", "text/plain")
            .body("{\"job\": {\"sqlJob\": {\"args\": [\"-c\", \"SELECT 1\"]}}}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(refused, 415);
    let (status, body) = call("GET", "/api/v1/jobs?filter=color%3Dblue", token, "");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "filter");
    assert_eq!(call("GET", "/api/v1/jobs/nope", token, "").0, 404);
    assert_eq!(
        call("GET", "/api/v1/jobs/..%2F..%2Fserver.db", token, "").0,
        404
    );
    assert_eq!(call("POST", "/api/v1/jobs/nope:restart", token, "").0, 404);
    assert_eq!(call("GET", "/api/v2/whatever", token, "").0, 404);
    assert_eq!(call("GET", "/api/v1/jobs?pageSize=0", token, "").0, 400);

    // The OpenAPI document, from the code; Prometheus metrics.
    let (status, doc) = call("GET", "/api/v1/openapi.json", token, "");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}:cancel",
        "/api/v1/jobs/{id}/logs",
        "/api/v1/jobs/{id}/graph",
        "/api/v1/jobs/{id}/progress",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} in {doc}");
    }
    assert!(doc["components"]["schemas"]["Job"]["properties"]["statusHistory"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(call("GET", "/metrics", None, "").0, 401);
    let metrics = prometheus(server);
    assert!(metrics.contains("# TYPE spate_jobs gauge"), "{metrics}");
    assert!(
        metrics.contains("spate_http_requests_total{method=\"GET\",code=\"401\"}"),
        "{metrics}"
    );

    // The CLI without the token file: refused, exit 2.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(SPATE)
        .env("SPATE_HOME", elsewhere.path())
        .args(["jobs", "list", "--server", &server.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("Bearer"),
        "{}",
        text(&out.stderr)
    );
    // No server there: a clear error, exit 1.
    let out = Command::new(SPATE)
        .env("SPATE_HOME", elsewhere.path())
        .args(["jobs", "list", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reach the spate server"));
    // --no-auth only on loopback.
    let out = Command::new(SPATE)
        .args(["server", "--no-auth", "--listen", "0.0.0.0:0", "--home"])
        .arg(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--no-auth is refused"));
}

#[test]
fn a_restarted_server_keeps_every_job_and_fails_the_ones_it_lost() {
    let mut server = Server::start(&[]);
    let token_mode = std::fs::metadata(server.home.path().join("server/token"))
        .unwrap()
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(token_mode.mode() & 0o777, 0o600);
    let done = server.jobs(&[
        "submit",
        "sql",
        "--id",
        "kept",
        "--",
        "--format",
        "csv",
        "-c",
        "SELECT 7 AS n",
    ]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    // A job that prints, then works on (until it is stopped).
    let marker = "generate_series(1, 9999999999)";
    let slow = format!("SELECT count(*) AS n FROM {marker} AS t(v)");
    let out = server.jobs(&[
        "submit",
        "sql",
        "--id",
        "lost",
        "--async",
        "--",
        "--format",
        "csv",
        "-c",
        "SELECT 'started' AS s",
        "-c",
        &slow,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let start = Instant::now();
    while !text(&server.jobs(&["logs", "lost"]).stdout).contains("started") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job never printed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(runs(marker));
    // The server dies without a word; its job's processes live on.
    server.crash();
    assert!(runs(marker));
    let home = std::mem::replace(&mut server.home, tempfile::tempdir().unwrap());
    let server = Server::start_in(home, &[]);
    assert_eq!(server.value("kept", "status.state"), "DONE");
    assert_eq!(text(&server.jobs(&["logs", "kept"]).stdout), "n\n7\n");
    assert_eq!(server.value("lost", "status.state"), "ERROR");
    assert!(
        server
            .value("lost", "status.details")
            .contains("server restarted"),
    );
    assert!(!runs(marker), "the lost job's processes were stopped");
    assert!(
        text(&server.jobs(&["logs", "lost"]).stdout).contains("started"),
        "its output so far is kept"
    );
}

#[test]
fn failed_jobs_restart_as_their_scheduling_allows() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let words = input(dir.path());
    // Fails every time: run once and restarted twice, then ERROR.
    let out = server.jobs(&[
        "submit",
        "builtin",
        "--id",
        "always-fails",
        "--max-failures-total",
        "2",
        "--max-failures-per-hour",
        "5",
        "--",
        "wordcount",
        "--input",
        "/no/such/input",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(server.value("always-fails", "failures"), "3");
    let log = text(&server.jobs(&["logs", "always-fails"]).stdout);
    assert_eq!(log.matches("/no/such/input").count(), 3, "{log}");
    let described = text(&server.jobs(&["describe", "always-fails"]).stdout);
    assert!(
        described.contains("restarted after failure 2"),
        "{described}"
    );

    // Fails once (its first map task), then runs to DONE.
    let flag = dir.path().join("failed-once");
    let mapper = format!(
        "sh -c 'if [ -e {0} ]; then cat; else touch {0}; exit 1; fi'",
        flag.display()
    );
    let out = server.jobs(&[
        "submit",
        "streaming",
        "--id",
        "fails-once",
        "--max-failures-total",
        "1",
        "--max-failures-per-hour",
        "1",
        "--",
        "-D",
        "mapreduce.map.maxattempts=1",
        "-input",
        words.to_str().unwrap(),
        "-output",
        "-",
        "-mapper",
        &mapper,
        "-reducer",
        "cat",
        "-numReduceTasks",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.value("fails-once", "status.state"), "DONE");
    assert_eq!(server.value("fails-once", "failures"), "1");
    assert!(text(&out.stdout).contains("a b"), "{}", text(&out.stdout));
}

#[test]
fn https_serves_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    // A certificate authority, and the server's certificate for the
    // loopback address signed by it (openssl(1), which scripts/test.sh
    // installs).
    let ca = dir.path().join("ca.pem");
    let ca_key = dir.path().join("ca.key");
    let request = dir.path().join("server.csr");
    let extensions = dir.path().join("server.ext");
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let made = Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl makes the test certificates");
        assert!(made.success(), "openssl {args:?}");
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    openssl(&[
        &os("req"),
        &os("-x509"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-days"),
        &os("1"),
        &os("-subj"),
        &os("/CN=spate test CA"),
        &os("-keyout"),
        ca_key.as_os_str(),
        &os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&[
        &os("req"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-subj"),
        &os("/CN=127.0.0.1"),
        &os("-keyout"),
        key.as_os_str(),
        &os("-out"),
        request.as_os_str(),
    ]);
    openssl(&[
        &os("x509"),
        &os("-req"),
        &os("-days"),
        &os("1"),
        &os("-in"),
        request.as_os_str(),
        &os("-CA"),
        ca.as_os_str(),
        &os("-CAkey"),
        ca_key.as_os_str(),
        &os("-CAcreateserial"),
        &os("-extfile"),
        extensions.as_os_str(),
        &os("-out"),
        cert.as_os_str(),
    ]);
    let server = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(server.url.starts_with("https://"));
    // Trusting the CA: a job runs over HTTPS, output streamed.
    let out = server.jobs(&[
        "--ca-cert",
        ca.to_str().unwrap(),
        "submit",
        "sql",
        "--",
        "--format",
        "csv",
        "-c",
        "SELECT 'secret' AS word",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "word\nsecret\n");
    // Not trusting it: refused, nothing sent in the clear.
    let out = server.jobs(&["list"]);
    assert!(
        text(&out.stderr).contains("certificate"),
        "{}",
        text(&out.stderr)
    );
    let out = server.jobs(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach the spate server"),
        "{}",
        text(&out.stderr)
    );
    // A certificate and key that do not go together: the server says so.
    let other = dir.path().join("other.pem");
    openssl(&[
        &os("genpkey"),
        &os("-algorithm"),
        &os("RSA"),
        &os("-out"),
        other.as_os_str(),
    ]);
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(SPATE)
        .args(["server", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&other)
        .arg("--home")
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("do not go together"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn clusters_run_jobs_and_their_deletion_keeps_the_jobs_history() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let words = input(dir.path());
    let created = server.spate(&[
        "clusters",
        "create",
        "c1",
        "--executors",
        "2",
        "--slots",
        "1",
        "--format",
        "value(done,response.status.state)",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert_eq!(text(&created.stdout), "true\tRUNNING\n");
    let described: serde_json::Value = serde_json::from_slice(
        &server
            .spate(&["clusters", "describe", "c1", "--format", "json"])
            .stdout,
    )
    .unwrap();
    let executors = described["executors"].as_array().unwrap();
    assert_eq!(executors.len(), 2, "{described}");
    assert!(
        executors
            .iter()
            .all(|e| e["healthy"] == true && e["slots"] == 1)
    );
    let uuid = described["clusterUuid"].as_str().unwrap().to_string();
    assert!(runs(&uuid), "the cluster's processes run");
    let again = server.spate(&["clusters", "create", "c1", "--executors", "1"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("exists already"));

    // A job on it: the local answer; its share of the executors' logs.
    let out = server.jobs(&[
        "submit",
        "builtin",
        "--cluster",
        "c1",
        "--id",
        "on-c1",
        "--",
        "wordcount",
        "--input",
        words.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\t2\nb\t3\nc\t1\n");
    assert_eq!(server.value("on-c1", "placement.clusterName"), "c1");
    let executor_logs = text(&server.jobs(&["logs", "on-c1", "--executors"]).stdout);
    assert!(
        executor_logs.contains("[executor-") && executor_logs.contains("Finished task"),
        "{executor_logs}"
    );
    // Its graph holds the stages the cluster ran, with their tasks.
    let graph: serde_json::Value =
        serde_json::from_slice(&server.jobs(&["graph", "on-c1", "--format", "json"]).stdout)
            .unwrap();
    let stages: Vec<&serde_json::Value> = graph["cluster_stages"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| s.as_array().unwrap())
        .collect();
    assert!(!stages.is_empty(), "{graph}");
    assert!(
        stages.iter().all(
            |s| s["stage_status"] == "Successful" && !s["tasks"].as_array().unwrap().is_empty()
        ),
        "{graph}"
    );
    let missing = server.jobs(&["submit", "sql", "--cluster", "c9", "--", "-c", "SELECT 1"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no cluster c9"));

    // Stopped, a cluster runs nothing; started, it runs again.
    let stopped = server.spate(&[
        "clusters",
        "stop",
        "c1",
        "--format",
        "value(response.status.state)",
    ]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert_eq!(text(&stopped.stdout), "STOPPED\n");
    assert!(!runs(&uuid), "a stopped cluster's processes are gone");
    let refused = server.jobs(&[
        "submit",
        "sql",
        "--cluster",
        "c1",
        "--id",
        "on-stopped",
        "--",
        "-c",
        "SELECT 1",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        server
            .value("on-stopped", "status.details")
            .contains("cluster c1 is STOPPED"),
    );
    let started = server.spate(&[
        "clusters",
        "start",
        "c1",
        "--format",
        "value(response.status.state)",
    ]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    assert_eq!(text(&started.stdout), "RUNNING\n");

    // Deleted: its processes and record go; the jobs it ran keep theirs.
    let deleted = server.spate(&["clusters", "delete", "c1"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert!(!runs(&uuid));
    assert_eq!(
        server.spate(&["clusters", "describe", "c1"]).status.code(),
        Some(2)
    );
    assert_eq!(server.value("on-c1", "status.state"), "DONE");
    assert_eq!(
        text(&server.jobs(&["logs", "on-c1"]).stdout),
        "a\t2\nb\t3\nc\t1\n"
    );
    assert_eq!(
        text(&server.jobs(&["logs", "on-c1", "--executors"]).stdout),
        executor_logs
    );

    // A cluster idle past its time-to-live is deleted by the server.
    let idle = server.spate(&[
        "clusters",
        "create",
        "idle",
        "--executors",
        "1",
        "--idle-delete-ttl",
        "1s",
    ]);
    assert!(idle.status.success(), "{}", text(&idle.stderr));
    let start = Instant::now();
    while text(&server.spate(&["clusters", "list"]).stdout).contains("idle ") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the idle cluster is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn scripts_side_files_and_programs_are_uploaded_under_server_names() {
    let server = Server::start(&["--max-upload", "64KiB"]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mrjob");
    let at = |p: &str| fixtures.join(p).to_str().unwrap().to_string();
    // An mrjob script and its side file, uploaded: the job finds the side
    // file next to the script, as mrjob's FILES say.
    let out = server.jobs(&[
        "submit",
        "mrjob",
        "--id",
        "side",
        "--",
        &at("mr_side_file.py"),
        "--files",
        &at("stopwords.txt"),
        &at("input/a.txt"),
        &at("input/b.txt"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(str::to_string)
        .collect();
    got.sort();
    let mut want: Vec<String> = std::fs::read_to_string(fixtures.join("expected/mr_side_file.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    want.sort();
    assert_eq!(got, want);
    let job: Job = serde_json::from_slice(
        &server
            .jobs(&["describe", "side", "--format", "json"])
            .stdout,
    )
    .unwrap();
    let program = job.mrjob_job.unwrap();
    assert_eq!(program.args[0], "mr_side_file.py");
    let names: Vec<&str> = program.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["mr_side_file.py", "stopwords.txt"]);

    // An SQL file, and a program of the user's own.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.sql"), "SELECT 6 * 7 AS answer;\n").unwrap();
    let out = server.jobs(&[
        "submit",
        "sql",
        "--",
        "--format",
        "csv",
        "-f",
        dir.path().join("report.sql").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "answer\n42\n");
    let greet = dir.path().join("greet");
    std::fs::write(
        &greet,
        "#!/bin/sh\necho \"hello $1 from $(basename \"$PWD\")\"\n",
    )
    .unwrap();
    let out = server.jobs(&["submit", "binary", "--", greet.to_str().unwrap(), "world"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello world from work\n");
    // A program that does not run here fails the job, not the server.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, [0u8, 1, 2, 3]).unwrap();
    let out = server.jobs(&[
        "submit",
        "binary",
        "--id",
        "junk",
        "--",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        server
            .value("junk", "status.details")
            .contains("its program did not start"),
    );

    // Names and ids come from the server; a client's path never reaches
    // its file system, and a large upload is refused whole.
    let rt = runtime();
    let secret = std::fs::read_to_string(server.home.path().join("server/token")).unwrap();
    let post = |path: &str, body: Vec<u8>| {
        rt.block_on(async {
            let kind = if path.ends_with("/jobs") {
                "application/json"
            } else {
                "application/octet-stream"
            };
            let response = reqwest::Client::new()
                .post(format!("{}{path}", server.url))
                .bearer_auth(&secret)
                .header("content-type", kind)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, body)
        })
    };
    let (status, uploaded) = post("/api/v1/uploads", b"print('hi')\n".to_vec());
    assert_eq!(status, 200);
    let id = uploaded["upload"].as_str().unwrap().to_string();
    assert!(id.starts_with("upl-"));
    for (files, field) in [
        (
            serde_json::json!([{"upload": id, "name": "../escape.py"}]),
            "job.mrjobJob.files[0].name",
        ),
        (
            serde_json::json!([{"upload": "../../server.db", "name": "x.py"}]),
            "job.mrjobJob.files[0].upload",
        ),
        (
            serde_json::json!([{"upload": "upl-00000000-0000-0000-0000-000000000000", "name": "x.py"}]),
            "job.mrjobJob.files[0].upload",
        ),
    ] {
        let job = serde_json::json!({"job": {"mrjobJob": {"args": ["x.py"], "files": files}}});
        let (status, body) = post("/api/v1/jobs", job.to_string().into_bytes());
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (status, body) = post("/api/v1/uploads", vec![b'x'; 100 << 10]);
    assert_eq!(status, 413, "{body}");
    let kept: Vec<String> = std::fs::read_dir(server.home.path().join("server/uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter().all(|name| name.starts_with("upl-")),
        "nothing of the refused upload is kept: {kept:?}"
    );
}

#[test]
fn a_job_printing_hundreds_of_megabytes_neither_blocks_nor_holds_the_server() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let flood = dir.path().join("flood");
    // 256 MiB of 37-byte lines, then one last line.
    std::fs::write(
        &flood,
        "#!/bin/sh\nyes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 268435456\necho END\n",
    )
    .unwrap();
    let out = server.jobs(&[
        "submit",
        "binary",
        "--id",
        "flood",
        "--async",
        "--",
        flood.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The server answers while the job writes.
    let start = Instant::now();
    loop {
        let listed = server.jobs(&["list", "--format", "value(reference.jobId)"]);
        assert!(listed.status.success(), "{}", text(&listed.stderr));
        if server.value("flood", "done") == "true" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the job never ended"
        );
    }
    assert_eq!(server.value("flood", "status.state"), "DONE");
    let log = server.home.path().join(format!(
        "server/jobs/{}/driver.log",
        server.value("flood", "jobUuid")
    ));
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 268_435_456 + 4);
    // Served in pages: two whole lines from the middle.
    let rt = runtime();
    let (page, done) = rt
        .block_on(server.client().log_page("flood", 37 * 1_000_000, 74))
        .unwrap();
    assert!(done);
    assert_eq!(
        text(&page),
        "0123456789abcdefghijklmnopqrstuvwxyz\n0123456789abcdefghijklmnopqrstuvwxyz\n"
    );
    // Nothing of it is held in the server's memory.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 128 << 10,
        "the server's peak resident memory was {rss_kib} KiB for a 256 MiB log"
    );
}

#[test]
fn a_binary_job_runs_its_own_cluster_roles_and_stops_them() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let words = input(dir.path());
    // A program built with spate: the `cluster_wordcount` example (which
    // `cargo test --workspace` builds), behind a one-line wrapper so that
    // the upload stays small. Its executors are the program itself.
    let example = Path::new(SPATE)
        .parent()
        .unwrap()
        .join("examples/cluster_wordcount");
    assert!(
        example.is_file(),
        "{} is built by cargo test --workspace (or: cargo build -p spate --examples)",
        example.display()
    );
    let program = dir.path().join("wordcount-job");
    std::fs::write(
        &program,
        format!("#!/bin/sh\nexec {} \"$@\"\n", example.display()),
    )
    .unwrap();
    let counts = dir.path().join("counts");
    let out = server.jobs(&[
        "submit",
        "binary",
        "--id",
        "own-cluster",
        "--executors",
        "2",
        "--",
        program.to_str().unwrap(),
        words.to_str().unwrap(),
        counts.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines: Vec<String> = std::fs::read_dir(&counts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(lines, ["a\t2", "b\t3", "c\t1"]);
    // It ran on its cluster: the executors' logs are the job's.
    let logs = text(&server.jobs(&["logs", "own-cluster", "--executors"]).stdout);
    assert!(logs.contains("Finished task"), "{logs}");
    let uuid = server.value("own-cluster", "jobUuid");
    assert!(
        !runs(&format!("{uuid}/executors")),
        "its cluster stopped with it"
    );
    // Executors belong to binary jobs alone.
    let refused = server.jobs(&["submit", "sql", "--executors", "2", "--", "-c", "SELECT 1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("executors"),
        "{}",
        text(&refused.stderr)
    );
}

/// A cluster whose executors run on other hosts (network namespaces made
/// by the test): the server, on its own host, starts only the scheduler;
/// each executor joins it from its host; a job runs on them.
#[test]
fn executors_on_other_hosts_join_a_cluster_of_the_servers() {
    const SERVER_IP: &str = "10.79.0.1";
    let mut hosts = hosts::Hosts::new(
        SERVER_IP,
        &[("exec1", "10.79.0.11"), ("exec2", "10.79.0.12")],
    );
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let words = input(dir.path());
    let mut server = hosts.command("sched", SPATE);
    server
        .args([
            "server",
            "--exit-with-stdin",
            "--listen",
            &format!("{SERVER_IP}:8020"),
        ])
        .arg("--home")
        .arg(home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    hosts.spawn(server);
    let address = home.path().join("server/address");
    let start = Instant::now();
    while std::fs::read_to_string(&address).ok().as_deref()
        != Some(format!("http://{SERVER_IP}:8020").as_str())
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no server");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The CLI on the server's host.
    fn on_server(hosts: &hosts::Hosts, home: &Path, args: &[&str]) -> std::process::Output {
        let mut cmd = hosts.command("sched", SPATE);
        cmd.env("SPATE_HOME", home).args(args);
        cmd.output().unwrap()
    }
    fn described(hosts: &hosts::Hosts, home: &Path) -> serde_json::Value {
        let out = on_server(
            hosts,
            home,
            &["clusters", "describe", "far", "--format", "json"],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
    let created = on_server(
        &hosts,
        home.path(),
        &[
            "clusters",
            "create",
            "far",
            "--hosts",
            "10.79.0.11,10.79.0.12",
            "--scheduler-host",
            SERVER_IP,
            "--format",
            "value(response.schedulerAddress)",
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let scheduler = text(&created.stdout).trim().to_string();
    assert!(scheduler.starts_with(SERVER_IP), "{scheduler}");
    assert_eq!(
        described(&hosts, home.path())["missingHosts"],
        serde_json::json!(["10.79.0.11", "10.79.0.12"])
    );
    for (name, ip) in [("exec1", "10.79.0.11"), ("exec2", "10.79.0.12")] {
        let mut executor = hosts.command(name, SPATE);
        executor
            .args([
                "cluster",
                "executor",
                "--exit-with-stdin",
                "--scheduler",
                &scheduler,
            ])
            .args([
                "--bind",
                ip,
                "--advertise",
                ip,
                "--slots",
                "1",
                "--work-dir",
            ])
            .arg(dir.path().join(name))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        hosts.spawn(executor);
    }
    let start = Instant::now();
    loop {
        let cluster = described(&hosts, home.path());
        if cluster["missingHosts"].is_null() {
            assert_eq!(
                cluster["executors"].as_array().unwrap().len(),
                2,
                "{cluster}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the executors did not join: {cluster}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = on_server(
        &hosts,
        home.path(),
        &[
            "jobs",
            "submit",
            "builtin",
            "--cluster",
            "far",
            "--id",
            "far-job",
            "--",
            "wordcount",
            "--input",
            words.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\t2\nb\t3\nc\t1\n");
    // Stopped from its host, the scheduler goes; the server's host keeps
    // no process of the cluster.
    let stopped = on_server(&hosts, home.path(), &["clusters", "stop", "far"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let uuid = described(&hosts, home.path())["clusterUuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!runs(&format!("clusters/{uuid}")));
}

#[test]
fn a_stream_job_logs_its_batches_and_resumes_from_its_checkpoint_when_resubmitted() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let (input, out, cp) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("cp"),
    );
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.txt"), "1000\tthe cat\n65000\tthe end\n").unwrap();
    let submit = |id: &str, trigger: &str, wait: bool| {
        let mut args = vec!["submit", "stream", "--id", id];
        if !wait {
            args.push("--async");
        }
        args.extend([
            "--",
            "wordcount",
            "--window",
            "60s",
            "--trigger",
            trigger,
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--checkpoint",
            cp.to_str().unwrap(),
        ]);
        server.jobs(&args)
    };
    // A stream runs until cancelled; its batches are its live log.
    let started = submit("stream-live", "interval=50ms", false);
    assert!(started.status.success(), "{}", text(&started.stderr));
    let start = Instant::now();
    while !text(&server.jobs(&["logs", "stream-live"]).stdout).contains("spate stream: batch 0")
        && !text(&server.jobs(&["logs", "stream-live"]).stderr).contains("spate stream: batch 0")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no batch logged: {}",
            server.value("stream-live", "status.state")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.value("stream-live", "status.state"), "RUNNING");
    // Its progress: the recent batches as a table and as JSON, and its
    // latest batch among the server's metrics, labelled by the job.
    let table = server.jobs(&["progress", "stream-live"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(table.contains(" this run: 2 rows in"), "{table}");
    assert!(table.contains("WATERMARK"), "{table}");
    let json = server.jobs(&["progress", "stream-live", "--format", "json"]);
    let progress: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let first = &progress["recent"][0];
    assert_eq!(first["batch"], 0, "{progress}");
    assert_eq!(first["inputRows"], 2, "{progress}");
    // Batch 0 moved the watermark past the first window's end.
    assert!(first["watermark"].as_i64().unwrap() >= 60_000, "{progress}");
    assert!(first["stateEntries"].as_u64().unwrap() > 0, "{progress}");
    let metrics = prometheus(server);
    for series in [
        "spate_stream_input_rows_total{job=\"stream-live\"} 2\n",
        "spate_stream_batch_duration_seconds{job=\"stream-live\"} ",
        "spate_stream_state_entries{job=\"stream-live\"} ",
        "spate_stream_watermark_lag_seconds{job=\"stream-live\"} ",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    let killed = server.jobs(&["kill", "stream-live"]);
    assert!(killed.status.success(), "{}", text(&killed.stderr));
    server.wait_for("stream-live", "CANCELLED");

    // Resubmitted on its checkpoint, it goes on where it stopped.
    std::fs::write(input.join("b.txt"), "130000\tthe cat\n").unwrap();
    let resumed = submit("stream-resumed", "available-now", true);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(server.value("stream-resumed", "status.state"), "DONE");
    let mut lines = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    // 0..60000 fired in the first job; 60000..120000 once b.txt moved the
    // watermark to 130 000; each once.
    assert_eq!(
        lines,
        [
            "0\t60000\tcat\t1",
            "0\t60000\tthe\t1",
            "60000\t120000\tend\t1",
            "60000\t120000\tthe\t1",
        ]
    );
    // On a cluster, a stream job is refused.
    let refused = server.jobs(&["submit", "stream", "--cluster", "any", "--", "wordcount"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("runs on the server's host"),
        "{}",
        text(&refused.stderr)
    );
}
