//! Shared values: accumulators (named counters that tasks add to and the
//! driver reads after an action) and broadcast values (read-only data that
//! every task's closures read), as Spark has them.
//!
//! **Accumulators count each task once.** A task's additions are kept apart
//! while it runs — every poll of an op's stream runs inside the task's
//! [`TaskScope`] — and committed only when its stream ends well. A failed
//! task's additions are dropped. On a cluster the committed amounts are the
//! step's metrics (`spate.acc<US>NAME<US>SIGN` counts): Ballista's scheduler
//! keeps the metrics of each task's successful attempt, and the driver adds
//! those of every job an action ran.
//!
//! **Broadcast values travel with the job.** Locally a closure reads the
//! value itself. On a cluster, the driver encodes each value (CBOR,
//! base64) into the job's settings (`spate.broadcasts`, a DataFusion config
//! extension that the scheduler and the executors register); an executor
//! decodes a value once and keeps it while the job's settings carry the
//! same bytes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::execution::TaskContext;
use datafusion::prelude::SessionConfig;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::metrics::{MetricKey, MetricValue, MetricsStore, merge_into};
use crate::rows::Data;

/// spate's settings that travel with a job to the scheduler and its
/// executors (`spate.*`).
#[derive(Debug, Clone, Default)]
pub struct SpateOptions {
    /// The job's broadcast values: a JSON object from broadcast id to the
    /// value as base64 CBOR.
    pub broadcasts: String,
}

impl ExtensionOptions for SpateOptions {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        match key {
            "broadcasts" => {
                self.broadcasts = value.to_string();
                Ok(())
            }
            _ => Err(datafusion::error::DataFusionError::Configuration(format!(
                "no setting spate.{key}"
            ))),
        }
    }

    /// Entries under their whole key (`spate.broadcasts`): Ballista sends a
    /// job's settings by these keys and sets them again by them. (The
    /// `extensions_options!` macro's entries lack the prefix, so they would
    /// not come back.)
    fn entries(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            key: format!("{}.broadcasts", Self::PREFIX),
            value: Some(self.broadcasts.clone()),
            description: "broadcast values of the job (JSON: id to base64 CBOR)",
        }]
    }
}

impl ConfigExtension for SpateOptions {
    const PREFIX: &'static str = "spate";
}

/// `config` with spate's settings registered (every session the driver,
/// the scheduler and the executors build has them).
pub fn with_spate_options(config: SessionConfig) -> SessionConfig {
    if config.options().extensions.get::<SpateOptions>().is_some() {
        return config;
    }
    config.with_option_extension(SpateOptions::default())
}

/// The largest encoded broadcast value: every task's settings carry it,
/// in gRPC messages of at most 16 MiB.
pub const MAX_BROADCAST_BYTES: usize = 4 << 20;

/// Prefix of the metric names that carry accumulator amounts.
const ACC_PREFIX: &str = "spate.acc\u{1f}";
const ACC_SEP: char = '\u{1f}';

struct AccInner {
    name: String,
    total: AtomicI64,
}

/// A named counter that tasks add to and the driver reads after an action
/// (Spark's `LongAccumulator`, Hadoop's counters). A task's additions count
/// once, when it succeeds; a failed or retried task's never count twice.
///
/// ```
/// use spate_core::prelude::*;
/// let ctx = Context::new()?;
/// let blank = ctx.accumulator("blank lines");
/// let b = blank.clone();
/// let words = ctx
///     .from_vec(vec!["a b".to_string(), "".into(), "c".into(), "".into()])
///     .filter(move |l| { if l.is_empty() { b.add(1) } !l.is_empty() })
///     .count()?;
/// assert_eq!((words, blank.value()), (2, 2));
/// # Ok::<(), spate_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Accumulator {
    inner: Arc<AccInner>,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Accumulator({} = {})", self.inner.name, self.value())
    }
}

impl Accumulator {
    /// Adds `amount` (in a task: counted when the task succeeds).
    pub fn add(&self, amount: i64) {
        let scoped = SCOPE.with(|s| match &*s.borrow() {
            Some(scope) => {
                scope.add(&self.inner, amount);
                true
            }
            None => false,
        });
        if !scoped {
            self.inner.total.fetch_add(amount, Ordering::Relaxed);
        }
    }

