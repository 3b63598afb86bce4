//! What the compactor's storage-level tests share: a registered gateway and a
//! created topic on the stores they are given.

use std::collections::BTreeMap;

use floe_core::meta::MetaStore;
use floe_core::types::{GatewayInfo, StreamId, TopicId, TopicMeta};

/// Registers gateway `g`; returns its stream.
pub async fn registered(meta: &dyn MetaStore) -> StreamId {
    let info = GatewayInfo::at("127.0.0.1:9092");
    StreamId {
        gateway: "g".into(),
        epoch: meta.register_gateway("g", &info).await.expect("register"),
    }
}

/// Creates topic `name` (id `id`) with `partitions` partitions.
pub async fn created(meta: &dyn MetaStore, name: &str, id: u128, partitions: i32) -> TopicMeta {
    let topic = TopicMeta {
        name: name.into(),
        id: TopicId::from_u128(id),
        partitions,
        configs: BTreeMap::new(),
        created_ms: 0,
        version: 0,
    };
    meta.create_topic(&topic).await.expect("create topic");
    topic
}
