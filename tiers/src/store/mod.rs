//! The public facade of the engine: [`Store`], laid out along the data path.
//!
//! | file | what happens there |
//! | --- | --- |
//! | `mod.rs` | [`StoreConfig`], opening (data-dir lock, recovery, existence filter), shutdown |
//! | `ingest.rs` | `find_missing`, `put_chunks`, `commit` (blob check, presence re-check, ref) |
//! | `read.rs` | the read pipeline: hot, warm, cold; single flight; blob and range reads |
//! | `verify.rs` | `verify_copy`: the one check every copy read passes |
//! | `repair.rs` | promotion into hot, repair of bad copies, scrub |
//! | `gate.rs` | the single-flight gate of a chunk read below hot |
//! | `admission.rs` | which chunks a read lets into hot (and into warm) |
//! | `evict.rs` | the evictor: hot and warm kept within their byte budgets |
//! | `warm_up.rs` | `Store::warm`: a ref's chunks promoted into hot before a burst of reads |
//! | `lookups.rs` | document and symbol tables of each blob: built after commit, read by lookups |
//! | `refs.rs` | get, resolve, list, delete refs (one, or every one under a prefix) |
//! | `retention.rs` | which refs expired or a `[[retention]]` rule gives up; default TTLs |
//! | `gc.rs` | garbage collection: retention, mark, sweep, compaction, cold leftovers |
//! | `quota.rs` | per-tenant usage and the quota check of a put |
//! | `fsck.rs` | every copy and manifest checked, repaired from good copies |
//! | `stats.rs` | per-tier figures |
//! | `background.rs` | write-behind uploader, access flusher, encoders: started and joined here |
//! | `scrub.rs` | the background scrub: every tier's copy of each chunk verified, a share a day |
//! | `dir_lock.rs` | the data-dir lock |
//! | `rebuild.rs` | recreating the local index from the cold tier alone (`scipcached rebuild`) |
//! | `testing.rs` | entry points for tests and benchmarks only (feature `testing`) |
//!
//! # Where a new chunk lives
//!
//! 1. An upload's frames are decoded and hashed on the blocking pool; a mismatch fails the call
//!    and stores nothing of that frame.
//! 2. The chunk, its `chunks` entry and a `cold_queue` entry are written in one LMDB transaction
//!    by the group committer; [`Store::put_chunks`] returns only after that commit is fsync'd.
//!    From then on the chunk is durable in the hot tier and survives `kill -9`.
//! 3. The write-behind uploader (`writeback.rs`) later reads queued chunks, compresses them with
//!    the cold codec on low-priority threads, writes them to the object store in packs of
//!    [`StoreConfig::cold_pack_target`] bytes, then indexes them and drops their queue
//!    entries in one transaction. A crash before that commit only means the pack is written
//!    again (same content, same name) after the restart.
//! 4. The evictor (`evict.rs`) keeps hot and warm within `hot_bytes` and `warm_bytes`: hot
//!    chunks are demoted to warm (re-encoded with the warm codec) and their hot copies dropped;
//!    warm copies are dropped once the cold tier holds the chunk. Reads promote back into hot
//!    under an admission rule (`admission.rs`).
//! 5. With [`Durability::Cold`], a commit first writes the blob's missing cold copies, its
//!    manifest and the ref's cold object itself, and sets the ref only when all of them are in
//!    the object store (`ingest.rs`).
//!
//! # Reads
//!
//! Hot, then warm, then cold (`read.rs`). Every copy read passes `verify_copy` (hot too unless
//! [`StoreConfig::verify_hot_reads`] is off); a bad copy is never returned: the next tier is
//! tried, and a good copy found further down repairs the bad one (and is promoted to hot).
//! Concurrent misses of one chunk fetch it once (single flight). [`Error::DataLoss`] only when
//! every tier that holds the chunk fails verification.

mod admission;
mod background;
mod cold_commit;
#[cfg(test)]
mod damage_tests;
mod dir_lock;
mod evict;
mod fsck;
mod gate;
mod gc;
#[cfg(test)]
mod gc_tests;
mod ingest;
#[cfg(test)]
mod lifecycle_tests;
mod lifecycle_types;
mod lookup_rows;
mod lookups;
#[cfg(test)]
mod lookups_tests;
mod quota;
mod read;
mod rebuild;
#[cfg(test)]
mod rebuild_tests;
mod refs;
mod repair;
mod retention;
#[cfg(test)]
mod scip_tests;
mod scrub;
mod stats;
mod symbol_pages;
#[cfg(any(test, feature = "testing"))]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tiering_tests;
mod types;
mod verify;
mod warm_up;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use growable_bloom_filter::GrowableBloom;
use tokio_util::sync::CancellationToken;

