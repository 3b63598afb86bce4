//! The MetaStore's decisions, written once as pure functions of what a backend
//! read: whether a stream may write (its epoch), who may checkpoint, release
//! or claim a partition, whether a fence lands, what a stored flush record
//! says about a commit whose outcome was unknown, and which streams are dead.
//!
//! Memory and SQLite read and decide inside one lock or transaction and call
//! these directly. DynamoDB cannot read and write atomically, so it turns the
//! same decisions into condition expressions ([`claim_basis`] says what a
//! claim must rely on) and calls these functions again on what a failed
//! condition returns, to name the reason. The table tests below pin every
//! case; the contract suite checks each backend applies them.

use crate::error::{Error, Result};
use crate::types::{FlushRecord, Member, PartitionId, StreamId, TopicMeta};

/// A gateway's registration as stored: its current epoch and whether a peer
/// fenced that epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRecord {
    pub epoch: u64,
    pub fenced: bool,
}

/// A partition's stored owner and whether it released the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOwner {
    pub owner: StreamId,
    pub released: bool,
}

/// Whether `stream` is live as far as the store knows: its gateway's current
/// epoch, and not fenced.
pub fn is_live(stream: &StreamId, record: Option<EpochRecord>) -> bool {
    record.is_some_and(|r| r.epoch == stream.epoch && !r.fenced)
}

/// Whether `stream` may write (commit, checkpoint, claim, release, heartbeat):
/// `Fenced` unless it is live. `record` is its gateway's registration.
pub fn check_epoch(stream: &StreamId, record: Option<EpochRecord>) -> Result<()> {
    match record {
        Some(r) if r.epoch == stream.epoch && !r.fenced => Ok(()),
        Some(r) if r.epoch == stream.epoch => Err(Error::Fenced(format!(
            "{stream} was fenced: another gateway saw its heartbeat stop and took over its partitions"
        ))),
        Some(r) => Err(Error::Fenced(format!(
            "{stream} is stale: gateway {} is at epoch {}",
            stream.gateway, r.epoch
        ))),
        None => Err(Error::Fenced(format!("{stream} is not registered"))),
    }
}

/// A checkpoint of `p` by `me`: `me` must own it, or nobody may have claimed
/// it yet (the checkpoint then claims it).
pub fn check_checkpoint(me: &StreamId, p: PartitionId, stored: Option<&StoredOwner>) -> Result<()> {
    match stored {
        Some(s) if s.owner != *me => Err(not_owner(me, p, &s.owner)),
        _ => Ok(()),
    }
}

/// A release of `p` by `me`: `me` must own it.
pub fn check_release(me: &StreamId, p: PartitionId, stored: Option<&StoredOwner>) -> Result<()> {
    match stored {
        Some(s) if s.owner == *me => Ok(()),
        Some(s) => Err(not_owner(me, p, &s.owner)),
        None => Err(Error::Fenced(format!(
            "{me} cannot release {p}: never claimed"
        ))),
    }
}

/// What a claim must rely on when it lands, besides the claimer's own epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimBasis {
    /// Never claimed: the claim creates the partition's state.
    Unclaimed,
    /// The owner released it: the state must still say so.
    Released(StreamId),
    /// The owner did not release it: it must no longer be live (fenced, or
    /// superseded by a newer epoch of its gateway). `superseded_by_me`: it is
    /// an epoch of the claimer's own gateway, so the claimer's own epoch check
    /// decides: it passes only while the claimer is the gateway's current
    /// epoch, which makes the owner a superseded one.
    OwnerGone {
        owner: StreamId,
        superseded_by_me: bool,
    },
}

