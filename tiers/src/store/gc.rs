//! Garbage collection: retention, mark, sweep, compaction, and the cold tier's leftovers
//! ([`Store::gc`]).
//!
//! # Steps
//!
//! 1. **Retention.** Expired refs, and refs that a `[[retention]]` rule gives up (beyond
//!    `keep_last`, or older than a rule's `ttl` when set without one), are deleted, each in a
//!    transaction that re-checks the ref is unchanged; deletions are queued for the cold tier
//!    like any other.
//! 2. **Mark.** From every live ref (of the tenant, or of all) to its manifest, to the chunks
//!    it names. The mark set is a sorted, deduplicated vector of 40-byte chunk keys.
//! 3. **Sweep.** Every chunk row (of the tenant, or of all) not in the mark set and not touched
//!    within the grace period is removed from hot, warm and cold index and its row dropped, in
//!    transactions of [`SWEEP_BATCH`] rows. Then unmarked manifests go from the index.
//! 4. **Compaction.** Warm packs and cold pack objects whose live share is under
//!    `compact_below` are rewritten (`warm_compact.rs`, `cold_gc.rs`), and their old files
//!    and objects deleted. Cold objects nothing points at go too: packs this sweep emptied at
//!    once, others (a crashed upload's) once older than [`ORPHAN_AGE`] or the grace period.
//! 5. **The cold tier's copies of metadata.** After the write-behind has uploaded what is
//!    queued (the deletions of step 1 among it), unmarked manifest objects and the objects of
//!    deleted and expired refs are removed, so a rebuild restores exactly the live refs.
//!
//! One GC runs at a time ([`Error::GcRunning`]). Cancellation is checked between batches: what
//! a cancelled run finished stays done, and every step is safe to repeat.
//!
//! # Safety against pushes in flight
//!
//! A push is FindMissing, then uploads of the chunks the server lacks, then a commit. Two
//! rules keep a GC from losing one:
//!
//! - **A commit re-checks presence in the transaction that sets its ref** (`ingest.rs`). If the
//!   sweep removed a chunk the client skipped because FindMissing saw it, the commit fails
//!   with [`Error::MissingChunks`] (`FAILED_PRECONDITION`, listing them), stores nothing, and
//!   the client uploads them and commits again.
//! - **A commit that lands while a GC runs marks its chunks live for that run.** Before the mark
//!   step reads anything, the GC opens a *landed* set and passes one empty job through the LMDB
//!   writer, so every commit whose transaction the mark step's snapshot misses runs after the
//!   set exists. Each commit adds its chunk keys and manifest key to the set inside its own
//!   write job, and the sweep re-checks the set inside each of its write jobs. Jobs run one at
//!   a time on the writer thread, so either the commit's job runs first (its chunks are in the
//!   set when the sweep looks) or the sweep's does (the commit's re-check fails, rule one).
//!
//! Chunks uploaded but not yet committed are protected by the grace period only: a GC with a
//! grace shorter than a push takes may sweep them, and that push's commit then fails by rule
//! one and is retried.
//!
//! # Memory
//!
//! The mark set costs 40 bytes per distinct live chunk: **about 40 MB per million live
//! chunks**, plus, while manifests are read, their entries not yet deduplicated (merged
//! whenever they reach the size of the set, so at most as much again: a peak of about 80 MB per
//! million). The sweep reads [`SWEEP_BATCH`] rows at a time. Chunks landing during the run
//! cost a hash-set entry each (about 60 bytes).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::lifecycle_types::{GcOptions, GcReport, Progress};
use super::{Engine, Store};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::Manifest;
use crate::meta::{ChunkInfo, ChunkKey};
use crate::names::{Namespace, RefKey, Tenant, TenantId};
use crate::refs::RefRecord;

/// Chunk rows read, and swept, per transaction.
pub(crate) const SWEEP_BATCH: usize = 4096;
/// Cold pack objects that no index entry names, and that this run did not empty, are deleted
/// only once older than this (or the grace period, if longer): an upload writes its object
/// before it indexes it.
pub(crate) const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// Chunk and manifest keys of the commits that landed while a GC runs.
#[derive(Debug, Default)]
pub(crate) struct Landed {
    chunks: HashSet<ChunkKey>,
    manifests: HashSet<[u8; 40]>,
}

