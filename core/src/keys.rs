//! Object keys: where a flush's segment object lives. One object per
//! (incarnation, flush), never overwritten, so a key names its content for
//! good: `segments/<spread>/<gateway>-<epoch>-<seq>.seg`, with the epoch and
//! seq zero-padded (keys sort by incarnation and flush) and a two-hex-digit
//! spread (CRC-32C of the name) over 256 prefixes, because S3 scales request
//! rates per prefix. Compactions write per-partition objects under
//! `compacted/` (see [`compacted_key`]).

use crate::types::{PartitionId, StreamId};

/// The key of flush `seq` of incarnation `stream`.
pub fn object_key(stream: &StreamId, seq: u64) -> String {
    let name = format!("{}-{:010}-{:012}", stream.gateway, stream.epoch, seq);
    let spread = crc32c::crc32c(name.as_bytes()) & 0xff;
    format!("segments/{spread:02x}/{name}.seg")
}

/// An object a compaction writes: one partition's batches from `base` to
/// `last`, `compacted/<spread>/<topic id>-<partition>-<base>-<last>-<nonce>.seg`.
/// The nonce (a fresh UUID per object) makes every write its own key: an
/// object that lost its swap, or was left by a crashed compaction, is never
/// referenced later, so once unreferenced for the grace period it can be
/// deleted without racing a compaction that would reuse its name.
pub fn compacted_key(partition: PartitionId, base: i64, last: i64, nonce: uuid::Uuid) -> String {
    compacted_name(partition, base, last, nonce, "")
}

/// An object key compaction (`cleanup.policy=compact`) writes: like
/// [`compacted_key`], ending `.clean.seg`. The suffix is what records how far
/// a partition is key-compacted: its entries up to the last one in such an
/// object are clean, the rest dirty (Kafka's cleaner checkpoint).
pub fn cleaned_key(partition: PartitionId, base: i64, last: i64, nonce: uuid::Uuid) -> String {
    compacted_name(partition, base, last, nonce, ".clean")
}

/// Whether `key` names an object key compaction wrote.
pub fn is_cleaned(key: &str) -> bool {
    is_compacted(key) && key.ends_with(".clean.seg")
}

fn compacted_name(
    partition: PartitionId,
    base: i64,
    last: i64,
    nonce: uuid::Uuid,
    suffix: &str,
) -> String {
    let name = format!(
        "{}-{}-{base:020}-{last:020}-{}",
        partition.topic.simple(),
        partition.partition,
        nonce.simple()
    );
    let spread = crc32c::crc32c(name.as_bytes()) & 0xff;
    format!("{COMPACTED_PREFIX}{spread:02x}/{name}{suffix}.seg")
}

/// Where compacted objects live (and what tells their index entries apart).
pub const COMPACTED_PREFIX: &str = "compacted/";

/// Whether `key` names an object a compaction wrote.
pub fn is_compacted(key: &str) -> bool {
    key.starts_with(COMPACTED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are part of the stored format: a change must be deliberate.
    #[test]
    fn keys_are_stable_and_spread() {
        let s = StreamId {
            gateway: "floe-0".into(),
            epoch: 3,
        };
        assert_eq!(
            object_key(&s, 17),
            format!(
                "segments/{:02x}/floe-0-0000000003-000000000017.seg",
                crc32c::crc32c(b"floe-0-0000000003-000000000017") & 0xff
            )
        );
        let prefixes: std::collections::BTreeSet<_> = (0..2000)
            .map(|i| object_key(&s, i)[9..11].to_string())
            .collect();
        assert!(prefixes.len() > 200, "{} prefixes", prefixes.len());
        let p = PartitionId::new(uuid::Uuid::from_u128(5), 2);
        let n = uuid::Uuid::from_u128(9);
        let (merged, cleaned) = (compacted_key(p, 1, 9, n), cleaned_key(p, 1, 9, n));
        assert!(is_compacted(&merged) && !is_cleaned(&merged));
        assert!(is_compacted(&cleaned) && is_cleaned(&cleaned), "{cleaned}");
        assert!(!is_cleaned(&object_key(&s, 1)));
    }
}
