//! DeleteRecords: moves partitions' log start offsets forward (Kafka's
//! `AdminClient.deleteRecords`, `kafka-delete-records.sh`). Offset -1 means
//! the high watermark. The answer comes once a checkpoint has stored the new
//! log starts, so a takeover or restart keeps them; from the moment the log
//! start moves, fetches below it get OFFSET_OUT_OF_RANGE and ListOffsets
//! earliest answers it. The objects holding deleted records are reclaimed
//! later, by the compactor, once nothing refers to them.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::error::{Code, KafkaError};

/// Offset -1 in a request: delete everything below the high watermark.
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(
    broker: &Arc<Broker>,
    _version: i16,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    // (topic, partition) indexes of the answers whose log start moved: they
    // wait for the checkpoint that stores it.
    let mut moved = Vec::new();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name;
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            match delete_below(broker, &name, p.partition_index, p.offset) {
                Ok((start, did_move)) => {
                    pr.low_watermark = start;
                    if did_move {
                        moved.push((ti, pi));
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = p.partition_index, error = %e, "delete records refused");
                    pr.error_code = e.code();
                    pr.low_watermark = -1;
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if !moved.is_empty()
        && let Err(e) = broker.checkpoint().await
    {
        // The log starts moved in memory and later checkpoints retry storing
        // them; the client is told this answer is not yet durable.
        tracing::warn!(error = %e, "delete records: checkpoint failed");
        let code = KafkaError::from(e).code();
        for (ti, pi) in moved {
            let pr = &mut resp.topics[ti].partitions[pi];
            pr.error_code = code;
            pr.low_watermark = -1;
        }
    }
    resp
}

/// Moves one partition's log start to `offset`; returns the log start now and
/// whether it moved.
fn delete_below(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(i64, bool), KafkaError> {
    let (_, log) = broker.led(topic, partition)?;
    let high_watermark = log.high_watermark();
    let target = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if !(0..=high_watermark).contains(&target) {
        return Err(KafkaError::new(
            Code::OffsetOutOfRange,
            format!(
                "cannot delete below offset {offset}: {topic}-{partition} has offsets up to {high_watermark}"
            ),
        ));
    }
    Ok(log.advance_log_start(target))
}