/// Whether a GC runs, and what landed meanwhile.
#[derive(Debug, Default)]
pub(crate) struct GcState {
    started: Mutex<Option<Instant>>,
    landed: Arc<Mutex<Option<Landed>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Both are valid after any panic (at worst a run's landed set keeps more chunks).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GcState {
    /// The handle commits note their keys through (inside their write jobs).
    pub(crate) fn landed(&self) -> Arc<Mutex<Option<Landed>>> {
        self.landed.clone()
    }
}

/// Notes a commit's chunks and manifest when a GC's mark step has begun (called inside the
/// commit's write job).
pub(crate) fn note_commit(
    landed: &Mutex<Option<Landed>>,
    tenant: TenantId,
    manifest: &Manifest,
    mkey: [u8; 40],
) {
    if let Some(set) = lock(landed).as_mut() {
        set.manifests.insert(mkey);
        set.chunks.extend(
            manifest
                .entries()
                .iter()
                .map(|e| ChunkKey::new(tenant, &e.id)),
        );
    }
}

/// Ends a run: drops the landed set and the running mark.
struct Running<'a>(&'a GcState);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *lock(&self.0.landed) = None;
        *lock(&self.0.started) = None;
    }
}

/// What a run covers.
#[derive(Clone, Debug)]
struct Scope {
    tenant: Option<TenantId>,
    /// `tenant/` (the refs of its namespaces), or empty for every tenant.
    ns_prefix: Vec<u8>,
}

impl Scope {
    fn new(tenant: Option<&Tenant>) -> Self {
        Self {
            tenant: tenant.map(Tenant::id),
            ns_prefix: tenant.map_or_else(Vec::new, |t| format!("{t}/").into_bytes()),
        }
    }

    /// The key prefix of the tenant's rows in the per-tenant tables.
    fn key_prefix(&self) -> Vec<u8> {
        self.tenant.map(|t| t.0.to_vec()).unwrap_or_default()
    }
}

/// Reports the step, and stops at a safe point when asked.
struct Steps<'a> {
    cancel: &'a CancellationToken,
    progress: &'a watch::Sender<Progress>,
}

impl Steps<'_> {
    fn at(&self, phase: &'static str, done: u64, total: u64) -> Result<()> {
        self.progress.send_replace(Progress { phase, done, total });
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled(format!("gc (in its {phase} step)")));
        }
        Ok(())
    }
}

/// A ref as the refs table holds it.
struct StoredRef {
    table_key: Vec<u8>,
    ns: Namespace,
    key: RefKey,
    record: RefRecord,
}

