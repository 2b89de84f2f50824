//! The micro-batch driver: plans each batch's input, records it, runs the
//! plans, fires panes, commits the sinks, then the state.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use spate_core::error::{Error, Result};

use crate::checkpoint::{Checkpoint, OffsetEntry, Snapshot, SourceState};
use crate::pipeline::{Sink, SourceSlot, Stage, StreamPipeline};
use crate::time::{MAX_TIMESTAMP, MIN_TIMESTAMP, Millis, format_timestamp, parse_duration};

/// When micro-batches run (Spark's triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchTrigger {
    /// A batch every interval (processing time), while there is new input
    /// or something to fire; runs until stopped, killed, or every source ended.
    Interval(Duration),
    /// One batch of all new input, then stop.
    Once,
    /// Batches (each within the sources' per-batch limits) until no new
    /// input is left, then stop.
    AvailableNow,
}

impl FromStr for BatchTrigger {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "once" => Ok(Self::Once),
            "available-now" => Ok(Self::AvailableNow),
            _ => match s.strip_prefix("interval=") {
                Some(d) => Ok(Self::Interval(parse_duration(d)?)),
                None => Err(Error::Usage(format!(
                    "bad trigger '{s}': give available-now, once or interval=DURATION (as interval=1s)"
                ))),
            },
        }
    }
}

/// One micro-batch, as Spark's `StreamingQueryProgress` reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchProgress {
    /// The batch's number (from 0 over the life of the checkpoint).
    pub batch: u64,
    /// The processing time the batch ran at (ms since the epoch).
    pub processing_time: Millis,
    /// Elements the sources gave the batch.
    pub input_rows: u64,
    /// Input rows over the time since the previous batch started.
    pub input_rows_per_second: f64,
    /// Input rows over the batch's duration.
    pub processed_rows_per_second: f64,
    /// How long the batch took, ms.
    pub duration_ms: u64,
    /// The watermark after the batch.
    pub watermark: Millis,
    /// How far the watermark trails processing time, ms (`None` before
    /// any event time was seen).
    pub watermark_lag_ms: Option<i64>,
    /// Entries held in state over all stateful steps: each key's open
    /// windows, each key a dedup remembers.
    pub state_entries: usize,
    /// Panes fired.
    pub panes: u64,
    /// Elements too late for their windows in this batch.
    pub late_records: u64,
    /// Lines the sinks committed.
    pub output_lines: u64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// Every batch this run ran, in order.
    pub progress: Vec<BatchProgress>,
    /// The watermark at the end.
    pub watermark: Millis,
    /// Late elements per stateful step, over the life of the checkpoint.
    pub late_records: BTreeMap<String, u64>,
}

impl StreamResult {
    /// All late elements.
    pub fn late_total(&self) -> u64 {
        self.late_records.values().sum()
    }
}

struct Run<'a> {
    p: &'a StreamPipeline,
    sources: &'a mut Vec<SourceSlot>,
    stages: &'a mut Vec<Box<dyn Stage>>,
    sinks: &'a [Box<dyn Sink>],
    started: Millis,
    /// A bounded run's input has ended: the watermark is the end of time.
    ended: bool,
    /// A bounded run: the watermark stays at the start until `ended`.
    bounded: bool,
    last_start: Option<Instant>,
    /// Where each batch's progress is recorded, if anywhere.
    progress_file: Option<crate::progress::ProgressFile>,
}

