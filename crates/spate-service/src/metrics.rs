//! The server's own metrics, in Prometheus's text format at `/metrics`:
//! jobs by state (from the store), jobs submitted and log bytes written
//! since the server started, and requests by method and status code with
//! their total time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the server keeps while it runs.
#[derive(Default)]
pub struct ServerMetrics {
    pub(crate) submitted: AtomicU64,
    pub(crate) log_bytes: AtomicU64,
    /// (method, status code) → (requests, seconds spent).
    requests: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
}

impl ServerMetrics {
    /// Counts a request.
    pub fn request(&self, method: &str, code: u16, seconds: f64) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = requests.entry((method.to_string(), code)).or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    /// The exposition: these counters, and `jobs` (state, substate, count).
    pub fn render(&self, jobs: &[(String, String, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP spate_jobs Jobs kept by the server, by state.");
        let _ = writeln!(out, "# TYPE spate_jobs gauge");
        for state in crate::model::ALL_STATES {
            let n: u64 = jobs
                .iter()
                .filter(|(s, _, _)| s == state.name())
                .map(|(_, _, n)| n)
                .sum();
            let _ = writeln!(out, "spate_jobs{{state=\"{}\"}} {n}", state.name());
        }
        let queued: u64 = jobs
            .iter()
            .filter(|(s, sub, _)| s == "RUNNING" && sub == "QUEUED")
            .map(|(_, _, n)| n)
            .sum();
        let _ = writeln!(
            out,
            "# HELP spate_jobs_queued Jobs waiting for a slot (RUNNING, substate QUEUED)."
        );
        let _ = writeln!(out, "# TYPE spate_jobs_queued gauge");
        let _ = writeln!(out, "spate_jobs_queued {queued}");
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        };
        counter(
            &mut out,
            "spate_jobs_submitted_total",
            "Jobs submitted since the server started (not counting repeated request ids).",
            self.submitted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "spate_job_log_bytes_total",
            "Bytes of job output written since the server started.",
            self.log_bytes.load(Ordering::Relaxed),
        );
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP spate_http_requests_total API requests answered, by method and status code."
        );
        let _ = writeln!(out, "# TYPE spate_http_requests_total counter");
        for ((method, code), (n, _)) in requests.iter() {
            let _ = writeln!(
                out,
                "spate_http_requests_total{{method=\"{method}\",code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP spate_http_request_seconds_total Time spent answering API requests, until the response starts."
        );
        let _ = writeln!(out, "# TYPE spate_http_request_seconds_total counter");
        for ((method, code), (_, secs)) in requests.iter() {
            let _ = writeln!(
                out,
                "spate_http_request_seconds_total{{method=\"{method}\",code=\"{code}\"}} {secs:.6}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_jobs_and_requests() {
        let m = ServerMetrics::default();
        m.submitted.fetch_add(3, Ordering::Relaxed);
        m.request("GET", 200, 0.5);
        m.request("GET", 200, 0.25);
        m.request("POST", 400, 0.1);
        let text = m.render(&[
            ("DONE".into(), String::new(), 2),
            ("RUNNING".into(), "QUEUED".into(), 1),
        ]);
        assert!(text.contains("spate_jobs{state=\"DONE\"} 2\n"), "{text}");
        assert!(text.contains("spate_jobs{state=\"ERROR\"} 0\n"), "{text}");
        assert!(text.contains("spate_jobs_queued 1\n"), "{text}");
        assert!(text.contains("spate_jobs_submitted_total 3\n"), "{text}");
        assert!(
            text.contains("spate_http_requests_total{method=\"GET\",code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "spate_http_request_seconds_total{method=\"GET\",code=\"200\"} 0.750000\n"
            ),
            "{text}"
        );
    }
}
