//! The compactor: merges a partition's small regions (one per flush that
//! touched it, each in a multi-partition flush object) into per-partition
//! objects of a few large regions, and swaps the partition's index to them.
//!
//! It needs only `floe-core`: it reads the MetaStore and the object store, and
//! never talks to a gateway. A pass over a partition:
//!
//! 1. reads the partition's index version (`MetaStore::index_version`), then
//!    its stored index (`load_partition`), in that order, so that a swap by
//!    anyone in between makes this pass's swap fail instead of overlapping it;
//! 2. plans (`plan`): runs of consecutive *small* live entries (shorter than
//!    half a region), packed in offset order into regions of at most
//!    `region_bytes` and objects of at most `object_bytes`. Only stored
//!    entries are planned, all below the stored checkpoint's end, so the
//!    owner, which appends past it, is never in the way;
//! 3. copies each planned region's bytes (one ranged GET per old entry,
//!    every batch checked: lengths, CRC-32C, offsets following on from the
//!    entry's base to its last) into a new segment object under a key of
//!    its own (`keys::compacted_key`: never reused, so an object that is
//!    unreferenced stays so);
//! 4. swaps: ONE `swap_index` per partition per pass stores the merged
//!    entries, conditional on the version read in step 1. Losing that race
//!    (`Precondition`) leaves the index as the winner made it; the loser's
//!    object is then referenced by nothing;
//! 5. deletes the index entries no load uses any more (`index::dead_entries`:
//!    covered by a merged entry, or wholly below the log start).
//!
//! Readers stay correct at every step: a merged entry holds byte-identical
//! batches at identical offsets, the covering rule (`index::live_entries`)
//! makes it supersede what it covers as soon as it is stored, and the old
//! objects stay where they are: an owner that loaded its index before the
//! swap keeps reading them. Compaction deletes no object.
//!
//! After the partitions, a pass removes the stored state of topics deleted
//! at least the object delete delay ago (`forget_deleted_topics`), then runs
//! the collection (`gc`), which deletes objects that nothing has referenced
//! for that delay: longer than any reader holds an old index.

pub mod clean;
pub mod gc;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_core::aws::AwsStatsSnapshot;
use floe_core::aws::cost::Cost;
use floe_core::backend::Stores;
use floe_core::clock::Clock;
use floe_core::index::{dead_entries, stored_prefix};
use floe_core::keys::compacted_key;
use floe_core::object_store::put_exactly;
use floe_core::segment::{RegionInfo, SegmentBuilder, check_batches_within};
use floe_core::topic_config::CleanerPolicy;
use floe_core::types::{FlushRecord, IndexEntry, PartitionId, StreamId};
use floe_core::{Error, ErrorKind, Result};

/// Merged entries one swap stores at most (DynamoDB allows 100 items in a
/// transaction; a swap adds its version update and a state check).
pub const MAX_SWAP_ENTRIES: usize = 96;

/// What a pass aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest region written (a run of one partition's batches that one index
    /// entry and one ranged GET cover): what a catch-up read fetches at once.
    pub region_bytes: u64,
    /// Largest object written (a PUT).
    pub object_bytes: u64,
    /// Unreferenced objects are deleted once found so for this long (`gc`);
    /// a compaction older than half this at its swap gives up.
    pub delete_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region_bytes: 4 << 20,
            object_bytes: 64 << 20,
            delete_delay: Duration::from_secs(3600),
        }
    }
}

impl Config {
    /// `compact-region-bytes` and `compact-object-bytes`.
    pub fn from_settings(settings: &floe_core::settings::Settings) -> Config {
        Config {
            region_bytes: settings.compact_region_bytes,
            object_bytes: settings.compact_object_bytes,
            delete_delay: settings.object_delete_delay,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.region_bytes < 1024 {
            return Err(Error::Config(format!(
                "compaction region size {} is below 1 KiB",
                self.region_bytes
            )));
        }
        if self.object_bytes < self.region_bytes || self.object_bytes > u64::from(u32::MAX) {
            return Err(Error::Config(format!(
                "compaction object size {} must be between the region size {} and 4 GiB",
                self.object_bytes, self.region_bytes
            )));
        }
        Ok(())
    }

    /// Entries shorter than this are merged; longer ones are left as they are.
    fn small(&self) -> u64 {
        self.region_bytes / 2
    }
}

/// One object to write: its regions, each the old entries it merges, in
/// offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPlan {
    pub regions: Vec<Vec<IndexEntry>>,
}