/// What a claim of `p` by `me`, which read `previous` as the owner, must rely
/// on given the stored owner; `Precondition` if the stored owner is not the one
/// the claimer read, or if the claimer would take it from itself unreleased.
pub fn claim_basis(
    me: &StreamId,
    p: PartitionId,
    previous: Option<&StreamId>,
    stored: Option<&StoredOwner>,
) -> Result<ClaimBasis> {
    match (stored, previous) {
        (None, None) => Ok(ClaimBasis::Unclaimed),
        (Some(s), Some(prev)) if s.owner == *prev && s.released => {
            Ok(ClaimBasis::Released(prev.clone()))
        }
        (Some(s), Some(prev)) if s.owner == *prev && prev != me => Ok(ClaimBasis::OwnerGone {
            owner: prev.clone(),
            superseded_by_me: prev.gateway == me.gateway,
        }),
        _ => Err(claim_conflict(me, p, previous, stored)),
    }
}

/// A whole claim decision, for stores that read the owner's registration in
/// the same transaction: [`claim_basis`], then an unreleased owner must not
/// be live. `owner_record` is the registration of the stored owner's gateway.
pub fn check_claim(
    me: &StreamId,
    p: PartitionId,
    previous: Option<&StreamId>,
    stored: Option<&StoredOwner>,
    owner_record: Option<EpochRecord>,
) -> Result<()> {
    match claim_basis(me, p, previous, stored)? {
        ClaimBasis::OwnerGone { owner, .. } if is_live(&owner, owner_record) => {
            Err(claim_conflict(me, p, previous, stored))
        }
        _ => Ok(()),
    }
}

/// The error for a claim whose expected owner is not what is stored, or is
/// still live and has not released the partition.
pub fn claim_conflict(
    me: &StreamId,
    p: PartitionId,
    expected: Option<&StreamId>,
    stored: Option<&StoredOwner>,
) -> Error {
    let expected = expected.map_or("no owner".to_string(), |s| s.to_string());
    Error::Precondition(match stored {
        None => format!("{me} cannot claim {p}: expected {expected}, but it was never claimed"),
        Some(s) if expected == s.owner.to_string() && !s.released => format!(
            "{me} cannot claim {p}: {} is live and has not released it",
            s.owner
        ),
        Some(s) => format!(
            "{me} cannot claim {p}: expected {expected}, owned by {}",
            s.owner
        ),
    })
}

/// A write by `me` to a partition another stream owns.
pub fn not_owner(me: &StreamId, p: PartitionId, owner: &StreamId) -> Error {
    Error::Fenced(format!("{me} no longer owns partition {p}: {owner} does"))
}

/// What `fence_gateway(target, observed)` does, given the target gateway's
/// registration and heartbeat counter as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceDecision {
    /// The target is current and silent since `observed`: fence it.
    Fence,
    /// The target is already fenced, superseded or was never registered:
    /// nothing to do, the fence holds.
    AlreadyGone,
    /// The target heartbeated since (its counter is now the value held): it
    /// is alive, the caller must not fence it.
    Alive(u64),
}

pub fn decide_fence(
    target: &StreamId,
    observed: u64,
    stored: Option<(EpochRecord, u64)>,
) -> FenceDecision {
    match stored {
        Some((r, hb)) if r.epoch == target.epoch && !r.fenced => {
            if hb == observed {
                FenceDecision::Fence
            } else {
                FenceDecision::Alive(hb)
            }
        }
        _ => FenceDecision::AlreadyGone,
    }
}

/// The error for a fence refused because the target heartbeated.
pub fn fence_refused(target: &StreamId, observed: u64, now: u64) -> Error {
    Error::Precondition(format!(
        "{target} heartbeated since ({observed} -> {now}): it is alive"
    ))
}

/// What the record stored at a commit's (stream, seq) says about the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// This very record is stored: the commit landed (maybe by an earlier
    /// attempt whose answer was lost).
    Landed,
    /// Nothing is stored there: the commit did not land (and, for a fresh
    /// commit, may be written).
    Absent,
    /// Another record holds the place: a bug or a second writer of one stream.
    Conflict,
}

