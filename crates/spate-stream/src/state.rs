//! Keyed window state: each key's windows, their accumulators and their
//! triggers' memory, snapshotted with every checkpoint.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spate_core::combine::CombineFn;
use spate_core::error::{Error, Result};

use crate::time::Millis;
use crate::trigger::{Accumulation, PaneInfo, PaneState, WindowingStrategy};
use crate::window::Window;

/// State as bytes, for a checkpoint; `what` names it in errors.
pub(crate) fn encode<T: Serialize + ?Sized>(what: &str, state: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(state, &mut out)
        .map_err(|e| Error::Internal(format!("encoding {what}: {e}")))?;
    Ok(out)
}

/// State from [`encode`]'s bytes.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    ciborium::from_reader(bytes).map_err(|e| Error::Storage(format!("{what} unreadable: {e}")))
}

/// One result of a windowed aggregation: a key's value in a window, and
/// where it stands among the window's firings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pane<K, O> {
    /// The window.
    pub window: Window,
    /// The key.
    pub key: K,
    /// The aggregate (of the pane's elements, or of all the window's
    /// elements so far when accumulating).
    pub value: O,
    /// Early, on time or late; its index; first and last.
    pub pane: PaneInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WindowState<A> {
    window: Window,
    acc: A,
    pane: PaneState,
}

/// Every key's open windows.
pub(crate) struct KeyedWindows<K, A> {
    map: HashMap<K, Vec<WindowState<A>>>,
    windows: usize,
    /// Keys whose windows changed since the state was last written (a
    /// checkpoint's delta holds just these).
    changed: HashSet<K>,
    /// Whether `changed` is kept (not in a bounded run).
    tracking: bool,
}

