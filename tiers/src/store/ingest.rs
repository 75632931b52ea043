//! The write path: which chunks a client must send (`find_missing`), storing them
//! (`put_chunks`), and setting a ref to a blob made of them (`commit`).
//!
//! A commit checks, in order: that the manifest's chunks are all present with the declared
//! lengths (cheap, before reading anything); that the chunks make the declared blob (read
//! through the pipeline, decode spread over cores, hashed as a stream); and then, in the same
//! LMDB write transaction that stores the manifest and sets the ref, presence and lengths once
//! more, so a chunk that went away meanwhile fails the commit with
//! [`Error::MissingChunks`] and stores nothing.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use heed::{RoTxn, WithoutTls};

use super::read::scan_blob;
use super::types::{BlobPart, Durability, PutSummary};
use super::verify::VERIFY_PART;
use super::{Engine, Store};
use crate::codec::Frame;
use crate::cold::refs::RefChange;
use crate::error::MAX_LISTED_MISSING;
use crate::error::{Error, Result};
use crate::hot;
use crate::ids::{BlobId, ChunkId, ManifestId};
use crate::manifest::{MAX_CHUNKS_PER_BLOB, Manifest, ManifestEntry};
use crate::meta::{ChunkKey, Tables, chunk_info, manifest_key};
use crate::names::{Namespace, RefKey, Tenant, TenantId};
use crate::refs::{RefOptions, RefRecord};
use crate::writeback::{QueueItem, enqueue_in_txn, enqueue_ref_in_txn};

/// Bytes of a blob hashed per blocking job while a commit verifies it.
const HASH_STEP: usize = 4 << 20;

