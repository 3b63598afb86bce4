//! Object keys: where a flush's segment object lives. One object per
//! (incarnation, flush), never overwritten, so a key names its content for
//! good: `segments/<spread>/<gateway>-<epoch>-<seq>.seg`, with the epoch and
//! seq zero-padded (keys sort by incarnation and flush) and a two-hex-digit
//! spread (CRC-32C of the name) over 256 prefixes, because S3 scales request
//! rates per prefix.

use crate::types::StreamId;

/// The key of flush `seq` of incarnation `stream`.
pub fn object_key(stream: &StreamId, seq: u64) -> String {
    let name = format!("{}-{:010}-{:012}", stream.gateway, stream.epoch, seq);
    let spread = crc32c::crc32c(name.as_bytes()) & 0xff;
    format!("segments/{spread:02x}/{name}.seg")
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
    }
}
