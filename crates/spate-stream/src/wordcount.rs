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

use std::path::{Path, PathBuf};
use std::time::Duration;

use spate_core::error::{Error, Result};

use spate_core::text::into_words;
use spate_core::word::Word;

use crate::kafka::{KafkaSink, KafkaSource, StartingOffsets};
use crate::pipeline::{Stream, StreamPipeline, Watermarks};
use crate::source::DirectorySource;
use crate::time::Millis;
use crate::window::Windows;

/// Where the job reads or writes: a directory, or a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Files in a directory.
    Dir(PathBuf),
    /// A topic: records' values are the lines.
    Kafka {
        /// `host:port[,host:port...]`
        bootstrap: String,
        /// The topic.
        topic: String,
    },
}

impl Endpoint {
    /// `kafka://host:port[,host:port...]/topic`, or a directory.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("kafka:") {
            let (bootstrap, topic) = crate::kafka::parse_url(s).ok_or_else(|| {
                Error::Usage(format!(
                    "{s}: a Kafka topic is kafka://HOST:PORT[,HOST:PORT...]/TOPIC"
                ))
            })?;
            return Ok(Self::Kafka { bootstrap, topic });
        }
        Ok(Self::Dir(PathBuf::from(s)))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::Kafka { bootstrap, topic } => write!(f, "kafka://{bootstrap}/{topic}"),
        }
    }
}

impl From<PathBuf> for Endpoint {
    fn from(p: PathBuf) -> Self {
        Self::Dir(p)
    }
}

impl From<&Path> for Endpoint {
    fn from(p: &Path) -> Self {
        Self::Dir(p.to_path_buf())
    }
}

/// The job's parameters.
#[derive(Debug, Clone)]
pub struct WindowedWordCount {
    /// Directory of input files, or a Kafka topic.
    pub input: Endpoint,
    /// Directory of output files, or a Kafka topic.
    pub output: Endpoint,
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
    /// At most this many new files per batch (a directory).
    pub max_files_per_trigger: Option<usize>,
    /// At most about this many records per batch (a Kafka topic).
    pub max_offsets_per_trigger: Option<u64>,
    /// Where a Kafka topic is first read from.
    pub starting_offsets: StartingOffsets,
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
    /// The job with no lateness allowed, no late output, no per-batch
    /// limit, Kafka read from the earliest offset.
    pub fn new(input: impl Into<Endpoint>, output: impl Into<Endpoint>, window: Duration) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            window,
            allowed_lateness: Duration::ZERO,
            out_of_orderness: Duration::ZERO,
            late_output: None,
            max_files_per_trigger: None,
            max_offsets_per_trigger: None,
            starting_offsets: StartingOffsets::Earliest,
        }
    }

    fn read(&self, p: &StreamPipeline) -> Stream<String> {
        let watermarks = Watermarks::bounded_out_of_orderness(self.out_of_orderness);
        match &self.input {
            Endpoint::Dir(dir) => {
                let mut source = DirectorySource::text(dir);
                if let Some(n) = self.max_files_per_trigger {
                    source = source.max_files_per_trigger(n);
                }
                p.read_with("ReadLines", source, watermarks)
            }
            Endpoint::Kafka { bootstrap, topic } => {
                let mut source =
                    KafkaSource::lines(bootstrap, topic).starting_offsets(self.starting_offsets);
                if let Some(n) = self.max_offsets_per_trigger {
                    source = source.max_offsets_per_trigger(n);
                }
                p.read_with("ReadLines", source, watermarks)
            }
        }
    }

    /// Builds the job into `p`.
    pub fn build(&self, p: &StreamPipeline) {
        let lines = self.read(p);
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
            .write_to("WriteCounts", &self.output);
        if let Some(dir) = &self.late_output {
            counts
                .late
                .map_with_timestamp("FormatLate", |ts, (w, _): (Word, u64)| format!("{ts}\t{w}"))
                .write_text("WriteLate", dir);
        }
    }
}

impl<T: spate_core::Data + std::fmt::Display> Stream<T> {
    /// Writes lines to a directory or a Kafka topic, exactly once per batch.
    pub fn write_to(&self, name: &str, to: &Endpoint) {
        match to {
            Endpoint::Dir(dir) => self.write_text(name, dir),
            Endpoint::Kafka { bootstrap, topic } => {
                self.write_kafka(name, KafkaSink::new(bootstrap, topic))
            }
        }
    }
}