impl Store {
    /// Which of `ids` the tenant lacks, in the order given (duplicates collapsed).
    pub async fn find_missing(&self, tenant: &Tenant, ids: Vec<ChunkId>) -> Result<Vec<ChunkId>> {
        let e = self.engine()?;
        let tid = tenant.id();
        let mut seen = HashSet::with_capacity(ids.len());
        let mut surely_missing = Vec::new();
        let mut maybe = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if !seen.insert(*id) {
                continue;
            }
            let key = ChunkKey::new(tid, id);
            if e.may_hold(&key) {
                maybe.push((i, key));
            } else {
                surely_missing.push(i);
            }
        }
        let confirmed: Vec<usize> = if maybe.is_empty() {
            Vec::new()
        } else {
            e.meta
                .read(move |t, txn| {
                    let mut out = Vec::new();
                    for (i, key) in maybe {
                        if chunk_info(t, txn, &key)?.is_none() {
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

    /// Verifies (decode + BLAKE3, spread over cores) and stores frames for the tenant; returns
    /// once they are durable. A frame whose bytes do not match its id fails the whole call with
    /// [`Error::Corrupt`] and stores nothing of it.
    pub async fn put_chunks(
        &self,
        tenant: &Tenant,
        chunks: Vec<(ChunkId, Frame)>,
    ) -> Result<PutSummary> {
        let e = self.engine()?;
        let tid = tenant.id();
        let hot = e.hot.clone();
        let limit = e.config.chunker.max as usize;
        let prepared = crate::blocking::map_parts(chunks, VERIFY_PART, move |part| {
            // One decode buffer per part: no allocation and zeroing per chunk.
            let mut scratch = Vec::new();
            part.into_iter()
                .map(|(id, frame)| {
                    verify_frame(&id, &frame, limit, &mut scratch)?;
                    Ok((ChunkKey::new(tid, &id), hot.prepare(&frame)?))
                })
                .collect()
        })
        .await?;
        put_prepared(&e, tenant, prepared).await
    }

    /// Stores `manifest` and sets `ns/key` to it, after checking that the tenant holds every
    /// chunk with its declared length and that the chunks hash to the declared blob id. Fails
    /// with [`Error::MissingChunks`] when chunks are absent, also when one goes away while the
    /// blob is verified.
    pub async fn commit(
        &self,
        ns: &Namespace,
        key: &RefKey,
        manifest: Manifest,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        let e = self.engine()?;
        opts.validate()?;
        if manifest.entries().len() > MAX_CHUNKS_PER_BLOB {
            return Err(Error::InvalidArgument(format!(
                "blob has {} chunks, more than the {MAX_CHUNKS_PER_BLOB} allowed",
                manifest.entries().len()
            )));
        }
        let tid = ns.tenant().id();
        // One copy of the entries, shared by the checks: a manifest of millions of chunks
        // costs its own size once, plus four bytes per absent chunk.
        let manifest = Arc::new(manifest);
        let check = manifest.clone();
        e.meta
            .read(move |t, txn| check_entries(t, txn, tid, check.entries()))
            .await?;
        let mut attempts = 0;
        while let Err(err) = verify_blob(&e, ns.tenant(), manifest.clone()).await {
            // A chunk that went away while the blob was read (swept by a GC): the commit
            // fails listing what is missing now, so the client uploads it and retries; if
            // another push stored it again meanwhile, the blob is read once more.
            attempts += 1;
            if !matches!(err, Error::NotFound(_)) || attempts == 3 {
                return Err(err);
            }
            let check = manifest.clone();
            e.meta
                .read(move |t, txn| check_entries(t, txn, tid, check.entries()))
                .await?;
        }
        #[cfg(test)]
        {
            let hook = super::background::lock(&e.commit_hook).take();
            if let Some(hook) = hook {
                hook().await;
            }
        }
        set_ref(&e, ns, key, manifest, opts, true).await
    }
}

/// Checks that `frame` decodes (to at most `limit` bytes) to the chunk `id` names, decoding
/// into `scratch`, which keeps its capacity for the next frame.
fn verify_frame(id: &ChunkId, frame: &Frame, limit: usize, scratch: &mut Vec<u8>) -> Result<()> {
    let len = frame.raw_len();
    if len > limit.min(crate::codec::MAX_CHUNK_LEN) {
        // Refused with the codec's own message about the length.
        return frame.decode_verified(id, limit).map(drop);
    }
    scratch.resize(len, 0);
    frame.decode_verified_into(id, &mut scratch[..len])
}

/// Fails with [`Error::MissingChunks`] when the tenant lacks chunks of `entries`, or with
/// [`Error::InvalidArgument`] when a stored chunk's length differs from its entry's.
fn check_entries(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    tid: TenantId,
    entries: &[ManifestEntry],
) -> Result<()> {
    // Indices of the absent entries, four bytes each (not ids, not a set of them).
    let mut missing: Vec<u32> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let key = ChunkKey::new(tid, &entry.id);
        match chunk_info(t, txn, &key)? {
            Some(info) => {
                if info.raw_len != entry.len {
                    return Err(Error::InvalidArgument(format!(
                        "the manifest gives chunk {} a length of {} bytes, but it has {}",
                        entry.id, entry.len, info.raw_len
                    )));
                }
            }
            None => missing.push(u32::try_from(index).map_err(|_| {
                Error::InvalidArgument(format!(
                    "blob has more than {MAX_CHUNKS_PER_BLOB} chunks, the most allowed"
                ))
            })?),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing_chunks(entries, missing))
    }
}

/// [`Error::MissingChunks`] for the entries at `missing` (ascending indices): the first
/// [`MAX_LISTED_MISSING`] distinct ids in manifest order, and the count of distinct ones.
fn missing_chunks(entries: &[ManifestEntry], mut missing: Vec<u32>) -> Error {
    // The indices come from enumerating `entries`.
    let id = |index: &u32| entries[*index as usize].id;
    let mut listed: Vec<ChunkId> = Vec::with_capacity(MAX_LISTED_MISSING);
    for index in &missing {
        if listed.len() == MAX_LISTED_MISSING {
            break;
        }
        let chunk = id(index);
        if !listed.contains(&chunk) {
            listed.push(chunk);
        }
    }
    // Counting distinct ids by sorting the indices in place costs no memory of its own.
    missing.sort_unstable_by_key(id);
    missing.dedup_by_key(|index| id(&*index));
    Error::MissingChunks {
        listed,
        total: missing.len() as u64,
    }
}

/// Reads the blob back through the pipeline and checks its length and BLAKE3 id; hashing runs
/// on the blocking pool, one step behind the reads.
async fn verify_blob(e: &Arc<Engine>, tenant: &Tenant, manifest: Arc<Manifest>) -> Result<()> {
    type Hashing = crate::blocking::Job<blake3::Hasher>;
    let mut parts = scan_blob(e.clone(), tenant.id(), manifest.clone());
    let mut idle = Some(blake3::Hasher::new());
    let mut hashing: Option<Hashing> = None;
    let (mut step, mut step_len, mut total) = (Vec::new(), 0usize, 0u64);
    loop {
        let next = parts.next().await.transpose()?;
        let done = next.is_none();
        if let Some(BlobPart::Data(d)) = next {
            total += d.len() as u64;
            step_len += d.len();
            step.push(d);
        }
        if step_len >= HASH_STEP || (done && !step.is_empty()) {
            let mut hasher = match hashing.take() {
                Some(job) => job.await?,
                None => idle.take().unwrap_or_default(),
            };
            let work = std::mem::take(&mut step);
            step_len = 0;
            hashing = Some(crate::blocking::spawn(move || {
                for d in &work {
                    hasher.update(d);
                }
                Ok(hasher)
            }));
        }
        if done {
            break;
        }
    }
    let hasher = match hashing {
        Some(job) => job.await?,
        None => idle.unwrap_or_default(),
    };
    let actual = BlobId::from(hasher.finalize());
    if actual != manifest.blob() || total != manifest.total_len() {
        return Err(Error::InvalidArgument(format!(
            "the manifest's chunks make a blob of {total} bytes with id {actual}, but it declares {} bytes with id {}",
            manifest.total_len(),
            manifest.blob()
        )));
    }
    Ok(())
}

/// How long a put waits at most for the write-behind before it stores anyway.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Backpressure, the last resort of a write-behind that cannot keep up: while more than
/// `cold_backlog_limit` entries are queued, a put waits (polling every 50 ms, at most
/// [`BACKLOG_WAIT`]) until the queue is back under seven eighths of it. The encoders run at
/// normal priority by then, so the pushes' CPU goes to the backlog. After the wait the put is
/// stored anyway: an object store that is down slows pushes, it does not refuse them.
async fn wait_for_write_behind(e: &Engine) -> Result<()> {
    let limit = e.config.cold_backlog_limit;
    let queued = || e.meta.read(|t, txn| Ok(t.cold_queue.len(txn)?));
    if limit == 0 || queued().await? <= limit {
        return Ok(());
    }
    let started = std::time::Instant::now();
    while started.elapsed() < BACKLOG_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        e.check_open()?;
        if queued().await? <= limit / 8 * 7 {
            return Ok(());
        }
    }
    tracing::warn!(
        limit,
        waited_s = BACKLOG_WAIT.as_secs(),
        "the cold write-behind is over its backlog limit; this put waited and is stored \
         anyway (check that the object store is reachable and fast enough)"
    );
    Ok(())
}

/// Stores frames already verified and in the hot codec.
pub(super) async fn put_prepared(
    e: &Engine,
    tenant: &Tenant,
    prepared: Vec<(ChunkKey, Frame)>,
) -> Result<PutSummary> {
    wait_for_write_behind(e).await?;
    let keys: Vec<ChunkKey> = prepared.iter().map(|(k, _)| *k).collect();
    let name = tenant.as_str().to_owned();
    let quota = e.config.quotas.get(tenant.as_str()).copied();
    let (usage, tenant) = (e.usage.clone(), tenant.clone());
    let summary = e
        .meta
        .write(move |t, txn| {
            let tid = prepared.first().map(|(k, _)| k.tenant());
            if let Some(tid) = tid
                && t.tenants.get(txn, &tid.0)?.is_none()
            {
                t.tenants.put(txn, &tid.0, name.as_bytes())?;
            }
            let mut summary = PutSummary::default();
            let mut fresh = Vec::with_capacity(prepared.len());
            let mut seen = HashSet::with_capacity(prepared.len());
            for (key, frame) in &prepared {
                if !seen.insert(*key) || chunk_info(t, txn, key)?.is_some() {
                    summary.already_present += 1;
                } else {
                    fresh.push((key, frame));
                }
            }
            if let Some(quota) = quota {
                let adding = fresh.iter().map(|(_, f)| f.stored_len() as u64).sum();
                super::quota::charge(&usage, t, txn, &tenant, quota, adding)?;
            }
            for (key, frame) in fresh {
                hot::put_in_txn(t, txn, *key, frame)?;
                enqueue_in_txn(t, txn, QueueItem::Chunk(*key))?;
                summary.stored += 1;
            }
            Ok(summary)
        })
        .await?;
    e.remember(&keys);
    if summary.stored > 0 {
        e.uploader.notify.notify_one();
        e.evict_wake.notify_one();
    }
    Ok(summary)
}

/// Stores the manifest (queued for its cold copy) and sets the ref in one transaction; with
/// `check`, first re-checks in that transaction that every chunk is present.
pub(super) async fn set_ref(
    e: &Arc<Engine>,
    ns: &Namespace,
    key: &RefKey,
    manifest: Arc<Manifest>,
    opts: RefOptions,
    check: bool,
) -> Result<RefRecord> {
    // Encoded once: the id is the hash of these bytes.
    let encoded = manifest.encode();
    let now = e.meta.clock().now_ms();
    let record = RefRecord {
        blob: manifest.blob(),
        manifest: ManifestId::of(&encoded),
        size: manifest.total_len(),
        chunks: manifest.entries().len() as u64,
        created_at_ms: now,
        expires_at_ms: opts
            .ttl
            .or_else(|| super::retention::default_ttl(&e.config.retention, key.as_str()))
            .map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        labels: opts.labels,
    };
    if e.config.durability == Durability::Cold {
        super::cold_commit::write_through(e, ns, key, &manifest, &encoded, &record).await?;
    }
    let tid = ns.tenant().id();
    let mkey = manifest_key(tid, &record.manifest);
    let rkey = crate::refs::ref_table_key(ns, key);
    let value = record.encode();
    let name = ns.tenant().as_str().to_owned();
    let manifest_id = record.manifest;
    let (ns, key, set) = (ns.clone(), key.clone(), RefChange::Set(record.clone()));
    let landed = e.gc.landed();
    let queued = e
        .meta
        .write(move |t, txn| {
            if check {
                check_entries(t, txn, tid, manifest.entries())?;
            }
            // A GC running now keeps these chunks (`gc.rs`, rule two).
            super::gc::note_commit(&landed, tid, &manifest, mkey);
            if t.tenants.get(txn, &tid.0)?.is_none() {
                t.tenants.put(txn, &tid.0, name.as_bytes())?;
            }
            // A damaged manifest is written again.
            if t.manifests.get_unless_damaged(txn, &mkey)?.is_none() {
                t.manifests.put(txn, &mkey, &encoded)?;
                enqueue_in_txn(t, txn, QueueItem::Manifest(tid, manifest_id))?;
            }
            let queued = super::lookups::queue_in_txn(t, txn, &mkey)?;
            t.refs.put(txn, &rkey, &value)?;
            enqueue_ref_in_txn(t, txn, &ns, &key, set)?;
            Ok(queued)
        })
        .await?;
    e.uploader.notify.notify_one();
    if queued {
        e.indexer.wake.notify_one();
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, data, key, ns, tmp};
    use crate::codec::{Compression, Frame};
    use crate::error::{Error, MAX_LISTED_MISSING, Result};
    use crate::ids::{BlobId, ChunkId};
    use crate::manifest::{Manifest, ManifestEntry};
    use crate::names::Tenant;
    use crate::refs::RefOptions;
    use crate::store::Store;

    #[tokio::test]
    async fn a_commit_lacking_many_chunks_lists_the_first_ones_and_counts_each_once() -> Result<()>
    {
        let dir = tmp()?;
        let store = Store::open(config(dir.path())).await?;
        let n = ns("acme/web/app");
        let present = data(1000, 1, false);
        let present_id = ChunkId::of(&present);
        store
            .put_chunks(
                n.tenant(),
                vec![(present_id, Frame::encode(&present, Compression::Lz4)?)],
            )
            .await?;
        // 200 absent chunks, each named twice (the second time in reverse order), after a
        // present one.
        let absent: Vec<ChunkId> = (0..200u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        let entry = |id: ChunkId, len: usize| ManifestEntry {
            id,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        };
        let mut entries = vec![entry(present_id, present.len())];
        entries.extend(absent.iter().map(|id| entry(*id, 10)));
        entries.extend(absent.iter().rev().map(|id| entry(*id, 10)));
        let total = 1000 + 2 * 200 * 10;
        let manifest = Manifest::new(store.chunker(), BlobId::of(b"b"), total, entries)?;
        match store
            .commit(&n, &key("many"), manifest, RefOptions::default())
            .await
        {
            Err(Error::MissingChunks { listed, total }) => {
                assert_eq!(listed, absent[..MAX_LISTED_MISSING]);
                assert_eq!(total, 200);
            }
            other => panic!("expected MissingChunks, got {other:?}"),
        }
        store.shutdown().await
    }

    #[tokio::test]
    async fn put_chunks_verifies_frames_of_any_length_in_one_batch_and_refuses_oversized_ones()
    -> Result<()> {
        let dir = tmp()?;
        let store = Store::open(config(dir.path())).await?;
        let tenant: Tenant = "acme".parse()?;
        // Long, short, empty and long again: the reused decode buffer shrinks and grows.
        let raws: Vec<Vec<u8>> = [60_000, 700, 0, 90_000]
            .iter()
            .zip(1u64..)
            .map(|(len, seed)| data(*len, seed, seed % 2 == 0))
            .collect();
        let chunks = raws
            .iter()
            .map(|r| Ok((ChunkId::of(r), Frame::encode(r, Compression::Lz4)?)))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        assert_eq!(store.put_chunks(&tenant, chunks).await?.stored, 4);
        assert!(store.find_missing(&tenant, ids).await?.is_empty());
        let max = store.chunker().max as usize;
        let big = data(max + 1, 9, true);
        let frame = Frame::encode(&big, Compression::Lz4)?;
        let refused = store
            .put_chunks(&tenant, vec![(ChunkId::of(&big), frame)])
            .await;
        assert!(matches!(refused, Err(Error::Corrupt { .. })), "{refused:?}");
        store.shutdown().await
    }
}
