//! Hand-built RecordBatch v2 bytes, for tests that need valid batches to send
//! or to corrupt. The layout is the one documented in `floe_gateway::batch`;
//! offsets of the header fields are the constants below.

use std::io::Write;

pub const BASE_OFFSET: usize = 0;
pub const BATCH_LENGTH: usize = 8;
pub const MAGIC: usize = 16;
pub const CRC: usize = 17;
pub const ATTRIBUTES: usize = 21;
pub const RECORD_COUNT: usize = 57;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 61;
/// baseOffset and batchLength are not counted by batchLength.
pub const LOG_OVERHEAD: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

#[derive(Debug, Clone, Default)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Added to the batch's base timestamp.
    pub timestamp_delta: i64,
}

impl Record {
    pub fn new(key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        Record {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            ..Record::default()
        }
    }
}

/// Builds one v2 batch. Defaults: not idempotent, no compression, CreateTime.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub compression: Compression,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<Record>,
}

impl BatchBuilder {
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: -1,
            compression: Compression::None,
            base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }

    pub fn record(mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        let delta = self.records.len() as i64;
        let mut r = Record::new(key, value);
        r.timestamp_delta = delta;
        self.records.push(r);
        self
    }

    pub fn push(mut self, r: Record) -> Self {
        self.records.push(r);
        self
    }

    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    pub fn idempotent(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        assert!(
            !self.records.is_empty(),
            "a batch holds at least one record"
        );
        let mut records = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            encode_record(&mut records, i as i64, r);
        }
        // Wrapping, as Kafka computes it: tests may use absurd deltas.
        let max_delta = self.records.iter().map(|r| r.timestamp_delta).max();
        let max_ts = self.base_timestamp.wrapping_add(max_delta.unwrap_or(0));
        self.assemble(&records, self.records.len() as i32, max_ts)
    }

    /// A batch whose (uncompressed) records section is `section` verbatim,
    /// claiming `record_count` records: for records that lie.
    pub fn build_raw(&self, section: &[u8], record_count: i32, max_timestamp: i64) -> Vec<u8> {
        self.assemble(section, record_count, max_timestamp)
    }

    fn assemble(&self, section: &[u8], n: i32, max_ts: i64) -> Vec<u8> {
        let records = compress(self.compression, section);
        let mut b = Vec::with_capacity(HEADER_LEN + records.len());
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // batchLength, set below
        b.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
        b.extend_from_slice(&(self.compression as i16).to_be_bytes());
        b.extend_from_slice(&n.wrapping_sub(1).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&records);
        fix_length(&mut b);
        fix_crc(&mut b);
        b
    }
}

/// A valid uncompressed batch of `n` records with values `v0`, `v1`, ….
pub fn simple_batch(n: usize, base_timestamp: i64) -> Vec<u8> {
    (0..n)
        .fold(BatchBuilder::new(base_timestamp), |b, i| {
            b.record(None, Some(format!("v{i}").as_bytes()))
        })
        .build()
}

/// Sets batchLength from the buffer's length (one batch).
pub fn fix_length(b: &mut [u8]) {
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
}

/// Recomputes the CRC-32C over bytes 21..end (one batch).
pub fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

fn encode_record(out: &mut Vec<u8>, offset_delta: i64, r: &Record) {
    let mut body = vec![0u8]; // attributes
    put_varint(&mut body, r.timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_bytes(&mut body, r.key.as_deref());
    put_bytes(&mut body, r.value.as_deref());
    put_varint(&mut body, r.headers.len() as i64);
    for (k, v) in &r.headers {
        put_bytes(&mut body, Some(k.as_bytes()));
        put_bytes(&mut body, v.as_deref());
    }
    put_varint(out, body.len() as i64);
    out.extend_from_slice(&body);
}

fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .expect("snappy"),
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).expect("lz4");
            e.finish().expect("lz4")
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}
