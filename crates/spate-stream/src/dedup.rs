//! Deduplication bounded by the watermark (Spark's
//! `dropDuplicatesWithinWatermark`): a key is remembered until the
//! watermark passes its first element's event time plus a horizon, so the
//! state holds only the keys that can still repeat — never every key ever
//! seen.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use spate_core::combine::CombineFn;
use spate_core::dataset::Key;
use spate_core::error::Result;
use spate_core::{Data, Dataset};

use crate::pipeline::{Stage, Stream};
use crate::state::{decode, encode};
use crate::time::{Millis, millis};

/// What [`Stream::dedup_within_watermark`] gives.
pub struct Deduped<T> {
    /// The first element of each key (per horizon).
    pub output: Stream<T>,
    /// Elements older than the watermark minus the horizon, whose key can
    /// no longer be checked: kept here, never dropped.
    pub late: Stream<T>,
}

/// Per batch and key: the earliest element, how many others there were,
/// and (for the late key) the late elements.
struct FirstOf<T>(PhantomData<fn(T)>);

fn encoded<T: serde::Serialize>(x: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = ciborium::into_writer(x, &mut bytes);
    bytes
}

type FirstAcc<T> = (Option<(Millis, T)>, u64, Vec<(Millis, T)>);

impl<T: Data> CombineFn<(bool, Millis, T)> for FirstOf<T> {
    type Acc = FirstAcc<T>;
    type Output = FirstAcc<T>;
    fn create(&self) -> Self::Acc {
        (None, 0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, (late, ts, x): (bool, Millis, T)) {
        if late {
            acc.2.push((ts, x));
            return;
        }
        let earlier = match &acc.0 {
            None => true,
            Some((t, _)) if *t != ts => ts < *t,
            // Ties in time go to the smaller encoding, so a batch run again
            // keeps the same element.
            Some((_, kept)) => encoded(&x) < encoded(kept),
        };
        if acc.0.is_some() {
            acc.1 += 1;
        }
        if earlier {
            acc.0 = Some((ts, x));
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.1 += other.1;
        acc.2.extend(other.2);
        if let Some((ts, x)) = other.0 {
            self.add(acc, (false, ts, x));
        }
    }
    fn extract(&self, acc: Self::Acc) -> Self::Acc {
        acc
    }
}

type Cell<X> = Arc<Mutex<Vec<(Millis, X)>>>;

struct DedupStage<K, T> {
    name: String,
    horizon: Millis,
    plan: Dataset<((K, bool), FirstAcc<T>)>,
    /// Each key remembered, until the watermark passes this time.
    seen: HashMap<K, Millis>,
    /// Keys remembered or forgotten since the state was last written.
    changed: HashSet<K>,
    /// Whether `changed` is kept (not in a bounded run).
    tracking: bool,
    output: Cell<T>,
    late: Cell<T>,
    late_total: u64,
}

impl<K: Key, T: Data + Clone> Stage for DedupStage<K, T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> String {
        format!(
            "dedup of {} by {} within {}ms",
            std::any::type_name::<T>(),
            std::any::type_name::<K>(),
            self.horizon
        )
    }

    fn absorb(&mut self, _now: Millis) -> Result<u64> {
        let rows = self.plan.clone().collect()?;
        let (mut out, mut late) = (self.output.lock(), self.late.lock());
        let mut n = 0;
        for ((key, is_late), (first, dups, lates)) in rows {
            n += dups + lates.len() as u64;
            self.late_total += lates.len() as u64;
            late.extend(lates);
            let Some((ts, x)) = first else { continue };
            n += 1;
            if let std::collections::hash_map::Entry::Vacant(e) = self.seen.entry(key) {
                if self.tracking {
                    self.changed.insert(e.key().clone());
                }
                e.insert(ts.saturating_add(self.horizon));
                out.push((ts, x));
            }
            debug_assert!(!is_late);
        }
        Ok(n)
    }

    fn fire(&mut self, watermark: Millis, _now: Millis) -> u64 {
        let (changed, tracking) = (&mut self.changed, self.tracking);
        self.seen.retain(|key, until| {
            let keep = *until > watermark;
            if tracking && !keep && !changed.contains(key) {
                changed.insert(key.clone());
            }
            keep
        });
        0
    }

    fn has_due(&self, _watermark: Millis, _now: Millis) -> bool {
        false
    }

    fn clear(&mut self) {
        self.output.lock().clear();
        self.late.lock().clear();
    }

    fn entries(&self) -> usize {
        self.seen.len()
    }

    fn late_total(&self) -> u64 {
        self.late_total
    }

    fn set_late_total(&mut self, n: u64) {
        self.late_total = n;
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        let entries: Vec<(&K, &Millis)> = self.seen.iter().collect();
        encode("dedup state", &entries)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(K, Millis)> = decode("dedup state", bytes)?;
        self.seen = entries.into_iter().collect();
        self.changed.clear();
        Ok(())
    }

    fn delta(&mut self) -> Result<Option<Vec<u8>>> {
        let entries: Vec<(&K, Option<&Millis>)> =
            self.changed.iter().map(|k| (k, self.seen.get(k))).collect();
        let bytes = encode("dedup state delta", &entries)?;
        self.changed.clear();
        Ok(Some(bytes))
    }

    fn forget_changes(&mut self) {
        self.changed.clear();
    }

    fn track_changes(&mut self, on: bool) {
        self.tracking = on;
        if !on {
            self.changed.clear();
        }
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(K, Option<Millis>)> = decode("dedup state delta", bytes)?;
        for (key, until) in entries {
            match until {
                Some(until) => self.seen.insert(key, until),
                None => self.seen.remove(&key),
            };
        }
        Ok(())
    }
}

impl<T: Data + Clone> Stream<T> {
    /// Keeps the first element of each key and drops the repeats that come
    /// while the watermark has not passed that element's event time plus
    /// `horizon` (Spark's `dropDuplicatesWithinWatermark`). Within a batch
    /// the element with the earliest event time is the first.
    pub fn dedup_within_watermark<K: Key>(
        &self,
        name: &str,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        horizon: Duration,
    ) -> Deduped<T> {
        let h = millis(horizon);
        let watermark = self.late_mark();
        let ctx = self.pipeline().context().clone();
        let input = self.dataset().clone();
        let plan = ctx.in_scope(name, || {
            input
                .map(move |(ts, x): (Millis, T)| {
                    let late = ts.saturating_add(h) <= watermark.load(Ordering::Relaxed);
                    ((key(&x), late), (late, ts, x))
                })
                .combine_per_key(FirstOf(PhantomData))
        });
        let output: Cell<T> = Arc::new(Mutex::new(Vec::new()));
        let late: Cell<T> = Arc::new(Mutex::new(Vec::new()));
        let stage = DedupStage {
            name: name.to_string(),
            horizon: h,
            plan,
            seen: HashMap::new(),
            changed: HashSet::new(),
            tracking: true,
            output: output.clone(),
            late: late.clone(),
            late_total: 0,
        };
        self.pipeline().inner.stages.lock().push(Box::new(stage));
        let out = ctx.in_scope(name, || {
            ctx.from_each_run(move || Ok(output.lock().clone()))
        });
        let late = ctx.in_scope(&format!("{name}/Late"), || {
            ctx.from_each_run(move || Ok(late.lock().clone()))
        });
        Deduped {
            output: self.derived(out),
            late: self.derived(late),
        }
    }
}
