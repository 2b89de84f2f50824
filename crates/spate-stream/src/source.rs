//! Sources with offsets: what each micro-batch reads is recorded in the
//! checkpoint's offset log before the batch runs, so a restarted job
//! reads exactly the same input again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use spate_core::error::{Error, Result};
use spate_core::frame::TableFormat;
use spate_core::{Context, Data, Dataset};
use spate_io::source::InputFile;

use crate::time::{MAX_TIMESTAMP, MIN_TIMESTAMP, Millis, millis};

/// What the driver hands a source's stream for one run: the batch's
/// description from the offset log (`Null`: nothing from this source).
pub type Current = Arc<Mutex<Value>>;

/// A source of a stream. Every batch it plans is described by a JSON value
/// that the driver writes to the offset log before the batch runs.
pub trait Source: Send + 'static {
    /// The elements.
    type Item: Data;

    /// What the source reads, for messages.
    fn describe(&self) -> String;

    /// Plans the next batch from where the source stands, and moves past
    /// it; `None` when nothing new has arrived. `limited`: whether the
    /// source's per-batch limit applies (not for `once` and bounded runs,
    /// which take all there is).
    fn next_batch(&mut self, limited: bool) -> Result<Option<Value>>;

    /// Moves past a batch planned before a restart (read back from the
    /// offset log).
    fn replay(&mut self, batch: &Value) -> Result<()>;

    /// Where the source stands, kept with each checkpoint.
    fn position(&self) -> Value;

    /// Goes back to a position [`position`](Self::position) gave.
    fn restore(&mut self, position: &Value) -> Result<()>;

    /// The elements of one batch with their timestamps. Built once; each
    /// run reads the batch the driver put in `current`.
    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, Self::Item)>;

    /// A watermark the source sets itself (a test stream), instead of one
    /// computed from the event times it delivers.
    fn watermark(&self) -> Option<Millis> {
        None
    }

    /// Processing time, for a source with a clock of its own (a test stream).
    fn clock(&self) -> Option<Millis> {
        None
    }

    /// Whether the source has ended: nothing more will ever come.
    fn is_done(&self) -> bool {
        false
    }
}

/// Text files arriving in a directory, read as lines (Spark's file stream
/// source). Files are taken oldest first (modification time, then name);
/// names starting with `.` or `_` are skipped, so a producer writes a
/// hidden name and renames it when complete. A file is read once, whole:
/// files must not change after they appear. The directory may be a prefix
/// of an object store (`s3://bucket/incoming`), listed each batch (an
/// object appears whole when its upload completes).
#[derive(Debug, Clone)]
pub struct DirectorySource {
    dir: PathBuf,
    max_files: Option<usize>,
    seen: BTreeSet<String>,
    /// The context of the pipeline reading the directory, set when it is
    /// read: a directory on an object store is listed through it.
    ctx: Arc<std::sync::OnceLock<Context>>,
}

impl DirectorySource {
    /// Lines of the text files in `dir` (`.gz` and `.zst` decompressed).
    pub fn text(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        // `file:///x` is the local directory `/x`.
        let dir = dir
            .to_str()
            .and_then(|d| d.strip_prefix("file://"))
            .map_or_else(|| dir.to_path_buf(), PathBuf::from);
        Self {
            dir,
            max_files: None,
            seen: BTreeSet::new(),
            ctx: Arc::default(),
        }
    }

    /// At most `n` new files per batch (Spark's `maxFilesPerTrigger`;
    /// default: every new file).
    pub fn max_files_per_trigger(mut self, n: usize) -> Self {
        self.max_files = Some(n.max(1));
        self
    }

    /// The files not read yet, oldest first: `(name, bytes)`.
    fn list(&self) -> Result<Vec<(String, u64)>> {
        if crate::dir::is_url(&self.dir.to_string_lossy()) {
            let ctx = self.ctx.get().ok_or_else(|| {
                Error::Internal(format!(
                    "input directory {} was listed before its pipeline read it",
                    self.dir.display()
                ))
            })?;
            let dir = crate::dir::Dir::open(ctx, &self.dir, "input directory")?;
            let mut files: Vec<_> = dir
                .objects()?
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, ..)| {
                    !(name.starts_with('.') || name.starts_with('_') || self.seen.contains(name))
                })
                .map(|(name, len, modified)| (Some(modified), name, len))
                .collect();
            files.sort();
            return Ok(files.into_iter().map(|(_, n, len)| (n, len)).collect());
        }
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::Usage(format!("input directory {}: {e}", self.dir.display())))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::Storage(format!("{}: {e}", self.dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') || self.seen.contains(&name) {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| Error::Storage(format!("{}: {e}", entry.path().display())))?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().ok();
            files.push((modified, name, meta.len()));
        }
        files.sort();
        Ok(files.into_iter().map(|(_, n, len)| (n, len)).collect())
    }
}

