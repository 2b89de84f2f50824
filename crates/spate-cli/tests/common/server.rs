//! A real `spate server` on a free loopback port, with its own home, for
//! the job service's tests; driven through `spate jobs` and the client.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use spate_service::client::Client;

pub const SPATE: &str = env!("CARGO_BIN_EXE_spate");

/// A `spate server` on a free loopback port, with its own home.
pub struct Server {
    pub child: Child,
    pub home: tempfile::TempDir,
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        Self::start_in(home, extra)
    }

    pub fn start_in(home: tempfile::TempDir, extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = home.path().join("server/address");
        let _ = std::fs::remove_file(&address);
        // Its standard input is a pipe from this test: the server stops
        // when the test's process ends, even a shared one that is never
        // dropped.
        let child = Command::new(SPATE)
            .args([
                "server",
                "--exit-with-stdin",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--home")
            .arg(home.path())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let start = Instant::now();
        while std::fs::read_to_string(&address).ok().as_deref() != Some(url.as_str()) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, home, url }
    }

    /// `spate jobs ARGS` against this server (found through its home).
    pub fn jobs(&self, args: &[&str]) -> Output {
        let mut all = vec!["jobs"];
        all.extend_from_slice(args);
        self.spate(&all)
    }

    /// `spate ARGS` against this server (`clusters ...`).
    pub fn spate(&self, args: &[&str]) -> Output {
        Command::new(SPATE)
            .env("SPATE_HOME", self.home.path())
            .env_remove("SPATE_SERVER")
            .env_remove("SPATE_TOKEN")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn client(&self) -> Client {
        Client::new(Some(&self.url), self.home.path())
    }

    pub fn value(&self, id: &str, field: &str) -> String {
        let out = self.jobs(&["describe", id, "--format", &format!("value({field})")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    /// Polls until the job's state is `state`.
    pub fn wait_for(&self, id: &str, state: &str) {
        let start = Instant::now();
        loop {
            let now = self.value(id, "status.state");
            if now == state {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job {id} is {now}, not {state}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server dies without a word (SIGKILL), as in a crash.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server stops as on Ctrl-C: its jobs and clusters stop with it.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let start = Instant::now();
            while matches!(self.child.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.crash();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a process whose command line holds `marker` runs.
pub fn runs(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| text(&c).replace('\0', " ").contains(marker))
            .unwrap_or(false)
    })
}