impl Store {
    /// Runs one garbage collection (see the module docs); returns once sweep, compaction and
    /// deletion are done. Fails with [`Error::GcRunning`] while another runs, with
    /// [`Error::Cancelled`] when `cancel` fires (at the next safe point).
    pub async fn gc(
        &self,
        opts: GcOptions,
        cancel: CancellationToken,
        progress: watch::Sender<Progress>,
    ) -> Result<GcReport> {
        let e = self.engine()?;
        let started = Instant::now();
        {
            let mut running = lock(&e.gc.started);
            if let Some(at) = *running {
                return Err(Error::GcRunning {
                    started_s: at.elapsed().as_secs(),
                });
            }
            *running = Some(started);
        }
        let _running = Running(&e.gc);
        let steps = Steps {
            cancel: &cancel,
            progress: &progress,
        };
        let scope = Scope::new(opts.tenant.as_ref());
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let now_ms = e.meta.clock().now_ms();

        steps.at("retention", 0, 0)?;
        let doomed = super::retention::plan(&e, &scope.ns_prefix, now_ms).await?;
        report.expired_refs = doomed.expired;
        report.retention = doomed.outcomes.clone();
        if !opts.dry_run {
            super::retention::apply(&e, &doomed.refs).await?;
        }
        let doomed_keys: HashSet<Vec<u8>> = if opts.dry_run {
            doomed.refs.iter().map(|(k, _)| k.clone()).collect()
        } else {
            HashSet::new()
        };

        steps.at("mark", 0, 0)?;
        *lock(&e.gc.landed) = Some(Landed::default());
        // Every commit whose job ran before the landed set existed is committed after this.
        e.meta.write(|_, _| Ok(())).await?;
        let marked = mark(self, &e, &scope, now_ms, &doomed_keys, &steps).await?;
        report.live_refs = marked.refs.len() as u64;
        report.live_chunks = marked.chunks.len() as u64;

        let swept =
            sweep_chunks(&e, &scope, &marked.chunks, opts.grace, opts.dry_run, &steps).await?;
        report.swept_chunks = swept.chunks;
        report.swept_bytes = swept.bytes;
        report.kept_young_chunks = swept.young;
        report.swept_manifests =
            sweep_manifests(&e, &scope, &marked.manifests, opts.dry_run).await?;
        if opts.dry_run {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        let documents = super::lookups::sweep_documents(&e, scope.key_prefix()).await?;
        tracing::debug!(
            documents,
            "dropped the lookup rows of documents no blob holds"
        );

        steps.at("compact", 0, 0)?;
        let below = opts.compact_below;
        let warm = e.warm.clone();
        let stop = cancel.clone();
        let compacted =
            crate::blocking::run(move || warm.compact_now(below, &|| stop.is_cancelled())).await?;
        report.compacted_packs += compacted.packs;
        report.compacted_bytes += compacted.freed;

        steps.at("cold", 0, 0)?;
        // The deletions above, and what else is queued, reach the cold tier first.
        crate::writeback::drain(&e.uploader, true).await?;
        let cold = compact_cold(&e, &scope, &swept.packs, &opts, now_ms, &steps).await?;
        report.compacted_packs += cold.compacted_packs;
        report.compacted_bytes += cold.compacted_bytes;
        report.deleted_objects += cold.deleted_objects;
        let (landed_manifests, marked_manifests) = (e.gc.landed(), marked.manifests.clone());
        let keep = move |tenant: TenantId, id: &ManifestId| {
            let key = crate::meta::manifest_key(tenant, id);
            marked_manifests.binary_search(&key).is_ok()
                || lock(&landed_manifests)
                    .as_ref()
                    .is_some_and(|l| l.manifests.contains(&key))
        };
        let before = now_ms.saturating_sub(duration_ms(opts.grace));
        report.deleted_objects += e.cold.sweep_manifests(scope.tenant, keep, before).await?;
        report.deleted_objects += e
            .cold
            .sweep_ref_objects(scope.tenant, &marked.ref_hashes, now_ms)
            .await?;
        super::quota::forget(&e, scope.tenant);
        report.seconds = started.elapsed().as_secs_f64();
        steps.at("done", 1, 1).ok();
        tracing::info!(?report, "garbage collection done");
        Ok(report)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the mark step found live.
struct Marked {
    /// Live refs' table keys.
    refs: Vec<Vec<u8>>,
    /// Their cold ref hashes (`cold_refs.rs`).
    ref_hashes: HashSet<[u8; 32]>,
    /// Sorted, distinct.
    chunks: Vec<ChunkKey>,
    /// Sorted, distinct manifest keys.
    manifests: Vec<[u8; 40]>,
}

/// Sorts and deduplicates.
fn settle<T: Ord>(v: &mut Vec<T>) {
    v.sort_unstable();
    v.dedup();
}

/// Reads every live ref and its manifest; fails when a manifest no tier holds (its chunks
/// cannot be told from garbage, so nothing is swept).
async fn mark(
    store: &Store,
    e: &Arc<Engine>,
    scope: &Scope,
    now_ms: u64,
    doomed: &HashSet<Vec<u8>>,
    steps: &Steps<'_>,
) -> Result<Marked> {
    let prefix = scope.ns_prefix.clone();
    let refs: Vec<StoredRef> = e
        .meta
        .read(move |t, txn| {
            let mut out = Vec::new();
            for item in t.refs.prefix_iter(txn, &prefix)? {
                let (k, v) = item?;
                let record = super::refs::decode_ref(v, k)?;
                if record.is_expired(now_ms) {
                    continue;
                }
                let (ns, key) = super::refs::parse_ref_key(k)?;
                out.push(StoredRef {
                    table_key: k.to_vec(),
                    ns,
                    key,
                    record,
                });
            }
            Ok(out)
        })
        .await?;
    let refs: Vec<StoredRef> = refs
        .into_iter()
        .filter(|r| !doomed.contains(&r.table_key))
        .collect();
    let mut manifests: Vec<([u8; 40], Tenant, ManifestId, usize)> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let tenant = r.ns.tenant();
        manifests.push((
            crate::meta::manifest_key(tenant.id(), &r.record.manifest),
            tenant.clone(),
            r.record.manifest,
            i,
        ));
    }
    manifests.sort_unstable_by_key(|m| m.0);
    manifests.dedup_by(|a, b| a.0 == b.0);
    let total = manifests.len() as u64;
    let mut chunks: Vec<ChunkKey> = Vec::new();
    let mut settled = 0;
    for (done, (_, tenant, id, i)) in manifests.iter().enumerate() {
        steps.at("mark", done as u64, total)?;
        let m = store.manifest(tenant, *id).await.map_err(|err| match err {
            Error::MetadataLoss(why) => {
                let r = &refs[*i];
                Error::MetadataLoss(format!(
                    "gc stopped before sweeping anything: ref {} {} names manifest {id}, which \
                     cannot be read ({why}); delete that ref or push it again, then run gc \
                     again",
                    r.ns, r.key
                ))
            }
            other => other,
        })?;
        let tid = tenant.id();
        chunks.extend(m.entries().iter().map(|en| ChunkKey::new(tid, &en.id)));
        if chunks.len() >= 2 * settled.max(1 << 16) {
            settle(&mut chunks);
            settled = chunks.len();
        }
    }
    settle(&mut chunks);
    let ref_hashes = refs
        .iter()
        .map(|r| crate::cold::refs::ref_hash(&r.ns, &r.key))
        .collect();
    Ok(Marked {
        refs: refs.into_iter().map(|r| r.table_key).collect(),
        ref_hashes,
        chunks,
        manifests: manifests.into_iter().map(|m| m.0).collect(),
    })
}

/// What the sweep of chunk rows did.
#[derive(Debug, Default)]
struct Swept {
    chunks: u64,
    bytes: u64,
    young: u64,
    /// Cold pack objects that lost chunks.
    packs: HashSet<(TenantId, [u8; 32])>,
}

/// Stored bytes of a chunk's copies (hot frame, warm and cold frames).
fn stored_sizes(
    t: &crate::meta::Tables,
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
    key: &ChunkKey,
) -> Result<u64> {
    let mut n = t
        .hot
        .get(txn, key.as_bytes())?
        .map_or(0, |v| v.len() as u64);
    if let Some(v) = t.warm.get_unless_damaged(txn, key.as_bytes())? {
        n += u64::from(crate::meta::le_u32(&v[12..16]));
    }
    if let Some(v) = t.cold.get_unless_damaged(txn, key.as_bytes())? {
        n += u64::from(crate::cold::charged_len(v));
    }
    Ok(n)
}

async fn sweep_chunks(
    e: &Arc<Engine>,
    scope: &Scope,
    marked: &[ChunkKey],
    grace: Duration,
    dry_run: bool,
    steps: &Steps<'_>,
) -> Result<Swept> {
    let prefix = scope.key_prefix();
    let grace_s = grace.as_secs();
    let now_s = e.meta.clock().now_s();
    let total = e.meta.read(|t, txn| t.chunks.len(txn)).await?;
    let mut out = Swept::default();
    let mut after: Option<Vec<u8>> = None;
    let mut seen = 0u64;
    loop {
        steps.at("sweep", seen, total)?;
        let (prefix, from) = (prefix.clone(), after.clone());
        let rows: Vec<(ChunkKey, Option<ChunkInfo>, u64)> = e
            .meta
            .read(move |t, txn| {
                use std::ops::Bound;
                let lower = match &from {
                    Some(k) => Bound::Excluded(&k[..]),
                    None if prefix.is_empty() => Bound::Unbounded,
                    None => Bound::Included(&prefix[..]),
                };
                let mut rows = Vec::with_capacity(SWEEP_BATCH);
                for item in t.chunks.raw.range(txn, &(lower, Bound::Unbounded))? {
                    let (k, stored) = item?;
                    if !k.starts_with(&prefix) || rows.len() == SWEEP_BATCH {
                        break;
                    }
                    let key = ChunkKey::from_slice(k)?;
                    // A damaged row is left for fsck (its chunk's copies are still indexed).
                    let info = crate::sealed::unseal(t.chunks.kind, k, stored)
                        .and_then(ChunkInfo::decode)
                        .ok();
                    let size = if dry_run {
                        stored_sizes(t, txn, &key)?
                    } else {
                        0
                    };
                    rows.push((key, info, size));
                }
                Ok(rows)
            })
            .await?;
        let Some((last, _, _)) = rows.last() else {
            break;
        };
        after = Some(last.as_bytes().to_vec());
        seen += rows.len() as u64;
        let mut doomed = Vec::new();
        for (key, info, size) in rows {
            let Some(info) = info else { continue };
            if marked.binary_search(&key).is_ok() {
                continue;
            }
            if info.last_access_s.saturating_add(grace_s) > now_s {
                out.young += 1;
                continue;
            }
            if dry_run {
                out.chunks += 1;
                out.bytes += size;
            } else {
                doomed.push(key);
            }
        }
        if doomed.is_empty() {
            continue;
        }
        let landed = e.gc.landed();
        let active = e.warm.active_id();
        let batch = e
            .meta
            .write(move |t, txn| sweep_in_txn(t, txn, doomed, &landed, active, now_s, grace_s))
            .await?;
        for pack in &batch.emptied {
            e.warm.remove_file(*pack);
        }
        super::quota::swept(e, &batch.freed_by_tenant);
        out.chunks += batch.chunks;
        out.bytes += batch.bytes;
        out.packs.extend(batch.cold_packs);
    }
    Ok(out)
}

/// What one sweep transaction removed.
#[derive(Default)]
struct SweptBatch {
    chunks: u64,
    bytes: u64,
    emptied: Vec<u32>,
    cold_packs: Vec<(TenantId, [u8; 32])>,
    /// Per tenant, each swept chunk's largest stored size (for quotas).
    freed_by_tenant: HashMap<TenantId, u64>,
}

/// Removes every copy of `keys` that is still unmarked, unlanded and old enough.
fn sweep_in_txn(
    t: &crate::meta::Tables,
    txn: &mut heed::RwTxn<'_>,
    keys: Vec<ChunkKey>,
    landed: &Mutex<Option<Landed>>,
    active: u32,
    now_s: u64,
    grace_s: u64,
) -> Result<SweptBatch> {
    let mut out = SweptBatch::default();
    let landed = lock(landed);
    for key in keys {
        if landed.as_ref().is_some_and(|l| l.chunks.contains(&key)) {
            continue;
        }
        let Some(info) = crate::meta::chunk_info(t, txn, &key)? else {
            continue;
        };
        if info.last_access_s.saturating_add(grace_s) > now_s {
            continue;
        }
        let mut bytes = 0u64;
        let mut largest = 0u64;
        if let Some(len) = t.hot.get(txn, key.as_bytes())?.map(<[u8]>::len) {
            bytes += len as u64;
            largest = largest.max(len as u64);
            crate::hot::delete_in_txn(t, txn, key)?;
        }
        if let crate::warm::Dropped::Yes { len, emptied } =
            crate::warm::delete_in_txn(t, txn, key, active)?
        {
            bytes += u64::from(len);
            largest = largest.max(u64::from(len));
            out.emptied.extend(emptied);
        }
        if let Some(loc) = crate::cold::delete_in_txn(t, txn, key)? {
            bytes += u64::from(loc.charged());
            largest = largest.max(u64::from(loc.charged()));
            out.cold_packs.push((key.tenant(), loc.pack));
        }
        // Whatever is left of the row (tier bits that named no copy) goes too.
        t.chunks.delete(txn, key.as_bytes())?;
        out.chunks += 1;
        out.bytes += bytes;
        *out.freed_by_tenant.entry(key.tenant()).or_default() += largest;
    }
    Ok(out)
}

/// Drops the index's manifests that no live ref names and no landed commit wrote; how many.
async fn sweep_manifests(
    e: &Arc<Engine>,
    scope: &Scope,
    marked: &[[u8; 40]],
    dry_run: bool,
) -> Result<u64> {
    let prefix = scope.key_prefix();
    let unmarked: Vec<Vec<u8>> = {
        let marked = marked.to_vec();
        e.meta
            .read(move |t, txn| {
                let mut out = Vec::new();
                for item in crate::meta::raw_prefix_iter(&t.manifests.raw, txn, &prefix)? {
                    let (k, _) = item?;
                    let known =
                        <[u8; 40]>::try_from(k).is_ok_and(|k| marked.binary_search(&k).is_ok());
                    if !known {
                        out.push(k.to_vec());
                    }
                }
                Ok(out)
            })
            .await?
    };
    if dry_run || unmarked.is_empty() {
        return Ok(unmarked.len() as u64);
    }
    let landed = e.gc.landed();
    e.meta
        .write(move |t, txn| {
            let landed = lock(&landed);
            let mut n = 0;
            for k in unmarked {
                let is_landed = <[u8; 40]>::try_from(&k[..])
                    .is_ok_and(|key| landed.as_ref().is_some_and(|l| l.manifests.contains(&key)));
                if !is_landed && t.manifests.delete(txn, &k)? {
                    if let Ok(mkey) = <[u8; 40]>::try_from(&k[..]) {
                        super::lookups::drop_in_txn(t, txn, &mkey)?;
                    }
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
}

/// What the cold step of a run did with pack objects.
#[derive(Debug, Default)]
struct ColdDone {
    compacted_packs: u64,
    compacted_bytes: u64,
    deleted_objects: u64,
}

/// Deletes cold packs nothing points at (this run's at once, others once older than the orphan
/// age), compacts those under the threshold, and deletes the objects recompression replaced.
async fn compact_cold(
    e: &Arc<Engine>,
    scope: &Scope,
    emptied: &HashSet<(TenantId, [u8; 32])>,
    opts: &GcOptions,
    now_ms: u64,
    steps: &Steps<'_>,
) -> Result<ColdDone> {
    let mut done = ColdDone::default();
    done.deleted_objects += e.cold.delete_scheduled(u64::MAX).await?;
    let packs = e.cold.pack_use(scope.tenant).await?;
    let orphan_before = now_ms.saturating_sub(duration_ms(opts.grace.max(ORPHAN_AGE)));
    let mut to_compact: HashMap<TenantId, Vec<crate::cold::scan::PackObject>> = HashMap::new();
    let total = packs.len() as u64;
    for (i, p) in packs.into_iter().enumerate() {
        steps.at("cold", i as u64, total)?;
        let id = (p.object.tenant, p.object.pack);
        if p.writing {
            continue;
        }
        if p.live == 0 {
            if emptied.contains(&id) || p.written_ms < orphan_before {
                e.cold.delete_object(&p.object.path).await?;
                done.deleted_objects += 1;
                done.compacted_packs += 1;
                done.compacted_bytes += p.size;
            }
            continue;
        }
        if !p.marked && (p.live as f64) < opts.compact_below * p.size as f64 {
            done.compacted_bytes += p.size;
            to_compact
                .entry(p.object.tenant)
                .or_default()
                .push(p.object);
        }
    }
    for (tenant, sources) in to_compact {
        steps.at("compact", done.compacted_packs, 0)?;
        let (deleted, written) = e
            .cold
            .compact(tenant, sources, e.config.cold_pack_target)
            .await?;
        done.compacted_packs += deleted;
        done.deleted_objects += deleted;
        done.compacted_bytes = done.compacted_bytes.saturating_sub(written);
    }
    Ok(done)
}