fn batch_files(batch: &Value) -> Result<Vec<(String, u64)>> {
    serde_json::from_value(batch["files"].clone())
        .map_err(|e| Error::Storage(format!("offset log: bad file list: {e}")))
}

impl Source for DirectorySource {
    type Item = String;

    fn describe(&self) -> String {
        format!("text files in {}", self.dir.display())
    }

    fn next_batch(&mut self, limited: bool) -> Result<Option<Value>> {
        let mut files = self.list()?;
        if limited {
            files.truncate(self.max_files.unwrap_or(usize::MAX));
        }
        if files.is_empty() {
            return Ok(None);
        }
        self.seen.extend(files.iter().map(|(n, _)| n.clone()));
        Ok(Some(json!({ "files": files })))
    }

    fn replay(&mut self, batch: &Value) -> Result<()> {
        self.seen
            .extend(batch_files(batch)?.into_iter().map(|(n, _)| n));
        Ok(())
    }

    fn position(&self) -> Value {
        json!({ "seen": self.seen })
    }

    fn restore(&mut self, position: &Value) -> Result<()> {
        self.seen = serde_json::from_value(position["seen"].clone())
            .map_err(|e| Error::Storage(format!("checkpoint: bad source position: {e}")))?;
        Ok(())
    }

    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, String)> {
        let _ = self.ctx.set(ctx.clone());
        let dir = self.dir.clone();
        ctx.read_text_each_run(move || {
            let batch = current.lock().clone();
            if batch.is_null() {
                return Ok(Vec::new());
            }
            Ok(batch_files(&batch)?
                .into_iter()
                .map(|(name, len)| InputFile {
                    path: dir.join(name),
                    len,
                })
                .collect())
        })
        .map(|line| (MIN_TIMESTAMP, line))
    }
}

/// JSON values, one per line, in text files arriving in a directory (as
/// [`DirectorySource`] takes them): each line is parsed as a `T`. A line
/// that is not a `T` fails the batch, naming the step and the line.
pub struct JsonLinesSource<T> {
    files: DirectorySource,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl DirectorySource {
    /// The files' lines parsed as JSON values of `T`.
    pub fn json_lines<T>(self) -> JsonLinesSource<T> {
        JsonLinesSource {
            files: self,
            _t: std::marker::PhantomData,
        }
    }
}

/// A typed source's offsets: those of the directory source it reads
/// (`self.files`), which picks each batch's files.
macro_rules! offsets_of_files {
    () => {
        fn next_batch(&mut self, limited: bool) -> Result<Option<Value>> {
            self.files.next_batch(limited)
        }
        fn replay(&mut self, batch: &Value) -> Result<()> {
            self.files.replay(batch)
        }
        fn position(&self) -> Value {
            self.files.position()
        }
        fn restore(&mut self, position: &Value) -> Result<()> {
            self.files.restore(position)
        }
    };
}

impl<T: Data + serde::de::DeserializeOwned> Source for JsonLinesSource<T> {
    type Item = T;

    fn describe(&self) -> String {
        format!("JSON lines in {}", self.files.dir.display())
    }
    offsets_of_files!();
    // A step's closure fails its step (and the batch) by panicking.
    #[allow(clippy::panic)]
    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, T)> {
        self.files
            .stream(ctx, current)
            .map(
                |(ts, line): (Millis, String)| match serde_json::from_str::<T>(&line) {
                    Ok(v) => (ts, v),
                    Err(e) => {
                        let shown: String = line.chars().take(80).collect();
                        panic!(
                            "line {shown:?} is not a JSON {}: {e}",
                            std::any::type_name::<T>()
                        )
                    }
                },
            )
    }
}

