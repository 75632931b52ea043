//! The cold tier's part of garbage collection: pack objects nothing points at any more are
//! deleted, packs mostly dead are compacted, and unreferenced manifests and the objects of
//! deleted and expired refs are removed, so that a rebuild after a GC restores exactly the
//! live refs.
//!
//! # Compaction
//!
//! Packs of one tenant whose live share (bytes the `cold` index points at, over the object's
//! size) is under the threshold are rewritten together:
//!
//! 1. each source's footer and the index give its live frames; the object is read whole and
//!    each live frame checked by its checksum (one that fails stays where it is, for the scrub
//!    and reads to repair from another tier);
//! 2. the frames are copied as they are into new packs of about the pack target, written like
//!    any pack (named by their hash, `PutMode::Create`);
//! 3. one transaction per new pack re-points each chunk still located in its source;
//! 4. then the sources are deleted. A read that looked up an old location just before finds
//!    the object gone and looks the chunk up again (`ColdTier::get`).
//!
//! A crash before step 3 leaves an unindexed new object (an orphan, deleted by a later GC once
//! older than the orphan age; a pack this process is still writing, between its PUT and its
//! index commit, is never taken for one); a crash after it leaves sources nothing points at (deleted by
//! the next GC). Packs marked for recompression are left to the recompression, which drops
//! their dead bytes anyway.

use std::collections::{BTreeMap, HashMap, HashSet};

use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::block::{Block, BlockEncoding, Member, build, frames_of};
use super::scan::PackObject;
use super::{ColdTier, Location, encode_pack, recompress};
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::meta::ChunkKey;
use crate::names::TenantId;

/// A cold pack object as the garbage collector sees it.
#[derive(Clone, Debug)]
pub(crate) struct PackUse {
    pub(crate) object: PackObject,
    /// Its size in the bucket.
    pub(crate) size: u64,
    /// Bytes of it the index points at.
    pub(crate) live: u64,
    /// When it was written, Unix ms.
    pub(crate) written_ms: u64,
    /// Whether it waits to be recompressed.
    pub(crate) marked: bool,
    /// Whether it was being written (put, not yet indexed) when its use was read.
    pub(crate) writing: bool,
}

