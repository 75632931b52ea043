//! The public facade of the engine: [`Store`].
//!
//! # Where a new chunk lives
//!
//! 1. An upload's frames are decoded and hashed on the blocking pool; a mismatch fails the call
//!    and stores nothing of that frame.
//! 2. The chunk, its `chunks` entry and a `cold_queue` entry are written in one LMDB transaction
//!    by the group committer; [`Store::put_chunks`] returns only after that commit is fsync'd.
//!    From then on the chunk is durable in the hot tier and survives `kill -9`.
//! 3. The write-behind uploader (`writeback.rs`) later reads queued chunks, compresses them with
//!    the cold codec on a low-priority thread, writes them to the object store in packs of
//!    [`StoreConfig::cold_pack_target`] bytes, then indexes them and drops their queue
//!    entries in one transaction. A crash before that commit only means the pack is written
//!    again (same content, same name) after the restart.
//! 4. The warm tier receives chunks when they are demoted from hot (budgets: lifecycle issue) or
//!    promoted from cold; [`Store::demote`] copies chunks there explicitly.
//!
//! # Reads
//!
//! Hot, then warm, then cold. Every copy read is decoded and re-hashed (hot too unless
//! [`StoreConfig::verify_hot_reads`] is off); a bad copy is never returned: the next tier is
//! tried, and a good copy found further down repairs the bad one (and is promoted to hot).
//! Concurrent misses of one chunk fetch it once (single flight). [`Error::DataLoss`] only when
//! every tier that holds the chunk fails verification.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use growable_bloom_filter::GrowableBloom;
use tokio_util::sync::CancellationToken;

use crate::chunking::{ChunkReader, ChunkerSpec};
use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::cold::ColdTier;
use crate::error::{Error, Result};
use crate::hot::{self, HotTier};
use crate::ids::{BlobId, ChunkId, ManifestId};
use crate::manifest::{Manifest, ManifestEntry};
use crate::meta::{ChunkInfo, ChunkKey, Meta, le_u64, state_get, state_put, tier_bits};
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant, TenantId};
use crate::refs::{RefOptions, RefRecord};
use crate::tier::ChunkTier;
use crate::warm::WarmTier;

/// How to open a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Root of all local state (`meta/` LMDB, `warm/` packs, `lock`).
    pub data_dir: PathBuf,
    /// The cold tier as an object_store URL (`file:///abs`, `memory://`, `s3://bucket/prefix`, …).
    pub cold_url: String,
    /// Extra object_store options (`aws_endpoint`, credentials, …).
    pub cold_options: Vec<(String, String)>,
    /// How chunks are cut; advertised to clients.
    pub chunker: ChunkerSpec,
    /// LMDB map size in bytes (the most the hot tier and metadata can ever hold).
    pub lmdb_map_size: u64,
    /// Hot tier codec.
    pub hot_compression: Compression,
    /// Warm tier codec.
    pub warm_compression: Compression,
    /// Cold tier codec.
    pub cold_compression: Compression,
    /// Decode and re-hash chunks read from the hot tier too.
    pub verify_hot_reads: bool,
    /// Warm pack files are sealed at this size.
    pub warm_pack_limit: u64,
    /// Cold pack objects are written once this many stored bytes are queued.
    pub cold_pack_target: usize,
    /// A partial cold pack is flushed after this long.
    pub cold_flush_after: Duration,
    /// Concurrent object store requests.
    pub cold_concurrency: usize,
    /// Background threads compressing cold packs.
    pub cold_encoders: usize,
}

impl StoreConfig {
    /// Defaults for a data directory: cold tier `file://<data_dir>/cold`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let cold_url = format!("file://{}", data_dir.join("cold").display());
        Self {
            data_dir,
            cold_url,
            cold_options: Vec::new(),
            chunker: ChunkerSpec::default(),
            lmdb_map_size: 64 << 30,
            hot_compression: Compression::Lz4,
            warm_compression: Compression::Zstd(3),
            cold_compression: Compression::Zstd(9),
            verify_hot_reads: true,
            warm_pack_limit: 256 << 20,
            cold_pack_target: 8 << 20,
            cold_flush_after: Duration::from_secs(5),
            cold_concurrency: 8,
            cold_encoders: 1,
        }
    }
}

/// The three tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TierName {
    /// LMDB.
    Hot,
    /// Local pack files.
    Warm,
    /// Object store.
    Cold,
}

impl TierName {
    /// `hot`, `warm` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Warm => "warm",
            Self::Cold => "cold",
        }
    }
}

/// Figures of one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Chunks held.
    pub chunks: u64,
    /// Bytes held, as stored (compressed, with frame headers).
    pub stored_bytes: u64,
    /// Reads served by this tier since start.
    pub hits: u64,
}

/// What [`Store::stats`] reports.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Hot, warm, cold.
    pub tiers: Vec<(TierName, TierStats)>,
    /// Sum of the sizes of all live refs' blobs.
    pub logical_bytes: u64,
    /// Live refs.
    pub refs: u64,
    /// Chunks and manifests waiting for their cold copy.
    pub cold_queue: u64,
}

/// What [`Store::put_chunks`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutSummary {
    /// Newly stored.
    pub stored: u64,
    /// Already held by the tenant.
    pub already_present: u64,
}

/// One piece of a blob being read, in order.
#[derive(Clone, Debug)]
pub enum BlobPart {
    /// A whole chunk in its stored form: the reader decodes and verifies it.
    Frame(ChunkId, Frame),
    /// Raw verified bytes (the ends of a byte range).
    Data(Bytes),
}