#[derive(Debug, Clone)]
enum Event<T> {
    Elements(Vec<(Millis, T)>),
    Watermark(Millis),
    ProcessingTime(Millis),
}

/// A scripted stream for tests (Beam's `TestStream`): elements with
/// timestamps, watermark moves and processing-time moves, each event one
/// micro-batch. The watermark is the one the script sets; processing time
/// starts at 0 and moves only when the script moves it.
#[derive(Debug, Clone)]
pub struct TestStream<T> {
    events: Arc<Vec<Event<T>>>,
    next: usize,
}

impl<T: Data + Clone> TestStream<T> {
    /// An empty script.
    pub fn new() -> Self {
        Self {
            events: Arc::new(Vec::new()),
            next: 0,
        }
    }

    fn push(mut self, e: Event<T>) -> Self {
        Arc::make_mut(&mut self.events).push(e);
        self
    }

    /// Elements, each with its event time (one batch).
    pub fn add_elements(self, elements: impl IntoIterator<Item = (Millis, T)>) -> Self {
        self.push(Event::Elements(elements.into_iter().collect()))
    }

    /// Moves the watermark to `t` (never back).
    pub fn advance_watermark_to(self, t: Millis) -> Self {
        self.push(Event::Watermark(t))
    }

    /// Moves processing time forward by `d`.
    pub fn advance_processing_time(self, d: Duration) -> Self {
        self.push(Event::ProcessingTime(millis(d)))
    }

    /// Ends the stream: the watermark goes to the end of time, so every
    /// window fires and expires.
    pub fn advance_watermark_to_infinity(self) -> Self {
        self.push(Event::Watermark(MAX_TIMESTAMP))
    }

    fn scan(&self) -> (Millis, Millis) {
        let mut wm = MIN_TIMESTAMP;
        let mut clock = 0;
        for e in &self.events[..self.next] {
            match e {
                Event::Watermark(t) => wm = wm.max(*t),
                Event::ProcessingTime(d) => clock += d,
                Event::Elements(_) => {}
            }
        }
        (wm, clock)
    }
}

impl<T: Data + Clone> Default for TestStream<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data + Clone> Source for TestStream<T> {
    type Item = T;

    fn describe(&self) -> String {
        format!("a test stream of {} events", self.events.len())
    }

    fn next_batch(&mut self, _limited: bool) -> Result<Option<Value>> {
        if self.next >= self.events.len() {
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(json!({ "event": self.next - 1 })))
    }

    fn replay(&mut self, batch: &Value) -> Result<()> {
        let i = batch["event"]
            .as_u64()
            .ok_or_else(|| Error::Storage("offset log: bad test-stream event".into()))?;
        self.next = self.next.max(i as usize + 1);
        Ok(())
    }

    fn position(&self) -> Value {
        json!({ "next": self.next })
    }

    fn restore(&mut self, position: &Value) -> Result<()> {
        self.next = position["next"].as_u64().unwrap_or(0) as usize;
        Ok(())
    }

    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, T)> {
        let events = self.events.clone();
        ctx.from_each_run(move || {
            let batch = current.lock().clone();
            if batch.is_null() {
                return Ok(Vec::new());
            }
            let event = batch["event"]
                .as_u64()
                .and_then(|i| events.get(i as usize))
                .ok_or_else(|| {
                    Error::Storage(format!("offset log: no test-stream event {batch}"))
                })?;
            Ok(match event {
                Event::Elements(v) => v.clone(),
                _ => Vec::new(),
            })
        })
    }

    fn watermark(&self) -> Option<Millis> {
        Some(self.scan().0)
    }

    fn clock(&self) -> Option<Millis> {
        Some(self.scan().1)
    }

    fn is_done(&self) -> bool {
        self.next >= self.events.len()
    }
}

/// Lines from a TCP server (Spark's socket source, for demos: `nc -lk
/// 9999`). Each batch's lines are written into the offset log, so a batch
/// in flight is replayed exactly after a crash; lines the socket delivered
/// after the last planned batch are lost with the process. Not for
/// production input.
pub struct SocketSource {
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
    /// Set when the connection closed (end of input) or failed.
    closed: Arc<Mutex<Option<std::result::Result<(), String>>>>,
    started: bool,
    batches: u64,
}

