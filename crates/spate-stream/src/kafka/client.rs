//! A small blocking Kafka client over `kafka-protocol`'s message codecs:
//! what a stream's source and sink need — metadata, fetch, transactional
//! produce, group offsets — sent to each partition's leader and to the
//! coordinators the cluster names. Versions are agreed per API with each
//! broker (`ApiVersions`), capped at versions whose fields spate sets.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, FindCoordinatorRequest, ListOffsetsRequest,
    MetadataRequest, RequestHeader, ResponseHeader, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use spate_core::error::{Error, Result};

/// The highest version of each API spate speaks (the broker's own maximum
/// if lower): past these, requests name topics by id or batch groups.
pub(crate) fn max_version(key: ApiKey) -> i16 {
    match key {
        ApiKey::Fetch => 12,
        ApiKey::Produce => 9,
        ApiKey::Metadata => 12,
        ApiKey::FindCoordinator => 3,
        ApiKey::InitProducerId => 4,
        ApiKey::AddPartitionsToTxn => 3,
        ApiKey::AddOffsetsToTxn => 3,
        ApiKey::TxnOffsetCommit => 3,
        ApiKey::EndTxn => 3,
        ApiKey::OffsetFetch => 7,
        ApiKey::ListOffsets => 7,
        _ => 0,
    }
}

pub(crate) fn kafka_error(what: impl std::fmt::Display) -> Error {
    Error::Storage(format!("kafka: {what}"))
}

/// A broker's error code as an error, or `Ok`.
pub(crate) fn check(code: i16, what: impl FnOnce() -> String) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(kafka_error(format!("{}: {e}", what()))),
    }
}

/// A broker's (non-zero) error code as an error.
pub(crate) fn error(code: i16, what: &str) -> Error {
    check(code, || what.to_string())
        .err()
        .unwrap_or_else(|| kafka_error(format!("{what}: no error")))
}

/// Whether a broker's error code is worth the same request again (after
/// new metadata): leaders moving, coordinators loading, a transaction
/// still finishing.
pub(crate) fn retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| {
        e.is_retriable()
            || matches!(
                e,
                ResponseError::ConcurrentTransactions
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
            )
    })
}

/// One connection to one broker.
struct Conn {
    addr: String,
    stream: TcpStream,
    versions: HashMap<i16, (i16, i16)>,
    correlation: i32,
}

impl Conn {
    fn open(addr: &str, timeout: Duration) -> Result<Conn> {
        let fail = |e: &dyn std::fmt::Display| kafka_error(format!("broker {addr}: {e}"));
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| fail(&e))?
            .next()
            .ok_or_else(|| fail(&"no address"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| fail(&e))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| fail(&e))?;
        let mut conn = Conn {
            addr: addr.to_string(),
            stream,
            versions: HashMap::new(),
            correlation: 0,
        };
        let resp = conn.call_version(&ApiVersionsRequest::default(), 0)?;
        check(resp.error_code, || format!("broker {addr}: api versions"))?;
        conn.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    fn call<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| kafka_error("unknown api"))?;
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            return Err(kafka_error(format!(
                "broker {} does not serve {key:?}",
                self.addr
            )));
        };
        let version = max.min(max_version(key)).min(R::VERSIONS.max);
        if version < min.max(R::VERSIONS.min) {
            return Err(kafka_error(format!(
                "broker {} serves {key:?} versions {min}..={max}; spate speaks {}..={}",
                self.addr,
                R::VERSIONS.min,
                max_version(key)
            )));
        }
        self.call_version(req, version)
    }

    fn call_version<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let fail = |e: &dyn std::fmt::Display| kafka_error(format!("broker {}: {e}", self.addr));
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("spate")));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| fail(&e))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| fail(&e))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| fail(&e))?;
        let len = i32::from_be_bytes(len);
        if !(0..=1 << 30).contains(&len) {
            return Err(fail(&format!("bad response length {len}")));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).map_err(|e| fail(&e))?;
        let mut body = Bytes::from(body);
        let head = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| fail(&e))?;
        if head.correlation_id != self.correlation {
            return Err(fail(&"response out of order"));
        }
        R::Response::decode(&mut body, version).map_err(|e| fail(&e))
    }
}

