//! What the store's methods return.

use bytes::Bytes;

use crate::codec::Frame;
use crate::ids::ChunkId;
use crate::tier::TierName;

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

/// What [`crate::Store::stats`] reports.
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
    /// What the background scrub did since the store opened.
    pub scrub: ScrubStats,
}

/// The background scrub's findings since the store opened (`scrub.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubStats {
    /// Chunks whose every copy was read and verified.
    pub checked: u64,
    /// Bad copies found (and repaired from a good one), per tier.
    pub bad_copies: Vec<(TierName, u64)>,
    /// Chunks no tier held intact.
    pub lost: u64,
    /// Times the scrub reached the end of the chunk index and started again.
    pub cycles: u64,
}

/// What [`crate::Store::put_chunks`] did.
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
