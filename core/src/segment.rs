//! Segment object format, version 1.
//!
//! One object per flush, whatever the number of partitions:
//!
//! ```text
//! [region 0][region 1]...[region n-1][footer][trailer]
//!
//! region   = the partition's Kafka RecordBatch v2 bytes, back to back, base
//!            offsets already assigned (the first 8 bytes of every batch)
//! footer   = count:u32, then count entries of 64 bytes each:
//!            topic_id:[16] partition:i32 base_offset:i64 last_offset:i64
//!            max_timestamp:i64 position:u64 length:u32 batch_count:u32
//!            region_crc32c:u32
//! trailer  = footer_len:u32 footer_crc32c:u32 version:u16 reserved:u16 magic:"FLOE"
//! ```
//!
//! All integers are big-endian, like Kafka's. Regions are laid out grouped by
//! partition so a fetch reads one contiguous byte range. The footer lets tools and
//! the compactor read an object without the MetaStore; reads normally go straight
//! to a region through the partition index. A format change bumps `VERSION` and the
//! snapshot test in this module.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::types::{PartitionId, TopicId};

pub const MAGIC: &[u8; 4] = b"FLOE";
pub const VERSION: u16 = 1;
pub const TRAILER_LEN: usize = 16;
pub const ENTRY_LEN: usize = 64;

/// One partition's region as described by the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub partition: PartitionId,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub position: u64,
    pub length: u32,
    pub batch_count: u32,
    pub crc32c: u32,
}

/// Builds a segment object region by region.
#[derive(Debug, Default)]
pub struct SegmentBuilder {
    body: BytesMut,
    regions: Vec<RegionInfo>,
}

impl SegmentBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        SegmentBuilder {
            body: BytesMut::with_capacity(bytes),
            regions: Vec::new(),
        }
    }

    /// Current write position; the next region starts here.
    pub fn position(&self) -> u64 {
        self.body.len() as u64
    }

    /// Appends one batch to the region being built; returns its position.
    pub fn push_batch(&mut self, batch: &[u8], base_offset: i64) -> u64 {
        let at = self.body.len();
        self.body.extend_from_slice(batch);
        self.body[at..at + 8].copy_from_slice(&base_offset.to_be_bytes());
        at as u64
    }

    /// Appends batches whose offsets are already assigned, byte for byte (a
    /// compaction copying regions); returns their position.
    pub fn push_bytes(&mut self, batches: &[u8]) -> u64 {
        let at = self.body.len();
        self.body.extend_from_slice(batches);
        at as u64
    }

    /// Closes the region that started at `position` (everything pushed since).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_region(
        &mut self,
        partition: PartitionId,
        position: u64,
        base_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
        batch_count: u32,
    ) -> RegionInfo {
        let bytes = &self.body[position as usize..];
        let info = RegionInfo {
            partition,
            base_offset,
            last_offset,
            max_timestamp,
            position,
            length: bytes.len() as u32,
            batch_count,
            crc32c: crc32c::crc32c(bytes),
        };
        self.regions.push(info.clone());
        info
    }

    /// Writes footer and trailer and returns the object bytes.
    pub fn finish(mut self) -> Bytes {
        let mut footer = BytesMut::with_capacity(4 + self.regions.len() * ENTRY_LEN);
        footer.put_u32(self.regions.len() as u32);
        for r in &self.regions {
            footer.put_slice(r.partition.topic.as_bytes());
            footer.put_i32(r.partition.partition);
            footer.put_i64(r.base_offset);
            footer.put_i64(r.last_offset);
            footer.put_i64(r.max_timestamp);
            footer.put_u64(r.position);
            footer.put_u32(r.length);
            footer.put_u32(r.batch_count);
            footer.put_u32(r.crc32c);
        }
        let footer_crc = crc32c::crc32c(&footer);
        self.body.put_slice(&footer);
        self.body.put_u32(footer.len() as u32);
        self.body.put_u32(footer_crc);
        self.body.put_u16(VERSION);
        self.body.put_u16(0);
        self.body.put_slice(MAGIC);
        self.body.freeze()
    }
}