use crate::chunking::ChunkerSpec;
use crate::clock::Clock;
use crate::codec::{Compression, MAX_CHUNK_LEN};
use crate::cold::ColdTier;
use crate::error::{Error, Result};
use crate::hot::HotTier;
use crate::meta::{ChunkKey, Meta, state_get};
use crate::warm::WarmTier;
use crate::writeback::{Encoder, UploadConfig, Uploader};
use background::{AccessLog, Background, HIT_COUNTERS, lock};
use dir_lock::DirLock;

pub use crate::tier::TierName;
pub use lifecycle_types::{
    FsckProblem, FsckReport, GcOptions, GcReport, Progress, RetentionOutcome, RetentionPolicy,
    RetentionRule,
};
pub use lookups::{Found, LookupSource, LookupState, MAX_PAGE, PENDING_WAIT, Page, TableSizes};
pub use read::listed_chunk_lost;
pub use rebuild::RebuildReport;
pub use stats::RAW_SCAN_EVERY;
pub use types::{
    BlobPart, Durability, MovementStats, PutSummary, ReadForm, ScrubStats, Stats, TierStats,
    WarmReport,
};

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
    /// The cold codec while the write-behind is behind: packs written with it are
    /// recompressed with [`StoreConfig::cold_compression`] once the daemon is idle.
    pub cold_fast_compression: Compression,
    /// Queue entries at which the write-behind switches to the fast codec (back under an
    /// eighth of it).
    pub cold_fast_backlog: u64,
    /// How long the write-behind queue must have been empty before recompression starts.
    pub cold_idle_after: Duration,
    /// Queue entries beyond which puts wait for the write-behind (`ingest.rs`); `0` = never.
    pub cold_backlog_limit: u64,
    /// Decode and re-hash chunks read from the hot tier too.
    pub verify_hot_reads: bool,
    /// Warm pack files are sealed at this size.
    pub warm_pack_limit: u64,
    /// Cold pack objects are written once this many stored bytes are queued.
    pub cold_pack_target: usize,
    /// Raw bytes of consecutive chunks compressed together as one cold frame (a *block*,
    /// `cold_block.rs`); `0` gives every chunk its own frame. At most 4 MiB.
    pub cold_block_target: usize,
    /// A partial cold pack is flushed after this long.
    pub cold_flush_after: Duration,
    /// Concurrent object store requests.
    pub cold_concurrency: usize,
    /// Background threads compressing cold packs.
    pub cold_encoders: usize,
    /// Share of the chunks the background scrub verifies (every tier's copy) per day; `0`
    /// turns it off (`scrub.rs`).
    pub scrub_per_day: f64,
    /// Hot tier budget in stored bytes: the evictor starts when the hot tier's stored bytes
    /// reach it and stops at 90% (`evict.rs`).
    pub hot_bytes: u64,
    /// Warm tier budget in stored bytes (same rule); `0` turns the warm tier off: hot then
    /// drops a chunk only once the cold tier holds it.
    pub warm_bytes: u64,
    /// Refs whose key starts with one of these keep their chunks in hot: the evictor drops
    /// them last (`evict.rs`).
    pub pin_prefixes: Vec<String>,
    /// When a push is acknowledged.
    pub durability: Durability,
    /// `[[retention]]` rules, applied at every GC (and a rule's TTL at every commit).
    pub retention: Vec<RetentionRule>,
    /// `[quotas]`: tenant name → most stored bytes (each chunk once, at its largest stored
    /// size across the tiers).
    pub quotas: HashMap<String, u64>,
    /// Bytes of memory a lookup-table build may gather about which documents name which
    /// symbols before it writes them out (`store/lookup_rows.rs`): with one document, what a
    /// build holds, for an index of any size.
    pub lookup_run_bytes: usize,
    /// Where the engine reads the time (tests set a manual clock).
    pub clock: Clock,
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
            cold_fast_compression: Compression::Zstd(3),
            cold_fast_backlog: crate::writeback::FAST_ABOVE,
            cold_idle_after: Duration::from_secs(10),
            cold_backlog_limit: 131_072,
            verify_hot_reads: true,
            warm_pack_limit: 256 << 20,
            cold_pack_target: 8 << 20,
            cold_block_target: crate::cold::block::DEFAULT_BLOCK_TARGET,
            cold_flush_after: Duration::from_secs(5),
            cold_concurrency: 8,
            cold_encoders: 2,
            scrub_per_day: 0.1,
            hot_bytes: 1 << 30,
            warm_bytes: 10 << 30,
            pin_prefixes: Vec::new(),
            durability: Durability::Local,
            retention: Vec::new(),
            quotas: HashMap::new(),
            lookup_run_bytes: 32 << 20,
            clock: Clock::system(),
        }
    }
}

