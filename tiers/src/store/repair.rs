//! What the read pipeline does after it found a good copy below hot: promotion into hot and
//! repair of bad copies; and the scrub, which checks every tier's copy of a chunk.

use std::sync::Arc;

use bytes::Bytes;

use std::sync::atomic::Ordering;

use super::Engine;
use super::admission::Admit;
use super::gate::Gate;
use super::verify::{Lookup, VERIFY_PART};
use crate::codec::Frame;
use crate::error::Result;
use crate::hot;
use crate::meta::ChunkKey;
use crate::tier::{ChunkTier, TierName};
use crate::writeback::{QueueItem, enqueue_in_txn};

/// A good copy to put into hot: key, frame, raw bytes (decoded and hashed when absent), and
/// whether a bad hot copy goes first.
pub(super) type Promotion = (ChunkKey, Frame, Option<Bytes>, bool);

/// Promotions and repairs running after reads at most at once; a read beyond waits for one.
pub(super) const FOLLOW_UPS: u32 = 8;

/// Runs [`after_fetch`] for what a read found, off the reader's path: the reader goes on with
/// its copies while a task promotes and repairs, holding the chunks' single-flight `gates`
/// until it is done (a concurrent reader of the same chunks waits and then finds them in hot).
/// At most [`FOLLOW_UPS`] run at once; the reader waits for room before it returns.
pub(super) async fn follow_up(e: &Arc<Engine>, found: Vec<Lookup>, admit: Admit, gates: Vec<Gate>) {
    let Ok(permit) = e.follow_ups.clone().acquire_owned().await else {
        return;
    };
    let engine = e.clone();
    tokio::spawn(async move {
        after_fetch(&engine, &found, admit).await;
        drop(gates);
        drop(permit);
    });
}

/// Promotes the good copies of `found` that `admit` lets in (and every good copy replacing a
/// bad hot one) to hot in one LMDB commit, copies the other cold finds into warm in the
/// background (`admission.rs`), then repairs bad warm and cold copies. Failures are logged:
/// the read still succeeds.
/// Waits until every promotion and repair that followed earlier reads is done.
pub(super) async fn settle(e: &Engine) {
    if let Ok(all) = e.follow_ups.acquire_many(FOLLOW_UPS).await {
        drop(all);
    }
}

async fn after_fetch(e: &Arc<Engine>, found: &[Lookup], admit: Admit) {
    let mut promotions: Vec<Promotion> = Vec::new();
    let mut to_warm: Vec<(ChunkKey, Frame)> = Vec::new();
    for l in found {
        let Some((tier, copy)) = l.good.as_ref() else {
            continue;
        };
        let raw = copy.raw.clone();
        let hot_bad = l.bad.contains(&TierName::Hot);
        if hot_bad || admit.admits(e.config.hot_bytes, &e.ghosts, l.key) {
            promotions.push((l.key, copy.frame.clone(), raw, hot_bad));
        } else if admit != Admit::Never {
            e.movement.not_admitted.fetch_add(1, Ordering::Relaxed);
            if *tier == TierName::Cold && e.config.warm_bytes > 0 {
                to_warm.push((l.key, copy.frame.clone()));
            }
        }
    }
    let n = promotions.len() as u64;
    match promote(e, promotions).await {
        Ok(()) => {
            e.movement.promoted.fetch_add(n, Ordering::Relaxed);
            if n > 0 {
                e.evict_wake.notify_one();
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "promotion to hot failed; the read still succeeds")
        }
    }
    fill_warm(e, to_warm);
    for l in found {
        let Some((_, copy)) = &l.good else { continue };
        let lower: Vec<TierName> = l
            .bad
            .iter()
            .copied()
            .filter(|t| *t != TierName::Hot)
            .collect();
        if lower.is_empty() {
            if !l.bad.is_empty() {
                tracing::info!(chunk = %l.key.id(), "repaired the hot copy from a good one");
            }
            continue;
        }
        match repair_lower(e, l.key, &copy.frame, &lower).await {
            Ok(()) => {
                tracing::info!(chunk = %l.key.id(), repaired = ?l.bad, "repaired bad copies from a good one")
            }
            Err(err) => {
                tracing::warn!(chunk = %l.key.id(), error = %err, "repair failed; the read still succeeds")
            }
        }
    }
}

