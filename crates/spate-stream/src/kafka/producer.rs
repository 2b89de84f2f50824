//! Kafka's transactions, as a stream's sink uses them: each micro-batch's
//! records and the batch's number go to the cluster in one transaction.
//!
//! The batch number is committed, inside the transaction, as the offset of
//! a consumer group named after the transactional id (Kafka's own
//! `sendOffsetsToTransaction`): after a crash, the sink reads it back and
//! knows whether the batch it is asked to write again is already in the
//! topic. Starting a producer with the same transactional id fences any
//! older one still alive and aborts its open transaction.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, OffsetFetchRequest, ProduceRequest, ProducerId, TopicName,
    TransactionalId, TxnOffsetCommitRequest,
    add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    offset_fetch_request::OffsetFetchRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
    txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic},
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_core::error::Result;

use super::client::{Client, error, kafka_error, retriable};

/// Bytes of values per record batch, at most (under Kafka's default
/// `message.max.bytes` of 1 MiB, with room for the records' headers).
const BYTES_PER_REQUEST: usize = 768 << 10;
/// Records per record batch, at most.
const RECORDS_PER_REQUEST: usize = 10_000;

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The number after the last batch a sink under transactional id `id`
/// committed to `topic` (0: none). Needs no producer, so a stream that
/// is then refused fences nothing.
pub(crate) fn committed_batches(client: &mut Client, topic: &str, id: &str) -> Result<u64> {
    let addr = client.coordinator(id, 0)?;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(name(id)))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partition_indexes(vec![0]),
        ]));
    let what = "read the committed batch";
    let resp = retry(client, &addr, what, |r| r.error_code, &req)?;
    let Some(p) = resp.topics.iter().flat_map(|t| &t.partitions).next() else {
        return Ok(0);
    };
    if p.error_code != 0 {
        return Err(error(p.error_code, &format!("transactional sink: {what}")));
    }
    Ok(u64::try_from(p.committed_offset).unwrap_or(0))
}

/// A transactional producer writing one topic.
pub(crate) struct TxnProducer {
    client: Client,
    topic: String,
    id: String,
    producer_id: i64,
    epoch: i16,
    /// The next sequence number per partition (in this producer epoch).
    sequences: HashMap<i32, i32>,
    coordinator: String,
    group_coordinator: String,
}

