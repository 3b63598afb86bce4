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
use floe_core::types::PartitionId;
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

/// Where one requested partition is read from.
enum Source {
    Missing,
    /// Led by another gateway, and not read here for the consumer's zone.
    NotLeader,
    /// Led here.
    Leader(Arc<PartitionLog>),
    /// Led here; a gateway in the consumer's zone (this node id) serves it.
    Redirect(Arc<PartitionLog>, i32),
    /// Led in another zone; read here from a copy of its index.
    Replica(PartitionId),
    /// The copy could not be brought up to date.
    ReplicaUnavailable,
}

/// Decides each partition's source: led here (maybe redirected to a reader in
/// the consumer's zone), a zone-local copy, or not served here.
fn sources(broker: &Broker, version: i16, req: &FetchRequest) -> Vec<Vec<Source>> {
    let rack = (version >= 11 && !req.rack_id.is_empty()).then(|| req.rack_id.as_str());
    let my_zone = broker.cluster.zone();
    req.topics
        .iter()
        .map(|t| {
            let entry = broker.topics.get(t.topic.0.as_str());
            t.partitions
                .iter()
                .map(|p| {
                    let Some(log) = entry.as_ref().and_then(|e| e.log(p.partition).cloned()) else {
                        return Source::Missing;
                    };
                    let led_here = broker.leases.leads(&log);
                    match rack {
                        Some(zone) if led_here && my_zone != Some(zone) => {
                            match broker.cluster.zone_reader(zone, &log.id) {
                                Some(m) => Source::Redirect(log, m.info.node_id),
                                None => Source::Leader(log),
                            }
                        }
                        _ if led_here => Source::Leader(log),
                        Some(zone) if my_zone == Some(zone) => Source::Replica(log.id),
                        _ => Source::NotLeader,
                    }
                })
                .collect()
        })
        .collect()
}

/// The logs to read: the partition's own, or an up-to-date zone-local copy.
async fn resolve(
    broker: &Broker,
    sources: &mut [Vec<Source>],
) -> Vec<Vec<Option<Arc<PartitionLog>>>> {
    let mut out = Vec::with_capacity(sources.len());
    for t in sources.iter_mut() {
        let mut logs = Vec::with_capacity(t.len());
        for s in t.iter_mut() {
            logs.push(match s {
                Source::Leader(l) | Source::Redirect(l, _) => Some(l.clone()),
                Source::Replica(p) => match broker.reader.replica(*p).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(partition = %p, error = %e, "zone-local copy unavailable");
                        *s = Source::ReplicaUnavailable;
                        None
                    }
                },
                _ => None,
            });
        }
        out.push(logs);
    }
    out
}