/// The storage engine. Cheap to clone; the last clone dropped stops the background work and
/// releases the data dir (call [`Store::shutdown`] to wait for that and to persist access
/// times).
#[derive(Clone)]
pub struct Store {
    slot: Arc<RwLock<Option<Arc<Engine>>>>,
}

/// A commit's pause between blob verification and the ref transaction (tests only).
#[cfg(test)]
pub(crate) type CommitHook = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>;

/// Everything an open store holds. Operations hold an `Arc` of it while they run.
pub(crate) struct Engine {
    pub(crate) config: StoreConfig,
    pub(crate) meta: Meta,
    pub(crate) hot: HotTier,
    pub(crate) warm: WarmTier,
    pub(crate) cold: ColdTier,
    pub(crate) uploader: Arc<Uploader>,
    pub(crate) access: Arc<AccessLog>,
    pub(crate) scrub: scrub::ScrubCounters,
    pub(crate) movement: evict::MovementCounters,
    /// Chunks recently read below hot and not admitted (`admission.rs`).
    pub(crate) ghosts: admission::Ghosts,
    /// Background copies from cold into warm that may still start.
    pub(crate) warm_fills: Arc<tokio::sync::Semaphore>,
    /// Room for promotions and repairs that follow reads (`repair::follow_up`).
    pub(crate) follow_ups: Arc<tokio::sync::Semaphore>,
    /// Wakes the evictor (after writes that may have filled a tier).
    pub(crate) evict_wake: Arc<tokio::sync::Notify>,
    /// Whether a garbage collection runs, and the commits that landed during it.
    pub(crate) gc: gc::GcState,
    /// Usage of the tenants with a quota (`quota.rs`).
    pub(crate) usage: quota::Usage,
    /// The last scans of raw bytes per tier (`stats.rs`).
    pub(crate) raw_scans: stats::RawScans,
    /// Wakes the lookup-table builder and tells waiting lookups it finished a blob.
    pub(crate) indexer: Arc<lookups::Indexer>,
    bloom: RwLock<GrowableBloom>,
    /// Single flight: one gate per chunk being fetched from warm or cold.
    inflight: Mutex<HashMap<ChunkKey, Arc<tokio::sync::Mutex<()>>>>,
    closing: AtomicBool,
    background: Mutex<Option<Background>>,
    #[cfg(test)]
    pub(crate) commit_hook: Mutex<Option<CommitHook>>,
    /// Released last, once the environment has closed.
    lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.engine().ok();
        f.debug_struct("Store")
            .field(
                "data_dir",
                &engine.as_ref().map(|e| e.config.data_dir.clone()),
            )
            .field("cold", &engine.as_ref().map(|e| e.cold.clone()))
            .finish()
    }
}

/// What the blocking part of [`Store::open`] builds.
struct Opened {
    lock: DirLock,
    meta: Meta,
    warm: WarmTier,
    cold: ColdTier,
    encoder: Encoder,
    bloom: GrowableBloom,
    hits: [u64; 3],
}

/// The first, blocking part of [`Store::open`]: the lock, the index and the cold tier's handle
/// (no request yet), but nothing that writes to the data dir before the lost-index check.
fn open_index(cfg: &StoreConfig) -> Result<(DirLock, Meta, ColdTier)> {
    let dir = &cfg.data_dir;
    let mut lock = DirLock::acquire(dir)?;
    let (meta, cold) = open_meta_and_cold(cfg, &dir.join("meta"))?;
    lock.guard_env(meta.closing_event());
    Ok((lock, meta, cold))
}

/// Opens the LMDB environment in `meta_dir` and the cold tier of `cfg` over it (blocking).
fn open_meta_and_cold(cfg: &StoreConfig, meta_dir: &std::path::Path) -> Result<(Meta, ColdTier)> {
    let meta = Meta::open_with_clock(meta_dir, cfg.lmdb_map_size, cfg.clock.clone())?;
    let cold = ColdTier::open(
        &cfg.cold_url,
        &cfg.cold_options,
        cfg.cold_concurrency,
        meta.clone(),
    )?
    .with_packing(crate::cold::Packing {
        block_target: cfg.cold_block_target,
        fast: cfg.cold_fast_compression,
        fast_is_not_final: cfg.cold_fast_compression != cfg.cold_compression,
    });
    Ok((meta, cold))
}

