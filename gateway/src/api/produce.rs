//! Produce: validate each partition's batches (header and CRC-32C, no
//! decompression), hand them to the write path, answer once durable.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::task::JoinSet;

use super::str_bytes;
use crate::batch::{BatchError, set_log_append_time, validate_batches};
use crate::broker::Broker;
use crate::error::{Code, KafkaError};
use floe_flusher::BatchIn;

struct Outcome {
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
}

async fn produce_partition(
    broker: Arc<Broker>,
    topic: String,
    partition: i32,
    records: Option<bytes::Bytes>,
    timeout: Duration,
) -> Result<Outcome, KafkaError> {
    let entry = broker.topic(&topic).ok_or_else(|| {
        KafkaError::new(
            Code::UnknownTopicOrPartition,
            format!("unknown topic {topic}"),
        )
    })?;
    let log = entry.log(partition).cloned().ok_or_else(|| {
        KafkaError::new(
            Code::UnknownTopicOrPartition,
            format!("{topic} has no partition {partition}"),
        )
    })?;
    if !broker.owns(&log.id) {
        return Err(KafkaError::new(Code::NotLeaderOrFollower, "not the owner"));
    }
    let records = records.ok_or_else(|| KafkaError::new(Code::CorruptMessage, "no records"))?;
    let max = entry
        .config("max.message.bytes", &broker.settings)
        .parse::<usize>()
        .unwrap_or(broker.settings.max_message_bytes as usize);
    let mut headers = validate_batches(&records, max).map_err(|e| {
        let code = match e {
            BatchError::Corrupt(_) => Code::CorruptMessage,
            BatchError::OldFormat(_) => Code::UnsupportedForMessageFormat,
            BatchError::TooLarge(_) => Code::MessageTooLarge,
            BatchError::Invalid(_) => Code::InvalidRecord,
        };
        KafkaError::new(code, e.to_string())
    })?;
    let mut log_append_time = -1;
    if entry.config("message.timestamp.type", &broker.settings) == "LogAppendTime" {
        let now = broker.clock.now_ms();
        log_append_time = now;
        for h in &mut headers {
            set_log_append_time(h, now);
        }
    }
    let batches = headers
        .into_iter()
        .map(|h| BatchIn {
            records: h.record_count,
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            bytes: h.bytes,
        })
        .collect();
    let ok = tokio::time::timeout(timeout, broker.flusher.append(log, batches))
        .await
        .map_err(|_| {
            KafkaError::new(
                Code::RequestTimedOut,
                "not durable within the request timeout",
            )
        })??;
    Ok(Outcome {
        base_offset: ok.base_offset,
        log_append_time,
        log_start_offset: ok.log_start_offset,
    })
}

pub async fn handle(
    broker: &Arc<Broker>,
    _version: i16,
    req: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    // Producers send request.timeout.ms here; give storage at least a few seconds.
    let timeout = Duration::from_millis(req.timeout_ms.max(5000) as u64);
    let mut tasks = JoinSet::new();
    let mut slots: Vec<(String, Vec<i32>)> = Vec::new();
    let mut n = 0usize;
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partition_data {
            parts.push(p.index);
            let i = n;
            n += 1;
            if !matches!(acks, -1..=1) {
                tasks.spawn(async move {
                    (
                        i,
                        Err(KafkaError::new(
                            Code::InvalidRequiredAcks,
                            "acks must be -1, 0 or 1",
                        )),
                    )
                });
                continue;
            }
            if req.transactional_id.is_some() {
                tasks.spawn(async move {
                    (
                        i,
                        Err(KafkaError::new(
                            Code::TransactionalIdAuthorizationFailed,
                            "transactions are not supported yet",
                        )),
                    )
                });
                continue;
            }
            let b = broker.clone();
            let name = name.clone();
            tasks.spawn(async move {
                (
                    i,
                    produce_partition(b, name, p.index, p.records, timeout).await,
                )
            });
        }
        slots.push((name, parts));
    }
    if acks == 0 {
        tokio::spawn(async move {
            while let Some(r) = tasks.join_next().await {
                if let Ok((_, Err(e))) = r {
                    tracing::debug!(error = %e, "acks=0 produce failed");
                }
            }
        });
        return None;
    }
    let mut results: Vec<Option<Result<Outcome, KafkaError>>> = (0..n).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, res)) = r {
            results[i] = Some(res);
        }
    }
    let mut resp = ProduceResponse::default();
    let mut i = 0;
    for (name, parts) in slots {
        let mut tr = TopicProduceResponse::default();
        tr.name = kafka_protocol::messages::TopicName(str_bytes(name));
        for index in parts {
            let mut pr = PartitionProduceResponse::default();
            pr.index = index;
            match results[i].take() {
                Some(Ok(o)) => {
                    pr.base_offset = o.base_offset;
                    pr.log_append_time_ms = o.log_append_time;
                    pr.log_start_offset = o.log_start_offset;
                }
                other => {
                    let e = other.and_then(Result::err).unwrap_or_else(|| {
                        KafkaError::new(Code::UnknownServerError, "produce task failed")
                    });
                    pr.error_code = e.code();
                    pr.error_message = Some(str_bytes(e.message));
                    pr.base_offset = -1;
                    pr.log_append_time_ms = -1;
                    pr.log_start_offset = -1;
                }
            }
            i += 1;
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    Some(resp)
}
