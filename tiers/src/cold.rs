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
//!
//! Pack footer (little-endian), so the bucket alone can rebuild the index:
//!
//! | size | field |
//! | --- | --- |
//! | 48 × n | per chunk: chunk id (32), frame offset `u64`, frame length `u32`, raw length `u32` |
//! | 8 | tenant id |
//! | 4 | n, `u32` |
//! | 4 | magic `SCP` and format byte `1` |
//!
//! The LMDB `cold` table maps a chunk key to (pack id, offset, length); a read is one ranged
//! GET. All requests pass through a [`LimitStore`] that caps concurrency.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use object_store::limit::LimitStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::meta::{
    ChunkKey, Meta, bump_counter, clear_tier_bit, le_u32, le_u64, list_table, set_tier_bit,
    tier_bits,
};
use crate::names::TenantId;
use crate::tier::{ChunkTier, TierName};

const FOOTER_MAGIC: [u8; 4] = *b"SCP\x01";
const FOOTER_ENTRY: usize = 48;

/// Where a frame lives in the cold tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    pack: [u8; 32],
    offset: u64,
    len: u32,
}

impl Location {
    fn encode(&self) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[..32].copy_from_slice(&self.pack);
        b[32..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..].copy_from_slice(&self.len.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 44 {
            return Err(Error::Format(format!("cold location of {} bytes", b.len())));
        }
        let mut pack = [0u8; 32];
        pack.copy_from_slice(&b[..32]);
        Ok(Self {
            pack,
            offset: le_u64(&b[32..40]),
            len: le_u32(&b[40..]),
        })
    }
}

