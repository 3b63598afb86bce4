//! The embedded MetaStore: SQLite in WAL mode with `synchronous=FULL`, so a
//! committed flush record survives `kill -9` and power loss. The tables mirror the
//! DynamoDB single-table schema, one table per item kind:
//!
//! | table | key | holds |
//! |---|---|---|
//! | `gateways` | gateway | current epoch, fenced flag, heartbeat counter, advertised address, zone, node id |
//! | `topics` | name | id, partitions, configs (JSON), version |
//! | `flushes` | gateway, epoch, seq | flush record (JSON) |
//! | `partitions` | topic id, partition | owner stream, released flag, checkpoint seq, next offset, log start, producer state (JSON) |
//! | `partition_index` | topic id, partition, base offset | one index entry |
//! | `counters` | name | producer id allocation |
//! | `group_offsets` | group, topic, partition | committed offset (JSON: offset, leader epoch, metadata, time) |
//! | `groups` | group | generation, membership state (JSON) |
//!
//! Several gateway processes on one machine may share the file: every call is
//! one `BEGIN IMMEDIATE` transaction, so checks and writes never interleave.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::MetaStore;
use super::rules::{
    CommitOutcome, EpochRecord, FenceDecision, StoredOwner, check_checkpoint, check_claim,
    check_epoch, check_group_store, check_index_version, check_release, check_topic_update,
    commit_conflict, commit_outcome, decide_fence, fence_refused,
};
use crate::error::{Error, Result};
use crate::types::{
    CommittedOffset, DeletedTopic, FlushRecord, GatewayInfo, GroupOffsets, IndexEntry, Member,
    PartitionCheckpoint, PartitionId, PartitionSnapshot, StoredGroup, StreamId, TopicId, TopicMeta,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY, epoch INTEGER NOT NULL, advertised TEXT, zone TEXT,
    heartbeat_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, id BLOB NOT NULL, partitions INTEGER NOT NULL,
    configs TEXT NOT NULL, created_ms INTEGER NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS flushes (
    gateway TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (gateway, epoch, seq));
CREATE TABLE IF NOT EXISTS partitions (
    topic_id BLOB NOT NULL, partition INTEGER NOT NULL, owner_gateway TEXT NOT NULL,
    owner_epoch INTEGER NOT NULL, checkpoint_seq INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    log_start_offset INTEGER NOT NULL, producers TEXT NOT NULL,
    PRIMARY KEY (topic_id, partition));
CREATE TABLE IF NOT EXISTS partition_index (
    topic_id BLOB NOT NULL, partition INTEGER NOT NULL, base_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL, max_timestamp INTEGER NOT NULL, object_key TEXT NOT NULL,
    position INTEGER NOT NULL, length INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset));
CREATE TABLE IF NOT EXISTS deleted_topics (
    id BLOB PRIMARY KEY, name TEXT NOT NULL, partitions INTEGER NOT NULL,
    deleted_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    committed TEXT NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL, state TEXT NOT NULL);
";

/// Columns added after the first release: (table, column, declaration).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("gateways", "node_id", "INTEGER NOT NULL DEFAULT 0"),
    ("gateways", "hb", "INTEGER NOT NULL DEFAULT 0"),
    ("gateways", "fenced", "INTEGER NOT NULL DEFAULT 0"),
    ("gateways", "broker_ids", "INTEGER NOT NULL DEFAULT 1"),
    ("partitions", "released", "INTEGER NOT NULL DEFAULT 0"),
    ("partitions", "index_version", "INTEGER NOT NULL DEFAULT 0"),
];

/// Brings a file written by an earlier release up to `SCHEMA` + `ADDED_COLUMNS`.
fn migrate(conn: &Connection) -> Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let present: bool = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                params![column],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db_err)?
            > 0;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                .map_err(db_err)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    conn: Arc<Mutex<Connection>>,
}

fn db_err(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Error::Unavailable(format!("sqlite: {e}"))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Error::Corrupt(format!("sqlite: {e}"))
        }
        _ => Error::Unavailable(format!("sqlite: {e}")),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

fn unjson<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("decode stored metadata: {e}")))
}