    /// The total of every successful task's additions so far.
    pub fn value(&self) -> i64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// The accumulator's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

/// The accumulators and broadcast values of one context.
#[derive(Default)]
pub(crate) struct SharedValues {
    accumulators: Mutex<BTreeMap<String, Accumulator>>,
    broadcasts: Mutex<BTreeMap<String, String>>,
}

impl SharedValues {
    /// The accumulator named `name`, made on first use.
    pub(crate) fn accumulator(&self, name: &str) -> Accumulator {
        self.accumulators
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Accumulator {
                inner: Arc::new(AccInner {
                    name: name.to_string(),
                    total: AtomicI64::new(0),
                }),
            })
            .clone()
    }

    pub(crate) fn has_accumulators(&self) -> bool {
        !self.accumulators.lock().is_empty()
    }

    /// Adds the accumulator amounts among a cluster job's metrics.
    pub(crate) fn add_counts(&self, counts: &[(String, u64)]) {
        for (name, value) in counts {
            let Some(rest) = name.strip_prefix(ACC_PREFIX) else {
                continue;
            };
            let Some((acc, sign)) = rest.rsplit_once(ACC_SEP) else {
                continue;
            };
            let value = i64::try_from(*value).unwrap_or(i64::MAX);
            let value = if sign == "-" { -value } else { value };
            let acc = self.accumulator(acc);
            acc.inner.total.fetch_add(value, Ordering::Relaxed);
        }
    }

    /// Records a broadcast value's encoding; returns the settings value
    /// that carries all of them.
    pub(crate) fn add_broadcast(&self, id: &str, encoded: String) -> Result<String> {
        let mut all = self.broadcasts.lock();
        all.insert(id.to_string(), encoded);
        serde_json::to_string(&*all)
            .map_err(|e| Error::Internal(format!("encoding broadcast values: {e}")))
    }
}

/// The additions, metric updates and broadcast values of one running task.
pub(crate) struct TaskScope {
    adds: Mutex<Vec<(Arc<AccInner>, i64)>>,
    metrics: Mutex<BTreeMap<MetricKey, MetricValue>>,
    broadcasts: Option<Arc<str>>,
    parsed: std::sync::OnceLock<BTreeMap<String, String>>,
    /// The op's step: metric updates outside a fused closure's own step.
    step: Arc<str>,
    /// Where committed metric values go in this process (the driver's
    /// context; none on an executor, whose values travel as op metrics).
    store: Option<Arc<MetricsStore>>,
}