pub fn commit_outcome(record: &FlushRecord, stored: Option<&FlushRecord>) -> CommitOutcome {
    match stored {
        Some(s) if s == record => CommitOutcome::Landed,
        Some(_) => CommitOutcome::Conflict,
        None => CommitOutcome::Absent,
    }
}

/// The error for a commit whose (stream, seq) holds another record.
pub fn commit_conflict(record: &FlushRecord) -> Error {
    Error::AlreadyExists(format!(
        "flush {} #{} holds a different record",
        record.stream, record.seq
    ))
}

/// Whether `stream` is dead given the membership: superseded by a newer
/// epoch of its gateway, or fenced. A dead stream commits nothing more; its
/// flush records may be trimmed once every partition it owned has been
/// claimed by someone else (who replayed them).
pub fn is_dead(stream: &StreamId, members: &[Member]) -> bool {
    members.iter().any(|m| {
        m.stream.gateway == stream.gateway
            && (m.stream.epoch > stream.epoch || (m.stream == *stream && m.fenced))
    })
}

/// A topic update against the stored topic: same id, the next version.
pub fn check_topic_update(stored: Option<&TopicMeta>, new: &TopicMeta) -> Result<()> {
    match stored {
        Some(s) if s.id == new.id && s.version + 1 == new.version => Ok(()),
        Some(s) => Err(Error::Precondition(format!(
            "topic {} is at version {} (id {}), update expected {} (id {})",
            new.name,
            s.version,
            s.id,
            new.version.saturating_sub(1),
            new.id
        ))),
        None => Err(Error::NotFound(format!("topic {}", new.name))),
    }
}

/// An index swap against the stored index version: only on the version the
/// compaction loaded (another swap since then made its plan stale).
pub fn check_index_version(p: PartitionId, stored: u64, expected: u64) -> Result<()> {
    if stored == expected {
        Ok(())
    } else {
        Err(stale_index(p, stored, expected))
    }
}

pub fn stale_index(p: PartitionId, stored: u64, expected: u64) -> Error {
    Error::Precondition(format!(
        "partition {p}: index version is {stored}, the swap was planned on {expected}"
    ))
}

/// A group store over what is stored: a coordinator behind the stored
/// generation cannot roll the group back.
pub fn check_group_store(group: &str, stored: Option<i32>, new: i32) -> Result<()> {
    match stored {
        Some(g) if g > new => Err(stale_group(group, g, new)),
        _ => Ok(()),
    }
}