/// `gateway`'s registration, and its heartbeat counter.
fn gateway_epoch(tx: &Connection, gateway: &str) -> Result<Option<(EpochRecord, u64)>> {
    tx.query_row(
        "SELECT epoch, fenced, hb FROM gateways WHERE gateway = ?1",
        params![gateway],
        |r| {
            Ok((
                EpochRecord {
                    epoch: r.get::<_, i64>(0)? as u64,
                    fenced: r.get::<_, bool>(1)?,
                },
                r.get::<_, i64>(2)? as u64,
            ))
        },
    )
    .optional()
    .map_err(db_err)
}

fn check_fence(tx: &Connection, stream: &StreamId) -> Result<()> {
    check_epoch(stream, gateway_epoch(tx, &stream.gateway)?.map(|(r, _)| r))
}

/// A partition's stored owner and released flag.
fn partition_owner(tx: &Connection, p: PartitionId) -> Result<Option<StoredOwner>> {
    tx.query_row(
        "SELECT owner_gateway, owner_epoch, released FROM partitions
         WHERE topic_id = ?1 AND partition = ?2",
        params![p.topic.as_bytes().to_vec(), p.partition],
        |r| {
            Ok(StoredOwner {
                owner: StreamId {
                    gateway: r.get(0)?,
                    epoch: r.get::<_, i64>(1)? as u64,
                },
                released: r.get::<_, bool>(2)?,
            })
        },
    )
    .optional()
    .map_err(db_err)
}

/// Stores checkpoints with `owner` as owner (the caller checked it may).
fn store_checkpoints(
    tx: &Connection,
    owner: &StreamId,
    rows: &[(PartitionCheckpoint, String)],
    released: bool,
) -> Result<()> {
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO partitions (topic_id, partition, owner_gateway, owner_epoch,
               checkpoint_seq, next_offset, log_start_offset, producers, released)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (topic_id, partition) DO UPDATE SET owner_gateway = ?3,
               owner_epoch = ?4, checkpoint_seq = ?5, next_offset = ?6,
               log_start_offset = ?7, producers = ?8, released = ?9",
        )
        .map_err(db_err)?;
    let mut index = tx
        .prepare_cached(
            "INSERT INTO partition_index (topic_id, partition, base_offset, last_offset,
               max_timestamp, object_key, position, length)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (topic_id, partition, base_offset) DO NOTHING",
        )
        .map_err(db_err)?;
    for (cp, producers) in rows {
        let tid = cp.partition.topic.as_bytes().to_vec();
        upsert
            .execute(params![
                tid,
                cp.partition.partition,
                owner.gateway,
                owner.epoch as i64,
                cp.checkpoint_seq as i64,
                cp.next_offset,
                cp.log_start_offset,
                producers,
                released
            ])
            .map_err(db_err)?;
        for e in &cp.new_entries {
            index
                .execute(params![
                    tid,
                    cp.partition.partition,
                    e.base_offset,
                    e.last_offset,
                    e.max_timestamp,
                    e.object_key,
                    e.position as i64,
                    e.length as i64
                ])
                .map_err(db_err)?;
        }
    }
    Ok(())
}

fn checkpoint_rows(
    checkpoints: &[PartitionCheckpoint],
) -> Result<Vec<(PartitionCheckpoint, String)>> {
    checkpoints
        .iter()
        .map(|cp| Ok((cp.clone(), json(&cp.producers)?)))
        .collect()
}

