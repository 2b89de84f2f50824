//! Kafka in and out, exactly once.
//!
//! **Source.** spate assigns itself every partition of the topic and keeps
//! the offsets in the stream's checkpoint, not in a broker consumer group
//! (as Spark's Kafka source does). Each batch's offset ranges go to the
//! offset log before the batch runs, so a batch run again reads the same
//! records. Reads are read-committed, decided by spate itself from the
//! log's transaction markers: a record of a transaction is taken once its
//! producer's commit marker is in the log, never if the marker is an
//! abort — so aborted records stay out even on a broker whose fetch does
//! not list aborted transactions. A batch stops before the first record
//! whose transaction is still open. The event time is the record's
//! timestamp; `with_timestamps` may set another.
//!
//! **Sink.** Each batch's lines and the batch's number are written in one
//! Kafka transaction (see [`producer`]); a batch run again after a crash
//! finds its number committed and writes nothing twice. A new stream
//! (fresh checkpoint) refuses a transactional id that already committed
//! batches, so a reused id never hides a new stream's output.

mod client;
mod producer;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use spate_core::error::{Error, Result};
use spate_core::{Context, Data, Dataset};

use self::client::Client;
use self::producer::TxnProducer;
use crate::pipeline::{Sink, Stream};
use crate::source::{Current, Source};
use crate::time::Millis;

/// How long a request to the cluster may take before the batch fails.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes asked for per fetch.
const FETCH_BYTES: i32 = 8 << 20;

/// Where a stream starts reading a partition it has no offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The oldest record still kept.
    Earliest,
    /// Only records written after the stream starts (Spark's default).
    Latest,
}

impl std::str::FromStr for StartingOffsets {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => Err(Error::Usage(format!(
                "starting offsets {s:?}: give earliest or latest"
            ))),
        }
    }
}

/// A `kafka://host:port[,host:port]/topic` address, split.
pub fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("kafka://")?;
    let (servers, topic) = rest.split_once('/')?;
    (!servers.is_empty() && !topic.is_empty() && !topic.contains('/'))
        .then(|| (servers.to_string(), topic.to_string()))
}

/// A planned batch's committed records, per partition.
type Planned = Vec<(i32, Vec<kafka_protocol::records::Record>)>;

type Decode<T> = Arc<dyn Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync>;

/// Records of a Kafka topic, as a stream's source.
pub struct KafkaSource<T> {
    bootstrap: String,
    topic: String,
    starting: StartingOffsets,
    max_per_trigger: Option<u64>,
    timeout: Duration,
    client: Arc<Mutex<Option<Client>>>,
    /// The next offset to read, per partition.
    positions: BTreeMap<i32, i64>,
    /// The last planned batch and its records (read while planning; a
    /// batch replayed after a restart reads them again).
    planned: Arc<Mutex<Option<(Value, Planned)>>>,
    decode: Decode<T>,
}

impl KafkaSource<String> {
    /// Records' values as lines of UTF-8 text, from `topic` on the cluster
    /// at `bootstrap` (`host:port[,host:port...]`).
    pub fn lines(bootstrap: &str, topic: &str) -> Self {
        Self::with_decoder(bootstrap, topic, |v| {
            std::str::from_utf8(v)
                .map(str::to_string)
                .map_err(|e| format!("value is not UTF-8 text ({e})"))
        })
    }

    /// Records' values parsed as JSON values of `T`.
    pub fn json<T: Data + DeserializeOwned>(self) -> KafkaSource<T> {
        let mut source = KafkaSource::with_decoder(&self.bootstrap, &self.topic, |v| {
            serde_json::from_slice(v)
                .map_err(|e| format!("value is not a JSON {} ({e})", std::any::type_name::<T>()))
        });
        source.starting = self.starting;
        source.max_per_trigger = self.max_per_trigger;
        source.timeout = self.timeout;
        source
    }
}

impl<T: Data> KafkaSource<T> {
    fn with_decoder(
        bootstrap: &str,
        topic: &str,
        decode: impl Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            starting: StartingOffsets::Latest,
            max_per_trigger: None,
            timeout: DEFAULT_TIMEOUT,
            client: Arc::new(Mutex::new(None)),
            positions: BTreeMap::new(),
            planned: Arc::new(Mutex::new(None)),
            decode: Arc::new(decode),
        }
    }

    /// Where to start a partition the checkpoint has no offset for
    /// (Spark's `startingOffsets`; default: latest).
    pub fn starting_offsets(mut self, s: StartingOffsets) -> Self {
        self.starting = s;
        self
    }

    /// At most about `n` records per batch, spread over the partitions
    /// (Spark's `maxOffsetsPerTrigger`; default: all there are).
    pub fn max_offsets_per_trigger(mut self, n: u64) -> Self {
        self.max_per_trigger = Some(n.max(1));
        self
    }

    /// How long a request to the cluster may take (default 30 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    fn with_client<R>(&self, f: impl FnOnce(&mut Client) -> Result<R>) -> Result<R> {
        with_client(&self.client, &self.bootstrap, self.timeout, f)
    }
}

