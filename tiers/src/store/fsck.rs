//! fsck: every chunk index entry checked against the bytes of each tier that it says holds a
//! copy, every live ref's manifest against its chunks ([`Store::fsck`]).
//!
//! # What counts as what
//!
//! - **missing**: an index entry that points nowhere (a hot bit without a hot frame, a warm
//!   location in a pack file that is gone or too short, a cold location in an object that is
//!   gone), a manifest a live ref names that no tier holds, a chunk a manifest names that has
//!   no index entry.
//! - **corrupt**: a copy whose bytes fail their check (frame header, checksum, decode, BLAKE3),
//!   a damaged index record, a manifest that does not hash to its id.
//! - **garbage**: leftovers of interrupted work that nothing needs: a cold pack object no index
//!   entry points at, a warm pack file without a row, a cold queue entry for a chunk that is
//!   gone, a manifest no ref names. Counted, not errors: GC removes them.
//!
//! # Repair
//!
//! With `repair`, a bad copy of a chunk that has a good copy elsewhere is dropped from its tier;
//! a dropped cold copy is queued for upload again (from the good local copy), hot and warm are
//! caches and refill on reads. Tier bits that name no copy are cleared. A chunk no tier holds
//! intact is dropped from the index, so that a push of the blob uploads it again (it stays
//! counted as missing or corrupt: fsck exits non-zero until the blob is pushed again). A
//! manifest missing from the index but intact in the cold tier is restored from there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::lifecycle_types::{FsckProblem, FsckReport, Progress};
use super::verify::{Need, verify_copy};
use super::{Engine, Store};
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::meta::{ChunkInfo, ChunkKey, tier_bits};
use crate::tier::{ChunkTier, TierName};
use crate::writeback::{QueueItem, enqueue_in_txn};

/// Chunk rows read per transaction.
const BATCH: usize = 1024;

/// What one tier's copy of a chunk turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Copy {
    Good,
    Missing,
    Corrupt,
}

fn judge(id: &crate::ids::ChunkId, got: Result<Option<Frame>>) -> Result<Option<Copy>> {
    Ok(Some(match got {
        Ok(None) => return Ok(None),
        Ok(Some(frame)) => match verify_copy(id, frame, Need::Raw, false) {
            Ok(_) => Copy::Good,
            Err(_) => Copy::Corrupt,
        },
        Err(e @ Error::Unavailable(_)) => return Err(e),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Copy::Missing
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Copy::Missing
        }
        Err(Error::Format(m)) if m.contains("missing from the bucket") => Copy::Missing,
        Err(_) => Copy::Corrupt,
    }))
}

impl Store {
    /// Checks every stored copy and every live ref's manifest (see the module docs); with
    /// `repair`, fixes what a good copy exists for and drops entries that point nowhere.
    /// Fails with [`Error::Unavailable`] when the cold tier cannot be read, and with
    /// [`Error::Cancelled`] when `cancel` fires.
    pub async fn fsck(
        &self,
        repair: bool,
        cancel: CancellationToken,
        progress: watch::Sender<Progress>,
    ) -> Result<FsckReport> {
        let e = self.engine()?;
        let started = Instant::now();
        let mut report = FsckReport::default();
        let step = |phase: &'static str, done: u64, total: u64| {
            progress.send_replace(Progress { phase, done, total });
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("fsck (in its {phase} step)")));
            }
            Ok(())
        };
        // Chunks with a problem, and what it is.
        let mut bad: HashMap<ChunkKey, usize> = HashMap::new();
        let total = e.meta.read(|t, txn| t.chunks.len(txn)).await?;
        let mut after: Option<Vec<u8>> = None;
        loop {
            step("chunks", report.checked_chunks, total)?;
            let from = after.clone();
            let rows: Vec<(ChunkKey, Option<ChunkInfo>, u8)> = e
                .meta
                .read(move |t, txn| {
                    use std::ops::Bound;
                    let lower = from
                        .as_ref()
                        .map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..]));
                    let mut rows = Vec::with_capacity(BATCH);
                    for item in t.chunks.raw.range(txn, &(lower, Bound::Unbounded))? {
                        let (k, stored) = item?;
                        if rows.len() == BATCH {
                            break;
                        }
                        let key = ChunkKey::from_slice(k)?;
                        let info = crate::sealed::unseal(t.chunks.kind, k, stored)
                            .and_then(ChunkInfo::decode)
                            .ok();
                        let mut present = 0;
                        if t.hot.get(txn, k)?.is_some() {
                            present |= tier_bits::HOT;
                        }
                        if t.warm.contains(txn, k)? {
                            present |= tier_bits::WARM;
                        }
                        if t.cold.contains(txn, k)? {
                            present |= tier_bits::COLD;
                        }
                        rows.push((key, info, present));
                    }
                    Ok(rows)
                })
                .await?;
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = Some(last.as_bytes().to_vec());
            for (key, info, present) in rows {
                report.checked_chunks += 1;
                check_chunk(&e, key, info, present, repair, &mut report, &mut bad).await?;
            }
        }
        check_manifests(self, &e, repair, &mut report, &mut bad, &step).await?;
        report.garbage = count_garbage(&e).await?;
        report.seconds = started.elapsed().as_secs_f64();
        step("done", 1, 1).ok();
        Ok(report)
    }
}

