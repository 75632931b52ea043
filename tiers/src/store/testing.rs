//! Entry points for tests and benchmarks only (feature `testing`): they take shortcuts the
//! daemon never takes (ingest from a reader on the server side, explicit demotion and
//! eviction), so they are not part of the public API the daemon uses.

use bytes::Bytes;
use futures::StreamExt;

use super::admission::Admit;
use super::ingest::{put_prepared, set_ref};
use super::read::read_chunks;
use super::types::{BlobPart, ReadForm};
use super::verify::Need;
use super::{Engine, Store};
use crate::chunking::ChunkReader;
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId};
use crate::manifest::{Manifest, ManifestEntry};
use crate::meta::ChunkKey;
use crate::names::{Namespace, RefKey, Tenant};
use crate::refs::{RefOptions, RefRecord};
use crate::tier::ChunkTier;
use std::sync::Arc;

/// Batches of an ingest being committed at once.
const INGEST_COMMITS_IN_FLIGHT: usize = 4;
/// Bytes of chunks hashed and compressed per blocking job.
const INGEST_BATCH: usize = 4 << 20;

/// Hashing and compressing one batch of an ingest.
type Job = crate::blocking::Job<Vec<(ChunkKey, Frame)>>;

/// Waits for a batch's encoding and stores it; its manifest entries.
async fn store_batch(engine: Arc<Engine>, tenant: Tenant, job: Job) -> Result<Vec<ManifestEntry>> {
    let prepared = job.await?;
    let entries = prepared
        .iter()
        .map(|(k, f)| ManifestEntry {
            id: k.id(),
            len: f.raw_len() as u32,
        })
        .collect();
    put_prepared(&engine, &tenant, prepared).await?;
    Ok(entries)
}

impl Store {
    /// Ingests a whole blob from a reader (chunk, hash, compress, store, commit) in the
    /// server process, with bounded memory: what benchmarks and tests use instead of a client.
    pub async fn write_blob(
        &self,
        ns: &Namespace,
        key: &RefKey,
        reader: impl tokio::io::AsyncRead + Unpin + Send,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        let e = self.engine()?;
        opts.validate()?;
        let spec = e.config.chunker;
        let mut chunks = ChunkReader::new(reader, spec.splitter()?);
        let mut blob = blake3::Hasher::new();
        let tid = ns.tenant().id();
        let compression = e.config.hot_compression;
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(4);
        let engine = e.clone();
        let tenant = ns.tenant().clone();
        // Batches are stored with a few commits in flight, so the group committer merges them
        // and ingest does not wait for one fsync per batch.
        let writer = tokio::spawn(async move {
            let stored = tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(move |job: Job| store_batch(engine.clone(), tenant.clone(), job))
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
            if (done && !batch.is_empty()) || batch_bytes >= INGEST_BATCH {
                let work = std::mem::take(&mut batch);
                batch_bytes = 0;
                let job: Job = crate::blocking::spawn(move || {
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
        set_ref(&e, ns, key, std::sync::Arc::new(manifest), opts, false).await
    }

    /// Copies chunks to the warm tier (what demotion under a hot budget will do) and, with
    /// `drop_hot`, removes their hot copies.
    pub async fn demote(&self, tenant: &Tenant, ids: Vec<ChunkId>, drop_hot: bool) -> Result<u64> {
        let e = self.engine()?;
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<ChunkKey> = ids
            .iter()
            .map(|id| ChunkKey::new(tenant.id(), id))
            .filter(|k| seen.insert(*k))
            .collect();
        let wanted = keys.iter().map(|k| (*k, Need::Frame)).collect();
        let copies = read_chunks(&e, wanted, Admit::Always).await?;
        let batch = keys
            .iter()
            .copied()
            .zip(copies.into_iter().map(|c| c.frame))
            .collect();
        let moved = e.warm.put(batch).await?;
        if drop_hot {
            e.hot.delete(keys).await?;
        }
        Ok(moved)
    }

    /// Drops the hot and warm copies of chunks that have a cold copy.
    pub async fn evict_to_cold(&self, tenant: &Tenant, ids: Vec<ChunkId>) -> Result<u64> {
        let e = self.engine()?;
        let keys: Vec<ChunkKey> = ids
            .iter()
            .map(|id| ChunkKey::new(tenant.id(), id))
            .collect();
        for key in &keys {
            if !e.cold.contains(*key).await? {
                return Err(Error::Unavailable(format!(
                    "chunk {} has no cold copy yet; flush the cold queue first",
                    key.id()
                )));
            }
        }
        let n = keys.len() as u64;
        e.hot.delete(keys.clone()).await?;
        e.warm.delete(keys).await?;
        Ok(n)
    }

    /// Waits until the promotions and repairs that follow earlier reads are done.
    pub async fn settle_reads(&self) -> Result<()> {
        super::repair::settle(&*self.engine()?).await;
        Ok(())
    }

    /// Copies a whole blob to a writer, verifying every chunk; returns the bytes written.
    pub async fn read_blob_to(
        &self,
        tenant: &Tenant,
        manifest: std::sync::Arc<Manifest>,
        mut writer: impl tokio::io::AsyncWrite + Unpin + Send,
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let mut parts = self.read_blob(tenant, manifest, 0, None, ReadForm::Raw);
        let mut n = 0;
        while let Some(part) = parts.next().await {
            let bytes = match part? {
                BlobPart::Data(d) => d,
                BlobPart::Frame(id, f) | BlobPart::Normalized(id, f) => {
                    return Err(Error::Format(format!(
                        "a raw read sent chunk {id} as a frame of {} bytes",
                        f.raw_len()
                    )));
                }
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
}
