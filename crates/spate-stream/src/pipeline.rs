//! The streaming pipeline: sources, element-wise steps, windowed
//! aggregations and sinks. Element-wise steps are `Dataset` closures, so
//! each micro-batch runs the same DataFusion plan; a windowed aggregation
//! pre-aggregates each batch in that plan (per window and key) and merges
//! the result into its keyed state.

use std::fmt::Display;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use spate_core::combine::{CombineFn, Sum};
use spate_core::dataset::Key;
use spate_core::error::{Error, Result};
use spate_core::{Context, Data, Dataset};

use crate::source::{Current, Source};
use crate::state::{KeyedWindows, Pane};
use crate::time::{MIN_TIMESTAMP, Millis, millis};
use crate::trigger::{Accumulation, Trigger, WindowingStrategy};
use crate::window::{Window, Windows};

/// How a source's watermark follows the event times it delivers (Flink's
/// `WatermarkStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The watermark trails the greatest event time seen by this much.
    pub out_of_orderness: Millis,
    /// A source that delivered nothing for this long (processing time)
    /// stops holding the watermark back (`None`: never).
    pub idle_timeout: Option<Millis>,
}

impl Default for Watermarks {
    /// In order (no out-of-orderness), idle after 5 minutes.
    fn default() -> Self {
        Self {
            out_of_orderness: 0,
            idle_timeout: Some(300_000),
        }
    }
}

impl Watermarks {
    /// Events may arrive up to `d` behind the greatest event time seen.
    pub fn bounded_out_of_orderness(d: Duration) -> Self {
        Self {
            out_of_orderness: millis(d),
            ..Self::default()
        }
    }

    /// A source quiet for `d` no longer holds the watermark back (`None`:
    /// it always does).
    pub fn with_idleness(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d.map(millis);
        self
    }
}

/// Passes elements through, stamped by `stamp`, noting the greatest event
/// time in `max` (and the count in `rows`): kept per task and published
/// when the task ends, so no element writes to memory the other tasks share.
/// `times`: whether the event times seen count for the watermark (a
/// source's own times stop counting once a `with_timestamps` restamps it).
fn observed<T: Data>(
    ds: Dataset<(Millis, T)>,
    max: Arc<AtomicI64>,
    times: Option<Arc<AtomicBool>>,
    rows: Option<Arc<AtomicU64>>,
    stamp: impl Fn(Millis, &T) -> Millis + Send + Sync + 'static,
) -> Dataset<(Millis, T)> {
    let publish: spate_core::ops::chain::EndFn<(Millis, u64), (Millis, T)> =
        Arc::new(move |seen: &mut (Millis, u64), _| {
            if times.as_ref().is_none_or(|t| t.load(Ordering::Relaxed)) {
                max.fetch_max(seen.0, Ordering::Relaxed);
            }
            if let Some(rows) = &rows {
                rows.fetch_add(seen.1, Ordering::Relaxed);
            }
        });
    ds.map_partitions_with(
        "observe",
        || (MIN_TIMESTAMP, 0u64),
        move |seen, (ts, x), out| {
            let ts = stamp(ts, &x);
            seen.0 = seen.0.max(ts);
            seen.1 += 1;
            out((ts, x));
        },
        Some(publish),
    )
}

/// The parts of a [`Source`] the driver uses, without its element type.
pub(crate) trait DriverSource: Send {
    fn describe(&self) -> String;
    fn next_batch(&mut self, limited: bool) -> Result<Option<Value>>;
    fn replay(&mut self, batch: &Value) -> Result<()>;
    fn position(&self) -> Value;
    fn restore(&mut self, position: &Value) -> Result<()>;
    fn watermark(&self) -> Option<Millis>;
    fn clock(&self) -> Option<Millis>;
    fn is_done(&self) -> bool;
}

