//! Producer ids for InitProducerId: reserved from the MetaStore in blocks, so
//! a gateway writes once per thousand idempotent producers, and ids never
//! repeat across gateways or restarts.

use std::sync::Mutex;

use floe_core::meta::SharedMetaStore;

/// Ids reserved per MetaStore write.
const BLOCK: u64 = 1000;

#[derive(Debug)]
pub struct ProducerIds {
    meta: SharedMetaStore,
    /// The next id to hand out and the end of the reserved block.
    block: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn new(meta: SharedMetaStore) -> Self {
        ProducerIds {
            meta,
            block: Mutex::new((0, 0)),
        }
    }

    /// A fresh producer id.
    pub async fn next(&self) -> floe_core::Result<i64> {
        loop {
            {
                let mut ids = self.block.lock().unwrap_or_else(|p| p.into_inner());
                if ids.0 < ids.1 {
                    ids.0 += 1;
                    return Ok(ids.0 - 1);
                }
            }
            let first = self.meta.allocate_producer_ids(BLOCK).await?;
            let mut ids = self.block.lock().unwrap_or_else(|p| p.into_inner());
            if ids.0 >= ids.1 {
                *ids = (first, first + BLOCK as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use floe_core::meta::MemoryMetaStore;

    #[tokio::test]
    async fn ids_are_unique_across_blocks_and_gateways() {
        let meta: SharedMetaStore = Arc::new(MemoryMetaStore::new());
        let (a, b) = (ProducerIds::new(meta.clone()), ProducerIds::new(meta));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1500 {
            assert!(seen.insert(a.next().await.unwrap()));
            assert!(seen.insert(b.next().await.unwrap()));
        }
    }
}
