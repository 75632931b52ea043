//! Write-behind to the cold tier.
//!
//! New chunks and manifests are queued in the LMDB `cold_queue` table in the same transaction
//! that stores them (see `meta.rs` for the entry layout), so the queue survives restarts and
//! crashes. One task per store drains it: it groups queued chunks by tenant, compresses them
//! with the cold codec on low-priority encoder threads (zstd at high levels runs at a few MB/s
//! per core, so this never happens on a request path), and writes a pack object once
//! `StoreConfig::cold_pack_target` bytes are ready, or a partial one when its oldest
//! entry has waited `StoreConfig::cold_flush_after`. Only after the pack is written
//! and indexed are its queue entries removed; a failure leaves them queued and is retried with
//! exponential backoff.
//!
//! Sets and deletions of refs are queued the same way, each as a complete cold ref object
//! with its version (`cold_refs.rs`, `writeback_refs.rs`); a tenant's ref events are uploaded
//! once the chunks queued before them are, and in any order among themselves (the newest
//! version wins).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heed::RwTxn;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::codec::{Compression, Frame};
use crate::cold::ColdTier;
use crate::cold::block::{Block, BlockEncoding};
use crate::error::{Error, Result};
use crate::hot::HotTier;
use crate::ids::{ChunkId, ManifestId};
use crate::meta::{
    ChunkInfo, ChunkKey, Meta, Tables, chunk_info, le_u64, manifest_key, state_get, state_put,
    tier_bits,
};
use crate::names::TenantId;
use crate::warm::WarmTier;
use tokio_util::sync::CancellationToken;

/// Something waiting for its cold copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum QueueItem {
    /// A chunk.
    Chunk(ChunkKey),
    /// A manifest.
    Manifest(TenantId, ManifestId),
    /// A set or a deletion of a ref of the tenant: its cold ref object (`cold_refs.rs`).
    Ref {
        tenant: TenantId,
        deleted: bool,
        object: Vec<u8>,
    },
}

const KIND_CHUNK: u8 = 1;
const KIND_MANIFEST: u8 = 2;
const KIND_REF_SET: u8 = 3;
const KIND_REF_DELETED: u8 = 4;
/// Bytes before the id or object of a queue entry: kind, enqueued ms, tenant id.
const ENTRY_HEAD: usize = 17;
/// Queue entries read per round.
const ROUND: usize = 4096;

/// Appends to the queue inside a write transaction.
pub(crate) fn enqueue_in_txn(t: &Tables, txn: &mut RwTxn<'_>, item: QueueItem) -> Result<()> {
    let seq = state_get(t, txn, "cold_seq")?;
    state_put(t, txn, "cold_seq", seq + 1)?;
    let (kind, tenant, body): (u8, TenantId, &[u8]) = match &item {
        QueueItem::Chunk(k) => (KIND_CHUNK, k.tenant(), k.as_bytes()[8..].as_ref()),
        QueueItem::Manifest(t, m) => (KIND_MANIFEST, *t, m.as_bytes().as_slice()),
        QueueItem::Ref {
            tenant,
            deleted,
            object,
        } => (
            if *deleted {
                KIND_REF_DELETED
            } else {
                KIND_REF_SET
            },
            *tenant,
            object.as_slice(),
        ),
    };
    let mut v = Vec::with_capacity(ENTRY_HEAD + body.len());
    v.push(kind);
    v.extend_from_slice(&t.clock.now_ms().to_le_bytes());
    v.extend_from_slice(&tenant.0);
    v.extend_from_slice(body);
    t.cold_queue.put(txn, &seq.to_be_bytes(), &v)?;
    Ok(())
}

struct Entry {
    seq: u64,
    enqueued_ms: u64,
    item: QueueItem,
}

/// What a `cold_queue` record asks for.
pub(crate) fn queue_item(k: &[u8], v: &[u8]) -> Result<QueueItem> {
    decode_entry(k, v).map(|e| e.item)
}