impl<S: Source> DriverSource for S {
    fn describe(&self) -> String {
        Source::describe(self)
    }
    fn next_batch(&mut self, limited: bool) -> Result<Option<Value>> {
        Source::next_batch(self, limited)
    }
    fn replay(&mut self, batch: &Value) -> Result<()> {
        Source::replay(self, batch)
    }
    fn position(&self) -> Value {
        Source::position(self)
    }
    fn restore(&mut self, position: &Value) -> Result<()> {
        Source::restore(self, position)
    }
    fn watermark(&self) -> Option<Millis> {
        Source::watermark(self)
    }
    fn clock(&self) -> Option<Millis> {
        Source::clock(self)
    }
    fn is_done(&self) -> bool {
        Source::is_done(self)
    }
}

/// A source in a pipeline, with what the driver tracks for it.
pub(crate) struct SourceSlot {
    pub name: String,
    /// The source's type, checked against a checkpoint.
    pub kind: &'static str,
    pub source: Box<dyn DriverSource>,
    pub current: Current,
    /// The greatest event time its elements carried.
    pub max_event: Arc<AtomicI64>,
    /// Elements read.
    pub rows: Arc<AtomicU64>,
    pub watermarks: Watermarks,
    /// Processing time of the last batch that brought it data.
    pub last_data: Option<Millis>,
}

impl SourceSlot {
    /// This source's own watermark: the one it sets, or the greatest event
    /// time it delivered minus its out-of-orderness.
    pub fn watermark(&self) -> Millis {
        self.source.watermark().unwrap_or_else(|| {
            let max = self.max_event.load(Ordering::Relaxed);
            if max <= MIN_TIMESTAMP {
                MIN_TIMESTAMP
            } else {
                max.saturating_sub(self.watermarks.out_of_orderness)
            }
        })
    }

    /// Whether the source is idle at processing time `now` (quiet since
    /// its last data, or since the stream first started).
    pub fn is_idle(&self, now: Millis, started: Millis) -> bool {
        let quiet_since = self.last_data.unwrap_or(started);
        self.watermarks
            .idle_timeout
            .is_some_and(|t| now.saturating_sub(quiet_since) >= t)
    }
}

/// A stateful step, as the driver runs it.
pub(crate) trait Stage: Send {
    fn name(&self) -> &str;
    /// What its state depends on, checked against a checkpoint.
    fn signature(&self) -> String;
    /// Runs the batch's plan and merges it into the state.
    fn absorb(&mut self, now: Millis) -> Result<u64>;
    /// Fires what is due; its output stream reads the panes.
    fn fire(&mut self, watermark: Millis, now: Millis) -> u64;
    fn has_due(&self, watermark: Millis, now: Millis) -> bool;
    /// Empties the batch's outputs.
    fn clear(&mut self);
    /// Entries held in state (a key's window, a remembered key).
    fn entries(&self) -> usize;
    /// Elements too late for it, over the life of the checkpoint.
    fn late_total(&self) -> u64 {
        0
    }
    fn set_late_total(&mut self, _n: u64) {}
    fn snapshot(&self) -> Result<Vec<u8>>;
    fn restore(&mut self, bytes: &[u8]) -> Result<()>;
    /// What changed in its state since it was last written (a whole
    /// snapshot or a delta), as bytes for [`apply_delta`](Self::apply_delta);
    /// `None` if it only writes its state whole.
    fn delta(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Its state counts as written: a whole snapshot was taken.
    fn forget_changes(&mut self) {}
    /// Whether to note what changes, for deltas (not in a bounded run,
    /// which keeps no checkpoint).
    fn track_changes(&mut self, _on: bool) {}
    /// Applies a delta to the state restored from the snapshot before it.
    fn apply_delta(&mut self, _bytes: &[u8]) -> Result<()> {
        Err(Error::Internal(format!(
            "step {} keeps no deltas, yet the checkpoint holds one for it",
            self.name()
        )))
    }
}

/// A sink, as the driver runs it.
pub(crate) trait Sink: Send {
    fn name(&self) -> &str;
    /// The directory it writes, if it writes one.
    fn dir(&self) -> Option<&Path>;
    fn prepare(&self, fresh: bool) -> Result<()>;
    /// Commits batch `batch`'s output once; returns the lines written.
    fn write(&self, batch: u64) -> Result<u64>;
}

pub(crate) struct Inner {
    pub ctx: Context,
    pub sources: Mutex<Vec<SourceSlot>>,
    pub stages: Mutex<Vec<Box<dyn Stage>>>,
    pub sinks: Mutex<Vec<Box<dyn Sink>>>,
    /// The watermark when the running batch started: the plans' late check.
    pub watermark: Arc<AtomicI64>,
    pub errors: Mutex<Vec<Error>>,
    /// Sources stamped by a `with_timestamps`, and the step's name.
    pub stamped: Mutex<std::collections::HashMap<usize, String>>,
    /// Per source: whether its own event times count for its watermark.
    pub own_times: Mutex<std::collections::HashMap<usize, Arc<AtomicBool>>>,
    pub stop: Arc<AtomicBool>,
    pub progress: AtomicBool,
    /// Where each batch's progress is recorded (`record_progress`).
    pub progress_path: Mutex<Option<std::path::PathBuf>>,
}

/// A pipeline over streams: run it on unbounded input with
/// [`run_streaming`](Self::run_streaming), or on the input there is now,
/// as a batch job, with [`run_bounded`](Self::run_bounded) — the same
/// windows and counts either way.
#[derive(Clone)]
pub struct StreamPipeline {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamPipeline")
    }
}