impl StreamPipeline {
    fn check(&self) -> Result<()> {
        if let Some(e) = self.inner.errors.lock().drain(..).next() {
            return Err(e);
        }
        let mut names = std::collections::BTreeSet::new();
        let stages = self.inner.stages.lock();
        let sinks = self.inner.sinks.lock();
        let all = stages
            .iter()
            .map(|s| s.name())
            .chain(sinks.iter().map(|s| s.name()));
        for name in all {
            if !names.insert(name.to_string()) {
                return Err(Error::Usage(format!(
                    "two steps are named {name}: stateful steps and sinks need names of their own (they key the checkpoint)"
                )));
            }
        }
        for (i, a) in sinks.iter().enumerate() {
            for b in &sinks[..i] {
                let (Some(ad), Some(bd)) = (a.dir(), b.dir()) else {
                    continue;
                };
                let (x, y) = (absolute(ad), absolute(bd));
                if x.starts_with(&y) || y.starts_with(&x) {
                    return Err(Error::Usage(format!(
                        "sinks {} and {} write to {} and {}: one is inside the other",
                        b.name(),
                        a.name(),
                        bd.display(),
                        ad.display()
                    )));
                }
            }
        }
        if self.inner.sources.lock().is_empty() {
            return Err(Error::Usage("the pipeline reads no source".into()));
        }
        if sinks.is_empty() {
            return Err(Error::Usage(
                "the pipeline writes nothing: give it a sink".into(),
            ));
        }
        Ok(())
    }

    /// Runs the pipeline over unbounded input, resuming from (or starting)
    /// the checkpoint in `checkpoint` (a local directory, or an
    /// object-store URL such as `s3://bucket/ck` whose store is set up from
    /// the environment or registered on the pipeline's context). Each batch's input is recorded
    /// before it runs, and its output and state are committed after, so
    /// a killed run resumes with no loss and no duplicate.
    pub fn run_streaming(
        &self,
        checkpoint: impl AsRef<Path>,
        trigger: BatchTrigger,
    ) -> Result<StreamResult> {
        self.check()?;
        let inner = &self.inner;
        let (mut sources, mut stages, sinks) = (
            inner.sources.lock(),
            inner.stages.lock(),
            inner.sinks.lock(),
        );
        let mut metadata = BTreeMap::new();
        for s in sources.iter() {
            metadata.insert(format!("source {}", s.name), s.kind.to_string());
        }
        for s in stages.iter() {
            metadata.insert(format!("step {}", s.name()), s.signature());
        }
        let (cp, resume) = Checkpoint::open(&inner.ctx, checkpoint.as_ref(), &metadata)?;
        let fresh = resume.snapshot.is_none() && resume.redo.is_none();
        for sink in sinks.iter() {
            sink.prepare(fresh)?;
        }
        let mut run = Run::new(self, &mut sources, &mut stages, &sinks, false);
        let (mut next, mut wm) = (0, MIN_TIMESTAMP);
        if let Some((n, chain)) = &resume.snapshot {
            run.restore(chain)?;
            if let Some(snap) = chain.last() {
                (next, wm) = (n + 1, snap.watermark);
                if snap.started != 0 {
                    run.started = snap.started;
                }
            }
        }
        let mut progress = Vec::new();
        if let Some(entry) = resume.redo {
            for slot in run.sources.iter_mut() {
                if let Some(b) = entry.sources.get(&slot.name) {
                    slot.source.replay(b)?;
                }
            }
            wm = run.commit_batch(&cp, &entry, &mut progress)?;
            next = entry.batch + 1;
        }
        while !inner.stop.load(Ordering::SeqCst) {
            let tick = Instant::now();
            let planned = run.plan(trigger != BatchTrigger::Once)?;
            let now = run.clock();
            let (idle, done) = run.statuses(now);
            if planned.is_empty() {
                let due = run.watermark(wm, &idle, &done);
                let firing = run.stages.iter().any(|s| s.has_due(due, now));
                if !firing {
                    // Every source ended (a socket closed, a test stream
                    // played out): the stream is complete.
                    if run.sources.iter().all(|s| s.source.is_done()) {
                        break;
                    }
                    match trigger {
                        BatchTrigger::Once | BatchTrigger::AvailableNow => break,
                        BatchTrigger::Interval(d) => {
                            std::thread::sleep(d.saturating_sub(tick.elapsed()));
                            continue;
                        }
                    }
                }
            }
            let entry = OffsetEntry {
                batch: next,
                processing_time: now,
                watermark: wm,
                sources: planned,
                idle,
                done,
            };
            cp.write_offsets(&entry)?;
            wm = run.commit_batch(&cp, &entry, &mut progress)?;
            next += 1;
            match trigger {
                BatchTrigger::Once => break,
                BatchTrigger::Interval(d) => std::thread::sleep(d.saturating_sub(tick.elapsed())),
                BatchTrigger::AvailableNow => {}
            }
        }
        Ok(StreamResult {
            progress,
            watermark: wm,
            late_records: run.late_totals(),
        })
    }