/// Plans a partition's compaction from its live entries (in offset order):
/// runs of consecutive small entries, at least two, packed greedily into
/// regions and objects. At most `MAX_SWAP_ENTRIES` regions in all.
pub fn plan(live: &[IndexEntry], config: &Config) -> Vec<ObjectPlan> {
    let mut runs: Vec<Vec<IndexEntry>> = Vec::new();
    let mut run: Vec<IndexEntry> = Vec::new();
    for e in live {
        let follows = run
            .last()
            .is_none_or(|l| l.last_offset.checked_add(1) == Some(e.base_offset));
        if u64::from(e.length) < config.small() && follows {
            run.push(e.clone());
            continue;
        }
        if run.len() >= 2 {
            runs.push(std::mem::take(&mut run));
        }
        run.clear();
        if u64::from(e.length) < config.small() {
            run.push(e.clone());
        }
    }
    if run.len() >= 2 {
        runs.push(run);
    }

    let mut objects = Vec::new();
    let mut regions_planned = 0;
    'runs: for run in runs {
        let mut object: Vec<Vec<IndexEntry>> = Vec::new();
        let mut object_len = 0u64;
        let mut region: Vec<IndexEntry> = Vec::new();
        let mut region_len = 0u64;
        for e in run {
            let len = u64::from(e.length);
            if !region.is_empty() && region_len + len > config.region_bytes {
                if object_len + region_len > config.object_bytes {
                    objects.push(ObjectPlan {
                        regions: std::mem::take(&mut object),
                    });
                    object_len = 0;
                }
                object_len += region_len;
                object.push(std::mem::take(&mut region));
                region_len = 0;
                regions_planned += 1;
                if regions_planned == MAX_SWAP_ENTRIES {
                    break;
                }
            }
            region.push(e);
            region_len += len;
        }
        if !region.is_empty() && regions_planned < MAX_SWAP_ENTRIES {
            if object_len + region_len > config.object_bytes {
                objects.push(ObjectPlan {
                    regions: std::mem::take(&mut object),
                });
            }
            object.push(region);
            regions_planned += 1;
        }
        if !object.is_empty() {
            objects.push(ObjectPlan { regions: object });
        }
        if regions_planned >= MAX_SWAP_ENTRIES {
            break 'runs;
        }
    }
    // A region of one entry (only the last of a run can be one: two small
    // entries always fit a region) merges nothing: it stays as it is. Its
    // merged entry would hold exactly the offsets of the entry it replaces.
    for o in &mut objects {
        o.regions.retain(|r| r.len() >= 2);
    }
    objects.retain(|o| !o.regions.is_empty());
    objects
}

/// What a pass did, summed over partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub partitions_seen: u64,
    pub partitions_compacted: u64,
    /// Partitions whose swap another compaction won (their objects are left
    /// unreferenced).
    pub swaps_lost: u64,
    /// Partitions whose compaction failed (logged; the next pass retries).
    pub partitions_failed: u64,
    pub get_requests: u64,
    pub bytes_read: u64,
    pub put_requests: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
    /// Index entries the merged entries replaced.
    pub entries_merged: u64,
    /// Merged entries stored.
    pub entries_written: u64,
    /// Index entries deleted (covered, or below the log start).
    pub entries_deleted: u64,
    /// Partitions key-compacted (`cleanup.policy=compact`, `clean`).
    pub partitions_cleaned: u64,
    /// Records key compaction dropped: older values of a key, and
    /// tombstones past `delete.retention.ms`.
    pub records_removed: u64,
    /// MetaStore calls: version and index reads, swaps, deletes.
    pub meta_reads: u64,
    pub meta_writes: u64,
    /// Deleted topics whose partitions' stored state was removed
    /// (`forget_deleted_topics`).
    pub topics_forgotten: u64,
    /// Deleted topics whose removal failed (logged; the next pass retries).
    pub topics_forget_failed: u64,
    /// The collection after the compactions (`gc`).
    pub gc: gc::GcReport,
    /// Requests the pass made, by kind, on the AWS backend (`None` on the
    /// embedded one, where requests cost nothing): counted by the stores it
    /// was given, so give a pass stores of its own (a gateway running passes
    /// opens a second set) for these to be the pass's alone.
    pub requests: Option<AwsStatsSnapshot>,
    /// The pass stopped at its deadline (`run_pass_until`) before the end.
    pub cut_short: bool,
    pub duration: Duration,
}