/// Stops a running stream after its current batch (from another thread).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the stream to stop once the batch it runs is committed.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A stream of `T`, each element with its event time.
pub struct Stream<T> {
    p: StreamPipeline,
    ds: Dataset<(Millis, T)>,
    /// The source it comes from, if only one (where `with_timestamps`
    /// reports event times for the watermark).
    source: Option<Arc<AtomicI64>>,
    /// Whether its elements come from a stateful step's output (panes,
    /// kept elements), which is never late: lateness was decided upstream.
    derived: bool,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Self {
            p: self.p.clone(),
            ds: self.ds.clone(),
            source: self.source.clone(),
            derived: self.derived,
        }
    }
}

impl StreamPipeline {
    /// A pipeline on `ctx` (its threads and memory budget run each batch).
    pub fn new(ctx: Context) -> Self {
        Self {
            inner: Arc::new(Inner {
                ctx,
                sources: Mutex::new(Vec::new()),
                stages: Mutex::new(Vec::new()),
                sinks: Mutex::new(Vec::new()),
                watermark: Arc::new(AtomicI64::new(MIN_TIMESTAMP)),
                errors: Mutex::new(Vec::new()),
                stamped: Mutex::new(std::collections::HashMap::new()),
                own_times: Mutex::new(std::collections::HashMap::new()),
                stop: Arc::new(AtomicBool::new(false)),
                progress: AtomicBool::new(false),
                progress_path: Mutex::new(None),
            }),
        }
    }

    /// The context batches run in.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// Prints a progress line per batch to standard error.
    pub fn print_progress(&self, on: bool) {
        self.inner.progress.store(on, Ordering::Relaxed);
    }

    /// Records the run's progress in the file at `path` after every batch,
    /// as JSON: the run's totals, late elements per step and the last 100
    /// batches (what the job service shows of a stream job). Without it,
    /// the file named by `SPATE_JOB_PROGRESS` is used, which the job
    /// service sets for the jobs it runs.
    pub fn record_progress(&self, path: impl AsRef<Path>) {
        *self.inner.progress_path.lock() = Some(path.as_ref().to_path_buf());
    }

