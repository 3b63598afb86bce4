//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), and the first
//! offset whose record timestamp is at or after a given time, found through the
//! index's per-entry max timestamps and then the records' own timestamps.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::batch::stored_batches;
use crate::broker::Broker;
use crate::error::{Code, KafkaError};
use crate::records::record_timestamps;
use floe_flusher::PartitionLog;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Decompression cap per batch when reading timestamps.
const RECORDS_CAP: usize = 64 * 1024 * 1024;

async fn by_timestamp(
    broker: &Broker,
    log: &PartitionLog,
    ts: i64,
) -> floe_core::Result<(i64, i64)> {
    for e in log.entries_from_timestamp(ts) {
        let bytes = broker.reader.entry_bytes(&e).await?;
        for (start, end, base, _last, max_ts) in stored_batches(&bytes) {
            if max_ts < ts {
                continue;
            }
            let records = match record_timestamps(&bytes[start..end], RECORDS_CAP) {
                Ok(r) => r,
                // Records are the producer's bytes and are not checked at produce
                // time: one bad batch must not break time lookups for everyone.
                // Answer at batch granularity, as Kafka's time index does.
                Err(e) => {
                    tracing::warn!(partition = %log.id, base, error = %e, "unreadable records; answering with the batch start");
                    vec![(base, max_ts)]
                }
            };
            if let Some(&(offset, t)) = records.iter().find(|(_, t)| *t >= ts)
                && offset >= log.log_start_offset()
            {
                return Ok((offset, t));
            }
        }
    }
    Ok((-1, -1))
}

async fn max_timestamp(broker: &Broker, log: &PartitionLog) -> floe_core::Result<(i64, i64)> {
    let Some(e) = log.entry_with_max_timestamp() else {
        return Ok((-1, -1));
    };
    let bytes = broker.reader.entry_bytes(&e).await?;
    for (start, end, base, _last, max_ts) in stored_batches(&bytes) {
        if max_ts != e.max_timestamp {
            continue;
        }
        let records = match record_timestamps(&bytes[start..end], RECORDS_CAP) {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(partition = %log.id, base, error = %err, "unreadable records; answering with the batch start");
                vec![(base, max_ts)]
            }
        };
        if let Some(&(offset, t)) = records.iter().find(|(_, t)| *t == max_ts) {
            return Ok((offset, t));
        }
    }
    Ok((-1, -1))
}

async fn lookup(
    broker: &Broker,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<(i64, i64), KafkaError> {
    let (_, log) = broker.led(topic, partition)?;
    match ts {
        LATEST => return Ok((log.high_watermark(), -1)),
        EARLIEST => return Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP => {}
        t if t >= 0 => {}
        other => {
            return Err(KafkaError::new(
                Code::InvalidRequest,
                format!("unsupported timestamp {other}"),
            ));
        }
    }
    let read = |log: Arc<PartitionLog>| async move {
        if ts == MAX_TIMESTAMP {
            max_timestamp(broker, &log).await
        } else {
            by_timestamp(broker, &log, ts).await
        }
    };
    match read(log.clone()).await {
        // An object compacted and deleted since this index was loaded (as
        // in Fetch): take the stored index, if a swap happened, and look again.
        Err(e) if e.kind() == floe_core::ErrorKind::NotFound => {
            broker.adopt_compaction(&log).await;
            Ok(read(log).await?)
        }
        other => Ok(other?),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        let name = t.name.0.to_string();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            match lookup(broker, &name, p.partition_index, p.timestamp).await {
                Ok((offset, ts)) => {
                    pr.offset = offset;
                    pr.timestamp = ts;
                    // leader_epoch exists from v4; a v1-v3 response carrying it
                    // cannot be encoded.
                    if version >= 4 {
                        pr.leader_epoch = 0;
                    }
                }
                Err(e) => {
                    pr.error_code = e.code();
                    pr.offset = -1;
                    pr.timestamp = -1;
                    pr.leader_epoch = -1;
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
