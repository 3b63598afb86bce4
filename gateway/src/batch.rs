//! RecordBatch v2 header validation, without decompressing or decoding records.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch
//! i32 @12, magic i8 @16, crc u32 @17 (CRC-32C of bytes 21..end), attributes i16
//! @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32
//! @57, records @61.

use bytes::Bytes;

pub const HEADER_LEN: usize = 61;
/// Bytes counted by batchLength start after baseOffset and batchLength.
pub const LOG_OVERHEAD: usize = 12;

const ATTR_COMPRESSION: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchError {
    /// Truncated, bad length or bad CRC: CORRUPT_MESSAGE.
    Corrupt(&'static str),
    /// Magic 0 or 1 (legacy message sets): UNSUPPORTED_FOR_MESSAGE_FORMAT.
    OldFormat(i8),
    /// Larger than max.message.bytes: MESSAGE_TOO_LARGE.
    TooLarge(usize),
    /// Transactional or control batches from a client, or inconsistent fields:
    /// INVALID_RECORD.
    Invalid(&'static str),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Corrupt(w) => write!(f, "corrupt record batch: {w}"),
            BatchError::OldFormat(m) => {
                write!(f, "record batch magic {m} is not supported (only v2)")
            }
            BatchError::TooLarge(n) => {
                write!(f, "record batch of {n} bytes exceeds max.message.bytes")
            }
            BatchError::Invalid(w) => write!(f, "invalid record batch: {w}"),
        }
    }
}

/// A validated batch header.
#[derive(Debug, Clone)]
pub struct BatchHeader {
    pub bytes: Bytes,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Splits a produce record set into batches and validates each header and CRC.
/// The returned `bytes` are zero-copy slices of `records`.
pub fn validate_batches(
    records: &Bytes,
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    if records.is_empty() {
        return Err(BatchError::Corrupt("empty record set"));
    }
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(BatchError::Corrupt("truncated batch header"));
        }
        // As Kafka does: a magic byte no format ever had means garbage, not an
        // old client; only the legacy v0/v1 message sets are "old format".
        let magic = rest[16] as i8;
        if !(0..=2).contains(&magic) {
            return Err(BatchError::Corrupt("invalid magic byte"));
        }
        if magic != 2 {
            return Err(BatchError::OldFormat(magic));
        }
        let batch_len = i32_at(rest, 8);
        if batch_len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt("batch length below the v2 header size"));
        }
        let total = batch_len as usize + LOG_OVERHEAD;
        if total > rest.len() {
            return Err(BatchError::Corrupt(
                "batch length runs past the end of the record set",
            ));
        }
        if total > max_batch_bytes {
            return Err(BatchError::TooLarge(total));
        }
        let b = &rest[..total];
        let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
        if crc32c::crc32c(&b[21..]) != crc {
            return Err(BatchError::Corrupt("CRC-32C mismatch"));
        }
        let attributes = i16_at(b, 21);
        if attributes & ATTR_CONTROL != 0 {
            return Err(BatchError::Invalid(
                "control batches cannot be produced by clients",
            ));
        }
        if attributes & ATTR_TRANSACTIONAL != 0 {
            return Err(BatchError::Invalid(
                "transactional batches are not supported yet",
            ));
        }
        if attributes & ATTR_COMPRESSION > 4 {
            return Err(BatchError::Invalid("unknown compression codec"));
        }
        let last_offset_delta = i32_at(b, 23);
        let record_count = i32_at(b, 57);
        if record_count <= 0 || last_offset_delta != record_count - 1 {
            return Err(BatchError::Invalid(
                "record count and last offset delta disagree",
            ));
        }
        let producer_id = i64_at(b, 43);
        let producer_epoch = i16_at(b, 51);
        let base_sequence = i32_at(b, 53);
        if producer_id >= 0 && (producer_epoch < 0 || base_sequence < 0) {
            return Err(BatchError::Invalid(
                "idempotent batch without epoch or sequence",
            ));
        }
        out.push(BatchHeader {
            bytes: records.slice(pos..pos + total),
            attributes,
            last_offset_delta,
            base_timestamp: i64_at(b, 27),
            max_timestamp: i64_at(b, 35),
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        });
        pos += total;
    }
    Ok(out)
}