/// What a fetch of one partition gave.
pub(crate) struct Fetched {
    /// Records (control records too), from the offset asked for.
    pub records: Vec<Record>,
    /// The offset past the last whole batch returned.
    pub next: i64,
    /// The end of the committed part of the log (read-committed reads stop there).
    pub last_stable: i64,
    /// The size of a batch cut off at the response's end.
    pub cut: Option<usize>,
}

/// A client of one Kafka cluster.
pub(crate) struct Client {
    bootstrap: Vec<String>,
    timeout: Duration,
    brokers: HashMap<i32, String>,
    leaders: HashMap<(String, i32), i32>,
    conns: HashMap<String, Conn>,
}

impl Client {
    /// `bootstrap`: `host:port[,host:port...]`.
    pub fn new(bootstrap: &str, timeout: Duration) -> Self {
        Self {
            bootstrap: bootstrap.split(',').map(|s| s.trim().to_string()).collect(),
            timeout,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            conns: HashMap::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `req` to `addr`; a broken connection is dropped (the next
    /// call opens a new one).
    pub fn call<R: Request>(&mut self, addr: &str, req: &R) -> Result<R::Response> {
        if !self.conns.contains_key(addr) {
            let conn = Conn::open(addr, self.timeout)?;
            self.conns.insert(addr.to_string(), conn);
        }
        let result = self.conns.get_mut(addr).map(|c| c.call(req));
        let result = result.unwrap_or_else(|| Err(kafka_error("no connection")));
        if result.is_err() {
            self.conns.remove(addr);
        }
        result
    }

    /// Sends `req` to the first bootstrap broker that answers.
    fn call_any<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let mut last = None;
        let known: Vec<String> = self.brokers.values().cloned().collect();
        for addr in self.bootstrap.clone().into_iter().chain(known) {
            match self.call(&addr, req) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| kafka_error("no bootstrap broker")))
    }

    /// The partitions of `topic`, learning their leaders.
    pub fn partitions(&mut self, topic: &str) -> Result<Vec<i32>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                    TopicName(StrBytes::from_string(topic.to_string())),
                ))]))
                .with_allow_auto_topic_creation(false);
            let resp = self.call_any(&req)?;
            for b in &resp.brokers {
                self.brokers
                    .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
            }
            let Some(t) = resp.topics.first() else {
                return Err(kafka_error(format!("no metadata for topic {topic}")));
            };
            if ResponseError::try_from_code(t.error_code)
                == Some(ResponseError::UnknownTopicOrPartition)
            {
                return Err(Error::Usage(format!(
                    "Kafka topic {topic} does not exist on {} (create it first)",
                    self.bootstrap.join(",")
                )));
            }
            if retriable(t.error_code) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            check(t.error_code, || format!("topic {topic}"))?;
            let mut parts: Vec<i32> = Vec::new();
            for p in &t.partitions {
                self.leaders
                    .insert((topic.to_string(), p.partition_index), p.leader_id.0);
                parts.push(p.partition_index);
            }
            parts.sort_unstable();
            return Ok(parts);
        }
    }

    fn leader(&mut self, topic: &str, partition: i32) -> Result<String> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            self.partitions(topic)?;
        }
        let id = self
            .leaders
            .get(&key)
            .ok_or_else(|| kafka_error(format!("topic {topic} has no partition {partition}")))?;
        self.brokers
            .get(id)
            .cloned()
            .ok_or_else(|| kafka_error(format!("topic {topic} partition {partition}: no leader")))
    }

    /// Forgets leaders (after a leader moved).
    fn forget(&mut self) {
        self.leaders.clear();
    }

    /// Sends `f(leader)` to the leader of `topic`/`partition`, again with
    /// new metadata while the broker says to retry, until the timeout.
    pub fn with_leader<T>(
        &mut self,
        topic: &str,
        partition: i32,
        mut f: impl FnMut(&mut Self, &str) -> Result<std::result::Result<T, i16>>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let attempt = self
                .leader(topic, partition)
                .and_then(|addr| f(self, &addr));
            match attempt {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(code)) if !retriable(code) || Instant::now() >= deadline => {
                    return Err(error(code, &format!("topic {topic} partition {partition}")));
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                _ => {}
            }
            self.forget();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads `partition` of `topic` from `offset`, read-committed (up to
    /// the last stable offset), about `max_bytes` (more if the first
    /// record batch is larger).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<Fetched> {
        let mut max = max_bytes;
        loop {
            let f = self.fetch_once(topic, partition, offset, max)?;
            match f.cut {
                Some(n) if f.next == offset && n > max as usize => {
                    max = i32::try_from(n).map_err(kafka_error)?;
                }
                _ => return Ok(f),
            }
        }
    }

    fn fetch_once(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<Fetched> {
        self.with_leader(topic, partition, |client, addr| {
            let req = FetchRequest::default()
                .with_max_wait_ms(50)
                .with_min_bytes(1)
                .with_max_bytes(max_bytes)
                .with_isolation_level(1)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(max_bytes),
                        ]),
                ]);
            let resp = client.call(addr, &req)?;
            check(resp.error_code, || format!("fetch {topic}"))?;
            // A broker may leave out a partition with nothing to return
            // (Tansu does, once the wait is over).
            let Some(p) = resp.responses.into_iter().flat_map(|t| t.partitions).next() else {
                return Ok(Ok(Fetched {
                    records: Vec::new(),
                    next: offset,
                    last_stable: offset,
                    cut: None,
                }));
            };
            if ResponseError::try_from_code(p.error_code) == Some(ResponseError::OffsetOutOfRange) {
                return Err(Error::Storage(format!(
                    "Kafka topic {topic} partition {partition}: offset {offset} is no longer \
                     on the broker (removed by retention, log start {}): its records are lost",
                    p.log_start_offset
                )));
            }
            if p.error_code != 0 {
                return Ok(Err(p.error_code));
            }
            let (records, next, cut) = decode_batches(p.records.unwrap_or_default(), offset)
                .map_err(|e| kafka_error(format!("topic {topic} partition {partition}: {e}")))?;
            let last_stable = if p.last_stable_offset >= 0 {
                p.last_stable_offset
            } else {
                p.high_watermark
            };
            Ok(Ok(Fetched {
                records,
                next,
                last_stable,
                cut,
            }))
        })
    }

    /// The first offset still in `partition` of `topic`.
    pub fn log_start(&mut self, topic: &str, partition: i32) -> Result<i64> {
        self.with_leader(topic, partition, |client, addr| {
            let req = ListOffsetsRequest::default()
                .with_isolation_level(1)
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(partition)
                                .with_timestamp(-2),
                        ]),
                ]);
            let resp = client.call(addr, &req)?;
            let Some(p) = resp.topics.into_iter().flat_map(|t| t.partitions).next() else {
                return Err(kafka_error(format!(
                    "list offsets {topic}/{partition}: no answer"
                )));
            };
            Ok(if p.error_code == 0 {
                Ok(p.offset)
            } else {
                Err(p.error_code)
            })
        })
    }

    /// The broker coordinating `key` (`key_type` 0: a group, 1: a
    /// transactional id).
    pub fn coordinator(&mut self, key: &str, key_type: i8) -> Result<String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let req = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.to_string()))
                .with_key_type(key_type);
            let resp = self.call_any(&req)?;
            if resp.error_code == 0 {
                return Ok(format!("{}:{}", resp.host.as_str(), resp.port));
            }
            if !retriable(resp.error_code) || Instant::now() >= deadline {
                check(resp.error_code, || format!("coordinator of {key}"))?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The whole record batches in `raw` (a fetch may end in a partial one),
/// records before `from` left out; the offset after the last batch; and
/// the size of a batch cut off at the end.
fn decode_batches(
    mut raw: Bytes,
    from: i64,
) -> std::result::Result<(Vec<Record>, i64, Option<usize>), String> {
    let mut records = Vec::new();
    let mut next = from;
    while raw.len() >= 12 {
        let word = |at: usize| i32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let base = (i64::from(word(0)) << 32) | i64::from(word(4) as u32);
        let len = word(8);
        let whole = 12 + usize::try_from(len).map_err(|_| format!("bad batch length {len}"))?;
        if whole < 27 {
            return Err(format!("bad batch length {len}"));
        }
        if raw.len() < whole {
            return Ok((records, next, Some(whole)));
        }
        let mut batch = raw.split_to(whole);
        // The last offset in the batch: base + lastOffsetDelta (bytes 23..27).
        let last_delta = i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]]);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        records.extend(set.records.into_iter().filter(|r| r.offset >= from));
        next = next.max(base + i64::from(last_delta) + 1);
    }
    Ok((records, next, None))
}