/// One pass over the request. Returns the response, the bytes it carries and
/// whether it must be answered now (errors, redirects).
async fn build(
    broker: &Arc<Broker>,
    req: &FetchRequest,
    sources: &[Vec<Source>],
    logs: &[Vec<Option<Arc<PartitionLog>>>],
) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    let mut budget = req.max_bytes.max(0) as usize;
    if budget == 0 {
        budget = usize::MAX;
    }
    let mut total = 0usize;
    let mut now = false;
    for ((t, tsources), tlogs) in req.topics.iter().zip(sources).zip(logs) {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = t.topic.clone();
        tr.topic_id = t.topic_id;
        for ((p, source), log) in t.partitions.iter().zip(tsources).zip(tlogs) {
            let code = match source {
                Source::Missing => Some(Code::UnknownTopicOrPartition),
                Source::NotLeader => Some(Code::NotLeaderOrFollower),
                Source::ReplicaUnavailable => Some(Code::KafkaStorageError),
                _ => None,
            };
            let (Some(log), None) = (log, code) else {
                now = true;
                tr.partitions.push(partition_error(
                    p.partition,
                    code.unwrap_or(Code::KafkaStorageError),
                ));
                continue;
            };
            let replica = matches!(source, Source::Replica(_));
            let limit = (p.partition_max_bytes.max(0) as usize).min(budget.saturating_sub(total));
            let plan = log.read_plan(p.fetch_offset, limit as u64);
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition;
            pd.high_watermark = plan.high_watermark;
            pd.last_stable_offset = plan.high_watermark;
            pd.log_start_offset = plan.log_start_offset;
            pd.preferred_read_replica = BrokerId(-1);
            pd.aborted_transactions = (req.isolation_level == 1).then(Vec::new);
            if let Source::Redirect(_, node) = source {
                // KIP-392: no data, and where to fetch it instead.
                now = true;
                pd.preferred_read_replica = BrokerId(*node);
                pd.records = Some(Bytes::new());
            } else if p.fetch_offset < plan.log_start_offset
                || (p.fetch_offset > plan.high_watermark && !replica)
            {
                now = true;
                pd.error_code = Code::OffsetOutOfRange.code();
                pd.records = Some(Bytes::new());
            } else if p.fetch_offset >= plan.high_watermark || limit == 0 {
                // A copy behind the consumer waits for its next refresh.
                pd.records = Some(Bytes::new());
            } else {
                let mut read =
                    read_from(broker, log, plan.entries, p.fetch_offset, limit, total == 0).await;
                if matches!(&read, Err(e) if e.kind() == floe_core::ErrorKind::NotFound) {
                    // An object compacted and deleted since this index was
                    // loaded: take the stored index and read again.
                    if replica {
                        if let Err(e) = broker.reader.reload_replica(log.id).await {
                            tracing::warn!(partition = %log.id, error = %e, "copy not reloaded");
                        }
                    } else {
                        // Only if a swap happened since: a version read.
                        broker.adopt_compaction(log).await;
                    }
                    let plan = log.read_plan(p.fetch_offset, limit as u64);
                    pd.high_watermark = plan.high_watermark;
                    pd.last_stable_offset = plan.high_watermark;
                    pd.log_start_offset = plan.log_start_offset;
                    read = read_from(broker, log, plan.entries, p.fetch_offset, limit, total == 0)
                        .await;
                }
                match read {
                    Ok(Some(b)) => {
                        total += b.len();
                        pd.records = Some(b);
                    }
                    Ok(None) => pd.records = Some(Bytes::new()),
                    Err(e) => {
                        tracing::warn!(partition = %log.id, error = %e, "fetch read failed");
                        now = true;
                        pd.error_code = Code::KafkaStorageError.code();
                        pd.records = Some(Bytes::new());
                    }
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total, now)
}

/// Reads from `offset` along `entries` (the log's read plan there). Key
/// compaction leaves entries whose records from `offset` on are all gone: the
/// read then goes on with the entries after them, as Kafka returns the next
/// batch after a compacted gap, so a consumer inside a gap moves past it
/// instead of fetching nothing for ever.
async fn read_from(
    broker: &Arc<Broker>,
    log: &PartitionLog,
    mut entries: Vec<floe_core::types::IndexEntry>,
    mut offset: i64,
    limit: usize,
    must_return_one: bool,
) -> floe_core::Result<Option<Bytes>> {
    loop {
        let read = broker
            .reader
            .read_batches(&entries, offset, limit, must_return_one)
            .await?;
        let end = entries.last().map(|e| e.last_offset.saturating_add(1));
        match (read, end) {
            (Some(b), _) => return Ok(Some(b)),
            (None, Some(end)) if end > offset && end < log.high_watermark() => {
                offset = end;
                entries = log.read_plan(offset, limit as u64).entries;
            }
            _ => return Ok(None),
        }
    }
}

pub async fn handle(broker: &Arc<Broker>, version: i16, req: FetchRequest) -> FetchResponse {
    if req.session_id != 0 {
        let mut r = FetchResponse::default();
        r.error_code = Code::FetchSessionIdNotFound.code();
        return r;
    }
    let mut sources = sources(broker, version, &req);
    let copies = sources
        .iter()
        .flatten()
        .any(|s| matches!(s, Source::Replica(_)));
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let notify = Arc::new(Notify::new());
    loop {
        let logs = resolve(broker, &mut sources).await;
        // Register before reading so a commit between the read and the wait is
        // not missed.
        for log in logs.iter().flatten().flatten() {
            log.register_waiter(&notify);
        }
        let (resp, bytes, now) = build(broker, &req, &sources, &logs).await;
        tracing::trace!(bytes, now, remaining = ?deadline.saturating_duration_since(Instant::now()), "fetch pass");
        if bytes >= min_bytes || now || Instant::now() >= deadline {
            broker.metrics.fetched(bytes as u64);
            return resp;
        }
        // Copies change only when refreshed: wake for the next refresh.
        let until = if copies {
            deadline.min(Instant::now() + broker.reader.follower_refresh())
        } else {
            deadline
        };
        // A draining gateway answers parked fetches at once (with what they
        // have), so shutdown does not wait for their max_wait_ms.
        tokio::select! {
            _ = tokio::time::timeout_at(until, notify.notified()) => {}
            _ = broker.stopping() => {
                broker.metrics.fetched(bytes as u64);
                return resp;
            }
        }
    }
}
