//! Inside record batches: the records of a Kafka RecordBatch v2. The gateway
//! reads their timestamps (ListOffsets by time) and keys (compacted topics
//! refuse null keys); the compactor's key compaction (`cleanup.policy=compact`)
//! reads keys and values and rebuilds a batch without the records it drops.
//! Decompression has a hard size cap (a compressed bomb yields an error, not
//! an allocation); compression writes the batch's own codec back.

use std::io::{Read, Write};

/// Bytes before a batch's records: baseOffset:i64 batchLength:i32
/// partitionLeaderEpoch:i32 magic:i8 crc:u32 attributes:i16
/// lastOffsetDelta:i32 baseTimestamp:i64 maxTimestamp:i64 producerId:i64
/// producerEpoch:i16 baseSequence:i32 recordCount:i32.
pub const HEADER_LEN: usize = 61;
/// baseOffset and batchLength: what `batchLength` does not count.
const LOG_OVERHEAD: usize = 12;
/// Where the CRC-32C sits; it covers everything after it.
const CRC_AT: usize = 17;
/// Where `recordCount` sits.
const COUNT_AT: usize = 57;

/// Kafka's xerial-framed snappy (Java producers) starts with this magic.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("decompressed records exceed {0} bytes")]
    TooLarge(usize),
    #[error("cannot decompress records: {0}")]
    Codec(String),
    #[error("malformed record")]
    Malformed,
}

fn read_capped(mut r: impl Read, cap: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    r.by_ref()
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Codec(e.to_string()))?;
    if out.len() > cap {
        return Err(RecordsError::TooLarge(cap));
    }
    Ok(out)
}

fn snappy_raw(data: &[u8], cap: usize) -> Result<Vec<u8>, RecordsError> {
    let len = snap::raw::decompress_len(data).map_err(|e| RecordsError::Codec(e.to_string()))?;
    if len > cap {
        return Err(RecordsError::TooLarge(cap));
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| RecordsError::Codec(e.to_string()))
}

fn snappy(data: &[u8], cap: usize) -> Result<Vec<u8>, RecordsError> {
    if !data.starts_with(&XERIAL_MAGIC) {
        return snappy_raw(data, cap);
    }
    // magic(8) version(4) compatible(4), then blocks of [len u32][raw snappy].
    let mut pos = 16;
    let mut out = Vec::new();
    while pos < data.len() {
        let len_bytes = data.get(pos..pos + 4).ok_or(RecordsError::Malformed)?;
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        pos += 4;
        let block = data.get(pos..pos + len).ok_or(RecordsError::Malformed)?;
        pos += len;
        let chunk = snappy_raw(block, cap - out.len())?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The compression codec of `batch` (attributes bits 0-2: 0 none, 1 gzip,
/// 2 snappy, 3 lz4, 4 zstd).
fn codec(batch: &[u8]) -> i16 {
    i16::from_be_bytes([batch[21], batch[22]]) & 0x07
}

/// The records section of `batch`, decompressed (at most `cap` bytes).
pub fn records_section(batch: &[u8], cap: usize) -> Result<Vec<u8>, RecordsError> {
    let data = batch.get(HEADER_LEN..).ok_or(RecordsError::Malformed)?;
    let codec = codec(batch);
    match codec {
        0 => Ok(data.to_vec()),
        1 => read_capped(flate2::read::GzDecoder::new(data), cap),
        2 => snappy(data, cap),
        3 => read_capped(lz4_flex::frame::FrameDecoder::new(data), cap),
        4 => {
            let d = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| RecordsError::Codec(e.to_string()))?;
            read_capped(d, cap)
        }
        c => Err(RecordsError::Codec(format!("unknown codec {c}"))),
    }
}

fn varint(b: &[u8], pos: &mut usize) -> Result<i64, RecordsError> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos).ok_or(RecordsError::Malformed)?;
        *pos += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(RecordsError::Malformed);
        }
    }
    Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// The smallest record: its length, then attributes, timestamp delta, offset