fn decode_entry(k: &[u8], v: &[u8]) -> Result<Entry> {
    let fixed = matches!(v.first(), Some(&(KIND_CHUNK | KIND_MANIFEST)));
    if k.len() != 8 || v.len() < ENTRY_HEAD || (fixed && v.len() != ENTRY_HEAD + 32) {
        return Err(Error::Format("cold queue entry".into()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(k);
    let mut tenant = [0u8; 8];
    tenant.copy_from_slice(&v[9..ENTRY_HEAD]);
    let tenant = TenantId(tenant);
    let body = &v[ENTRY_HEAD..];
    let id = || {
        let mut id = [0u8; 32];
        id.copy_from_slice(body);
        id
    };
    let item = match v[0] {
        KIND_CHUNK => QueueItem::Chunk(ChunkKey::new(tenant, &ChunkId::from_bytes(id()))),
        KIND_MANIFEST => QueueItem::Manifest(tenant, ManifestId::from_bytes(id())),
        kind @ (KIND_REF_SET | KIND_REF_DELETED) => QueueItem::Ref {
            tenant,
            deleted: kind == KIND_REF_DELETED,
            object: body.to_vec(),
        },
        other => return Err(Error::Format(format!("cold queue kind {other}"))),
    };
    Ok(Entry {
        seq: u64::from_be_bytes(seq),
        enqueued_ms: le_u64(&v[1..9]),
        item,
    })
}

/// Encoded blocks kept between rounds so a partial pack is not compressed twice.
#[derive(Default)]
struct Pending {
    /// By the queue entry of the block's first chunk: the block, the queue entries of its
    /// chunks, and whether it was encoded at the fast level.
    blocks: HashMap<u64, PendingBlock>,
    /// The queue entry of every chunk in `blocks` → its block's first entry.
    member_of: HashMap<u64, u64>,
}

struct PendingBlock {
    block: Block,
    seqs: Vec<u64>,
    fast: bool,
}

impl Pending {
    fn insert(&mut self, block: Block, seqs: Vec<u64>, fast: bool) {
        let Some(first) = seqs.first().copied() else {
            return;
        };
        for s in &seqs {
            self.member_of.insert(*s, first);
        }
        self.blocks
            .insert(first, PendingBlock { block, seqs, fast });
    }

    fn remove(&mut self, first: u64) {
        if let Some(b) = self.blocks.remove(&first) {
            for s in b.seqs {
                self.member_of.remove(&s);
            }
        }
    }
}

/// Queue entries at which the write-behind starts encoding at the fast level, by default
/// (`StoreConfig::cold_fast_backlog`); it goes back to the cold level under an eighth of it.
pub(crate) const FAST_ABOVE: u64 = 2048;
/// Queue entries at which the encoders leave `SCHED_IDLE` and compete with requests for CPU:
/// the last resort, which slows pushes down so the backlog stops growing.
pub(crate) const URGENT_ABOVE: u64 = 65_536;

/// How the write-behind encodes this round, from the queue's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pace {
    /// Encode at the fast level (and mark the packs for recompression).
    pub(crate) fast: bool,
    /// Run the encoders at normal priority.
    pub(crate) urgent: bool,
}

impl Pace {
    /// The pace for `queued` entries when the fast level starts at `fast_above`, with
    /// hysteresis (`was_fast`).
    pub(crate) fn for_backlog(queued: u64, was_fast: bool, fast_above: u64) -> Self {
        Self {
            fast: queued >= fast_above || (was_fast && queued > fast_above / 8),
            urgent: queued >= URGENT_ABOVE.max(fast_above),
        }
    }
}

/// How the uploader packs and compresses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UploadConfig {
    /// Cold tier codec.
    pub(crate) compression: Compression,
    /// The codec used while a backlog drains (packs written with it are recompressed later).
    pub(crate) fast_compression: Compression,
    /// Queue entries at which the fast level starts.
    pub(crate) fast_above: u64,
    /// How long the queue must have been empty before recompression starts.
    pub(crate) idle_after: Duration,
    /// A pack object is written once this many stored bytes are ready.
    pub(crate) pack_target: usize,
    /// Raw bytes of consecutive chunks compressed as one block (`cold_block.rs`).
    pub(crate) block_target: usize,
    /// A partial pack is written once its oldest entry has waited this long.
    pub(crate) flush_after: Duration,
}

/// Everything the write-behind uploader works with: explicit handles, not the store.
pub(crate) struct Uploader {
    pub(crate) meta: Meta,
    pub(crate) hot: HotTier,
    pub(crate) warm: WarmTier,
    pub(crate) cold: ColdTier,
    /// Woken when something is queued.
    pub(crate) notify: Arc<tokio::sync::Notify>,
    /// Cancelled when the store shuts down.
    pub(crate) cancel: CancellationToken,
    pub(crate) encoder: Encoder,
    pub(crate) config: UploadConfig,
    /// Encoded chunks kept between rounds; also serialises the background task and explicit
    /// flushes.
    pending: tokio::sync::Mutex<Pending>,
    /// Whether the backlog is being encoded at the fast level (see [`Pace`]).
    fast: std::sync::atomic::AtomicBool,
    /// When the queue last held anything, Unix ms.
    last_busy_ms: std::sync::atomic::AtomicU64,
}

impl Uploader {
    /// Bundles the handles; nothing runs until [`run`] is spawned.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        meta: Meta,
        hot: HotTier,
        warm: WarmTier,
        cold: ColdTier,
        notify: Arc<tokio::sync::Notify>,
        cancel: CancellationToken,
        encoder: Encoder,
        config: UploadConfig,
    ) -> Self {
        Self {
            meta,
            hot,
            warm,
            cold,
            notify,
            cancel,
            encoder,
            config,
            pending: tokio::sync::Mutex::new(Pending::default()),
            fast: std::sync::atomic::AtomicBool::new(false),
            last_busy_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn clock(&self) -> &Clock {
        self.meta.clock()
    }
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("cold", &self.cold)
            .field("config", &self.config)
            .finish()
    }
}

/// Low-priority threads that compress chunks for the cold tier. [`Encoder::close`] stops and
/// joins them; dropping the encoder does too.
pub(crate) struct Encoder {
    jobs: Mutex<Option<std::sync::mpsc::Sender<EncodeJob>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The threads' kernel ids, so their priority changes at once, mid-job.
    tids: Arc<Mutex<Vec<libc::pid_t>>>,
    /// Whether they run at normal priority (a backlog beyond [`URGENT_ABOVE`]).
    urgent: Arc<std::sync::atomic::AtomicBool>,
}

/// How an encoder job encodes.
pub(crate) type Encoding = BlockEncoding;

type EncodeJob = (
    Vec<(ChunkKey, Frame)>,
    Encoding,
    oneshot::Sender<Result<Vec<Block>>>,
);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Encoder {
    pub(crate) fn start(threads: usize) -> Result<Self> {
        Self::start_named("scipcache-cold-encoder", threads)
    }

    /// [`Encoder::start`] with threads named `<name>-<i>`.
    pub(crate) fn start_named(name: &str, threads: usize) -> Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<EncodeJob>();
        let rx = Arc::new(Mutex::new(rx));
        let tids = Arc::new(Mutex::new(Vec::new()));
        let urgent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (rx, tids, urgent) = (rx.clone(), tids.clone(), urgent.clone());
            handles.push(crate::blocking::spawn_thread(
                format!("{name}-{i}"),
                move || {
                    // SAFETY: `gettid` is a plain syscall without arguments.
                    #[allow(unsafe_code)]
                    let tid = unsafe { libc::gettid() };
                    {
                        // Registered and set under the lock, so `set_urgent` cannot miss it.
                        let mut tids = lock(&tids);
                        set_policy(tid, urgent.load(std::sync::atomic::Ordering::Relaxed));
                        tids.push(tid);
                    }
                    encode_loop(&rx);
                },
            )?);
        }
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            threads: Mutex::new(handles),
            tids,
            urgent,
        })
    }

    /// Verifies chunks' frames and encodes them into blocks on the encoder threads.
    pub(crate) async fn encode(
        &self,
        batch: Vec<(ChunkKey, Frame)>,
        how: Encoding,
    ) -> Result<Vec<Block>> {
        let (done, wait) = oneshot::channel();
        let jobs = lock(&self.jobs).clone().ok_or(Error::ShuttingDown)?;
        jobs.send((batch, how, done))
            .map_err(|_| Error::ShuttingDown)?;
        drop(jobs);
        wait.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Runs the encoder threads at normal priority (`true`) or at `SCHED_IDLE`, at once, also
    /// in the middle of a job.
    pub(crate) fn set_urgent(&self, urgent: bool) {
        let tids = lock(&self.tids);
        if self
            .urgent
            .swap(urgent, std::sync::atomic::Ordering::Relaxed)
            == urgent
        {
            return;
        }
        for tid in tids.iter() {
            set_policy(*tid, urgent);
        }
        tracing::info!(urgent, "the cold encoders change priority");
    }

    /// How many threads encode.
    pub(crate) fn threads(&self) -> usize {
        lock(&self.threads).len()
    }

    /// Stops taking jobs and joins the threads once they finish the job at hand (blocking).
    pub(crate) fn close(&self) {
        drop(lock(&self.jobs).take());
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.close();
    }
}

