//! The evictor: keeps the hot and warm tiers within their byte budgets, in the background.
//!
//! Every [`TICK`] (and when woken after a write) it reads each tier's stored bytes from the
//! `counters` table, the figure `stat` reports. A tier at or over its budget gets a pass that
//! brings it down to 90% of the budget, so `stat` shows a tier above its budget for at most
//! about one pass, also on an idle daemon.
//!
//! # Order
//!
//! Least recently used first, by the coarse `last_access_s` of each chunk's `chunks` entry
//! (reads stamp times in memory, the access log writes them in batches; a pass flushes it
//! first). Chunks of pinned refs (`pin_prefixes`, matched against the ref key in every
//! namespace) come after every other chunk, in the same order among themselves: they stay in
//! hot as long as the other chunks can make room. When pinned chunks alone exceed the hot
//! budget, the budget wins: the least recently used pinned chunks are demoted too, and each
//! such pass logs a warning saying how much the pins hold.
//!
//! A pass scans the `chunks` table twice: once for a histogram of raw bytes by access time
//! (to find the cutoff time up to which chunks must go, with the tier's stored-to-raw ratio),
//! once to collect the chunks up to that cutoff, which it then handles oldest first in batches
//! of [`BATCH`], re-reading the tier's total after each.
//!
//! # Movement
//!
//! - **Hot.** A chunk without a warm copy is first demoted: its hot frame is decoded, verified
//!   and re-encoded with the warm codec, and written to a warm pack (fsync'd). Then, in one
//!   LMDB transaction that re-checks each chunk's tier bits, the hot copies of chunks that warm
//!   or cold holds are dropped. With the warm tier off (`warm_bytes = 0`), hot drops only
//!   chunks the cold tier holds; the others wait for the write-behind.
//! - **Warm.** A warm copy is dropped only when the cold tier holds the chunk, checked in the
//!   dropping transaction. A sealed pack left without live chunks is removed (`warm.rs`).
//!
//! A chunk is never left without a copy: every drop happens in a transaction that sees another
//! tier's index entry. A crash mid-pass leaves at worst an extra copy (a demoted warm copy
//! whose hot copy was not dropped yet), which the next pass handles.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use super::stats::sum_counters;
use super::types::MovementStats;
use super::verify::{Need, verify_copy};
use crate::codec::{Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use crate::hot;
use crate::manifest::{MAX_CHUNKS_PER_BLOB, Manifest};
use crate::meta::{ChunkInfo, ChunkKey, chunk_info, manifest_key, tier_bits};
use crate::names::Namespace;
use crate::refs::RefRecord;
use crate::tier::TierName;

/// How often the evictor looks at the budgets.
pub(super) const TICK: Duration = Duration::from_secs(1);
/// Chunks moved per step of a pass.
const BATCH: usize = 512;
/// Pinned chunks sort after every unpinned one.
const PINNED: u64 = 1 << 62;
/// Ticks a pass that could not get under budget waits before the next try.
const STUCK_TICKS: u32 = 10;

/// Counters of movement between tiers since the store opened.
#[derive(Debug, Default)]
pub(crate) struct MovementCounters {
    demoted: AtomicU64,
    evicted: [AtomicU64; 3],
    evicted_bytes: [AtomicU64; 3],
    pub(crate) promoted: AtomicU64,
    pub(crate) not_admitted: AtomicU64,
    passes: AtomicU64,
}

impl MovementCounters {
    /// A snapshot for [`super::Stats`].
    pub(crate) fn snapshot(&self) -> MovementStats {
        MovementStats {
            demoted: self.demoted.load(Ordering::Relaxed),
            evicted: [TierName::Hot, TierName::Warm]
                .iter()
                .map(|t| {
                    (
                        *t,
                        self.evicted[t.index()].load(Ordering::Relaxed),
                        self.evicted_bytes[t.index()].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            promoted: self.promoted.load(Ordering::Relaxed),
            not_admitted: self.not_admitted.load(Ordering::Relaxed),
            passes: self.passes.load(Ordering::Relaxed),
        }
    }

    fn add_evicted(&self, tier: TierName, chunks: u64, bytes: u64) {
        self.evicted[tier.index()].fetch_add(chunks, Ordering::Relaxed);
        self.evicted_bytes[tier.index()].fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The evictor task: enforces the budgets every tick and when woken, until cancelled or the
/// engine is gone.
pub(super) async fn run(
    engine: Weak<Engine>,
    wake: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    let mut stuck = 0u32;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(TICK) => {}
            () = wake.notified() => {}
        }
        if stuck > 0 {
            stuck -= 1;
            continue;
        }
        let Some(e) = engine.upgrade() else { break };
        match enforce(&e).await {
            Ok(true) => {}
            Ok(false) => stuck = STUCK_TICKS,
            Err(Error::ShuttingDown) => break,
            Err(err) => {
                tracing::warn!(error = %err, "eviction pass failed; will retry");
                stuck = STUCK_TICKS;
            }
        }
    }
}

/// Stored bytes of each tier, all tenants.
async fn stored(e: &Engine) -> Result<[u64; 3]> {
    let totals = e.meta.read(|t, txn| sum_counters(t, txn, None)).await?;
    Ok(totals.map(|(_, bytes)| bytes))
}

/// Brings every tier at or over its budget down to 90% of it. Returns `false` when a tier
/// stayed over its budget (its chunks wait for a lower tier's copy).
pub(crate) async fn enforce(e: &Arc<Engine>) -> Result<bool> {
    let mut ok = true;
    for (tier, budget) in [
        (TierName::Hot, e.config.hot_bytes),
        (TierName::Warm, e.config.warm_bytes),
    ] {
        let now = stored(e).await?[tier.index()];
        if now == 0 || now < budget {
            continue;
        }
        e.check_open()?;
        ok &= shrink(e, tier, budget).await?;
    }
    Ok(ok)
}

/// One pass over `tier`: drops least recently used copies until it holds 90% of `budget`.
async fn shrink(e: &Arc<Engine>, tier: TierName, budget: u64) -> Result<bool> {
    e.movement.passes.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    e.access.flush().await?;
    let target = budget / 10 * 9;
    let pinned = if tier == TierName::Hot && !e.config.pin_prefixes.is_empty() {
        Arc::new(pinned_chunks(e).await?)
    } else {
        Arc::new(HashSet::new())
    };
    let before = stored(e).await?[tier.index()];
    let (candidates, ratio) = candidates(e, tier, before, target, pinned.clone()).await?;
    let mut pinned_dropped = 0u64;
    let mut left = before;
    let mut rest = &candidates[..];
    while left > target && !rest.is_empty() {
        e.check_open()?;
        // As many of the oldest as cover what is still over the mark, by their estimated
        // stored size (access times are coarse: many chunks share the cutoff second).
        let mut take = 0;
        let mut covered = 0f64;
        while take < rest.len() && take < BATCH && covered < (left - target) as f64 {
            covered += f64::from(rest[take].1.raw_len) * ratio;
            take += 1;
        }
        let (batch, later) = rest.split_at(take);
        rest = later;
        // A chunk read since the pass began is no longer among the least recently used.
        let keys: Vec<ChunkKey> = batch.iter().map(|(k, _)| *k).collect();
        let batch: Vec<(ChunkKey, ChunkInfo)> = batch
            .iter()
            .zip(e.access.touched(&keys))
            .filter(|(_, touched)| !touched)
            .map(|(c, _)| *c)
            .collect();
        let batch = &batch[..];
        pinned_dropped += batch.iter().filter(|(k, _)| pinned.contains(k)).count() as u64;
        match tier {
            TierName::Hot => evict_hot(e, batch).await?,
            _ => evict_warm(e, batch).await?,
        }
        left = stored(e).await?[tier.index()];
    }
    tracing::debug!(
        tier = tier.as_str(),
        before,
        after = left,
        budget,
        ms = started.elapsed().as_millis() as u64,
        "eviction pass"
    );
    if pinned_dropped > 0 {
        tracing::warn!(
            budget,
            pinned_chunks = pinned.len(),
            demoted = pinned_dropped,
            "the pinned refs alone hold more than the hot budget allows; their least recently \
             used chunks were demoted. Raise --hot-bytes or narrow pin_prefixes"
        );
    }
    if left >= budget {
        tracing::warn!(
            tier = tier.as_str(),
            stored = left,
            budget,
            "a tier stays over its budget: its chunks have no copy in a lower tier yet (the \
             cold write-behind is behind, or the cold tier is failing); they go once it catches up"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Where a chunk sorts in eviction order.
fn order(info: &ChunkInfo, pinned: bool) -> u64 {
    if pinned {
        PINNED + info.last_access_s
    } else {
        info.last_access_s
    }
}

/// The copies of `tier` (holding `stored_now` bytes) to drop, oldest first: everything up to
/// the access time where the dropped raw bytes, scaled by the tier's stored-to-raw ratio, cover
/// what is over `target`; and that ratio.
async fn candidates(
    e: &Arc<Engine>,
    tier: TierName,
    stored_now: u64,
    target: u64,
    pinned: Arc<HashSet<ChunkKey>>,
) -> Result<(Vec<(ChunkKey, ChunkInfo)>, f64)> {
    let bit = tier.bit();
    let need = stored_now.saturating_sub(target);
    e.meta
        .read(move |t, txn| {
            let mut by_time: BTreeMap<u64, u64> = BTreeMap::new();
            let mut raw_total = 0u64;
            for item in t.chunks.iter(txn)? {
                // A damaged entry is skipped; reading the chunk rebuilds it.
                let Ok((k, v)) = item else { continue };
                let (Ok(key), Ok(info)) = (ChunkKey::from_slice(k), ChunkInfo::decode(v)) else {
                    continue;
                };
                if info.tiers & bit == 0 {
                    continue;
                }
                raw_total += u64::from(info.raw_len);
                *by_time
                    .entry(order(&info, pinned.contains(&key)))
                    .or_default() += u64::from(info.raw_len);
            }
            let ratio = if raw_total == 0 {
                1.0
            } else {
                stored_now as f64 / raw_total as f64
            };
            let mut cutoff = 0;
            let mut covered = 0f64;
            for (at, raw) in &by_time {
                cutoff = *at;
                covered += *raw as f64 * ratio;
                if covered >= need as f64 {
                    break;
                }
            }
            let mut out = Vec::new();
            for item in t.chunks.iter(txn)? {
                // A damaged entry is skipped; reading the chunk rebuilds it.
                let Ok((k, v)) = item else { continue };
                let (Ok(key), Ok(info)) = (ChunkKey::from_slice(k), ChunkInfo::decode(v)) else {
                    continue;
                };
                if info.tiers & bit != 0 && order(&info, pinned.contains(&key)) <= cutoff {
                    out.push((key, info));
                }
            }
            out.sort_by_key(|(k, info)| order(info, pinned.contains(k)));
            Ok((out, ratio))
        })
        .await
}

/// Demotes to warm what warm lacks, then drops the hot copies that a lower tier holds.
async fn evict_hot(e: &Arc<Engine>, batch: &[(ChunkKey, ChunkInfo)]) -> Result<()> {
    if e.config.warm_bytes > 0 {
        let to_demote: Vec<ChunkKey> = batch
            .iter()
            .filter(|(_, info)| info.tiers & tier_bits::WARM == 0)
            .map(|(k, _)| *k)
            .collect();
        if !to_demote.is_empty() {
            let hot = e.hot.clone();
            let compression = e.config.warm_compression;
            let frames = crate::blocking::map_parts(to_demote, 64, move |part| {
                let frames = hot.get_many_now(&part)?;
                Ok(part
                    .into_iter()
                    .zip(frames)
                    .filter_map(|(key, frame)| {
                        let frame = frame?;
                        // Checked by its checksum like any hot copy sent on (the chunk was
                        // hashed when it was stored); a bad hot copy is not demoted, a read or
                        // the scrub repairs it.
                        let checked = verify_copy(&key.id(), frame, Need::Frame, false).ok()?;
                        let raw = match checked.raw {
                            Some(raw) => raw,
                            None => checked.frame.decode(MAX_CHUNK_LEN).ok()?,
                        };
                        Some(checked.frame.recode(&raw, compression).map(|f| (key, f)))
                    })
                    .collect::<Vec<Result<(ChunkKey, Frame)>>>())
            })
            .await?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
            let n = frames.len() as u64;
            let warm = e.warm.clone();
            crate::blocking::run(move || warm.put_now(frames)).await?;
            e.movement.demoted.fetch_add(n, Ordering::Relaxed);
        }
    }
    let keys: Vec<ChunkKey> = batch.iter().map(|(k, _)| *k).collect();
    let lower = if e.config.warm_bytes > 0 {
        tier_bits::WARM | tier_bits::COLD
    } else {
        tier_bits::COLD
    };
    let (n, bytes) = e
        .meta
        .write(move |t, txn| {
            let (mut n, mut bytes) = (0u64, 0u64);
            for key in keys {
                let Some(info) = chunk_info(t, txn, &key)? else {
                    continue;
                };
                // The lower copy must be indexed, not only flagged.
                let held_below = (info.tiers & lower & tier_bits::WARM != 0
                    && t.warm.contains(txn, key.as_bytes())?)
                    || (info.tiers & lower & tier_bits::COLD != 0
                        && t.cold.contains(txn, key.as_bytes())?);
                if !held_below {
                    continue;
                }
                let len = t.hot.get(txn, key.as_bytes())?.map_or(0, <[u8]>::len);
                if hot::delete_in_txn(t, txn, key)? {
                    n += 1;
                    bytes += len as u64;
                }
            }
            Ok((n, bytes))
        })
        .await?;
    e.movement.add_evicted(TierName::Hot, n, bytes);
    Ok(())
}

/// Drops the warm copies of chunks the cold tier holds.
async fn evict_warm(e: &Arc<Engine>, batch: &[(ChunkKey, ChunkInfo)]) -> Result<()> {
    let keys: Vec<ChunkKey> = batch
        .iter()
        .filter(|(_, info)| info.tiers & tier_bits::COLD != 0)
        .map(|(k, _)| *k)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let warm = e.warm.clone();
    let (n, bytes) = crate::blocking::run(move || warm.drop_now(keys, true)).await?;
    e.movement.add_evicted(TierName::Warm, n, bytes);
    Ok(())
}

/// The chunks of every live ref whose key starts with a pin prefix, in every namespace.
async fn pinned_chunks(e: &Arc<Engine>) -> Result<HashSet<ChunkKey>> {
    let prefixes = e.config.pin_prefixes.clone();
    let now = e.meta.clock().now_ms();
    e.meta
        .read(move |t, txn| {
            let mut out = HashSet::new();
            for item in t.refs.iter(txn)? {
                // A damaged ref pins nothing; reading it answers DATA_LOSS.
                let Ok((k, v)) = item else { continue };
                let Some(split) = k.iter().position(|b| *b == 0) else {
                    continue;
                };
                let (ns, key) = (&k[..split], &k[split + 1..]);
                if !prefixes.iter().any(|p| key.starts_with(p.as_bytes())) {
                    continue;
                }
                let Ok(record) = RefRecord::decode(v) else {
                    continue;
                };
                if record.is_expired(now) {
                    continue;
                }
                let Some(ns) = std::str::from_utf8(ns)
                    .ok()
                    .and_then(|s| s.parse::<Namespace>().ok())
                else {
                    continue;
                };
                let tid = ns.tenant().id();
                let mkey = manifest_key(tid, &record.manifest);
                let Some(bytes) = t.manifests.get_unless_damaged(txn, &mkey)? else {
                    continue;
                };
                let Ok(manifest) = Manifest::decode(bytes, MAX_CHUNKS_PER_BLOB) else {
                    continue;
                };
                out.extend(
                    manifest
                        .entries()
                        .iter()
                        .map(|entry| ChunkKey::new(tid, &entry.id)),
                );
            }
            Ok(out)
        })
        .await
}