/// The cold tier.
#[derive(Clone)]
pub(crate) struct ColdTier {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    meta: Meta,
    url: String,
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
        if parsed.scheme() == "file" {
            let dir = parsed.to_file_path().map_err(|()| {
                Error::InvalidArgument(format!(
                    "cold tier URL {url:?} is not an absolute file path"
                ))
            })?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
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
        })
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

    /// Writes one pack of frames (already in the cold codec) of one tenant and indexes it.
    /// Returns how many chunks became cold.
    pub(crate) async fn put_pack(
        &self,
        tenant: TenantId,
        frames: Vec<(ChunkKey, Frame)>,
    ) -> Result<u64> {
        if frames.is_empty() {
            return Ok(0);
        }
        let body: usize = frames.iter().map(|(_, f)| f.stored_len()).sum();
        let mut buf = BytesMut::with_capacity(body + frames.len() * FOOTER_ENTRY + 16);
        let mut entries = Vec::with_capacity(frames.len());
        for (key, frame) in &frames {
            debug_assert_eq!(key.tenant(), tenant);
            let offset = buf.len() as u64;
            buf.put_slice(frame.as_bytes());
            let len = u32::try_from(frame.stored_len())
                .map_err(|_| Error::InvalidArgument("frame too large".into()))?;
            entries.push((*key, offset, len, frame.raw_len() as u32));
        }
        for (key, offset, len, raw_len) in &entries {
            buf.put_slice(key.id().as_bytes());
            buf.put_u64_le(*offset);
            buf.put_u32_le(*len);
            buf.put_u32_le(*raw_len);
        }
        buf.put_slice(&tenant.0);
        buf.put_u32_le(entries.len() as u32);
        buf.put_slice(&FOOTER_MAGIC);
        let bytes = buf.freeze();
        let pack = *blake3::hash(&bytes).as_bytes();
        let path = self.pack_path(tenant, &pack);
        self.put_create(&path, bytes).await?;
        self.meta
            .write(move |t, txn| {
                let mut n = 0;
                for (key, offset, len, raw_len) in entries {
                    if t.cold.get(txn, key.as_bytes())?.is_some() {
                        continue;
                    }
                    t.cold.put(
                        txn,
                        key.as_bytes(),
                        &Location { pack, offset, len }.encode(),
                    )?;
                    set_tier_bit(t, txn, key, tier_bits::COLD, raw_len)?;
                    bump_counter(t, txn, key.tenant(), tier_bits::COLD, 1, i64::from(len))?;
                    n += 1;
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

    async fn put_create(&self, path: &Path, bytes: Bytes) -> Result<()> {
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
            Err(e) => Err(e.into()),
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

    /// Frames of many chunks, one result per key in order (`None`: no cold copy). Keys are
    /// grouped by pack object; ranges of one object that lie within [`COALESCE_GAP`] of each
    /// other are read with one ranged GET, and the objects are fetched concurrently (the
    /// [`LimitStore`] bounds the requests). A failed read fails only the keys it carried.
    pub(crate) async fn get_many(&self, keys: Vec<ChunkKey>) -> Result<Vec<Result<Option<Frame>>>> {
        use futures::StreamExt;
        let lookup = keys.clone();
        let locations: Vec<Option<Location>> = self
            .meta
            .read(move |t, txn| {
                lookup
                    .iter()
                    .map(|k| {
                        t.cold
                            .get(txn, k.as_bytes())?
                            .map(Location::decode)
                            .transpose()
                    })
                    .collect()
            })
            .await?;
        let mut by_pack: std::collections::BTreeMap<PackObject, Vec<(usize, Location)>> =
            std::collections::BTreeMap::new();
        for (i, (key, loc)) in keys.iter().zip(&locations).enumerate() {
            if let Some(loc) = loc {
                by_pack
                    .entry((key.tenant(), loc.pack))
                    .or_default()
                    .push((i, *loc));
            }
        }
        let mut out: Vec<Result<Option<Frame>>> = keys.iter().map(|_| Ok(None)).collect();
        let reads = by_pack.into_iter().flat_map(|((tenant, pack), mut locs)| {
            locs.sort_by_key(|(_, l)| l.offset);
            let path = self.pack_path(tenant, &pack);
            coalesce(&locs, COALESCE_GAP)
                .into_iter()
                .map(move |(range, members)| (path.clone(), range, members))
        });
        let mut fetched = futures::stream::iter(reads)
            .map(|(path, range, members)| async move {
                let got = self.store.get_range(&path, range.clone()).await;
                (path, range, members, got)
            })
            .buffer_unordered(COLD_READS_IN_FLIGHT);
        while let Some((path, range, members, got)) = fetched.next().await {
            for (i, loc) in members {
                out[i] = match &got {
                    Ok(bytes) => {
                        let from = usize::try_from(loc.offset - range.start).unwrap_or(usize::MAX);
                        let to = from.saturating_add(loc.len as usize);
                        if to > bytes.len() {
                            Err(Error::Format(format!(
                                "cold pack {path} is shorter than its index says"
                            )))
                        } else {
                            Frame::from_bytes(bytes.slice(from..to)).map(Some)
                        }
                    }
                    Err(object_store::Error::NotFound { .. }) => Err(Error::Format(format!(
                        "cold pack {path} is missing from the bucket"
                    ))),
                    Err(e) => Err(Error::Unavailable(format!(
                        "the cold tier ({}) cannot be read: {e}; check that the object store is reachable",
                        self.url
                    ))),
                };
            }
        }
        Ok(out)
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

impl ChunkTier for ColdTier {
    fn name(&self) -> TierName {
        TierName::Cold
    }

    async fn contains(&self, key: ChunkKey) -> Result<bool> {
        self.meta
            .read(move |t, txn| Ok(t.cold.get(txn, key.as_bytes())?.is_some()))
            .await
    }

    async fn get(&self, key: ChunkKey) -> Result<Option<Frame>> {
        let loc = self
            .meta
            .read(move |t, txn| {
                t.cold
                    .get(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()
            })
            .await?;
        let Some(loc) = loc else { return Ok(None) };
        let path = self.pack_path(key.tenant(), &loc.pack);
        let range = loc.offset..loc.offset + u64::from(loc.len);
        let bytes = match self.store.get_range(&path, range).await {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Format(format!(
                    "cold pack {path} is missing from the bucket"
                )));
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "the cold tier ({}) cannot be read: {e}; check that the object store is reachable",
                    self.url
                )));
            }
        };
        Frame::from_bytes(bytes).map(Some)
    }

    async fn put(&self, batch: Vec<(ChunkKey, Frame)>) -> Result<u64> {
        let mut by_tenant: std::collections::BTreeMap<TenantId, Vec<(ChunkKey, Frame)>> =
            Default::default();
        for (k, f) in batch {
            by_tenant.entry(k.tenant()).or_default().push((k, f));
        }
        let mut n = 0;
        for (tenant, frames) in by_tenant {
            n += self.put_pack(tenant, frames).await?;
        }
        Ok(n)
    }

    async fn delete(&self, keys: Vec<ChunkKey>) -> Result<u64> {
        // Index entries only: a pack object is removed once none of its chunks is live
        // (lifecycle issue).
        self.meta
            .write(move |t, txn| {
                let mut n = 0;
                for key in keys {
                    let Some(loc) = t
                        .cold
                        .get(txn, key.as_bytes())?
                        .map(Location::decode)
                        .transpose()?
                    else {
                        continue;
                    };
                    t.cold.delete(txn, key.as_bytes())?;
                    clear_tier_bit(t, txn, key, tier_bits::COLD)?;
                    bump_counter(
                        t,
                        txn,
                        key.tenant(),
                        tier_bits::COLD,
                        -1,
                        -i64::from(loc.len),
                    )?;
                    n += 1;
                }
                Ok(n)
            })
            .await
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ChunkKey>> {
        let meta = self.meta.clone();
        crate::blocking::run(move || list_table(&meta, |t| t.cold, tenant)).await
    }
}

/// Ranges of one object closer than this are read with one GET (the bytes between are cheaper
/// than another request's latency).
const COALESCE_GAP: u64 = 1 << 20;
/// Ranged GETs of one batch in flight at once (the [`LimitStore`] caps them further).
const COLD_READS_IN_FLIGHT: usize = 16;

/// A pack object: its tenant and pack id.
type PackObject = (TenantId, [u8; 32]);

/// One ranged GET: the byte range, and the `(index, location)` of every frame in it.
type Coalesced = (std::ops::Range<u64>, Vec<(usize, Location)>);

/// Merges locations (sorted by offset) whose gaps are at most `gap` into one range each; every
/// merged range lists the `(index, location)` pairs it covers.
fn coalesce(locs: &[(usize, Location)], gap: u64) -> Vec<Coalesced> {
    let mut out: Vec<Coalesced> = Vec::new();
    for &(i, loc) in locs {
        let end = loc.offset + u64::from(loc.len);
        match out.last_mut() {
            Some((range, members)) if loc.offset <= range.end.saturating_add(gap) => {
                range.end = range.end.max(end);
                members.push((i, loc));
            }
            _ => out.push((loc.offset..end, vec![(i, loc)])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cold_tier_on_a_local_folder_passes_the_conformance_suite() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
        let url = format!("file://{}", dir.path().join("cold").display());
        let cold = ColdTier::open(&url, &[], 4, meta)?;
        crate::tier::conformance::put_get_contains_delete_list(&cold).await
    }

    #[tokio::test]
    async fn cold_tier_in_memory_passes_the_conformance_suite() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
        let cold = ColdTier::open("memory://", &[], 4, meta)?;
        crate::tier::conformance::put_get_contains_delete_list(&cold).await
    }

    #[tokio::test]
    async fn manifests_round_trip_through_the_bucket() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
        let cold = ColdTier::open("memory://", &[], 4, meta)?;
        let id = ManifestId::of(b"m");
        let body = b"manifest bytes".repeat(100);
        cold.put_manifest(TenantId([3; 8]), &id, &body).await?;
        cold.put_manifest(TenantId([3; 8]), &id, &body).await?;
        assert_eq!(
            cold.get_manifest(TenantId([3; 8]), &id, 1 << 20).await?,
            Some(body)
        );
        assert_eq!(
            cold.get_manifest(TenantId([4; 8]), &id, 1 << 20).await?,
            None
        );
        Ok(())
    }

    #[test]
    fn neighbouring_ranges_of_a_pack_are_coalesced_and_distant_ones_are_not() {
        let at = |offset, len| Location {
            pack: [0; 32],
            offset,
            len,
        };
        let locs = vec![
            (0, at(0, 100)),
            (3, at(100, 50)),
            (1, at(1_000, 10)),
            (2, at(10_000_000, 5)),
        ];
        let merged = coalesce(&locs, 1 << 20);
        let ranges: Vec<_> = merged.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, vec![0..1_010, 10_000_000..10_000_005]);
        let first: Vec<usize> = merged[0].1.iter().map(|(i, _)| *i).collect();
        assert_eq!(first, vec![0, 3, 1]);
        assert_eq!(
            coalesce(&locs, 0).len(),
            3,
            "only touching ranges merge without a gap"
        );
    }
}