/// Checks one chunk's copies; records and (with `repair`) fixes what is wrong.
async fn check_chunk(
    e: &Arc<Engine>,
    key: ChunkKey,
    info: Option<ChunkInfo>,
    present: u8,
    repair: bool,
    report: &mut FsckReport,
    bad: &mut HashMap<ChunkKey, usize>,
) -> Result<()> {
    let id = key.id();
    let mut copies: Vec<(TierName, Copy)> = Vec::new();
    let tiers = [
        (TierName::Hot, tier_bits::HOT),
        (TierName::Warm, tier_bits::WARM),
        (TierName::Cold, tier_bits::COLD),
    ];
    let bits = info.map_or(present, |i| i.tiers);
    for (tier, bit) in tiers {
        if (bits | present) & bit == 0 {
            continue;
        }
        if present & bit == 0 {
            // The row says the tier holds it; the tier's table has nothing.
            copies.push((tier, Copy::Missing));
            continue;
        }
        let got = match tier {
            TierName::Hot => e.hot.get(key).await,
            TierName::Warm => e.warm.get(key).await,
            TierName::Cold => e.cold.get(key).await,
        };
        if let Some(c) = judge(&id, got)? {
            copies.push((tier, c));
        }
    }
    let row_damaged = info.is_none();
    let good = copies.iter().any(|(_, c)| *c == Copy::Good);
    let faults: Vec<(TierName, Copy)> = copies
        .iter()
        .copied()
        .filter(|(_, c)| *c != Copy::Good)
        .collect();
    if faults.is_empty() && !row_damaged {
        return Ok(());
    }
    let mut what: Vec<String> = faults
        .iter()
        .map(|(t, c)| {
            format!(
                "the {} copy is {}",
                t.as_str(),
                if *c == Copy::Missing {
                    "missing"
                } else {
                    "corrupt"
                }
            )
        })
        .collect();
    if row_damaged {
        what.push("its index record is damaged".into());
    }
    let counted = faults.len() as u64 + u64::from(row_damaged);
    for (_, c) in &faults {
        match c {
            Copy::Missing => report.missing += 1,
            _ => report.corrupt += 1,
        }
    }
    if row_damaged {
        report.corrupt += 1;
    }
    let mut fixed = false;
    if repair {
        fixed = good;
        let drop: Vec<TierName> = faults.iter().map(|(t, _)| *t).collect();
        let raw_len = good_raw_len(e, key, &copies).await?;
        e.meta
            .write(move |t, txn| {
                for tier in &drop {
                    match tier {
                        TierName::Hot => {
                            crate::hot::delete_in_txn(t, txn, key)?;
                            crate::meta::clear_tier_bit(t, txn, key, tier_bits::HOT)?;
                        }
                        TierName::Warm => {
                            crate::warm::delete_in_txn(t, txn, key, 0)?;
                            crate::meta::clear_tier_bit(t, txn, key, tier_bits::WARM)?;
                        }
                        TierName::Cold => {
                            crate::cold::delete_in_txn(t, txn, key)?;
                            crate::meta::clear_tier_bit(t, txn, key, tier_bits::COLD)?;
                        }
                    }
                }
                match raw_len {
                    // Rebuilds a damaged row from the tables that hold the chunk.
                    Some(len) => {
                        crate::meta::chunk_info_for_update(t, txn, key, len)?;
                        if drop.contains(&TierName::Cold) {
                            enqueue_in_txn(t, txn, QueueItem::Chunk(key))?;
                        }
                    }
                    // No good copy anywhere: forget it, so a push uploads it again.
                    None => {
                        crate::hot::delete_in_txn(t, txn, key)?;
                        crate::warm::delete_in_txn(t, txn, key, 0)?;
                        crate::cold::delete_in_txn(t, txn, key)?;
                        t.chunks.delete(txn, key.as_bytes())?;
                    }
                }
                Ok(())
            })
            .await?;
        e.uploader.notify.notify_one();
        if fixed {
            report.repaired += counted;
        }
    }
    let detail = format!(
        "chunk {id}: {}{}",
        what.join(", "),
        if good {
            " (a good copy exists)"
        } else {
            " and no tier holds a good copy: push the blobs that name it again"
        }
    );
    bad.insert(key, report.problems.len());
    report.problems.push(FsckProblem {
        what: detail,
        refs: Vec::new(),
        repaired: fixed,
    });
    Ok(())
}

