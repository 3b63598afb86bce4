//! Reading committed batches: index entry → cached range or one ranged GET.

use bytes::{Bytes, BytesMut};
use floe_core::types::IndexEntry;

use crate::batch::stored_batches;
use crate::broker::Broker;

/// The bytes of one index entry's region.
pub async fn entry_bytes(broker: &Broker, e: &IndexEntry) -> floe_core::Result<Bytes> {
    if let Some(b) = broker.cache.get(&e.object_key, e.position) {
        return Ok(b);
    }
    let b = broker
        .objects
        .get_range(&e.object_key, e.position..e.position + e.length as u64)
        .await?;
    broker.cache.insert(&e.object_key, e.position, b.clone());
    Ok(b)
}

/// Collects whole batches from `offset`, stopping before `limit` bytes unless
/// `must_return_one` (KIP-74: the first batch is returned even if larger).
pub async fn read_batches(
    broker: &Broker,
    entries: &[IndexEntry],
    offset: i64,
    limit: usize,
    must_return_one: bool,
) -> floe_core::Result<Option<Bytes>> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    'outer: for e in entries {
        let bytes = entry_bytes(broker, e).await?;
        for (start, end, _base, last, _ts) in stored_batches(&bytes) {
            if last < offset {
                continue;
            }
            let len = end - start;
            if total + len > limit && !(parts.is_empty() && must_return_one) {
                break 'outer;
            }
            parts.push(bytes.slice(start..end));
            total += len;
            if total >= limit {
                break 'outer;
            }
        }
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => {
            let mut out = BytesMut::with_capacity(total);
            for p in parts {
                out.extend_from_slice(&p);
            }
            Some(out.freeze())
        }
    })
}
