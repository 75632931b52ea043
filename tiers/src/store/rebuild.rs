//! Recreating the local index from the cold tier alone (`scipcached rebuild`).
//!
//! The bucket describes itself: every pack object's footer names each chunk it holds with its
//! offset, frame length and raw length (`cold.rs`); manifests are named by their id; every set
//! and deletion of a ref is an object named by the ref and a version (`cold_refs.rs`). A
//! rebuild, with the data dir locked (so the daemon must not be running):
//!
//! 1. builds a fresh index in `<data-dir>/meta.rebuilding` (one left by an interrupted
//!    rebuild is removed first);
//! 2. reads every pack's trailer and footer and indexes its chunks as cold (`cold` locations,
//!    `chunks` entries with the cold tier bit and raw lengths, counters). A pack whose trailer
//!    or footer is damaged is skipped and named in the report;
//! 3. lists the ref objects, and for each ref takes the object of the largest version only: a
//!    deletion (tombstone) leaves the ref deleted, an expired set leaves it gone, a damaged
//!    newest object leaves it unrestored (an older object is never used instead: it could
//!    bring back a ref that was deleted). A live set is restored, with its manifest, only when
//!    the manifest is in the bucket and hashes to its id, and the rebuilt index holds each of
//!    its chunks with the manifest's length; otherwise the ref is named as incomplete;
//! 4. records the largest ref version found (`ref_version`), so later events win over every
//!    object in the bucket;
//! 5. moves an existing `meta/` aside to `meta.broken-<UTC time>` (never deleted: remove it
//!    once the rebuilt index serves), and `warm/` beside it to `warm.broken-<UTC time>` (warm
//!    packs are indexed only by the old index, and opening them without it would cut them to
//!    nothing), then renames `meta.rebuilding` to `meta/`.
//!
//! The hot and warm tiers start empty; reads are served from cold and promoted as usual. A
//! crash at any point leaves either the old state, or no `meta/` (a start refuses and asks
//! for a rebuild again), never a partial index in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use super::dir_lock::DirLock;
use super::{Store, StoreConfig};
use crate::cold::ColdTier;
use crate::cold::refs::{RefChange, RefEvent, RefObjectName};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::{MAX_CHUNKS_PER_BLOB, Manifest, max_encoded_len};
use crate::meta::{ChunkInfo, ChunkKey, Meta, manifest_key, state_get, state_put};
use crate::names::TenantId;
use crate::refs::ref_table_key;
use crate::writeback::REF_VERSION_KEY;

/// Pack footers read at once.
const FOOTERS_IN_FLIGHT: usize = 16;

/// What a rebuild found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Where the rebuilt index is (`<data-dir>/meta`).
    pub index: PathBuf,
    /// Folders of the previous state moved aside (`meta.broken-…`, `warm.broken-…`).
    pub moved_aside: Vec<PathBuf>,
    /// Pack objects read.
    pub packs: u64,
    /// Chunks indexed as cold.
    pub chunks: u64,
    /// Stored bytes of those chunks in the cold tier.
    pub cold_bytes: u64,
    /// Manifest objects in the bucket.
    pub manifests: u64,
    /// Manifests indexed (those of restored refs).
    pub manifests_indexed: u64,
    /// Refs restored.
    pub refs_restored: u64,
    /// Refs whose newest event is a deletion: left deleted.
    pub refs_deleted: u64,
    /// Refs whose newest set has expired: left gone.
    pub refs_expired: u64,
    /// Refs not restored because the bucket lacks their manifest or chunks, with the reason.
    pub refs_incomplete: Vec<String>,
    /// Objects that could not be used (damaged packs or ref objects), with the reason.
    pub damaged: Vec<String>,
    /// Objects under `packs/` and `refs/` whose names are not ours (ignored).
    pub foreign_objects: u64,
}

impl std::fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for moved in &self.moved_aside {
            writeln!(
                f,
                "moved the previous {} aside to {} (remove it once the rebuilt index serves)",
                moved
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split('.').next())
                    .unwrap_or("state"),
                moved.display()
            )?;
        }
        writeln!(
            f,
            "chunks: {} in {} packs ({} bytes stored in the cold tier)",
            self.chunks, self.packs, self.cold_bytes
        )?;
        writeln!(
            f,
            "manifests: {} in the cold tier, {} indexed for restored refs",
            self.manifests, self.manifests_indexed
        )?;
        writeln!(
            f,
            "refs: {} restored, {} deleted (stay deleted), {} expired (stay gone), {} incomplete",
            self.refs_restored,
            self.refs_deleted,
            self.refs_expired,
            self.refs_incomplete.len()
        )?;
        for what in &self.refs_incomplete {
            writeln!(f, "incomplete ref, not restored: {what}")?;
        }
        for what in &self.damaged {
            writeln!(f, "damaged, skipped: {what}")?;
        }
        if self.foreign_objects > 0 {
            writeln!(
                f,
                "ignored {} objects that are not scipcache's",
                self.foreign_objects
            )?;
        }
        write!(f, "index rebuilt in {}", self.index.display())
    }
}

