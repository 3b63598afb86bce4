//! Reading a partition back and checking it against what was acknowledged:
//! every acknowledged offset holds the acknowledged payload, offsets are
//! contiguous from 0, and no drill record appears twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::client::{Client, SharedView, lock, refresh};

/// One record read back: its offset and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub offset: i64,
    pub value: Option<Bytes>,
}

/// What a partition's log says about the acknowledged records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Check {
    /// Acknowledged, but missing at its offset or holding other bytes.
    pub lost: u64,
    /// Extra copies of a drill record (the same record number at two offsets).
    pub duplicates: u64,
    /// Offsets below the high watermark that hold no record.
    pub gaps: u64,
    /// Drill records present but never acknowledged (in doubt when the drill
    /// stopped or gave up: allowed, reported).
    pub unacknowledged: u64,
    /// Examples of what went wrong, for the report.
    pub examples: Vec<String>,
}

const MAX_EXAMPLES: usize = 5;

impl Check {
    fn note(&mut self, what: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(what);
        }
    }
}

/// Checks `log` (as read, in offset order, up to `high_watermark`) against
/// `acked` (offset, record number). `payload(n)` is record n's bytes and
/// `number(bytes)` recognises a record of this drill and partition.
pub fn check(
    acked: &[(i64, u64)],
    log: &[Stored],
    high_watermark: i64,
    payload: impl Fn(u64) -> Vec<u8>,
    number: impl Fn(&[u8]) -> Option<u64>,
) -> Check {
    let mut c = Check::default();
    let mut next = 0i64;
    let mut seen: HashMap<u64, i64> = HashMap::new();
    let mut by_offset: HashMap<i64, &Stored> = HashMap::new();
    for r in log {
        if r.offset > next {
            c.gaps += (r.offset - next) as u64;
            c.note(format!("offsets {next}..{} missing", r.offset - 1));
        } else if r.offset < next {
            c.duplicates += 1;
            c.note(format!("offset {} returned twice", r.offset));
            continue;
        }
        next = r.offset + 1;
        by_offset.insert(r.offset, r);
        if let Some(n) = r.value.as_deref().and_then(&number)
            && let Some(first) = seen.insert(n, r.offset)
        {
            c.duplicates += 1;
            c.note(format!("record n{n} at offsets {first} and {}", r.offset));
        }
    }
    if high_watermark > next {
        c.gaps += (high_watermark - next) as u64;
        c.note(format!(
            "offsets {next}..{} below the high watermark missing",
            high_watermark - 1
        ));
    }
    let mut acked_numbers = std::collections::HashSet::new();
    for &(offset, n) in acked {
        acked_numbers.insert(n);
        let ok = by_offset
            .get(&offset)
            .and_then(|r| r.value.as_deref())
            .is_some_and(|v| v == payload(n).as_slice());
        if !ok {
            c.lost += 1;
            let found = match by_offset.get(&offset) {
                None => "nothing".to_string(),
                Some(r) => match r.value.as_deref() {
                    None => "a null value".to_string(),
                    Some(v) => format!("{:?}", String::from_utf8_lossy(v).trim_end()),
                },
            };
            c.note(format!(
                "record n{n} acknowledged at offset {offset}, found {found}"
            ));
        }
    }
    c.unacknowledged = seen.keys().filter(|n| !acked_numbers.contains(n)).count() as u64;
    c
}