impl Report {
    fn add(&mut self, o: &Report) {
        self.partitions_seen += o.partitions_seen;
        self.partitions_compacted += o.partitions_compacted;
        self.swaps_lost += o.swaps_lost;
        self.partitions_failed += o.partitions_failed;
        self.get_requests += o.get_requests;
        self.bytes_read += o.bytes_read;
        self.put_requests += o.put_requests;
        self.objects_written += o.objects_written;
        self.bytes_written += o.bytes_written;
        self.entries_merged += o.entries_merged;
        self.entries_written += o.entries_written;
        self.entries_deleted += o.entries_deleted;
        self.partitions_cleaned += o.partitions_cleaned;
        self.records_removed += o.records_removed;
        self.meta_reads += o.meta_reads;
        self.meta_writes += o.meta_writes;
        self.topics_forgotten += o.topics_forgotten;
        self.topics_forget_failed += o.topics_forget_failed;
        self.cut_short |= o.cut_short;
    }
}

impl Report {
    /// The pass's requests at list prices (`floe_core::aws::cost`), on the
    /// AWS backend.
    pub fn cost(&self) -> Option<Cost> {
        self.requests.as_ref().map(Cost::of)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} partitions seen, {} compacted ({} key-compacted, {} records removed), \
             {} swaps lost, {} failed; read {} B in {} GETs, wrote {} objects ({} B) in {} PUTs; \
             {} index entries merged into {}, {} deleted; \
             {} metadata reads, {} metadata writes; {} deleted topics forgotten ({} failed); \
             objects: {} listed, {} referenced, {} unreferenced within the delay, \
             {} deleted ({} B); {:.3} s",
            self.partitions_seen,
            self.partitions_compacted,
            self.partitions_cleaned,
            self.records_removed,
            self.swaps_lost,
            self.partitions_failed,
            self.bytes_read,
            self.get_requests,
            self.objects_written,
            self.bytes_written,
            self.put_requests,
            self.entries_merged,
            self.entries_written,
            self.entries_deleted,
            self.meta_reads,
            self.meta_writes,
            self.topics_forgotten,
            self.topics_forget_failed,
            self.gc.objects_listed,
            self.gc.objects_referenced,
            self.gc.objects_pending,
            self.gc.objects_deleted,
            self.gc.bytes_deleted,
            self.duration.as_secs_f64()
        )?;
        if let (Some(r), Some(c)) = (&self.requests, self.cost()) {
            write!(
                f,
                "; requests: S3 {} PUT, {} GET, {} LIST, {} DELETE, DynamoDB {} ({:.1} RRU, \
                 {:.1} WRU); estimated ${:.6}",
                r.s3_put,
                r.s3_get,
                r.s3_list,
                r.s3_delete,
                r.ddb_requests,
                r.ddb_read_units,
                r.ddb_write_units,
                c.total()
            )?;
        }
        if self.cut_short {
            write!(f, "; cut short at its deadline")?;
        }
        Ok(())
    }
}

/// One pass: compacts every partition of every topic, then deletes the
/// objects found unreferenced for `delete_delay` (`gc::collect`, by the
/// wall-clock `clock`). A partition that fails is logged and counted; the
/// pass goes on (the next pass retries it).
pub async fn run_pass(stores: &Stores, config: &Config, clock: &dyn Clock) -> Result<Report> {
    run_pass_until(stores, config, clock, None).await
}

