//! The LMDB environment: hot chunk bytes and every piece of metadata.
//!
//! # Tables (keys big-endian where they must sort; values little-endian)
//!
//! A *chunk key* is 40 bytes: the tenant id (8, see [`crate::names::Tenant::id`]) then the
//! chunk id (32). Chunks are per tenant: the same bytes pushed by two tenants are two keys.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `chunks` | chunk key | [`ChunkInfo`]: raw length `u32`, tier bits `u8` (1 hot, 2 warm, 4 cold), last access Unix seconds `u64` |
//! | `hot` | chunk key | the chunk frame (`codec.rs`), lz4 by default |
//! | `warm` | chunk key | pack `u32`, offset `u64`, length `u32` of the frame in that pack |
//! | `warm_packs` | pack `u32` BE | durable length `u64`, live bytes `u64`, dead bytes `u64` |
//! | `cold` | chunk key | pack object id (32), offset `u64`, length `u32` |
//! | `cold_queue` | sequence `u64` BE | kind `u8` (1 chunk, 2 manifest, 3 ref set, 4 ref deleted), enqueued Unix ms `u64`, tenant id (8), then for kinds 1 and 2 the id (32), for kinds 3 and 4 the cold ref object (`cold_refs.rs`) |
//! | `manifests` | tenant id (8) + manifest id (32) | the manifest encoding (`manifest.rs`) |
//! | `refs` | namespace, `0x00`, key | the ref record (`refs.rs`) |
//! | `tenants` | tenant id (8) | tenant name (UTF-8) |
//! | `counters` | tenant id (8) + tier `u8` | chunks `u64`, stored bytes `u64` |
//! | `state` | name (UTF-8) | `u64` (`format`, next queue sequence, next pack number, hit counts, `ref_version`: the last version given to a ref event) |
//!
//! From data dir format 3 on, every value of `chunks`, `warm`, `cold`, `manifests` and `refs`
//! is *sealed*: followed by an XXH3-64 of its key and value, checked on every read
//! (`sealed.rs`).
//!
//! # Format version
//!
//! The `state` key `format` holds the data dir's format version, checked and stamped at open;
//! `version.rs` documents the rule and the history.
//!
//! # Writes
//!
//! All writes go through one writer thread ([`Meta::write`]): it takes every job waiting,
//! applies each in a nested transaction (so one job's failure does not abort the others),
//! and commits them together with one fsync. A caller's future resolves only after that
//! commit is durable, so concurrent uploads share fsyncs instead of queueing behind them.

use std::any::Any;
use std::path::Path;

use heed::types::Bytes as RawBytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{ChunkId, ManifestId};
use crate::names::TenantId;
use crate::sealed::{Kind, Sealed};

/// A table of raw bytes.
pub(crate) type Table = Database<'static, RawBytes, RawBytes>;

/// The environment's tables, and the clock that stamps what is written through them.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub(crate) chunks: Sealed,
    pub(crate) hot: Table,
    pub(crate) warm: Sealed,
    pub(crate) warm_packs: Table,
    pub(crate) cold: Sealed,
    pub(crate) cold_queue: Table,
    pub(crate) manifests: Sealed,
    pub(crate) refs: Sealed,
    pub(crate) tenants: Table,
    pub(crate) counters: Table,
    pub(crate) state: Table,
    /// Whether a blob's lookup tables are built: tenant id and manifest id → state
    /// (`store/lookups.rs`).
    pub(crate) lookup_state: Sealed,
    /// The lookup tables' rows: tenant id, manifest id, section byte, name → entry.
    pub(crate) lookups: Sealed,
    /// Where access times and queue ages come from.
    pub(crate) clock: Clock,
}

pub(crate) const TABLE_NAMES: [&str; 13] = [
    "chunks",
    "hot",
    "warm",
    "warm_packs",
    "cold",
    "cold_queue",
    "manifests",
    "refs",
    "tenants",
    "counters",
    "state",
    "lookup_state",
    "lookups",
];