/// The storage engine. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: StoreConfig,
    pub(crate) meta: Meta,
    pub(crate) hot: HotTier,
    pub(crate) warm: WarmTier,
    pub(crate) cold: ColdTier,
    bloom: RwLock<GrowableBloom>,
    hits: [AtomicU64; 3],
    access: Mutex<HashMap<ChunkKey, u64>>,
    inflight: Mutex<HashMap<ChunkKey, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) writeback: Arc<tokio::sync::Notify>,
    pub(crate) pending: crate::writeback::Shared,
    pub(crate) encoder: crate::writeback::Encoder,
    pub(crate) cancel: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.config.data_dir)
            .field("cold", &self.inner.cold)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const TIER_BITS: [(TierName, u8); 3] = [
    (TierName::Hot, tier_bits::HOT),
    (TierName::Warm, tier_bits::WARM),
    (TierName::Cold, tier_bits::COLD),
];

/// Chunks read per LMDB transaction when streaming a blob.
const READ_BATCH: usize = 64;
/// Batches of a blob in flight at once.
const READ_AHEAD: usize = 3;
/// Most manifest entries accepted for one blob (a 40 GB blob at the default chunk size).
pub const MAX_CHUNKS_PER_BLOB: usize = 4 << 20;
/// Batches of an ingest being committed at once.
const INGEST_COMMITS_IN_FLIGHT: usize = 4;
/// Access times are flushed to LMDB at least this often.
const ACCESS_FLUSH: Duration = Duration::from_secs(30);