/// Closes what [`open_index`] opened and releases the data dir (blocking).
fn close_index(lock: DirLock, meta: Meta, cold: ColdTier) {
    meta.close();
    drop(cold);
    drop(meta);
    drop(lock);
}

/// A fresh index (no format record, no data) over a cold tier that holds data means the index
/// was lost: refuse to start empty. Otherwise stamp it and go on.
async fn check_fresh_index(cfg: &StoreConfig, meta: &Meta, cold: &ColdTier) -> Result<()> {
    if !meta.is_fresh() {
        return Ok(());
    }
    if cold.holds_data().await? {
        return Err(Error::IndexLost {
            data_dir: cfg.data_dir.display().to_string(),
            cold_url: cfg.cold_url.clone(),
        });
    }
    let meta = meta.clone();
    crate::blocking::run(move || meta.stamp_format()).await
}

/// The rest of [`Store::open`]: warm packs recovered, the existence filter, the encoders.
fn open_blocking(cfg: &StoreConfig, lock: DirLock, meta: Meta, cold: ColdTier) -> Result<Opened> {
    let dir = &cfg.data_dir;
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
        // Keys only: a damaged entry is found when it is read (and by the walk at start).
        for item in t.chunks.raw.iter(txn)? {
            let (k, _) = item?;
            bloom.insert(k);
        }
        let mut hits = [0; 3];
        for (h, name) in hits.iter_mut().zip(HIT_COUNTERS) {
            *h = state_get(t, txn, name)?;
        }
        Ok((bloom, count, hits))
    })?;
    tracing::info!(
        chunks = count,
        ms = started.elapsed().as_millis() as u64,
        "existence filter rebuilt"
    );
    let encoder = Encoder::start(cfg.cold_encoders)?;
    Ok(Opened {
        lock,
        meta,
        warm,
        cold,
        encoder,
        bloom,
        hits,
    })
}

impl Store {
    /// Opens (creating if needed) the store, locks its data dir, recovers warm packs,
    /// rebuilds the existence filter, and starts the background work. A data dir whose index
    /// has no format record while the cold tier holds data is refused with
    /// [`Error::IndexLost`] (run a rebuild: [`Store::rebuild`]).
    pub async fn open(config: StoreConfig) -> Result<Self> {
        config.chunker.validate()?;
        let cfg = config.clone();
        let (lock, meta, cold) = crate::blocking::run(move || open_index(&cfg)).await?;
        if let Err(e) = check_fresh_index(&config, &meta, &cold).await {
            crate::blocking::run(move || {
                close_index(lock, meta, cold);
                Ok(())
            })
            .await?;
            return Err(e);
        }
        let cfg = config.clone();
        let opened = crate::blocking::run(move || open_blocking(&cfg, lock, meta, cold)).await?;
        let hot = HotTier::new(opened.meta.clone(), config.hot_compression);
        let uploader = Arc::new(Uploader::new(
            opened.meta.clone(),
            hot.clone(),
            opened.warm.clone(),
            opened.cold.clone(),
            Arc::new(tokio::sync::Notify::new()),
            CancellationToken::new(),
            opened.encoder,
            UploadConfig {
                compression: config.cold_compression,
                fast_compression: config.cold_fast_compression,
                fast_above: config.cold_fast_backlog,
                idle_after: config.cold_idle_after,
                pack_target: config.cold_pack_target,
                block_target: config.cold_block_target,
                flush_after: config.cold_flush_after,
            },
        ));
        let access = Arc::new(AccessLog::new(opened.meta.clone(), opened.hits));
        let background = Background::start(uploader.clone(), access.clone());
        let engine = Engine {
            config,
            meta: opened.meta,
            hot,
            warm: opened.warm,
            cold: opened.cold,
            uploader,
            access,
            scrub: scrub::ScrubCounters::default(),
            movement: evict::MovementCounters::default(),
            ghosts: admission::Ghosts::default(),
            warm_fills: Arc::new(tokio::sync::Semaphore::new(admission::WARM_FILLS)),
            follow_ups: Arc::new(tokio::sync::Semaphore::new(repair::FOLLOW_UPS as usize)),
            evict_wake: Arc::new(tokio::sync::Notify::new()),
            gc: gc::GcState::default(),
            usage: quota::Usage::default(),
            raw_scans: stats::RawScans::default(),
            indexer: Arc::new(lookups::Indexer::default()),
            bloom: RwLock::new(opened.bloom),
            inflight: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            background: Mutex::new(Some(background)),
            #[cfg(test)]
            commit_hook: Mutex::new(None),
            lock: Mutex::new(Some(opened.lock)),
        };
        let engine = Arc::new(engine);
        if let Some(background) = background::lock(&engine.background).as_mut() {
            let weak = Arc::downgrade(&engine);
            background.spawn(|cancel| scrub::run(weak, cancel));
            let weak = Arc::downgrade(&engine);
            let wake = engine.evict_wake.clone();
            // A data dir over its budgets (smaller ones given at this start) shrinks at once.
            wake.notify_one();
            background.spawn(|cancel| evict::run(weak, wake, cancel));
            let weak = Arc::downgrade(&engine);
            background.spawn(|cancel| lookups::run(weak, cancel));
        }
        Ok(Self {
            slot: Arc::new(RwLock::new(Some(engine))),
        })
    }