impl Store {
    /// Recreates the local index of `config.data_dir` from the cold tier alone (see the
    /// module docs). Fails with [`Error::Locked`] while a store (the daemon) holds the data dir.
    pub async fn rebuild(config: StoreConfig) -> Result<RebuildReport> {
        let cfg = config.clone();
        let (lock, meta, cold) = crate::blocking::run(move || open_building(&cfg)).await?;
        let mut report = RebuildReport::default();
        let built = build(&config, &meta, &cold, &mut report).await;
        let dir = config.data_dir.clone();
        let stamp = utc_stamp(config.clock.now_ms());
        crate::blocking::run(move || {
            let closing = meta.closing_event();
            let synced = meta.sync();
            meta.close();
            drop(cold);
            drop(meta);
            if !closing.wait_timeout(std::time::Duration::from_secs(30)) {
                return Err(Error::Unavailable(
                    "the rebuilt index did not close within 30 s; run the rebuild again".into(),
                ));
            }
            built?;
            synced?;
            report.moved_aside = put_in_place(&dir, &stamp)?;
            report.index = dir.join("meta");
            drop(lock);
            Ok(report)
        })
        .await
    }
}

/// Locks the data dir and opens a fresh index in `meta.rebuilding` (blocking).
fn open_building(cfg: &StoreConfig) -> Result<(DirLock, Meta, ColdTier)> {
    let lock = DirLock::acquire(&cfg.data_dir)?;
    let building = cfg.data_dir.join("meta.rebuilding");
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(|e| {
            Error::io(
                format!("removing {} left by an earlier rebuild", building.display()),
                e,
            )
        })?;
    }
    let (meta, cold) = super::open_meta_and_cold(cfg, &building)?;
    meta.stamp_format()?;
    Ok((lock, meta, cold))
}

async fn build(
    config: &StoreConfig,
    meta: &Meta,
    cold: &ColdTier,
    report: &mut RebuildReport,
) -> Result<()> {
    index_packs(cold, report).await?;
    report.manifests = cold.list_manifests().await?.len() as u64;
    let (names, foreign) = cold.list_ref_objects().await?;
    report.foreign_objects += foreign;
    let max_version = names.iter().map(|n| n.version).max().unwrap_or(0);
    let mut newest: HashMap<(TenantId, [u8; 32]), RefObjectName> = HashMap::new();
    for name in names {
        let slot = newest
            .entry((name.tenant, name.ref_hash))
            .or_insert(name.clone());
        if name.version > slot.version {
            *slot = name;
        }
    }
    let now = config.clock.now_ms();
    let mut manifests: HashMap<(TenantId, ManifestId), Option<Arc<Manifest>>> = HashMap::new();
    for name in newest.into_values() {
        let event = match cold.read_ref_object(&name).await {
            Ok(event) => event,
            Err(e @ (Error::Format(_) | Error::NotFound(_))) => {
                report.damaged.push(format!("{}: {e}", name.path));
                continue;
            }
            Err(e) => return Err(e),
        };
        let record = match &event.change {
            RefChange::Deleted => {
                report.refs_deleted += 1;
                continue;
            }
            RefChange::Set(r) if r.is_expired(now) => {
                report.refs_expired += 1;
                continue;
            }
            RefChange::Set(r) => r.clone(),
        };
        let tenant = name.tenant;
        let manifest = match manifests.get(&(tenant, record.manifest)) {
            Some(m) => m.clone(),
            None => {
                let m = cold_manifest(cold, tenant, record.manifest).await?;
                manifests.insert((tenant, record.manifest), m.clone());
                m
            }
        };
        let Some(manifest) = manifest else {
            report.refs_incomplete.push(format!(
                "{} {}: manifest {} is not in the cold tier",
                event.ns, event.key, record.manifest
            ));
            continue;
        };
        if let Some(why) = restore(meta, &event, record, manifest).await? {
            report.refs_incomplete.push(why);
            continue;
        }
        report.refs_restored += 1;
    }
    report.manifests_indexed = meta.read(|t, txn| t.manifests.len(txn)).await?;
    meta.write(move |t, txn| {
        let v = state_get(t, txn, REF_VERSION_KEY)?.max(max_version);
        state_put(t, txn, REF_VERSION_KEY, v)
    })
    .await
}

