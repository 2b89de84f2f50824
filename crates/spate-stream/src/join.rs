//! Windowed joins: Beam's `CoGroupByKey` over two keyed streams, and an
//! inner join on top of it. Both are one windowed aggregation over the two
//! streams flattened — each element tagged with its side — so they get
//! the aggregation's triggers, panes, allowed lateness, late output,
//! checkpointed state and exactly-once replay.

use serde::{Deserialize, Serialize};
use spate_core::Data;
use spate_core::combine::CombineFn;
use spate_core::dataset::Key;

use crate::pipeline::{Aggregated, Stream, WindowedStream};
use crate::state::Pane;
use crate::trigger::WindowingStrategy;
use spate_core::error::Error;

/// A value of the left or the right stream of a co-grouping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side<V, W> {
    /// From the stream the co-grouping was called on.
    Left(V),
    /// From the other stream.
    Right(W),
}

/// A co-grouping's results: per key and window, both sides' values; and
/// the elements too late for their window, tagged by side.
pub type CoGrouped<K, V, W> = Aggregated<K, Side<V, W>, (Vec<V>, Vec<W>)>;

/// Both sides' values of a key in a window.
struct CoGroup;

impl<V: Data + Clone, W: Data + Clone> CombineFn<Side<V, W>> for CoGroup {
    type Acc = (Vec<V>, Vec<W>);
    type Output = (Vec<V>, Vec<W>);
    fn create(&self) -> Self::Acc {
        (Vec::new(), Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, x: Side<V, W>) {
        match x {
            Side::Left(v) => acc.0.push(v),
            Side::Right(w) => acc.1.push(w),
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0.extend(other.0);
        acc.1.extend(other.1);
    }
    fn extract(&self, acc: Self::Acc) -> Self::Acc {
        acc
    }
}

impl<K: Key, V: Data + Clone> WindowedStream<(K, V)> {
    /// Groups both streams' values by key and window (Beam's
    /// `CoGroupByKey`): each fired pane holds a key's values from this
    /// stream and from `other`, which is windowed as this one is. Late
    /// elements of either side go to the late output, tagged by side.
    pub fn co_group_by_key<W: Data + Clone>(
        &self,
        name: &str,
        other: &Stream<(K, W)>,
    ) -> CoGrouped<K, V, W> {
        let left = self
            .stream()
            .map(&format!("{name}/Left"), |(k, v): (K, V)| (k, Side::Left(v)));
        let right = other.map(&format!("{name}/Right"), |(k, w): (K, W)| {
            (k, Side::<V, W>::Right(w))
        });
        self.with_stream(left.flatten(&right))
            .combine_per_key(name, CoGroup)
    }

    /// Inner join by key within each window: every pair of a value from
    /// this stream and one from `other` with the same key in the same
    /// window, once, when the watermark passes the window's end. So that
    /// each window fires exactly one pane, the join takes the default
    /// trigger, discarding panes and no allowed lateness (elements later
    /// than the window go to the late output); for other firings, use
    /// [`co_group_by_key`](Self::co_group_by_key) and pair its panes.
    pub fn join<W: Data + Clone>(
        &self,
        name: &str,
        other: &Stream<(K, W)>,
    ) -> Aggregated<K, Side<V, W>, (V, W)> {
        let s = self.strategy();
        let one_pane = WindowingStrategy::new(s.windows);
        if *s != one_pane {
            self.stream().pipeline().fail(Error::Usage(format!(
                "{name}: a join fires each window once (the default trigger, discarding \
                 panes, no allowed lateness); for other firings use co_group_by_key"
            )));
        }
        let grouped = self.co_group_by_key(name, other);
        let output =
            grouped
                .output
                .flat_map(&format!("{name}/Pairs"), |p: Pane<K, (Vec<V>, Vec<W>)>| {
                    let (vs, ws) = p.value;
                    let mut out = Vec::with_capacity(vs.len() * ws.len());
                    for v in &vs {
                        for w in &ws {
                            out.push(Pane {
                                window: p.window,
                                key: p.key.clone(),
                                value: (v.clone(), w.clone()),
                                pane: p.pane,
                            });
                        }
                    }
                    out
                });
        Aggregated {
            output,
            late: grouped.late,
        }
    }
}