    /// The progress file: [`record_progress`](Self::record_progress)'s,
    /// else `SPATE_JOB_PROGRESS`'s.
    pub(crate) fn progress_path(&self) -> Option<std::path::PathBuf> {
        self.inner.progress_path.lock().clone().or_else(|| {
            std::env::var_os("SPATE_JOB_PROGRESS")
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from)
        })
    }

    /// A handle that stops the stream after its current batch.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.inner.stop.clone())
    }

    /// Reads a source as step `name`, its watermark the default (in
    /// order; idle after 5 minutes).
    pub fn read<S: Source>(&self, name: &str, source: S) -> Stream<S::Item> {
        self.read_with(name, source, Watermarks::default())
    }

    /// Reads a source as step `name` with a watermark policy.
    pub fn read_with<S: Source>(
        &self,
        name: &str,
        source: S,
        watermarks: Watermarks,
    ) -> Stream<S::Item> {
        let ctx = &self.inner.ctx;
        let current: Current = Arc::new(Mutex::new(Value::Null));
        let max_event = Arc::new(AtomicI64::new(MIN_TIMESTAMP));
        let rows = Arc::new(AtomicU64::new(0));
        let own_times = Arc::new(AtomicBool::new(true));
        self.inner
            .own_times
            .lock()
            .insert(Arc::as_ptr(&max_event) as usize, own_times.clone());
        let ds = ctx.in_scope(name, || {
            observed(
                source.stream(ctx, current.clone()),
                max_event.clone(),
                Some(own_times),
                Some(rows.clone()),
                |ts, _| ts,
            )
        });
        let mut sources = self.inner.sources.lock();
        if sources.iter().any(|s| s.name == name) {
            self.fail(Error::Usage(format!(
                "two sources are named {name}: give each source a name of its own (it keys the checkpoint)"
            )));
        }
        sources.push(SourceSlot {
            name: name.to_string(),
            kind: std::any::type_name::<S>(),
            source: Box::new(source),
            current,
            max_event: max_event.clone(),
            rows,
            watermarks,
            last_data: None,
        });
        Stream {
            p: self.clone(),
            ds,
            source: Some(max_event),
            derived: false,
        }
    }

    pub(crate) fn fail(&self, e: Error) {
        self.inner.errors.lock().push(e);
    }
}

impl<T: Data> Stream<T> {
    /// The stream's elements with their event times, as a `Dataset` (one
    /// micro-batch's worth each time it runs).
    pub fn dataset(&self) -> &Dataset<(Millis, T)> {
        &self.ds
    }

    /// The pipeline the stream belongs to.
    pub fn pipeline(&self) -> &StreamPipeline {
        &self.p
    }

    /// A stream a stateful step derived from this one (it has no single
    /// source of its own).
    pub(crate) fn derived<U>(&self, ds: Dataset<(Millis, U)>) -> Stream<U> {
        Stream {
            p: self.p.clone(),
            ds,
            source: None,
            derived: true,
        }
    }

    fn with<U>(&self, ds: Dataset<(Millis, U)>) -> Stream<U> {
        Stream {
            p: self.p.clone(),
            ds,
            source: self.source.clone(),
            derived: self.derived,
        }
    }

    /// The watermark its late checks use: the running batch's starting
    /// watermark, or never late for a stateful step's output (its panes
    /// may fire, in this batch, for windows the watermark already passed).
    pub(crate) fn late_mark(&self) -> Arc<AtomicI64> {
        if self.derived {
            Arc::new(AtomicI64::new(MIN_TIMESTAMP))
        } else {
            self.p.inner.watermark.clone()
        }
    }

    fn scoped<U>(
        &self,
        name: &str,
        f: impl FnOnce(Dataset<(Millis, T)>) -> Dataset<(Millis, U)>,
    ) -> Stream<U> {
        let ds = self.p.inner.ctx.in_scope(name, || f(self.ds.clone()));
        self.with(ds)
    }

