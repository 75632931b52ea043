//! Recompression of cold packs written at the fast level.
//!
//! When the write-behind falls behind, it encodes at the fast level (`writeback.rs`), and
//! `put_pack` marks each such pack in the `state` table (`recompress/<tenant><pack>`, in the
//! transaction that indexes it), so the backlog of packs to recompress survives restarts.
//! When the daemon is idle, [`ColdTier::recompress`] takes one marked pack:
//!
//! 1. reads the whole object and its footer (trailer checked);
//! 2. hands the frames of the chunks whose cold location is still in that pack to the caller,
//!    which verifies and re-encodes them at the cold level (on the low-priority encoders);
//! 3. writes the new pack object (named by its hash, like every pack);
//! 4. in one transaction, points each chunk still located in the old pack at the new one,
//!    adjusts the cold stored-bytes counter, drops the mark and schedules the old object's
//!    deletion (`cold_delete/<tenant><pack>` with a due time [`DELETE_GRACE`] later, so a read
//!    that looked up the old location just before finishes its GET);
//! 5. [`ColdTier::delete_due`] removes old objects once due.
//!
//! A crash anywhere leaves either the old pack indexed and still marked (redone, with the same
//! new object name), or the new one indexed and the old one scheduled: never a chunk without
//! an indexed cold copy.

use std::time::Duration;

use heed::RwTxn;

use object_store::ObjectStoreExt;

use super::block::Block;
use super::scan::PackObject;
use super::{ColdTier, Location, encode_pack};
use crate::codec::Frame;
use crate::error::Result;
use crate::meta::{ChunkKey, Tables, bump_counter, le_u64};
use crate::names::TenantId;

const RECOMPRESS_PREFIX: &[u8] = b"recompress/";
const DELETE_PREFIX: &[u8] = b"cold_delete/";
/// How long a replaced pack object stays readable.
pub(crate) const DELETE_GRACE: Duration = Duration::from_secs(60);

fn marker(prefix: &[u8], tenant: TenantId, pack: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 40);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&tenant.0);
    k.extend_from_slice(pack);
    k
}

fn parse_marker(prefix: &[u8], k: &[u8]) -> Option<(TenantId, [u8; 32])> {
    let rest = k.strip_prefix(prefix)?;
    if rest.len() != 40 {
        return None;
    }
    let tenant: [u8; 8] = rest[..8].try_into().ok()?;
    let pack: [u8; 32] = rest[8..].try_into().ok()?;
    Some((TenantId(tenant), pack))
}

/// Marks a pack written at the fast level, inside the transaction that indexes it.
pub(crate) fn mark_in_txn(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    tenant: TenantId,
    pack: &[u8; 32],
) -> Result<()> {
    t.state.put(
        txn,
        &marker(RECOMPRESS_PREFIX, tenant, pack),
        &t.clock.now_ms().to_le_bytes(),
    )?;
    Ok(())
}

/// Points each chunk of `entries` (in a new pack) whose cold location is still its `old` one
/// at the new pack, and adjusts the cold stored-bytes counter; a chunk moved or
/// dropped meanwhile is left alone. Returns the chunks moved and their bytes before and after.
pub(crate) fn repoint_in_txn(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    entries: Vec<super::PackEntry>,
    old: &std::collections::HashMap<ChunkKey, Location>,
) -> Result<Recompressed> {
    let mut done = Recompressed::default();
    for (key, loc, _) in entries {
        let Some(was) = old.get(&key) else { continue };
        let current = t
            .cold
            .get_unless_damaged(txn, key.as_bytes())?
            .map(Location::decode)
            .transpose()?;
        if current != Some(*was) {
            continue;
        }
        t.cold.put(txn, key.as_bytes(), &loc.encode())?;
        bump_counter(
            t,
            txn,
            key.tenant(),
            crate::meta::tier_bits::COLD,
            0,
            i64::from(loc.charged()) - i64::from(was.charged()),
        )?;
        done.chunks += 1;
        done.before += u64::from(was.charged());
        done.after += u64::from(loc.charged());
    }
    Ok(done)
}

/// Whether a pack waits to be recompressed.
pub(crate) fn is_marked(
    t: &Tables,
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
    tenant: TenantId,
    pack: &[u8; 32],
) -> Result<bool> {
    Ok(t.state
        .get(txn, &marker(RECOMPRESS_PREFIX, tenant, pack))?
        .is_some())
}

/// Packs waiting to be recompressed.
pub(crate) fn pending(t: &Tables, txn: &heed::RoTxn<'_, heed::WithoutTls>) -> Result<u64> {
    let mut n = 0;
    for item in t.state.prefix_iter(txn, RECOMPRESS_PREFIX)? {
        item?;
        n += 1;
    }
    Ok(n)
}

/// What one recompression did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recompressed {
    /// Chunks moved to the new pack.
    pub(crate) chunks: u64,
    /// Their stored bytes before and after.
    pub(crate) before: u64,
    pub(crate) after: u64,
}

