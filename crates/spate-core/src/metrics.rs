//! User metrics (Beam's `Metrics`): counters, distributions and gauges
//! that any step updates, committed per step when a task succeeds, and
//! queried from a pipeline's result (`PipelineResult::metrics`).
//!
//! An update inside a task is kept in the task's scope under the step
//! running (see [`crate::shared`]) and committed when the task's stream
//! ends well, so a failed task's updates never count. Locally committed
//! values go to the context's [`MetricsStore`]; on a cluster they travel
//! as the op's `Count` metrics, which Ballista keeps per successful task
//! and sums by name: additive fields (counter, distribution count and sum)
//! are named per metric, the others (min, max, gauge value and time) per
//! task commit, so the driver can take their min, max or latest.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// A metric's name: the step that updated it, a namespace, a name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    /// The step (its full name: `Composite/step`).
    pub step: String,
    /// The namespace given when the metric was made.
    pub namespace: String,
    /// The name given when the metric was made.
    pub name: String,
}

/// A distribution's committed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistributionResult {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: i64,
    /// The least.
    pub min: i64,
    /// The greatest.
    pub max: i64,
}

impl DistributionResult {
    /// The mean, if any value was recorded.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

/// A gauge's committed value: the latest set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeResult {
    /// The value.
    pub value: i64,
    /// When it was set, in ms since the epoch.
    pub timestamp_ms: u64,
}

/// One metric's committed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricValue {
    Counter(i64),
    Distribution(DistributionResult),
    Gauge(GaugeResult),
}

impl MetricValue {
    fn merge(&mut self, other: MetricValue) {
        match (self, other) {
            (MetricValue::Counter(a), MetricValue::Counter(b)) => *a += b,
            (MetricValue::Distribution(a), MetricValue::Distribution(b)) => {
                a.count += b.count;
                a.sum += b.sum;
                a.min = a.min.min(b.min);
                a.max = a.max.max(b.max);
            }
            (MetricValue::Gauge(a), MetricValue::Gauge(b)) => {
                if b.timestamp_ms >= a.timestamp_ms {
                    *a = b;
                }
            }
            // One name used as two kinds: the later kind wins.
            (a, b) => *a = b,
        }
    }
}

/// Merges `value` into `map[key]`.
pub(crate) fn merge_into(
    map: &mut BTreeMap<MetricKey, MetricValue>,
    key: MetricKey,
    value: MetricValue,
) {
    match map.get_mut(&key) {
        Some(v) => v.merge(value),
        None => {
            map.insert(key, value);
        }
    }
}

/// The committed metrics of a context's jobs, until a pipeline run takes
/// them.
#[derive(Debug, Default)]
pub struct MetricsStore {
    values: Mutex<BTreeMap<MetricKey, MetricValue>>,
}

impl MetricsStore {
    pub(crate) fn commit(&self, values: &BTreeMap<MetricKey, MetricValue>) {
        let mut all = self.values.lock();
        for (k, v) in values {
            merge_into(&mut all, k.clone(), *v);
        }
    }

    /// Everything committed so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<MetricKey, MetricValue> {
        self.values.lock().clone()
    }

    /// Takes everything committed so far.
    pub(crate) fn take(&self) -> BTreeMap<MetricKey, MetricValue> {
        std::mem::take(&mut *self.values.lock())
    }

    /// Adds the metric values among a cluster job's counts.
    pub(crate) fn add_counts(&self, counts: &[(String, u64)]) {
        let decoded = from_counts(counts);
        self.commit(&decoded);
    }
}

/// A counter: sums what tasks add (Beam's `Metrics.counter`).
#[derive(Debug, Clone)]
pub struct Counter {
    namespace: Arc<str>,
    name: Arc<str>,
}

impl Counter {
    /// Adds 1.
    pub fn inc(&self) {
        self.inc_by(1)
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: i64) {
        crate::shared::record_metric(&self.namespace, &self.name, MetricValue::Counter(n));
    }

    /// Subtracts 1.
    pub fn dec(&self) {
        self.inc_by(-1)
    }
}

/// A distribution: count, sum, min and max of the values recorded (Beam's
/// `Metrics.distribution`).
#[derive(Debug, Clone)]
pub struct Distribution {
    namespace: Arc<str>,
    name: Arc<str>,
}

impl Distribution {
    /// Records `value`.
    pub fn update(&self, value: i64) {
        let v = DistributionResult {
            count: 1,
            sum: value,
            min: value,
            max: value,
        };
        crate::shared::record_metric(&self.namespace, &self.name, MetricValue::Distribution(v));
    }
}

/// A gauge: the latest value set (Beam's `Metrics.gauge`).
#[derive(Debug, Clone)]
pub struct Gauge {
    namespace: Arc<str>,
    name: Arc<str>,
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        crate::shared::record_metric(
            &self.namespace,
            &self.name,
            MetricValue::Gauge(GaugeResult {
                value,
                timestamp_ms,
            }),
        );
    }
}

