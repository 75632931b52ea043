//! Hot tier: chunk frames in the LMDB `hot` table (lz4 by default).
//!
//! Reads copy the frame out of the map inside one read transaction. Writes go through the
//! group committer ([`crate::meta::Meta::write`]); the `*_in_txn` functions let the store put
//! a chunk, its index entry and its cold-queue entry in one transaction.

use bytes::Bytes;
use heed::RwTxn;

use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::error::Result;
use crate::meta::{
    ChunkInfo, ChunkKey, Meta, Tables, bump_counter, chunk_info_for_update, clear_tier_bit,
    list_table, tier_bits,
};
use crate::names::TenantId;
use crate::tier::{ChunkTier, TierName};

/// The hot tier.
#[derive(Clone, Debug)]
pub(crate) struct HotTier {
    meta: Meta,
    compression: Compression,
}

impl HotTier {
    pub(crate) fn new(meta: Meta, compression: Compression) -> Self {
        Self { meta, compression }
    }

    /// Re-encodes a verified frame with the hot codec unless it already uses it.
    pub(crate) fn prepare(&self, frame: &Frame) -> Result<Frame> {
        // Kept as uploaded when it is in the hot codec and carries its checksum (the read path
        // checks hot copies by it); older format-1 frames are upgraded.
        if frame.codec() == self.compression.codec() && frame.has_checksum() {
            return Ok(frame.clone());
        }
        let raw = frame.decode(MAX_CHUNK_LEN)?;
        frame.recode(&raw, self.compression)
    }

    /// Frames of many keys in one read transaction (on the calling blocking thread).
    pub(crate) fn get_many_now(&self, keys: &[ChunkKey]) -> Result<Vec<Option<Frame>>> {
        self.meta.read_now(|t, txn| {
            keys.iter()
                .map(|k| match t.hot.get(txn, k.as_bytes())? {
                    Some(v) => Frame::from_bytes(Bytes::copy_from_slice(v)).map(Some),
                    None => Ok(None),
                })
                .collect()
        })
    }
}

/// Stores a prepared frame and marks the chunk hot. Returns whether it was new to this tier.
pub(crate) fn put_in_txn(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    key: ChunkKey,
    frame: &Frame,
) -> Result<bool> {
    let k = key.as_bytes();
    let mut info = match chunk_info_for_update(t, txn, key, frame.raw_len() as u32)? {
        Some(info) => info,
        None => ChunkInfo {
            raw_len: frame.raw_len() as u32,
            tiers: 0,
            last_access_s: t.clock.now_s(),
        },
    };
    if info.tiers & tier_bits::HOT != 0 && t.hot.get(txn, k)?.is_some() {
        return Ok(false);
    }
    t.hot.put(txn, k, frame.as_bytes())?;
    info.tiers |= tier_bits::HOT;
    t.chunks.put(txn, k, &info.encode())?;
    bump_counter(
        t,
        txn,
        key.tenant(),
        tier_bits::HOT,
        1,
        frame.stored_len() as i64,
    )?;
    Ok(true)
}

/// Removes a chunk from the hot table. Returns whether it was there.
pub(crate) fn delete_in_txn(t: &Tables, txn: &mut RwTxn<'_>, key: ChunkKey) -> Result<bool> {
    let k = key.as_bytes();
    let Some(len) = t.hot.get(txn, k)?.map(<[u8]>::len) else {
        return Ok(false);
    };
    t.hot.delete(txn, k)?;
    clear_tier_bit(t, txn, key, tier_bits::HOT)?;
    bump_counter(t, txn, key.tenant(), tier_bits::HOT, -1, -(len as i64))?;
    Ok(true)
}

impl ChunkTier for HotTier {
    fn name(&self) -> TierName {
        TierName::Hot
    }

    async fn contains(&self, key: ChunkKey) -> Result<bool> {
        self.meta
            .read(move |t, txn| Ok(t.hot.get(txn, key.as_bytes())?.is_some()))
            .await
    }

    async fn get(&self, key: ChunkKey) -> Result<Option<Frame>> {
        let this = self.clone();
        crate::blocking::run(move || Ok(this.get_many_now(&[key])?.pop().flatten())).await
    }

    async fn put(&self, batch: Vec<(ChunkKey, Frame)>) -> Result<u64> {
        let prepared = batch
            .into_iter()
            .map(|(k, f)| Ok((k, self.prepare(&f)?)))
            .collect::<Result<Vec<_>>>()?;
        self.meta
            .write(move |t, txn| {
                let mut new = 0;
                for (key, frame) in &prepared {
                    new += u64::from(put_in_txn(t, txn, *key, frame)?);
                }
                Ok(new)
            })
            .await
    }

    async fn delete(&self, keys: Vec<ChunkKey>) -> Result<u64> {
        self.meta
            .write(move |t, txn| {
                let mut n = 0;
                for key in keys {
                    n += u64::from(delete_in_txn(t, txn, key)?);
                }
                Ok(n)
            })
            .await
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ChunkKey>> {
        let meta = self.meta.clone();
        crate::blocking::run(move || list_table(&meta, |t| t.hot, tenant)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hot_tier_passes_the_conformance_suite() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("tempdir", e))?;
        let meta = Meta::open(dir.path(), 1 << 30)?;
        let tier = HotTier::new(meta, Compression::Lz4);
        crate::tier::conformance::put_get_contains_delete_list(&tier).await
    }
}