/// Rewrites a batch for `message.timestamp.type=LogAppendTime`: sets the
/// timestamp-type bit and maxTimestamp (and baseTimestamp, as Kafka does) to
/// `now`, and recomputes the CRC. Only header bytes change.
pub fn set_log_append_time(h: &mut BatchHeader, now: i64) {
    let mut b = h.bytes.to_vec();
    let attributes = h.attributes | ATTR_TIMESTAMP_TYPE;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[27..35].copy_from_slice(&now.to_be_bytes());
    b[35..43].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    h.attributes = attributes;
    h.base_timestamp = now;
    h.max_timestamp = now;
    h.bytes = Bytes::from(b);
}

/// Walks stored batches (already validated when produced): yields
/// (start, end, base_offset, last_offset, max_timestamp) per batch. Stops at the
/// first inconsistency.
pub fn stored_batches(data: &[u8]) -> impl Iterator<Item = (usize, usize, i64, i64, i64)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = data.get(pos..)?;
        if rest.len() < HEADER_LEN {
            return None;
        }
        let len = i32_at(rest, 8);
        if len < 0 {
            return None;
        }
        let total = len as usize + LOG_OVERHEAD;
        if total > rest.len() {
            return None;
        }
        let base = i64_at(rest, 0);
        // Stored bytes are Floe's own, but a damaged object must end the walk,
        // not overflow (a panic in debug builds, a wrapped offset in release).
        let last = base.checked_add(i32_at(rest, 23) as i64)?;
        let item = (pos, pos + total, base, last, i64_at(rest, 35));
        pos += total;
        Some(item)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a valid uncompressed v2 batch holding `n` tiny records.
    pub(crate) fn make_batch(n: i32, producer_id: i64, seq: i32, ts: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..n {
            // length, attributes, tsDelta, offsetDelta, keyLen(-1), valueLen 1, value, headers 0
            let body = [0u8, 0, (i as u8) << 1, 0x01, 0x02, b'x', 0];
            records.push((body.len() as u8) << 1);
            records.extend_from_slice(&body);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // length, patched below
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(n - 1).to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&producer_id.to_be_bytes());
        b.extend_from_slice(&(if producer_id >= 0 { 0i16 } else { -1 }).to_be_bytes());
        b.extend_from_slice(&(if producer_id >= 0 { seq } else { -1 }).to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&records);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn validates_and_rejects() {
        let one = make_batch(3, -1, -1, 1000);
        let mut two = one.clone();
        two.extend_from_slice(&make_batch(2, 5, 0, 2000));
        let hs = validate_batches(&Bytes::from(two.clone()), 1 << 20).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[1].producer_id, 5);
        assert_eq!(hs[0].record_count, 3);
        assert!(matches!(
            validate_batches(&Bytes::from(one.clone()), 10),
            Err(BatchError::TooLarge(n)) if n == one.len()
        ));
        let mut bad = one.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            validate_batches(&Bytes::from(bad), 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate_batches(&Bytes::from(one[..30].to_vec()), 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        let mut old = one.clone();
        old[16] = 1;
        assert!(matches!(
            validate_batches(&Bytes::from(old), 1 << 20),
            Err(BatchError::OldFormat(1))
        ));
        for garbage in [0xffu8, 3, 0x80, b'c'] {
            let mut g = one.clone();
            g[16] = garbage;
            assert!(matches!(
                validate_batches(&Bytes::from(g), 1 << 20),
                Err(BatchError::Corrupt(_))
            ));
        }
        let mut h = validate_batches(&Bytes::from(one), 1 << 20)
            .unwrap()
            .remove(0);
        set_log_append_time(&mut h, 77);
        let again = validate_batches(&h.bytes, 1 << 20).unwrap();
        assert_eq!(again[0].max_timestamp, 77);
        assert!(again[0].is_log_append_time());
    }

    /// Fuzz regression (record_batch): a stored batch whose baseOffset +
    /// lastOffsetDelta overflows i64 ended in an arithmetic-overflow panic.
    #[test]
    fn stored_batches_stop_at_offset_overflow() {
        let mut b = make_batch(3, -1, -1, 1000);
        let good = b.clone();
        b[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        let mut data = good.clone();
        data.extend_from_slice(&b);
        data.extend_from_slice(&good);
        let walked: Vec<_> = stored_batches(&data).collect();
        assert_eq!(walked, vec![(0, good.len(), 0, 2, 1000)]);
        b[0..8].copy_from_slice(&i64::MIN.to_be_bytes());
        b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(stored_batches(&b).count(), 0);
    }
}
