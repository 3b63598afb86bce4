//! Fetch with long polling: waits on the partitions' commits until min_bytes is
//! reached or max_wait_ms passes. Fetch sessions (KIP-227): Floe declines to
//! create sessions (session id 0), which Kafka allows; clients then send full
//! fetch requests, which is what librdkafka does anyway.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::Code;
use crate::read::read_batches;
use floe_flusher::PartitionLog;

const MAX_WAIT: Duration = Duration::from_secs(30);

fn partition_error(index: i32, code: Code) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = index;
    p.error_code = code.code();
    p.high_watermark = -1;
    p.last_stable_offset = -1;
    p.log_start_offset = -1;
    p.preferred_read_replica = BrokerId(-1);
    p.records = Some(Bytes::new());
    p
}

/// One pass over the request. Returns the response and the bytes it carries.
async fn build(
    broker: &Arc<Broker>,
    req: &FetchRequest,
    logs: &[Vec<Option<Arc<PartitionLog>>>],
) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    let mut budget = req.max_bytes.max(0) as usize;
    if budget == 0 {
        budget = usize::MAX;
    }
    let mut total = 0usize;
    let mut errors = false;
    for (t, tlogs) in req.topics.iter().zip(logs) {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = t.topic.clone();
        tr.topic_id = t.topic_id;
        for (p, log) in t.partitions.iter().zip(tlogs) {
            let Some(log) = log else {
                errors = true;
                tr.partitions
                    .push(partition_error(p.partition, Code::UnknownTopicOrPartition));
                continue;
            };
            if !broker.owns(log) {
                errors = true;
                tr.partitions
                    .push(partition_error(p.partition, Code::NotLeaderOrFollower));
                continue;
            }
            let limit = (p.partition_max_bytes.max(0) as usize).min(budget.saturating_sub(total));
            let plan = log.read_plan(p.fetch_offset, limit as u64);
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition;
            pd.high_watermark = plan.high_watermark;
            pd.last_stable_offset = plan.high_watermark;
            pd.log_start_offset = plan.log_start_offset;
            pd.preferred_read_replica = BrokerId(-1);
            pd.aborted_transactions = (req.isolation_level == 1).then(Vec::new);
            if p.fetch_offset < plan.log_start_offset || p.fetch_offset > plan.high_watermark {
                errors = true;
                pd.error_code = Code::OffsetOutOfRange.code();
                pd.records = Some(Bytes::new());
            } else if p.fetch_offset == plan.high_watermark || limit == 0 {
                pd.records = Some(Bytes::new());
            } else {
                match read_batches(broker, &plan.entries, p.fetch_offset, limit, total == 0).await {
                    Ok(Some(b)) => {
                        total += b.len();
                        pd.records = Some(b);
                    }
                    Ok(None) => pd.records = Some(Bytes::new()),
                    Err(e) => {
                        tracing::warn!(partition = %log.id, error = %e, "fetch read failed");
                        errors = true;
                        pd.error_code = Code::KafkaStorageError.code();
                        pd.records = Some(Bytes::new());
                    }
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total, errors)
}

pub async fn handle(broker: &Arc<Broker>, _version: i16, req: FetchRequest) -> FetchResponse {
    if req.session_id != 0 {
        let mut r = FetchResponse::default();
        r.error_code = Code::FetchSessionIdNotFound.code();
        return r;
    }
    let logs: Vec<Vec<Option<Arc<PartitionLog>>>> = req
        .topics
        .iter()
        .map(|t| {
            let entry = broker.topic(t.topic.0.as_str());
            t.partitions
                .iter()
                .map(|p| entry.as_ref().and_then(|e| e.log(p.partition).cloned()))
                .collect()
        })
        .collect();
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let notify = Arc::new(Notify::new());
    loop {
        // Register before reading so a commit between the read and the wait is
        // not missed.
        for log in logs.iter().flatten().flatten() {
            log.register_waiter(&notify);
        }
        let (resp, bytes, errors) = build(broker, &req, &logs).await;
        tracing::trace!(bytes, errors, remaining = ?deadline.saturating_duration_since(Instant::now()), "fetch pass");
        if bytes >= min_bytes || errors || Instant::now() >= deadline {
            broker.metrics.fetched(bytes as u64);
            return resp;
        }
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            let (resp, bytes, _) = build(broker, &req, &logs).await;
            broker.metrics.fetched(bytes as u64);
            return resp;
        }
    }
}