impl TxnProducer {
    /// Starts a producer for `topic` under transactional id `id`, fencing
    /// any older producer with that id.
    pub fn start(mut client: Client, topic: &str, id: &str) -> Result<Self> {
        client.partitions(topic)?;
        let coordinator = client.coordinator(id, 1)?;
        let timeout_ms = i32::try_from(client.timeout().as_millis()).unwrap_or(i32::MAX);
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(name(id))))
            .with_transaction_timeout_ms(timeout_ms.max(60_000));
        let resp = retry(
            &mut client,
            &coordinator,
            "init producer id",
            |resp| resp.error_code,
            &req,
        )?;
        let group_coordinator = client.coordinator(id, 0)?;
        Ok(Self {
            client,
            topic: topic.to_string(),
            id: id.to_string(),
            producer_id: resp.producer_id.0,
            epoch: resp.producer_epoch,
            sequences: HashMap::new(),
            coordinator,
            group_coordinator,
        })
    }

    /// The partitions of the topic.
    pub fn partitions(&mut self) -> Result<Vec<i32>> {
        self.client.partitions(&self.topic)
    }

    /// The number after the last batch committed under the id.
    pub fn committed_batches(&mut self) -> Result<u64> {
        committed_batches(&mut self.client, &self.topic, &self.id)
    }

    /// Writes `records` (partition, timestamp, value) and marks batch
    /// `batch` committed, in one transaction.
    pub fn commit(&mut self, batch: u64, records: &[(i32, i64, Vec<u8>)]) -> Result<()> {
        match self.try_commit(batch, records) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: a restarted sink's new producer aborts it anyway.
                let _ = self.end(false);
                Err(e)
            }
        }
    }

    fn try_commit(&mut self, batch: u64, records: &[(i32, i64, Vec<u8>)]) -> Result<()> {
        let mut by_partition: IndexMap<i32, Vec<(i64, &[u8])>> = IndexMap::new();
        for (p, ts, v) in records {
            by_partition.entry(*p).or_default().push((*ts, v));
        }
        by_partition.sort_keys();
        let topic = self.topic.clone();
        if !by_partition.is_empty() {
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(name(&self.id)))
                .with_v3_and_below_producer_id(ProducerId(self.producer_id))
                .with_v3_and_below_producer_epoch(self.epoch)
                .with_v3_and_below_topics(vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(name(&topic)))
                        .with_partitions(by_partition.keys().copied().collect()),
                ]);
            let addr = self.coordinator.clone();
            retry(
                &mut self.client,
                &addr,
                "add partitions to the transaction",
                |r| {
                    r.results_by_topic_v3_and_below
                        .iter()
                        .flat_map(|t| &t.results_by_partition)
                        .map(|p| p.partition_error_code)
                        .filter(|c| *c != 0)
                        // The cause, not OPERATION_NOT_ATTEMPTED (55).
                        .min_by_key(|c| *c == 55)
                        .unwrap_or(r.error_code)
                },
                &req,
            )?;
        }
        for (&partition, rows) in &by_partition {
            // Record batches of bounded size (a record larger than the
            // bound goes alone; the broker names its own limit).
            let mut start = 0;
            while start < rows.len() {
                let mut end = start;
                let mut bytes = 0;
                while end < rows.len()
                    && end - start < RECORDS_PER_REQUEST
                    && (end == start || bytes + rows[end].1.len() + 32 <= BYTES_PER_REQUEST)
                {
                    bytes += rows[end].1.len() + 32;
                    end += 1;
                }
                self.produce(partition, &rows[start..end])?;
                start = end;
            }
        }
        // The batch's number, as the group's offset, in the same transaction.
        let group = GroupId(name(&self.id));
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(name(&self.id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_group_id(group.clone());
        let addr = self.coordinator.clone();
        retry(
            &mut self.client,
            &addr,
            "add the batch number to the transaction",
            |r| r.error_code,
            &req,
        )?;
        let next = i64::try_from(batch + 1).map_err(kafka_error)?;
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(name(&self.id)))
            .with_group_id(group)
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_generation_id(-1)
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(name(&topic)))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(next),
                    ]),
            ]);
        let addr = self.group_coordinator.clone();
        retry(
            &mut self.client,
            &addr,
            "commit the batch number",
            |r| {
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(0)
            },
            &req,
        )?;
        self.end(true)
    }

    fn produce(&mut self, partition: i32, rows: &[(i64, &[u8])]) -> Result<()> {
        let seq = self.sequences.get(&partition).copied().unwrap_or(0);
        let records: Vec<Record> = rows
            .iter()
            .enumerate()
            .map(|(i, (ts, v))| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: self.producer_id,
                producer_epoch: self.epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq.wrapping_add(i as i32),
                timestamp: *ts,
                key: None,
                value: Some(Bytes::copy_from_slice(v)),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(kafka_error)?;
        let data = buf.freeze();
        let topic = self.topic.clone();
        let id = self.id.clone();
        let timeout_ms = i32::try_from(self.client.timeout().as_millis()).unwrap_or(i32::MAX);
        self.client.with_leader(&topic, partition, |client, addr| {
            let req = ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(name(&id))))
                .with_acks(-1)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(name(&topic)))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(partition)
                                .with_records(Some(data.clone())),
                        ]),
                ]);
            let resp = client.call(addr, &req)?;
            let code = resp
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0);
            Ok(if code == 0 { Ok(()) } else { Err(code) })
        })?;
        self.sequences
            .insert(partition, seq.wrapping_add(rows.len() as i32));
        Ok(())
    }

    fn end(&mut self, commit: bool) -> Result<()> {
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(name(&self.id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        let addr = self.coordinator.clone();
        let what = if commit { "commit" } else { "abort" };
        retry(&mut self.client, &addr, what, |r| r.error_code, &req)?;
        Ok(())
    }
}

/// Sends `req` to `addr` until its error code (`code` reads it) is not
/// one to retry, or the client's timeout passes.
fn retry<R: kafka_protocol::protocol::Request>(
    client: &mut Client,
    addr: &str,
    what: &str,
    code: impl Fn(&R::Response) -> i16,
    req: &R,
) -> Result<R::Response> {
    let deadline = Instant::now() + client.timeout();
    loop {
        match client.call(addr, req) {
            Ok(r) => {
                let c = code(&r);
                if c == 0 {
                    return Ok(r);
                }
                if !retriable(c) || Instant::now() >= deadline {
                    return Err(error(c, &format!("transactional sink: {what}")));
                }
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