impl Store {
    /// Opens (creating if needed) the store, locks its data dir, recovers warm packs,
    /// rebuilds the existence filter, and starts the cold uploader.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        config.chunker.validate()?;
        let cfg = config.clone();
        let (lock_file, meta, warm, bloom, hits) = crate::blocking::run(move || {
            let dir = &cfg.data_dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating data dir {}", dir.display()), e))?;
            let lock_path = dir.join("lock");
            let lock_file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
            match lock_file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        path: dir.display().to_string(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", lock_path.display()), e));
                }
            }
            let meta = Meta::open(&dir.join("meta"), cfg.lmdb_map_size)?;
            let warm = WarmTier::open(
                &dir.join("warm"),
                meta.clone(),
                cfg.warm_compression,
                cfg.warm_pack_limit,
            )?;
            let started = std::time::Instant::now();
            let (bloom, count, hits) = meta.read_now(|t, txn| {
                let count = t.chunks.len(txn)?;
                let mut bloom = GrowableBloom::new(
                    0.01,
                    usize::try_from(count).unwrap_or(usize::MAX).max(1 << 20),
                );
                for item in t.chunks.iter(txn)? {
                    let (k, _) = item?;
                    bloom.insert(k);
                }
                let hits = [
                    state_get(t, txn, "hits/hot")?,
                    state_get(t, txn, "hits/warm")?,
                    state_get(t, txn, "hits/cold")?,
                ];
                Ok((bloom, count, hits))
            })?;
            tracing::info!(
                chunks = count,
                ms = started.elapsed().as_millis() as u64,
                "existence filter rebuilt"
            );
            Ok((lock_file, meta, warm, bloom, hits))
        })
        .await?;
        let cold = ColdTier::open(
            &config.cold_url,
            &config.cold_options,
            config.cold_concurrency,
            meta.clone(),
        )?;
        let hot = HotTier::new(meta.clone(), config.hot_compression);
        let encoder = crate::writeback::Encoder::start(config.cold_encoders)?;
        let inner = Arc::new(Inner {
            config,
            meta,
            hot,
            warm,
            cold,
            bloom: RwLock::new(bloom),
            hits: hits.map(AtomicU64::new),
            access: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            writeback: Arc::new(tokio::sync::Notify::new()),
            pending: crate::writeback::Shared::default(),
            encoder,
            cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            _lock: lock_file,
        });
        let store = Self { inner };
        let writeback = tokio::spawn(crate::writeback::run(store.clone()));
        let flusher = tokio::spawn({
            let store = store.clone();
            async move {
                loop {
                    tokio::select! {
                        () = store.inner.cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCESS_FLUSH) => {}
                    }
                    if let Err(e) = store.flush_access().await {
                        tracing::warn!(error = %e, "flushing access times failed; will retry");
                    }
                }
            }
        });
        lock(&store.inner.tasks).extend([writeback, flusher]);
        Ok(store)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The chunker clients must use.
    pub fn chunker(&self) -> ChunkerSpec {
        self.inner.config.chunker
    }

    /// The largest chunk accepted or returned.
    pub fn max_chunk_len(&self) -> usize {
        MAX_CHUNK_LEN
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// Which of `ids` the tenant lacks, in the order given (duplicates collapsed).
    pub async fn find_missing(&self, tenant: &Tenant, ids: Vec<ChunkId>) -> Result<Vec<ChunkId>> {
        self.check_open()?;
        let tid = tenant.id();
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let mut surely_missing = Vec::new();
        let mut maybe = Vec::new();
        {
            let bloom = self
                .inner
                .bloom
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, id) in ids.iter().enumerate() {
                if !seen.insert(*id) {
                    continue;
                }
                let key = ChunkKey::new(tid, id);
                if bloom.contains(key.as_bytes().as_slice()) {
                    maybe.push((i, key));
                } else {
                    surely_missing.push(i);
                }
            }
        }
        let confirmed: Vec<usize> = if maybe.is_empty() {
            Vec::new()
        } else {
            self.inner
                .meta
                .read(move |t, txn| {
                    let mut out = Vec::new();
                    for (i, key) in maybe {
                        if t.chunks.get(txn, key.as_bytes())?.is_none() {
                            out.push(i);
                        }
                    }
                    Ok(out)
                })
                .await?
        };
        let mut missing: Vec<usize> = surely_missing.into_iter().chain(confirmed).collect();
        missing.sort_unstable();
        Ok(missing.into_iter().map(|i| ids[i]).collect())
    }

    /// Verifies (decode + BLAKE3) and stores frames for the tenant; returns once they are
    /// durable. A frame whose bytes do not match its id fails the whole call with
    /// [`Error::Corrupt`] and stores nothing of it.
    pub async fn put_chunks(
        &self,
        tenant: &Tenant,
        chunks: Vec<(ChunkId, Frame)>,
    ) -> Result<PutSummary> {
        self.check_open()?;
        let tid = tenant.id();
        let hot = self.inner.hot.clone();
        let limit = self.chunker().max as usize;
        let prepared = crate::blocking::run(move || {
            chunks
                .into_iter()
                .map(|(id, frame)| {
                    frame.decode_verified(&id, limit)?;
                    Ok((ChunkKey::new(tid, &id), hot.prepare(&frame)?))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        self.put_prepared(tenant, prepared).await
    }

    /// Stores frames already verified and in the hot codec.
    async fn put_prepared(
        &self,
        tenant: &Tenant,
        prepared: Vec<(ChunkKey, Frame)>,
    ) -> Result<PutSummary> {
        let keys: Vec<ChunkKey> = prepared.iter().map(|(k, _)| *k).collect();
        let name = tenant.as_str().to_owned();
        let summary = self
            .inner
            .meta
            .write(move |t, txn| {
                let tid = prepared.first().map(|(k, _)| k.tenant());
                if let Some(tid) = tid
                    && t.tenants.get(txn, &tid.0)?.is_none()
                {
                    t.tenants.put(txn, &tid.0, name.as_bytes())?;
                }
                let mut summary = PutSummary::default();
                for (key, frame) in &prepared {
                    if t.chunks.get(txn, key.as_bytes())?.is_some() {
                        summary.already_present += 1;
                        continue;
                    }
                    hot::put_in_txn(t, txn, *key, frame)?;
                    crate::writeback::enqueue_in_txn(
                        t,
                        txn,
                        crate::writeback::QueueItem::Chunk(*key),
                    )?;
                    summary.stored += 1;
                }
                Ok(summary)
            })
            .await?;
        {
            let mut bloom = self
                .inner
                .bloom
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in &keys {
                bloom.insert(key.as_bytes().as_slice());
            }
        }
        if summary.stored > 0 {
            self.inner.writeback.notify_one();
        }
        Ok(summary)
    }

    /// Reads one chunk through the tiers (hot, warm, cold), promoting and verifying.
    pub async fn get_chunk(&self, tenant: &Tenant, id: ChunkId) -> Result<Frame> {
        self.check_open()?;
        Ok(self.fetch(ChunkKey::new(tenant.id(), &id)).await?.0)
    }

    fn record_access(&self, keys: impl IntoIterator<Item = ChunkKey>, tier: TierName, n: u64) {
        self.inner.hits[tier as usize].fetch_add(n, Ordering::Relaxed);
        let now = crate::refs::now_ms() / 1000;
        let mut access = lock(&self.inner.access);
        for k in keys {
            access.insert(k, now);
        }
    }

    /// A verified chunk: frame and raw bytes.
    async fn fetch(&self, key: ChunkKey) -> Result<(Frame, Bytes)> {
        let limit = MAX_CHUNK_LEN;
        let verify_hot = self.inner.config.verify_hot_reads;
        let hot = self.inner.hot.clone();
        let first = crate::blocking::run(move || {
            let Some(frame) = hot.get_many_now(&[key])?.pop().flatten() else {
                return Ok(None);
            };
            let raw = if verify_hot {
                frame.decode_verified(&key.id(), limit)
            } else {
                frame.decode(limit)
            };
            Ok(Some(raw.map(|raw| (frame, raw))))
        })
        .await?;
        match first {
            Some(Ok(found)) => {
                self.record_access([key], TierName::Hot, 1);
                Ok(found)
            }
            Some(Err(e)) => {
                tracing::error!(chunk = %key.id(), error = %e, "hot copy failed verification; trying other tiers");
                self.slow_fetch(key, true).await
            }
            None => self.slow_fetch(key, false).await,
        }
    }

    /// Warm then cold, one fetch per key at a time, repairing bad copies.
    async fn slow_fetch(&self, key: ChunkKey, hot_bad: bool) -> Result<(Frame, Bytes)> {
        let gate = lock(&self.inner.inflight).entry(key).or_default().clone();
        let _guard = InflightGuard {
            store: self,
            key,
            _permit: gate.lock().await,
        };
        if !hot_bad {
            // Another caller may have promoted it while we waited.
            let hot = self.inner.hot.clone();
            let again =
                crate::blocking::run(move || Ok(hot.get_many_now(&[key])?.pop().flatten())).await?;
            if let Some((frame, Ok(raw))) =
                again.map(|f| (f.clone(), f.decode_verified(&key.id(), MAX_CHUNK_LEN)))
            {
                self.record_access([key], TierName::Hot, 1);
                return Ok((frame, raw));
            }
        }
        let mut bad: Vec<TierName> = if hot_bad {
            vec![TierName::Hot]
        } else {
            Vec::new()
        };
        let mut unavailable = None;
        let warm = self.inner.warm.clone();
        let from_warm = crate::blocking::run(move || warm.get_now(key)).await;
        let mut good = None;
        match from_warm {
            Ok(Some(frame)) => match frame.decode_verified(&key.id(), MAX_CHUNK_LEN) {
                Ok(raw) => good = Some((TierName::Warm, frame, raw)),
                Err(e) => {
                    tracing::error!(chunk = %key.id(), error = %e, "warm copy failed verification");
                    bad.push(TierName::Warm);
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::error!(chunk = %key.id(), error = %e, "warm read failed");
                bad.push(TierName::Warm);
            }
        }
        if good.is_none() {
            match self.inner.cold.get(key).await {
                Ok(Some(frame)) => match frame.decode_verified(&key.id(), MAX_CHUNK_LEN) {
                    Ok(raw) => good = Some((TierName::Cold, frame, raw)),
                    Err(e) => {
                        tracing::error!(chunk = %key.id(), error = %e, "cold copy failed verification");
                        bad.push(TierName::Cold);
                    }
                },
                Ok(None) => {}
                Err(Error::Unavailable(m)) => unavailable = Some(m),
                Err(e) => {
                    tracing::error!(chunk = %key.id(), error = %e, "cold read failed");
                    bad.push(TierName::Cold);
                }
            }
        }
        let Some((tier, frame, raw)) = good else {
            if let Some(m) = unavailable {
                return Err(Error::Unavailable(m));
            }
            if bad.is_empty() {
                return Err(Error::NotFound(format!("chunk {} is not stored", key.id())));
            }
            let tried: Vec<&str> = bad.iter().map(|t| t.as_str()).collect();
            return Err(Error::DataLoss {
                id: key.id(),
                detail: format!("bad copies in {}", tried.join(", ")),
            });
        };
        self.record_access([key], tier, 1);
        // Promote to hot (repairing a bad hot copy), and repair a bad warm copy from cold.
        if let Err(e) = self.repair(key, &frame, &raw, &bad).await {
            tracing::warn!(chunk = %key.id(), error = %e, "promotion/repair failed; the read still succeeds");
        }
        Ok((frame, raw))
    }

    async fn repair(
        &self,
        key: ChunkKey,
        frame: &Frame,
        raw: &[u8],
        bad: &[TierName],
    ) -> Result<()> {
        let hot_frame = frame.recode(raw, self.inner.config.hot_compression)?;
        let hot_bad = bad.contains(&TierName::Hot);
        self.inner
            .meta
            .write(move |t, txn| {
                if hot_bad {
                    hot::delete_in_txn(t, txn, key)?;
                }
                hot::put_in_txn(t, txn, key, &hot_frame)?;
                Ok(())
            })
            .await?;
        if bad.contains(&TierName::Warm) {
            self.inner.warm.delete(vec![key]).await?;
            self.inner.warm.put(vec![(key, frame.clone())]).await?;
        }
        if bad.contains(&TierName::Cold) {
            self.inner.cold.delete(vec![key]).await?;
            self.inner
                .meta
                .write(move |t, txn| {
                    crate::writeback::enqueue_in_txn(
                        t,
                        txn,
                        crate::writeback::QueueItem::Chunk(key),
                    )
                })
                .await?;
            self.inner.writeback.notify_one();
        }
        if !bad.is_empty() {
            tracing::info!(chunk = %key.id(), repaired = ?bad, "repaired bad copies from a good one");
        }
        Ok(())
    }

    /// Reads every tier's copy of a chunk, verifies each, and repairs bad copies from a good
    /// one (a scrub). Returns the tiers whose copy was bad.
    pub async fn scrub_chunk(&self, tenant: &Tenant, id: ChunkId) -> Result<Vec<TierName>> {
        self.check_open()?;
        let key = ChunkKey::new(tenant.id(), &id);
        let mut bad = Vec::new();
        let mut good: Option<(Frame, Bytes)> = None;
        let check = |r: Result<Option<Frame>>,
                     tier: TierName,
                     bad: &mut Vec<TierName>,
                     good: &mut Option<(Frame, Bytes)>| match r {
            Ok(Some(f)) => match f.decode_verified(&id, MAX_CHUNK_LEN) {
                Ok(raw) => {
                    if good.is_none() {
                        *good = Some((f, raw));
                    }
                }
                Err(_) => bad.push(tier),
            },
            Ok(None) => {}
            Err(_) => bad.push(tier),
        };
        check(
            self.inner.hot.get(key).await,
            TierName::Hot,
            &mut bad,
            &mut good,
        );
        check(
            self.inner.warm.get(key).await,
            TierName::Warm,
            &mut bad,
            &mut good,
        );
        check(
            self.inner.cold.get(key).await,
            TierName::Cold,
            &mut bad,
            &mut good,
        );
        match good {
            Some((frame, raw)) if !bad.is_empty() => self.repair(key, &frame, &raw, &bad).await?,
            Some(_) => {}
            None if bad.is_empty() => {
                return Err(Error::NotFound(format!("chunk {id} is not stored")));
            }
            None => {
                return Err(Error::DataLoss {
                    id,
                    detail: format!("bad copies in {bad:?}"),
                });
            }
        }
        Ok(bad)
    }

    /// Copies chunks to the warm tier (what demotion under a hot budget will do) and, with
    /// `drop_hot`, removes their hot copies.
    pub async fn demote(&self, tenant: &Tenant, ids: Vec<ChunkId>, drop_hot: bool) -> Result<u64> {
        self.check_open()?;
        let tid = tenant.id();
        let mut moved = 0;
        for id in ids {
            let key = ChunkKey::new(tid, &id);
            let (frame, _) = self.fetch(key).await?;
            moved += self.inner.warm.put(vec![(key, frame)]).await?;
            if drop_hot {
                self.inner.hot.delete(vec![key]).await?;
            }
        }
        Ok(moved)
    }

    /// Drops the hot and warm copies of chunks that have a cold copy (tests and eviction).
    pub async fn evict_to_cold(&self, tenant: &Tenant, ids: Vec<ChunkId>) -> Result<u64> {
        self.check_open()?;
        let tid = tenant.id();
        let keys: Vec<ChunkKey> = ids.iter().map(|id| ChunkKey::new(tid, id)).collect();
        let mut n = 0;
        for key in keys {
            if !self.inner.cold.contains(key).await? {
                return Err(Error::Unavailable(format!(
                    "chunk {} has no cold copy yet; flush the cold queue first",
                    key.id()
                )));
            }
            self.inner.hot.delete(vec![key]).await?;
            self.inner.warm.delete(vec![key]).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Stores `manifest` and sets `ns/key` to it, after checking that the tenant holds every
    /// chunk and that the chunks hash to the declared blob id. Fails with
    /// [`Error::MissingChunks`] when chunks are absent.
    pub async fn commit(
        &self,
        ns: &Namespace,
        key: &RefKey,
        manifest: Manifest,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        self.check_open()?;
        opts.validate()?;
        let tenant = ns.tenant().clone();
        if manifest.entries().len() > MAX_CHUNKS_PER_BLOB {
            return Err(Error::InvalidArgument(format!(
                "blob has {} chunks, more than the {MAX_CHUNKS_PER_BLOB} allowed",
                manifest.entries().len()
            )));
        }
        let ids: Vec<ChunkId> = manifest.entries().iter().map(|e| e.id).collect();
        let missing = self.find_missing(&tenant, ids).await?;
        if !missing.is_empty() {
            return Err(Error::MissingChunks(missing));
        }
        let manifest = Arc::new(manifest);
        // The declared blob id must be the content's: hash it back from the stored chunks.
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        let mut parts = self.read_blob(&tenant, manifest.clone(), 0, None, false);
        while let Some(part) = parts.next().await {
            if let BlobPart::Data(d) = part? {
                total += d.len() as u64;
                hasher.update(&d);
            }
        }
        let actual = BlobId::from(hasher.finalize());
        if actual != manifest.blob() || total != manifest.total_len() {
            return Err(Error::InvalidArgument(format!(
                "the manifest's chunks make a blob of {total} bytes with id {actual}, but it declares {} bytes with id {}",
                manifest.total_len(),
                manifest.blob()
            )));
        }
        self.set_ref(ns, key, &manifest, opts).await
    }

    async fn set_ref(
        &self,
        ns: &Namespace,
        key: &RefKey,
        manifest: &Manifest,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        let now = crate::refs::now_ms();
        let record = RefRecord {
            blob: manifest.blob(),
            manifest: manifest.id(),
            size: manifest.total_len(),
            chunks: manifest.entries().len() as u64,
            created_at_ms: now,
            expires_at_ms: opts
                .ttl
                .map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            labels: opts.labels,
        };
        let tid = ns.tenant().id();
        let mkey = manifest_key(tid, &record.manifest);
        let encoded = manifest.encode();
        let rkey = crate::refs::ref_table_key(ns, key);
        let value = record.encode();
        let name = ns.tenant().as_str().to_owned();
        let manifest_id = record.manifest;
        let queued = self
            .inner
            .meta
            .write(move |t, txn| {
                if t.tenants.get(txn, &tid.0)?.is_none() {
                    t.tenants.put(txn, &tid.0, name.as_bytes())?;
                }
                let fresh = t.manifests.get(txn, &mkey)?.is_none();
                if fresh {
                    t.manifests.put(txn, &mkey, &encoded)?;
                    crate::writeback::enqueue_in_txn(
                        t,
                        txn,
                        crate::writeback::QueueItem::Manifest(tid, manifest_id),
                    )?;
                }
                t.refs.put(txn, &rkey, &value)?;
                Ok(fresh)
            })
            .await?;
        if queued {
            self.inner.writeback.notify_one();
        }
        Ok(record)
    }

    /// Ingests a whole blob from a reader (chunk, hash, compress, store, commit): the
    /// engine-side path used by benchmarks and tests. Memory stays bounded.
    pub async fn write_blob(
        &self,
        ns: &Namespace,
        key: &RefKey,
        reader: impl tokio::io::AsyncRead + Unpin + Send,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        self.check_open()?;
        opts.validate()?;
        let spec = self.chunker();
        let mut chunks = ChunkReader::new(reader, spec.splitter()?);
        let mut blob = blake3::Hasher::new();
        let tid = ns.tenant().id();
        let compression = self.inner.config.hot_compression;
        let (tx, rx) = tokio::sync::mpsc::channel::<
            tokio::task::JoinHandle<Result<Vec<(ChunkKey, Frame)>>>,
        >(4);
        let store = self.clone();
        let tenant = ns.tenant().clone();
        // Batches are stored with a few commits in flight, so the group committer merges them
        // and ingest does not wait for one fsync per batch.
        let writer = tokio::spawn(async move {
            let stored = tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(|job| {
                    let store = store.clone();
                    let tenant = tenant.clone();
                    async move {
                        let prepared = job.await.map_err(|_| Error::ShuttingDown)??;
                        let entries: Vec<ManifestEntry> = prepared
                            .iter()
                            .map(|(k, f)| ManifestEntry {
                                id: k.id(),
                                len: f.raw_len() as u32,
                            })
                            .collect();
                        store.put_prepared(&tenant, prepared).await?;
                        Ok::<_, Error>(entries)
                    }
                })
                .buffered(INGEST_COMMITS_IN_FLIGHT);
            futures::pin_mut!(stored);
            let mut entries = Vec::new();
            while let Some(batch) = stored.next().await {
                entries.extend(batch?);
            }
            Ok::<_, Error>(entries)
        });
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_bytes = 0;
        let mut total = 0u64;
        loop {
            let next = chunks
                .next_chunk()
                .await
                .map_err(|e| Error::io("reading the blob", e))?;
            let done = next.is_none();
            if let Some(c) = next {
                blob.update(&c);
                batch_bytes += c.len();
                total += c.len() as u64;
                batch.push(c);
            }
            if (done && !batch.is_empty()) || batch_bytes >= 4 << 20 {
                let work = std::mem::take(&mut batch);
                batch_bytes = 0;
                let job = tokio::task::spawn_blocking(move || {
                    work.iter()
                        .map(|c| {
                            Ok((
                                ChunkKey::new(tid, &ChunkId::of(c)),
                                Frame::encode(c, compression)?,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()
                });
                if tx.send(job).await.is_err() {
                    break;
                }
            }
            if done {
                break;
            }
        }
        drop(tx);
        let entries = writer.await.map_err(|_| Error::ShuttingDown)??;
        let manifest = Manifest::new(spec, BlobId::from(blob.finalize()), total, entries)?;
        self.set_ref(ns, key, &manifest, opts).await
    }

    /// A manifest of the tenant (from LMDB, or rebuilt from the cold tier).
    pub async fn manifest(&self, tenant: &Tenant, id: ManifestId) -> Result<Arc<Manifest>> {
        self.check_open()?;
        let tid = tenant.id();
        let mkey = manifest_key(tid, &id);
        let local = self
            .inner
            .meta
            .read(move |t, txn| {
                t.manifests
                    .get(txn, &mkey)?
                    .map(|b| Manifest::decode(b, MAX_CHUNKS_PER_BLOB))
                    .transpose()
            })
            .await?;
        if let Some(m) = local {
            return Ok(Arc::new(m));
        }
        let limit = 65 + 36 * MAX_CHUNKS_PER_BLOB;
        match self.inner.cold.get_manifest(tid, &id, limit).await? {
            Some(bytes) => {
                let m = Manifest::decode(&bytes, MAX_CHUNKS_PER_BLOB)?;
                if m.id() != id {
                    return Err(Error::Format(format!(
                        "cold manifest {id} does not hash to its name"
                    )));
                }
                Ok(Arc::new(m))
            }
            None => Err(Error::NotFound(format!("manifest {id} is not stored"))),
        }
    }

    /// Streams `length` bytes (`None` = to the end) of a blob from `offset`, in order, with a
    /// bounded read-ahead. Whole chunks come as frames when `frames` is set (the reader then
    /// decodes and verifies them); the ends of a range, and everything when `frames` is off,
    /// come as verified raw bytes.
    pub fn read_blob(
        &self,
        tenant: &Tenant,
        manifest: Arc<Manifest>,
        offset: u64,
        length: Option<u64>,
        frames: bool,
    ) -> BoxStream<'static, Result<BlobPart>> {
        let total = manifest.total_len();
        let start = offset.min(total);
        let end = length.map_or(total, |l| start.saturating_add(l).min(total));
        if start >= end {
            return Box::pin(futures::stream::empty());
        }
        let first = manifest.entry_at(start);
        let last = manifest.entry_at(end - 1);
        let tid = tenant.id();
        let store = self.clone();
        let batches: Vec<std::ops::Range<usize>> = (first..=last)
            .step_by(READ_BATCH)
            .map(|b| b..(b + READ_BATCH).min(last + 1))
            .collect();
        let stream = futures::stream::iter(batches)
            .map(move |range| {
                let store = store.clone();
                let manifest = manifest.clone();
                async move {
                    store
                        .read_batch(tid, &manifest, range, start, end, frames)
                        .await
                }
            })
            .buffered(READ_AHEAD)
            .flat_map(|r: Result<Vec<BlobPart>>| match r {
                Ok(parts) => futures::stream::iter(parts.into_iter().map(Ok)).left_stream(),
                Err(e) => futures::stream::once(async { Err(e) }).right_stream(),
            });
        Box::pin(stream)
    }

    async fn read_batch(
        &self,
        tid: TenantId,
        manifest: &Manifest,
        range: std::ops::Range<usize>,
        start: u64,
        end: u64,
        frames: bool,
    ) -> Result<Vec<BlobPart>> {
        self.check_open()?;
        let keys: Vec<ChunkKey> = manifest.entries()[range.clone()]
            .iter()
            .map(|e| ChunkKey::new(tid, &e.id))
            .collect();
        let verify = self.inner.config.verify_hot_reads;
        let hot = self.inner.hot.clone();
        let lookup_keys = keys.clone();
        // One read transaction for the batch; decode and verify on the same blocking thread.
        // Verified chunks carry their raw bytes; with verification off, whole chunks sent as
        // frames are not decoded here at all (the reader decodes and verifies them).
        let found: Vec<Option<(Frame, Option<Bytes>)>> = crate::blocking::run(move || {
            let frames = hot.get_many_now(&lookup_keys)?;
            Ok(frames
                .into_iter()
                .zip(&lookup_keys)
                .map(|(f, k)| {
                    let f = f?;
                    if !verify {
                        return Some((f, None));
                    }
                    f.decode_verified(&k.id(), MAX_CHUNK_LEN)
                        .ok()
                        .map(|raw| (f, Some(raw)))
                })
                .collect())
        })
        .await?;
        let hot_hits: Vec<ChunkKey> = keys
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_some())
            .map(|(k, _)| *k)
            .collect();
        let n = hot_hits.len() as u64;
        self.record_access(hot_hits, TierName::Hot, n);
        let mut parts = Vec::with_capacity(keys.len());
        for ((i, key), hit) in range.zip(keys).zip(found) {
            let (frame, raw) = match hit {
                Some(x) => x,
                None => {
                    let (frame, raw) = self.fetch(key).await?;
                    (frame, Some(raw))
                }
            };
            let chunk_start = manifest.offset_of(i);
            let chunk_end = chunk_start + frame.raw_len() as u64;
            if frames && chunk_start >= start && chunk_end <= end {
                parts.push(BlobPart::Frame(key.id(), frame));
                continue;
            }
            let raw = match raw {
                Some(raw) => raw,
                None => match frame.decode(MAX_CHUNK_LEN) {
                    Ok(raw) => raw,
                    Err(_) => self.fetch(key).await?.1,
                },
            };
            let from = usize::try_from(start.saturating_sub(chunk_start))
                .unwrap_or(usize::MAX)
                .min(raw.len());
            let to = usize::try_from(end.min(chunk_end) - chunk_start)
                .unwrap_or(usize::MAX)
                .min(raw.len());
            parts.push(BlobPart::Data(raw.slice(from..to)));
        }
        Ok(parts)
    }

    /// Copies a whole blob to a writer, verifying every chunk; returns the bytes written.
    pub async fn read_blob_to(
        &self,
        tenant: &Tenant,
        manifest: Arc<Manifest>,
        mut writer: impl tokio::io::AsyncWrite + Unpin + Send,
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let mut parts = self.read_blob(tenant, manifest, 0, None, false);
        let mut n = 0;
        while let Some(part) = parts.next().await {
            let bytes = match part? {
                BlobPart::Data(d) => d,
                BlobPart::Frame(id, f) => f.decode_verified(&id, MAX_CHUNK_LEN)?,
            };
            writer
                .write_all(&bytes)
                .await
                .map_err(|e| Error::io("writing the blob", e))?;
            n += bytes.len() as u64;
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::io("writing the blob", e))?;
        Ok(n)
    }

    /// A live (unexpired) ref.
    pub async fn get_ref(&self, ns: &Namespace, key: &RefKey) -> Result<Option<RefRecord>> {
        self.check_open()?;
        let rkey = crate::refs::ref_table_key(ns, key);
        let now = crate::refs::now_ms();
        self.inner
            .meta
            .read(move |t, txn| {
                Ok(t.refs
                    .get(txn, &rkey)?
                    .map(RefRecord::decode)
                    .transpose()?
                    .filter(|r| !r.is_expired(now)))
            })
            .await
    }

    /// `key` if live, else the newest live ref under the first of `fallbacks` that has one.
    pub async fn resolve(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
    ) -> Result<Option<(RefKey, RefRecord)>> {
        if let Some(r) = self.get_ref(ns, key).await? {
            return Ok(Some((key.clone(), r)));
        }
        for prefix in fallbacks {
            let (mut refs, _) = self.list_refs(ns, prefix, 1).await?;
            if let Some(found) = refs.pop() {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Live refs of `ns` under `prefix`, newest first, at most `limit`; and whether more matched.
    pub async fn list_refs(
        &self,
        ns: &Namespace,
        prefix: &KeyPrefix,
        limit: usize,
    ) -> Result<(Vec<(RefKey, RefRecord)>, bool)> {
        self.check_open()?;
        let start = crate::refs::ref_table_prefix(ns, prefix.as_str());
        let skip = ns.as_str().len() + 1;
        let now = crate::refs::now_ms();
        let mut all = self
            .inner
            .meta
            .read(move |t, txn| {
                let mut out = Vec::new();
                for item in t.refs.prefix_iter(txn, &start)? {
                    let (k, v) = item?;
                    let record = RefRecord::decode(v)?;
                    if record.is_expired(now) {
                        continue;
                    }
                    let key = std::str::from_utf8(&k[skip..])
                        .map_err(|_| Error::Format("ref key is not UTF-8".into()))?
                        .parse::<RefKey>()?;
                    out.push((key, record));
                }
                Ok(out)
            })
            .await?;
        all.sort_by(|a, b| {
            b.1.created_at_ms
                .cmp(&a.1.created_at_ms)
                .then_with(|| b.0.cmp(&a.0))
        });
        let truncated = all.len() > limit;
        all.truncate(limit);
        Ok((all, truncated))
    }

    /// Deletes a ref; whether it existed (and was live).
    pub async fn delete_ref(&self, ns: &Namespace, key: &RefKey) -> Result<bool> {
        self.check_open()?;
        let rkey = crate::refs::ref_table_key(ns, key);
        let now = crate::refs::now_ms();
        self.inner
            .meta
            .write(move |t, txn| {
                let live = match t.refs.get(txn, &rkey)? {
                    Some(v) => !RefRecord::decode(v)?.is_expired(now),
                    None => return Ok(false),
                };
                t.refs.delete(txn, &rkey)?;
                Ok(live)
            })
            .await
    }

    /// Figures for one tenant, or all.
    pub async fn stats(&self, tenant: Option<&Tenant>) -> Result<Stats> {
        self.check_open()?;
        let tid = tenant.map(Tenant::id);
        let ref_prefix = tenant.map(|t| format!("{}/", t.as_str()));
        let now = crate::refs::now_ms();
        let (per_tier, logical, refs, queue) = self
            .inner
            .meta
            .read(move |t, txn| {
                let mut per_tier = [(0u64, 0u64); 3];
                let counters: RawIter<'_> = match &tid {
                    Some(tid) => Box::new(t.counters.prefix_iter(txn, &tid.0)?),
                    None => Box::new(t.counters.iter(txn)?),
                };
                for item in counters {
                    let (k, v) = item?;
                    if k.len() != 9 || v.len() != 16 {
                        continue;
                    }
                    if let Some(i) = TIER_BITS.iter().position(|(_, bit)| *bit == k[8]) {
                        per_tier[i].0 += le_u64(&v[..8]);
                        per_tier[i].1 += le_u64(&v[8..]);
                    }
                }
                let (mut logical, mut refs) = (0, 0);
                let refs_iter: RawIter<'_> = match &ref_prefix {
                    Some(p) => Box::new(t.refs.prefix_iter(txn, p.as_bytes())?),
                    None => Box::new(t.refs.iter(txn)?),
                };
                for item in refs_iter {
                    let (_, v) = item?;
                    let r = RefRecord::decode(v)?;
                    if !r.is_expired(now) {
                        logical += r.size;
                        refs += 1;
                    }
                }
                Ok((per_tier, logical, refs, t.cold_queue.len(txn)?))
            })
            .await?;
        let tiers = TIER_BITS
            .iter()
            .zip(per_tier)
            .map(|((name, _), (chunks, stored_bytes))| {
                let hits = if tenant.is_none() {
                    self.inner.hits[*name as usize].load(Ordering::Relaxed)
                } else {
                    0
                };
                (
                    *name,
                    TierStats {
                        chunks,
                        stored_bytes,
                        hits,
                    },
                )
            })
            .collect();
        Ok(Stats {
            tiers,
            logical_bytes: logical,
            refs,
            cold_queue: queue,
        })
    }

    /// Writes batched access times and hit counts (one commit, not fsync'd per read).
    async fn flush_access(&self) -> Result<()> {
        let pending = std::mem::take(&mut *lock(&self.inner.access));
        let hits: [u64; 3] = std::array::from_fn(|i| self.inner.hits[i].load(Ordering::Relaxed));
        self.inner
            .meta
            .write(move |t, txn| {
                for (key, at) in pending {
                    if let Some(v) = t.chunks.get(txn, key.as_bytes())? {
                        let mut info = ChunkInfo::decode(v)?;
                        if info.last_access_s < at {
                            info.last_access_s = at;
                            t.chunks.put(txn, key.as_bytes(), &info.encode())?;
                        }
                    }
                }
                state_put(t, txn, "hits/hot", hits[0])?;
                state_put(t, txn, "hits/warm", hits[1])?;
                state_put(t, txn, "hits/cold", hits[2])?;
                Ok(())
            })
            .await
    }

    /// Uploads every queued chunk and manifest to the cold tier now, partial packs included,
    /// and returns once the queue is empty (tests, and operators before maintenance).
    pub async fn flush_cold(&self) -> Result<()> {
        self.check_open()?;
        crate::writeback::drain(self, true).await
    }

    /// Flushes access times and hit counts, stops background work (the cold queue stays in
    /// LMDB and resumes at the next open), syncs, and closes the LMDB writer. Further calls
    /// fail with [`Error::ShuttingDown`].
    pub async fn shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.cancel.cancel();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
        let flushed = self.flush_access().await;
        let meta = self.inner.meta.clone();
        crate::blocking::run(move || {
            meta.sync()?;
            meta.close();
            Ok(())
        })
        .await?;
        flushed
    }
}

struct InflightGuard<'a> {
    store: &'a Store,
    key: ChunkKey,
    _permit: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.store.inner.inflight);
        // Remove the gate when no one else waits on it (ours plus the map's reference).
        if map
            .get(&self.key)
            .is_some_and(|g| Arc::strong_count(g) <= 2)
        {
            map.remove(&self.key);
        }
    }
}

/// A table scan, whole or by prefix (LMDB refuses an empty prefix key).
type RawIter<'t> = Box<dyn Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>> + 't>;

fn manifest_key(tenant: TenantId, id: &ManifestId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&tenant.0);
    k[8..].copy_from_slice(id.as_bytes());
    k
}
