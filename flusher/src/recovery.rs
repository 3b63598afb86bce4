//! Taking partitions over: each partition's stored checkpoint and index plus
//! its previous owner's untrimmed flush records (the rule of
//! `floe_core::index::rebuild`), then a claim: a full checkpoint under this
//! incarnation, storing every entry the store did not hold yet, conditional
//! on that previous owner having released the partition or no longer being
//! live.
//!
//! The caller reads the previous owner's state only after its release or fence
//! is committed, so every flush it acknowledged is either in the checkpoint or
//! in the records replayed here. One read of each owner's records serves all of
//! its partitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_core::index::rebuild;
use floe_core::meta::SharedMetaStore;
use floe_core::types::{
    FlushRecord, IndexEntry, PartitionCheckpoint, PartitionId, PartitionSnapshot, StreamId,
};
use floe_core::{Error, Result};

use crate::log::PartitionLog;

/// One partition to take over: its slot and its state as just read from the
/// MetaStore (`None`: never claimed).
#[derive(Debug)]
pub struct Adoption {
    pub log: Arc<PartitionLog>,
    pub stored: Option<PartitionSnapshot>,
}

/// Claims each partition for `me` and loads it into its slot. `checkpoint_seq`
/// is `me`'s committed flush seq now (none of `me`'s records touch these
/// partitions yet). Returns each partition's outcome: `Precondition` means the
/// previous owner still holds it.
pub async fn adopt_partitions(
    meta: &SharedMetaStore,
    me: &StreamId,
    checkpoint_seq: u64,
    adoptions: Vec<Adoption>,
) -> Vec<(PartitionId, Result<()>)> {
    // One read of each previous owner's untrimmed records serves all its
    // partitions.
    let owners: std::collections::BTreeSet<StreamId> = adoptions
        .iter()
        .filter_map(|a| a.stored.as_ref().map(|s| s.owner.clone()))
        .collect();
    let mut records: BTreeMap<StreamId, Result<Vec<FlushRecord>>> = BTreeMap::new();
    for owner in owners {
        let r = meta.read_flushes(&owner, 0).await;
        records.insert(owner, r);
    }
    let mut out = Vec::with_capacity(adoptions.len());
    for a in adoptions {
        let id = a.log.id;
        let r = adopt_one(meta, me, checkpoint_seq, a, &records).await;
        out.push((id, r));
    }
    out
}

async fn adopt_one(
    meta: &SharedMetaStore,
    me: &StreamId,
    checkpoint_seq: u64,
    a: Adoption,
    records: &BTreeMap<StreamId, Result<Vec<FlushRecord>>>,
) -> Result<()> {
    let id = a.log.id;
    let previous = a.stored.as_ref().map(|s| s.owner.clone());
    let mut snap = a.stored.unwrap_or_else(|| PartitionSnapshot {
        owner: me.clone(),
        released: false,
        checkpoint_seq: 0,
        next_offset: 0,
        log_start_offset: 0,
        producers: BTreeMap::new(),
        entries: Vec::new(),
    });
    let stored: std::collections::HashSet<IndexEntry> = snap.entries.iter().cloned().collect();
    let recs: &[FlushRecord] = match &previous {
        None => &[],
        Some(owner) => match records.get(owner) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(Error::Unavailable(format!("reading {owner}: {e}"))),
            None => return Err(Error::Internal(format!("records of {owner} not read"))),
        },
    };
    // A stored index read mid-compaction may miss a range (`Corrupt`): the
    // claim waits for the next round's read.
    let replayed = rebuild(&mut snap, id, recs, 0)?;
    // The claim stores what only the records held: this incarnation trims
    // its own records, never the previous owner's.
    let new_entries: Vec<_> = snap
        .entries
        .iter()
        .filter(|e| !stored.contains(*e))
        .cloned()
        .collect();
    let cp = PartitionCheckpoint {
        partition: id,
        owner: me.clone(),
        checkpoint_seq,
        next_offset: snap.next_offset,
        log_start_offset: snap.log_start_offset,
        producers: snap.producers.clone(),
        new_entries,
    };
    meta.claim_partition(me, previous.as_ref(), &cp).await?;
    let end = snap.next_offset;
    a.log.load(snap, end);
    a.log.mark_all_checkpointed();
    tracing::info!(
        partition = %id,
        from = %previous.map_or("nobody".to_string(), |p| p.to_string()),
        replayed,
        "partition claimed"
    );
    Ok(())
}

/// Takes over every partition in `partitions` (a gateway that leads them all:
/// a single-gateway deployment) and then trims the flush records of `me`'s
/// earlier incarnations, now folded into the claims.
pub async fn recover_partition_logs(
    meta: &SharedMetaStore,
    me: &StreamId,
    partitions: &[PartitionId],
) -> Result<std::collections::HashMap<PartitionId, Arc<PartitionLog>>> {
    let mut adoptions = Vec::with_capacity(partitions.len());
    for &p in partitions {
        adoptions.push(Adoption {
            log: PartitionLog::unowned(p),
            stored: meta.load_partition(p).await?,
        });
    }
    let logs: std::collections::HashMap<_, _> = adoptions
        .iter()
        .map(|a| (a.log.id, a.log.clone()))
        .collect();
    for (_, r) in adopt_partitions(meta, me, 0, adoptions).await {
        r?;
    }
    trim_streams(meta, |s| s.gateway == me.gateway && s.epoch < me.epoch).await?;
    Ok(logs)
}

/// Trims every stream `dead` selects: call only once every partition those
/// streams owned has been claimed by someone else.
pub async fn trim_streams(
    meta: &SharedMetaStore,
    dead: impl Fn(&StreamId) -> bool,
) -> Result<usize> {
    let streams: Vec<StreamId> = meta
        .flush_streams()
        .await?
        .into_iter()
        .filter(|s| dead(s))
        .collect();
    for s in &streams {
        meta.trim_flushes(s, u64::MAX).await?;
    }
    Ok(streams.len())
}