    /// Runs the pipeline as a batch job over the input there is now: all
    /// of it in one batch, then the watermark moves to the end of time, so
    /// every window fires on time and expires. No checkpoint is kept.
    pub fn run_bounded(&self) -> Result<StreamResult> {
        self.check()?;
        let inner = &self.inner;
        let (mut sources, mut stages, sinks) = (
            inner.sources.lock(),
            inner.stages.lock(),
            inner.sinks.lock(),
        );
        for sink in sinks.iter() {
            sink.prepare(true)?;
        }
        // No checkpoint: the steps need not note what changes.
        for stage in stages.iter_mut() {
            stage.track_changes(false);
        }
        // A batch job has no late data: the watermark stays at its start
        // until the input is read, then moves to the end of time.
        let mut run = Run::new(self, &mut sources, &mut stages, &sinks, true);
        let (mut batch, mut wm) = (0, MIN_TIMESTAMP);
        let mut progress = Vec::new();
        loop {
            let planned = run.plan(false)?;
            let now = run.clock();
            if planned.is_empty() {
                run.ended = true;
            }
            let entry = OffsetEntry {
                batch,
                processing_time: now,
                watermark: wm,
                sources: planned,
                idle: Default::default(),
                done: Default::default(),
            };
            let (p, w) = run.execute(&entry)?;
            run.publish(&p);
            progress.push(p);
            (batch, wm) = (batch + 1, w);
            if run.ended {
                break;
            }
        }
        Ok(StreamResult {
            progress,
            watermark: wm,
            late_records: run.late_totals(),
        })
    }
}

/// Runs a step's user code in the driver (a `StatefulDoFn`, a combiner's
/// merge and extract, a `for_each_batch` function): a panic fails the step
/// by name, as a panic in a plan's closure does.
fn guarded<R>(step: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Error::Step {
                step: step.to_string(),
                message: format!("user function panicked: {message}"),
            })
        }
    }
}

fn absolute(dir: &Path) -> std::path::PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

impl<'a> Run<'a> {
    fn new(
        p: &'a StreamPipeline,
        sources: &'a mut Vec<SourceSlot>,
        stages: &'a mut Vec<Box<dyn Stage>>,
        sinks: &'a [Box<dyn Sink>],
        bounded: bool,
    ) -> Self {
        Run {
            p,
            sources,
            stages,
            sinks,
            started: crate::time::now(),
            ended: false,
            bounded,
            last_start: None,
            progress_file: p
                .progress_path()
                .map(|path| crate::progress::ProgressFile::new(&path, bounded)),
        }
    }

    /// Runs a recorded batch, commits its state, reports it; returns the
    /// watermark after it.
    fn commit_batch(
        &mut self,
        cp: &Checkpoint,
        entry: &OffsetEntry,
        progress: &mut Vec<BatchProgress>,
    ) -> Result<Millis> {
        let (p, wm) = self.execute(entry)?;
        let whole = entry
            .batch
            .is_multiple_of(crate::checkpoint::SNAPSHOT_EVERY)
            || !cp.has_state(entry.batch - 1);
        let snapshot = self.snapshot(wm, whole)?;
        cp.commit(entry.batch, &snapshot, whole)?;
        self.publish(&p);
        progress.push(p);
        Ok(wm)
    }

    fn plan(&mut self, limited: bool) -> Result<BTreeMap<String, Value>> {
        let mut planned = BTreeMap::new();
        for slot in self.sources.iter_mut() {
            let next = slot.source.next_batch(limited).map_err(|e| match e {
                Error::Storage(m) => Error::Storage(format!(
                    "source {} ({}): {m}",
                    slot.name,
                    slot.source.describe()
                )),
                other => other,
            });
            if let Some(b) = next? {
                planned.insert(slot.name.clone(), b);
            }
        }
        Ok(planned)
    }