thread_local! {
    static SCOPE: RefCell<Option<Arc<TaskScope>>> = const { RefCell::new(None) };
    /// The step whose user code runs on this thread now.
    static STEP: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Notes that user code of `step` runs next on this thread (cheap when it
/// already does: a pointer comparison).
#[inline]
pub(crate) fn in_step(step: &Arc<str>) {
    STEP.with(|s| {
        let mut s = s.borrow_mut();
        if !matches!(&*s, Some(current) if Arc::ptr_eq(current, step)) {
            *s = Some(step.clone());
        }
    })
}

/// Whether any metric was made in this process (a cluster driver then
/// asks the scheduler for each job's metric values).
static METRICS_MADE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn metrics_made() -> bool {
    METRICS_MADE.load(Ordering::Relaxed)
}

/// Notes that a metric handle was made (on a cluster's driver, whose
/// tasks run elsewhere, this is how it knows to gather metric values).
pub(crate) fn note_metric_made() {
    METRICS_MADE.store(true, Ordering::Relaxed);
}

/// Records a metric update in the running task, under the step running.
pub(crate) fn record_metric(namespace: &str, name: &str, value: MetricValue) {
    let Some(scope) = TaskScope::current() else {
        log::warn!("metric {namespace}/{name} updated outside any step: not recorded");
        return;
    };
    let step = STEP
        .with(|s| s.borrow().clone())
        .unwrap_or_else(|| scope.step.clone());
    let key = MetricKey {
        step: step.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    merge_into(&mut scope.metrics.lock(), key, value);
}

impl TaskScope {
    /// A scope for a task run with `context` (whose settings may carry
    /// broadcast values).
    pub(crate) fn new(context: &TaskContext, step: &str) -> Arc<Self> {
        let store = context.session_config().get_extension::<MetricsStore>();
        let broadcasts = context
            .session_config()
            .options()
            .extensions
            .get::<SpateOptions>()
            .filter(|o| !o.broadcasts.is_empty())
            .map(|o| Arc::from(o.broadcasts.as_str()));
        Arc::new(Self {
            adds: Mutex::new(Vec::new()),
            metrics: Mutex::new(BTreeMap::new()),
            broadcasts,
            parsed: std::sync::OnceLock::new(),
            step: Arc::from(step),
            store,
        })
    }

    fn add(&self, acc: &Arc<AccInner>, amount: i64) {
        let mut adds = self.adds.lock();
        match adds.iter_mut().find(|(a, _)| Arc::ptr_eq(a, acc)) {
            Some((_, total)) => *total += amount,
            None => adds.push((acc.clone(), amount)),
        }
    }

    /// Counts the task's additions (it succeeded): into the accumulators
    /// of this process and into `metrics`, by name.
    pub(crate) fn commit(
        &self,
        accumulated: &Mutex<BTreeMap<String, i64>>,
        metric_counts: &Mutex<Vec<(String, u64)>>,
    ) {
        let adds = std::mem::take(&mut *self.adds.lock());
        if !adds.is_empty() {
            let mut accumulated = accumulated.lock();
            for (acc, amount) in adds {
                acc.total.fetch_add(amount, Ordering::Relaxed);
                *accumulated.entry(acc.name.clone()).or_default() += amount;
            }
        }
        let metrics = std::mem::take(&mut *self.metrics.lock());
        if !metrics.is_empty() {
            if let Some(store) = &self.store {
                store.commit(&metrics);
            }
            let nonce = {
                let mut h = rustc_hash::FxHasher::default();
                (self as *const Self as usize).hash(&mut h);
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
                    .hash(&mut h);
                h.finish()
            };
            metric_counts
                .lock()
                .extend(crate::metrics::to_counts(&metrics, nonce));
        }
    }

    /// The encoded value of broadcast `id`, if the task's settings carry it.
    fn broadcast(&self, id: &str) -> Option<String> {
        let raw = self.broadcasts.as_ref()?;
        self.parsed
            .get_or_init(|| serde_json::from_str(raw).unwrap_or_default())
            .get(id)
            .cloned()
    }

    /// Runs `f` with this scope as the current task's.
    pub(crate) fn enter<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        let _guard = self.guard();
        f()
    }

    /// Makes this scope the current task's until the guard is dropped
    /// (for a thread that runs a task's user code, such as a reducer's).
    pub(crate) fn guard(self: &Arc<Self>) -> ScopeGuard {
        let previous = SCOPE.with(|s| s.borrow_mut().replace(self.clone()));
        let previous_step = STEP.with(|s| s.borrow_mut().replace(self.step.clone()));
        ScopeGuard(previous, previous_step)
    }

    /// The scope of the task running on this thread, if any.
    pub(crate) fn current() -> Option<Arc<TaskScope>> {
        SCOPE.with(|s| s.borrow().clone())
    }
}

/// Restores the thread's previous task scope when dropped.
pub(crate) struct ScopeGuard(Option<Arc<TaskScope>>, Option<Arc<str>>);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let (previous, step) = (self.0.take(), self.1.take());
        SCOPE.with(|s| *s.borrow_mut() = previous);
        STEP.with(|s| *s.borrow_mut() = step);
    }
}

/// Accumulator amounts as named counts (the metrics an op reports).
pub(crate) fn as_counts(amounts: &BTreeMap<String, i64>) -> Vec<(String, u64)> {
    amounts
        .iter()
        .map(|(name, amount)| {
            let sign = if *amount < 0 { '-' } else { '+' };
            (
                format!("{ACC_PREFIX}{name}{ACC_SEP}{sign}"),
                amount.unsigned_abs(),
            )
        })
        .collect()
}

/// A shipped value: the settings it came in, its encoding's hash, the value.
type Shipped<T> = (Arc<str>, u64, Arc<T>);

struct BroadcastInner<T> {
    id: String,
    /// The value given (a side input's: once computed).
    local: Mutex<Option<Arc<T>>>,
    /// The value shipped with the current job: (hash of its encoding, value).
    /// The value shipped with the job last read: the task settings it came
    /// in (compared by pointer: a task reads it with one comparison after
    /// the first read), the hash of its encoding, the value.
    shipped: Mutex<Option<Shipped<T>>>,
}

