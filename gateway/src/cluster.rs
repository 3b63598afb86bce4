//! The cluster as this gateway sees it: its own identity (incarnation, node
//! id, advertised address, zone), the live gateways as of the last ownership
//! round, and who leads what among them. Every gateway computes the same
//! answers from the same view, without talking: each partition's leader, each
//! group's coordinator and each zone's reader is the live gateway with the
//! highest rendezvous score (xxHash64 of gateway id and key), so adding or
//! removing a gateway moves only its share.
//!
//! Views may differ for a while; correctness never depends on them agreeing
//! (ownership moves only through the MetaStore's conditional claims, see
//! `ownership`). Also here: whether this incarnation was fenced.

use std::hash::Hasher;
use std::sync::RwLock;

use floe_core::types::{GatewayInfo, Member, PartitionId, StreamId};
use tokio::sync::watch;

/// The rendezvous score of `gateway` for `key`: highest score owns the key.
pub fn score(gateway: &str, key: &[u8]) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0x466c_6f65); // "Floe"
    h.write(gateway.as_bytes());
    h.write(&[0]);
    h.write(key);
    h.finish()
}

/// The member with the highest score for `key` (ties, which need a 64-bit
/// collision, go to the smaller gateway name).
pub fn owner_of<'a>(members: &'a [Member], key: &[u8]) -> Option<&'a Member> {
    members.iter().max_by(|a, b| {
        score(&a.stream.gateway, key)
            .cmp(&score(&b.stream.gateway, key))
            .then_with(|| b.stream.gateway.cmp(&a.stream.gateway))
    })
}

/// The rendezvous key of a partition.
pub fn partition_key(p: &PartitionId) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(p.topic.as_bytes());
    k[16..].copy_from_slice(&p.partition.to_be_bytes());
    k
}

/// The rendezvous key of a consumer group.
fn group_key(group: &str) -> Vec<u8> {
    let mut key = b"group\0".to_vec();
    key.extend_from_slice(group.as_bytes());
    key
}

/// This gateway's identity and its view of the others.
#[derive(Debug)]
pub struct Cluster {
    me: StreamId,
    /// This gateway's registration (node id, broker ids, zone).
    info: GatewayInfo,
    host: String,
    port: i32,
    cluster_id: String,
    /// Live gateways (this one included) as of the last ownership round.
    view: RwLock<Vec<Member>>,
    /// Set when this incarnation was fenced: it stops serving.
    fenced: watch::Sender<Option<String>>,
}