    /// Processing time: a source's own clock if it has one, else the system's.
    fn clock(&self) -> Millis {
        self.sources
            .iter()
            .filter_map(|s| s.source.clock())
            .max()
            .unwrap_or_else(crate::time::now)
    }

    /// Which sources are idle, and which have ended, at processing time
    /// `now` (recorded with the batch, so a batch run again sees the same).
    fn statuses(
        &self,
        now: Millis,
    ) -> (
        std::collections::BTreeSet<String>,
        std::collections::BTreeSet<String>,
    ) {
        let (mut idle, mut done) = Default::default();
        for s in self.sources.iter() {
            if s.source.is_done() {
                std::collections::BTreeSet::insert(&mut done, s.name.clone());
            } else if s.is_idle(now, self.started) {
                std::collections::BTreeSet::insert(&mut idle, s.name.clone());
            }
        }
        (idle, done)
    }

    /// The watermark: the least over sources that have neither ended nor
    /// gone idle; if all that have not ended are idle, the least of those;
    /// the end of time once every source ended. It never moves back.
    fn watermark(
        &self,
        prev: Millis,
        idle: &std::collections::BTreeSet<String>,
        done: &std::collections::BTreeSet<String>,
    ) -> Millis {
        if self.ended {
            return MAX_TIMESTAMP;
        }
        if self.bounded {
            return prev;
        }
        let live = || self.sources.iter().filter(|s| !done.contains(&s.name));
        let least = live()
            .filter(|s| !idle.contains(&s.name))
            .map(|s| s.watermark())
            .min()
            .or_else(|| live().map(|s| s.watermark()).min())
            .unwrap_or(MAX_TIMESTAMP);
        least.max(prev)
    }

    fn execute(&mut self, entry: &OffsetEntry) -> Result<(BatchProgress, Millis)> {
        let start = Instant::now();
        let since_last = self.last_start.replace(start).map(|t| start - t);
        let now = entry.processing_time;
        self.p
            .inner
            .watermark
            .store(entry.watermark, Ordering::SeqCst);
        let rows_before: u64 = self.rows();
        for slot in self.sources.iter_mut() {
            let batch = entry.sources.get(&slot.name).cloned();
            if batch.is_some() {
                slot.last_data = Some(now);
            }
            *slot.current.lock() = batch.unwrap_or(Value::Null);
        }
        let result = self.run_steps(entry);
        for slot in self.sources.iter() {
            *slot.current.lock() = Value::Null;
        }
        for stage in self.stages.iter_mut() {
            stage.clear();
        }
        let (wm, panes, late, lines) = result?;
        let input_rows = self.rows() - rows_before;
        let took = start.elapsed();
        let secs = took.as_secs_f64().max(1e-9);
        let progress = BatchProgress {
            batch: entry.batch,
            processing_time: now,
            input_rows,
            input_rows_per_second: input_rows as f64
                / since_last.map_or(secs, |d| d.as_secs_f64().max(1e-9)),
            processed_rows_per_second: input_rows as f64 / secs,
            duration_ms: took.as_millis() as u64,
            watermark: wm,
            watermark_lag_ms: (wm > MIN_TIMESTAMP && wm < MAX_TIMESTAMP).then(|| now - wm),
            state_entries: self.stages.iter().map(|s| s.entries()).sum(),
            panes,
            late_records: late,
            output_lines: lines,
        };
        Ok((progress, wm))
    }

    fn run_steps(&mut self, entry: &OffsetEntry) -> Result<(Millis, u64, u64, u64)> {
        let now = entry.processing_time;
        let mut wm = entry.watermark;
        let (mut panes, mut late) = (0, 0);
        for i in 0..self.stages.len() {
            let before = self.stages[i].late_total();
            let stage = &mut self.stages[i];
            let name = stage.name().to_string();
            guarded(&name, || stage.absorb(now))?;
            late += self.stages[i].late_total() - before;
            wm = self.watermark(wm, &entry.idle, &entry.done);
            let stage = &mut self.stages[i];
            panes += guarded(&name, || Ok(stage.fire(wm, now)))?;
        }
        let mut lines = 0;
        for sink in self.sinks {
            lines += guarded(sink.name(), || sink.write(entry.batch)).map_err(|e| match e {
                Error::Storage(m) => Error::Storage(format!("{}: {m}", sink.name())),
                other => other,
            })?;
        }
        Ok((
            self.watermark(wm, &entry.idle, &entry.done),
            panes,
            late,
            lines,
        ))
    }

