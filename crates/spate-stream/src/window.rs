//! Windows (Beam's `WindowFn`s): fixed, sliding, session and global.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use spate_core::error::{Error, Result};

use crate::time::{MAX_TIMESTAMP, MIN_TIMESTAMP, Millis, millis};

/// An interval of event time, `[start, end)`. The global window is
/// `[MIN_TIMESTAMP, MAX_TIMESTAMP)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// The first instant in the window.
    pub start: Millis,
    /// The first instant after it.
    pub end: Millis,
}

impl Window {
    /// The global window: all of time.
    pub const GLOBAL: Window = Window {
        start: MIN_TIMESTAMP,
        end: MAX_TIMESTAMP,
    };

    /// The last instant in the window (Beam's `maxTimestamp`): what the
    /// window's results are stamped with.
    pub fn max_timestamp(&self) -> Millis {
        self.end - 1
    }

    /// Whether two windows share an instant.
    pub fn intersects(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest window covering both.
    pub fn span(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// How elements are assigned to windows by their event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Windows {
    /// One window for all elements (the default for unwindowed data).
    Global,
    /// Back-to-back windows of `size`, aligned to `offset` past the epoch.
    Fixed {
        /// Window length, ms.
        size: Millis,
        /// Alignment, ms, `0 <= offset < size`.
        offset: Millis,
    },
    /// Windows of `size` starting every `period`: an element is in
    /// `size / period` of them.
    Sliding {
        /// Window length, ms.
        size: Millis,
        /// Distance between window starts, ms.
        period: Millis,
        /// Alignment, ms, `0 <= offset < period`.
        offset: Millis,
    },
    /// Per key, elements less than `gap` apart share a window, which ends
    /// `gap` after its last element.
    Sessions {
        /// Inactivity gap, ms.
        gap: Millis,
    },
}

impl Windows {
    /// Fixed (tumbling) windows of `size`.
    pub fn fixed(size: Duration) -> Windows {
        Windows::Fixed {
            size: millis(size),
            offset: 0,
        }
    }

    /// Sliding windows of `size`, a new one every `period`.
    pub fn sliding(size: Duration, period: Duration) -> Windows {
        Windows::Sliding {
            size: millis(size),
            period: millis(period),
            offset: 0,
        }
    }

    /// Session windows closed by `gap` of inactivity (per key).
    pub fn sessions(gap: Duration) -> Windows {
        Windows::Sessions { gap: millis(gap) }
    }

    /// The windows shifted by `offset` from the epoch (fixed and sliding).
    pub fn with_offset(self, offset: Duration) -> Windows {
        let o = millis(offset);
        match self {
            Windows::Fixed { size, .. } => Windows::Fixed {
                size,
                offset: o.rem_euclid(size.max(1)),
            },
            Windows::Sliding { size, period, .. } => Windows::Sliding {
                size,
                period,
                offset: o.rem_euclid(period.max(1)),
            },
            other => other,
        }
    }

    /// Checks sizes and periods are positive.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Usage(format!("windows: {what}")));
        match *self {
            Windows::Fixed { size, .. } if size <= 0 => bad("a fixed window's size must be > 0"),
            Windows::Sliding { size, period, .. } if size <= 0 || period <= 0 => {
                bad("a sliding window's size and period must be > 0")
            }
            Windows::Sliding { size, period, .. } if period > size => bad(
                "a sliding window's period must not exceed its size (elements would fall between windows)",
            ),
            Windows::Sessions { gap } if gap <= 0 => bad("a session gap must be > 0"),
            _ => Ok(()),
        }
    }

    /// Whether windows of one key merge (sessions).
    pub fn merges(&self) -> bool {
        matches!(self, Windows::Sessions { .. })
    }

    /// Calls `out` with each window an element stamped `ts` belongs to
    /// (for sessions, its own proto-window `[ts, ts + gap)`, merged later).
    pub fn assign(&self, ts: Millis, mut out: impl FnMut(Window)) {
        match *self {
            Windows::Global => out(Window::GLOBAL),
            Windows::Fixed { size, offset } => {
                let start = ts - (ts - offset).rem_euclid(size);
                out(Window {
                    start,
                    end: start + size,
                })
            }
            Windows::Sliding {
                size,
                period,
                offset,
            } => {
                let last = ts - (ts - offset).rem_euclid(period);
                let mut start = last;
                while start > ts - size {
                    out(Window {
                        start,
                        end: start + size,
                    });
                    start -= period;
                }
            }
            Windows::Sessions { gap } => out(Window {
                start: ts,
                end: ts.saturating_add(gap),
            }),
        }
    }

    /// A short description, for progress lines and checkpoint checks.
    pub fn describe(&self) -> String {
        match *self {
            Windows::Global => "global".into(),
            Windows::Fixed { size, offset } => format!("fixed {size}ms offset {offset}ms"),
            Windows::Sliding {
                size,
                period,
                offset,
            } => format!("sliding {size}ms every {period}ms offset {offset}ms"),
            Windows::Sessions { gap } => format!("sessions gap {gap}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(w: Windows, ts: Millis) -> Vec<(Millis, Millis)> {
        let mut v = Vec::new();
        w.assign(ts, |w| v.push((w.start, w.end)));
        v.sort();
        v
    }

    #[test]
    fn fixed_windows_tile_time_including_before_the_epoch() {
        let w = Windows::fixed(Duration::from_secs(60));
        assert_eq!(windows(w, 0), vec![(0, 60_000)]);
        assert_eq!(windows(w, 59_999), vec![(0, 60_000)]);
        assert_eq!(windows(w, 60_000), vec![(60_000, 120_000)]);
        assert_eq!(windows(w, -1), vec![(-60_000, 0)]);
        let shifted = w.with_offset(Duration::from_secs(10));
        assert_eq!(windows(shifted, 5_000), vec![(-50_000, 10_000)]);
    }

    #[test]
    fn sliding_windows_hold_each_element_size_over_period_times() {
        let w = Windows::sliding(Duration::from_secs(60), Duration::from_secs(20));
        assert_eq!(
            windows(w, 65_000),
            vec![(20_000, 80_000), (40_000, 100_000), (60_000, 120_000)]
        );
        assert_eq!(
            windows(w, 60_000),
            vec![(20_000, 80_000), (40_000, 100_000), (60_000, 120_000)]
        );
        assert!(
            Windows::sliding(Duration::from_secs(1), Duration::from_secs(2))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn sessions_start_as_proto_windows() {
        let w = Windows::sessions(Duration::from_secs(10));
        assert_eq!(windows(w, 5), vec![(5, 10_005)]);
        assert!(w.merges());
        assert_eq!(
            windows(Windows::Global, 7),
            vec![(MIN_TIMESTAMP, MAX_TIMESTAMP)]
        );
    }
}
