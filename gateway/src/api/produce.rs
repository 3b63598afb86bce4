//! Produce: validate each partition's batches (header and CRC-32C, no
//! decompression), hand them to the write path, answer once durable.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{Turn, str_bytes};
use crate::batch::{BatchError, set_log_append_time, validate_batches};
use crate::broker::Broker;
use crate::error::{Code, KafkaError};
use crate::records::null_key_records;

/// Decompression cap when a compacted topic's records are checked for keys.
const RECORDS_CAP: usize = 64 * 1024 * 1024;
use floe_flusher::{AppendTicket, BatchIn};

struct Outcome {
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
}

/// One partition of a produce request after validation: enqueued (a ticket and
/// the log-append time, or -1) or refused.
type Staged = Result<(AppendTicket, i64), KafkaError>;

/// Validates one partition's batches and enqueues them on the write path.
/// Returns the ticket to wait on and the log-append time (or -1).
async fn stage_partition(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    records: Option<bytes::Bytes>,
) -> Staged {
    let (entry, log) = broker.led(topic, partition)?;
    let records = records.ok_or_else(|| KafkaError::new(Code::CorruptMessage, "no records"))?;
    let max = usize::try_from(entry.policy.max_message_bytes).unwrap_or(usize::MAX);
    let mut headers = validate_batches(&records, max).map_err(|e| {
        let code = match e {
            BatchError::Corrupt(_) => Code::CorruptMessage,
            BatchError::OldFormat(_) => Code::UnsupportedForMessageFormat,
            BatchError::TooLarge(_) => Code::MessageTooLarge,
            BatchError::Invalid(_) => Code::InvalidRecord,
        };
        KafkaError::new(code, e.to_string())
    })?;
    if entry.policy.compact {
        for h in &headers {
            let null_keys = null_key_records(&h.bytes, RECORDS_CAP)
                .map_err(|e| KafkaError::new(Code::CorruptMessage, e.to_string()))?;
            if !null_keys.is_empty() {
                let mut e = KafkaError::new(
                    Code::InvalidRecord,
                    format!(
                        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                    ),
                );
                e.record_errors = null_keys;
                return Err(e);
            }
        }
    }
    let mut log_append_time = -1;
    if entry.policy.log_append_time {
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
    let ticket = broker.leases.enqueue(log, batches).await?;
    Ok((ticket, log_append_time))
}

/// Handles a Produce request. `turn` orders this connection's requests: the
/// appends of request N are enqueued before those of request N+1, as Kafka
/// appends a connection's requests in order; durability is then awaited
/// concurrently with later requests.
pub async fn handle(
    broker: &Arc<Broker>,
    _version: i16,
    req: ProduceRequest,
    mut turn: Turn,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    // Producers send request.timeout.ms here; give storage at least a few seconds.
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(5000) as u64);
    turn.wait().await;
    let mut slots: Vec<(String, Vec<(i32, Staged)>)> = Vec::new();
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partition_data {
            let staged = if !matches!(acks, -1..=1) {
                Err(KafkaError::new(
                    Code::InvalidRequiredAcks,
                    "acks must be -1, 0 or 1",
                ))
            } else if req.transactional_id.is_some() {
                Err(KafkaError::new(
                    Code::TransactionalIdAuthorizationFailed,
                    "transactions are not supported yet",
                ))
            } else {
                stage_partition(broker, &name, p.index, p.records).await
            };
            parts.push((p.index, staged));
        }
        slots.push((name, parts));
    }
    turn.done();
    if acks == 0 {
        // No response; the appends proceed on their own.
        return None;
    }
    let mut resp = ProduceResponse::default();
    for (name, parts) in slots {
        let mut tr = TopicProduceResponse::default();
        tr.name = kafka_protocol::messages::TopicName(str_bytes(name));
        for (index, staged) in parts {
            let outcome = match staged {
                Ok((ticket, log_append_time)) => {
                    match tokio::time::timeout_at(deadline, ticket.wait()).await {
                        Ok(Ok(ok)) => Ok(Outcome {
                            base_offset: ok.base_offset,
                            log_append_time,
                            log_start_offset: ok.log_start_offset,
                        }),
                        Ok(Err(e)) => Err(KafkaError::from(e)),
                        Err(_) => Err(KafkaError::new(
                            Code::RequestTimedOut,
                            "not durable within the request timeout",
                        )),
                    }
                }
                Err(e) => Err(e),
            };
            let mut pr = PartitionProduceResponse::default();
            pr.index = index;
            match outcome {
                Ok(o) => {
                    pr.base_offset = o.base_offset;
                    pr.log_append_time_ms = o.log_append_time;
                    pr.log_start_offset = o.log_start_offset;
                }
                Err(e) => {
                    pr.error_code = e.code();
                    pr.record_errors = e
                        .record_errors
                        .iter()
                        .map(|&i| {
                            let mut r = BatchIndexAndErrorMessage::default();
                            r.batch_index = i;
                            r.batch_index_error_message = Some(str_bytes(e.message.clone()));
                            r
                        })
                        .collect();
                    pr.error_message = Some(str_bytes(e.message));
                    pr.base_offset = -1;
                    pr.log_append_time_ms = -1;
                    pr.log_start_offset = -1;
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    Some(resp)
}
