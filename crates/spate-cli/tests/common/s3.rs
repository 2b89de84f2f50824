//! A real S3-compatible server for tests: `s3s-fs` (a Rust crate serving
//! a local directory over the S3 API; `scripts/test.sh` installs it),
//! started on loopback for each test.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub const KEY: &str = "spate-test";
pub const SECRET: &str = "spate-test-secret";

/// An `s3s-fs` server on a free loopback port, stopped when dropped.
pub struct S3 {
    child: Child,
    port: u16,
    pub root: tempfile::TempDir,
}

impl S3 {
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Process::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs serves the test bucket: cargo install s3s-fs --version 0.14.1");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, root }
    }

    /// Puts a file into `bucket` (the server serves its root directory).
    pub fn put(&self, bucket: &str, key: &str, body: impl AsRef<[u8]>) {
        let path = self.root.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    /// The store's endpoint and credentials, as `spate` reads them from
    /// its environment.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// `spate` with the store's endpoint and credentials in its environment.
    pub fn spate(&self, home: &std::path::Path) -> Command {
        let mut cmd = Command::cargo_bin("spate").unwrap();
        cmd.env("SPATE_HOME", home).envs(self.env());
        cmd
    }

    pub fn sql(&self, home: &std::path::Path) -> Command {
        let mut cmd = self.spate(home);
        cmd.arg("sql");
        cmd
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Object names under `bucket/prefix` on the server's disk (hidden ones
/// too), sorted.
pub fn objects(s3: &S3, bucket: &str, prefix: &str) -> Vec<String> {
    let root = s3.root.path().join(bucket);
    let mut out = Vec::new();
    let mut stack = vec![root.join(prefix)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}