/// `run_pass` that starts no step (a partition, an object, the collection)
/// once `stop_at` has passed, and no compaction after three quarters of the
/// time to it (the collection gets the rest): the caller sets it early enough that a step
/// started before it finishes in time (a Lambda function: its deadline less a
/// margin). Every step is idempotent, so the next pass resumes: partitions
/// already compacted cost two reads. `Report::cut_short` says it stopped.
pub async fn run_pass_until(
    stores: &Stores,
    config: &Config,
    clock: &dyn Clock,
    stop_at: Option<Instant>,
) -> Result<Report> {
    config.validate()?;
    let started = Instant::now();
    // Compactions get three quarters of the time; the collection the rest.
    let compact_until = stop_at.map(|t| started + t.saturating_duration_since(started) * 3 / 4);
    let past = |t: Option<Instant>| t.is_some_and(|t| Instant::now() >= t);
    let mut report = Report::default();
    let counted_from = stores.aws_stats.as_ref().map(|s| s.snapshot());
    let topics = stores.meta.list_topics().await?;
    report.meta_reads += 1;
    let mut records = FlushRecords::default();
    for topic in topics {
        let cleaner = CleanerPolicy::of(&topic.configs);
        for partition in 0..topic.partitions {
            if past(compact_until) {
                report.cut_short = true;
                break;
            }
            let p = PartitionId::new(topic.id, partition);
            let now_ms = clock.now_ms();
            let cleaning = cleaner.as_ref().map(|c| (c, now_ms));
            match compact_partition_with(stores, p, config, cleaning, compact_until, &mut records)
                .await
            {
                Ok(r) => report.add(&r),
                Err(e) => {
                    tracing::warn!(partition = %p, topic = %topic.name, error = %e, "compaction failed");
                    report.partitions_seen += 1;
                    report.partitions_failed += 1;
                }
            }
        }
    }
    if past(stop_at) {
        report.cut_short = true;
    } else {
        // Its own failures are logged and retried by the next pass: the
        // collection runs whatever they are.
        if let Err(e) = forget_deleted_topics(stores, config, clock, stop_at, &mut report).await {
            tracing::warn!(error = %e, "deleted topics not read; the next pass retries");
        }
        if past(stop_at) {
            report.cut_short = true;
        } else {
            report.gc = gc::collect(stores, config.delete_delay, clock).await?;
        }
    }
    report.duration = started.elapsed();
    if let (Some(stats), Some(from)) = (&stores.aws_stats, counted_from) {
        report.requests = Some(stats.snapshot().since(&from));
    }
    tracing::info!(%report, "compaction pass");
    Ok(report)
}

/// Removes the stored partition state (checkpoints, index, index versions)
/// of topics deleted at least `delete_delay` ago. Gateways drop a deleted
/// topic's partitions as soon as they learn of the deletion, far sooner than
/// that: waiting the delay keeps a checkpoint already in flight from storing
/// a state after it was removed (it would stay behind, unreferenced). The
/// topic's objects go by the collection's rule: once no existing topic's
/// index references them.
///
/// A topic that fails is logged and counted (`topics_forget_failed`) and the
/// next pass retries it; none is started once `stop_at` has passed.
async fn forget_deleted_topics(
    stores: &Stores,
    config: &Config,
    clock: &dyn Clock,
    stop_at: Option<Instant>,
    report: &mut Report,
) -> Result<()> {
    let deleted = stores.meta.deleted_topics().await?;
    report.meta_reads += 1;
    let delay = i64::try_from(config.delete_delay.as_millis()).unwrap_or(i64::MAX);
    let now = clock.now_ms();
    for topic in deleted {
        if now.saturating_sub(topic.deleted_ms) < delay {
            continue;
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            report.cut_short = true;
            break;
        }
        report.meta_writes += 1;
        match stores.meta.forget_topic(&topic).await {
            Ok(()) => {
                report.topics_forgotten += 1;
                tracing::info!(topic = %topic.name, id = %topic.id, "deleted topic's partition state removed");
            }
            Err(e) => {
                report.topics_forget_failed += 1;
                tracing::warn!(topic = %topic.name, id = %topic.id, error = %e, "deleted topic's partition state not removed; the next pass retries");
            }
        }
    }
    Ok(())
}