impl ColdTier {
    /// The oldest-named pack waiting to be recompressed.
    pub(crate) async fn next_to_recompress(&self) -> Result<Option<(TenantId, [u8; 32])>> {
        self.meta
            .read(|t, txn| {
                for item in t.state.prefix_iter(txn, RECOMPRESS_PREFIX)? {
                    let (k, _) = item?;
                    if let Some(found) = parse_marker(RECOMPRESS_PREFIX, k) {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            })
            .await
    }

    /// Recompresses one marked pack: `recode` verifies the live chunks' frames (each chunk's
    /// own, cut out of its shared block if need be) and encodes them into blocks anew (see the
    /// module docs for the steps).
    pub(crate) async fn recompress<F, Fut>(
        &self,
        tenant: TenantId,
        pack: [u8; 32],
        recode: F,
    ) -> Result<Recompressed>
    where
        F: FnOnce(Vec<(ChunkKey, Frame)>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Block>>>,
    {
        let object = PackObject {
            tenant,
            pack,
            path: self.pack_path(tenant, &pack),
        };
        let live: Vec<(ChunkKey, Location)> = self.live_entries(&object).await?;
        let mut outcome = Recompressed::default();
        if !live.is_empty() {
            let body = self
                .store
                .get(&object.path)
                .await
                .map_err(|e| self.read_error(&object.path, e))?
                .bytes()
                .await
                .map_err(|e| self.read_error(&object.path, e))?;
            let what = format!("cold pack {}", object.path);
            let mut frames = Vec::with_capacity(live.len());
            for (key, frame) in super::block::frames_of(&body, 0, &live, &what) {
                frames.push((key, frame?));
            }
            let recoded = recode(frames).await?;
            let (bytes, new_pack, entries) = encode_pack(tenant, &recoded)?;
            let _writing = self.writing(tenant, new_pack);
            self.put_create(&self.pack_path(tenant, &new_pack), bytes)
                .await?;
            let old: std::collections::HashMap<ChunkKey, Location> = live.into_iter().collect();
            let due = self.meta.clock().now_ms()
                + u64::try_from(DELETE_GRACE.as_millis()).unwrap_or(u64::MAX);
            outcome = self
                .meta
                .write(move |t, txn| {
                    let done = repoint_in_txn(t, txn, entries, &old)?;
                    t.state
                        .delete(txn, &marker(RECOMPRESS_PREFIX, tenant, &pack))?;
                    if new_pack != pack {
                        t.state.put(
                            txn,
                            &marker(DELETE_PREFIX, tenant, &pack),
                            &due.to_le_bytes(),
                        )?;
                    }
                    Ok(done)
                })
                .await?;
        } else {
            // Nothing in it is live any more: only the mark goes (GC removes the object).
            self.meta
                .write(move |t, txn| {
                    t.state
                        .delete(txn, &marker(RECOMPRESS_PREFIX, tenant, &pack))?;
                    Ok(())
                })
                .await?;
        }
        Ok(outcome)
    }

    /// Drops a pack's mark without recompressing it (its frames failed verification: the
    /// scrub and reads repair those chunks from other copies).
    pub(crate) async fn unmark(&self, tenant: TenantId, pack: [u8; 32]) -> Result<()> {
        self.meta
            .write(move |t, txn| {
                t.state
                    .delete(txn, &marker(RECOMPRESS_PREFIX, tenant, &pack))?;
                Ok(())
            })
            .await
    }

    /// Deletes the replaced pack objects whose grace period is over; how many went.
    pub(crate) async fn delete_due(&self) -> Result<u64> {
        self.delete_scheduled(self.meta.clock().now_ms()).await
    }

    /// Deletes the replaced pack objects due by `now` (Unix ms; `u64::MAX`: all of them, as
    /// the garbage collector does: reads of a moved chunk look it up again); how many went.
    pub(crate) async fn delete_scheduled(&self, now: u64) -> Result<u64> {
        let due: Vec<(TenantId, [u8; 32])> = self
            .meta
            .read(move |t, txn| {
                let mut out = Vec::new();
                for item in t.state.prefix_iter(txn, DELETE_PREFIX)? {
                    let (k, v) = item?;
                    if v.len() == 8
                        && le_u64(v) <= now
                        && let Some(found) = parse_marker(DELETE_PREFIX, k)
                    {
                        out.push(found);
                    }
                }
                Ok(out)
            })
            .await?;
        let mut n = 0;
        for (tenant, pack) in due {
            let path = self.pack_path(tenant, &pack);
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            self.meta
                .write(move |t, txn| {
                    t.state.delete(txn, &marker(DELETE_PREFIX, tenant, &pack))?;
                    Ok(())
                })
                .await?;
            n += 1;
        }
        Ok(n)
    }
}
