//! One task's processes: attempts, their stdout/stderr readers, and what a
//! failed attempt's error says.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus};
use std::thread::JoinHandle;

use spate_io::source::SplitTag;

use super::lines::LineParser;
use super::{STDERR_LINE, STDERR_TAIL};

/// `host`: where the task ran, when that is not the driver's machine (a
/// cluster's executor).
pub(super) fn failure_message(
    task: &TaskRun,
    command: &str,
    ended: &Ended,
    host: Option<&str>,
) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (ended.status.code(), ended.status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    };
    let mut msg = format!(
        "task {} failed {} time{}: command `{command}` {how}",
        task.task_id,
        task.attempt_no,
        if task.attempt_no == 1 { "" } else { "s" },
    );
    if let Some(t) = &task.tag {
        msg.push_str(&format!(
            " (input {} bytes {}..{})",
            t.path.display(),
            t.start,
            t.start + t.length
        ));
    }
    if let StdoutEnd::Failed(e) = &ended.stdout {
        msg.push_str(&format!("; reading its output failed: {e}"));
    }
    if let Some(h) = host {
        msg.push_str(&format!(" on host {h}"));
    }
    // What is missing on the host, when the error says so.
    let said = |needle: &str| ended.stderr.tail.iter().any(|l| l.contains(needle));
    let place = host.map_or_else(|| "this machine".to_string(), |h| format!("host {h}"));
    if said("No module named 'mrjob'") || said("cannot import mrjob") {
        msg.push_str(&format!(
            "; mrjob is not installed for the task's Python on {place}: every host that runs \
             tasks needs Python 3 and mrjob (pip install mrjob)"
        ));
    } else if ended.status.code() == Some(127) {
        msg.push_str(&format!(
            "; its program was not found on {place}: every host that runs tasks needs the \
             programs a command names (a side file given with -file runs as ./NAME)"
        ));
    }
    if ended.stderr.tail.is_empty() {
        msg.push_str("; it wrote nothing to stderr");
    } else {
        msg.push_str("\nlast lines of its stderr:");
        for line in &ended.stderr.tail {
            msg.push_str("\n  ");
            msg.push_str(line);
        }
    }
    msg
}

/// Puts a side file into a task directory under `name`.
pub(super) fn link_side_file(file: &Path, name: &str, dir: &Path) -> std::io::Result<()> {
    let target = std::fs::canonicalize(file)?;
    let link = dir.join(name);
    if link.exists() {
        return Ok(());
    }
    std::os::unix::fs::symlink(&target, &link)
}

/// One task (all its attempts).
pub(super) struct TaskRun {
    pub(super) task_id: String,
    pub(super) core: String,
    pub(super) kind: char,
    pub(super) number: usize,
    pub(super) tag: Option<SplitTag>,
    pub(super) env: Vec<(String, String)>,
    pub(super) spool: Option<(PathBuf, BufWriter<File>)>,
    pub(super) attempt: Option<Attempt>,
    pub(super) identity: Option<LineParser>,
    /// The in-process aggregation of an `aggregate` task (its output goes
    /// through `identity`'s parser).
    pub(super) aggregate: Option<crate::hadoop::aggregate::AggregateTask>,
    /// The process slot held while the task (any of its attempts) runs.
    pub(super) _slot: Option<super::Slot>,
    pub(super) attempt_no: usize,
    pub(super) max_attempts: usize,
    pub(super) records_in: u64,
    pub(super) closed: bool,
}

/// One running attempt of a task's command.
pub(super) struct Attempt {
    pub(super) id: String,
    pub(super) child: Child,
    pub(super) stdin: Option<BufWriter<ChildStdin>>,
    pub(super) broken: bool,
    pub(super) stdout: Option<JoinHandle<StdoutEnd>>,
    pub(super) stderr: Option<JoinHandle<ErrSummary>>,
    pub(super) dir: PathBuf,
    pub(super) out_spool: Option<PathBuf>,
}