/// Copies cold finds into warm in the warm codec, in the background, unless
/// [`WARM_FILLS`](super::admission::WARM_FILLS) copies are in flight already.
fn fill_warm(e: &Arc<Engine>, frames: Vec<(ChunkKey, Frame)>) {
    if frames.is_empty() {
        return;
    }
    let Ok(permit) = e.warm_fills.clone().try_acquire_owned() else {
        return;
    };
    let engine = e.clone();
    tokio::spawn(async move {
        let compression = engine.config.warm_compression;
        let warm = engine.warm.clone();
        let done = crate::blocking::run(move || {
            let recoded = frames
                .into_iter()
                .map(|(key, frame)| {
                    let raw = frame.decode_verified(&key.id(), crate::codec::MAX_CHUNK_LEN)?;
                    Ok((key, frame.recode(&raw, compression)?))
                })
                .collect::<Result<Vec<_>>>()?;
            warm.put_now(recoded)
        })
        .await;
        if let Err(err) = done {
            tracing::debug!(error = %err, "copying cold reads into warm failed; they stay cold");
        }
        engine.evict_wake.notify_one();
        drop(permit);
    });
}

/// Puts good copies into hot in the hot codec, in one commit; a bad hot copy is deleted first.
pub(super) async fn promote(e: &Engine, copies: Vec<Promotion>) -> Result<()> {
    if copies.is_empty() {
        return Ok(());
    }
    let compression = e.config.hot_compression;
    let prepared = crate::blocking::map_parts(copies, VERIFY_PART, move |part| {
        Ok(part
            .into_iter()
            .filter_map(|(key, frame, raw, replace)| {
                // A copy checked only by its checksum is decoded and hashed before it enters hot.
                let raw = match raw {
                    Some(raw) => raw,
                    None => match frame.decode_verified(&key.id(), crate::codec::MAX_CHUNK_LEN) {
                        Ok(raw) => raw,
                        Err(err) => {
                            tracing::error!(chunk = %key.id(), error = %err, "a copy passed its checksum but not its hash; not promoted");
                            return None;
                        }
                    },
                };
                Some(frame.recode(&raw, compression).map(|f| (key, f, replace)))
            })
            .collect::<Vec<Result<_>>>())
    })
    .await?
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    e.meta
        .write(move |t, txn| {
            for (key, frame, replace) in &prepared {
                if *replace {
                    hot::delete_in_txn(t, txn, *key)?;
                }
                hot::put_in_txn(t, txn, *key, frame)?;
            }
            Ok(())
        })
        .await
}

/// Replaces bad warm copies with `frame` and queues bad cold copies to be written again.
async fn repair_lower(e: &Engine, key: ChunkKey, frame: &Frame, bad: &[TierName]) -> Result<()> {
    if bad.contains(&TierName::Warm) {
        e.warm.delete(vec![key]).await?;
        e.warm.put(vec![(key, frame.clone())]).await?;
    }
    if bad.contains(&TierName::Cold) {
        e.cold.delete(vec![key]).await?;
        e.meta
            .write(move |t, txn| enqueue_in_txn(t, txn, QueueItem::Chunk(key)))
            .await?;
        e.uploader.notify.notify_one();
    }
    Ok(())
}

/// Reads every tier's copy of the chunk `key`, verifies each, and repairs bad copies from a
/// good one (a scrub of one chunk). Returns the tiers whose copy was bad; a chunk no tier
/// holds intact is the lookup's failure ([`crate::Error::DataLoss`] or `NotFound`).
pub(super) async fn scrub_key(e: &Engine, key: ChunkKey) -> Result<Vec<TierName>> {
    let copies = [
        (TierName::Hot, e.hot.get(key).await),
        (TierName::Warm, e.warm.get(key).await),
        (TierName::Cold, e.cold.get(key).await),
    ];
    let lookup = crate::blocking::run(move || {
        let mut l = Lookup::new(key, false);
        for (tier, got) in copies {
            l.offer(tier, got);
        }
        Ok(l)
    })
    .await?;
    let Some((_, copy)) = &lookup.good else {
        return Err(lookup.failure());
    };
    if lookup.bad.is_empty() {
        return Ok(Vec::new());
    }
    let raw = copy
        .raw
        .clone()
        .ok_or_else(|| crate::Error::Format("a verified copy without its bytes".into()))?;
    let hot_bad = lookup.bad.contains(&TierName::Hot);
    promote(e, vec![(key, copy.frame.clone(), Some(raw), hot_bad)]).await?;
    let lower: Vec<TierName> = lookup
        .bad
        .iter()
        .copied()
        .filter(|t| *t != TierName::Hot)
        .collect();
    repair_lower(e, key, &copy.frame, &lower).await?;
    Ok(lookup.bad)
}

#[cfg(any(test, feature = "testing"))]
mod scrub {
    use super::*;
    use crate::Store;
    use crate::ids::ChunkId;
    use crate::names::Tenant;

    impl Store {
        /// Reads every tier's copy of a chunk, verifies each, and repairs bad copies from a
        /// good one (a scrub). Returns the tiers whose copy was bad.
        pub async fn scrub_chunk(&self, tenant: &Tenant, id: ChunkId) -> Result<Vec<TierName>> {
            let e = self.engine()?;
            scrub_key(&e, ChunkKey::new(tenant.id(), &id)).await
        }
    }
}
