//! Triggers, accumulation modes and panes (Beam's `Trigger`,
//! `AccumulationMode` and `PaneInfo`).
//!
//! Triggers are evaluated at micro-batch boundaries: a trigger whose
//! condition became true during a batch fires once at the batch's end,
//! with everything the batch brought.
//!
//! A trigger that has *finished* (a non-repeating `AfterCount` or
//! `AfterProcessingTime`, or `AfterWatermark` without late firings once it
//! fired on time) does not throw away what arrives after it: a window's
//! pending elements are emitted in a final pane when the window expires
//! (the watermark passes its end plus the allowed lateness), so no element
//! within the allowed lateness is lost.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::{MAX_TIMESTAMP, Millis, millis};
use crate::window::{Window, Windows};

/// When a window's results are emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// Fires when the watermark passes the end of the window (the on-time
    /// pane), with optional early firings before it and late firings after.
    AfterWatermark {
        /// Fires before the window ends, each time this condition holds.
        early: Option<Box<Trigger>>,
        /// Fires after the on-time pane, for late elements, each time this
        /// condition holds.
        late: Option<Box<Trigger>>,
    },
    /// Fires once at least this many elements arrived since the last firing.
    AfterCount(u64),
    /// Fires once this long (processing time) passed since the first
    /// element after the last firing arrived.
    AfterProcessingTime(Millis),
    /// Fires each time the inner trigger would.
    Repeatedly(Box<Trigger>),
}

impl Default for Trigger {
    /// Beam's default: on time when the watermark passes the window's end,
    /// then once per batch that brought late elements within the allowed
    /// lateness.
    fn default() -> Self {
        Trigger::AfterWatermark {
            early: None,
            late: Some(Box::new(Trigger::AfterCount(1))),
        }
    }
}

impl Trigger {
    /// The on-time pane only; add early and late firings with the
    /// builder's `with_early_firings` and `with_late_firings`.
    pub fn after_watermark() -> AfterWatermark {
        AfterWatermark {
            early: None,
            late: None,
        }
    }

    /// Fires after `n` elements.
    pub fn after_count(n: u64) -> Trigger {
        Trigger::AfterCount(n.max(1))
    }

    /// Fires `d` after the first element of a pane arrived.
    pub fn after_processing_time(d: Duration) -> Trigger {
        Trigger::AfterProcessingTime(millis(d))
    }

    /// Fires every time `t` would. Repeating the watermark trigger (Beam's
    /// default trigger) fires on time, then once per batch bringing late
    /// elements.
    pub fn repeatedly(t: impl Into<Trigger>) -> Trigger {
        match t.into() {
            Trigger::AfterWatermark { early, late: None } => Trigger::AfterWatermark {
                early,
                late: Some(Box::new(Trigger::AfterCount(1))),
            },
            // Its early and late firings repeat already.
            w @ Trigger::AfterWatermark { .. } => w,
            t => Trigger::Repeatedly(Box::new(t)),
        }
    }

    /// Whether a non-watermark condition holds for a pane.
    fn holds(&self, st: &PaneState, now: Millis) -> bool {
        match self {
            Trigger::AfterCount(n) => st.pending >= *n,
            Trigger::AfterProcessingTime(d) => st
                .first_arrival
                .is_some_and(|t| t.saturating_add(*d) <= now),
            Trigger::Repeatedly(t) => t.holds(st, now),
            // Nested watermark triggers: the on-time condition.
            Trigger::AfterWatermark { .. } => false,
        }
    }

    /// Whether the trigger fires now for a window in state `st`, and
    /// whether it is finished afterwards.
    pub(crate) fn fires(
        &self,
        st: &PaneState,
        window: &Window,
        watermark: Millis,
        now: Millis,
    ) -> Option<bool> {
        if st.finished {
            return None;
        }
        match self {
            Trigger::AfterWatermark { early, late } => {
                if !st.on_time_fired {
                    if watermark >= window.end {
                        return Some(late.is_none());
                    }
                    let e = early.as_ref()?;
                    (st.pending > 0 && e.holds(st, now)).then_some(false)
                } else {
                    let l = late.as_ref()?;
                    (st.pending > 0 && l.holds(st, now)).then_some(false)
                }
            }
            Trigger::Repeatedly(t) => (st.pending > 0 && t.holds(st, now)).then_some(false),
            once => (st.pending > 0 && once.holds(st, now)).then_some(true),
        }
    }

