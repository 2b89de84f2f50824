//! What a scheduler knows of its executors (`spate cluster status`).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spate_core::cluster::{Address, ExecutorInfo, executors, scheduler_version};

use crate::Result;
use crate::timing;

/// An executor and whether it is alive.
#[derive(Debug, Clone)]
pub struct ExecutorStatus {
    /// What the scheduler reports.
    pub info: ExecutorInfo,
    /// Time since its last heartbeat.
    pub since_heartbeat: Option<Duration>,
}

impl ExecutorStatus {
    /// Alive: a heartbeat arrived within the executor timeout.
    pub fn alive(&self) -> bool {
        self.since_heartbeat
            .is_some_and(|d| d < Duration::from_secs(timing::EXECUTOR_TIMEOUT_SECS))
    }
}

/// A cluster as its scheduler sees it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The scheduler's address.
    pub scheduler: Address,
    /// Ballista's version on the scheduler.
    pub version: String,
    /// The executors it knows (lost ones until it forgets them).
    pub executors: Vec<ExecutorStatus>,
}

impl ClusterStatus {
    /// Executors alive.
    pub fn alive(&self) -> usize {
        self.executors.iter().filter(|e| e.alive()).count()
    }

    /// Task slots of the executors alive.
    pub fn slots(&self) -> usize {
        self.executors
            .iter()
            .filter(|e| e.alive())
            .map(|e| e.info.specification.vcores as usize)
            .sum()
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "scheduler {} (Ballista {}): {} of {} executors alive, {} task slots\n",
            self.scheduler,
            self.version,
            self.alive(),
            self.executors.len(),
            self.slots()
        );
        if self.executors.is_empty() {
            return out;
        }
        let rows: Vec<[String; 5]> = self
            .executors
            .iter()
            .map(|e| {
                [
                    e.info.id.clone(),
                    format!("{}:{}", e.info.host, e.info.port),
                    e.info.specification.vcores.to_string(),
                    e.since_heartbeat
                        .map(|d| format!("{:.1}s ago", d.as_secs_f64()))
                        .unwrap_or_else(|| "never".into()),
                    if e.alive() { "alive" } else { "lost" }.to_string(),
                ]
            })
            .collect();
        let header = ["EXECUTOR", "FLIGHT", "SLOTS", "HEARTBEAT", "HEALTH"];
        let width = |i: usize| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..5).map(width).collect();
        for row in std::iter::once(header.map(String::from)).chain(rows) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        out
    }
}

/// Asks the scheduler at `addr`; a usage error naming the address when no
/// scheduler answers within 5 s.
pub fn status(addr: &Address) -> Result<ClusterStatus> {
    let version = scheduler_version(addr)?.version;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let executors = executors(addr)?
        .into_iter()
        .map(|info| ExecutorStatus {
            since_heartbeat: info
                .last_seen
                .map(|seen| Duration::from_millis(now.saturating_sub(seen))),
            info,
        })
        .collect();
    Ok(ClusterStatus {
        scheduler: addr.clone(),
        version,
        executors,
    })
}