fn encode_loop(rx: &Mutex<std::sync::mpsc::Receiver<EncodeJob>>) {
    loop {
        let job = lock(rx).recv();
        let Ok((batch, how, done)) = job else {
            break;
        };
        let _ = done.send(crate::cold::block::build(batch, how));
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

/// Runs thread `tid` at `SCHED_IDLE` (not `urgent`), so cold compression only takes CPU that
/// nothing else wants (a push on a busy machine is not slowed by the write-behind of the one
/// before), or back at the normal policy (`urgent`: a backlog beyond [`URGENT_ABOVE`]). The
/// queue drains either way: an idle machine runs the encoders at full speed, and Linux gives
/// `SCHED_IDLE` threads a small share even under load. Where `SCHED_IDLE` is refused, the
/// thread runs at nice +10 instead.
fn set_policy(tid: libc::pid_t, urgent: bool) {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if urgent {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_IDLE
    };
    // SAFETY: `sched_setscheduler` reads the `sched_param` we pass by reference for the
    // duration of the call only; `tid` is one of our threads (Linux schedules threads).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    if rc == 0 {
        return;
    }
    // SAFETY: `setpriority` is a plain syscall without memory arguments; on Linux the nice
    // value is per thread, so this only affects thread `tid`.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid as libc::id_t,
            if urgent { 0 } else { 10 },
        )
    };
    if rc != 0 {
        tracing::debug!("could not change a cold encoder's priority");
    }
}