    /// Applies `f` to each element (Beam's `Map`); timestamps are kept.
    pub fn map<U: Data>(
        &self,
        name: &str,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Stream<U> {
        self.scoped(name, |ds| ds.map(move |(ts, x)| (ts, f(x))))
    }

    /// Applies `f` to each element and its event time; timestamps are kept.
    pub fn map_with_timestamp<U: Data>(
        &self,
        name: &str,
        f: impl Fn(Millis, T) -> U + Send + Sync + 'static,
    ) -> Stream<U> {
        self.scoped(name, |ds| ds.map(move |(ts, x)| (ts, f(ts, x))))
    }

    /// Applies `f` to each element and keeps what it returns, each with
    /// the element's timestamp (Beam's `FlatMap`).
    pub fn flat_map<U: Data, I: IntoIterator<Item = U> + 'static>(
        &self,
        name: &str,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        self.scoped(name, |ds| {
            ds.flat_map(move |(ts, x)| f(x).into_iter().map(move |u| (ts, u)))
        })
    }

    /// Keeps the elements `f` accepts (Beam's `Filter`).
    pub fn filter(&self, name: &str, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        self.scoped(name, |ds| ds.filter(move |(_, x)| f(x)))
    }

    /// Stamps each element with the event time `f` gives it (Beam's
    /// `WithTimestamps`), in ms since the epoch. The source's watermark
    /// follows these times. Must come before streams of several sources are
    /// flattened together (each source's watermark needs its own times).
    pub fn with_timestamps(
        &self,
        name: &str,
        f: impl Fn(&T) -> Millis + Send + Sync + 'static,
    ) -> Stream<T> {
        let Some(max) = self.source.clone() else {
            self.p.fail(Error::Usage(format!(
                "{name}: with_timestamps stamps a source's elements, so it comes before any \
                 flatten of several sources and before any stateful step"
            )));
            return self.clone();
        };
        // One step stamps a source: two could pull its watermark two ways.
        let key = Arc::as_ptr(&max) as usize;
        if let Some(first) = self.p.inner.stamped.lock().insert(key, name.to_string()) {
            self.p.fail(Error::Usage(format!(
                "{name}: the source's event times are already stamped by {first}; \
                 one with_timestamps per source sets its watermark"
            )));
        }
        if let Some(own) = self.p.inner.own_times.lock().get(&key) {
            own.store(false, Ordering::Relaxed);
        }
        self.scoped(name, |ds| observed(ds, max, None, None, move |_, x| f(x)))
    }

    /// Both streams' elements (Beam's `Flatten`).
    pub fn flatten(&self, other: &Stream<T>) -> Stream<T> {
        Stream {
            p: self.p.clone(),
            ds: self.ds.clone().union(other.ds.clone()),
            source: None,
            // Mixed with source elements, the late checks apply.
            derived: self.derived && other.derived,
        }
    }

    /// Windows the stream for an aggregation (Beam's `Window.into`), with
    /// the default trigger, discarding panes and no allowed lateness.
    pub fn window_into(&self, windows: Windows) -> WindowedStream<T> {
        if let Err(e) = windows.validate() {
            self.p.fail(e);
        }
        WindowedStream {
            stream: self.clone(),
            strategy: WindowingStrategy::new(windows),
        }
    }
}

impl<T: Data + Display> Stream<T> {
    /// Writes each batch's elements as lines into `dir` (a local directory
    /// or an object-store URL: `s3://bucket/out`), exactly once per batch
    /// (see the `sink` module: one sorted file per batch, visible only once
    /// committed).
    pub fn write_text(&self, name: &str, dir: impl AsRef<Path>) {
        let files = match crate::sink::FileSink::new(&self.p.inner.ctx, dir.as_ref()) {
            Ok(f) => f,
            Err(e) => return self.p.fail(e),
        };
        let sink = TextSink {
            name: name.to_string(),
            dir: dir.as_ref().to_path_buf(),
            files,
            ds: self.ds.clone(),
        };
        self.p.inner.sinks.lock().push(Box::new(sink));
    }
}

impl<T: Data> Stream<T> {
    /// Adds a sink the driver commits each batch.
    pub(crate) fn add_sink(&self, sink: Box<dyn Sink>) {
        self.p.inner.sinks.lock().push(sink);
    }