/// 40-byte storage key of a tenant's chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkKey(pub(crate) [u8; 40]);

impl ChunkKey {
    /// The key of `id` in `tenant`'s chunk space.
    pub fn new(tenant: TenantId, id: &ChunkId) -> Self {
        let mut k = [0u8; 40];
        k[..8].copy_from_slice(&tenant.0);
        k[8..].copy_from_slice(id.as_bytes());
        Self(k)
    }

    /// Parses a stored key.
    pub(crate) fn from_slice(b: &[u8]) -> Result<Self> {
        let k: [u8; 40] = b
            .try_into()
            .map_err(|_| Error::Format(format!("chunk key of {} bytes", b.len())))?;
        Ok(Self(k))
    }

    /// The tenant part.
    pub fn tenant(&self) -> TenantId {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[..8]);
        TenantId(t)
    }

    /// The chunk id part.
    pub fn id(&self) -> ChunkId {
        let mut c = [0u8; 32];
        c.copy_from_slice(&self.0[8..]);
        ChunkId::from_bytes(c)
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 40] {
        &self.0
    }
}

impl std::fmt::Debug for ChunkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChunkKey({}:{})",
            hex::encode(self.tenant().0),
            self.id()
        )
    }
}

/// Tier bits in [`ChunkInfo::tiers`].
pub(crate) mod tier_bits {
    pub(crate) const HOT: u8 = 1;
    pub(crate) const WARM: u8 = 2;
    pub(crate) const COLD: u8 = 4;
}

/// What the `chunks` table knows of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkInfo {
    pub(crate) raw_len: u32,
    pub(crate) tiers: u8,
    pub(crate) last_access_s: u64,
}

impl ChunkInfo {
    pub(crate) fn encode(&self) -> [u8; 13] {
        let mut b = [0u8; 13];
        b[..4].copy_from_slice(&self.raw_len.to_le_bytes());
        b[4] = self.tiers;
        b[5..].copy_from_slice(&self.last_access_s.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 13 {
            return Err(Error::Format(format!("chunk info of {} bytes", b.len())));
        }
        Ok(Self {
            raw_len: le_u32(&b[..4]),
            tiers: b[4],
            last_access_s: le_u64(&b[5..13]),
        })
    }
}

/// Little-endian u32 from exactly 4 bytes (callers check lengths).
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Little-endian u64 from exactly 8 bytes (callers check lengths).
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Adds `(d_chunks, d_bytes)` to a tenant's counters for one tier.
pub(crate) fn bump_counter(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    tenant: TenantId,
    tier: u8,
    d_chunks: i64,
    d_bytes: i64,
) -> Result<()> {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&tenant.0);
    key[8] = tier;
    let (mut chunks, mut bytes) = match t.counters.get(txn, &key)? {
        Some(v) if v.len() == 16 => (le_u64(&v[..8]), le_u64(&v[8..])),
        _ => (0, 0),
    };
    chunks = chunks.saturating_add_signed(d_chunks);
    bytes = bytes.saturating_add_signed(d_bytes);
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&chunks.to_le_bytes());
    v[8..].copy_from_slice(&bytes.to_le_bytes());
    t.counters.put(txn, &key, &v)?;
    Ok(())
}

/// The records of a raw table whose key starts with `prefix` (every record for an empty one:
/// LMDB refuses an empty key to position at).
pub(crate) fn raw_prefix_iter<'t>(
    table: &Table,
    txn: &'t RoTxn<'_, WithoutTls>,
    prefix: &[u8],
) -> Result<crate::sealed::Records<'t>> {
    if prefix.is_empty() {
        return Ok(Box::new(table.iter(txn)?.map(|i| i.map_err(Error::from))));
    }
    Ok(Box::new(
        table
            .prefix_iter(txn, prefix)?
            .map(|i| i.map_err(Error::from)),
    ))
}

