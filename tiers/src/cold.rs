//! Cold tier: pack objects in an object store (zstd at a high level by default).
//!
//! # Object layout
//!
//! Under the URL's prefix:
//! - `packs/<tenant id hex>/<pack id hex>.pack`: chunk frames back to back, then a footer;
//!   the pack id is the BLAKE3 hash of the whole object, so packs are written with
//!   `PutMode::Create` and "already exists" means "already stored".
//! - `manifests/<tenant id hex>/<manifest id hex>`: a manifest's encoding (`manifest.rs`),
//!   zstd-compressed.
//! - `refs/<tenant id hex>/<ref hash hex>/<version>`: one object per set or deletion of a
//!   ref, the newest version wins (`cold_refs.rs` specifies names, format and ordering).
//!
//! With these three, the bucket alone can restore the local index (`store/rebuild.rs`, read
//! through `cold_scan.rs`).
//!
//! # Pack object, format 2
//!
//! Block frames (`codec.rs`, `cold_block.rs`) back to back from byte 0, then a footer
//! (little-endian), so the bucket alone can rebuild the index:
//!
//! | size | field |
//! | --- | --- |
//! | 56 × n | per chunk: chunk id (32), block offset `u64`, block length `u32`, offset in the decoded block `u32`, raw length `u32`, share of the block's stored bytes `u32` |
//! | 8 | tenant id |
//! | 4 | n, `u32` |
//! | 3 | magic `SCP` |
//! | 1 | pack format, `2` |
//!
//! A chunk is a member of a shared block when another entry names the same block offset;
//! otherwise the block is its own frame. The last 16 bytes (tenant, n, magic, format) are the
//! *trailer*; a reader finds everything from it. The version sits at the end rather than in a
//! header because a pack object is written whole, and the footer is what a rebuild reads
//! first.
//!
//! # Format versions
//!
//! | format | layout |
//! | --- | --- |
//! | 1 | one frame per chunk; footer entries of 48 bytes: chunk id (32), frame offset `u64`, frame length `u32`, raw length `u32` |
//! | 2 | the layout above: blocks of several chunks |
//!
//! Both are read; format 2 is written.
//!
//! The first read of a pack in a process fetches its trailer (a 16-byte suffix GET, issued
//! beside the frame's own GET) and checks it: a pack of a format newer than
//! [`COLD_PACK_FORMAT`] is refused with [`Error::NewerFormat`], one whose trailer is not ours
//! or names another tenant with [`Error::Format`]. Checked pack ids are remembered, so later
//! reads of the pack are one ranged GET each.
//!
//! The LMDB `cold` table maps a chunk key to its [`Location`]: (pack id, offset, length) of
//! its block, and for a member of a shared block its place inside; a read is one ranged GET. All requests pass through a [`LimitStore`] that caps concurrency.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use object_store::limit::LimitStore;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use crate::codec::{Compression, Frame};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::meta::{
    ChunkKey, Meta, bump_counter, clear_tier_bit, le_u32, le_u64, list_table, set_tier_bit,
    tier_bits,
};
use crate::names::TenantId;
use crate::tier::{ChunkTier, TierName};
use block::Block;

/// Newest pack format this build reads and writes (the trailer's last byte).
pub(crate) const COLD_PACK_FORMAT: u8 = 2;
const TRAILER_MAGIC: [u8; 3] = *b"SCP";
const TRAILER_LEN: usize = 16;
/// A footer entry of format 1 and of format 2.
const FOOTER_ENTRY_V1: usize = 48;
const FOOTER_ENTRY: usize = 56;

/// The footer entry size of a pack format this build reads.
fn footer_entry(format: u8) -> usize {
    if format == 1 {
        FOOTER_ENTRY_V1
    } else {
        FOOTER_ENTRY
    }
}
/// Checked pack ids remembered before the set starts over (32 bytes each).
const CHECKED_PACKS: usize = 1 << 16;

/// What a pack's trailer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Trailer {
    tenant: TenantId,
    chunks: u32,
    format: u8,
}