/// Makes metrics (Beam's `Metrics`). Update them inside steps: an update
/// outside any step's task belongs to no step and is not recorded.
///
/// ```
/// use spate_core::prelude::*;
/// use spate_core::metrics::{Metrics, MetricsFilter};
/// let p = Pipeline::with_context(Context::builder().threads(2).build()?);
/// let empty = Metrics::counter("lines", "empty");
/// let dir = tempfile::tempdir().unwrap();
/// p.apply("In", Create(vec!["a".to_string(), "".into(), "".into()]))
///     .apply("Check", Filter::new(move |l: &String| { if l.is_empty() { empty.inc() } true }))
///     .apply("Write", WriteText::to(dir.path().join("out")));
/// let result = p.run()?;
/// let found = result.metrics().query(&MetricsFilter::new().with_name("empty"));
/// assert_eq!(found.counters[0].committed, 2);
/// assert_eq!(found.counters[0].key.step, "Check/filter");
/// # Ok::<(), spate_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Metrics;

impl Metrics {
    /// A counter named `name` in `namespace`.
    pub fn counter(namespace: &str, name: &str) -> Counter {
        crate::shared::note_metric_made();
        Counter {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        }
    }

    /// A distribution named `name` in `namespace`.
    pub fn distribution(namespace: &str, name: &str) -> Distribution {
        crate::shared::note_metric_made();
        Distribution {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        }
    }

    /// A gauge named `name` in `namespace`.
    pub fn gauge(namespace: &str, name: &str) -> Gauge {
        crate::shared::note_metric_made();
        Gauge {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        }
    }
}

/// Which metrics a query wants (Beam's `MetricsFilter`): all given
/// criteria must hold. A step matches if it is the step given or inside it
/// (`Count` matches `Count/map`).
#[derive(Debug, Clone, Default)]
pub struct MetricsFilter {
    steps: Vec<String>,
    namespace: Option<String>,
    name: Option<String>,
}

impl MetricsFilter {
    /// Every metric.
    pub fn new() -> Self {
        Self::default()
    }
    /// Metrics of `step` or of steps inside it (several: any of them).
    pub fn with_step(mut self, step: &str) -> Self {
        self.steps.push(step.to_string());
        self
    }
    /// Metrics in `namespace`.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }
    /// Metrics named `name`.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    fn matches(&self, key: &MetricKey) -> bool {
        let step_ok = self.steps.is_empty()
            || self.steps.iter().any(|s| {
                key.step == *s
                    || key.step.starts_with(&format!("{s}/"))
                    || key.step.ends_with(&format!("/{s}"))
            });
        step_ok
            && self.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && self.name.as_ref().is_none_or(|n| *n == key.name)
    }
}

/// One metric in a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult<V> {
    /// Which metric.
    pub key: MetricKey,
    /// Its value over successful tasks.
    pub committed: V,
    /// Its value over all tasks: failed tasks' updates are not kept, so
    /// this is `committed`.
    pub attempted: V,
}

/// A query's answer (Beam's `MetricQueryResults`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricQueryResults {
    /// Counters.
    pub counters: Vec<MetricResult<i64>>,
    /// Distributions.
    pub distributions: Vec<MetricResult<DistributionResult>>,
    /// Gauges.
    pub gauges: Vec<MetricResult<GaugeResult>>,
}

/// The metrics of a pipeline run (Beam's `MetricResults`).
#[derive(Debug, Clone, Default)]
pub struct MetricResults {
    values: BTreeMap<MetricKey, MetricValue>,
}

impl MetricResults {
    pub(crate) fn new(values: BTreeMap<MetricKey, MetricValue>) -> Self {
        Self { values }
    }

    /// The metrics `filter` selects, by kind, ordered by key.
    pub fn query(&self, filter: &MetricsFilter) -> MetricQueryResults {
        let mut out = MetricQueryResults::default();
        for (key, value) in &self.values {
            if !filter.matches(key) {
                continue;
            }
            let key = key.clone();
            match *value {
                MetricValue::Counter(v) => out.counters.push(MetricResult {
                    key,
                    committed: v,
                    attempted: v,
                }),
                MetricValue::Distribution(v) => out.distributions.push(MetricResult {
                    key,
                    committed: v,
                    attempted: v,
                }),
                MetricValue::Gauge(v) => out.gauges.push(MetricResult {
                    key,
                    committed: v,
                    attempted: v,
                }),
            }
        }
        out
    }
}

const PREFIX: &str = "spate.metric\u{1f}";
const SEP: char = '\u{1f}';

fn signed(v: i64) -> (char, u64) {
    (if v < 0 { '-' } else { '+' }, v.unsigned_abs())
}