    /// A short description, for checkpoint checks and messages.
    pub fn describe(&self) -> String {
        match self {
            Trigger::AfterWatermark { early, late } => {
                let mut s = "after-watermark".to_string();
                if let Some(e) = early {
                    s += &format!(" early({})", e.describe());
                }
                if let Some(l) = late {
                    s += &format!(" late({})", l.describe());
                }
                s
            }
            Trigger::AfterCount(n) => format!("after-count {n}"),
            Trigger::AfterProcessingTime(d) => format!("after-processing-time {d}ms"),
            Trigger::Repeatedly(t) => format!("repeatedly({})", t.describe()),
        }
    }
}

/// [`Trigger::after_watermark`]'s builder: early and late firings on
/// conditions (counts, processing time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterWatermark {
    early: Option<Box<Trigger>>,
    late: Option<Box<Trigger>>,
}

impl AfterWatermark {
    /// Early firings each time `t` holds, before the watermark passes the
    /// window's end (`t` is a count or processing-time condition).
    pub fn with_early_firings(mut self, t: Trigger) -> Self {
        self.early = Some(Box::new(t));
        self
    }

    /// Late firings each time `t` holds, after the on-time pane, for
    /// elements within the allowed lateness.
    pub fn with_late_firings(mut self, t: Trigger) -> Self {
        self.late = Some(Box::new(t));
        self
    }
}

impl From<AfterWatermark> for Trigger {
    fn from(w: AfterWatermark) -> Trigger {
        Trigger::AfterWatermark {
            early: w.early,
            late: w.late,
        }
    }
}

/// What happens to a window's contents when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Accumulation {
    /// Each pane holds only what arrived since the last firing.
    #[default]
    Discarding,
    /// Each pane holds everything the window received so far.
    Accumulating,
}

/// A pane's timing relative to the watermark (Beam's `PaneInfo.Timing`).
/// Kept as a small integer in rows (0 early, 1 on time, 2 late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Timing {
    /// Before the watermark passed the end of the window.
    Early,
    /// The first pane after the watermark passed the end of the window.
    OnTime,
    /// A pane after the on-time one.
    Late,
}

impl From<Timing> for u8 {
    fn from(t: Timing) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for Timing {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Timing::Early),
            1 => Ok(Timing::OnTime),
            2 => Ok(Timing::Late),
            _ => Err(format!("no pane timing {v}")),
        }
    }
}

impl Timing {
    /// `EARLY`, `ON_TIME` or `LATE`, as Beam prints them.
    pub fn as_str(&self) -> &'static str {
        match self {
            Timing::Early => "EARLY",
            Timing::OnTime => "ON_TIME",
            Timing::Late => "LATE",
        }
    }
}

/// Where a result stands among its window's firings (Beam's `PaneInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PaneInfo {
    /// Early, on time or late.
    pub timing: Timing,
    /// 0 for the window's first pane, then 1, 2, ...
    pub index: u64,
    /// Index among the on-time and late panes; `None` for early panes.
    pub non_speculative_index: Option<u64>,
    /// The window's first pane.
    pub is_first: bool,
    /// The window's last pane: it expired, nothing more comes for it.
    pub is_last: bool,
}

/// A trigger's memory for one window of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PaneState {
    /// Elements since the last firing.
    pub pending: u64,
    /// Processing time of the first of them.
    pub first_arrival: Option<Millis>,
    /// Panes fired.
    pub fired: u64,
    /// On-time and late panes fired.
    pub non_speculative: u64,
    /// Whether the on-time pane was emitted.
    pub on_time_fired: bool,
    /// Whether the trigger finished (see the module's notes).
    pub finished: bool,
}

impl PaneState {
    /// Records `n` arrived elements.
    pub fn arrived(&mut self, n: u64, now: Millis) {
        self.pending += n;
        if n > 0 {
            self.first_arrival.get_or_insert(now);
        }
    }

    /// Merges the state of a window merged into this one (sessions).
    pub fn merge(&mut self, other: &PaneState) {
        self.pending += other.pending;
        self.first_arrival = match (self.first_arrival, other.first_arrival) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.fired = self.fired.max(other.fired);
        self.non_speculative = self.non_speculative.max(other.non_speculative);
        self.on_time_fired &= other.on_time_fired;
        self.finished &= other.finished;
    }

    /// Records a firing at `watermark` and returns its pane.
    pub fn fire(&mut self, window: &Window, watermark: Millis, is_last: bool) -> PaneInfo {
        let timing = if watermark < window.end {
            Timing::Early
        } else if !self.on_time_fired {
            self.on_time_fired = true;
            Timing::OnTime
        } else {
            Timing::Late
        };
        let non_speculative_index = (timing != Timing::Early).then(|| {
            self.non_speculative += 1;
            self.non_speculative - 1
        });
        let pane = PaneInfo {
            timing,
            index: self.fired,
            non_speculative_index,
            is_first: self.fired == 0,
            is_last,
        };
        self.fired += 1;
        self.pending = 0;
        self.first_arrival = None;
        pane
    }
}

