//! The server's own metrics, in Prometheus's text format at `/metrics`:
//! jobs by state (from the store), jobs submitted and log bytes written
//! since the server started, requests by method and status code with
//! their total time, and the latest batch of each running stream job.

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

/// The running stream jobs' metrics, labelled by job id, from their
/// progress files (`(job id, progress)`): the latest batch's rates,
/// duration, watermark lag and state, and the run's totals.
pub fn render_streams(streams: &[(String, serde_json::Value)]) -> String {
    type Get = fn(&serde_json::Value, &serde_json::Value) -> Option<f64>;
    let metrics: [(&str, &str, &str, Get); 9] = [
        (
            "spate_stream_batches_total",
            "counter",
            "Batches the stream job's run has completed.",
            |p, _| p["batches"].as_f64(),
        ),
        (
            "spate_stream_input_rows_total",
            "counter",
            "Input rows over the stream job's run.",
            |p, _| p["inputRows"].as_f64(),
        ),
        (
            "spate_stream_output_lines_total",
            "counter",
            "Lines the stream job's sinks committed over its run.",
            |p, _| p["outputLines"].as_f64(),
        ),
        (
            "spate_stream_late_records_total",
            "counter",
            "Elements too late for their windows, over the life of the stream's checkpoint.",
            |p, _| {
                Some(
                    p["lateRecordsByStep"]
                        .as_object()?
                        .values()
                        .filter_map(serde_json::Value::as_f64)
                        .sum(),
                )
            },
        ),
        (
            "spate_stream_input_rows_per_second",
            "gauge",
            "The latest batch's input rows over the time since the batch before it started.",
            |_, b| b["inputRowsPerSecond"].as_f64(),
        ),
        (
            "spate_stream_processed_rows_per_second",
            "gauge",
            "The latest batch's input rows over its duration.",
            |_, b| b["processedRowsPerSecond"].as_f64(),
        ),
        (
            "spate_stream_batch_duration_seconds",
            "gauge",
            "How long the latest batch took.",
            |_, b| Some(b["durationMs"].as_f64()? / 1000.0),
        ),
        (
            "spate_stream_watermark_lag_seconds",
            "gauge",
            "How far the watermark trails processing time after the latest batch.",
            |_, b| Some(b["watermarkLagMs"].as_f64()? / 1000.0),
        ),
        (
            "spate_stream_state_entries",
            "gauge",
            "Entries held in state after the latest batch.",
            |_, b| b["stateEntries"].as_f64(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, get) in metrics {
        let values: Vec<(&str, f64)> = streams
            .iter()
            .filter_map(|(job, p)| {
                let latest = p["recent"].as_array()?.last()?;
                Some((job.as_str(), get(p, latest)?))
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (job, v) in values {
            let _ = writeln!(out, "{name}{{job=\"{}\"}} {v}", label(job));
        }
    }
    out
}

/// A label value with Prometheus's escapes.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

    #[test]
    fn streams_report_their_latest_batch_by_job() {
        let progress = serde_json::json!({
            "batches": 2, "inputRows": 30, "outputLines": 4,
            "lateRecordsByStep": {"count": 1, "dedup": 2},
            "recent": [
                {"batch": 7, "inputRowsPerSecond": 5.0, "durationMs": 100, "stateEntries": 3, "watermarkLagMs": 1500},
                {"batch": 8, "inputRowsPerSecond": 10.0, "processedRowsPerSecond": 200.0,
                 "durationMs": 50, "stateEntries": 4, "watermarkLagMs": null}
            ]
        });
        let quiet = serde_json::json!({"recent": []});
        let text = render_streams(&[("s\"1".into(), progress), ("quiet".into(), quiet)]);
        for line in [
            "spate_stream_batches_total{job=\"s\\\"1\"} 2\n",
            "spate_stream_input_rows_total{job=\"s\\\"1\"} 30\n",
            "spate_stream_late_records_total{job=\"s\\\"1\"} 3\n",
            "spate_stream_input_rows_per_second{job=\"s\\\"1\"} 10\n",
            "spate_stream_batch_duration_seconds{job=\"s\\\"1\"} 0.05\n",
            "spate_stream_state_entries{job=\"s\\\"1\"} 4\n",
            "# TYPE spate_stream_batches_total counter\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // No lag before the watermark moved; no series for a stream
        // without a batch.
        assert!(!text.contains("watermark_lag"), "{text}");
        assert!(!text.contains("quiet"), "{text}");
    }
}