/// Compacts one partition (see the module docs for the steps).
pub async fn compact_partition(stores: &Stores, p: PartitionId, config: &Config) -> Result<Report> {
    let mut records = FlushRecords::default();
    compact_partition_with(stores, p, config, None, None, &mut records).await
}

/// `compact_partition`, writing no further object once `stop_at` has passed
/// (the objects written are swapped in: each merged entry stands alone),
/// and key-compacting the partition as `cleaning` says (its topic's
/// `cleanup.policy=compact` rules and the wall-clock time now, in ms) when
/// it is due (`clean::due`). On a compacted topic only the dirty entries
/// (after the last cleaned one) are merged otherwise, so that the cleaned
/// objects keep saying how far it is clean.
pub async fn compact_partition_with(
    stores: &Stores,
    p: PartitionId,
    config: &Config,
    cleaning: Option<(&CleanerPolicy, i64)>,
    stop_at: Option<Instant>,
    records: &mut FlushRecords,
) -> Result<Report> {
    let mut r = Report {
        partitions_seen: 1,
        ..Report::default()
    };
    let version = stores.meta.index_version(p).await?;
    r.meta_reads += 1;
    let Some(mut snap) = stores.meta.load_partition(p).await? else {
        r.meta_reads += 1;
        return Ok(r);
    };
    r.meta_reads += 1;
    let stored = snap.entries.clone();
    // The log as readers see it (`index::rebuild`): the stored entries plus
    // those only the owner's flush records hold yet, from the log start to
    // the first gap (the owner appends past what the records read show; a
    // stored index read mid-swap may miss a range: the next pass gets it).
    let owned = records.of(stores, &snap.owner, &mut r).await?;
    for record in owned.iter() {
        for fp in record.partitions.iter().filter(|fp| fp.partition == p) {
            snap.entries.push(fp.index_entry(&record.object_key));
        }
    }
    snap.entries = stored_prefix(&snap)?.0;
    let started = Instant::now();
    let mut merged = Vec::new();
    let replaced: u64;
    let due = cleaning.and_then(|(c, now)| clean::due(&snap.entries, c, now).map(|n| (c, now, n)));
    if let Some((policy, now_ms, n)) = due {
        let range = &snap.entries[..n];
        let (entries, covered) = clean::clean(
            (stores, records),
            p,
            range,
            (policy, now_ms),
            config,
            stop_at,
            &mut r,
        )
        .await?;
        merged = entries;
        replaced = covered as u64;
    } else {
        let from = if cleaning.is_some() {
            clean::clean_end(&snap.entries)
        } else {
            0
        };
        let plans = before_first_gap(plan(&snap.entries[from..], config), &snap.entries, &stored);
        let mut done = 0;
        for object in &plans {
            if stop_at.is_some_and(|t| Instant::now() >= t) {
                r.cut_short = true;
                break;
            }
            merged.extend(write_object(stores, records, p, object, &mut r).await?);
            done += 1;
        }
        replaced = plans[..done]
            .iter()
            .flat_map(|o| &o.regions)
            .map(|reg| reg.len() as u64)
            .sum::<u64>();
    }
    if !merged.is_empty() && started.elapsed() > config.delete_delay / 2 {
        // Its objects may be found unreferenced for the whole delay by now.
        return Err(Error::Unavailable(format!(
            "partition {p}: compaction took {:?}, past half the object-delete delay; not swapped",
            started.elapsed()
        )));
    }
    if !merged.is_empty() {
        r.meta_writes += 1;
        match stores.meta.swap_index(p, version, &merged).await {
            Ok(()) => {
                r.partitions_compacted += 1;
                r.partitions_cleaned += u64::from(due.is_some());
                r.entries_written += merged.len() as u64;
                r.entries_merged += replaced;
            }
            Err(e) if e.kind() == ErrorKind::Precondition => {
                tracing::info!(partition = %p, error = %e, "another compaction swapped first");
                r.swaps_lost += 1;
                return Ok(r);
            }
            Err(e) => return Err(e),
        }
    }
    // Dead: covered by what is stored now, or below the log start; never a
    // merged entry just stored.
    let mut after = stored;
    after.extend(merged.iter().cloned());
    let dead: Vec<IndexEntry> = dead_entries(&after, snap.log_start_offset)
        .into_iter()
        .filter(|e| !merged.contains(e))
        .collect();
    if !dead.is_empty() {
        r.meta_writes += 1;
        stores.meta.delete_index(p, &dead).await?;
        r.entries_deleted += dead.len() as u64;
    }
    Ok(r)
}