/// Committed values as named counts (an op's metrics, for the scheduler).
/// `nonce` tells one task's commit from another's, for fields that must
/// not be summed.
pub(crate) fn to_counts(
    values: &BTreeMap<MetricKey, MetricValue>,
    nonce: u64,
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (k, v) in values {
        let base = format!("{PREFIX}{}{SEP}{}{SEP}{}", k.step, k.namespace, k.name);
        let mut push = |field: &str, tag: Option<u64>, value: i64| {
            let (sign, abs) = signed(value);
            let tag = tag.map(|t| t.to_string()).unwrap_or_default();
            out.push((format!("{base}{SEP}{field}{SEP}{tag}{SEP}{sign}"), abs));
        };
        match v {
            MetricValue::Counter(c) => push("c", None, *c),
            MetricValue::Distribution(d) => {
                push("dc", None, d.count as i64);
                push("ds", None, d.sum);
                push("dn", Some(nonce), d.min);
                push("dx", Some(nonce), d.max);
            }
            MetricValue::Gauge(g) => {
                push("gv", Some(nonce), g.value);
                push("gt", Some(nonce), g.timestamp_ms as i64);
            }
        }
    }
    out
}

/// The metric values among a job's named counts (see [`to_counts`]).
pub(crate) fn from_counts(counts: &[(String, u64)]) -> BTreeMap<MetricKey, MetricValue> {
    #[derive(Default)]
    struct Parts {
        counter: Option<i64>,
        count: i64,
        sum: i64,
        dist: bool,
        mins: Vec<i64>,
        maxs: Vec<i64>,
        gauges: BTreeMap<String, (Option<i64>, Option<i64>)>,
    }
    let mut parts: BTreeMap<MetricKey, Parts> = BTreeMap::new();
    for (name, value) in counts {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(SEP).collect();
        let [step, namespace, metric, field, tag, sign] = fields[..] else {
            continue;
        };
        let v = i64::try_from(*value).unwrap_or(i64::MAX);
        let v = if sign == "-" { -v } else { v };
        let key = MetricKey {
            step: step.to_string(),
            namespace: namespace.to_string(),
            name: metric.to_string(),
        };
        let p = parts.entry(key).or_default();
        match field {
            "c" => *p.counter.get_or_insert(0) += v,
            "dc" => {
                p.dist = true;
                p.count += v
            }
            "ds" => p.sum += v,
            "dn" => p.mins.push(v),
            "dx" => p.maxs.push(v),
            "gv" => p.gauges.entry(tag.to_string()).or_default().0 = Some(v),
            "gt" => p.gauges.entry(tag.to_string()).or_default().1 = Some(v),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (key, p) in parts {
        if let Some(c) = p.counter {
            out.insert(key.clone(), MetricValue::Counter(c));
        }
        if p.dist {
            let d = DistributionResult {
                count: p.count.max(0) as u64,
                sum: p.sum,
                min: p.mins.iter().copied().min().unwrap_or(0),
                max: p.maxs.iter().copied().max().unwrap_or(0),
            };
            out.insert(key.clone(), MetricValue::Distribution(d));
        }
        let latest = p
            .gauges
            .values()
            .filter_map(|(v, t)| Some((t.unwrap_or(0), (*v)?)))
            .max();
        if let Some((t, v)) = latest {
            out.insert(
                key,
                MetricValue::Gauge(GaugeResult {
                    value: v,
                    timestamp_ms: t.max(0) as u64,
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_counts() {
        let key = |n: &str| MetricKey {
            step: "A/map".into(),
            namespace: "ns".into(),
            name: n.into(),
        };
        let mut a = BTreeMap::new();
        a.insert(key("c"), MetricValue::Counter(-4));
        a.insert(
            key("d"),
            MetricValue::Distribution(DistributionResult {
                count: 2,
                sum: 7,
                min: -1,
                max: 8,
            }),
        );
        a.insert(
            key("g"),
            MetricValue::Gauge(GaugeResult {
                value: 3,
                timestamp_ms: 10,
            }),
        );
        let mut b = BTreeMap::new();
        b.insert(
            key("d"),
            MetricValue::Distribution(DistributionResult {
                count: 1,
                sum: 9,
                min: 9,
                max: 9,
            }),
        );
        b.insert(
            key("g"),
            MetricValue::Gauge(GaugeResult {
                value: 5,
                timestamp_ms: 20,
            }),
        );
        let mut counts = to_counts(&a, 1);
        counts.extend(to_counts(&b, 2));
        let back = from_counts(&counts);
        assert_eq!(back[&key("c")], MetricValue::Counter(-4));
        assert_eq!(
            back[&key("d")],
            MetricValue::Distribution(DistributionResult {
                count: 3,
                sum: 16,
                min: -1,
                max: 9
            })
        );
        assert_eq!(
            back[&key("g")],
            MetricValue::Gauge(GaugeResult {
                value: 5,
                timestamp_ms: 20
            })
        );
    }
}