fn with_client<R>(
    client: &Mutex<Option<Client>>,
    bootstrap: &str,
    timeout: Duration,
    f: impl FnOnce(&mut Client) -> Result<R>,
) -> Result<R> {
    let mut guard = client.lock();
    let c = guard.get_or_insert_with(|| Client::new(bootstrap, timeout));
    f(c)
}

/// One partition's part of a batch: records `[from, until)`, decided from
/// the log read up to `scanned` (markers past `until` may decide records
/// before it).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Range {
    partition: i32,
    from: i64,
    until: i64,
    scanned: i64,
}

/// Reads `partition` from `from` up to its last stable offset (or, if
/// `end` is given, up to `end`), until about `budget` records can be
/// taken. Returns the committed data records of the range and the range.
fn read_committed(
    client: &mut Client,
    topic: &str,
    partition: i32,
    from: i64,
    end: Option<i64>,
    budget: u64,
) -> Result<(Vec<kafka_protocol::records::Record>, Range)> {
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    let mut records = Vec::new();
    let mut next = from;
    // The end is fixed once: the given one (a batch run again), or the
    // last stable offset the first fetch saw — a busy topic is not chased.
    let mut stop = end;
    let deadline = std::time::Instant::now() + client.timeout();
    let (keep, pending) = loop {
        if stop.is_some_and(|e| next >= e) {
            break resolve(&records);
        }
        let fetched = client.fetch(topic, partition, next, FETCH_BYTES)?;
        let until = *stop.get_or_insert(fetched.last_stable);
        records.extend(fetched.records.into_iter().filter(|r| r.offset < until));
        let reached = fetched.next.min(until);
        if reached <= next {
            // Nothing more now. A batch run again must reach the end it
            // read to before (a new leader may lag for a moment).
            if end.is_some() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            break resolve(&records);
        }
        next = reached;
        if next < until && budget != usize::MAX {
            let (keep, pending) = resolve(&records);
            let ready = keep
                .iter()
                .zip(&records)
                .filter(|(k, r)| **k && pending.is_none_or(|p| r.offset < p))
                .count();
            if ready >= budget {
                break (keep, pending);
            }
        }
    };
    // Up to the first record still undecided, and at most `budget` records.
    let mut until = pending.unwrap_or(next);
    let mut data: Vec<_> = records
        .into_iter()
        .zip(keep)
        .filter(|(r, k)| *k && r.offset < until)
        .map(|(r, _)| r)
        .collect();
    if data.len() > budget {
        until = data[budget].offset;
        data.truncate(budget);
    }
    Ok((
        data,
        Range {
            partition,
            from,
            until,
            scanned: next,
        },
    ))
}

/// Which records to take — data records not in a transaction, and those
/// of a transaction whose producer's next marker is a commit — and the
/// first offset of a transaction with no marker yet.
fn resolve(records: &[kafka_protocol::records::Record]) -> (Vec<bool>, Option<i64>) {
    let mut keep = vec![true; records.len()];
    let mut open: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if r.control {
            keep[i] = false;
            // A control record's key: version (i16), then type (0 abort, 1 commit).
            let commit = r
                .key
                .as_ref()
                .filter(|k| k.len() >= 4)
                .is_some_and(|k| i16::from_be_bytes([k[2], k[3]]) == 1);
            for j in open.remove(&r.producer_id).unwrap_or_default() {
                keep[j] = commit;
            }
        } else if r.transactional {
            open.entry(r.producer_id).or_default().push(i);
        }
    }
    let pending = open.values().flatten().map(|&i| records[i].offset).min();
    (keep, pending)
}

fn decode_rows<T>(
    topic: &str,
    partition: i32,
    records: Vec<kafka_protocol::records::Record>,
    decode: &Decode<T>,
) -> Result<Vec<(Millis, T)>> {
    records
        .into_iter()
        .map(|r| {
            let at = || {
                format!(
                    "Kafka topic {topic} partition {partition} offset {}",
                    r.offset
                )
            };
            let value = r
                .value
                .as_ref()
                .ok_or_else(|| Error::Usage(format!("{}: the record has no value", at())))?;
            let x = decode(value).map_err(|e| Error::Usage(format!("{}: {e}", at())))?;
            Ok((r.timestamp, x))
        })
        .collect()
}

