//! Byte-bounded cache of object ranges: regions of segments this gateway just
//! committed (so tailing consumers never read object storage) and ranges read for
//! catch-up fetches.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

#[derive(Clone, Copy, Debug)]
struct ByteWeight;

impl Weighter<(String, u64), Bytes> for ByteWeight {
    fn weight(&self, key: &(String, u64), val: &Bytes) -> u64 {
        (val.len() + key.0.len() + 64) as u64
    }
}

#[derive(Debug)]
pub struct ReadCache {
    cache: Cache<(String, u64), Bytes, ByteWeight>,
}

impl ReadCache {
    pub fn new(max_bytes: u64) -> Self {
        // Estimate ~64 KiB per item for sizing the hash table.
        let items = (max_bytes / 65536).max(16) as usize;
        ReadCache {
            cache: Cache::with_weighter(items, max_bytes.max(1), ByteWeight),
        }
    }

    /// The cached bytes of the region at `position` in `key`.
    pub fn get(&self, key: &str, position: u64) -> Option<Bytes> {
        self.cache.get(&(key.to_string(), position))
    }

    pub fn insert(&self, key: &str, position: u64, bytes: Bytes) {
        self.cache.insert((key.to_string(), position), bytes);
    }
}