impl<K, A> KeyedWindows<K, A>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    A: Clone + Serialize + DeserializeOwned,
{
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            windows: 0,
            changed: HashSet::new(),
            tracking: true,
        }
    }

    /// Open windows over all keys.
    pub fn len(&self) -> usize {
        self.windows
    }

    /// Merges a batch's partial aggregate of `n` elements of `key` in
    /// `window` (for sessions: merging every window of the key it meets).
    #[allow(clippy::too_many_arguments)]
    pub fn absorb<V, C: CombineFn<V, Acc = A>>(
        &mut self,
        c: &C,
        merges: bool,
        key: K,
        window: Window,
        acc: A,
        n: u64,
        now: Millis,
    ) {
        if self.tracking && !self.changed.contains(&key) {
            self.changed.insert(key.clone());
        }
        let list = self.map.entry(key).or_default();
        if !merges {
            if let Some(st) = list.iter_mut().find(|s| s.window == window) {
                c.merge(&mut st.acc, acc);
                st.pane.arrived(n, now);
                return;
            }
            let mut pane = PaneState::default();
            pane.arrived(n, now);
            list.push(WindowState { window, acc, pane });
            self.windows += 1;
            return;
        }
        let mut merged = WindowState {
            window,
            acc,
            pane: PaneState::default(),
        };
        merged.pane.arrived(n, now);
        while let Some(i) = list
            .iter()
            .position(|s| s.window.intersects(&merged.window))
        {
            let old = list.swap_remove(i);
            self.windows -= 1;
            merged.window = merged.window.span(&old.window);
            c.merge(&mut merged.acc, old.acc);
            merged.pane.merge(&old.pane);
        }
        list.push(merged);
        self.windows += 1;
    }

    /// Whether some window would fire or expire at `watermark` and `now`.
    pub fn has_due(&self, s: &WindowingStrategy, watermark: Millis, now: Millis) -> bool {
        self.map.values().flatten().any(|st| {
            watermark >= s.expiry(&st.window)
                || s.trigger
                    .fires(&st.pane, &st.window, watermark, now)
                    .is_some()
        })
    }

    /// Fires every window whose trigger holds, emits the final pane of
    /// every expiring window that holds unfired elements, and drops
    /// expired windows.
    pub fn fire<V, C: CombineFn<V, Acc = A>>(
        &mut self,
        c: &C,
        s: &WindowingStrategy,
        watermark: Millis,
        now: Millis,
        out: &mut Vec<Pane<K, C::Output>>,
    ) {
        let mut dropped = 0;
        let (changed, tracking) = (&mut self.changed, self.tracking);
        self.map.retain(|key, list| {
            list.retain_mut(|st| {
                let expiring = watermark >= s.expiry(&st.window);
                let fires = s.trigger.fires(&st.pane, &st.window, watermark, now);
                if fires.is_some() || (expiring && st.pane.pending > 0) {
                    let pane = st.pane.fire(&st.window, watermark, expiring);
                    let acc = match s.accumulation {
                        Accumulation::Accumulating => st.acc.clone(),
                        Accumulation::Discarding => std::mem::replace(&mut st.acc, c.create()),
                    };
                    out.push(Pane {
                        window: st.window,
                        key: key.clone(),
                        value: c.extract(acc),
                        pane,
                    });
                    if fires == Some(true) {
                        st.pane.finished = true;
                    }
                }
                if expiring {
                    dropped += 1;
                }
                if tracking && (fires.is_some() || expiring) && !changed.contains(key) {
                    changed.insert(key.clone());
                }
                !expiring
            });
            !list.is_empty()
        });
        self.windows -= dropped;
    }

    /// The state as bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let entries: Vec<(&K, &Vec<WindowState<A>>)> = self.map.iter().collect();
        encode("window state", &entries)
    }

    /// State from [`snapshot`](Self::snapshot)'s bytes.
    pub fn restore(bytes: &[u8]) -> Result<Self> {
        let entries: Vec<(K, Vec<WindowState<A>>)> = decode("window state", bytes)?;
        let windows = entries.iter().map(|(_, l)| l.len()).sum();
        Ok(Self {
            map: entries.into_iter().collect(),
            windows,
            changed: HashSet::new(),
            tracking: true,
        })
    }

    /// The keys changed since the state was last written, as bytes: each
    /// with its windows now, or none when it has none left. The state
    /// counts as written after this.
    pub fn delta(&mut self) -> Result<Vec<u8>> {
        let entries: Vec<(&K, Option<&Vec<WindowState<A>>>)> =
            self.changed.iter().map(|k| (k, self.map.get(k))).collect();
        let bytes = encode("window state delta", &entries)?;
        self.changed.clear();
        Ok(bytes)
    }

    /// The state counts as written (a whole snapshot was taken).
    pub fn forget_changes(&mut self) {
        self.changed.clear();
    }

    /// Whether to note changed keys (a bounded run writes no state).
    pub fn track_changes(&mut self, on: bool) {
        self.tracking = on;
        if !on {
            self.changed.clear();
        }
    }

    /// Applies [`delta`](Self::delta)'s bytes.
    pub fn apply_delta(&mut self, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(K, Option<Vec<WindowState<A>>>)> = decode("window state delta", bytes)?;
        for (key, list) in entries {
            if let Some(old) = self.map.remove(&key) {
                self.windows -= old.len();
            }
            if let Some(list) = list {
                self.windows += list.len();
                self.map.insert(key, list);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{Timing, Trigger};
    use crate::window::Windows;
    use spate_core::combine::Sum;
    use std::time::Duration;

    fn w(start: Millis, end: Millis) -> Window {
        Window { start, end }
    }

    #[test]
    fn sessions_merge_per_key_and_fire_once_the_watermark_passes() {
        let s = WindowingStrategy::new(Windows::sessions(Duration::from_millis(10)));
        let mut st: KeyedWindows<String, u64> = KeyedWindows::new();
        let k = || "a".to_string();
        st.absorb::<u64, _>(&Sum, true, k(), w(0, 10), 1, 1, 0);
        st.absorb::<u64, _>(&Sum, true, k(), w(20, 30), 1, 1, 0);
        st.absorb::<u64, _>(&Sum, true, "b".into(), w(5, 15), 1, 1, 0);
        assert_eq!(st.len(), 3);
        // 8 bridges the first two sessions of `a`.
        st.absorb::<u64, _>(&Sum, true, k(), w(8, 18), 1, 1, 0);
        st.absorb::<u64, _>(&Sum, true, k(), w(15, 25), 1, 1, 0);
        assert_eq!(st.len(), 2);
        let mut out = Vec::new();
        st.fire::<u64, _>(&Sum, &s, 29, 0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].key.as_str(), out[0].value), ("b", 1));
        out.clear();
        st.fire::<u64, _>(&Sum, &s, 30, 0, &mut out);
        assert_eq!(out[0].window, w(0, 30));
        assert_eq!(out[0].value, 4);
        assert_eq!(out[0].pane.timing, Timing::OnTime);
        assert!(out[0].pane.is_last);
        assert_eq!(st.len(), 0);
    }

    #[test]
    fn accumulating_panes_carry_everything_and_discarding_only_the_new() {
        for (mode, values) in [
            (Accumulation::Accumulating, vec![2, 5, 6]),
            (Accumulation::Discarding, vec![2, 3, 1]),
        ] {
            let mut s = WindowingStrategy::new(Windows::fixed(Duration::from_millis(100)));
            s.trigger = Trigger::after_watermark()
                .with_early_firings(Trigger::after_count(1))
                .with_late_firings(Trigger::after_count(1))
                .into();
            s.accumulation = mode;
            s.allowed_lateness = 50;
            let mut st: KeyedWindows<String, u64> = KeyedWindows::new();
            let mut out = Vec::new();
            st.absorb::<u64, _>(&Sum, false, "a".into(), w(0, 100), 2, 2, 0);
            st.fire::<u64, _>(&Sum, &s, 50, 0, &mut out);
            st.absorb::<u64, _>(&Sum, false, "a".into(), w(0, 100), 3, 3, 0);
            st.fire::<u64, _>(&Sum, &s, 100, 0, &mut out);
            st.absorb::<u64, _>(&Sum, false, "a".into(), w(0, 100), 1, 1, 0);
            st.fire::<u64, _>(&Sum, &s, 160, 0, &mut out);
            let got: Vec<u64> = out.iter().map(|p| p.value).collect();
            assert_eq!(got, values, "{mode:?}");
            let timings: Vec<Timing> = out.iter().map(|p| p.pane.timing).collect();
            assert_eq!(timings, [Timing::Early, Timing::OnTime, Timing::Late]);
            assert!(out[2].pane.is_last && !out[1].pane.is_last);
            assert_eq!(st.len(), 0);
        }
    }

    #[test]
    fn a_finished_trigger_keeps_what_comes_after_for_the_final_pane() {
        let mut s = WindowingStrategy::new(Windows::fixed(Duration::from_millis(100)));
        s.trigger = Trigger::after_count(2);
        let mut st: KeyedWindows<String, u64> = KeyedWindows::new();
        let mut out = Vec::new();
        st.absorb::<u64, _>(&Sum, false, "a".into(), w(0, 100), 2, 2, 0);
        st.fire::<u64, _>(&Sum, &s, 10, 0, &mut out);
        st.absorb::<u64, _>(&Sum, false, "a".into(), w(0, 100), 5, 5, 0);
        st.fire::<u64, _>(&Sum, &s, 20, 0, &mut out);
        assert_eq!(out.len(), 1);
        st.fire::<u64, _>(&Sum, &s, 100, 0, &mut out);
        let got: Vec<(u64, bool)> = out.iter().map(|p| (p.value, p.pane.is_last)).collect();
        assert_eq!(got, [(2, false), (5, true)]);
    }

    #[test]
    fn deltas_hold_the_changed_keys_only_and_rebuild_the_state() {
        let s = WindowingStrategy::new(Windows::fixed(Duration::from_millis(100)));
        let mut st: KeyedWindows<String, u64> = KeyedWindows::new();
        for i in 0..1000 {
            st.absorb::<u64, _>(&Sum, false, format!("k{i}"), w(0, 100), 1, 1, 0);
        }
        st.absorb::<u64, _>(&Sum, false, "late".into(), w(100, 200), 1, 1, 0);
        let full = st.snapshot().unwrap();
        st.forget_changes();
        let mut copy = KeyedWindows::<String, u64>::restore(&full).unwrap();
        // One key grows; the watermark passes 0..100: 1000 keys fire and go.
        st.absorb::<u64, _>(&Sum, false, "late".into(), w(100, 200), 4, 4, 0);
        let delta = st.delta().unwrap();
        assert!(
            delta.len() < full.len() / 10,
            "{} of {}",
            delta.len(),
            full.len()
        );
        let mut out = Vec::new();
        st.fire::<u64, _>(&Sum, &s, 100, 0, &mut out);
        assert_eq!(out.len(), 1000);
        let removed = st.delta().unwrap();
        copy.apply_delta(&delta).unwrap();
        copy.apply_delta(&removed).unwrap();
        assert_eq!((copy.len(), st.len()), (1, 1));
        assert_eq!(copy.map["late"][0].acc, 5);
        // Nothing changed since: an empty list (one byte of CBOR).
        assert_eq!(st.delta().unwrap().len(), 1);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut st: KeyedWindows<String, u64> = KeyedWindows::new();
        st.absorb::<u64, _>(&Sum, false, "a".into(), w(0, 100), 2, 2, 7);
        let back = KeyedWindows::<String, u64>::restore(&st.snapshot().unwrap()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back.map["a"][0].pane, st.map["a"][0].pane);
    }
}