fn read_topic(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, Vec<u8>, i32, String, i64, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn to_topic(t: (String, Vec<u8>, i32, String, i64, i64)) -> Result<TopicMeta> {
    let id = TopicId::from_slice(&t.1).map_err(|e| Error::Corrupt(format!("topic id: {e}")))?;
    Ok(TopicMeta {
        name: t.0,
        id,
        partitions: t.2,
        configs: unjson(&t.3)?,
        created_ms: t.4,
        version: t.5 as u64,
    })
}

impl SqliteMetaStore {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create metadata dir", e))?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        Self::init(conn)
    }

    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        // One writer at a time: gateways starting together on one file must not
        // both add a column.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        let schema = conn
            .execute_batch(SCHEMA)
            .map_err(db_err)
            .and_then(|()| migrate(&conn));
        match schema {
            Ok(()) => conn.execute_batch("COMMIT").map_err(db_err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        Ok(SqliteMetaStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one transaction on a blocking thread.
    async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| Error::Internal(format!("metadata task failed: {e}")))?
    }
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn register_gateway(&self, gateway: &str, info: &GatewayInfo) -> Result<u64> {
        let gateway = gateway.to_string();
        let info = info.clone();
        self.tx(move |tx| {
            let current: Option<i64> = tx
                .query_row(
                    "SELECT epoch FROM gateways WHERE gateway = ?1",
                    params![gateway],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let epoch = current.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO gateways (gateway, epoch, advertised, zone, heartbeat_ms, node_id,
                   broker_ids, hb, fenced)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0)
                 ON CONFLICT (gateway) DO UPDATE SET epoch = ?2, advertised = ?3, zone = ?4,
                 heartbeat_ms = ?5, node_id = ?6, broker_ids = ?7, hb = 0, fenced = 0",
                params![
                    gateway,
                    epoch,
                    info.advertised,
                    info.zone,
                    info.heartbeat_ms,
                    info.node_id,
                    info.broker_ids
                ],
            )
            .map_err(db_err)?;
            Ok(epoch as u64)
        })
        .await
    }

    async fn heartbeat(&self, me: &StreamId) -> Result<u64> {
        let me = me.clone();
        self.tx(move |tx| {
            check_fence(tx, &me)?;
            tx.query_row(
                "UPDATE gateways SET hb = hb + 1 WHERE gateway = ?1 RETURNING hb",
                params![me.gateway],
                |r| r.get::<_, i64>(0),
            )
            .map(|hb| hb as u64)
            .map_err(db_err)
        })
        .await
    }

    async fn list_members(&self) -> Result<Vec<Member>> {
        self.tx(|tx| {
            let mut st = tx
                .prepare(
                    "SELECT gateway, epoch, advertised, zone, heartbeat_ms, node_id, hb, fenced,
                       broker_ids
                     FROM gateways ORDER BY gateway",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok(Member {
                        stream: StreamId {
                            gateway: r.get(0)?,
                            epoch: r.get::<_, i64>(1)? as u64,
                        },
                        info: GatewayInfo {
                            advertised: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                            zone: r.get(3)?,
                            heartbeat_ms: r.get(4)?,
                            node_id: r.get(5)?,
                            broker_ids: r.get(8)?,
                        },
                        heartbeat: r.get::<_, i64>(6)? as u64,
                        fenced: r.get(7)?,
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn fence_gateway(&self, target: &StreamId, observed: u64) -> Result<()> {
        let target = target.clone();
        self.tx(move |tx| {
            match decide_fence(&target, observed, gateway_epoch(tx, &target.gateway)?) {
                FenceDecision::AlreadyGone => Ok(()),
                FenceDecision::Alive(now) => Err(fence_refused(&target, observed, now)),
                FenceDecision::Fence => {
                    tx.execute(
                        "UPDATE gateways SET fenced = 1 WHERE gateway = ?1",
                        params![target.gateway],
                    )
                    .map_err(db_err)?;
                    Ok(())
                }
            }
        })
        .await
    }

    async fn create_topic(&self, topic: &TopicMeta) -> Result<()> {
        let t = topic.clone();
        let configs = json(&t.configs)?;
        self.tx(move |tx| {
            let n = tx
                .execute(
                    "INSERT INTO topics (name, id, partitions, configs, created_ms, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
                    params![
                        t.name,
                        t.id.as_bytes().to_vec(),
                        t.partitions,
                        configs,
                        t.created_ms,
                        t.version as i64
                    ],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::AlreadyExists(format!("topic {}", t.name)));
            }
            Ok(())
        })
        .await
    }

    async fn update_topic(&self, topic: &TopicMeta) -> Result<()> {
        let t = topic.clone();
        let configs = json(&t.configs)?;
        self.tx(move |tx| {
            let stored = tx
                .query_row(
                    "SELECT name, id, partitions, configs, created_ms, version FROM topics WHERE name = ?1",
                    params![t.name],
                    read_topic,
                )
                .optional()
                .map_err(db_err)?
                .map(to_topic)
                .transpose()?;
            check_topic_update(stored.as_ref(), &t)?;
            tx.execute(
                "UPDATE topics SET partitions = ?2, configs = ?3, version = ?4 WHERE name = ?1",
                params![t.name, t.partitions, configs, t.version as i64],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_topic(&self, name: &str, id: TopicId, deleted_ms: i64) -> Result<()> {
        let name = name.to_string();
        self.tx(move |tx| {
            let partitions: Option<i64> = tx
                .query_row(
                    "DELETE FROM topics WHERE name = ?1 AND id = ?2 RETURNING partitions",
                    params![name, id.as_bytes().to_vec()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let Some(partitions) = partitions else {
                return Err(Error::NotFound(format!("topic {name} ({id})")));
            };
            tx.execute(
                "INSERT OR REPLACE INTO deleted_topics (id, name, partitions, deleted_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id.as_bytes().to_vec(), name, partitions, deleted_ms],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn deleted_topics(&self) -> Result<Vec<DeletedTopic>> {
        self.tx(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT name, id, partitions, deleted_ms FROM deleted_topics
                     ORDER BY deleted_ms",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (name, id, partitions, deleted_ms) = row.map_err(db_err)?;
                out.push(DeletedTopic {
                    id: TopicId::from_slice(&id)
                        .map_err(|e| Error::Corrupt(format!("deleted topic id: {e}")))?,
                    name,
                    partitions: partitions as i32,
                    deleted_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn forget_topic(&self, topic: &DeletedTopic) -> Result<()> {
        let id = topic.id.as_bytes().to_vec();
        self.tx(move |tx| {
            for table in ["partition_index", "partitions"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE topic_id = ?1"),
                    params![id],
                )
                .map_err(db_err)?;
            }
            tx.execute("DELETE FROM deleted_topics WHERE id = ?1", params![id])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        let name = name.to_string();
        self.tx(move |tx| {
            tx.query_row(
                "SELECT name, id, partitions, configs, created_ms, version FROM topics WHERE name = ?1",
                params![name],
                read_topic,
            )
            .optional()
            .map_err(db_err)?
            .map(to_topic)
            .transpose()
        })
        .await
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        self.tx(|tx| {
            let mut st = tx
                .prepare("SELECT name, id, partitions, configs, created_ms, version FROM topics ORDER BY name")
                .map_err(db_err)?;
            let rows = st.query_map([], read_topic).map_err(db_err)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(to_topic(r.map_err(db_err)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn commit_flush(&self, record: &FlushRecord) -> Result<()> {
        let r = record.clone();
        let body = json(record)?;
        self.tx(move |tx| {
            check_fence(tx, &r.stream)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT record FROM flushes WHERE gateway = ?1 AND epoch = ?2 AND seq = ?3",
                    params![r.stream.gateway, r.stream.epoch as i64, r.seq as i64],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let existing: Option<FlushRecord> = existing.as_deref().map(unjson).transpose()?;
            match commit_outcome(&r, existing.as_ref()) {
                CommitOutcome::Landed => return Ok(()),
                CommitOutcome::Conflict => return Err(commit_conflict(&r)),
                CommitOutcome::Absent => {}
            }
            tx.execute(
                "INSERT INTO flushes (gateway, epoch, seq, record) VALUES (?1, ?2, ?3, ?4)",
                params![r.stream.gateway, r.stream.epoch as i64, r.seq as i64, body],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn read_flushes(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<FlushRecord>> {
        let s = stream.clone();
        // Clamped like `trim_flushes`: `u64::MAX as i64` is -1, which would match all.
        let after = after_seq.min(i64::MAX as u64) as i64;
        self.tx(move |tx| {
            let mut st = tx
                .prepare(
                    "SELECT record FROM flushes WHERE gateway = ?1 AND epoch = ?2 AND seq > ?3
                     ORDER BY seq",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![s.gateway, s.epoch as i64, after], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(unjson(&r.map_err(db_err)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn trim_flushes(&self, stream: &StreamId, through_seq: u64) -> Result<()> {
        let s = stream.clone();
        let through = through_seq.min(i64::MAX as u64) as i64;
        self.tx(move |tx| {
            tx.execute(
                "DELETE FROM flushes WHERE gateway = ?1 AND epoch = ?2 AND seq <= ?3",
                params![s.gateway, s.epoch as i64, through],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn flush_streams(&self) -> Result<Vec<StreamId>> {
        self.tx(|tx| {
            let mut st = tx
                .prepare("SELECT DISTINCT gateway, epoch FROM flushes ORDER BY gateway, epoch")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok(StreamId {
                        gateway: r.get(0)?,
                        epoch: r.get::<_, i64>(1)? as u64,
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn write_checkpoints(
        &self,
        fence: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        let fence = fence.clone();
        let rows = checkpoint_rows(checkpoints)?;
        self.tx(move |tx| {
            check_fence(tx, &fence)?;
            for (cp, _) in &rows {
                check_checkpoint(
                    &fence,
                    cp.partition,
                    partition_owner(tx, cp.partition)?.as_ref(),
                )?;
            }
            store_checkpoints(tx, &fence, &rows, false)
        })
        .await
    }

    async fn claim_partition(
        &self,
        me: &StreamId,
        previous: Option<&StreamId>,
        checkpoint: &PartitionCheckpoint,
    ) -> Result<()> {
        let me = me.clone();
        let previous = previous.cloned();
        let rows = checkpoint_rows(std::slice::from_ref(checkpoint))?;
        self.tx(move |tx| {
            check_fence(tx, &me)?;
            let p = rows[0].0.partition;
            let stored = partition_owner(tx, p)?;
            let owner_record = match &stored {
                Some(o) => gateway_epoch(tx, &o.owner.gateway)?.map(|(r, _)| r),
                None => None,
            };
            check_claim(&me, p, previous.as_ref(), stored.as_ref(), owner_record)?;
            store_checkpoints(tx, &me, &rows, false)
        })
        .await
    }

    async fn release_partitions(
        &self,
        me: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        let me = me.clone();
        let rows = checkpoint_rows(checkpoints)?;
        self.tx(move |tx| {
            check_fence(tx, &me)?;
            for (cp, _) in &rows {
                check_release(
                    &me,
                    cp.partition,
                    partition_owner(tx, cp.partition)?.as_ref(),
                )?;
            }
            store_checkpoints(tx, &me, &rows, true)
        })
        .await
    }

    async fn load_partition_from(
        &self,
        partition: PartitionId,
        from_offset: i64,
    ) -> Result<Option<PartitionSnapshot>> {
        self.tx(move |tx| {
            let tid = partition.topic.as_bytes().to_vec();
            let head = tx
                .query_row(
                    "SELECT owner_gateway, owner_epoch, checkpoint_seq, next_offset, log_start_offset,
                       producers, released FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                    params![tid, partition.partition],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, bool>(6)?,
                        ))
                    },
                )
                .optional()
                .map_err(db_err)?;
            let Some((gw, epoch, seq, next, start, producers, released)) = head else {
                return Ok(None);
            };
            let mut st = tx
                .prepare_cached(
                    "SELECT base_offset, last_offset, max_timestamp, object_key, position, length
                     FROM partition_index WHERE topic_id = ?1 AND partition = ?2 AND base_offset >= ?3
                     ORDER BY base_offset",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![tid, partition.partition, from_offset], |r| {
                    Ok(IndexEntry {
                        base_offset: r.get(0)?,
                        last_offset: r.get(1)?,
                        max_timestamp: r.get(2)?,
                        object_key: r.get(3)?,
                        position: r.get::<_, i64>(4)? as u64,
                        length: r.get::<_, i64>(5)? as u32,
                    })
                })
                .map_err(db_err)?;
            let entries = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)?;
            Ok(Some(PartitionSnapshot {
                owner: StreamId {
                    gateway: gw,
                    epoch: epoch as u64,
                },
                released,
                checkpoint_seq: seq as u64,
                next_offset: next,
                log_start_offset: start,
                producers: unjson(&producers)?,
                entries,
            }))
        })
        .await
    }

    async fn index_version(&self, partition: PartitionId) -> Result<u64> {
        self.tx(move |tx| {
            let v: Option<i64> = tx
                .query_row(
                    "SELECT index_version FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                    params![partition.topic.as_bytes().to_vec(), partition.partition],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            Ok(v.unwrap_or(0) as u64)
        })
        .await
    }

    async fn swap_index(
        &self,
        partition: PartitionId,
        version: u64,
        merged: &[IndexEntry],
    ) -> Result<()> {
        let merged = merged.to_vec();
        self.tx(move |tx| {
            let tid = partition.topic.as_bytes().to_vec();
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT index_version FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                    params![tid, partition.partition],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let stored = stored.ok_or_else(|| Error::NotFound(format!("partition {partition}")))?;
            check_index_version(partition, stored as u64, version)?;
            for e in &merged {
                // In the same transaction, what it covers goes; an owner storing
                // one of those again later is covered again.
                tx.execute(
                    "DELETE FROM partition_index WHERE topic_id = ?1 AND partition = ?2
                       AND base_offset >= ?3 AND base_offset <= ?4",
                    params![tid, partition.partition, e.base_offset, e.last_offset],
                )
                .map_err(db_err)?;
                tx.execute(
                    "INSERT INTO partition_index (topic_id, partition, base_offset, last_offset,
                       max_timestamp, object_key, position, length)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        tid,
                        partition.partition,
                        e.base_offset,
                        e.last_offset,
                        e.max_timestamp,
                        e.object_key,
                        e.position as i64,
                        e.length as i64
                    ],
                )
                .map_err(db_err)?;
            }
            tx.execute(
                "UPDATE partitions SET index_version = index_version + 1
                 WHERE topic_id = ?1 AND partition = ?2",
                params![tid, partition.partition],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_index(&self, partition: PartitionId, entries: &[IndexEntry]) -> Result<()> {
        let entries = entries.to_vec();
        self.tx(move |tx| {
            let tid = partition.topic.as_bytes().to_vec();
            let mut del = tx
                .prepare_cached(
                    "DELETE FROM partition_index WHERE topic_id = ?1 AND partition = ?2
                       AND base_offset = ?3 AND last_offset = ?4 AND object_key = ?5",
                )
                .map_err(db_err)?;
            for e in &entries {
                del.execute(params![
                    tid,
                    partition.partition,
                    e.base_offset,
                    e.last_offset,
                    e.object_key
                ])
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &std::collections::BTreeMap<i32, CommittedOffset>,
    ) -> Result<()> {
        let (group, topic) = (group.to_string(), topic.to_string());
        let mut rows = Vec::with_capacity(offsets.len());
        for (p, o) in offsets {
            rows.push((*p, json(o)?));
        }
        self.tx(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO group_offsets (group_id, topic, partition, committed)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (group_id, topic, partition) DO UPDATE SET committed = ?4",
                )
                .map_err(db_err)?;
            for (p, body) in &rows {
                st.execute(params![group, topic, p, body]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn fetch_offsets(&self, group: &str) -> Result<GroupOffsets> {
        let group = group.to_string();
        self.tx(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT topic, partition, committed FROM group_offsets WHERE group_id = ?1",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![group], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = GroupOffsets::new();
            for r in rows {
                let (t, p, body) = r.map_err(db_err)?;
                out.entry(t).or_default().insert(p, unjson(&body)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_offsets(&self, group: &str, topic: &str, partitions: &[i32]) -> Result<()> {
        let (group, topic, partitions) =
            (group.to_string(), topic.to_string(), partitions.to_vec());
        self.tx(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "DELETE FROM group_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3",
                )
                .map_err(db_err)?;
            for p in &partitions {
                st.execute(params![group, topic, p]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn store_group(&self, group: &str, state: &StoredGroup) -> Result<()> {
        let group = group.to_string();
        let generation = state.generation;
        let body = json(state)?;
        self.tx(move |tx| {
            let stored: Option<i32> = tx
                .query_row(
                    "SELECT generation FROM groups WHERE group_id = ?1",
                    params![group],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            check_group_store(&group, stored, generation)?;
            tx.execute(
                "INSERT INTO groups (group_id, generation, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_id) DO UPDATE SET generation = ?2, state = ?3",
                params![group, generation, body],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn load_group(&self, group: &str) -> Result<Option<StoredGroup>> {
        let group = group.to_string();
        self.tx(move |tx| {
            tx.query_row(
                "SELECT state FROM groups WHERE group_id = ?1",
                params![group],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db_err)?
            .map(|body| unjson(&body))
            .transpose()
        })
        .await
    }

    async fn list_groups(&self) -> Result<Vec<(String, StoredGroup)>> {
        self.tx(|tx| {
            let mut st = tx
                .prepare("SELECT group_id, state FROM groups ORDER BY group_id")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db_err)?;
            let mut out = Vec::new();
            for r in rows {
                let (g, body) = r.map_err(db_err)?;
                out.push((g, unjson(&body)?));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        let group = group.to_string();
        self.tx(move |tx| {
            tx.execute("DELETE FROM groups WHERE group_id = ?1", params![group])
                .map_err(db_err)?;
            tx.execute(
                "DELETE FROM group_offsets WHERE group_id = ?1",
                params![group],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn allocate_producer_ids(&self, count: u64) -> Result<i64> {
        self.tx(move |tx| {
            let current: i64 = tx
                .query_row(
                    "SELECT value FROM counters WHERE name = 'producer_id'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?
                .unwrap_or(0);
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('producer_id', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = ?1",
                params![current + count as i64],
            )
            .map_err(db_err)?;
            Ok(current)
        })
        .await
    }
}
