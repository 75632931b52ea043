//! The contract every tier keeps, and the conformance suite that checks it.
//!
//! A tier stores chunk frames under [`ChunkKey`]s (tenant + chunk id). Frames handed to
//! [`ChunkTier::put`] have been verified by the caller; a tier re-encodes them with its own
//! codec. Puts are idempotent: storing a key that is present is a success that changes nothing.
//! A tier does not verify on `get`; the store's read pipeline does, for every tier.

use std::future::Future;

use crate::codec::Frame;
use crate::error::Result;
use crate::meta::{ChunkKey, tier_bits};
use crate::names::TenantId;

/// The three tiers, fastest first: the order a read tries them in.
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
    /// Every tier, in read order.
    pub const ALL: [TierName; 3] = [TierName::Hot, TierName::Warm, TierName::Cold];

    /// `hot`, `warm` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Warm => "warm",
            Self::Cold => "cold",
        }
    }

    /// The tier's bit in the `chunks` table and its counters key.
    pub(crate) fn bit(self) -> u8 {
        match self {
            Self::Hot => tier_bits::HOT,
            Self::Warm => tier_bits::WARM,
            Self::Cold => tier_bits::COLD,
        }
    }

    /// Position in [`TierName::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One storage tier.
pub trait ChunkTier: Send + Sync {
    /// Which tier this is.
    fn name(&self) -> TierName;

    /// Whether the tier holds `key`.
    fn contains(&self, key: ChunkKey) -> impl Future<Output = Result<bool>> + Send;

    /// The stored frame of `key`, if held.
    fn get(&self, key: ChunkKey) -> impl Future<Output = Result<Option<Frame>>> + Send;

    /// Stores verified frames; returns how many were new. Durable when it returns.
    fn put(&self, batch: Vec<(ChunkKey, Frame)>) -> impl Future<Output = Result<u64>> + Send;

    /// Forgets `keys`; returns how many were held.
    fn delete(&self, keys: Vec<ChunkKey>) -> impl Future<Output = Result<u64>> + Send;

    /// Every key of a tenant the tier holds, in key order.
    fn list(&self, tenant: TenantId) -> impl Future<Output = Result<Vec<ChunkKey>>> + Send;
}

/// The conformance suite: every tier runs it in its own tests.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::codec::{Compression, MAX_CHUNK_LEN};
    use crate::ids::ChunkId;

    fn chunk(n: u32, len: usize) -> (ChunkKey, Frame, Vec<u8>) {
        let raw: Vec<u8> = (0..len)
            .map(|i| (i as u32 ^ n.wrapping_mul(2_654_435_761)) as u8 % 17)
            .collect();
        let tenant = TenantId([n as u8 % 2, 0, 0, 0, 0, 0, 0, 1]);
        let key = ChunkKey::new(tenant, &ChunkId::of(&raw));
        let frame = Frame::encode(&raw, Compression::Lz4).expect("encoding test data");
        (key, frame, raw)
    }

    /// Put, get, contains, list, idempotent put, delete.
    pub(crate) async fn put_get_contains_delete_list<T: ChunkTier>(tier: &T) -> Result<()> {
        let items: Vec<_> = (0..20).map(|n| chunk(n, 100 + n as usize * 997)).collect();
        let batch: Vec<_> = items.iter().map(|(k, f, _)| (*k, f.clone())).collect();
        assert_eq!(
            tier.put(batch.clone()).await?,
            20,
            "{:?}: first put stores all",
            tier.name()
        );
        assert_eq!(
            tier.put(batch).await?,
            0,
            "{:?}: second put is a no-op",
            tier.name()
        );
        for (key, _, raw) in &items {
            assert!(tier.contains(*key).await?);
            let frame = tier.get(*key).await?.expect("stored frame is returned");
            let out = frame.decode_verified(&key.id(), MAX_CHUNK_LEN)?;
            assert_eq!(&out[..], &raw[..]);
        }
        let (absent, _, _) = chunk(999, 10);
        assert!(!tier.contains(absent).await?);
        assert!(tier.get(absent).await?.is_none());

        let tenant0 = items[0].0.tenant();
        let mut expected: Vec<ChunkKey> = items
            .iter()
            .map(|(k, _, _)| *k)
            .filter(|k| k.tenant() == tenant0)
            .collect();
        expected.sort();
        assert_eq!(
            tier.list(tenant0).await?,
            expected,
            "{:?}: list per tenant",
            tier.name()
        );

        let gone: Vec<ChunkKey> = items.iter().take(5).map(|(k, _, _)| *k).collect();
        assert_eq!(tier.delete(gone.clone()).await?, 5);
        assert_eq!(tier.delete(gone.clone()).await?, 0, "delete is idempotent");
        for key in &gone {
            assert!(!tier.contains(*key).await?);
            assert!(tier.get(*key).await?.is_none());
        }
        for (key, _, _) in items.iter().skip(5) {
            assert!(tier.contains(*key).await?, "delete left other keys alone");
        }
        Ok(())
    }
}