/// Reads a `u64` from the `state` table.
pub(crate) fn state_get(t: &Tables, txn: &RoTxn<'_, WithoutTls>, name: &str) -> Result<u64> {
    Ok(match t.state.get(txn, name.as_bytes())? {
        Some(v) if v.len() == 8 => le_u64(v),
        _ => 0,
    })
}

/// Writes a `u64` to the `state` table.
pub(crate) fn state_put(t: &Tables, txn: &mut RwTxn<'_>, name: &str, value: u64) -> Result<()> {
    t.state.put(txn, name.as_bytes(), &value.to_le_bytes())?;
    Ok(())
}

/// The `manifests` table key: tenant id, then manifest id.
pub(crate) fn manifest_key(tenant: TenantId, id: &ManifestId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&tenant.0);
    k[8..].copy_from_slice(id.as_bytes());
    k
}

/// A chunk's index entry; a damaged one reads as absent (logged), so that the chunk counts as
/// missing, the client uploads it again, and that upload rewrites the entry.
pub(crate) fn chunk_info(t: &Tables, txn: &RoTxn<'_>, key: &ChunkKey) -> Result<Option<ChunkInfo>> {
    t.chunks
        .get_unless_damaged(txn, key.as_bytes())?
        .map(ChunkInfo::decode)
        .transpose()
}

/// The tier bits of the tier tables that hold a copy of the chunk.
fn tiers_holding(t: &Tables, txn: &RoTxn<'_>, key: &ChunkKey) -> Result<u8> {
    let k = key.as_bytes();
    let mut bits = 0;
    if t.hot.get(txn, k)?.is_some() {
        bits |= tier_bits::HOT;
    }
    if t.warm.contains(txn, k)? {
        bits |= tier_bits::WARM;
    }
    if t.cold.contains(txn, k)? {
        bits |= tier_bits::COLD;
    }
    Ok(bits)
}

/// A chunk's index entry for a writer about to update it: a damaged entry is rebuilt from the
/// tier tables that hold the chunk and `raw_len` (the caller's copy proves it), and rewritten.
pub(crate) fn chunk_info_for_update(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    key: ChunkKey,
    raw_len: u32,
) -> Result<Option<ChunkInfo>> {
    let k = key.as_bytes();
    if let Some(v) = t.chunks.get_unless_damaged(txn, k)? {
        return ChunkInfo::decode(v).map(Some);
    }
    if !t.chunks.contains(txn, k)? {
        return Ok(None);
    }
    let info = ChunkInfo {
        raw_len,
        tiers: tiers_holding(t, txn, &key)?,
        last_access_s: t.clock.now_s(),
    };
    t.chunks.put(txn, k, &info.encode())?;
    tracing::info!(chunk = %key.id(), "rebuilt a damaged chunk index entry");
    Ok(Some(info))
}

/// Clears one tier bit of a chunk; forgets the chunk when no tier holds it any more.
pub(crate) fn clear_tier_bit(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    key: ChunkKey,
    bit: u8,
) -> Result<()> {
    let k = key.as_bytes();
    match t.chunks.get_unless_damaged(txn, k)? {
        Some(v) => {
            let mut info = ChunkInfo::decode(v)?;
            info.tiers &= !bit;
            if info.tiers == 0 {
                t.chunks.delete(txn, k)?;
            } else {
                t.chunks.put(txn, k, &info.encode())?;
            }
        }
        // A damaged entry of a chunk no tier holds any more goes; otherwise the next upload
        // of the chunk rebuilds it.
        None => {
            if t.chunks.contains(txn, k)? && tiers_holding(t, txn, &key)? & !bit == 0 {
                t.chunks.delete(txn, k)?;
            }
        }
    }
    Ok(())
}