    fn rows(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| s.rows.load(Ordering::Relaxed))
            .sum()
    }

    fn late_totals(&self) -> BTreeMap<String, u64> {
        self.stages
            .iter()
            .map(|s| (s.name().to_string(), s.late_total()))
            .collect()
    }

    /// The state after a batch: each step's whole, or (`whole` false) what
    /// changed since the batch before, for the steps that keep track.
    fn snapshot(&mut self, watermark: Millis, whole: bool) -> Result<Snapshot> {
        let mut snap = Snapshot {
            watermark,
            started: self.started,
            ..Snapshot::default()
        };
        for s in self.sources.iter() {
            snap.sources.insert(
                s.name.clone(),
                SourceState {
                    position: s.source.position(),
                    max_event: s.max_event.load(Ordering::Relaxed),
                    last_data: s.last_data,
                },
            );
        }
        for s in self.stages.iter_mut() {
            let name = s.name().to_string();
            let delta = if whole { None } else { s.delta()? };
            match delta {
                Some(d) => {
                    snap.deltas.insert(name.clone(), d);
                }
                None => {
                    snap.stages.insert(name.clone(), s.snapshot()?);
                    s.forget_changes();
                }
            }
            snap.late.insert(name, s.late_total());
        }
        Ok(snap)
    }

    /// Restores the state after a batch: its last whole snapshot, then the
    /// deltas after it, in order.
    fn restore(&mut self, chain: &[Snapshot]) -> Result<()> {
        let Some(last) = chain.last() else {
            return Ok(());
        };
        for slot in self.sources.iter_mut() {
            if let Some(st) = last.sources.get(&slot.name) {
                slot.source.restore(&st.position)?;
                slot.max_event.store(st.max_event, Ordering::Relaxed);
                slot.last_data = st.last_data;
            }
        }
        for stage in self.stages.iter_mut() {
            let name = stage.name().to_string();
            let misfit = |e: Error| {
                Error::Usage(format!(
                    "the checkpoint's state of step {name} does not fit the job: {e}"
                ))
            };
            for snap in chain {
                if let Some(bytes) = snap.stages.get(stage.name()) {
                    stage.restore(bytes).map_err(misfit)?;
                } else if let Some(bytes) = snap.deltas.get(stage.name()) {
                    stage.apply_delta(bytes).map_err(misfit)?;
                }
            }
            stage.set_late_total(last.late.get(stage.name()).copied().unwrap_or(0));
        }
        Ok(())
    }

    /// Tells of a batch: its progress line (if asked for) and the
    /// progress file (if there is one).
    fn publish(&mut self, p: &BatchProgress) {
        // The file first: whoever reads the line finds the batch there.
        if self.progress_file.is_some() {
            let late = self.late_totals();
            if let Some(file) = self.progress_file.as_mut() {
                file.record(p, &late);
            }
        }
        self.report(p);
    }

    fn report(&self, p: &BatchProgress) {
        if !self.p.inner.progress.load(Ordering::Relaxed) {
            return;
        }
        let lag = p
            .watermark_lag_ms
            .map(|l| format!(" (lag {:.1} s)", l as f64 / 1000.0))
            .unwrap_or_default();
        eprintln!(
            "spate stream: batch {}: {} rows in {} ms ({:.0} rows/s in, {:.0} rows/s processed); \
             watermark {}{lag}; {} state entries; {} panes; {} late; {} lines out",
            p.batch,
            p.input_rows,
            p.duration_ms,
            p.input_rows_per_second,
            p.processed_rows_per_second,
            format_timestamp(p.watermark),
            p.state_entries,
            p.panes,
            p.late_records,
            p.output_lines
        );
    }
}
