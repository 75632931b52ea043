//! Reading the cold tier whole, without an index: what a rebuild (`store/rebuild.rs`) and the
//! open-time check for a lost index need. Pack objects describe themselves (their footer names
//! every chunk they hold, see `cold.rs`), manifests are named by their id, ref events by their
//! ref and version (`cold_refs.rs`).

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::{ColdTier, Location, Part, TRAILER_LEN, Trailer, footer_entry};
use crate::error::{Error, Result};
use crate::ids::{ChunkId, ManifestId};
use crate::meta::{ChunkKey, bump_counter, le_u32, le_u64, set_tier_bit, tier_bits};
use crate::names::TenantId;

/// A pack object found in the bucket.
#[derive(Clone, Debug)]
pub(crate) struct PackObject {
    pub(crate) tenant: TenantId,
    pub(crate) pack: [u8; 32],
    pub(crate) path: Path,
}

/// One chunk a pack's footer lists.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedChunk {
    pub(crate) key: ChunkKey,
    loc: Location,
    pub(crate) raw_len: u32,
}

impl PackedChunk {
    /// Where the footer says the chunk's frame is.
    pub(super) fn location(&self) -> Location {
        self.loc
    }
}

impl ColdTier {
    /// Whether anything of ours is stored under the cold URL's prefix (one listing request
    /// that stops at the first object).
    pub(crate) async fn holds_data(&self) -> Result<bool> {
        for folder in ["packs", "manifests", "refs"] {
            let prefix = self.prefix.clone().join(folder);
            let mut listing = self.store.list(Some(&prefix));
            if let Some(first) = listing.next().await {
                first.map_err(|e| self.list_error(e))?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn list_error(&self, e: object_store::Error) -> Error {
        Error::Unavailable(format!(
            "the cold tier ({}) cannot be listed: {e}; check that the object store is reachable",
            self.url
        ))
    }

    /// Every object under `folder`; a failed listing names the cold tier.
    pub(crate) async fn list_all(&self, folder: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(folder))
            .try_collect()
            .await
            .map_err(|e| self.list_error(e))
    }

    /// Every pack object; the number of objects under `packs/` whose names are not a pack's.
    pub(crate) async fn list_packs(&self) -> Result<(Vec<PackObject>, u64)> {
        let (listed, foreign) = self.list_packs_with_meta(None).await?;
        Ok((listed.into_iter().map(|(p, _)| p).collect(), foreign))
    }

    /// Every pack object (of one tenant, or of all), with its size and time as listed; the
    /// number of objects whose names are not a pack's.
    pub(crate) async fn list_packs_with_meta(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<(Vec<(PackObject, object_store::ObjectMeta)>, u64)> {
        let root = self.prefix.clone().join("packs");
        let folder = match tenant {
            Some(t) => root.clone().join(hex::encode(t.0)),
            None => root.clone(),
        };
        let listed = self.list_all(&folder).await?;
        let mut out = Vec::with_capacity(listed.len());
        let mut foreign = 0;
        for m in listed {
            let parsed = m.location.prefix_match(&root).and_then(|rest| {
                let rest: Vec<_> = rest.collect();
                let [tenant, name] = rest.as_slice() else {
                    return None;
                };
                let tenant: [u8; 8] = hex::decode(tenant.as_ref()).ok()?.try_into().ok()?;
                let pack: [u8; 32] = hex::decode(name.as_ref().strip_suffix(".pack")?)
                    .ok()?
                    .try_into()
                    .ok()?;
                Some((TenantId(tenant), pack))
            });
            match parsed {
                Some((tenant, pack)) => out.push((
                    PackObject {
                        tenant,
                        pack,
                        path: m.location.clone(),
                    },
                    m,
                )),
                None => foreign += 1,
            }
        }
        Ok((out, foreign))
    }

    /// The chunks a pack's footer lists, after checking its trailer (format, tenant, sizes).
    pub(crate) async fn read_footer(&self, pack: &PackObject) -> Result<Vec<PackedChunk>> {
        let opts = GetOptions {
            range: Some(GetRange::Suffix(TRAILER_LEN as u64)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&pack.path, opts)
            .await
            .map_err(|e| self.read_error(&pack.path, e))?;
        let size = got.meta.size;
        let tail = got
            .bytes()
            .await
            .map_err(|e| self.read_error(&pack.path, e))?;
        let trailer = Trailer::decode(&tail, size, &pack.path)?;
        if trailer.tenant != pack.tenant {
            return Err(Error::Format(format!(
                "cold pack {} belongs to tenant {}, not to the tenant whose folder holds it",
                pack.path,
                hex::encode(trailer.tenant.0)
            )));
        }
        let n = trailer.chunks as usize;
        let entry_len = footer_entry(trailer.format);
        let footer_len = (n * entry_len) as u64;
        let start = size - TRAILER_LEN as u64 - footer_len;
        let footer = self
            .store
            .get_range(&pack.path, start..start + footer_len)
            .await
            .map_err(|e| self.read_error(&pack.path, e))?;
        let mut out = Vec::with_capacity(n);
        for entry in footer.chunks_exact(entry_len) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&entry[..32]);
            let loc = Location::whole(pack.pack, le_u64(&entry[32..40]), le_u32(&entry[40..44]));
            if loc.offset + u64::from(loc.len) > start {
                return Err(Error::Format(format!(
                    "cold pack {} lists a frame past its body (offset {}, length {})",
                    pack.path, loc.offset, loc.len
                )));
            }
            let (raw_len, part) = if trailer.format == 1 {
                (le_u32(&entry[44..48]), None)
            } else {
                let part = Part {
                    inner: le_u32(&entry[44..48]),
                    raw: le_u32(&entry[48..52]),
                    share: le_u32(&entry[52..56]),
                };
                (part.raw, Some(part))
            };
            out.push(PackedChunk {
                key: ChunkKey::new(pack.tenant, &ChunkId::from_bytes(id)),
                loc: Location { part, ..loc },
                raw_len,
            });
        }
        // A chunk is a member of a shared block when another entry names its block.
        let mut at_offset: std::collections::HashMap<u64, usize> = Default::default();
        for c in &out {
            *at_offset.entry(c.loc.offset).or_default() += 1;
        }
        for c in &mut out {
            if at_offset.get(&c.loc.offset).copied().unwrap_or(0) < 2 {
                c.loc.part = None;
            }
        }
        Ok(out)
    }

    /// Indexes the chunks of one pack as cold (a chunk already indexed in another pack keeps
    /// that location); how many were new, and their stored bytes.
    pub(crate) async fn index_packed(&self, chunks: Vec<PackedChunk>) -> Result<(u64, u64)> {
        self.meta
            .write(move |t, txn| {
                let (mut n, mut bytes) = (0, 0);
                for c in chunks {
                    if t.cold.get(txn, c.key.as_bytes())?.is_some() {
                        continue;
                    }
                    t.cold.put(txn, c.key.as_bytes(), &c.loc.encode())?;
                    set_tier_bit(t, txn, c.key, tier_bits::COLD, c.raw_len)?;
                    bump_counter(
                        t,
                        txn,
                        c.key.tenant(),
                        tier_bits::COLD,
                        1,
                        i64::from(c.loc.charged()),
                    )?;
                    n += 1;
                    bytes += u64::from(c.loc.charged());
                }
                Ok((n, bytes))
            })
            .await
    }

    /// The ids of every manifest object of every tenant.
    pub(crate) async fn list_manifests(&self) -> Result<Vec<(TenantId, ManifestId)>> {
        let listed = self.list_manifests_with_meta(None).await?;
        Ok(listed.into_iter().map(|(t, id, _)| (t, id)).collect())
    }

    /// The manifest objects (of one tenant, or of all), with what the listing says of them.
    pub(crate) async fn list_manifests_with_meta(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<(TenantId, ManifestId, object_store::ObjectMeta)>> {
        let root = self.prefix.clone().join("manifests");
        let folder = match tenant {
            Some(t) => root.clone().join(hex::encode(t.0)),
            None => root.clone(),
        };
        let listed = self.list_all(&folder).await?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let rest: Vec<_> = m.location.prefix_match(&root)?.collect();
                let [tenant, id] = rest.as_slice() else {
                    return None;
                };
                let tenant: [u8; 8] = hex::decode(tenant.as_ref()).ok()?.try_into().ok()?;
                let id = id.as_ref().parse().ok()?;
                Some((TenantId(tenant), id, m))
            })
            .collect())
    }
}
