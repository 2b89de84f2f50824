//! The job service's web UI in a real browser: Debian's Chromium, headless,
//! driven through ChromeDriver's WebDriver protocol (both installed by
//! `scripts/test.sh`), against a real `spate server` with its token.
//!
//! Signing in, the jobs page, a finished job's page with its output and
//! graph (every step drawn with its metrics, the slowest marked), a running
//! job's output appearing while it runs, and cancelling it from its page;
//! a stream job's batches; no page logs an error to the console. Screenshots of the pages are left
//! in the test's temporary directory (`ui-*.png`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "common/server.rs"]
mod server;
use server::{Server, text};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver on a free loopback port and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test.sh installs chromium-driver)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let profile = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
            rt,
            _profile: profile,
        };
        // The flags this machine needs: no sandbox as root, and no
        // background connections to the outside (they are refused here).
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1300,1000",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let created = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
                "goog:loggingPrefs": {"browser": "ALL"},
            }}}),
        );
        browser.session = created["sessionId"].as_str().unwrap().to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = self
            .http
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json");
        let request = if method == "GET" || method == "DELETE" {
            request
        } else {
            request.body(body.to_string())
        };
        self.rt.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status();
            let value: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            assert!(status.is_success(), "WebDriver {path}: {value}");
            value["value"].clone()
        })
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Polls `script` until it returns true.
    fn wait_for(&self, what: &str, script: &str) {
        let started = Instant::now();
        loop {
            if self.script(script) == json!(true) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: not seen in 60 s on {}; page: {}",
                self.script("return location.href"),
                self.script("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, keys: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": keys }),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-{name}.png"));
        std::fs::write(path, bytes).unwrap();
    }

    /// The console's messages of level SEVERE since the last call.
    fn console_errors(&self) -> Vec<String> {
        let logs = self.call("POST", "/se/log", json!({"type": "browser"}));
        logs.as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.rt.block_on(
                self.http
                    .delete(format!("{}/session/{}", self.base, self.session))
                    .send(),
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_web_ui_shows_jobs_their_graph_and_live_output_and_cancels() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "b a c\na b\nb\n".repeat(1000)).unwrap();
    let done = server.jobs(&[
        "submit",
        "builtin",
        "--id",
        "wc-ui",
        "--labels",
        "env=ui",
        "--",
        "wordcount",
        "--threads",
        "2",
        "--input",
        words.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let graph: Value =
        serde_json::from_slice(&server.jobs(&["graph", "wc-ui", "--format", "json"]).stdout)
            .unwrap();
    let steps = graph["plans"][0]["nodes"].as_array().unwrap().len();

    let browser = Browser::start();
    // Not signed in: sent to sign in; a wrong token is refused.
    browser.go(&format!("{}/", server.url));
    browser.wait_for("the sign-in page", "return location.pathname === '/login'");
    browser.type_into("#token", "not-the-token");
    browser.click("#sign-in");
    browser.wait_for(
        "the refusal",
        "return document.body.innerText.includes(\"not this server's token\")",
    );
    let token = std::fs::read_to_string(server.home.path().join("server/token")).unwrap();
    browser.type_into("#token", token.trim());
    browser.click("#sign-in");

    // The cookie holds a session, never the token; a change sent with it
    // from another origin is refused.
    browser.wait_for("the jobs page", "return location.pathname === '/'");
    let cookies = browser.call("GET", "/cookie", Value::Null);
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "spate_token")
        .map(|c| c["value"].as_str().unwrap().to_string())
        .expect("signed in: a session cookie");
    assert_ne!(session, token.trim());
    let forged = browser.rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/v1/jobs", server.url))
            .header("cookie", format!("spate_token={session}"))
            .header("origin", "http://127.0.0.1:9")
            .header("content-type", "application/json")
            .body(r#"{"job": {"sqlJob": {"args": ["-c", "SELECT 1"]}}}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(forged, 403);

    // The jobs page lists the job.
    browser.wait_for(
        "the job in the list",
        "return !!document.querySelector('#jobs tr[data-job=\"wc-ui\"]')",
    );
    let row =
        browser.script("return document.querySelector('#jobs tr[data-job=\"wc-ui\"]').innerText");
    assert!(
        row.as_str().unwrap().contains("DONE") && row.as_str().unwrap().contains("env=ui"),
        "{row}"
    );
    browser.screenshot("jobs");

    // The finished job: its output, and its graph with every step.
    browser.go(&format!("{}/jobs/wc-ui", server.url));
    browser.wait_for("the graph", "return document.body.dataset.ended === 'DONE'");
    let output = browser.script("return document.getElementById('logs').textContent");
    assert_eq!(output, json!("a\t2000\nb\t3000\nc\t1000\n"));
    let drawn = browser.script("return document.querySelectorAll('#graph g.node').length");
    assert_eq!(drawn, json!(steps));
    assert_eq!(
        browser.script("return document.querySelectorAll('#graph g.node.slowest').length"),
        json!(1)
    );
    let labels = browser.script("return document.getElementById('graph').textContent");
    assert!(
        labels.as_str().unwrap().contains("count_by_value")
            && labels.as_str().unwrap().contains("3,000 rows"),
        "{labels}"
    );
    assert!(
        browser
            .script("return document.getElementById('steps').rows.length")
            .as_u64()
            .unwrap()
            >= steps as u64
    );
    let plan = browser.script("return document.getElementById('plan').textContent");
    assert!(plan.as_str().unwrap().contains("TextSourceExec"), "{plan}");
    browser.screenshot("job");

    // A running job: its first line shows while it runs; cancel it here.
    let marker = "generate_series(1, 9999999998)";
    let slow = format!("SELECT count(*) AS n FROM {marker} AS t(v)");
    let started = server.jobs(&[
        "submit",
        "sql",
        "--id",
        "slow-ui",
        "--async",
        "--",
        "--format",
        "csv",
        "-c",
        "SELECT 'first line' AS s",
        "-c",
        &slow,
    ]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    browser.go(&format!("{}/jobs/slow-ui", server.url));
    browser.wait_for(
        "the running job's output",
        "return document.getElementById('logs')?.textContent.includes('first line') === true",
    );
    assert_eq!(server.value("slow-ui", "done"), "false");
    browser.wait_for(
        "the running state",
        "return document.getElementById('state')?.textContent === 'RUNNING'",
    );
    browser.screenshot("running");
    browser.click("#cancel");
    browser.wait_for(
        "the cancelled job",
        "return document.body.dataset.ended === 'CANCELLED'",
    );
    assert_eq!(server.value("slow-ui", "status.state"), "CANCELLED");
    assert!(!server::runs(marker), "the cancelled job's process is gone");

    // A stream job's page: its batches in the stream progress table.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.txt"), "1000\tthe cat\n65000\tthe end\n").unwrap();
    let streamed = server.jobs(&[
        "submit",
        "stream",
        "--id",
        "stream-ui",
        "--",
        "wordcount",
        "--window",
        "60s",
        "--trigger",
        "available-now",
        "-i",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("out").to_str().unwrap(),
        "--checkpoint",
        dir.path().join("cp").to_str().unwrap(),
    ]);
    assert!(streamed.status.success(), "{}", text(&streamed.stderr));
    browser.go(&format!("{}/jobs/stream-ui", server.url));
    browser.wait_for(
        "the stream's batches",
        "const s = document.getElementById('stream'); \
         return !!s && !s.hidden && document.getElementById('batches').rows.length >= 1 \
           && document.getElementById('stream-totals').textContent.includes('2 rows in')",
    );
    let row = browser.script("return document.getElementById('batches').rows[0].innerText");
    assert!(
        row.as_str().unwrap().contains("1970-01-01T00:01:05"),
        "{row}"
    );
    browser.screenshot("stream");

    // The clusters page: a cluster with its executors' health.
    let created = server.spate(&["clusters", "create", "ui-c", "--executors", "1"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    browser.go(&format!("{}/clusters", server.url));
    browser.wait_for(
        "the running cluster",
        "const row = document.querySelector('#clusters tr[data-cluster=\"ui-c\"]'); \
         return !!row && row.innerText.includes('RUNNING') && row.cells[3].innerText === '1'",
    );
    browser.screenshot("clusters");
    let deleted = server.spate(&["clusters", "delete", "ui-c"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));

    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