    /// Hands each batch's elements, with their event times, to `f` with
    /// the batch's number (Spark's `foreachBatch`). A batch run again after
    /// a crash calls `f` again with the same number and the same elements:
    /// for exactly-once results, `f` must make a repeated batch number a
    /// no-op (or overwrite what it wrote for it).
    pub fn for_each_batch(
        &self,
        name: &str,
        f: impl Fn(u64, Vec<(Millis, T)>) -> Result<()> + Send + Sync + 'static,
    ) {
        let sink = ForEachBatch {
            name: name.to_string(),
            ds: self.ds.clone(),
            f: Box::new(f),
        };
        self.p.inner.sinks.lock().push(Box::new(sink));
    }
}

type BatchFn<T> = Box<dyn Fn(u64, Vec<(Millis, T)>) -> Result<()> + Send + Sync>;

struct ForEachBatch<T> {
    name: String,
    ds: Dataset<(Millis, T)>,
    f: BatchFn<T>,
}

impl<T: Data> Sink for ForEachBatch<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn dir(&self) -> Option<&Path> {
        None
    }
    fn prepare(&self, _fresh: bool) -> Result<()> {
        Ok(())
    }
    fn write(&self, batch: u64) -> Result<u64> {
        let rows = self.ds.clone().collect()?;
        let n = rows.len() as u64;
        (self.f)(batch, rows).map_err(|e| match e {
            Error::Usage(_) | Error::Input(_) => e,
            other => Error::Step {
                step: self.name.clone(),
                message: other.to_string(),
            },
        })?;
        Ok(n)
    }
}

struct TextSink<T> {
    name: String,
    dir: PathBuf,
    files: crate::sink::FileSink,
    ds: Dataset<(Millis, T)>,
}

impl<T: Data + Display> Sink for TextSink<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
    fn prepare(&self, fresh: bool) -> Result<()> {
        self.files.prepare(fresh)
    }
    fn write(&self, batch: u64) -> Result<u64> {
        if self.files.is_committed(batch)? {
            return self.files.commit(batch, Vec::new());
        }
        let rows = self.ds.clone().collect()?;
        let lines = rows.into_iter().map(|(_, x)| x.to_string()).collect();
        self.files.commit(batch, lines)
    }
}

/// A stream with a windowing strategy, ready for a keyed aggregation.
pub struct WindowedStream<T> {
    stream: Stream<T>,
    strategy: WindowingStrategy,
}

impl<T: Data> WindowedStream<T> {
    /// The stream windowed.
    pub(crate) fn stream(&self) -> &Stream<T> {
        &self.stream
    }

    /// `stream`, windowed as this one is.
    pub(crate) fn with_stream<U>(&self, stream: Stream<U>) -> WindowedStream<U> {
        WindowedStream {
            stream,
            strategy: self.strategy.clone(),
        }
    }

    /// Fires panes as `trigger` says.
    pub fn triggering(mut self, trigger: impl Into<Trigger>) -> Self {
        self.strategy.trigger = trigger.into();
        self
    }

    /// Each pane holds everything its window received so far.
    pub fn accumulating_fired_panes(mut self) -> Self {
        self.strategy.accumulation = Accumulation::Accumulating;
        self
    }

    /// Each pane holds only what arrived since the last one (the default).
    pub fn discarding_fired_panes(mut self) -> Self {
        self.strategy.accumulation = Accumulation::Discarding;
        self
    }