fn batch_ranges(batch: &Value) -> Result<Vec<Range>> {
    serde_json::from_value(batch["ranges"].clone())
        .map_err(|e| Error::Storage(format!("offset log: bad Kafka ranges: {e}")))
}

impl<T: Data> Source for KafkaSource<T> {
    type Item = T;

    fn describe(&self) -> String {
        format!("Kafka topic {} on {}", self.topic, self.bootstrap)
    }

    fn next_batch(&mut self, limited: bool) -> Result<Option<Value>> {
        let topic = self.topic.clone();
        let starting = self.starting;
        let budget_total = if limited {
            self.max_per_trigger.unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        let mut positions = self.positions.clone();
        // Partitions found after the stream's start (added to the topic)
        // are read from their beginning, as Spark does.
        let first = positions.is_empty();
        let (ranges, rows, starts) = self.with_client(|client| {
            let partitions = client.partitions(&topic)?;
            let budget = match budget_total {
                u64::MAX => u64::MAX,
                b => (b / partitions.len().max(1) as u64).max(1),
            };
            let mut ranges = Vec::new();
            let mut rows = Vec::new();
            let mut starts = BTreeMap::new();
            for p in partitions {
                let from = match positions.get(&p) {
                    Some(&o) => o,
                    None => {
                        let start = client.log_start(&topic, p)?;
                        let from = match starting {
                            StartingOffsets::Latest if first => {
                                client.fetch(&topic, p, start, 1)?.last_stable.max(start)
                            }
                            _ => start,
                        };
                        starts.insert(p, from);
                        from
                    }
                };
                positions.insert(p, from);
                let (records, range) = read_committed(client, &topic, p, from, None, budget)?;
                if range.until > range.from {
                    rows.push((p, records));
                    positions.insert(p, range.until);
                    ranges.push(range);
                }
            }
            Ok((ranges, rows, starts))
        })?;
        self.positions = positions;
        // Where new partitions start goes to the offset log too (a batch
        // with no records if need be), so a restart does not resolve
        // "latest" again past records written meanwhile.
        if ranges.is_empty() && starts.is_empty() {
            return Ok(None);
        }
        let batch = json!({ "ranges": ranges, "starts": starts });
        *self.planned.lock() = Some((batch.clone(), rows));
        Ok(Some(batch))
    }

    fn replay(&mut self, batch: &Value) -> Result<()> {
        if let Some(starts) = batch.get("starts") {
            let starts: BTreeMap<i32, i64> = serde_json::from_value(starts.clone())
                .map_err(|e| Error::Storage(format!("offset log: bad Kafka starts: {e}")))?;
            for (p, o) in starts {
                self.positions.entry(p).or_insert(o);
            }
        }
        for r in batch_ranges(batch)? {
            self.positions.insert(r.partition, r.until);
        }
        Ok(())
    }

    fn position(&self) -> Value {
        json!({ "offsets": self.positions })
    }

    fn restore(&mut self, position: &Value) -> Result<()> {
        self.positions = serde_json::from_value(position["offsets"].clone())
            .map_err(|e| Error::Storage(format!("checkpoint: bad Kafka offsets: {e}")))?;
        Ok(())
    }

    fn stream(&self, ctx: &Context, current: Current) -> Dataset<(Millis, T)> {
        let planned = self.planned.clone();
        let client = self.client.clone();
        let (bootstrap, topic, timeout) =
            (self.bootstrap.clone(), self.topic.clone(), self.timeout);
        let decode = self.decode.clone();
        ctx.from_each_run(move || {
            let batch = current.lock().clone();
            if batch.is_null() {
                return Ok(Vec::new());
            }
            if let Some((b, records)) = &*planned.lock()
                && *b == batch
            {
                let mut rows = Vec::new();
                for (p, records) in records {
                    rows.extend(decode_rows(&topic, *p, records.clone(), &decode)?);
                }
                return Ok(rows);
            }
            // A batch planned before a restart: read its ranges again.
            with_client(&client, &bootstrap, timeout, |c| {
                let mut rows = Vec::new();
                for r in batch_ranges(&batch)? {
                    let (records, again) =
                        read_committed(c, &topic, r.partition, r.from, Some(r.scanned), u64::MAX)?;
                    if again.until < r.until {
                        return Err(Error::Storage(format!(
                            "Kafka topic {topic} partition {}: offsets {}..{} of a batch \
                             being run again are no longer all readable",
                            r.partition, r.from, r.until
                        )));
                    }
                    let records = records.into_iter().filter(|x| x.offset < r.until).collect();
                    rows.extend(decode_rows(&topic, r.partition, records, &decode)?);
                }
                Ok(rows)
            })
        })
    }
}

/// Where a stream's lines go in Kafka: a topic, written transactionally.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    bootstrap: String,
    topic: String,
    transactional_id: Option<String>,
    timeout: Duration,
}