/// `plans` without the regions past the first entry of `log` (the live
/// log, in offset order) that neither `stored` holds nor a region merges:
/// an entry only flush records hold, which the plan leaves as it is (a
/// large one, or a lone small one). Merged past it, the stored index would
/// have a gap there, and an owner adopts only the stored index's whole
/// prefix; it stores such an entry itself once it is due, and a later pass
/// goes on from there.
fn before_first_gap(
    mut plans: Vec<ObjectPlan>,
    log: &[IndexEntry],
    stored: &[IndexEntry],
) -> Vec<ObjectPlan> {
    let held: std::collections::HashSet<&IndexEntry> = stored.iter().collect();
    let planned: std::collections::HashSet<i64> = plans
        .iter()
        .flat_map(|o| o.regions.iter().flatten())
        .map(|e| e.base_offset)
        .collect();
    let gap = log
        .iter()
        .find(|e| !planned.contains(&e.base_offset) && !held.contains(e));
    if let Some(gap) = gap {
        for o in &mut plans {
            o.regions
                .retain(|r| r.last().is_some_and(|e| e.last_offset < gap.base_offset));
        }
        plans.retain(|o| !o.regions.is_empty());
    }
    plans
}

/// The untrimmed flush records of each stream a pass met, read once per
/// pass: a partition's index is its stored entries plus its owner's records.
/// Read before the partitions that use them are loaded (except the first),
/// so an owner trimming meanwhile has stored what it trimmed.
///
/// It also keeps the small flush objects a pass read (`SMALL_OBJECT`, up to
/// `OBJECT_CACHE_BYTES` in all): a flush object holds a region of each
/// partition it touched, and reading it whole once serves them all, where
/// a ranged GET per region would read it once per partition.
#[derive(Debug)]
pub struct FlushRecords {
    streams: std::collections::HashMap<StreamId, Arc<Vec<FlushRecord>>>,
    /// The length of each flush object the records read name.
    lengths: std::collections::HashMap<String, u64>,
    objects: quick_cache::unsync::Cache<String, Bytes, ObjectWeight>,
}

/// Flush objects up to this size are read whole, once per pass.
const SMALL_OBJECT: u64 = 4 << 20;
/// Bytes of small flush objects a pass keeps.
const OBJECT_CACHE_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, Copy)]
struct ObjectWeight;

impl quick_cache::Weighter<String, Bytes> for ObjectWeight {
    fn weight(&self, key: &String, val: &Bytes) -> u64 {
        (key.len() + val.len() + 64) as u64
    }
}

impl Default for FlushRecords {
    fn default() -> Self {
        FlushRecords {
            streams: std::collections::HashMap::new(),
            lengths: std::collections::HashMap::new(),
            objects: quick_cache::unsync::Cache::with_weighter(
                (OBJECT_CACHE_BYTES / SMALL_OBJECT) as usize * 16,
                OBJECT_CACHE_BYTES,
                ObjectWeight,
            ),
        }
    }
}

impl FlushRecords {
    async fn of(
        &mut self,
        stores: &Stores,
        stream: &StreamId,
        r: &mut Report,
    ) -> Result<Arc<Vec<FlushRecord>>> {
        if let Some(recs) = self.streams.get(stream) {
            return Ok(recs.clone());
        }
        r.meta_reads += 1;
        let recs = Arc::new(stores.meta.read_flushes(stream, 0).await?);
        for rec in recs.iter() {
            self.lengths.insert(rec.object_key.clone(), rec.object_len);
        }
        self.streams.insert(stream.clone(), recs.clone());
        Ok(recs)
    }