/// Reads the footer of a whole segment object and checks its checksums.
pub fn read_footer(object: &[u8]) -> Result<Vec<RegionInfo>> {
    if object.len() < TRAILER_LEN {
        return Err(Error::Corrupt(format!(
            "segment of {} bytes has no trailer",
            object.len()
        )));
    }
    let mut trailer = &object[object.len() - TRAILER_LEN..];
    let footer_len = trailer.get_u32() as usize;
    let footer_crc = trailer.get_u32();
    let version = trailer.get_u16();
    let _reserved = trailer.get_u16();
    if trailer != MAGIC {
        return Err(Error::Corrupt("segment trailer magic is not FLOE".into()));
    }
    if version != VERSION {
        return Err(Error::Corrupt(format!(
            "segment format version {version} is not supported (this build reads {VERSION})"
        )));
    }
    let footer_end = object.len() - TRAILER_LEN;
    if footer_len > footer_end || footer_len < 4 {
        return Err(Error::Corrupt(format!(
            "segment footer length {footer_len} is out of bounds"
        )));
    }
    let footer = &object[footer_end - footer_len..footer_end];
    if crc32c::crc32c(footer) != footer_crc {
        return Err(Error::Corrupt("segment footer checksum mismatch".into()));
    }
    let mut f = footer;
    let count = f.get_u32() as usize;
    if f.len() != count * ENTRY_LEN {
        return Err(Error::Corrupt(format!(
            "segment footer claims {count} entries in {} bytes",
            f.len()
        )));
    }
    let data_end = (footer_end - footer_len) as u64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut id = [0u8; 16];
        f.copy_to_slice(&mut id);
        let r = RegionInfo {
            partition: PartitionId::new(TopicId::from_bytes(id), f.get_i32()),
            base_offset: f.get_i64(),
            last_offset: f.get_i64(),
            max_timestamp: f.get_i64(),
            position: f.get_u64(),
            length: f.get_u32(),
            batch_count: f.get_u32(),
            crc32c: f.get_u32(),
        };
        if r.position + r.length as u64 > data_end {
            return Err(Error::Corrupt(format!(
                "region of {} lies outside the data",
                r.partition
            )));
        }
        out.push(r);
    }
    Ok(out)
}

/// Checks a region's bytes against the checksum recorded in the footer.
pub fn verify_region(object: &[u8], region: &RegionInfo) -> Result<()> {
    let start = region.position as usize;
    let bytes = &object[start..start + region.length as usize];
    if crc32c::crc32c(bytes) != region.crc32c {
        return Err(Error::Corrupt(format!(
            "region of {} fails its checksum",
            region.partition
        )));
    }
    Ok(())
}

/// What a run of record batches holds, checked batch by batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRun {
    pub base_offset: i64,
    pub last_offset: i64,
    pub batch_count: u32,
}

/// Walks Kafka RecordBatch v2 bytes, back to back (a region, or several
/// consecutive ones), checking each batch's length and CRC-32C (which covers
/// bytes 21..end, so offsets rewritten at seal keep it valid) and that each
/// starts where the previous ended. The layout read: baseOffset:i64
/// batchLength:i32 partitionLeaderEpoch:i32 magic:i8 crc:u32 attributes:i16
/// lastOffsetDelta:i32 ...
pub fn check_batches(bytes: &[u8]) -> Result<BatchRun> {
    walk_batches(bytes, false)
}

/// `check_batches` for a region that key compaction (`cleanup.policy=compact`)
/// rewrote: batches it emptied are gone, so each batch starts *after* the
/// previous one ended, and the run must lie within `base..=last`, the
/// offsets its index entry covers.
pub fn check_batches_within(bytes: &[u8], base: i64, last: i64) -> Result<BatchRun> {
    let run = walk_batches(bytes, true)?;
    if run.base_offset < base || run.last_offset > last {
        return Err(Error::Corrupt(format!(
            "batches hold offsets {}..={}, outside {base}..={last}",
            run.base_offset, run.last_offset
        )));
    }
    Ok(run)
}

fn walk_batches(bytes: &[u8], gaps: bool) -> Result<BatchRun> {
    const HEADER: usize = 12; // baseOffset + batchLength
    const CRC_AT: usize = 17; // after partitionLeaderEpoch and magic
    const MIN_BATCH: usize = 61;
    let mut at = 0usize;
    let mut run: Option<BatchRun> = None;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < MIN_BATCH {
            return Err(Error::Corrupt(format!(
                "{} trailing bytes at {at} are not a record batch",
                rest.len()
            )));
        }
        let base = i64::from_be_bytes(rest[0..8].try_into().map_err(corrupt_slice)?);
        let len = i32::from_be_bytes(rest[8..12].try_into().map_err(corrupt_slice)?);
        let total = usize::try_from(len).ok().map(|l| l + HEADER);
        let Some(total) = total.filter(|&t| t >= MIN_BATCH && t <= rest.len()) else {
            return Err(Error::Corrupt(format!("batch at {at} has length {len}")));
        };
        let batch = &rest[..total];
        let crc = u32::from_be_bytes(
            batch[CRC_AT..CRC_AT + 4]
                .try_into()
                .map_err(corrupt_slice)?,
        );
        if crc32c::crc32c(&batch[CRC_AT + 4..]) != crc {
            return Err(Error::Corrupt(format!(
                "batch at offset {base} fails its CRC-32C"
            )));
        }
        let delta = i32::from_be_bytes(batch[23..27].try_into().map_err(corrupt_slice)?);
        if delta < 0 {
            return Err(Error::Corrupt(format!(
                "batch at offset {base} has lastOffsetDelta {delta}"
            )));
        }
        let last = base
            .checked_add(i64::from(delta))
            .ok_or_else(|| Error::Corrupt(format!("batch at offset {base} ends past i64")))?;
        run = Some(match run {
            None => BatchRun {
                base_offset: base,
                last_offset: last,
                batch_count: 1,
            },
            Some(r)
                if Some(base) == r.last_offset.checked_add(1) || (gaps && base > r.last_offset) =>
            {
                BatchRun {
                    last_offset: last,
                    batch_count: r.batch_count + 1,
                    ..r
                }
            }
            Some(r) => {
                return Err(Error::Corrupt(format!(
                    "batch at offset {base} does not follow offset {}",
                    r.last_offset
                )));
            }
        });
        at += total;
    }
    run.ok_or_else(|| Error::Corrupt("no record batches".into()))
}