    /// The open engine, or [`Error::ShuttingDown`].
    pub(crate) fn engine(&self) -> Result<Arc<Engine>> {
        self.slot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(Error::ShuttingDown)
    }

    /// The chunker clients must use.
    pub fn chunker(&self) -> ChunkerSpec {
        self.engine()
            .map_or_else(|_| ChunkerSpec::default(), |e| e.config.chunker)
    }

    /// The largest chunk accepted or returned.
    pub fn max_chunk_len(&self) -> usize {
        MAX_CHUNK_LEN
    }

    /// Uploads every queued chunk and manifest to the cold tier now, partial packs included,
    /// and returns once the queue is empty (tests, and operators before maintenance).
    pub async fn flush_cold(&self) -> Result<()> {
        let e = self.engine()?;
        crate::writeback::drain(&e.uploader, true).await
    }

    /// Stops background work and waits for it (the cold queue stays in LMDB and resumes at the
    /// next open), flushes access times and hit counts, syncs, closes LMDB and releases the
    /// data dir. Further calls on any clone fail with [`Error::ShuttingDown`].
    pub async fn shutdown(&self) -> Result<()> {
        let taken = self
            .slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(engine) = taken else {
            return Ok(());
        };
        engine.closing.store(true, Ordering::Release);
        let background = lock(&engine.background).take();
        let stopped = match background {
            Some(background) => background.stop().await,
            None => Ok(()),
        };
        let flushed = unless_full(
            engine.access.flush().await,
            "persisting access times and hit counts",
        );
        let meta = engine.meta.clone();
        let dir_lock = lock(&engine.lock).take();
        drop(engine);
        crate::blocking::run(move || {
            let synced = unless_full(meta.sync(), "the final LMDB sync");
            meta.close();
            drop(meta);
            // Waits until every handle on the environment is gone.
            drop(dir_lock);
            synced
        })
        .await?;
        stopped.and(flushed)
    }
}

/// A shutdown step that only persists what can be lost: access times and hit counts (they
/// order eviction), or a sync of commits that were each durable already. On a full disk its
/// failure is logged, not returned, so a daemon stopping on a full disk still exits 0: every
/// acknowledged write is in LMDB, and the cold queue resumes at the next open.
fn unless_full(result: Result<()>, what: &str) -> Result<()> {
    match result {
        Err(e @ (Error::DiskFull { .. } | Error::Full(_))) => {
            tracing::warn!(
                error = %e,
                "{what} failed at shutdown; nothing acknowledged is lost"
            );
            Ok(())
        }
        other => other,
    }
}

impl Engine {
    /// Fails once shutdown has begun, so long reads stop between batches.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// Whether the existence filter may hold `key` (false means surely absent).
    pub(crate) fn may_hold(&self, key: &ChunkKey) -> bool {
        self.bloom
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key.as_bytes().as_slice())
    }

    /// Adds keys to the existence filter.
    pub(crate) fn remember(&self, keys: &[ChunkKey]) {
        let mut bloom = self
            .bloom
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in keys {
            bloom.insert(key.as_bytes().as_slice());
        }
    }

    /// The single-flight gate of a chunk.
    pub(crate) fn gate(&self, key: ChunkKey) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inflight).entry(key).or_default().clone()
    }

    /// Whether no single-flight gate is held or waited on.
    #[cfg(test)]
    pub(crate) fn inflight_is_empty(&self) -> bool {
        lock(&self.inflight).is_empty()
    }

    /// Forgets a gate nobody waits on any more (`holders` counts the caller's references).
    pub(crate) fn release_gate(&self, key: ChunkKey, holders: usize) {
        let mut map = lock(&self.inflight);
        if map
            .get(&key)
            .is_some_and(|g| Arc::strong_count(g) <= 1 + holders)
        {
            map.remove(&key);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let background = lock(&self.background).take();
        if let Some(background) = background {
            let dir_lock = lock(&self.lock).take();
            background.stop_detached(self.meta.clone(), dir_lock);
        }
    }
}
