//! Reading record timestamps inside stored batches, for ListOffsets by time. This
//! is the only place Floe looks inside a batch: it decompresses with a hard size
//! cap (a compressed bomb yields an error, not an allocation) and reads only each
//! record's timestamp and offset deltas.

use std::io::Read;

use crate::batch::HEADER_LEN;

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

/// The records section of `batch`, decompressed (at most `cap` bytes).
pub fn records_section(batch: &[u8], cap: usize) -> Result<Vec<u8>, RecordsError> {
    let data = batch.get(HEADER_LEN..).ok_or(RecordsError::Malformed)?;
    let codec = i16::from_be_bytes([batch[21], batch[22]]) & 0x07;
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
    // The count is the producer's claim: bound it by what the section can hold
    // before building one entry per record (from 7-byte minimal records).
    let count = usize::try_from(count).map_err(|_| RecordsError::Malformed)?;
    if count > section.len() / MIN_RECORD_BYTES {
        return Err(RecordsError::Malformed);
    }
    let mut out = Vec::with_capacity(count);
    let mut pos = 0usize;
    for _ in 0..count {
        let len = varint(section, &mut pos)?;
        if len < (MIN_RECORD_BYTES - 1) as i64 {
            return Err(RecordsError::Malformed);
        }
        let start = pos;
        let end = start
            .checked_add(len as usize)
            .ok_or(RecordsError::Malformed)?;
        if end > section.len() {
            return Err(RecordsError::Malformed);
        }
        pos += 1; // attributes
        let timestamp_delta = varint(section, &mut pos)?;
        let offset_delta = varint(section, &mut pos)?;
        let key_len = varint(section, &mut pos)?;
        if pos > end {
            return Err(RecordsError::Malformed);
        }
        out.push(RecordHead {
            offset_delta,
            timestamp_delta,
            null_key: key_len < 0,
        });
        pos = end;
    }
    Ok(out)
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
    if batch.len() < HEADER_LEN {
        return Err(RecordsError::Malformed);
    }
    let count = i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]);
    let section = records_section(batch, cap)?;
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
    let count = i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]);
    let section = records_section(batch, cap)?;
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
    use crate::batch::tests::make_batch;

    #[test]
    fn reads_timestamps_of_a_valid_batch() {
        let mut b = make_batch(3, -1, -1, 1000);
        b[0..8].copy_from_slice(&40i64.to_be_bytes());
        let ts = record_timestamps(&b, 1 << 20).unwrap();
        assert_eq!(ts, vec![(40, 1000), (41, 1000), (42, 1000)]);
    }

    /// Fuzz regression (record_batch): baseOffset + offsetDelta overflowed i64
    /// and panicked; producer-written timestamp deltas wrap as in Kafka.
    #[test]
    fn offset_overflow_is_malformed_and_timestamps_wrap() {
        let mut b = make_batch(2, -1, -1, 1000);
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
        let mut one = make_batch(1, -1, -1, 1000)[..HEADER_LEN].to_vec();
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
}
