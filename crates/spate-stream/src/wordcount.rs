//! The canonical streaming job: word count per event-time window, the
//! same pipeline streamed (`spate stream wordcount`) and run in batch
//! (`spate run windowed-wordcount`).
//!
//! Each input line is `<event time, ms since the epoch><TAB><text>`; each
//! output line is `<window start ms><TAB><window end ms><TAB><word><TAB><count>`,
//! written when the watermark passes the window's end (and again, with the
//! updated count, for each batch that brings the window late elements
//! within the allowed lateness). Words are those of
//! [`spate_core::text::into_words`].

use std::path::PathBuf;
use std::time::Duration;

use spate_core::text::into_words;
use spate_core::word::Word;

use crate::pipeline::{StreamPipeline, Watermarks};
use crate::source::DirectorySource;
use crate::time::Millis;
use crate::window::Windows;

/// The job's parameters.
#[derive(Debug, Clone)]
pub struct WindowedWordCount {
    /// Directory of input files.
    pub input: PathBuf,
    /// Directory of output files.
    pub output: PathBuf,
    /// Window length.
    pub window: Duration,
    /// How long after a window's end it still takes late lines.
    pub allowed_lateness: Duration,
    /// How far behind the greatest event time seen lines may come without
    /// being late.
    pub out_of_orderness: Duration,
    /// Where lines too late for their window go (`<event time><TAB><word>`
    /// per word); without it they are counted and reported.
    pub late_output: Option<PathBuf>,
    /// At most this many new files per batch.
    pub max_files_per_trigger: Option<usize>,
}

/// Splits `<ms><TAB><text>`; a line without an event time stops the job,
/// naming the line.
// A step's closure fails its step (and the batch, which is not committed)
// by panicking: spate reports the step's name and this message.
#[allow(clippy::panic)]
pub fn parse_line(line: String) -> (Millis, String) {
    let parsed = line
        .split_once('\t')
        .and_then(|(t, text)| Some((t.trim().parse::<Millis>().ok()?, text.to_string())));
    parsed.unwrap_or_else(|| {
        let shown: String = line.chars().take(80).collect();
        panic!("line {shown:?} does not start with an event time (ms since the epoch) and a tab")
    })
}

impl WindowedWordCount {
    /// Builds the job into `p`.
    pub fn build(&self, p: &StreamPipeline) {
        let mut source = DirectorySource::text(&self.input);
        if let Some(n) = self.max_files_per_trigger {
            source = source.max_files_per_trigger(n);
        }
        let lines = p.read_with(
            "ReadLines",
            source,
            Watermarks::bounded_out_of_orderness(self.out_of_orderness),
        );
        let counts = lines
            .map("ParseEventTime", parse_line)
            .with_timestamps("EventTime", |(t, _): &(Millis, String)| *t)
            .flat_map("Words", |(_, text): (Millis, String)| into_words(text))
            .window_into(Windows::fixed(self.window))
            .with_allowed_lateness(self.allowed_lateness)
            .accumulating_fired_panes()
            .count_per_element("CountWords");
        counts
            .output
            .map("Format", |p| {
                format!(
                    "{}\t{}\t{}\t{}",
                    p.window.start, p.window.end, p.key, p.value
                )
            })
            .write_text("WriteCounts", &self.output);
        if let Some(dir) = &self.late_output {
            counts
                .late
                .map_with_timestamp("FormatLate", |ts, (w, _): (Word, u64)| format!("{ts}\t{w}"))
                .write_text("WriteLate", dir);
        }
    }
}