pub fn stale_group(group: &str, stored: i32, attempted: i32) -> Error {
    Error::Precondition(format!(
        "group {group} is stored at generation {stored}; refusing to roll it back to {attempted}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::types::{GatewayInfo, TopicId};

    fn st(g: &str, e: u64) -> StreamId {
        StreamId {
            gateway: g.into(),
            epoch: e,
        }
    }
    fn rec(epoch: u64, fenced: bool) -> Option<EpochRecord> {
        Some(EpochRecord { epoch, fenced })
    }
    fn own(g: &str, e: u64, released: bool) -> Option<StoredOwner> {
        Some(StoredOwner {
            owner: st(g, e),
            released,
        })
    }
    fn kind<T: std::fmt::Debug>(r: Result<T>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }
    const P: PartitionId = PartitionId {
        topic: TopicId::from_u128(1),
        partition: 0,
    };

    #[test]
    fn epochs() {
        let me = st("a", 2);
        let cases = [
            (rec(2, false), None, true),
            (rec(2, true), Some(ErrorKind::Fenced), false),
            (rec(3, false), Some(ErrorKind::Fenced), false),
            (rec(1, false), Some(ErrorKind::Fenced), false),
            (None, Some(ErrorKind::Fenced), false),
        ];
        for (record, err, live) in cases {
            assert_eq!(kind(check_epoch(&me, record)), err, "{record:?}");
            assert_eq!(is_live(&me, record), live, "{record:?}");
        }
        let e = check_epoch(&me, rec(2, true)).unwrap_err();
        assert!(e.to_string().contains("was fenced"), "{e}");
    }

    #[test]
    fn checkpoints_and_releases() {
        let me = st("a", 2);
        let cases = [
            // stored, checkpoint, release
            (None, None, Some(ErrorKind::Fenced)),
            (own("a", 2, false), None, None),
            (own("a", 2, true), None, None),
            (
                own("b", 1, false),
                Some(ErrorKind::Fenced),
                Some(ErrorKind::Fenced),
            ),
            (
                own("a", 1, false),
                Some(ErrorKind::Fenced),
                Some(ErrorKind::Fenced),
            ),
        ];
        for (stored, cp, rel) in cases {
            assert_eq!(
                kind(check_checkpoint(&me, P, stored.as_ref())),
                cp,
                "{stored:?}"
            );
            assert_eq!(
                kind(check_release(&me, P, stored.as_ref())),
                rel,
                "{stored:?}"
            );
        }
    }

    #[test]
    fn claims() {
        let me = st("a", 5);
        let b1 = st("b", 1);
        let a4 = st("a", 4);
        let pre = Some(ErrorKind::Precondition);
        struct Case<'a> {
            prev: Option<&'a StreamId>,
            stored: Option<StoredOwner>,
            /// The stored owner's registration.
            record: Option<EpochRecord>,
            basis: Option<ClaimBasis>,
            decision: Option<ErrorKind>,
        }
        let gone = |owner: &StreamId, superseded_by_me| {
            Some(ClaimBasis::OwnerGone {
                owner: owner.clone(),
                superseded_by_me,
            })
        };
        let cases = [
            Case {
                prev: None,
                stored: None,
                record: None,
                basis: Some(ClaimBasis::Unclaimed),
                decision: None,
            },
            // Someone claimed it since the claimer read "never claimed".
            Case {
                prev: None,
                stored: own("b", 1, false),
                record: rec(1, false),
                basis: None,
                decision: pre,
            },
            // Expected an owner, but it is gone from the store.
            Case {
                prev: Some(&b1),
                stored: None,
                record: None,
                basis: None,
                decision: pre,
            },
            // The owner released it.
            Case {
                prev: Some(&b1),
                stored: own("b", 1, true),
                record: rec(1, false),
                basis: Some(ClaimBasis::Released(b1.clone())),
                decision: None,
            },
            // Unreleased: only once the owner is fenced or superseded.
            Case {
                prev: Some(&b1),
                stored: own("b", 1, false),
                record: rec(1, false),
                basis: gone(&b1, false),
                decision: pre,
            },
            Case {
                prev: Some(&b1),
                stored: own("b", 1, false),
                record: rec(1, true),
                basis: gone(&b1, false),
                decision: None,
            },
            Case {
                prev: Some(&b1),
                stored: own("b", 1, false),
                record: rec(2, false),
                basis: gone(&b1, false),
                decision: None,
            },
            // The stored owner is not the one read.
            Case {
                prev: Some(&b1),
                stored: own("c", 1, true),
                record: rec(1, false),
                basis: None,
                decision: pre,
            },
            // An older epoch of my own gateway: my epoch proves it superseded.
            Case {
                prev: Some(&a4),
                stored: own("a", 4, false),
                record: rec(5, false),
                basis: gone(&a4, true),
                decision: None,
            },
            // Never from myself unreleased; released is fine.
            Case {
                prev: Some(&me),
                stored: own("a", 5, false),
                record: rec(5, false),
                basis: None,
                decision: pre,
            },
            Case {
                prev: Some(&me),
                stored: own("a", 5, true),
                record: rec(5, false),
                basis: Some(ClaimBasis::Released(me.clone())),
                decision: None,
            },
        ];
        for c in cases {
            let b = claim_basis(&me, P, c.prev, c.stored.as_ref());
            assert_eq!(
                b.as_ref().ok(),
                c.basis.as_ref(),
                "{:?} {:?}",
                c.prev,
                c.stored
            );
            if c.basis.is_none() {
                assert_eq!(kind(b), pre);
            }
            assert_eq!(
                kind(check_claim(&me, P, c.prev, c.stored.as_ref(), c.record)),
                c.decision,
                "{:?} {:?} {:?}",
                c.prev,
                c.stored,
                c.record
            );
        }
    }

    #[test]
    fn fences() {
        let t = st("b", 3);
        let cases = [
            (None, FenceDecision::AlreadyGone),
            (
                Some((
                    EpochRecord {
                        epoch: 3,
                        fenced: false,
                    },
                    7,
                )),
                FenceDecision::Fence,
            ),
            (
                Some((
                    EpochRecord {
                        epoch: 3,
                        fenced: false,
                    },
                    8,
                )),
                FenceDecision::Alive(8),
            ),
            (
                Some((
                    EpochRecord {
                        epoch: 3,
                        fenced: true,
                    },
                    7,
                )),
                FenceDecision::AlreadyGone,
            ),
            (
                Some((
                    EpochRecord {
                        epoch: 4,
                        fenced: false,
                    },
                    7,
                )),
                FenceDecision::AlreadyGone,
            ),
        ];
        for (stored, want) in cases {
            assert_eq!(decide_fence(&t, 7, stored), want, "{stored:?}");
        }
    }

    #[test]
    fn commit_outcomes() {
        let r = FlushRecord {
            stream: st("a", 1),
            seq: 3,
            object_key: "k".into(),
            object_len: 1,
            created_ms: 0,
            partitions: Vec::new(),
        };
        let other = FlushRecord {
            object_key: "other".into(),
            ..r.clone()
        };
        assert_eq!(commit_outcome(&r, Some(&r)), CommitOutcome::Landed);
        assert_eq!(commit_outcome(&r, None), CommitOutcome::Absent);
        assert_eq!(commit_outcome(&r, Some(&other)), CommitOutcome::Conflict);
        assert_eq!(commit_conflict(&r).kind(), ErrorKind::AlreadyExists);
    }

    #[test]
    fn dead_streams() {
        let m = |g: &str, e: u64, fenced: bool| Member {
            stream: st(g, e),
            info: GatewayInfo::at(""),
            heartbeat: 0,
            fenced,
        };
        let members = [m("a", 3, false), m("b", 2, true)];
        assert!(is_dead(&st("a", 2), &members), "superseded");
        assert!(!is_dead(&st("a", 3), &members), "current");
        assert!(is_dead(&st("b", 2), &members), "fenced");
        assert!(is_dead(&st("b", 1), &members), "older than a fenced one");
        assert!(
            !is_dead(&st("c", 1), &members),
            "unknown gateway: not provably dead"
        );
    }

    #[test]
    fn topic_and_group_versions() {
        let t = TopicMeta {
            name: "t".into(),
            id: TopicId::from_u128(9),
            partitions: 1,
            configs: Default::default(),
            created_ms: 0,
            version: 2,
        };
        let next = TopicMeta {
            version: 3,
            ..t.clone()
        };
        assert!(check_topic_update(Some(&t), &next).is_ok());
        assert_eq!(
            kind(check_topic_update(Some(&t), &t)),
            Some(ErrorKind::Precondition)
        );
        assert_eq!(
            kind(check_topic_update(None, &next)),
            Some(ErrorKind::NotFound)
        );
        let other = TopicMeta {
            id: TopicId::from_u128(10),
            ..next
        };
        assert_eq!(
            kind(check_topic_update(Some(&t), &other)),
            Some(ErrorKind::Precondition)
        );
        assert!(check_group_store("g", None, 0).is_ok());
        assert!(check_group_store("g", Some(3), 3).is_ok());
        assert!(check_group_store("g", Some(3), 4).is_ok());
        assert_eq!(
            kind(check_group_store("g", Some(4), 3)),
            Some(ErrorKind::Precondition)
        );
    }
}
