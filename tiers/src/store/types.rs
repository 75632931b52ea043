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
    /// Raw (uncompressed) bytes of the chunks held: from a scan of the chunk index, at most
    /// [`crate::store::RAW_SCAN_EVERY`] old.
    pub raw_bytes: u64,
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
    /// Cold packs written at the fast level while a backlog drained, waiting to be
    /// recompressed at the cold level when the daemon is idle.
    pub cold_recompress: u64,
    /// What the background scrub did since the store opened.
    pub scrub: ScrubStats,
    /// What the evictor and the promotions did since the store opened.
    pub movement: MovementStats,
}

impl Stats {
    /// The figures of one tier (zero when absent).
    pub fn tier(&self, name: TierName) -> TierStats {
        self.tiers
            .iter()
            .find(|(t, _)| *t == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

/// Movement between tiers since the store opened (`evict.rs`, `admission.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MovementStats {
    /// Chunks the evictor copied from hot to warm (re-encoded with the warm codec).
    pub demoted: u64,
    /// Copies the evictor dropped, per tier (hot, warm): chunks and stored bytes.
    pub evicted: Vec<(TierName, u64, u64)>,
    /// Chunks reads and warm-ups promoted into hot.
    pub promoted: u64,
    /// Chunks read from below hot that the admission rule kept out of hot.
    pub not_admitted: u64,
    /// Eviction passes run (a pass starts when a tier reaches its budget).
    pub passes: u64,
}

/// When a push is acknowledged ([`StoreConfig::durability`](super::StoreConfig::durability)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once the hot tier holds it durably (fsync'd); the cold copy is written behind.
    #[default]
    Local,
    /// Once the object store holds every chunk, the manifest and the ref.
    Cold,
}

/// What [`crate::Store::warm`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarmReport {
    /// Distinct chunks of the ref.
    pub chunks: u64,
    /// Of those, chunks in hot after the warm-up.
    pub hot_chunks: u64,
    /// Chunks this call promoted into hot.
    pub promoted_chunks: u64,
    /// Raw bytes of the chunks this call promoted into hot.
    pub promoted_bytes: u64,
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

/// How [`crate::Store::read_blob`] hands over the chunks that lie whole in the range read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadForm {
    /// Everything as verified raw bytes, normalized chunks restored.
    Raw,
    /// Plain chunks as their stored frames ([`BlobPart::Frame`]); normalized chunks restored,
    /// as raw bytes.
    Frames,
    /// Every whole chunk as its stored frame, normalized ones as [`BlobPart::Normalized`]:
    /// the reader puts the manifest's versions back itself, and the server spends no CPU on
    /// them.
    StoredFrames,
}

/// One piece of a blob being read, in order.
#[derive(Clone, Debug)]
pub enum BlobPart {
    /// A whole chunk in its stored form: the reader decodes and verifies it.
    Frame(ChunkId, Frame),
    /// A whole normalized chunk in its stored form (with placeholders), only under
    /// [`ReadForm::StoredFrames`]: the reader decodes and verifies it against the id, then
    /// restores it with the manifest's version table.
    Normalized(ChunkId, Frame),
    /// Raw verified bytes (the ends of a byte range, and whatever is not sent as a frame).
    Data(Bytes),
}