/// A read-only value every task can read (Spark's broadcast variable):
/// made once by [`Context::broadcast`](crate::Context::broadcast), captured
/// by closures, read with [`value`](Self::value).
///
/// ```
/// use std::collections::HashMap;
/// use spate_core::prelude::*;
/// let ctx = Context::new()?;
/// let names = ctx.broadcast(HashMap::from([(1u32, "one".to_string()), (2, "two".into())]))?;
/// let named = ctx
///     .from_vec(vec![1u32, 2, 2])
///     .map(move |n| names.value().get(&n).cloned().unwrap_or_default())
///     .collect()?;
/// assert_eq!(named.len(), 3);
/// # Ok::<(), spate_core::Error>(())
/// ```
pub struct Broadcast<T> {
    inner: Arc<BroadcastInner<T>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broadcast({})", self.inner.id)
    }
}

impl<T: Data> Broadcast<T> {
    pub(crate) fn new(id: String, value: T) -> Self {
        let b = Self::unset(id);
        b.set(value);
        b
    }

    /// A broadcast whose value is set later (a side input's).
    pub(crate) fn unset(id: String) -> Self {
        Self {
            inner: Arc::new(BroadcastInner {
                id,
                local: Mutex::new(None),
                shipped: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn set(&self, value: T) {
        *self.inner.local.lock() = Some(Arc::new(value));
    }

    /// The value: in a cluster's task, the driver's (decoded once per
    /// executor and job); elsewhere, the one given.
    pub fn value(&self) -> Arc<T> {
        let scope = TaskScope::current();
        let settings = scope.as_ref().and_then(|s| s.broadcasts.clone());
        if let Some(settings) = &settings
            && let Some((seen, _, value)) = &*self.inner.shipped.lock()
            && Arc::ptr_eq(seen, settings)
        {
            return value.clone();
        }
        let encoded = scope.and_then(|s| s.broadcast(&self.inner.id));
        let (Some(settings), Some(encoded)) = (settings, encoded) else {
            match self.inner.local.lock().clone() {
                Some(value) => return value,
                None => fail_read(&self.inner.id),
            }
        };
        let mut hasher = rustc_hash::FxHasher::default();
        encoded.hash(&mut hasher);
        let hash = hasher.finish();
        let mut shipped = self.inner.shipped.lock();
        if let Some((seen, h, value)) = &mut *shipped
            && *h == hash
        {
            *seen = settings;
            return value.clone();
        }
        match decode::<T>(&encoded) {
            Ok(value) => {
                let value = Arc::new(value);
                *shipped = Some((settings, hash, value.clone()));
                value
            }
            // The driver encoded it with the same type (a job only runs on
            // executors of its own build): a failure here is a bug, and
            // the panic fails the step that read it, naming it.
            #[expect(clippy::panic, reason = "a user closure's read; the step fails")]
            Err(e) => panic!("broadcast {}: {e}", self.inner.id),
        }
    }

    /// The broadcast's id (its name among the context's broadcasts).
    pub fn id(&self) -> &str {
        &self.inner.id
    }
}

#[expect(clippy::panic, reason = "a user closure's read; the step fails")]
fn fail_read(id: &str) -> ! {
    panic!(
        "side input {id} read by a step that did not declare it (with_side), so it was never computed"
    )
}

/// A value as base64 CBOR: any serde type, maps with any keys included.
pub(crate) fn encode<T: Data>(value: &T) -> Result<String> {
    use base64::Engine;
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes)
        .map_err(|e| Error::Usage(format!("a broadcast value cannot be encoded: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn decode<T: Data>(encoded: &str) -> Result<T> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| Error::Internal(format!("not base64: {e}")))?;
    ciborium::from_reader(bytes.as_slice())
        .map_err(|e| Error::Internal(format!("not the value's CBOR: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_values_round_trip_through_their_encoding() {
        let map = std::collections::HashMap::from([(1u32, "one".to_string()), (2, "two".into())]);
        assert_eq!(
            decode::<std::collections::HashMap<u32, String>>(&encode(&map).unwrap()).unwrap(),
            map
        );
        let pairs = vec![("a".to_string(), -1i64), ("b".into(), 2)];
        assert_eq!(
            decode::<Vec<(String, i64)>>(&encode(&pairs).unwrap()).unwrap(),
            pairs
        );
        assert_eq!(decode::<u64>(&encode(&7u64).unwrap()).unwrap(), 7);
    }

    #[test]
    fn accumulator_counts_round_trip() {
        let shared = SharedValues::default();
        let amounts = BTreeMap::from([("x/y".to_string(), -3i64), ("z".into(), 5)]);
        shared.add_counts(&as_counts(&amounts));
        shared.add_counts(&[("other".into(), 9)]);
        assert_eq!(shared.accumulator("x/y").value(), -3);
        assert_eq!(shared.accumulator("z").value(), 5);
    }
}
