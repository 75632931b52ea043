//! Work the store does on its own, owned by the store: the write-behind uploader
//! (`writeback.rs`), the access-time flusher, and the cold encoder threads. Each task holds
//! explicit handles, never the store. [`Background::stop`] cancels and joins everything; a
//! store dropped without `shutdown` stops it through [`Background::stop_detached`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dir_lock::DirLock;
use crate::error::Result;
use crate::meta::{ChunkKey, Meta, chunk_info, state_put};
use crate::tier::TierName;
use crate::writeback::Uploader;

/// Access times are flushed to LMDB at least this often.
const ACCESS_FLUSH: Duration = Duration::from_secs(30);

/// `state` table names of the per-tier hit counters, in [`TierName::ALL`] order.
pub(crate) const HIT_COUNTERS: [&str; 3] = ["hits/hot", "hits/warm", "hits/cold"];

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hit counts and last access times, kept in memory and written in batches (one commit,
/// not an fsync per read).
#[derive(Debug)]
pub(crate) struct AccessLog {
    meta: Meta,
    hits: [AtomicU64; 3],
    pending: Mutex<HashMap<ChunkKey, u64>>,
}

impl AccessLog {
    /// Starts from the hit counts stored at the last flush.
    pub(crate) fn new(meta: Meta, hits: [u64; 3]) -> Self {
        Self {
            meta,
            hits: hits.map(AtomicU64::new),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `n` reads served by `tier` and stamps `keys` as accessed now.
    pub(crate) fn record(&self, keys: impl IntoIterator<Item = ChunkKey>, tier: TierName, n: u64) {
        self.hits[tier.index()].fetch_add(n, Ordering::Relaxed);
        let now = self.meta.clock().now_s();
        let mut pending = lock(&self.pending);
        for k in keys {
            pending.insert(k, now);
        }
    }

    /// Which of `keys` were read since the last flush (their new access time is not in the
    /// index yet).
    pub(crate) fn touched(&self, keys: &[ChunkKey]) -> Vec<bool> {
        let pending = lock(&self.pending);
        keys.iter().map(|k| pending.contains_key(k)).collect()
    }

    /// Reads served by `tier` since the data dir was created.
    pub(crate) fn hits(&self, tier: TierName) -> u64 {
        self.hits[tier.index()].load(Ordering::Relaxed)
    }

    /// Writes the batched access times and hit counts in one commit.
    pub(crate) async fn flush(&self) -> Result<()> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let hits: [u64; 3] = std::array::from_fn(|i| self.hits[i].load(Ordering::Relaxed));
        self.meta
            .write(move |t, txn| {
                for (key, at) in pending {
                    if let Some(mut info) = chunk_info(t, txn, &key)?
                        && info.last_access_s < at
                    {
                        info.last_access_s = at;
                        t.chunks.put(txn, key.as_bytes(), &info.encode())?;
                    }
                }
                for (name, value) in HIT_COUNTERS.iter().zip(hits) {
                    state_put(t, txn, name, value)?;
                }
                Ok(())
            })
            .await
    }
}

/// The running background work of one store.
#[derive(Debug)]
pub(crate) struct Background {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    uploader: Arc<Uploader>,
    access: Arc<AccessLog>,
}

impl Background {
    /// Spawns the uploader and the flusher (the encoder threads run inside the uploader).
    pub(crate) fn start(uploader: Arc<Uploader>, access: Arc<AccessLog>) -> Self {
        let cancel = uploader.cancel.clone();
        let writeback = tokio::spawn(crate::writeback::run(uploader.clone()));
        let flusher = tokio::spawn(flush_access_times(access.clone(), cancel.clone()));
        Self {
            cancel,
            tasks: vec![writeback, flusher],
            uploader,
            access,
        }
    }

    /// Spawns one more task, stopped and joined with the others; it gets the cancel token.
    pub(crate) fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(tokio::spawn(task(self.cancel.clone())));
    }

    /// Cancels the tasks, waits for them, and joins the encoder threads. What is queued stays
    /// in LMDB for the next open.
    pub(crate) async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let uploader = self.uploader;
        crate::blocking::run(move || {
            uploader.encoder.close();
            Ok(())
        })
        .await
    }

    /// [`Background::stop`] for a store dropped without `shutdown`: cancels now and finishes
    /// on its own (flushing access times, joining the LMDB writer and the encoders), then
    /// releases the data-dir `lock`. Without a runtime the tasks are gone already and this
    /// runs on the calling thread.
    pub(crate) fn stop_detached(self, meta: Meta, lock: Option<DirLock>) {
        self.cancel.cancel();
        // Everything that holds the environment open goes before the lock, which waits for the
        // environment to close.
        let finish = move |uploader: Arc<Uploader>,
                           access: Arc<AccessLog>,
                           meta: Meta,
                           lock: Option<DirLock>| {
            drop(access);
            uploader.encoder.close();
            drop(uploader);
            meta.close();
            drop(meta);
            drop(lock);
        };
        let Self {
            tasks,
            uploader,
            access,
            ..
        } = self;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    for task in tasks {
                        let _ = task.await;
                    }
                    if let Err(e) = access.flush().await {
                        tracing::warn!(error = %e, "flushing access times of a dropped store failed");
                    }
                    let _ = crate::blocking::run(move || {
                        finish(uploader, access, meta, lock);
                        Ok(())
                    })
                    .await;
                });
            }
            Err(_) => finish(uploader, access, meta, lock),
        }
    }
}

/// The flusher task: writes access times every [`ACCESS_FLUSH`] until cancelled.
async fn flush_access_times(access: Arc<AccessLog>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(ACCESS_FLUSH) => {}
        }
        if let Err(e) = access.flush().await {
            tracing::warn!(error = %e, "flushing access times failed; will retry");
        }
    }
}