impl Trailer {
    fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[..8].copy_from_slice(&self.tenant.0);
        b[8..12].copy_from_slice(&self.chunks.to_le_bytes());
        b[12..15].copy_from_slice(&TRAILER_MAGIC);
        b[15] = self.format;
        b
    }

    /// Parses and checks the last [`TRAILER_LEN`] bytes of the pack at `path`, `size` bytes.
    fn decode(b: &[u8], size: u64, path: &Path) -> Result<Self> {
        if b.len() != TRAILER_LEN || b[12..15] != TRAILER_MAGIC {
            return Err(Error::Format(format!(
                "cold pack {path} does not end in a scipcache pack trailer"
            )));
        }
        let format = b[15];
        if format > COLD_PACK_FORMAT {
            return Err(Error::NewerFormat {
                what: format!("cold pack {path}"),
                found: u64::from(format),
                supported: u64::from(COLD_PACK_FORMAT),
            });
        }
        let mut tenant = [0u8; 8];
        tenant.copy_from_slice(&b[..8]);
        let chunks = le_u32(&b[8..12]);
        let footer = u64::from(chunks) * footer_entry(format) as u64 + TRAILER_LEN as u64;
        if format == 0 || footer > size {
            return Err(Error::Format(format!(
                "cold pack {path} has a damaged trailer (format {format}, {chunks} chunks in \
                 {size} bytes)"
            )));
        }
        Ok(Self {
            tenant: TenantId(tenant),
            chunks,
            format,
        })
    }
}

/// Where a chunk lives in the cold tier: its block's frame, and for a member of a shared
/// block (`cold_block.rs`) where it sits inside the decoded block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) pack: [u8; 32],
    /// The block frame's offset in the pack object.
    pub(crate) offset: u64,
    /// The block frame's stored length.
    pub(crate) len: u32,
    /// `None`: the frame is the chunk's own (a whole block).
    pub(crate) part: Option<Part>,
}

/// A member's place in a shared block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    /// Offset of its raw bytes in the decoded block.
    pub(crate) inner: u32,
    /// Its raw length.
    pub(crate) raw: u32,
    /// Its share of the block's stored bytes (what the counters charge it).
    pub(crate) share: u32,
}

/// An index value of a whole block: pack, offset, length.
const LOCATION_WHOLE: usize = 44;
/// An index value of a member of a shared block: the above, then inner offset, raw length
/// and share.
const LOCATION_PART: usize = 56;

impl Location {
    /// A chunk's own frame.
    pub(crate) fn whole(pack: [u8; 32], offset: u64, len: u32) -> Self {
        Self {
            pack,
            offset,
            len,
            part: None,
        }
    }

    /// The stored bytes charged to the chunk: its frame, or its share of a shared one.
    pub(crate) fn charged(&self) -> u32 {
        self.part.map_or(self.len, |p| p.share)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LOCATION_PART);
        b.extend_from_slice(&self.pack);
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        if let Some(p) = self.part {
            for v in [p.inner, p.raw, p.share] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != LOCATION_WHOLE && b.len() != LOCATION_PART {
            return Err(Error::Format(format!("cold location of {} bytes", b.len())));
        }
        let mut pack = [0u8; 32];
        pack.copy_from_slice(&b[..32]);
        let part = (b.len() == LOCATION_PART).then(|| Part {
            inner: le_u32(&b[44..48]),
            raw: le_u32(&b[48..52]),
            share: le_u32(&b[52..56]),
        });
        Ok(Self {
            pack,
            offset: le_u64(&b[32..40]),
            len: le_u32(&b[40..44]),
            part,
        })
    }
}

/// The stored bytes a `cold` index value charges its chunk (`0` for a damaged value).
pub(crate) fn charged_len(value: &[u8]) -> u32 {
    Location::decode(value).map_or(0, |l| l.charged())
}

/// The cold tier.
#[derive(Clone)]
pub(crate) struct ColdTier {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    meta: Meta,
    url: String,
    /// The folder of a `file://` tier: its writes keep the local disk's reserve free
    /// (`disk_space.rs`), and their failures are checked for a full disk.
    local_dir: Option<std::path::PathBuf>,
    /// Packs whose trailer this process has checked.
    checked: Arc<Mutex<HashSet<[u8; 32]>>>,
    /// Packs being written and not yet indexed: the garbage collector never deletes them as
    /// orphans (`cold_gc.rs`).
    writing: PacksWriting,
    /// How compaction encodes what it cannot copy as it is.
    packing: Packing,
}

