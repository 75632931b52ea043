//! The public facade of the engine.
//!
//! (Skeleton: the bodies are being written; the signatures are the API the daemon codes against.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::chunking::ChunkerSpec;
use crate::codec::{Compression, Frame};
use crate::error::{Error, Result};
use crate::ids::{ChunkId, ManifestId};
use crate::manifest::Manifest;
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant};
use crate::refs::{RefOptions, RefRecord};

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
            cold_compression: Compression::Zstd(12),
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
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<()>,
}

impl Store {
    /// Opens (creating if needed) the store, locks its data dir, recovers warm packs,
    /// rebuilds the existence filter, and starts the cold uploader.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        let _ = config;
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// The chunker clients must use.
    pub fn chunker(&self) -> ChunkerSpec {
        ChunkerSpec::default()
    }

    /// Which of `ids` the tenant lacks, in the order given.
    pub async fn find_missing(&self, tenant: &Tenant, ids: Vec<ChunkId>) -> Result<Vec<ChunkId>> {
        let _ = (tenant, ids, &self.inner);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Verifies (decode + BLAKE3) and stores frames for the tenant; returns once they are
    /// durable. A frame whose bytes do not match its id fails the whole call with
    /// [`Error::Corrupt`] and stores nothing of it.
    pub async fn put_chunks(
        &self,
        tenant: &Tenant,
        chunks: Vec<(ChunkId, Frame)>,
    ) -> Result<PutSummary> {
        let _ = (tenant, chunks);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Reads one chunk through the tiers (hot, warm, cold), promoting and verifying.
    pub async fn get_chunk(&self, tenant: &Tenant, id: ChunkId) -> Result<Frame> {
        let _ = (tenant, id);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Stores `manifest` and sets `ns/key` to it. Fails with [`Error::MissingChunks`] when the
    /// tenant lacks any of its chunks.
    pub async fn commit(
        &self,
        ns: &Namespace,
        key: &RefKey,
        manifest: Manifest,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        let _ = (ns, key, manifest, opts);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Ingests a whole blob from a reader (chunk, hash, store, commit): the engine-side path
    /// used by benchmarks and tests.
    pub async fn write_blob(
        &self,
        ns: &Namespace,
        key: &RefKey,
        reader: impl tokio::io::AsyncRead + Unpin + Send,
        opts: RefOptions,
    ) -> Result<RefRecord> {
        let _ = (ns, key, reader, opts);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// A manifest of the tenant.
    pub async fn manifest(&self, tenant: &Tenant, id: ManifestId) -> Result<Arc<Manifest>> {
        let _ = (tenant, id);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Streams `length` bytes (`None` = to the end) of a blob from `offset`, in order, with a
    /// bounded read-ahead. Whole chunks come as frames when `frames` is set.
    pub fn read_blob(
        &self,
        tenant: &Tenant,
        manifest: Arc<Manifest>,
        offset: u64,
        length: Option<u64>,
        frames: bool,
    ) -> BoxStream<'static, Result<BlobPart>> {
        let _ = (tenant, manifest, offset, length, frames);
        Box::pin(futures::stream::once(async {
            Err(Error::Unavailable("engine under construction".into()))
        }))
    }

    /// Copies a whole blob to a writer, verifying every chunk.
    pub async fn read_blob_to(
        &self,
        tenant: &Tenant,
        manifest: Arc<Manifest>,
        writer: impl tokio::io::AsyncWrite + Unpin + Send,
    ) -> Result<u64> {
        let _ = (tenant, manifest, writer);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// A live (unexpired) ref.
    pub async fn get_ref(&self, ns: &Namespace, key: &RefKey) -> Result<Option<RefRecord>> {
        let _ = (ns, key);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// `key` if live, else the newest live ref under the first of `fallbacks` that has one.
    pub async fn resolve(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
    ) -> Result<Option<(RefKey, RefRecord)>> {
        let _ = (ns, key, fallbacks);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Live refs of `ns` under `prefix`, newest first, at most `limit`; and whether more matched.
    pub async fn list_refs(
        &self,
        ns: &Namespace,
        prefix: &KeyPrefix,
        limit: usize,
    ) -> Result<(Vec<(RefKey, RefRecord)>, bool)> {
        let _ = (ns, prefix, limit);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Deletes a ref; whether it existed (and was live).
    pub async fn delete_ref(&self, ns: &Namespace, key: &RefKey) -> Result<bool> {
        let _ = (ns, key);
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Figures for one tenant, or all.
    pub async fn stats(&self, tenant: Option<&Tenant>) -> Result<Stats> {
        let _ = tenant;
        Err(Error::Unavailable("engine under construction".into()))
    }

    /// Flushes access times and hit counts, stops background work (the cold queue stays in
    /// LMDB and resumes at the next open), and syncs. Further calls fail with ShuttingDown.
    pub async fn shutdown(&self) -> Result<()> {
        Err(Error::Unavailable("engine under construction".into()))
    }
}