impl KafkaSink {
    /// Lines as record values of `topic` on the cluster at `bootstrap`.
    pub fn new(bootstrap: &str, topic: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            transactional_id: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The transactional id (default `spate-<topic>-<sink step name>`):
    /// one stream at a time may write under it; a restarted stream fences
    /// the old one.
    pub fn transactional_id(mut self, id: &str) -> Self {
        self.transactional_id = Some(id.to_string());
        self
    }

    /// How long a request to the cluster may take (default 30 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

impl<T: Data + Display> Stream<T> {
    /// Writes each batch's elements as lines to a Kafka topic, exactly
    /// once per batch (one transaction per batch; lines sorted and spread
    /// over the partitions in turn, each record stamped with its element's
    /// event time).
    pub fn write_kafka(&self, name: &str, sink: KafkaSink) {
        let id = sink
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("spate-{}-{name}", sink.topic));
        self.add_sink(Box::new(KafkaTextSink {
            name: name.to_string(),
            id,
            sink,
            ds: self.dataset().clone(),
            state: Mutex::new(None),
        }));
    }
}

struct KafkaTextSink<T> {
    name: String,
    id: String,
    sink: KafkaSink,
    ds: Dataset<(Millis, T)>,
    /// The producer, and the batches the topic already holds.
    state: Mutex<Option<(TxnProducer, u64)>>,
}

impl<T> KafkaTextSink<T> {
    /// A producer fencing any older one under the id, and the batches the
    /// topic already holds.
    fn start(&self) -> Result<(TxnProducer, u64)> {
        let client = Client::new(&self.sink.bootstrap, self.sink.timeout);
        let mut producer = TxnProducer::start(client, &self.sink.topic, &self.id)?;
        // Read after fencing: no older producer can commit meanwhile.
        let committed = producer.committed_batches()?;
        Ok((producer, committed))
    }
}

impl<T: Data + Display> Sink for KafkaTextSink<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn dir(&self) -> Option<&std::path::Path> {
        None
    }

    fn prepare(&self, fresh: bool) -> Result<()> {
        let mut client = Client::new(&self.sink.bootstrap, self.sink.timeout);
        let committed = producer::committed_batches(&mut client, &self.sink.topic, &self.id)?;
        if fresh && committed > 0 {
            return Err(Error::Usage(format!(
                "Kafka sink {}: transactional id {} already committed {committed} batches to \
                 topic {}; a new stream (fresh checkpoint) needs an id of its own \
                 (resume the old stream from its checkpoint to go on writing)",
                self.name, self.id, self.sink.topic
            )));
        }
        *self.state.lock() = Some(self.start()?);
        Ok(())
    }

    fn write(&self, batch: u64) -> Result<u64> {
        let mut state = self.state.lock();
        if state.is_none() {
            *state = Some(self.start()?);
        }
        let Some((producer, committed)) = state.as_mut() else {
            return Err(Error::Internal(format!(
                "sink {} has no producer",
                self.name
            )));
        };
        if batch < *committed {
            return Ok(0);
        }
        let rows = self.ds.clone().collect()?;
        let mut lines: Vec<(String, Millis)> =
            rows.into_iter().map(|(t, x)| (x.to_string(), t)).collect();
        lines.sort_unstable();
        let partitions = producer.partitions()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let records: Vec<(i32, i64, Vec<u8>)> = lines
            .into_iter()
            .enumerate()
            .map(|(i, (line, t))| {
                let ts = if (0..=crate::time::MAX_TIMESTAMP / 2).contains(&t) {
                    t
                } else {
                    now
                };
                (partitions[i % partitions.len()], ts, line.into_bytes())
            })
            .collect();
        let n = records.len() as u64;
        if let Err(e) = producer.commit(batch, &records) {
            // A new producer (fencing this one) on the next attempt.
            *state = None;
            return Err(Error::Step {
                step: self.name.clone(),
                message: e.to_string(),
            });
        }
        *committed = batch + 1;
        Ok(n)
    }
}
