//! The background scrub: nothing reads a cold copy while the hot one is good, so rot in the
//! bucket (or in a warm pack) would go unnoticed until it is needed. The scrub walks the
//! `chunks` table in key order and, for each chunk, reads and verifies every tier's copy
//! (`repair::scrub_key`); a bad copy is repaired from a good one (hot and warm rewritten, cold
//! queued to be written again by the write-behind).
//!
//! - **Rate.** [`StoreConfig::scrub_per_day`](super::StoreConfig::scrub_per_day) is the share
//!   of the chunks checked per day (`0.1`: each chunk about every ten days; `0` turns the scrub
//!   off). Every [`TICK`] the scrub earns `share × chunks × TICK / 1 day` chunks of work and
//!   checks the whole ones, at most [`MAX_PER_TICK`] (unused work does not pile up), so it
//!   stays a trickle beside requests.
//! - **Restartable.** After each tick the last chunk key checked is stored in the `state`
//!   table (`scrub/after`, a 40-byte chunk key); the next start resumes after it. At the end of
//!   the table it starts again from the first chunk and counts a cycle.
//! - **Findings** are logged (a warning per bad copy, naming the chunk and the tier; info per
//!   cycle) and counted in [`ScrubStats`] (`Store::stats`, and the daemon's metrics).

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use super::repair::scrub_key;
use super::types::ScrubStats;
use crate::error::{Error, Result};
use crate::meta::ChunkKey;
use crate::tier::TierName;

/// How often the scrub wakes.
pub(super) const TICK: Duration = Duration::from_secs(1);
/// The most chunks checked per tick.
pub(super) const MAX_PER_TICK: u64 = 64;
/// The `state` key of the last chunk checked.
pub(crate) const SCRUB_CURSOR_KEY: &str = "scrub/after";
const DAY_S: f64 = 86_400.0;

/// The scrub's counters since the store opened.
#[derive(Debug, Default)]
pub(crate) struct ScrubCounters {
    checked: AtomicU64,
    bad: [AtomicU64; 3],
    lost: AtomicU64,
    cycles: AtomicU64,
}

impl ScrubCounters {
    /// A snapshot for [`super::Stats`].
    pub(crate) fn snapshot(&self) -> ScrubStats {
        ScrubStats {
            checked: self.checked.load(Ordering::Relaxed),
            bad_copies: TierName::ALL
                .iter()
                .map(|t| (*t, self.bad[t.index()].load(Ordering::Relaxed)))
                .collect(),
            lost: self.lost.load(Ordering::Relaxed),
            cycles: self.cycles.load(Ordering::Relaxed),
        }
    }
}

/// Runs the scrub until `cancel` fires or the engine is gone. Holds the engine only while it
/// checks a tick's chunks.
pub(super) async fn run(engine: Weak<Engine>, cancel: CancellationToken) {
    let mut earned = 0.0f64;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        let Some(e) = engine.upgrade() else { return };
        let share = e.config.scrub_per_day;
        if share <= 0.0 {
            return;
        }
        match tick(&e, &cancel, share, &mut earned).await {
            Ok(()) => {}
            Err(Error::ShuttingDown) => return,
            Err(err) => {
                tracing::warn!(error = %err, "the scrub could not run this tick; it retries")
            }
        }
    }
}