/// Reads every pack's footer and indexes its chunks.
async fn index_packs(cold: &ColdTier, report: &mut RebuildReport) -> Result<()> {
    let (packs, foreign) = cold.list_packs().await?;
    report.foreign_objects += foreign;
    let mut footers = futures::stream::iter(packs)
        .map(|pack| async move {
            let read = cold.read_footer(&pack).await;
            (pack, read)
        })
        .buffer_unordered(FOOTERS_IN_FLIGHT);
    while let Some((pack, read)) = footers.next().await {
        let chunks = match read {
            Ok(chunks) => chunks,
            Err(e @ Error::Format(_)) => {
                report.damaged.push(format!("{}: {e}", pack.path));
                continue;
            }
            Err(e) => return Err(e),
        };
        report.packs += 1;
        let (n, bytes) = cold.index_packed(chunks).await?;
        report.chunks += n;
        report.cold_bytes += bytes;
    }
    Ok(())
}

/// A manifest from the cold tier, checked against its id; `None` when it is not there.
async fn cold_manifest(
    cold: &ColdTier,
    tenant: TenantId,
    id: ManifestId,
) -> Result<Option<Arc<Manifest>>> {
    let limit = max_encoded_len(MAX_CHUNKS_PER_BLOB);
    let Some(bytes) = cold.get_manifest(tenant, &id, limit).await? else {
        return Ok(None);
    };
    match Manifest::decode(&bytes, MAX_CHUNKS_PER_BLOB) {
        Ok(m) if m.id() == id => Ok(Some(Arc::new(m))),
        _ => Ok(None),
    }
}

/// Sets a ref and its manifest in the rebuilt index if every chunk is indexed with the
/// manifest's length; otherwise says what is missing.
async fn restore(
    meta: &Meta,
    event: &RefEvent,
    record: crate::refs::RefRecord,
    manifest: Arc<Manifest>,
) -> Result<Option<String>> {
    let tenant = event.ns.tenant();
    let (tid, name) = (tenant.id(), tenant.as_str().to_owned());
    let rkey = ref_table_key(&event.ns, &event.key);
    let label = format!("{} {}", event.ns, event.key);
    meta.write(move |t, txn| {
        let mut missing = 0usize;
        for entry in manifest.entries() {
            let key = ChunkKey::new(tid, &entry.id);
            let ok = match t.chunks.get(txn, key.as_bytes())? {
                Some(v) => ChunkInfo::decode(v)?.raw_len == entry.len,
                None => false,
            };
            if !ok {
                missing += 1;
            }
        }
        if missing > 0 {
            return Ok(Some(format!(
                "{label}: {missing} of its {} chunks are not in the cold tier",
                manifest.entries().len()
            )));
        }
        if t.tenants.get(txn, &tid.0)?.is_none() {
            t.tenants.put(txn, &tid.0, name.as_bytes())?;
        }
        let mkey = manifest_key(tid, &record.manifest);
        if t.manifests.get(txn, &mkey)?.is_none() {
            t.manifests.put(txn, &mkey, &manifest.encode())?;
        }
        // Lookup tables are local: the next start builds them again.
        super::lookups::queue_in_txn(t, txn, &mkey)?;
        t.refs.put(txn, &rkey, &record.encode())?;
        Ok(None)
    })
    .await
}

/// Moves the previous `meta/` and `warm/` aside and the rebuilt index into place (blocking).
fn put_in_place(dir: &Path, stamp: &str) -> Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    for name in ["meta", "warm"] {
        let from = dir.join(name);
        if !from.exists() {
            continue;
        }
        let mut to = dir.join(format!("{name}.broken-{stamp}"));
        let mut n = 1;
        while to.exists() {
            n += 1;
            to = dir.join(format!("{name}.broken-{stamp}-{n}"));
        }
        std::fs::rename(&from, &to).map_err(|e| {
            Error::io(
                format!("moving {} aside to {}", from.display(), to.display()),
                e,
            )
        })?;
        moved.push(to);
    }
    let building = dir.join("meta.rebuilding");
    let meta = dir.join("meta");
    std::fs::rename(&building, &meta).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", building.display(), meta.display()),
            e,
        )
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    Ok(moved)
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time in ms (UTC).
pub(crate) fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