    /// The bytes of `e`'s region: from a small flush object read whole (once
    /// per pass), else one ranged GET.
    pub(crate) async fn read_entry(
        &mut self,
        stores: &Stores,
        e: &IndexEntry,
        r: &mut Report,
    ) -> Result<Bytes> {
        let end = entry_end(e)?;
        let small = self
            .lengths
            .get(&e.object_key)
            .is_some_and(|&len| len <= SMALL_OBJECT && end <= len);
        if !small {
            return read_range(stores, e, r).await;
        }
        let whole = match self.objects.get(&e.object_key) {
            Some(b) => b.clone(),
            None => {
                r.get_requests += 1;
                let b = stores.objects.get(&e.object_key).await?;
                r.bytes_read += b.len() as u64;
                self.objects.insert(e.object_key.clone(), b.clone());
                b
            }
        };
        let range = usize::try_from(e.position)
            .ok()
            .zip(usize::try_from(end).ok());
        match range {
            Some((from, to)) if to <= whole.len() => Ok(whole.slice(from..to)),
            _ => Err(Error::Corrupt(format!(
                "index entry {e:?} ends past its object ({} bytes)",
                whole.len()
            ))),
        }
    }
}

/// Copies the regions of `object` into one new object; returns its entries.
async fn write_object(
    stores: &Stores,
    records: &mut FlushRecords,
    p: PartitionId,
    object: &ObjectPlan,
    r: &mut Report,
) -> Result<Vec<IndexEntry>> {
    let total: u64 = object
        .regions
        .iter()
        .flatten()
        .map(|e| u64::from(e.length))
        .sum();
    let mut builder = SegmentBuilder::with_capacity(total as usize);
    let mut infos = Vec::with_capacity(object.regions.len());
    for region in &object.regions {
        let position = builder.position();
        let mut batches = 0u32;
        let mut max_timestamp = i64::MIN;
        for e in region {
            let bytes = records.read_entry(stores, e, r).await?;
            // Key compaction leaves gaps between batches, never offsets
            // outside the entry.
            let run = check_batches_within(&bytes, e.base_offset, e.last_offset)
                .map_err(|err| in_entry(p, e, err))?;
            builder.push_bytes(&bytes);
            batches += run.batch_count;
            max_timestamp = max_timestamp.max(e.max_timestamp);
        }
        let (Some(first), Some(last)) = (region.first(), region.last()) else {
            continue;
        };
        infos.push(builder.finish_region(
            p,
            position,
            first.base_offset,
            last.last_offset,
            max_timestamp,
            batches,
        ));
    }
    put_object(stores, p, builder, infos, compacted_key, r).await
}

/// Stores the object `builder` holds, whose regions are `infos`, under the
/// key `key_of` names for its offsets and a fresh nonce; returns the
/// regions' index entries.
pub(crate) async fn put_object(
    stores: &Stores,
    p: PartitionId,
    builder: SegmentBuilder,
    infos: Vec<RegionInfo>,
    key_of: fn(PartitionId, i64, i64, uuid::Uuid) -> String,
    r: &mut Report,
) -> Result<Vec<IndexEntry>> {
    let (Some(first), Some(last)) = (infos.first(), infos.last()) else {
        return Ok(Vec::new());
    };
    let key = key_of(p, first.base_offset, last.last_offset, uuid::Uuid::new_v4());
    let body: Bytes = builder.finish();
    let len = body.len() as u64;
    r.put_requests += 1;
    put_exactly(&*stores.objects, &key, body).await?;
    r.objects_written += 1;
    r.bytes_written += len;
    Ok(infos
        .into_iter()
        .map(|i| IndexEntry {
            base_offset: i.base_offset,
            last_offset: i.last_offset,
            max_timestamp: i.max_timestamp,
            object_key: key.clone(),
            position: i.position,
            length: i.length,
        })
        .collect())
}

/// Where `e`'s region ends in its object.
fn entry_end(e: &IndexEntry) -> Result<u64> {
    e.position
        .checked_add(u64::from(e.length))
        .ok_or_else(|| Error::Corrupt(format!("index entry {e:?} ends past 2^64")))
}