/// Sets one tier bit of a chunk, creating its info (accessed now) when absent.
pub(crate) fn set_tier_bit(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    key: ChunkKey,
    bit: u8,
    raw_len: u32,
) -> Result<()> {
    let k = key.as_bytes();
    let mut info = match chunk_info_for_update(t, txn, key, raw_len)? {
        Some(info) => info,
        None => ChunkInfo {
            raw_len,
            tiers: 0,
            last_access_s: t.clock.now_s(),
        },
    };
    info.tiers |= bit;
    t.chunks.put(txn, k, &info.encode())?;
    Ok(())
}

/// Keys of a tenant in one table, in key order.
pub(crate) fn list_table(
    meta: &Meta,
    pick: fn(&Tables) -> Table,
    tenant: TenantId,
) -> Result<Vec<ChunkKey>> {
    meta.read_now(|t, txn| {
        let table = pick(t);
        let mut out = Vec::new();
        for item in table.prefix_iter(txn, &tenant.0)? {
            let (k, _) = item?;
            out.push(ChunkKey::from_slice(k)?);
        }
        Ok(out)
    })
}

type Apply = Box<dyn FnOnce(&Tables, &mut RwTxn<'_>) -> Result<Box<dyn Any + Send>> + Send>;

struct Job {
    apply: Apply,
    done: oneshot::Sender<Result<Box<dyn Any + Send>>>,
}

enum Message {
    Job(Job),
    /// Finish what is queued, then exit (see [`Meta::close`]).
    Stop,
}

type Done = oneshot::Receiver<Result<Box<dyn Any + Send>>>;

/// Wraps a typed closure as a writer job.
fn job<T, F>(f: F) -> (Job, Done)
where
    F: FnOnce(&Tables, &mut RwTxn<'_>) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (done, wait) = oneshot::channel();
    let apply: Apply =
        Box::new(move |t, txn| f(t, txn).map(|v| Box::new(v) as Box<dyn Any + Send>));
    (Job { apply, done }, wait)
}

/// Recovers the typed result of a job.
fn unbox<T: 'static>(result: Result<Box<dyn Any + Send>>) -> Result<T> {
    result?
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| Error::Format("writer returned an unexpected type".into()))
}

/// Most jobs merged into one commit.
const MAX_JOBS_PER_COMMIT: usize = 256;

/// The LMDB environment, its tables and its writer thread.
#[derive(Clone)]
pub(crate) struct Meta {
    env: Env<WithoutTls>,
    tables: Tables,
    writer: mpsc::Sender<Message>,
    thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// See [`Meta::is_fresh`].
    fresh: bool,
    /// See [`Meta::read_short`].
    short: std::sync::Arc<crate::blocking::Short>,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta")
            .field("path", &self.env.path())
            .finish()
    }
}

impl Meta {
    /// [`Meta::open_with_clock`] on the system clock, stamping a fresh environment as a store
    /// with an empty cold tier does (tests of a single tier).
    #[cfg(test)]
    pub(crate) fn open(dir: &Path, map_size: u64) -> Result<Self> {
        let meta = Self::open_with_clock(dir, map_size, Clock::system())?;
        if meta.is_fresh() {
            meta.stamp_format()?;
        }
        Ok(meta)
    }

    /// Opens or creates the environment in `dir` with a map of `map_size` bytes, clears reader
    /// slots left by killed processes, and starts the writer thread.
    ///
    /// Opening writes too (the tables, the format stamp): a full disk fails it with
    /// [`Error::DiskFull`].
    pub(crate) fn open_with_clock(dir: &Path, map_size: u64, clock: Clock) -> Result<Self> {
        Self::open_inner(dir, map_size, clock).map_err(|e| crate::disk_space::classify(e, dir))
    }