fn corrupt_slice(e: std::array::TryFromSliceError) -> Error {
    Error::Corrupt(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_batch(len: usize, fill: u8) -> Vec<u8> {
        let mut b = vec![fill; len];
        b[..8].copy_from_slice(&[0xff; 8]);
        b
    }

    /// A RecordBatch v2 of `len` bytes holding offsets base..=base+delta,
    /// with a valid CRC-32C (the records themselves are filler).
    fn v2_batch(base: i64, delta: i32, len: usize) -> Vec<u8> {
        let mut b = vec![7u8; len];
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
        b[16] = 2;
        b[21..23].copy_from_slice(&0i16.to_be_bytes());
        b[23..27].copy_from_slice(&delta.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn batch_runs_are_checked() {
        let mut run = v2_batch(10, 4, 90);
        run.extend(v2_batch(15, 0, 61));
        assert_eq!(
            check_batches(&run).unwrap(),
            BatchRun {
                base_offset: 10,
                last_offset: 15,
                batch_count: 2
            }
        );
        let mut gap = v2_batch(10, 4, 90);
        gap.extend(v2_batch(16, 0, 61));
        assert!(check_batches(&gap).is_err(), "offset 15 missing");
        let within = check_batches_within(&gap, 10, 30).unwrap();
        assert_eq!((within.base_offset, within.batch_count), (10, 2));
        assert!(
            check_batches_within(&gap, 11, 30).is_err(),
            "starts before its entry"
        );
        let mut back = gap.clone();
        back.extend_from_slice(&gap);
        assert!(
            check_batches_within(&back, 0, 100).is_err(),
            "offsets go back"
        );
        let mut flipped = run.clone();
        flipped[100] ^= 1;
        assert!(check_batches(&flipped).is_err(), "CRC");
        assert!(check_batches(&run[..run.len() - 1]).is_err(), "truncated");
        assert!(check_batches(&[]).is_err(), "empty");
        let mut long = run.clone();
        long[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(check_batches(&long).is_err(), "length past the end");
    }

    #[test]
    fn round_trip_and_checksums() {
        let t = TopicId::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let mut b = SegmentBuilder::with_capacity(1024);
        let p0 = b.position();
        b.push_batch(&fake_batch(70, 1), 0);
        b.push_batch(&fake_batch(80, 2), 3);
        b.finish_region(PartitionId::new(t, 0), p0, 0, 5, 1000, 2);
        let p1 = b.position();
        b.push_batch(&fake_batch(61, 3), 42);
        b.finish_region(PartitionId::new(t, 7), p1, 42, 42, 2000, 1);
        let obj = b.finish();
        let regions = read_footer(&obj).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].length, 150);
        assert_eq!(regions[1].position, 150);
        assert_eq!(&obj[70..78], &3i64.to_be_bytes());
        assert_eq!(&obj[150..158], &42i64.to_be_bytes());
        for r in &regions {
            verify_region(&obj, r).unwrap();
        }
        let mut bad = obj.to_vec();
        bad[100] ^= 1;
        assert!(verify_region(&bad, &regions[0]).is_err());
        let mut bad = obj.to_vec();
        let n = bad.len();
        bad[n - TRAILER_LEN - 3] ^= 1;
        assert!(read_footer(&bad).is_err());
        assert!(read_footer(&obj[..10]).is_err());
    }

    /// The byte format is a contract with every object already written: this
    /// snapshot only changes together with VERSION. (Checksums verified with an
    /// independent CRC-32C implementation.)
    #[test]
    fn format_snapshot_v1() {
        let t = TopicId::from_u128(1);
        let mut b = SegmentBuilder::default();
        b.push_batch(&[0u8; 12], 7);
        b.finish_region(PartitionId::new(t, 2), 0, 7, 7, 99, 1);
        let obj = b.finish();
        let hex: String = obj.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(VERSION, 1);
        assert_eq!(
            hex,
            concat!(
                "000000000000000700000000",
                "00000001",
                "00000000000000000000000000000001",
                "00000002",
                "0000000000000007",
                "0000000000000007",
                "0000000000000063",
                "0000000000000000",
                "0000000c",
                "00000001",
                "8316bb19",
                "00000044",
                "52654c5b",
                "0001",
                "0000",
                "464c4f45"
            )
        );
    }
}