impl Cluster {
    /// The host and port of an advertised `host:port` (`[v6]:port` too).
    pub fn parse_advertised(advertised: &str) -> floe_core::Result<(String, i32)> {
        advertised
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_matches(['[', ']']).to_string(),
                    p.parse::<i32>().ok()?,
                ))
            })
            .ok_or_else(|| {
                floe_core::Error::Config(format!(
                    "advertised listener {advertised:?} is not host:port"
                ))
            })
    }

    /// `info.advertised` is the `host:port` clients are told to connect to.
    pub fn new(me: StreamId, info: GatewayInfo, cluster_id: String) -> floe_core::Result<Cluster> {
        let (host, port) = Self::parse_advertised(&info.advertised)?;
        Ok(Cluster {
            me,
            info,
            host,
            port,
            cluster_id,
            view: RwLock::new(Vec::new()),
            fenced: watch::Sender::new(None),
        })
    }

    /// This incarnation.
    pub fn me(&self) -> &StreamId {
        &self.me
    }

    /// The Kafka node id clients see for this gateway (its first broker id).
    pub fn node_id(&self) -> i32 {
        self.info.node_id
    }

    /// This gateway's registration.
    pub fn info(&self) -> &GatewayInfo {
        &self.info
    }

    /// The broker id clients are told leads `p`: one of its leader's broker
    /// ids (this gateway's until the first membership round).
    pub fn leader_id(&self, p: &PartitionId) -> i32 {
        self.leader_of(p)
            .map_or_else(|| self.info.leader_id(p), |m| m.info.leader_id(p))
    }

    /// Whether `id` is a broker id of this gateway or of a live one.
    pub fn knows_broker_id(&self, id: i32) -> bool {
        self.info.has_broker_id(id) || self.view().iter().any(|m| m.info.has_broker_id(id))
    }

    /// The host and port clients connect to.
    pub fn advertised(&self) -> (&str, i32) {
        (&self.host, self.port)
    }

    /// This gateway's zone (Kafka's rack).
    pub fn zone(&self) -> Option<&str> {
        self.info.zone.as_deref()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The live gateways, this one included.
    pub fn view(&self) -> Vec<Member> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_view(&self, live: Vec<Member>) {
        let mut v = self.view.write().unwrap_or_else(|p| p.into_inner());
        let before: Vec<_> = v.iter().map(|m| m.stream.to_string()).collect();
        let after: Vec<_> = live.iter().map(|m| m.stream.to_string()).collect();
        if before != after {
            tracing::info!(live = ?after, "membership changed");
        }
        *v = live;
    }

    fn owner(&self, key: &[u8]) -> Option<Member> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        owner_of(&view, key).cloned()
    }

    /// The live gateway that should lead `partition` (this one if alone).
    pub fn leader_of(&self, partition: &PartitionId) -> Option<Member> {
        self.owner(&partition_key(partition))
    }

    /// Whether this gateway should lead `partition` under the current view.
    pub fn should_lead(&self, partition: &PartitionId) -> bool {
        self.leader_of(partition)
            .is_some_and(|m| m.stream == self.me)
    }

    /// The live gateway coordinating consumer group `group`.
    pub fn coordinator_of(&self, group: &str) -> Option<Member> {
        self.owner(&group_key(group))
    }

    /// The live gateway in `zone` that serves reads of `p` for that zone, if
    /// there is one.
    pub fn zone_reader(&self, zone: &str, p: &PartitionId) -> Option<Member> {
        let in_zone: Vec<Member> = self
            .view()
            .into_iter()
            .filter(|m| m.info.zone.as_deref() == Some(zone))
            .collect();
        owner_of(&in_zone, &partition_key(p)).cloned()
    }

    /// Records that this incarnation was fenced (see `Broker::fence`).
    pub(crate) fn set_fenced(&self, why: &str) {
        self.fenced.send_replace(Some(why.to_string()));
    }

    /// Resolves once this incarnation is fenced.
    pub async fn fenced(&self) -> String {
        let mut rx = self.fenced.subscribe();
        let why = rx.wait_for(|v| v.is_some()).await.map(|v| v.clone());
        match why {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    pub fn fenced_reason(&self) -> Option<String> {
        self.fenced.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use floe_core::types::GatewayInfo;

    fn member(g: &str) -> Member {
        Member {
            stream: StreamId {
                gateway: g.into(),
                epoch: 1,
            },
            info: GatewayInfo::at(""),
            heartbeat: 0,
            fenced: false,
        }
    }

    #[test]
    fn rendezvous_moves_only_the_leavers_share() {
        let three: Vec<_> = ["a", "b", "c"].map(member).into();
        let two: Vec<_> = ["a", "c"].map(member).into();
        let topic = uuid::Uuid::from_u128(7);
        let mut counts = HashMap::new();
        for p in 0..3000 {
            let k = partition_key(&PartitionId::new(topic, p));
            let before = &owner_of(&three, &k).expect("owner").stream.gateway;
            let after = &owner_of(&two, &k).expect("owner").stream.gateway;
            *counts.entry(before.clone()).or_insert(0) += 1;
            if before != "b" {
                assert_eq!(
                    before, after,
                    "partition {p} moved although its owner stayed"
                );
            }
        }
        for g in ["a", "b", "c"] {
            let n = counts[g];
            assert!((800..1200).contains(&n), "{g} owns {n} of 3000");
        }
        assert!(owner_of(&[], &[1]).is_none());
    }

    #[test]
    fn identity_and_roles() {
        let me = member("a").stream;
        let mut info = member("a").info;
        info.advertised = "[::1]:9092".into();
        info.zone = Some("z1".into());
        info.node_id = 7;
        let c = Cluster::new(me.clone(), info.clone(), "c".into()).expect("cluster");
        assert_eq!(c.advertised(), ("::1", 9092));
        info.advertised = "nohost".into();
        assert!(Cluster::new(me, info, "c".into()).is_err());
        let p = PartitionId::new(uuid::Uuid::from_u128(1), 0);
        assert!(c.leader_of(&p).is_none() && !c.should_lead(&p));
        let mut a = member("a");
        a.info.zone = Some("z1".into());
        c.set_view(vec![a]);
        assert!(c.should_lead(&p));
        assert_eq!(
            c.coordinator_of("g").map(|m| m.stream.gateway),
            Some("a".into())
        );
        assert!(c.zone_reader("z1", &p).is_some());
        assert!(c.zone_reader("z2", &p).is_none());
        assert_eq!(c.fenced_reason(), None);
        c.set_fenced("gone");
        assert_eq!(c.fenced_reason().as_deref(), Some("gone"));
    }

    #[test]
    fn leadership_spreads_evenly_over_a_gateways_broker_ids() {
        let mut a = member("a");
        a.info.node_id = 3;
        a.info.broker_ids = 4;
        a.info.advertised = "127.0.0.1:9092".into();
        let mut b = member("b");
        b.info.node_id = 5;
        let c = Cluster::new(a.stream.clone(), a.info.clone(), "c".into()).expect("cluster");
        let topic = uuid::Uuid::from_u128(0xfeed);
        // Alone and before the first round: this gateway's own ids.
        let mut counts = HashMap::new();
        for p in 0..40 {
            *counts
                .entry(c.leader_id(&PartitionId::new(topic, p)))
                .or_insert(0) += 1;
        }
        assert_eq!(
            counts,
            HashMap::from([(3, 10), (1003, 10), (2003, 10), (3003, 10)])
        );
        assert_eq!(
            a.info.broker_ids().collect::<Vec<_>>(),
            [3, 1003, 2003, 3003]
        );
        // With a second gateway, each partition names one id of its leader.
        c.set_view(vec![a.clone(), b.clone()]);
        for p in 0..40 {
            let p = PartitionId::new(topic, p);
            let id = c.leader_id(&p);
            if c.should_lead(&p) {
                assert!(a.info.has_broker_id(id), "{id}");
            } else {
                assert_eq!(id, 5);
            }
        }
        assert!(c.knows_broker_id(2003) && c.knows_broker_id(5));
        assert!(!c.knows_broker_id(1005) && !c.knows_broker_id(4003));
    }
}