impl SocketSource {
    /// Lines from the server at `addr` (`host:port`); connects when the
    /// stream starts.
    pub fn lines(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            lines: Arc::new(Mutex::new(Vec::new())),
            closed: Arc::new(Mutex::new(None)),
            started: false,
            batches: 0,
        }
    }

    fn start(&mut self) -> Result<()> {
        use std::io::BufRead;
        if self.started {
            return Ok(());
        }
        let stream = std::net::TcpStream::connect(&self.addr)
            .map_err(|e| Error::Usage(format!("socket source {}: {e}", self.addr)))?;
        let (lines, closed) = (self.lines.clone(), self.closed.clone());
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stream);
            let mut line = String::new();
            let end = loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => break Ok(()),
                    Ok(_) => lines
                        .lock()
                        .push(line.trim_end_matches(['\n', '\r']).to_string()),
                    Err(e) => break Err(e.to_string()),
                }
            };
            *closed.lock() = Some(end);
        });
        self.started = true;
        Ok(())
    }
}

impl Source for SocketSource {
    type Item = String;

    fn describe(&self) -> String {
        format!("lines from {}", self.addr)
    }

    fn next_batch(&mut self, _limited: bool) -> Result<Option<Value>> {
        self.start()?;
        // Lines read before a failure are planned first.
        let lines = std::mem::take(&mut *self.lines.lock());
        if lines.is_empty() {
            if let Some(Err(e)) = &*self.closed.lock() {
                return Err(Error::Storage(format!("socket {}: {e}", self.addr)));
            }
            return Ok(None);
        }
        self.batches += 1;
        Ok(Some(json!({ "lines": lines })))
    }

    fn replay(&mut self, _batch: &Value) -> Result<()> {
        self.batches += 1;
        Ok(())
    }

    fn position(&self) -> Value {
        json!({ "batches": self.batches })
    }

    fn restore(&mut self, position: &Value) -> Result<()> {
        self.batches = position["batches"].as_u64().unwrap_or(0);
        Ok(())
    }

    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, String)> {
        ctx.from_each_run(move || {
            let batch = current.lock().clone();
            if batch.is_null() {
                return Ok(Vec::new());
            }
            let lines: Vec<String> = serde_json::from_value(batch["lines"].clone())
                .map_err(|e| Error::Storage(format!("offset log: bad socket lines: {e}")))?;
            Ok(lines.into_iter().map(|l| (MIN_TIMESTAMP, l)).collect())
        })
    }

    fn is_done(&self) -> bool {
        // Closed, and every line it sent planned.
        matches!(&*self.closed.lock(), Some(Ok(()))) && self.lines.lock().is_empty()
    }
}

/// CSV (with a header line) or Parquet files arriving in a directory, as
/// [`DirectorySource`] takes them, read as rows of `T` (columns matched to
/// `T`'s fields by name and cast to their types, as `Context::read_csv`
/// and `Context::read_parquet` read them).
pub struct TableFilesSource<T> {
    files: DirectorySource,
    format: TableFormat,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl DirectorySource {
    /// The files read as CSV with a header line.
    pub fn csv<T>(self) -> TableFilesSource<T> {
        TableFilesSource {
            files: self,
            format: TableFormat::Csv,
            _t: std::marker::PhantomData,
        }
    }

    /// The files read as Parquet.
    pub fn parquet<T>(self) -> TableFilesSource<T> {
        TableFilesSource {
            files: self,
            format: TableFormat::Parquet,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Data> Source for TableFilesSource<T> {
    type Item = T;

    fn describe(&self) -> String {
        let kind = match self.format {
            TableFormat::Csv => "CSV",
            TableFormat::Parquet => "Parquet",
        };
        format!("{kind} files in {}", self.files.dir.display())
    }
    offsets_of_files!();
    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, T)> {
        let _ = self.files.ctx.set(ctx.clone());
        let dir = self.files.dir.clone();
        ctx.read_table_files_each_run(self.format, move || {
            let batch = current.lock().clone();
            if batch.is_null() {
                return Ok(Vec::new());
            }
            Ok(batch_files(&batch)?
                .into_iter()
                .map(|(name, _)| dir.join(name).to_string_lossy().into_owned())
                .collect())
        })
        .map(|x| (MIN_TIMESTAMP, x))
    }
}