/// The whole of `partition` from offset 0 to its high watermark, read from
/// its current leader (refreshing metadata on errors) within `timeout`.
pub async fn read_partition(
    client: &mut Client,
    view: &SharedView,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(Vec<Stored>, i64), String> {
    const CALL_TIMEOUT: Duration = Duration::from_secs(5);
    let deadline = Instant::now() + timeout;
    let mut out: Vec<Stored> = Vec::new();
    let mut offset = 0i64;
    let mut last_error = String::new();
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "read back stopped at offset {offset} after {timeout:?}: {last_error}"
            ));
        }
        let leader = lock(view).leader(partition);
        let Some((node, addr)) = leader else {
            last_error = "no leader known".into();
            let _ = refresh(client, view, topic, CALL_TIMEOUT).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let req = fetch_request(topic, partition, offset);
        let resp = match client.call(&addr, 12, &req, CALL_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                let _ = refresh(client, view, topic, CALL_TIMEOUT).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(p) = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
        else {
            last_error = format!("node {node} answered without partition {partition}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Some(e) = p.error_code.err() {
            last_error = format!("node {node}: {e:?}");
            let _ = refresh(client, view, topic, CALL_TIMEOUT).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let high_watermark = p.high_watermark;
        let mut progressed = false;
        if let Some(records) = &p.records {
            for r in decode_records(records.clone())? {
                if r.offset >= offset {
                    offset = r.offset + 1;
                    out.push(r);
                    progressed = true;
                }
            }
        }
        if offset >= high_watermark {
            return Ok((out, high_watermark));
        }
        if !progressed {
            last_error = format!(
                "node {node} returned no records at offset {offset} below its high watermark {high_watermark}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn fetch_request(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.current_leader_epoch = -1;
    p.fetch_offset = offset;
    p.log_start_offset = -1;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions.push(p);
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 0;
    req.max_bytes = 4 << 20;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics.push(t);
    req
}

/// Decodes the complete batches of a fetch response's records; a partial
/// batch at the end (cut by the size limit) is left for the next fetch.
pub fn decode_records(mut buf: Bytes) -> Result<Vec<Stored>, String> {
    // baseOffset (8) and batchLength (4) precede each batch's counted bytes.
    const LOG_OVERHEAD: usize = 12;
    let mut out = Vec::new();
    while buf.remaining() >= LOG_OVERHEAD {
        let length = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if length < 0 {
            return Err(format!("batch with negative length {length}"));
        }
        let total = LOG_OVERHEAD + length as usize;
        if buf.remaining() < total {
            break;
        }
        let mut batch = buf.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("undecodable batch: {e}"))?;
        out.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control)
                .map(|r| Stored {
                    offset: r.offset,
                    value: r.value,
                }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u64) -> Vec<u8> {
        format!("r{n}").into_bytes()
    }

    fn number(v: &[u8]) -> Option<u64> {
        std::str::from_utf8(v).ok()?.strip_prefix('r')?.parse().ok()
    }

    fn log(values: &[(i64, u64)]) -> Vec<Stored> {
        values
            .iter()
            .map(|&(offset, n)| Stored {
                offset,
                value: Some(Bytes::from(payload(n))),
            })
            .collect()
    }

    #[test]
    fn a_clean_log_passes() {
        let acked = [(0, 0), (1, 1), (2, 2)];
        let c = check(&acked, &log(&acked), 3, payload, number);
        assert_eq!(c, Check::default());
    }

    #[test]
    fn in_doubt_records_are_not_failures() {
        let c = check(&[(0, 0)], &log(&[(0, 0), (1, 1)]), 2, payload, number);
        assert_eq!(
            (c.lost, c.duplicates, c.gaps, c.unacknowledged),
            (0, 0, 0, 1)
        );
    }

    #[test]
    fn loss_duplicates_and_gaps_are_counted() {
        // n1 acknowledged at 1 but stored at 3 (after a duplicate of n0 and a hole).
        let acked = [(0, 0), (1, 1)];
        let c = check(&acked, &log(&[(0, 0), (1, 0), (3, 1)]), 5, payload, number);
        assert_eq!(c.lost, 1);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.gaps, 2, "offset 2 and offset 4 below the high watermark");
        assert!(!c.examples.is_empty());
    }

    #[test]
    fn truncated_trailing_batch_is_left_for_later() {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let record = |offset: i64| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &[record(0)], &options).expect("encode");
        let first = buf.len();
        RecordBatchEncoder::encode(&mut buf, &[record(1)], &options).expect("encode");
        let all = buf.freeze();
        assert_eq!(decode_records(all.clone()).expect("decode").len(), 2);
        let cut = all.slice(..first + 10);
        let got = decode_records(cut).expect("decode");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset, 0);
    }
}