/// The background task: drains the queue when woken, on a timer, and with backoff after
/// failures, until the store shuts down.
pub(crate) async fn run(inner: Arc<Uploader>) {
    let mut backoff = Duration::from_secs(1);
    let mut more = false;
    loop {
        let pause = if more {
            Duration::ZERO
        } else {
            inner.config.flush_after
        };
        tokio::select! {
            () = inner.cancel.cancelled() => break,
            () = inner.notify.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
        more = false;
        match drain(&inner, false).await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                // Dropping the step at shutdown is safe: see `cold_recompress.rs`.
                more = tokio::select! {
                    () = inner.cancel.cancelled() => break,
                    step = recompress::step(&inner) => match step {
                        Ok(more) => more,
                        Err(Error::ShuttingDown) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "recompressing a cold pack failed; will retry");
                            false
                        }
                    },
                };
            }
            Err(Error::ShuttingDown) => break,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cold upload failed; entries stay queued");
                tokio::select! {
                    () = inner.cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Uploads what is queued: full packs always, partial packs when `force` or when their oldest
/// entry has waited long enough.
pub(crate) async fn drain(inner: &Uploader, force: bool) -> Result<()> {
    let mut pending = inner.pending.lock().await;
    let mut after = 0u64;
    // Per tenant, the first queue sequence of a chunk left waiting for a fuller pack: that
    // tenant's later ref events wait too, so a ref reaches the cold tier after its chunks.
    let mut waiting: HashMap<TenantId, u64> = HashMap::new();
    loop {
        let (entries, queued) = read_round(inner, after).await?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        after = last.seq + 1;
        inner
            .last_busy_ms
            .store(inner.clock().now_ms(), std::sync::atomic::Ordering::Relaxed);
        let was_fast = inner.fast.load(std::sync::atomic::Ordering::Relaxed);
        let pace = Pace::for_backlog(queued, was_fast, inner.config.fast_above);
        if pace.fast != was_fast {
            tracing::info!(
                queued,
                fast = pace.fast,
                "the cold write-behind switches its encoding level"
            );
            inner
                .fast
                .store(pace.fast, std::sync::atomic::Ordering::Relaxed);
        }
        let full_round = entries.len() >= ROUND;
        let mut manifests = Vec::new();
        let mut ref_events = Vec::new();
        let mut chunks: BTreeMap<TenantId, Vec<Entry>> = BTreeMap::new();
        for e in entries {
            match e.item {
                QueueItem::Manifest(tenant, id) => manifests.push((e.seq, tenant, id)),
                QueueItem::Chunk(key) => chunks.entry(key.tenant()).or_default().push(e),
                QueueItem::Ref { tenant, object, .. } => ref_events.push((e.seq, tenant, object)),
            }
        }
        upload_manifests(inner, manifests).await?;
        let mut done_seqs = Vec::new();
        for (tenant, group) in chunks {
            let mut pack = PackBuilder::default();
            for slice in group.chunks(256) {
                // At shutdown, stop between slices: what is not uploaded stays queued.
                if inner.cancel.is_cancelled() && !force {
                    return Err(Error::ShuttingDown);
                }
                encode_slice(inner, &mut pending, slice, &mut done_seqs, pace).await?;
                for e in slice {
                    let Some(first) = pending.member_of.get(&e.seq).copied() else {
                        continue;
                    };
                    let Some(b) = pending.blocks.get(&first) else {
                        continue;
                    };
                    if !pack.add(e, first, b) {
                        continue;
                    }
                    if pack.bytes >= inner.config.pack_target {
                        upload(inner, tenant, &mut pending, pack.take()).await?;
                    }
                }
            }
            let wait_ms = u64::try_from(inner.config.flush_after.as_millis()).unwrap_or(u64::MAX);
            let due = force || inner.clock().now_ms().saturating_sub(pack.oldest) >= wait_ms;
            if !pack.blocks.is_empty() && due {
                upload(inner, tenant, &mut pending, pack.take()).await?;
            }
            if let Some(first) = pack.seqs.iter().min() {
                let w = waiting.entry(tenant).or_insert(*first);
                *w = (*w).min(*first);
            }
        }
        refs::upload_ref_events(inner, ref_events, &waiting, &mut done_seqs).await?;
        remove(inner, done_seqs).await?;
        if !full_round {
            return Ok(());
        }
    }
}

/// The next [`ROUND`] queue entries from sequence `after` on, and the queue's length.
async fn read_round(inner: &Uploader, after: u64) -> Result<(Vec<Entry>, u64)> {
    inner
        .meta
        .read(move |t, txn| {
            let queued = t.cold_queue.len(txn)?;
            let mut out = Vec::new();
            let from = after.to_be_bytes();
            let bounds = (
                std::ops::Bound::Included(&from[..]),
                std::ops::Bound::Unbounded,
            );
            for item in t.cold_queue.range(txn, &bounds)? {
                let (k, v) = item?;
                out.push(decode_entry(k, v)?);
                if out.len() >= ROUND {
                    break;
                }
            }
            Ok((out, queued))
        })
        .await
}

/// Writes queued manifests to the cold tier and drops their queue entries.
async fn upload_manifests(
    inner: &Uploader,
    manifests: Vec<(u64, TenantId, ManifestId)>,
) -> Result<()> {
    let mut done = Vec::with_capacity(manifests.len());
    for (seq, tenant, id) in manifests {
        let mkey = manifest_key(tenant, &id);
        let encoded = inner
            .meta
            .read(move |t, txn| {
                Ok(t.manifests
                    .get_unless_damaged(txn, &mkey)?
                    .map(<[u8]>::to_vec))
            })
            .await?;
        if let Some(encoded) = encoded {
            inner.cold.put_manifest(tenant, &id, &encoded).await?;
        }
        done.push(seq);
    }
    remove(inner, done).await
}

/// Encodes the chunks of `slice` not encoded in an earlier round; entries whose chunk needs
/// no upload (gone from hot and warm, or already cold) go to `done_seqs`.
async fn encode_slice(
    inner: &Uploader,
    pending: &mut Pending,
    slice: &[Entry],
    done_seqs: &mut Vec<u64>,
    pace: Pace,
) -> Result<()> {
    let keys: Vec<(u64, ChunkKey)> = slice
        .iter()
        .filter_map(|e| match e.item {
            QueueItem::Chunk(k) if !pending.member_of.contains_key(&e.seq) => Some((e.seq, k)),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let local = read_local(inner, keys.iter().map(|(_, k)| *k).collect()).await?;
    let mut to_encode = Vec::new();
    let mut seqs = Vec::new();
    for ((seq, key), found) in keys.into_iter().zip(local) {
        match found {
            Some(frame) => {
                to_encode.push((key, frame));
                seqs.push(seq);
            }
            None => done_seqs.push(seq),
        }
    }
    let compression = if pace.fast {
        inner.config.fast_compression
    } else {
        inner.config.compression
    };
    inner.encoder.set_urgent(pace.urgent);
    let how = Encoding {
        compression,
        fresh: false,
        target: inner.config.block_target,
    };
    // One job per encoder thread, so every thread works on the slice; each job groups its
    // consecutive chunks into blocks.
    let per_thread = to_encode
        .len()
        .div_ceil(inner.encoder.threads().max(1))
        .max(1);
    let mut jobs = Vec::new();
    let mut rest = to_encode;
    while !rest.is_empty() {
        let tail = rest.split_off(per_thread.min(rest.len()));
        jobs.push(inner.encoder.encode(rest, how));
        rest = tail;
    }
    let blocks: Vec<Block> = futures::future::try_join_all(jobs)
        .await?
        .into_iter()
        .flatten()
        .collect();
    // Blocks hold the chunks in the order they were handed in.
    let mut seqs = seqs.into_iter();
    for block in blocks {
        let members: Vec<u64> = seqs.by_ref().take(block.members.len()).collect();
        pending.insert(block, members, pace.fast);
    }
    Ok(())
}

/// The pack being filled for one tenant.
struct PackBuilder {
    /// Some block was encoded at the fast level: the pack is marked for recompression.
    fast: bool,
    blocks: Vec<Block>,
    /// The first queue entry of each block.
    firsts: std::collections::HashSet<u64>,
    /// The queue entries of every chunk in it.
    seqs: Vec<u64>,
    bytes: usize,
    /// When its oldest entry was queued, Unix ms.
    oldest: u64,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self {
            fast: false,
            blocks: Vec::new(),
            firsts: Default::default(),
            seqs: Vec::new(),
            bytes: 0,
            oldest: u64::MAX,
        }
    }
}

/// A pack ready for upload: its blocks, the first queue entry of each, every chunk's queue
/// entry, and whether it is marked for recompression.
type FilledPack = (Vec<Block>, Vec<u64>, Vec<u64>, bool);

impl PackBuilder {
    /// Adds the block whose first queue entry is `first`, as `e` (one of its entries) is met;
    /// whether it was not in the pack yet.
    fn add(&mut self, e: &Entry, first: u64, b: &PendingBlock) -> bool {
        self.oldest = self.oldest.min(e.enqueued_ms);
        if !self.firsts.insert(first) {
            return false;
        }
        self.bytes += b.block.frame.stored_len();
        self.fast |= b.fast;
        self.blocks.push(b.block.clone());
        self.seqs.extend_from_slice(&b.seqs);
        true
    }

    /// The filled pack; the builder starts over.
    fn take(&mut self) -> FilledPack {
        let taken = std::mem::take(self);
        (
            taken.blocks,
            taken.firsts.into_iter().collect(),
            taken.seqs,
            taken.fast,
        )
    }
}

async fn upload(
    store: &Uploader,
    tenant: TenantId,
    pending: &mut Pending,
    (blocks, firsts, seqs, fast): FilledPack,
) -> Result<()> {
    let n = seqs.len();
    store.cold.put_pack(tenant, blocks, fast, true).await?;
    for first in firsts {
        pending.remove(first);
    }
    remove(store, seqs).await?;
    tracing::debug!(chunks = n, "cold pack written");
    Ok(())
}

async fn remove(store: &Uploader, seqs: Vec<u64>) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    store
        .meta
        .write(move |t, txn| {
            for s in seqs {
                t.cold_queue.delete(txn, &s.to_be_bytes())?;
            }
            Ok(())
        })
        .await
}

/// Frames of chunks that still need a cold copy, read from hot or warm.
async fn read_local(inner: &Uploader, keys: Vec<ChunkKey>) -> Result<Vec<Option<Frame>>> {
    let meta = inner.meta.clone();
    let lookup = keys.clone();
    let infos: Vec<Option<ChunkInfo>> = meta
        .read(move |t, txn| {
            lookup
                .iter()
                .map(|k| match chunk_info(t, txn, k)? {
                    Some(info) => Ok(Some(info)),
                    // A damaged entry: what matters here is whether a cold copy exists.
                    None if t.chunks.contains(txn, k.as_bytes())? => Ok(Some(ChunkInfo {
                        raw_len: 0,
                        tiers: if t.cold.contains(txn, k.as_bytes())? {
                            tier_bits::COLD
                        } else {
                            0
                        },
                        last_access_s: 0,
                    })),
                    None => Ok(None),
                })
                .collect()
        })
        .await?;
    // One blocking job for the slice: hot frames in one read transaction, warm for the rest.
    let (hot, warm) = (inner.hot.clone(), inner.warm.clone());
    crate::blocking::run(move || {
        let wanted: Vec<ChunkKey> = keys
            .iter()
            .zip(&infos)
            .filter(|(_, info)| info.is_some_and(|i| i.tiers & tier_bits::COLD == 0))
            .map(|(k, _)| *k)
            .collect();
        let mut from_hot = wanted.iter().copied().zip(hot.get_many_now(&wanted)?);
        let mut out = Vec::with_capacity(keys.len());
        for (key, info) in keys.into_iter().zip(infos) {
            if info.is_none_or(|i| i.tiers & tier_bits::COLD != 0) {
                out.push(None);
                continue;
            }
            let frame = match from_hot.next() {
                Some((k, Some(f))) if k == key => Some(f),
                _ => warm.get_now(key)?,
            };
            out.push(frame);
        }
        Ok(out)
    })
    .await
}

#[path = "writeback_recompress.rs"]
mod recompress;
#[path = "writeback_refs.rs"]
mod refs;
pub(crate) use refs::{REF_VERSION_KEY, enqueue_ref_in_txn, next_ref_version};

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of this process's threads whose name starts with `prefix`
    /// (field 41 of `/proc/self/task/TID/stat`).
    fn policies(prefix: &str) -> Vec<i32> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").expect("reading /proc/self/task") {
            let dir = task.expect("a task entry").path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).expect("reading a task's stat");
            let after_name = &stat[stat.rfind(')').expect("a stat line names its task") + 1..];
            let policy = after_name
                .split_whitespace()
                .nth(38)
                .expect("a policy field");
            out.push(policy.parse().expect("a numeric policy"));
        }
        out
    }

    #[test]
    fn the_write_behind_goes_fast_above_its_backlog_mark_and_back_under_an_eighth_of_it() {
        let calm = Pace::for_backlog(100, false, FAST_ABOVE);
        assert!(!calm.fast && !calm.urgent);
        let behind = Pace::for_backlog(FAST_ABOVE, false, FAST_ABOVE);
        assert!(behind.fast && !behind.urgent);
        // Draining: still fast until under an eighth of the mark.
        assert!(Pace::for_backlog(FAST_ABOVE / 2, true, FAST_ABOVE).fast);
        assert!(!Pace::for_backlog(FAST_ABOVE / 8, true, FAST_ABOVE).fast);
        assert!(Pace::for_backlog(URGENT_ABOVE, true, FAST_ABOVE).urgent);
    }

    const IDLE: Encoding = Encoding {
        compression: Compression::Zstd(9),
        fresh: false,
        target: 0,
    };

    #[tokio::test]
    async fn cold_encoder_threads_run_at_sched_idle_and_still_encode() {
        // Named apart from the encoders of stores other tests open meanwhile.
        let encoder = Encoder::start_named("sctest-enc", 2).expect("starting the encoder");
        let (a, b) = tokio::join!(
            encoder.encode(Vec::new(), IDLE),
            encoder.encode(Vec::new(), IDLE),
        );
        assert!(a.expect("first job").is_empty() && b.expect("second job").is_empty());
        // One thread may take both jobs before the other has started: wait until both have
        // registered (each sets its policy as it registers).
        for _ in 0..500 {
            if lock(&encoder.tids).len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(lock(&encoder.tids).len(), 2, "both encoder threads started");
        let found = policies("sctest-enc");
        assert!(!found.is_empty(), "no encoder thread found");
        assert!(found.iter().all(|p| *p == libc::SCHED_IDLE), "{found:?}");
        // A backlog beyond URGENT_ABOVE: every thread leaves SCHED_IDLE at once, and back.
        encoder.set_urgent(true);
        let found = policies("sctest-enc");
        assert!(found.iter().all(|p| *p == libc::SCHED_OTHER), "{found:?}");
        encoder.set_urgent(false);
        let found = policies("sctest-enc");
        assert!(found.iter().all(|p| *p == libc::SCHED_IDLE), "{found:?}");
        encoder.close();
        assert!(policies("sctest-enc").is_empty());
    }
}