/// delta, key length, value length and header count of one byte each.
const MIN_RECORD_BYTES: usize = 7;

/// What Floe reads of one record: its deltas and whether its key is null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    pub null_key: bool,
}

/// The head of every record in a decompressed records section holding `count`
/// records.
pub fn record_heads(section: &[u8], count: i32) -> Result<Vec<RecordHead>, RecordsError> {
    Ok(records(section, count)?
        .into_iter()
        .map(|r| RecordHead {
            offset_delta: r.offset_delta,
            timestamp_delta: r.timestamp_delta,
            null_key: r.key.is_none(),
        })
        .collect())
}

/// `batch`'s records section decompressed (at most `cap` bytes), and its
/// record count.
pub fn decompressed(batch: &[u8], cap: usize) -> Result<(Vec<u8>, i32), RecordsError> {
    if batch.len() < HEADER_LEN {
        return Err(RecordsError::Malformed);
    }
    let count = i32::from_be_bytes([
        batch[COUNT_AT],
        batch[COUNT_AT + 1],
        batch[COUNT_AT + 2],
        batch[COUNT_AT + 3],
    ]);
    Ok((records_section(batch, cap)?, count))
}

/// One record of a decompressed records section, as key compaction reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The whole record as stored, its length prefix included: kept records
    /// are copied back byte for byte.
    pub raw: &'a [u8],
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    /// `None`: a null key.
    pub key: Option<&'a [u8]>,
    /// `None`: a null value, a tombstone on a compacted topic.
    pub value: Option<&'a [u8]>,
}

/// Every record of a decompressed records section holding `count` records.
pub fn records(section: &[u8], count: i32) -> Result<Vec<Record<'_>>, RecordsError> {
    // The count is the producer's claim: bound it by what the section can hold
    // before building one entry per record (from 7-byte minimal records).
    let count = usize::try_from(count).map_err(|_| RecordsError::Malformed)?;
    if count > section.len() / MIN_RECORD_BYTES {
        return Err(RecordsError::Malformed);
    }
    let mut out = Vec::with_capacity(count);
    let mut pos = 0usize;
    for _ in 0..count {
        let begin = pos;
        let len = varint(section, &mut pos)?;
        let end = usize::try_from(len)
            .ok()
            .filter(|&l| l >= MIN_RECORD_BYTES - 1)
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= section.len())
            .ok_or(RecordsError::Malformed)?;
        pos += 1; // attributes
        let timestamp_delta = varint(section, &mut pos)?;
        let offset_delta = varint(section, &mut pos)?;
        let key = bytes_field(section, &mut pos, end)?;
        let value = bytes_field(section, &mut pos, end)?;
        out.push(Record {
            raw: &section[begin..end],
            offset_delta,
            timestamp_delta,
            key,
            value,
        });
        pos = end;
    }
    Ok(out)
}

/// A varint-length byte field ending at or before `end` (`None`: null).
fn bytes_field<'a>(
    b: &'a [u8],
    pos: &mut usize,
    end: usize,
) -> Result<Option<&'a [u8]>, RecordsError> {
    let len = varint(b, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let stop = usize::try_from(len)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .filter(|&e| e <= end)
        .ok_or(RecordsError::Malformed)?;
    let field = &b[*pos..stop];
    *pos = stop;
    Ok(Some(field))
}