/// The raw length of a good copy of the chunk, if one exists.
async fn good_raw_len(
    e: &Arc<Engine>,
    key: ChunkKey,
    copies: &[(TierName, Copy)],
) -> Result<Option<u32>> {
    let Some((tier, _)) = copies.iter().find(|(_, c)| *c == Copy::Good) else {
        return Ok(None);
    };
    let got = match tier {
        TierName::Hot => e.hot.get(key).await?,
        TierName::Warm => e.warm.get(key).await?,
        TierName::Cold => e.cold.get(key).await?,
    };
    Ok(got.map(|f| f.raw_len() as u32))
}

/// Checks every live ref's manifest and that each chunk it names is indexed; names the refs
/// that each chunk problem touches.
async fn check_manifests(
    store: &Store,
    e: &Arc<Engine>,
    repair: bool,
    report: &mut FsckReport,
    bad: &mut HashMap<ChunkKey, usize>,
    step: &(dyn Fn(&'static str, u64, u64) -> Result<()> + Sync),
) -> Result<()> {
    let now = e.meta.clock().now_ms();
    let refs: Vec<(String, crate::names::Tenant, crate::ids::ManifestId, bool)> = e
        .meta
        .read(move |t, txn| {
            let mut out = Vec::new();
            for item in t.refs.iter(txn)? {
                let (k, v) = item?;
                let record = super::refs::decode_ref(v, k)?;
                if record.is_expired(now) {
                    continue;
                }
                let (ns, key) = super::refs::parse_ref_key(k)?;
                let local = t
                    .manifests
                    .get_unless_damaged(
                        txn,
                        &crate::meta::manifest_key(ns.tenant().id(), &record.manifest),
                    )?
                    .is_some();
                out.push((
                    format!("{ns} {key}"),
                    ns.tenant().clone(),
                    record.manifest,
                    local,
                ));
            }
            Ok(out)
        })
        .await?;
    let total = refs.len() as u64;
    let mut checked: HashSet<(crate::names::TenantId, crate::ids::ManifestId)> = HashSet::new();
    for (i, (name, tenant, id, local)) in refs.into_iter().enumerate() {
        step("manifests", i as u64, total)?;
        if !local {
            report.missing += 1;
            let restored = repair && restore_manifest(store, e, &tenant, id).await?;
            if restored {
                report.repaired += 1;
            }
            report.problems.push(FsckProblem {
                what: format!("manifest {id} is missing from the index"),
                refs: vec![name.clone()],
                repaired: restored,
            });
            if !restored {
                continue;
            }
        }
        let m = match store.manifest(&tenant, id).await {
            Ok(m) => m,
            Err(Error::MetadataLoss(why)) => {
                report.corrupt += 1;
                report.problems.push(FsckProblem {
                    what: why,
                    refs: vec![name],
                    repaired: false,
                });
                continue;
            }
            Err(err) => return Err(err),
        };
        let first = checked.insert((tenant.id(), id));
        if first {
            report.checked_manifests += 1;
        }
        let tid = tenant.id();
        let keys: Vec<ChunkKey> = m
            .entries()
            .iter()
            .map(|en| ChunkKey::new(tid, &en.id))
            .collect();
        let wanted = keys.clone();
        let absent: Vec<ChunkKey> = e
            .meta
            .read(move |t, txn| {
                let mut out = Vec::new();
                for k in wanted {
                    if !t.chunks.contains(txn, k.as_bytes())? {
                        out.push(k);
                    }
                }
                Ok(out)
            })
            .await?;
        for k in keys {
            if let Some(&at) = bad.get(&k)
                && !report.problems[at].refs.contains(&name)
            {
                report.problems[at].refs.push(name.clone());
            }
        }
        for k in absent {
            if let Some(&at) = bad.get(&k) {
                if !report.problems[at].refs.contains(&name) {
                    report.problems[at].refs.push(name.clone());
                }
                continue;
            }
            report.missing += 1;
            bad.insert(k, report.problems.len());
            report.problems.push(FsckProblem {
                what: format!(
                    "chunk {} is named by manifest {id} but stored nowhere: push the blob again",
                    k.id()
                ),
                refs: vec![name.clone()],
                repaired: false,
            });
        }
    }
    Ok(())
}

/// Writes an intact cold copy of a manifest back into the index; whether there was one.
async fn restore_manifest(
    store: &Store,
    e: &Arc<Engine>,
    tenant: &crate::names::Tenant,
    id: crate::ids::ManifestId,
) -> Result<bool> {
    let m = match store.manifest(tenant, id).await {
        Ok(m) => m,
        Err(Error::MetadataLoss(_)) => return Ok(false),
        Err(err) => return Err(err),
    };
    let (key, encoded) = (crate::meta::manifest_key(tenant.id(), &id), m.encode());
    e.meta
        .write(move |t, txn| t.manifests.put(txn, &key, &encoded))
        .await?;
    Ok(true)
}

/// Leftovers nothing needs: cold packs no entry points at, warm pack files without a row, queue
/// entries for chunks that are gone, manifests no ref names.
async fn count_garbage(e: &Arc<Engine>) -> Result<u64> {
    let mut n = 0;
    for p in e.cold.pack_use(None).await? {
        if p.live == 0 {
            n += 1;
        }
    }
    n += e.warm.unindexed_files()?;
    n += e
        .meta
        .read(|t, txn| {
            let mut n = 0;
            for item in t.cold_queue.iter(txn)? {
                let (k, v) = item?;
                if let Ok(QueueItem::Chunk(key)) = crate::writeback::queue_item(k, v)
                    && !t.chunks.contains(txn, key.as_bytes())?
                {
                    n += 1;
                }
            }
            let mut named = HashSet::new();
            for item in t.refs.iter(txn)? {
                let (k, v) = item?;
                let r = super::refs::decode_ref(v, k)?;
                let (ns, _) = super::refs::parse_ref_key(k)?;
                named.insert(crate::meta::manifest_key(ns.tenant().id(), &r.manifest));
            }
            for item in t.manifests.raw.iter(txn)? {
                let (k, _) = item?;
                if !<[u8; 40]>::try_from(k).is_ok_and(|k| named.contains(&k)) {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await?;
    Ok(n)
}