impl ColdTier {
    /// Every pack object of `tenant` (or of all), with its live bytes from the index.
    pub(crate) async fn pack_use(&self, tenant: Option<TenantId>) -> Result<Vec<PackUse>> {
        let (listed, _) = self.list_packs_with_meta(tenant).await?;
        // Taken after the listing and before the index is read: a listed pack is either
        // indexed by then or still marked as being written.
        let writing = self.being_written();
        let prefix: Vec<u8> = tenant.map(|t| t.0.to_vec()).unwrap_or_default();
        let (live, marked) = self
            .meta
            .read(move |t, txn| {
                let mut live: HashMap<(TenantId, [u8; 32]), u64> = HashMap::new();
                for item in t.cold.prefix_iter(txn, &prefix)? {
                    let (k, v) = item?;
                    let key = ChunkKey::from_slice(k)?;
                    let loc = Location::decode(v)?;
                    *live.entry((key.tenant(), loc.pack)).or_default() += u64::from(loc.charged());
                }
                let mut marked = HashSet::new();
                for (tenant, pack) in live.keys() {
                    if recompress::is_marked(t, txn, *tenant, pack)? {
                        marked.insert((*tenant, *pack));
                    }
                }
                Ok((live, marked))
            })
            .await?;
        Ok(listed
            .into_iter()
            .map(|(object, meta)| {
                let id = (object.tenant, object.pack);
                PackUse {
                    live: live.get(&id).copied().unwrap_or(0),
                    marked: marked.contains(&id),
                    writing: writing.contains(&id),
                    size: meta.size,
                    written_ms: u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0),
                    object,
                }
            })
            .collect())
    }

    /// Deletes one object; one already gone is fine.
    pub(crate) async fn delete_object(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Unavailable(format!(
                "the cold tier ({}) could not delete {path}: {e}; the next gc tries again",
                self.url
            ))),
        }
    }

    /// Rewrites the live chunks of `sources` (one tenant's) into new packs of about `target`
    /// bytes and deletes the sources (see the module docs); the sources deleted and the bytes
    /// written.
    pub(crate) async fn compact(
        &self,
        tenant: TenantId,
        sources: Vec<PackObject>,
        target: usize,
    ) -> Result<(u64, u64)> {
        let mut out = Compacted::default();
        let mut waiting: Vec<PackObject> = Vec::new();
        let (mut deleted, mut written) = (0, 0);
        let last = sources.len();
        for (i, object) in sources.into_iter().enumerate() {
            self.live_blocks(&object, &mut out).await?;
            waiting.push(object);
            if out.bytes >= target || i + 1 == last {
                written += self
                    .write_compacted(tenant, std::mem::take(&mut out))
                    .await?;
                for object in waiting.drain(..) {
                    self.delete_object(&object.path).await?;
                    deleted += 1;
                }
            }
        }
        Ok((deleted, written))
    }

    /// The chunks a pack's footer lists whose cold location is still in that pack.
    pub(crate) async fn live_entries(
        &self,
        object: &PackObject,
    ) -> Result<Vec<(ChunkKey, Location)>> {
        let footer = self.read_footer(object).await?;
        let listed: Vec<(ChunkKey, Location)> =
            footer.iter().map(|c| (c.key, c.location())).collect();
        self.meta
            .read(move |t, txn| {
                let mut out = Vec::new();
                for (key, loc) in listed {
                    let current = t
                        .cold
                        .get_unless_damaged(txn, key.as_bytes())?
                        .map(Location::decode)
                        .transpose()?;
                    if current == Some(loc) {
                        out.push((key, loc));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Adds the live chunks of a pack to `out`: blocks whose every member is live as they
    /// are (each checked by its checksum; one that fails stays where it is), and the live
    /// members of partly dead shared blocks cut out, to be encoded anew.
    async fn live_blocks(&self, object: &PackObject, out: &mut Compacted) -> Result<()> {
        let live = self.live_entries(object).await?;
        if live.is_empty() {
            return Ok(());
        }
        let body = self
            .store
            .get(&object.path)
            .await
            .map_err(|e| self.read_error(&object.path, e))?
            .bytes()
            .await
            .map_err(|e| self.read_error(&object.path, e))?;
        let mut by_block: BTreeMap<u64, Vec<(ChunkKey, Location)>> = BTreeMap::new();
        for (key, loc) in live {
            by_block.entry(loc.offset).or_default().push((key, loc));
        }
        let what = format!("cold pack {}", object.path);
        for (offset, members) in by_block {
            let len = members[0].1.len;
            let charged: u64 = members.iter().map(|(_, l)| u64::from(l.charged())).sum();
            if charged < u64::from(len) {
                // Partly dead: the live members are encoded again, without the dead bytes.
                let frames = frames_of(&body, 0, &members, &what);
                for ((key, frame), (_, loc)) in frames.into_iter().zip(&members) {
                    match frame {
                        Ok(frame) => {
                            out.bytes += frame.raw_len();
                            out.recode.push((key, frame));
                            out.old.insert(key, *loc);
                        }
                        Err(e) => skipped(key, object, &e),
                    }
                }
                continue;
            }
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(len as usize);
            let frame = body
                .get(start..end)
                .ok_or_else(|| Error::Format(format!("{what} is short")))
                .and_then(|_| Frame::from_bytes(body.slice(start..end)))
                .and_then(|f| f.verify_checksum().map(|()| f));
            match frame {
                Ok(frame) => {
                    out.bytes += frame.stored_len();
                    out.old.extend(members.iter().copied());
                    let block = match members[0] {
                        (key, Location { part: None, .. }) => Block::whole(key, frame),
                        _ => Block {
                            frame,
                            members: members
                                .iter()
                                .filter_map(|(key, loc)| {
                                    let p = loc.part?;
                                    Some(Member {
                                        key: *key,
                                        inner: p.inner,
                                        raw: p.raw,
                                    })
                                })
                                .collect(),
                        },
                    };
                    out.kept.push(block);
                }
                Err(e) => {
                    for (key, _) in &members {
                        skipped(*key, object, &e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes one compacted pack and re-points the chunks still at their old locations; the
    /// bytes written. Re-encoded members are encoded at the fast level, and the pack is then
    /// marked for recompression.
    async fn write_compacted(&self, tenant: TenantId, c: Compacted) -> Result<u64> {
        let Compacted {
            mut kept,
            recode,
            old,
            ..
        } = c;
        let packing = self.packing;
        let fast = !recode.is_empty() && packing.fast_is_not_final;
        if !recode.is_empty() {
            let how = BlockEncoding {
                compression: packing.fast,
                fresh: true,
                target: packing.block_target,
            };
            kept.extend(crate::blocking::run(move || build(recode, how)).await?);
        }
        if kept.is_empty() {
            return Ok(0);
        }
        let (bytes, new_pack, entries) = encode_pack(tenant, &kept)?;
        drop(kept);
        let size = bytes.len() as u64;
        let _writing = self.writing(tenant, new_pack);
        self.put_create(&self.pack_path(tenant, &new_pack), bytes)
            .await?;
        self.meta
            .write(move |t, txn| {
                let done = recompress::repoint_in_txn(t, txn, entries, &old)?;
                if fast && done.chunks > 0 {
                    recompress::mark_in_txn(t, txn, tenant, &new_pack)?;
                }
                Ok(())
            })
            .await?;
        Ok(size)
    }

    /// Deletes the manifest objects of `tenant` (or of all) that `keep` rejects and that were
    /// written before `before_ms`; how many went.
    pub(crate) async fn sweep_manifests(
        &self,
        tenant: Option<TenantId>,
        keep: impl Fn(TenantId, &ManifestId) -> bool,
        before_ms: u64,
    ) -> Result<u64> {
        let mut n = 0;
        for (t, id, meta) in self.list_manifests_with_meta(tenant).await? {
            let written = u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0);
            if keep(t, &id) || written >= before_ms {
                continue;
            }
            self.delete_object(&meta.location).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes the ref objects of `tenant` (or of all) that a rebuild must not see: every
    /// version but the newest of each ref, and the newest too when it is a deletion or an
    /// expired set and `live` (ref hashes of live local refs) does not name the ref. Older
    /// versions go first, so a crash never leaves an older version without the newer one that
    /// overrides it. How many objects went.
    pub(crate) async fn sweep_ref_objects(
        &self,
        tenant: Option<TenantId>,
        live: &HashSet<[u8; 32]>,
        now_ms: u64,
    ) -> Result<u64> {
        let (listed, _) = self.list_ref_objects().await?;
        let mut by_ref: HashMap<(TenantId, [u8; 32]), Vec<super::refs::RefObjectName>> =
            HashMap::new();
        for name in listed {
            if tenant.is_some_and(|t| t != name.tenant) {
                continue;
            }
            by_ref
                .entry((name.tenant, name.ref_hash))
                .or_default()
                .push(name);
        }
        let mut n = 0;
        for ((_, hash), mut versions) in by_ref {
            versions.sort_by_key(|v| v.version);
            let Some(newest) = versions.pop() else {
                continue;
            };
            for old in versions {
                self.delete_object(&old.path).await?;
                n += 1;
            }
            if live.contains(&hash) {
                continue;
            }
            let gone = match self.read_ref_object(&newest).await {
                Ok(event) => match &event.change {
                    super::refs::RefChange::Deleted => true,
                    super::refs::RefChange::Set(r) => r.is_expired(now_ms),
                },
                // Unreadable: a rebuild skips it too; keep it for fsck to report.
                Err(e) => {
                    tracing::warn!(object = %newest.path, error = %e, "gc leaves an unreadable cold ref object");
                    false
                }
            };
            if gone {
                self.delete_object(&newest.path).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// What compaction carries into its next pack.
#[derive(Default)]
struct Compacted {
    /// Blocks copied as they are.
    kept: Vec<Block>,
    /// Live members of partly dead blocks, each as its own raw frame, to be encoded anew.
    recode: Vec<(ChunkKey, Frame)>,
    /// Where each chunk was.
    old: HashMap<ChunkKey, Location>,
    /// Bytes gathered (stored bytes of kept blocks, raw bytes of members to encode).
    bytes: usize,
}

/// Logs a live chunk compaction leaves in place because its copy fails its check: its index
/// entry keeps pointing at the old pack, which is then deleted, so the chunk reads from another
/// tier, or fsck reports it.
fn skipped(key: ChunkKey, object: &PackObject, e: &Error) {
    tracing::warn!(chunk = %key.id(), pack = %object.path, error = %e, "a cold copy fails its check; compaction does not copy it");
}