/// One tick: earns work, checks that many chunks after the cursor, stores the cursor.
async fn tick(
    e: &Arc<Engine>,
    cancel: &CancellationToken,
    share: f64,
    earned: &mut f64,
) -> Result<()> {
    let (chunks, after) = e
        .meta
        .read(|t, txn| {
            let after = t
                .state
                .get(txn, SCRUB_CURSOR_KEY.as_bytes())?
                .and_then(|v| <[u8; 40]>::try_from(v).ok());
            Ok((t.chunks.len(txn)?, after))
        })
        .await?;
    let per_tick = share * chunks as f64 * TICK.as_secs_f64() / DAY_S;
    *earned = (*earned + per_tick).min(MAX_PER_TICK as f64);
    let n = earned.floor() as usize;
    if n == 0 {
        return Ok(());
    }
    *earned -= n as f64;
    let (keys, wrapped) = e
        .meta
        .read(move |t, txn| {
            let mut keys = Vec::with_capacity(n);
            let bounds = (
                after
                    .as_ref()
                    .map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..])),
                Bound::Unbounded,
            );
            for item in t.chunks.raw.range(txn, &bounds)? {
                if keys.len() == n {
                    break;
                }
                keys.push(item?.0.to_vec());
            }
            let wrapped = keys.len() < n;
            if wrapped {
                for item in t.chunks.raw.iter(txn)? {
                    if keys.len() == n {
                        break;
                    }
                    keys.push(item?.0.to_vec());
                }
            }
            Ok((keys, wrapped))
        })
        .await?;
    let counters = &e.scrub;
    let mut last = None;
    for raw in keys {
        if cancel.is_cancelled() {
            break;
        }
        let Ok(key) = ChunkKey::from_slice(&raw) else {
            continue;
        };
        match scrub_key(e, key).await {
            Ok(bad) => {
                for tier in &bad {
                    counters.bad[tier.index()].fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(chunk = %key.id(), tier = tier.as_str(), "the scrub found a bad copy and repaired it from a good one");
                }
            }
            Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
            Err(err) => {
                counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chunk = %key.id(), error = %err, "the scrub found no good copy of a chunk");
            }
        }
        counters.checked.fetch_add(1, Ordering::Relaxed);
        last = Some(key);
    }
    if wrapped {
        let cycles = counters.cycles.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(cycles, chunks, "the scrub checked every chunk once more");
    }
    if let Some(key) = last {
        e.meta
            .write(move |t, txn| {
                t.state
                    .put(txn, SCRUB_CURSOR_KEY.as_bytes(), key.as_bytes())?;
                Ok(())
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::tests::{config, damage_cold, data, key, ns, read_all, tmp};
    use super::*;
    use crate::Store;
    use crate::refs::RefOptions;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_background_scrub_finds_a_flipped_cold_copy_while_hot_is_intact_and_repairs_it()
    -> Result<()> {
        let dir = tmp()?;
        let mut c = config(dir.path());
        // Every chunk, every tick.
        c.scrub_per_day = 1e9;
        let n = ns("acme/web/app");
        let store = Store::open(c.clone()).await?;
        let blob = data(600_000, 11, true);
        store
            .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
            .await?;
        store.flush_cold().await?;
        let record = store
            .get_ref(&n, &key("k"))
            .await?
            .ok_or_else(|| Error::NotFound("ref".into()))?;
        let manifest = store.manifest(n.tenant(), record.manifest).await?;
        let id = manifest.entries()[1].id;
        damage_cold(&store, ChunkKey::new(n.tenant().id(), &id)).await?;

        let deadline = Instant::now() + Duration::from_secs(60);
        let cold_bad = |s: &super::super::Stats| {
            s.scrub
                .bad_copies
                .iter()
                .find(|(t, _)| *t == TierName::Cold)
                .map_or(0, |(_, n)| *n)
        };
        loop {
            let stats = store.stats(None).await?;
            if cold_bad(&stats) >= 1 {
                assert_eq!(stats.scrub.lost, 0, "{:?}", stats.scrub);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the scrub found nothing: {:?}",
                stats.scrub
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The repair queued a new cold copy: once written, the blob reads back from cold alone.
        store.flush_cold().await?;
        let ids: Vec<_> = manifest.entries().iter().map(|e| e.id).collect();
        store.evict_to_cold(n.tenant(), ids).await?;
        assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
        store.shutdown().await?;

        // The cursor survives the restart: the next start resumes after it.
        let store = Store::open(c).await?;
        let cursor = store
            .engine()?
            .meta
            .read(|t, txn| {
                Ok(t.state
                    .get(txn, SCRUB_CURSOR_KEY.as_bytes())?
                    .map(<[u8]>::len))
            })
            .await?;
        assert_eq!(
            cursor,
            Some(40),
            "the scrub stores the last chunk key it checked"
        );
        store.shutdown().await
    }
}