/// How compaction encodes the live members of partly dead blocks (`cold_gc.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packing {
    /// Raw bytes of a block (`StoreConfig::cold_block_target`).
    pub(crate) block_target: usize,
    /// The fast cold codec (`StoreConfig::cold_fast_compression`).
    pub(crate) fast: Compression,
    /// Whether the fast codec differs from the cold one: packs written with it are then
    /// marked for recompression.
    pub(crate) fast_is_not_final: bool,
}

impl Default for Packing {
    fn default() -> Self {
        Self {
            block_target: block::DEFAULT_BLOCK_TARGET,
            fast: Compression::Zstd(3),
            fast_is_not_final: true,
        }
    }
}

/// A pack of a tenant.
type PackOf = (TenantId, [u8; 32]);
/// The packs being written.
type PacksWriting = Arc<Mutex<HashSet<PackOf>>>;

/// Marks a pack as being written until dropped (after its index commit).
pub(crate) struct Writing {
    set: PacksWriting,
    pack: PackOf,
}

impl Drop for Writing {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.pack);
    }
}

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdTier").field("url", &self.url).finish()
    }
}

impl ColdTier {
    /// Connects to the object store named by `url` (no request is made yet).
    pub(crate) fn open(
        url: &str,
        options: &[(String, String)],
        concurrency: usize,
        meta: Meta,
    ) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidArgument(format!("cold tier URL {url:?}: {e}")))?;
        let mut local_dir = None;
        if parsed.scheme() == "file" {
            let dir = parsed.to_file_path().map_err(|()| {
                Error::InvalidArgument(format!(
                    "cold tier URL {url:?} is not an absolute file path"
                ))
            })?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                let err = Error::io(format!("creating {}", dir.display()), e);
                crate::disk_space::classify(err, &dir)
            })?;
            local_dir = Some(dir);
        }
        let (store, prefix) = object_store::parse_url_opts(
            &parsed,
            options.iter().map(|(k, v)| (k.as_str(), v.clone())),
        )
        .map_err(|e| Error::InvalidArgument(format!("cold tier URL {url:?}: {e}")))?;
        let store: Arc<dyn ObjectStore> = Arc::new(LimitStore::new(store, concurrency.max(1)));
        Ok(Self {
            store,
            prefix,
            meta,
            url: url.to_owned(),
            local_dir,
            checked: Arc::default(),
            writing: Arc::default(),
            packing: Packing::default(),
        })
    }

    /// The tier with compaction encoding as `packing` says.
    pub(crate) fn with_packing(mut self, packing: Packing) -> Self {
        self.packing = packing;
        self
    }

    /// Marks `pack` as being written: call before its PUT, hold until its index commit.
    pub(crate) fn writing(&self, tenant: TenantId, pack: [u8; 32]) -> Writing {
        lock(&self.writing).insert((tenant, pack));
        Writing {
            set: self.writing.clone(),
            pack: (tenant, pack),
        }
    }

    /// The packs being written now.
    pub(crate) fn being_written(&self) -> HashSet<PackOf> {
        lock(&self.writing).clone()
    }

    fn pack_path(&self, tenant: TenantId, pack: &[u8; 32]) -> Path {
        self.prefix
            .clone()
            .join("packs")
            .join(hex::encode(tenant.0))
            .join(format!("{}.pack", hex::encode(pack)))
    }

    fn manifest_path(&self, tenant: TenantId, id: &ManifestId) -> Path {
        self.prefix
            .clone()
            .join("manifests")
            .join(hex::encode(tenant.0))
            .join(id.to_hex())
    }

    /// Writes one pack of blocks (already in the cold codec, `cold_block.rs`) of one tenant
    /// and indexes it; `fast` marks it as written at the fast level, to be recompressed when
    /// the daemon is idle (`cold_recompress.rs`). With `known_only`, a chunk whose index row is
    /// gone (swept by a GC while its copy was on the way) is not indexed: its bytes stay dead
    /// in the object. Returns how many chunks became cold.
    pub(crate) async fn put_pack(
        &self,
        tenant: TenantId,
        blocks: Vec<Block>,
        fast: bool,
        known_only: bool,
    ) -> Result<u64> {
        if blocks.is_empty() {
            return Ok(0);
        }
        let (bytes, pack, entries) = encode_pack(tenant, &blocks)?;
        drop(blocks);
        let path = self.pack_path(tenant, &pack);
        let _writing = self.writing(tenant, pack);
        self.put_create(&path, bytes).await?;
        self.meta
            .write(move |t, txn| {
                let mut n = 0;
                for (key, loc, raw_len) in entries {
                    // A damaged location is written again.
                    if t.cold.get_unless_damaged(txn, key.as_bytes())?.is_some()
                        || (known_only && !t.chunks.contains(txn, key.as_bytes())?)
                    {
                        continue;
                    }
                    t.cold.put(txn, key.as_bytes(), &loc.encode())?;
                    set_tier_bit(t, txn, key, tier_bits::COLD, raw_len)?;
                    bump_counter(
                        t,
                        txn,
                        key.tenant(),
                        tier_bits::COLD,
                        1,
                        i64::from(loc.charged()),
                    )?;
                    n += 1;
                }
                if fast && n > 0 {
                    recompress::mark_in_txn(t, txn, tenant, &pack)?;
                }
                Ok(n)
            })
            .await
    }

    /// Writes a manifest object (idempotent).
    pub(crate) async fn put_manifest(
        &self,
        tenant: TenantId,
        id: &ManifestId,
        encoded: &[u8],
    ) -> Result<()> {
        let compressed =
            zstd::bulk::compress(encoded, 9).map_err(|e| Error::io("compressing a manifest", e))?;
        self.put_create(&self.manifest_path(tenant, id), Bytes::from(compressed))
            .await
    }

    /// Reads a manifest object back, if present.
    pub(crate) async fn get_manifest(
        &self,
        tenant: TenantId,
        id: &ManifestId,
        limit: usize,
    ) -> Result<Option<Vec<u8>>> {
        match self.store.get(&self.manifest_path(tenant, id)).await {
            Ok(r) => {
                let compressed = r.bytes().await?;
                let mut out = Vec::new();
                zstd::stream::copy_decode(
                    &mut &compressed[..],
                    &mut LimitedWriter {
                        out: &mut out,
                        limit,
                    },
                )
                .map_err(|e| Error::Format(format!("cold manifest {id}: {e}")))?;
                Ok(Some(out))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks the trailer of a pack once per process (see the module docs): its format must
    /// be one this build reads, and it must belong to `tenant`.
    pub(crate) async fn check_pack(&self, tenant: TenantId, pack: &[u8; 32]) -> Result<()> {
        if lock(&self.checked).contains(pack) {
            return Ok(());
        }
        let path = self.pack_path(tenant, pack);
        let opts = GetOptions {
            range: Some(GetRange::Suffix(TRAILER_LEN as u64)),
            ..GetOptions::default()
        };
        let got = match self.store.get_opts(&path, opts).await {
            Ok(got) => got,
            Err(e) => return Err(self.read_error(&path, e)),
        };
        let size = got.meta.size;
        let bytes = got.bytes().await.map_err(|e| self.read_error(&path, e))?;
        let trailer = Trailer::decode(&bytes, size, &path)?;
        if trailer.tenant != tenant {
            return Err(Error::Format(format!(
                "cold pack {path} belongs to tenant {}, not to the tenant whose folder holds it",
                hex::encode(trailer.tenant.0)
            )));
        }
        let mut checked = lock(&self.checked);
        if checked.len() >= CHECKED_PACKS {
            checked.clear();
        }
        checked.insert(*pack);
        Ok(())
    }

    /// What a failed read of a pack object means to a caller.
    fn read_error(&self, path: &Path, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => {
                Error::Format(format!("cold pack {path} is missing from the bucket"))
            }
            e => Error::Unavailable(format!(
                "the cold tier ({}) cannot be read: {e}; check that the object store is reachable",
                self.url
            )),
        }
    }

    async fn put_create(&self, path: &Path, bytes: Bytes) -> Result<()> {
        if let Some(dir) = &self.local_dir {
            // A cold copy on the local disk is written behind: it may not take the room the
            // index needs. Refused, it stays queued and is retried with backoff.
            let (dir, need) = (dir.clone(), bytes.len() as u64);
            crate::blocking::run(move || {
                crate::disk_space::ensure_room(&dir, need, "a cold tier write")
            })
            .await?;
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => match self.local_dir.clone() {
                Some(dir) => {
                    let err: Error = e.into();
                    crate::blocking::run(move || Ok(crate::disk_space::classify(err, &dir)))
                        .await
                        .and_then(Err)
                }
                None => Err(e.into()),
            },
        }
    }

    /// The object path and byte range of a chunk (for tests that damage objects).
    #[cfg(test)]
    pub(crate) async fn locate(&self, key: ChunkKey) -> Result<Option<(std::path::PathBuf, u64)>> {
        let loc = self
            .meta
            .read(move |t, txn| {
                t.cold
                    .get(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()
            })
            .await?;
        Ok(loc.map(|l| {
            let p = self.pack_path(key.tenant(), &l.pack);
            (
                std::path::PathBuf::from(format!("/{p}")),
                l.offset + u64::from(l.len) - 1,
            )
        }))
    }
}

struct LimitedWriter<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("manifest larger than the limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ColdTier {
    /// Where the index says a chunk's cold copy is.
    pub(crate) async fn location(&self, key: ChunkKey) -> Result<Option<Location>> {
        self.meta
            .read(move |t, txn| {
                t.cold
                    .get(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()
            })
            .await
    }

    /// Reads the chunk's frame at `loc` (its pack's trailer checked on the first read): its
    /// own frame, or its bytes cut out of its decoded shared block.
    async fn get_at(&self, key: ChunkKey, loc: Location) -> Result<Option<Frame>> {
        let path = self.pack_path(key.tenant(), &loc.pack);
        let range = loc.offset..loc.offset + u64::from(loc.len);
        let frame = async {
            self.store
                .get_range(&path, range)
                .await
                .map_err(|e| self.read_error(&path, e))
        };
        let (bytes, ()) = futures::try_join!(frame, self.check_pack(key.tenant(), &loc.pack))?;
        if loc.part.is_none() {
            return Frame::from_bytes(bytes).map(Some);
        }
        let what = format!("cold pack {path}");
        crate::blocking::run(move || {
            let mut got = block::frames_of(&bytes, loc.offset, &[(key, loc)], &what);
            match got.pop() {
                Some((_, frame)) => frame.map(Some),
                None => Ok(None),
            }
        })
        .await
    }
}

impl ChunkTier for ColdTier {
    fn name(&self) -> TierName {
        TierName::Cold
    }

    async fn contains(&self, key: ChunkKey) -> Result<bool> {
        self.meta
            .read(move |t, txn| t.cold.contains(txn, key.as_bytes()))
            .await
    }

    async fn get(&self, key: ChunkKey) -> Result<Option<Frame>> {
        let mut loc = self.location(key).await?;
        // A pack replaced by compaction is deleted at once: a read that looked up the old
        // location just before finds the object gone, and reads the new location.
        for _ in 0..2 {
            let Some(at) = loc else { return Ok(None) };
            match self.get_at(key, at).await {
                Err(err @ Error::Format(_)) => {
                    let now = self.location(key).await?;
                    if now == loc {
                        return Err(err);
                    }
                    loc = now;
                }
                other => return other,
            }
        }
        Err(Error::Unavailable(format!(
            "chunk {} moved between cold packs twice while it was read",
            key.id()
        )))
    }

    async fn put(&self, batch: Vec<(ChunkKey, Frame)>) -> Result<u64> {
        let mut by_tenant: std::collections::BTreeMap<TenantId, Vec<(ChunkKey, Frame)>> =
            Default::default();
        for (k, f) in batch {
            by_tenant.entry(k.tenant()).or_default().push((k, f));
        }
        let mut n = 0;
        for (tenant, frames) in by_tenant {
            let blocks = frames
                .into_iter()
                .map(|(k, f)| Block::whole(k, f))
                .collect();
            n += self.put_pack(tenant, blocks, false, false).await?;
        }
        Ok(n)
    }

    async fn delete(&self, keys: Vec<ChunkKey>) -> Result<u64> {
        // Index entries only: the garbage collector deletes pack objects once none of their
        // chunks is live, and compacts those mostly dead (`cold_gc.rs`).
        self.meta
            .write(move |t, txn| {
                let mut n = 0;
                for key in keys {
                    if delete_in_txn(t, txn, key)?.is_some() {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ChunkKey>> {
        let meta = self.meta.clone();
        crate::blocking::run(move || list_table(&meta, |t| t.cold.raw, tenant)).await
    }
}

/// Drops a chunk's cold index entry inside a write transaction; where it was (`None`: no
/// entry). A damaged entry goes too, reported at the zero location.
pub(crate) fn delete_in_txn(
    t: &crate::meta::Tables,
    txn: &mut heed::RwTxn<'_>,
    key: ChunkKey,
) -> Result<Option<Location>> {
    let found = t
        .cold
        .get_unless_damaged(txn, key.as_bytes())?
        .map(Location::decode)
        .transpose()?;
    if !t.cold.delete(txn, key.as_bytes())? {
        return Ok(None);
    }
    clear_tier_bit(t, txn, key, tier_bits::COLD)?;
    let Some(loc) = found else {
        // A damaged location: its bytes are not counted.
        return Ok(Some(Location::whole([0; 32], 0, 0)));
    };
    bump_counter(
        t,
        txn,
        key.tenant(),
        tier_bits::COLD,
        -1,
        -i64::from(loc.charged()),
    )?;
    Ok(Some(loc))
}

/// A chunk a new pack holds: its key, its location (in that pack) and its raw length.
pub(crate) type PackEntry = (ChunkKey, Location, u32);

/// A pack object's bytes for `blocks` of `tenant`, its id (the BLAKE3 hash of the bytes), and
/// each chunk's entry.
fn encode_pack(tenant: TenantId, blocks: &[Block]) -> Result<(Bytes, [u8; 32], Vec<PackEntry>)> {
    let body: usize = blocks.iter().map(|b| b.frame.stored_len()).sum();
    let chunks: usize = blocks.iter().map(|b| b.members.len()).sum();
    let mut buf = BytesMut::with_capacity(body + chunks * FOOTER_ENTRY + TRAILER_LEN);
    let mut entries = Vec::with_capacity(chunks);
    for block in blocks {
        debug_assert!(block.members.iter().all(|m| m.key.tenant() == tenant));
        let offset = buf.len() as u64;
        buf.put_slice(block.frame.as_bytes());
        let len = u32::try_from(block.frame.stored_len())
            .map_err(|_| Error::InvalidArgument("frame too large".into()))?;
        let shared = block.is_shared();
        for (m, share) in block.members.iter().zip(block.shares()) {
            let part = shared.then_some(Part {
                inner: m.inner,
                raw: m.raw,
                share,
            });
            let loc = Location {
                pack: [0; 32],
                offset,
                len,
                part,
            };
            entries.push((m.key, loc, m.raw));
        }
    }
    for (key, loc, raw_len) in &entries {
        buf.put_slice(key.id().as_bytes());
        buf.put_u64_le(loc.offset);
        buf.put_u32_le(loc.len);
        let p = loc.part.unwrap_or(Part {
            inner: 0,
            raw: *raw_len,
            share: loc.len,
        });
        buf.put_u32_le(p.inner);
        buf.put_u32_le(p.raw);
        buf.put_u32_le(p.share);
    }
    let trailer = Trailer {
        tenant,
        chunks: u32::try_from(entries.len())
            .map_err(|_| Error::InvalidArgument("too many chunks for one pack".into()))?,
        format: COLD_PACK_FORMAT,
    };
    buf.put_slice(&trailer.encode());
    let bytes = buf.freeze();
    let pack = *blake3::hash(&bytes).as_bytes();
    for (_, loc, _) in &mut entries {
        loc.pack = pack;
    }
    Ok((bytes, pack, entries))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The set of checked packs is valid after any panic (at worst a pack is checked again).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[path = "cold_batch.rs"]
mod batch;
#[path = "cold_block.rs"]
pub(crate) mod block;
#[path = "cold_gc.rs"]
pub(crate) mod gc;
#[path = "cold_recompress.rs"]
pub(crate) mod recompress;
#[path = "cold_refs.rs"]
pub(crate) mod refs;
#[path = "cold_scan.rs"]
pub(crate) mod scan;

#[cfg(test)]
#[path = "cold_tests.rs"]
mod tests;