/// How an attempt ended.
pub(super) struct Ended {
    pub(super) status: ExitStatus,
    pub(super) stdout: StdoutEnd,
    pub(super) stderr: ErrSummary,
    pub(super) dir: PathBuf,
    pub(super) out_spool: Option<PathBuf>,
}

impl Attempt {
    pub(super) fn end(mut self) -> Result<Ended, String> {
        if let Some(mut stdin) = self.stdin.take() {
            // A command that stopped reading makes this fail; its status tells.
            let _ = stdin.flush();
        }
        let stdout = match self.stdout.take().map(JoinHandle::join) {
            Some(Ok(end)) => end,
            Some(Err(_)) => StdoutEnd::Failed("output reader panicked".into()),
            None => StdoutEnd::Failed("no output reader".into()),
        };
        if stdout == StdoutEnd::Closed {
            let _ = self.child.kill();
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for {}: {e}", self.id))?;
        let stderr = match self.stderr.take().map(JoinHandle::join) {
            Some(Ok(s)) => s,
            _ => ErrSummary::default(),
        };
        Ok(Ended {
            status,
            stdout,
            stderr,
            dir: self.dir.clone(),
            out_spool: self.out_spool.clone(),
        })
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // An attempt abandoned by an error elsewhere must not outlive the job.
        if self.stdout.is_some() {
            self.stdin.take();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How reading a command's stdout ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StdoutEnd {
    /// All lines parsed and sent on (this many).
    Streamed(u64),
    /// Copied to the spool file.
    Spooled,
    /// Downstream stopped reading; the rest was discarded.
    Closed,
    /// Reading failed.
    Failed(String),
}

/// What a command wrote to stderr: reporter counters, the last status, the tail.
#[derive(Debug, Default)]
pub(super) struct ErrSummary {
    pub(super) counters: BTreeMap<(String, String), i64>,
    pub(super) status: Option<String>,
    pub(super) tail: VecDeque<String>,
}

pub(super) fn read_stderr(stderr: impl Read) -> ErrSummary {
    let mut summary = ErrSummary::default();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line, STDERR_LINE) {
            Ok(None) | Err(_) => break,
            Ok(Some(cut)) => {
                if cut {
                    line.extend_from_slice(b" ...");
                }
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(rest) = text.strip_prefix("reporter:counter:") {
            let mut parts = rest.splitn(2, ',');
            let group = parts.next().unwrap_or_default();
            if let Some((counter, amount)) = parts.next().and_then(|r| r.rsplit_once(','))
                && let Ok(n) = amount.trim().parse::<i64>()
            {
                *summary
                    .counters
                    .entry((group.to_string(), counter.to_string()))
                    .or_default() += n;
                continue;
            }
        } else if let Some(status) = text.strip_prefix("reporter:status:") {
            summary.status = Some(status.to_string());
            continue;
        }
        summary.tail.push_back(text.to_string());
        if summary.tail.len() > STDERR_TAIL {
            summary.tail.pop_front();
        }
    }
    summary
}

/// Reads one line (without its newline) into `line`, keeping at most `max`
/// bytes of it and skipping the rest. `None` at the end of input, else
/// whether the line was cut.
fn read_bounded_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    let mut cut = false;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], i + 1),
            None => (buf, buf.len()),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        cut |= chunk.len() > room;
        let ended = done > chunk.len();
        reader.consume(done);
        if ended {
            return Ok(Some(cut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_are_bounded() {
        let long = "x".repeat(10_000);
        let text = format!("reporter:counter:g,c,3\n{long}\nlast line");
        let summary = read_stderr(text.as_bytes());
        assert_eq!(summary.counters.get(&("g".into(), "c".into())), Some(&3));
        let tail: Vec<&String> = summary.tail.iter().collect();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].len(), STDERR_LINE + 4);
        assert!(tail[0].ends_with("x ..."));
        assert_eq!(tail[1], "last line");
    }
}