    fn open_inner(dir: &Path, map_size: u64, clock: Clock) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let map_size = usize::try_from(map_size)
            .map_err(|_| Error::InvalidArgument("LMDB map size does not fit in memory".into()))?;
        // A truncated or emptied file would be mapped and fault (SIGBUS): refuse it first.
        crate::lmdb_file::check(dir)?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_dbs(16).max_readers(1024);
        // SAFETY: LMDB requires that an environment is opened at most once per process and
        // that its files are not modified by other means while open. The data dir lock taken by
        // `Store::open` (an exclusive `flock` on `<data_dir>/lock`, held for the store's lifetime)
        // guarantees a single opener; no code path removes or truncates `meta/` files.
        #[allow(unsafe_code)]
        let env = unsafe { options.open(dir)? };
        let cleared = env.clear_stale_readers()?;
        if cleared > 0 {
            tracing::info!(
                cleared,
                "cleared stale LMDB reader slots left by a killed process"
            );
        }
        let wtxn = env.write_txn()?;
        let tables: [Table; 13] = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
                let mut out = Vec::with_capacity(TABLE_NAMES.len());
                for name in TABLE_NAMES {
                    out.push(opener.create_database::<RawBytes, RawBytes>(wtxn, Some(name))?);
                }
                let array: [_; 13] = out
                    .try_into()
                    .map_err(|_| Error::Format("table count".into()))?;
                Ok(CommitOrAbort::<_, ()>::Commit(array))
            })?
            .unwrap_commit();
        let [
            chunks,
            hot,
            warm,
            warm_packs,
            cold,
            cold_queue,
            manifests,
            refs,
            tenants,
            counters,
            state,
            lookup_state,
            lookups,
        ] = tables;
        let chunks = Sealed::new(chunks, Kind::ChunkInfo);
        let warm = Sealed::new(warm, Kind::WarmLocation);
        let cold = Sealed::new(cold, Kind::ColdLocation);
        let manifests = Sealed::new(manifests, Kind::Manifest);
        let refs = Sealed::new(refs, Kind::Ref);
        let lookup_state = Sealed::new(lookup_state, Kind::LookupState);
        let lookups = Sealed::new(lookups, Kind::Lookup);
        let sealed = [chunks, warm, cold, manifests, refs, lookup_state, lookups];
        let fresh = crate::version::check_data_dir(&env, state, &tables, &sealed, dir)?;
        let tables = Tables {
            chunks,
            hot,
            warm,
            warm_packs,
            cold,
            cold_queue,
            manifests,
            refs,
            tenants,
            counters,
            state,
            lookup_state,
            lookups,
            clock,
        };
        let (writer, jobs) = mpsc::channel(1024);
        let writer_env = env.clone();
        let writer_tables = tables.clone();
        let thread = crate::blocking::spawn_thread("scipcache-lmdb-writer".into(), move || {
            write_loop(writer_env, writer_tables, jobs);
        })?;
        Ok(Self {
            env,
            tables,
            writer,
            thread: std::sync::Arc::new(std::sync::Mutex::new(Some(thread))),
            fresh,
            short: std::sync::Arc::new(crate::blocking::Short::new()),
        })
    }

    /// Whether the environment had no format record and no data when it opened (and is not
    /// stamped yet: see [`Meta::stamp_format`]).
    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Records this build's data dir format in a fresh environment.
    pub(crate) fn stamp_format(&self) -> Result<()> {
        crate::version::stamp(&self.env, self.tables.state)
    }

    /// Runs `f` in a read transaction on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Tables, &RoTxn<'_, WithoutTls>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        crate::blocking::run(self.in_read_txn(f)).await
    }

    /// [`Meta::read`] for short, bounded reads whose caller waits on them (a lookup's rows):
    /// on the calling async worker unless a recent one overran (see [`crate::blocking::Short`]).
    pub(crate) async fn read_short<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Tables, &RoTxn<'_, WithoutTls>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.short.run(self.in_read_txn(f)).await
    }

    /// `f` as a job that opens its own read transaction, for whatever thread runs it.
    fn in_read_txn<T, F>(&self, f: F) -> impl FnOnce() -> Result<T> + Send + 'static
    where
        F: FnOnce(&Tables, &RoTxn<'_, WithoutTls>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (env, tables) = (self.env.clone(), self.tables.clone());
        move || {
            let txn = env.read_txn()?;
            f(&tables, &txn)
        }
    }

    /// Runs `f` in a read transaction on this thread (for code already on the blocking pool).
    pub(crate) fn read_now<T>(
        &self,
        f: impl FnOnce(&Tables, &RoTxn<'_, WithoutTls>) -> Result<T>,
    ) -> Result<T> {
        let txn = self.env.read_txn()?;
        f(&self.tables, &txn)
    }

    /// Applies `f` in the next group commit and resolves once that commit is durable.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Tables, &mut RwTxn<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (job, wait) = job(f);
        self.writer
            .send(Message::Job(job))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        unbox(wait.await.map_err(|_| Error::ShuttingDown)?)
    }

    /// [`Meta::write`] for code on the blocking pool.
    pub(crate) fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Tables, &mut RwTxn<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (job, wait) = job(f);
        self.writer
            .blocking_send(Message::Job(job))
            .map_err(|_| Error::ShuttingDown)?;
        unbox(wait.blocking_recv().map_err(|_| Error::ShuttingDown)?)
    }

    /// The engine's clock.
    pub(crate) fn clock(&self) -> &Clock {
        &self.tables.clock
    }

    /// An event signalled once every handle on the environment (every clone of this `Meta`, the
    /// writer thread's) is gone and LMDB has closed it; the data-dir lock waits for it.
    pub(crate) fn closing_event(&self) -> heed::EnvClosingEvent {
        self.env.clone().prepare_for_closing()
    }

    /// Flushes LMDB buffers to disk.
    pub(crate) fn sync(&self) -> Result<()> {
        self.env
            .force_sync()
            .map_err(|e| crate::disk_space::classify(e.into(), self.env.path()))
    }

    /// Lets the writer finish queued jobs and waits for its thread to exit (blocking). Later
    /// writes fail with [`Error::ShuttingDown`]. The environment closes when the last clone of
    /// this `Meta` is dropped.
    pub(crate) fn close(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = self.writer.blocking_send(Message::Stop);
            let _ = handle.join();
        }
    }
}