/// How a windowed aggregation assigns, fires and keeps windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowingStrategy {
    /// The windows.
    pub windows: Windows,
    /// When panes fire.
    pub trigger: Trigger,
    /// Whether panes accumulate.
    pub accumulation: Accumulation,
    /// How long after its end (in event time) a window still takes
    /// elements; later ones go to the late output.
    pub allowed_lateness: Millis,
}

impl WindowingStrategy {
    /// The windows with the default trigger, discarding, no lateness.
    pub fn new(windows: Windows) -> Self {
        Self {
            windows,
            trigger: Trigger::default(),
            accumulation: Accumulation::Discarding,
            allowed_lateness: 0,
        }
    }

    /// The watermark at which a window expires: its state is dropped,
    /// and elements for it go to the late output.
    pub fn expiry(&self, window: &Window) -> Millis {
        if window.end >= MAX_TIMESTAMP {
            return MAX_TIMESTAMP;
        }
        window.end.saturating_add(self.allowed_lateness)
    }

    /// Whether an element of `window` is too late under `watermark`.
    pub fn is_droppable(&self, window: &Window, watermark: Millis) -> bool {
        watermark >= self.expiry(window)
    }

    /// A description, kept in checkpoints to check a restarted job.
    pub fn describe(&self) -> String {
        format!(
            "{}; {}; {:?}; allowed lateness {}ms",
            self.windows.describe(),
            self.trigger.describe(),
            self.accumulation,
            self.allowed_lateness
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window { start: 0, end: 100 };

    fn pending(n: u64, at: Millis) -> PaneState {
        let mut s = PaneState::default();
        s.arrived(n, at);
        s
    }

    #[test]
    fn the_default_trigger_fires_on_time_then_per_late_batch() {
        let t = Trigger::default();
        assert_eq!(t.fires(&pending(3, 0), &W, 99, 0), None);
        assert_eq!(t.fires(&pending(3, 0), &W, 100, 0), Some(false));
        let mut s = pending(3, 0);
        let pane = s.fire(&W, 100, false);
        assert_eq!(pane.timing, Timing::OnTime);
        assert_eq!(pane.non_speculative_index, Some(0));
        assert!(pane.is_first);
        assert_eq!(t.fires(&s, &W, 150, 0), None);
        s.arrived(1, 5);
        assert_eq!(t.fires(&s, &W, 150, 5), Some(false));
        let late = s.fire(&W, 150, false);
        assert_eq!(
            (late.timing, late.index, late.is_first),
            (Timing::Late, 1, false)
        );
    }

    #[test]
    fn early_firings_count_elements_and_processing_time() {
        let t: Trigger = Trigger::after_watermark()
            .with_early_firings(Trigger::after_count(2))
            .with_late_firings(Trigger::after_processing_time(Duration::from_millis(10)))
            .into();
        assert_eq!(t.fires(&pending(1, 0), &W, 50, 0), None);
        assert_eq!(t.fires(&pending(2, 0), &W, 50, 0), Some(false));
        let mut s = pending(2, 0);
        assert_eq!(s.fire(&W, 50, false).timing, Timing::Early);
        s.fire(&W, 100, false);
        s.arrived(1, 200);
        assert_eq!(t.fires(&s, &W, 300, 205), None);
        assert_eq!(t.fires(&s, &W, 300, 210), Some(false));
    }

    #[test]
    fn once_triggers_finish_and_repeated_ones_do_not() {
        let once = Trigger::after_count(2);
        assert_eq!(once.fires(&pending(2, 0), &W, 0, 0), Some(true));
        let again = Trigger::repeatedly(Trigger::after_count(2));
        assert_eq!(again.fires(&pending(2, 0), &W, 0, 0), Some(false));
        let mut done = pending(5, 0);
        done.finished = true;
        assert_eq!(once.fires(&done, &W, 0, 0), None);
        // Without late firings the watermark trigger finishes on time.
        assert_eq!(
            Trigger::from(Trigger::after_watermark()).fires(&pending(1, 0), &W, 100, 0),
            Some(true)
        );
        // Repeating it is Beam's default trigger.
        assert_eq!(
            Trigger::repeatedly(Trigger::after_watermark()),
            Trigger::default()
        );
    }
}