    /// Windows take elements until the watermark passes their end by `d`;
    /// later ones go to the late output.
    pub fn with_allowed_lateness(mut self, d: Duration) -> Self {
        self.strategy.allowed_lateness = millis(d);
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> &WindowingStrategy {
        &self.strategy
    }
}

impl<T: Key> WindowedStream<T> {
    /// Counts each distinct element per window (Beam's `Count.perElement`).
    pub fn count_per_element(&self, name: &str) -> Aggregated<T, u64, u64> {
        let keyed = WindowedStream {
            stream: self
                .stream
                .map(&format!("{name}/PairWithOne"), |x| (x, 1u64)),
            strategy: self.strategy.clone(),
        };
        keyed.combine_per_key(name, Sum)
    }
}

/// A windowed aggregation's results and the elements too late for it.
pub struct Aggregated<K, V, O> {
    /// One element per fired pane, stamped with its window's last instant.
    pub output: Stream<Pane<K, O>>,
    /// Elements that arrived after their window expired (its end plus the
    /// allowed lateness), with their event times: kept, never dropped.
    pub late: Stream<(K, V)>,
}

/// `C`'s per-batch partial: the accumulator and element count of the
/// elements in time, or the elements too late.
struct Partial<C, V>(Arc<C>, PhantomData<fn(V)>);

impl<V: Data, C: CombineFn<V>> CombineFn<(bool, Millis, V)> for Partial<C, V> {
    type Acc = (C::Acc, u64, Vec<(Millis, V)>);
    type Output = (C::Acc, u64, Vec<(Millis, V)>);
    fn create(&self) -> Self::Acc {
        (self.0.create(), 0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, (late, ts, v): (bool, Millis, V)) {
        if late {
            acc.2.push((ts, v));
        } else {
            self.0.add(&mut acc.0, v);
            acc.1 += 1;
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(&mut acc.0, other.0);
        acc.1 += other.1;
        acc.2.extend(other.2);
    }
    fn extract(&self, acc: Self::Acc) -> Self::Acc {
        acc
    }
}

type PartialRow<K, V, A> = ((Window, K, bool), (A, u64, Vec<(Millis, V)>));

impl<K: Key, V: Data + Clone> WindowedStream<(K, V)> {
    /// Combines each key's values per window with `c` (Beam's
    /// `Combine.perKey`), firing as the strategy says.
    pub fn combine_per_key<C>(&self, name: &str, c: C) -> Aggregated<K, V, C::Output>
    where
        C: CombineFn<V>,
        C::Acc: Clone,
        C::Output: Clone,
    {
        let p = &self.stream.p;
        let ctx = p.inner.ctx.clone();
        let c = Arc::new(c);
        let strategy = self.strategy.clone();
        let watermark = self.stream.late_mark();
        let input = self.stream.ds.clone();
        let (step, plan) = ctx.in_scope(name, || {
            let s = strategy.clone();
            let windowed = input.flat_map(move |(ts, (k, v)): (Millis, (K, V))| {
                let wm = watermark.load(Ordering::Relaxed);
                let mut out = Vec::with_capacity(1);
                let mut late_kept = false;
                s.windows.assign(ts, |w| {
                    let late = s.is_droppable(&w, wm);
                    // A late element goes to the late output once, however
                    // many of its windows expired.
                    if late && std::mem::replace(&mut late_kept, true) {
                        return;
                    }
                    out.push(((w, k.clone(), late), (late, ts, v.clone())));
                });
                out
            });
            let plan: Dataset<PartialRow<K, V, C::Acc>> =
                windowed.combine_per_key(Partial(c.clone(), PhantomData));
            (name.to_string(), plan)
        });
        let panes = Arc::new(Mutex::new(Vec::new()));
        let late = Arc::new(Mutex::new(Vec::new()));
        let stage = CombineStage {
            name: step,
            strategy,
            combine: c,
            plan,
            state: KeyedWindows::new(),
            panes: panes.clone(),
            late: late.clone(),
            late_total: 0,
        };
        p.inner.stages.lock().push(Box::new(stage));
        let output = ctx.in_scope(name, || ctx.from_each_run(move || Ok(panes.lock().clone())));
        let late = ctx.in_scope(&format!("{name}/Late"), || {
            ctx.from_each_run(move || Ok(late.lock().clone()))
        });
        Aggregated {
            output: self.stream.derived(output),
            late: self.stream.derived(late),
        }
    }

    /// Each key's values per window, as a list (Beam's `GroupByKey` on
    /// windowed data; the values' order is not defined).
    pub fn group_by_key(&self, name: &str) -> Aggregated<K, V, Vec<V>> {
        self.combine_per_key(name, ListOf)
    }

    /// Counts each key's elements per window.
    pub fn count_per_key(&self, name: &str) -> Aggregated<K, V, u64> {
        let counted = WindowedStream {
            stream: self.stream.clone(),
            strategy: self.strategy.clone(),
        };
        counted.combine_per_key(name, CountValues)
    }
}

/// Collects values into a list.
struct ListOf;

impl<V: Data + Clone> CombineFn<V> for ListOf {
    type Acc = Vec<V>;
    type Output = Vec<V>;
    fn create(&self) -> Vec<V> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<V>, v: V) {
        acc.push(v);
    }
    fn merge(&self, acc: &mut Vec<V>, other: Vec<V>) {
        acc.extend(other);
    }
    fn extract(&self, acc: Vec<V>) -> Vec<V> {
        acc
    }
}

/// Counts values, whatever they are.
struct CountValues;

impl<V: Data> CombineFn<V> for CountValues {
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: V) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn extract(&self, acc: u64) -> u64 {
        acc
    }
}

type Cell<X> = Arc<Mutex<Vec<(Millis, X)>>>;

struct CombineStage<K, V, C: CombineFn<V>> {
    name: String,
    strategy: WindowingStrategy,
    combine: Arc<C>,
    plan: Dataset<PartialRow<K, V, C::Acc>>,
    state: KeyedWindows<K, C::Acc>,
    panes: Cell<Pane<K, C::Output>>,
    late: Cell<(K, V)>,
    late_total: u64,
}

impl<K, V, C> Stage for CombineStage<K, V, C>
where
    K: Key,
    V: Data + Clone,
    C: CombineFn<V>,
    C::Acc: Clone,
    C::Output: Clone,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> String {
        format!(
            "windowed combine {} of {} by {} ({})",
            std::any::type_name::<C>(),
            std::any::type_name::<V>(),
            std::any::type_name::<K>(),
            self.strategy.describe()
        )
    }

