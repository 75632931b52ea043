//! Commits under [`Durability::Cold`](super::Durability::Cold): the push is acknowledged only
//! once the object store holds every chunk of the blob, its manifest and the ref.
//!
//! Before the ref's LMDB transaction, the commit
//! 1. writes the blob's chunks that have no cold copy yet, read from hot or warm and
//!    re-encoded at the fast cold level on the blocking pool (this is the request's own work,
//!    not the low-priority write-behind's; the packs are marked and recompressed at the cold
//!    level when the daemon is idle, `cold_recompress.rs`), in packs of `cold_pack_target`
//!    bytes, indexed as cold;
//! 2. writes the manifest object;
//! 3. takes the next ref event version and writes the ref's cold object with it.
//!
//! Only then is the ref set locally (its event is also queued, with a newer version, so that
//! the cold tier's newest event for the ref always matches the local index, also when two
//! commits of one ref race). Any failure before that answers
//! [`Error::Unavailable`](crate::Error::Unavailable) and sets nothing: the chunks stay stored
//! and queued, and the client pushes again once the cold tier works. A cold ref object written
//! for a commit that then failed locally names a blob the cold tier holds completely, so a
//! rebuild may restore that ref; nothing else can differ.

use std::sync::Arc;

use super::Engine;
use crate::cold::block::{self, Block, BlockEncoding};
use crate::cold::refs::{RefChange, RefEvent};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::Manifest;
use crate::meta::{ChunkKey, chunk_info, tier_bits};
use crate::names::{Namespace, RefKey};
use crate::refs::RefRecord;
use crate::writeback::next_ref_version;

/// Writes the blob's missing cold copies, its manifest and the ref's cold object.
pub(super) async fn write_through(
    e: &Arc<Engine>,
    ns: &Namespace,
    key: &RefKey,
    manifest: &Manifest,
    encoded: &[u8],
    record: &RefRecord,
) -> Result<()> {
    let url = e.config.cold_url.clone();
    let unavailable = |err: Error| match err {
        Error::ShuttingDown => Error::ShuttingDown,
        other => Error::Unavailable(format!(
            "the cold tier {url} did not take the push ({other}); with --durability cold a push \
             is acknowledged only once the object store holds it, so the ref was not set. \
             Push again once the cold tier works"
        )),
    };
    chunks_to_cold(e, ns, manifest).await.map_err(unavailable)?;
    let tid = ns.tenant().id();
    let id = ManifestId::of(encoded);
    e.cold
        .put_manifest(tid, &id, encoded)
        .await
        .map_err(unavailable)?;
    let version = e.meta.write(next_ref_version).await.map_err(unavailable)?;
    let event = RefEvent {
        ns: ns.clone(),
        key: key.clone(),
        version,
        at_ms: e.meta.clock().now_ms(),
        change: RefChange::Set(record.clone()),
    };
    e.cold
        .put_ref_event(tid, &event.encode())
        .await
        .map_err(unavailable)
}

/// Writes every chunk of `manifest` that has no cold copy, in packs.
async fn chunks_to_cold(e: &Arc<Engine>, ns: &Namespace, manifest: &Manifest) -> Result<()> {
    let tid = ns.tenant().id();
    let mut seen = std::collections::HashSet::new();
    let keys: Vec<ChunkKey> = manifest
        .entries()
        .iter()
        .map(|entry| ChunkKey::new(tid, &entry.id))
        .filter(|k| seen.insert(*k))
        .collect();
    let lacking: Vec<ChunkKey> = e
        .meta
        .read(move |t, txn| {
            let mut out = Vec::new();
            for k in keys {
                let cold = chunk_info(t, txn, &k)?.is_some_and(|i| i.tiers & tier_bits::COLD != 0)
                    && t.cold.contains(txn, k.as_bytes())?;
                if !cold {
                    out.push(k);
                }
            }
            Ok(out)
        })
        .await?;
    let target = e.config.cold_pack_target;
    // The push waits for this: the fast level, recompressed later like a backlog's packs.
    let how = BlockEncoding {
        compression: e.config.cold_fast_compression,
        fresh: false,
        target: e.config.cold_block_target,
    };
    let fast = how.compression != e.config.cold_compression;
    let mut pack: Vec<Block> = Vec::new();
    let mut bytes = 0usize;
    for slice in lacking.chunks(256) {
        e.check_open()?;
        let hot = e.hot.clone();
        let warm = e.warm.clone();
        let part = slice.to_vec();
        let encoded = crate::blocking::map_parts(part, 32, move |part| {
            let frames = hot.get_many_now(&part)?;
            let local = part
                .into_iter()
                .zip(frames)
                .map(|(k, f)| match f {
                    Some(f) => Ok((k, f)),
                    None => warm.get_now(k)?.map(|f| (k, f)).ok_or_else(|| {
                        Error::NotFound(format!("chunk {} has no local copy", k.id()))
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            block::build(local, how)
        })
        .await?;
        for b in encoded {
            bytes += b.frame.stored_len();
            pack.push(b);
            if bytes >= target {
                e.cold
                    .put_pack(tid, std::mem::take(&mut pack), fast, true)
                    .await?;
                bytes = 0;
            }
        }
    }
    if !pack.is_empty() {
        e.cold.put_pack(tid, pack, fast, true).await?;
    }
    // The queue entries of these chunks find them cold and are dropped by the write-behind.
    Ok(())
}