/// `data` compressed with `codec` (as `records_section` reads it back;
/// snappy in the xerial framing Java producers write when `xerial`).
pub fn compress(codec: i16, xerial: bool, data: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let io = |e: std::io::Error| RecordsError::Codec(e.to_string());
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).map_err(io)?;
            e.finish().map_err(io)
        }
        2 => {
            let raw = snap::raw::Encoder::new()
                .compress_vec(data)
                .map_err(|e| RecordsError::Codec(e.to_string()))?;
            if !xerial {
                return Ok(raw);
            }
            // magic, version 1, compatible version 1, then one block.
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let len =
                u32::try_from(raw.len()).map_err(|_| RecordsError::TooLarge(u32::MAX as usize))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&raw);
            Ok(out)
        }
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).map_err(io)?;
            e.finish().map_err(|e| RecordsError::Codec(e.to_string()))
        }
        4 => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        c => Err(RecordsError::Codec(format!("unknown codec {c}"))),
    }
}

/// `batch` holding only the records `keep` selects (in order, by index),
/// compressed with its own codec, its header otherwise unchanged: base
/// offset, last offset delta, timestamps and producer fields stay, so the
/// offsets and sequence numbers of what is kept do not move, as Kafka's log
/// cleaner rebuilds batches. `None` when nothing is kept. At most `cap`
/// bytes are decompressed.
pub fn retain_records(
    batch: &[u8],
    cap: usize,
    mut keep: impl FnMut(usize, &Record<'_>) -> bool,
) -> Result<Option<Vec<u8>>, RecordsError> {
    let (section, count) = decompressed(batch, cap)?;
    let all = records(&section, count)?;
    let mut body = Vec::with_capacity(section.len());
    let mut kept = 0i32;
    for (i, r) in all.iter().enumerate() {
        if keep(i, r) {
            body.extend_from_slice(r.raw);
            kept += 1;
        }
    }
    if kept == 0 {
        return Ok(None);
    }
    if kept == count {
        return Ok(Some(batch.to_vec()));
    }
    let xerial = batch[HEADER_LEN..].starts_with(&XERIAL_MAGIC);
    let data = compress(codec(batch), xerial, &body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&data);
    let len = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| RecordsError::TooLarge(i32::MAX as usize))?;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    out[COUNT_AT..COUNT_AT + 4].copy_from_slice(&kept.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_AT + 4..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

/// Each batch of `data` (Kafka RecordBatch v2 bytes, back to back, as a
/// region stores them): its bytes. Stops at the first that does not fit.
pub fn batches(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = data.get(at..)?;
        let len = i32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
        let total = usize::try_from(len).ok()?.checked_add(LOG_OVERHEAD)?;
        let batch = rest.get(..total).filter(|b| b.len() >= HEADER_LEN)?;
        at += total;
        Some(batch)
    })
}