    fn absorb(&mut self, now: Millis) -> Result<u64> {
        let rows = self.plan.clone().collect()?;
        let merges = self.strategy.windows.merges();
        let mut late = self.late.lock();
        let mut n = 0;
        for ((window, key, is_late), (acc, count, records)) in rows {
            if is_late {
                self.late_total += records.len() as u64;
                late.extend(records.into_iter().map(|(ts, v)| (ts, (key.clone(), v))));
            } else {
                n += count;
                self.state
                    .absorb(&*self.combine, merges, key, window, acc, count, now);
            }
        }
        Ok(n)
    }

    fn fire(&mut self, watermark: Millis, now: Millis) -> u64 {
        let mut out = Vec::new();
        self.state
            .fire(&*self.combine, &self.strategy, watermark, now, &mut out);
        let n = out.len() as u64;
        self.panes
            .lock()
            .extend(out.into_iter().map(|p| (p.window.max_timestamp(), p)));
        n
    }

    fn has_due(&self, watermark: Millis, now: Millis) -> bool {
        self.state.has_due(&self.strategy, watermark, now)
    }

    fn clear(&mut self) {
        self.panes.lock().clear();
        self.late.lock().clear();
    }

    fn entries(&self) -> usize {
        self.state.len()
    }

    fn late_total(&self) -> u64 {
        self.late_total
    }

    fn set_late_total(&mut self, n: u64) {
        self.late_total = n;
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        self.state.snapshot()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        self.state = KeyedWindows::restore(bytes)?;
        Ok(())
    }

    fn delta(&mut self) -> Result<Option<Vec<u8>>> {
        self.state.delta().map(Some)
    }

    fn forget_changes(&mut self) {
        self.state.forget_changes();
    }

    fn track_changes(&mut self, on: bool) {
        self.state.track_changes(on);
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<()> {
        self.state.apply_delta(bytes)
    }
}
