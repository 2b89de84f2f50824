//! Stateful processing per key (Beam's stateful `DoFn`): value and bag
//! state, and event-time timers that fire when the watermark passes them.
//! Each key's state and timers are kept in the step's state, snapshotted
//! with every checkpoint under the step's name.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spate_core::dataset::Key;
use spate_core::error::Result;
use spate_core::{Data, Dataset};

use crate::pipeline::{Stage, Stream};
use crate::state::{decode, encode};
use crate::time::{MAX_TIMESTAMP, Millis};

/// One value kept per key (Beam's `ValueState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueState<T>(Option<T>);

impl<T> Default for ValueState<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> ValueState<T> {
    /// The value, if one was written.
    pub fn read(&self) -> Option<&T> {
        self.0.as_ref()
    }
    /// Replaces the value.
    pub fn write(&mut self, v: T) {
        self.0 = Some(v);
    }
    /// Removes the value.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// Values collected per key (Beam's `BagState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BagState<T>(Vec<T>);

impl<T> Default for BagState<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> BagState<T> {
    /// Adds a value.
    pub fn add(&mut self, v: T) {
        self.0.push(v);
    }
    /// The values, in the order added.
    pub fn read(&self) -> &[T] {
        &self.0
    }
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Takes the values out, leaving it empty.
    pub fn take(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
    /// Removes every value.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A key's event-time timers: each fires once, when the watermark passes
/// its time. Setting the same time twice sets one timer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timers(BTreeSet<Millis>);

impl Timers {
    /// Sets a timer for event time `at`.
    pub fn set(&mut self, at: Millis) {
        self.0.insert(at);
    }
    /// Cancels the timer for `at`.
    pub fn cancel(&mut self, at: Millis) {
        self.0.remove(&at);
    }
    /// The timers set.
    pub fn pending(&self) -> impl Iterator<Item = Millis> + '_ {
        self.0.iter().copied()
    }
}

/// What a [`StatefulDoFn`] emits: elements with their event times.
pub type Emit<O> = Vec<(Millis, O)>;

/// Per-key processing with state and timers. Within a batch, a key's
/// elements come in event-time order; timers fire (in time order) once the
/// batch's watermark passes them.
pub trait StatefulDoFn<K, V>: Send + Sync + 'static {
    /// The state kept per key (compose [`ValueState`] and [`BagState`]).
    type State: Serialize + DeserializeOwned + Default + Send + Sync + 'static;
    /// What it emits.
    type Out: Data + Clone;

    /// Handles one element of `key`, stamped `ts`.
    fn process(
        &self,
        key: &K,
        value: V,
        ts: Millis,
        state: &mut Self::State,
        timers: &mut Timers,
        out: &mut Emit<Self::Out>,
    );

    /// Handles the timer set for `at`, now that the watermark passed it.
    fn on_timer(
        &self,
        key: &K,
        at: Millis,
        state: &mut Self::State,
        timers: &mut Timers,
        out: &mut Emit<Self::Out>,
    );
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
struct KeyState<S> {
    state: S,
    timers: Timers,
}

type Cell<X> = Arc<Mutex<Vec<(Millis, X)>>>;

struct StatefulStage<K, V, F: StatefulDoFn<K, V>> {
    name: String,
    f: Arc<F>,
    plan: Dataset<(K, Vec<(Millis, V)>)>,
    keys: HashMap<K, KeyState<F::State>>,
    output: Cell<F::Out>,
}

impl<K, V, F> StatefulStage<K, V, F>
where
    K: Key,
    V: Data,
    F: StatefulDoFn<K, V>,
{
    /// Drops a key that holds nothing: default state and no timer.
    fn keep(ks: &KeyState<F::State>) -> bool
    where
        F::State: Serialize,
    {
        if !ks.timers.0.is_empty() {
            return true;
        }
        // State is compared through its encoding: `State` need not be `PartialEq`.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let _ = ciborium::into_writer(&ks.state, &mut a);
        let _ = ciborium::into_writer(&F::State::default(), &mut b);
        a != b
    }
}

impl<K, V, F> Stage for StatefulStage<K, V, F>
where
    K: Key,
    V: Data,
    F: StatefulDoFn<K, V>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> String {
        format!(
            "stateful {} of {} by {}",
            std::any::type_name::<F>(),
            std::any::type_name::<V>(),
            std::any::type_name::<K>()
        )
    }