fn zigzag(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A record as `encode_batch` takes it: key and value, `None` for null.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A plain (not idempotent) batch of `records` (key, value; `None` is null)
/// at base offset 0: record `i` has offset delta `i` and timestamp
/// `base_timestamp + i`, no headers; compressed with `codec` (snappy in the
/// xerial framing when `xerial`). What tools and tests write.
pub fn encode_batch(
    records: &[KeyValue],
    base_timestamp: i64,
    codec: i16,
    xerial: bool,
) -> Result<Vec<u8>, RecordsError> {
    let mut section = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut body = vec![0u8];
        zigzag(i as i64, &mut body);
        zigzag(i as i64, &mut body);
        for f in [k, v] {
            match f {
                None => zigzag(-1, &mut body),
                Some(b) => {
                    zigzag(b.len() as i64, &mut body);
                    body.extend_from_slice(b);
                }
            }
        }
        zigzag(0, &mut body);
        zigzag(body.len() as i64, &mut section);
        section.extend_from_slice(&body);
    }
    let n = i32::try_from(records.len()).map_err(|_| RecordsError::Malformed)?;
    let mut b = Vec::with_capacity(HEADER_LEN + section.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // length, set below
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
    b.extend_from_slice(&codec.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&(base_timestamp + i64::from(n) - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&compress(codec, xerial, &section)?);
    let len = i32::try_from(b.len() - LOG_OVERHEAD).map_err(|_| RecordsError::Malformed)?;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_AT + 4..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// (offset delta, timestamp delta) of every record in a decompressed records
/// section holding `count` records.
pub fn record_deltas(section: &[u8], count: i32) -> Result<Vec<(i64, i64)>, RecordsError> {
    Ok(record_heads(section, count)?
        .into_iter()
        .map(|h| (h.offset_delta, h.timestamp_delta))
        .collect())
}

/// Indexes (within the batch) of records whose key is null: a compacted topic
/// refuses them (Kafka's INVALID_RECORD with per-record errors, KIP-467).
pub fn null_key_records(batch: &[u8], cap: usize) -> Result<Vec<i32>, RecordsError> {
    let (section, count) = decompressed(batch, cap)?;
    Ok(record_heads(&section, count)?
        .iter()
        .enumerate()
        .filter(|(_, h)| h.null_key)
        .map(|(i, _)| i as i32)
        .collect())
}

/// Offset and timestamp of every record of a stored batch (base offset already
/// assigned). For LogAppendTime batches every record has the batch max timestamp.
pub fn record_timestamps(batch: &[u8], cap: usize) -> Result<Vec<(i64, i64)>, RecordsError> {
    if batch.len() < HEADER_LEN {
        return Err(RecordsError::Malformed);
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&batch[0..8]);
    let base_offset = i64::from_be_bytes(a);
    a.copy_from_slice(&batch[27..35]);
    let base_ts = i64::from_be_bytes(a);
    a.copy_from_slice(&batch[35..43]);
    let max_ts = i64::from_be_bytes(a);
    let log_append = i16::from_be_bytes([batch[21], batch[22]]) & 0x08 != 0;
    let (section, count) = decompressed(batch, cap)?;
    record_deltas(&section, count)?
        .into_iter()
        .map(|(od, td)| {
            // Producer-written deltas: an offset that overflows is malformed; a
            // timestamp wraps, as Kafka's Java arithmetic does.
            let offset = base_offset.checked_add(od).ok_or(RecordsError::Malformed)?;
            let ts = if log_append {
                max_ts
            } else {
                base_ts.wrapping_add(td)
            };
            Ok((offset, ts))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `n` records with null keys and a 1-byte value, at base
    /// offset 0 and timestamp `ts`.
    fn make_batch(n: i32, ts: i64) -> Vec<u8> {
        let records: Vec<KeyValue> = (0..n).map(|_| (None, Some(b"x".to_vec()))).collect();
        encode_batch(&records, ts, 0, false).unwrap()
    }

    #[test]
    fn reads_timestamps_of_a_valid_batch() {
        let mut b = make_batch(3, 1000);
        b[0..8].copy_from_slice(&40i64.to_be_bytes());
        let ts = record_timestamps(&b, 1 << 20).unwrap();
        assert_eq!(ts, vec![(40, 1000), (41, 1001), (42, 1002)]);
    }

    /// Fuzz regression (record_batch): baseOffset + offsetDelta overflowed i64
    /// and panicked; producer-written timestamp deltas wrap as in Kafka.
    #[test]
    fn offset_overflow_is_malformed_and_timestamps_wrap() {
        let mut b = make_batch(2, 1000);
        b[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        assert!(matches!(
            record_timestamps(&b, 1 << 20),
            Err(RecordsError::Malformed)
        ));
        // One record with tsDelta i64::MAX (a 10-byte varint), base timestamp 1000.
        let mut rec = vec![0u8];
        let mut z = (i64::MAX as u64) << 1;
        while z >= 0x80 {
            rec.push((z as u8) | 0x80);
            z >>= 7;
        }
        rec.push(z as u8);
        rec.extend_from_slice(&[0, 0x01, 0x01, 0]); // offsetDelta 0, null key and value, no headers
        let mut one = make_batch(1, 1000)[..HEADER_LEN].to_vec();
        one.push((rec.len() as u8) << 1);
        one.extend_from_slice(&rec);
        assert_eq!(
            record_timestamps(&one, 1 << 20).unwrap(),
            vec![(0, 1000i64.wrapping_add(i64::MAX))]
        );
    }

    /// A count the section cannot hold is refused before one pair per claimed
    /// record is allocated (a 32 MiB zero section used to yield 32M pairs).
    #[test]
    fn record_count_is_bounded_by_the_section() {
        let zeros = vec![0u8; 1 << 16];
        assert!(matches!(
            record_deltas(&zeros, 1 << 16),
            Err(RecordsError::Malformed)
        ));
        // Within the bound, records of length 0 are still malformed.
        assert!(matches!(
            record_deltas(&zeros, 16),
            Err(RecordsError::Malformed)
        ));
        assert!(matches!(
            record_deltas(&zeros, -1),
            Err(RecordsError::Malformed)
        ));
        assert_eq!(record_deltas(&[], 0).unwrap(), vec![]);
    }

    /// Key compaction's rebuild, for every codec: the kept records come back
    /// byte for byte at their offsets, the header keeps the batch's offsets
    /// and producer fields, and the CRC is right.
    #[test]
    fn retained_records_rebuild_a_valid_batch_in_its_codec() {
        let recs: Vec<KeyValue> = (0..6)
            .map(|i| {
                let v = (i != 3).then(|| format!("value-{i}").repeat(20).into_bytes());
                (Some(format!("k{}", i % 2).into_bytes()), v)
            })
            .collect();
        for (codec, xerial) in [
            (0, false),
            (1, false),
            (2, false),
            (2, true),
            (3, false),
            (4, false),
        ] {
            let mut b = encode_batch(&recs, 5_000, codec, xerial).unwrap();
            b[0..8].copy_from_slice(&40i64.to_be_bytes());
            let fixed = b.clone();
            let out = retain_records(&b, 1 << 20, |i, r| {
                assert_eq!(r.offset_delta, i as i64);
                assert_eq!(r.value.is_none(), i == 3);
                i == 1 || i == 3
            })
            .unwrap()
            .unwrap();
            assert_eq!(b, fixed, "input untouched");
            crate::segment::check_batches(&out).unwrap();
            assert_eq!(out[..8], b[..8], "base offset, codec {codec}");
            assert_eq!(out[12..17], b[12..17], "leader epoch and magic");
            assert_eq!(
                out[21..57],
                b[21..57],
                "attributes, offsets, timestamps, producer fields"
            );
            assert_eq!(&out[57..61], &2i32.to_be_bytes());
            if xerial {
                assert!(out[HEADER_LEN..].starts_with(&XERIAL_MAGIC));
            }
            let section = records_section(&out, 1 << 20).unwrap();
            let kept = records(&section, 2).unwrap();
            assert_eq!(
                kept.iter().map(|r| r.offset_delta).collect::<Vec<_>>(),
                vec![1, 3]
            );
            assert_eq!(kept[0].key, Some(&b"k1"[..]));
            assert!(kept[1].value.is_none());
            assert_eq!(kept[0].value, recs[1].1.as_deref());
            assert_eq!(
                record_timestamps(&out, 1 << 20).unwrap(),
                vec![(41, 5_001), (43, 5_003)]
            );
            // Keeping all is the batch itself; keeping none is nothing.
            assert_eq!(
                retain_records(&b, 1 << 20, |_, _| true).unwrap().unwrap(),
                b
            );
            assert_eq!(retain_records(&b, 1 << 20, |_, _| false).unwrap(), None);
        }
    }

    #[test]
    fn batches_are_walked_back_to_back() {
        let a = make_batch(2, 1);
        let b = make_batch(3, 2);
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(batches(&both).collect::<Vec<_>>(), vec![&a[..], &b[..]]);
        assert_eq!(
            batches(&both[..both.len() - 1]).count(),
            1,
            "a cut batch is not one"
        );
    }
}