/// `e`'s region by one ranged GET.
async fn read_range(stores: &Stores, e: &IndexEntry, r: &mut Report) -> Result<Bytes> {
    r.get_requests += 1;
    let end = entry_end(e)?;
    let bytes = stores
        .objects
        .get_range(&e.object_key, e.position..end)
        .await?;
    r.bytes_read += bytes.len() as u64;
    Ok(bytes)
}

pub(crate) fn in_entry(p: PartitionId, e: &IndexEntry, err: Error) -> Error {
    Error::Corrupt(format!(
        "partition {p}: region {}..={} in {} at {}: {err}",
        e.base_offset, e.last_offset, e.object_key, e.position
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(base: i64, last: i64, len: u32) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: base,
            object_key: format!("o{base}"),
            position: 0,
            length: len,
        }
    }

    fn shape(plans: &[ObjectPlan]) -> Vec<Vec<Vec<i64>>> {
        plans
            .iter()
            .map(|o| {
                o.regions
                    .iter()
                    .map(|r| r.iter().map(|x| x.base_offset).collect())
                    .collect()
            })
            .collect()
    }

    const CFG: Config = Config {
        region_bytes: 1000,
        object_bytes: 2000,
        delete_delay: Duration::from_secs(3600),
    };

    #[test]
    fn small_runs_pack_into_regions_and_objects() {
        // Ten entries of 300 B: regions of three (900 B), objects of two regions.
        let live: Vec<_> = (0..10).map(|i| e(i * 10, i * 10 + 9, 300)).collect();
        assert_eq!(
            shape(&plan(&live, &CFG)),
            vec![
                vec![vec![0, 10, 20], vec![30, 40, 50]],
                vec![vec![60, 70, 80]], // 90 alone would merge nothing
            ]
        );
    }

    #[test]
    fn large_entries_split_runs_and_lone_entries_stay() {
        let live = vec![
            e(0, 9, 100),
            e(10, 19, 100),
            e(20, 29, 700), // not small (>= half a region): stays
            e(30, 39, 100), // a run of one: nothing to merge
            e(40, 49, 900),
            e(50, 59, 100),
            e(60, 69, 100),
        ];
        assert_eq!(
            shape(&plan(&live, &CFG)),
            vec![vec![vec![0, 10]], vec![vec![50, 60]]]
        );
    }

    /// Merged past an entry nobody stored (only flush records hold it), the
    /// stored index would have a gap an owner cannot adopt across: the plan
    /// stops before it, unless the store holds it.
    #[test]
    fn a_plan_stops_before_an_unstored_entry_it_leaves() {
        let live = vec![
            e(0, 9, 100),
            e(10, 19, 100),
            e(20, 29, 700), // left as it is
            e(30, 39, 100),
            e(40, 49, 100),
        ];
        let plans = || plan(&live, &CFG);
        assert_eq!(
            shape(&before_first_gap(plans(), &live, &[])),
            vec![vec![vec![0, 10]]]
        );
        assert_eq!(
            shape(&before_first_gap(plans(), &live, &live[2..3])),
            vec![vec![vec![0, 10]], vec![vec![30, 40]]],
            "stored: no gap"
        );
        assert_eq!(
            shape(&before_first_gap(plan(&live[2..], &CFG), &live[2..], &[])),
            Vec::<Vec<Vec<i64>>>::new(),
            "the first entry is the gap"
        );
    }

    #[test]
    fn a_swap_stays_within_its_entry_limit() {
        let live: Vec<_> = (0..1000).map(|i| e(i, i, 300)).collect();
        let cfg = Config {
            region_bytes: 1024,
            object_bytes: 1 << 20,
            delete_delay: Duration::from_secs(3600),
        };
        let regions: usize = plan(&live, &cfg).iter().map(|o| o.regions.len()).sum();
        assert_eq!(regions, MAX_SWAP_ENTRIES);
    }

    #[test]
    fn config_is_checked() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            region_bytes: 10 << 20,
            object_bytes: 1 << 20,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::Config);
    }
}