    fn absorb(&mut self, _now: Millis) -> Result<u64> {
        let rows = self.plan.clone().collect()?;
        let mut out = Vec::new();
        let mut n = 0;
        for (key, mut values) in rows {
            // Ties in time are broken by the values' encoding, so a batch
            // run again feeds them in the same order.
            values.sort_by_cached_key(|(ts, v)| {
                let mut bytes = Vec::new();
                let _ = ciborium::into_writer(v, &mut bytes);
                (*ts, bytes)
            });
            n += values.len() as u64;
            let ks = self.keys.entry(key.clone()).or_insert_with(|| KeyState {
                state: F::State::default(),
                timers: Timers::default(),
            });
            for (ts, v) in values {
                self.f
                    .process(&key, v, ts, &mut ks.state, &mut ks.timers, &mut out);
            }
            if !Self::keep(ks) {
                self.keys.remove(&key);
            }
        }
        self.output.lock().extend(out);
        Ok(n)
    }

    fn fire(&mut self, watermark: Millis, _now: Millis) -> u64 {
        let mut out = Vec::new();
        let mut fired = 0;
        let f = self.f.clone();
        let end_of_time = watermark >= MAX_TIMESTAMP;
        self.keys.retain(|key, ks| {
            if end_of_time {
                // The input ended: every timer fires once, in time order;
                // timers they set would never come due and are dropped.
                for at in std::mem::take(&mut ks.timers.0) {
                    f.on_timer(key, at, &mut ks.state, &mut ks.timers, &mut out);
                    fired += 1;
                }
                ks.timers.0.clear();
                return Self::keep(ks);
            }
            // A timer may set another one that is also due.
            while let Some(at) = ks.timers.0.first().copied().filter(|t| *t <= watermark) {
                ks.timers.0.remove(&at);
                f.on_timer(key, at, &mut ks.state, &mut ks.timers, &mut out);
                fired += 1;
            }
            Self::keep(ks)
        });
        self.output.lock().extend(out);
        fired
    }

    fn has_due(&self, watermark: Millis, _now: Millis) -> bool {
        self.keys
            .values()
            .any(|ks| ks.timers.0.first().is_some_and(|t| *t <= watermark))
    }

    fn clear(&mut self) {
        self.output.lock().clear();
    }

    fn entries(&self) -> usize {
        self.keys.len()
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        let entries: Vec<(&K, &KeyState<F::State>)> = self.keys.iter().collect();
        encode("keyed state", &entries)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(K, KeyState<F::State>)> = decode("keyed state", bytes)?;
        self.keys = entries.into_iter().collect();
        Ok(())
    }
}

impl<K: Key, V: Data> Stream<(K, V)> {
    /// Runs a stateful `DoFn` over each key's elements (Beam's stateful
    /// `ParDo`): state and timers per key, kept in the checkpoint under
    /// the step's name. Runs in the driver, one key after another.
    pub fn stateful<F: StatefulDoFn<K, V>>(&self, name: &str, f: F) -> Stream<F::Out> {
        let ctx = self.pipeline().context().clone();
        let input = self.dataset().clone();
        let plan = ctx.in_scope(name, || {
            input
                .map(|(ts, (k, v)): (Millis, (K, V))| (k, (ts, v)))
                .group_by_key()
                .collect_lists()
        });
        let output: Cell<F::Out> = Arc::new(Mutex::new(Vec::new()));
        let stage = StatefulStage {
            name: name.to_string(),
            f: Arc::new(f),
            plan,
            keys: HashMap::new(),
            output: output.clone(),
        };
        self.pipeline().inner.stages.lock().push(Box::new(stage));
        let out = ctx.in_scope(name, || {
            ctx.from_each_run(move || Ok(output.lock().clone()))
        });
        self.derived(out)
    }
}