fn write_loop(env: Env<WithoutTls>, tables: Tables, mut jobs: mpsc::Receiver<Message>) {
    let mut stopping = false;
    while !stopping {
        let Some(Message::Job(first)) = jobs.blocking_recv() else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let (applies, senders): (Vec<Apply>, Vec<_>) =
            batch.into_iter().map(|j| (j.apply, j.done)).unzip();
        let mut results = Vec::with_capacity(applies.len());
        let outcome = (|| -> Result<()> {
            let mut parent = env.write_txn()?;
            for apply in applies {
                let mut child = env.nested_write_txn(&mut parent)?;
                match apply(&tables, &mut child) {
                    Ok(v) => {
                        child.commit()?;
                        results.push(Ok(v));
                    }
                    Err(e) => {
                        child.abort();
                        // A job's own writes can reach the disk too (LMDB spills dirty pages).
                        results.push(Err(crate::disk_space::classify(e, env.path())));
                    }
                }
            }
            parent.commit()?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                for (done, result) in senders.into_iter().zip(results) {
                    let _ = done.send(result);
                }
            }
            Err(e) => {
                let e = crate::disk_space::classify(e, env.path());
                let message = e.to_string();
                tracing::error!(error = %message, "LMDB group commit failed");
                // The transaction is aborted and the environment stays usable: the next
                // commit starts from the last committed state (a full disk only needs room).
                for done in senders {
                    let err = match &e {
                        Error::DiskFull {
                            path,
                            available,
                            detail,
                        } => Error::DiskFull {
                            path: path.clone(),
                            available: *available,
                            detail: detail.clone(),
                        },
                        Error::Full(_) => Error::Full(message.clone()),
                        _ => Error::Unavailable(format!("metadata write failed: {message}")),
                    };
                    let _ = done.send(Err(err));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
