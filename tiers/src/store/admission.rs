//! Which chunks a read lets into the hot tier, and which into the warm tier.
//!
//! A chunk found below hot is a candidate for promotion. Promoting everything a read touches
//! would let one pull of a blob larger than the hot budget push every other chunk out of hot
//! (and then out of warm), so promotion follows an admission rule:
//!
//! - **Into hot.** A chunk read from warm or cold enters hot when
//!   - it belongs to a blob read of at most an eighth of `--hot-bytes` (raw length: small
//!     blobs, the usual LSP and CI reads, are always admitted), or
//!   - it was missed before, recently (also the rule for single chunks read by id, whose
//!     blob is unknown): the engine remembers the last [`GHOST_KEYS`] to
//!     [`GHOST_KEYS`] × 2 chunks that were read below hot and not admitted (two generations of
//!     keys, 40 bytes each, about 5 MiB at most); a second miss admits the chunk. So the second
//!     pull of a large blob soon after the first brings it into hot, and a single pass over a
//!     huge blob does not.
//!   - Warm-ups (`scipcache warm`) admit every chunk of their ref, up to the budget
//!     (`warm_up.rs`), and a bad hot copy is always replaced by the good copy found below.
//!   - The engine's own passes over a blob (building its lookup tables, checking a commit's
//!     restored bytes) admit nothing and copy nothing into warm: a scan is not a caller's
//!     read, and it must not push the chunks callers read out of hot. Bad copies they find
//!     are still repaired.
//! - **Into warm.** A chunk read from cold that is not admitted into hot is copied into warm
//!   (in the warm codec) when the warm tier is on, in the background and only while fewer than
//!   [`WARM_FILLS`] such copies are in flight (a busy daemon skips them rather than queue).
//!
//! Whatever enters a tier is then subject to its budget: the evictor (`evict.rs`) drops the
//! least recently used chunks first, and pinned refs' chunks last.

use std::collections::HashSet;
use std::sync::Mutex;

use super::background::lock;
use crate::meta::ChunkKey;

/// Keys per generation of the second-miss memory.
pub(crate) const GHOST_KEYS: usize = 1 << 16;
/// Background copies from cold into warm in flight at most.
pub(crate) const WARM_FILLS: usize = 2;

/// What a read may promote into hot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A read of this many raw bytes of a blob (a whole blob, or a range): admitted if small
    /// against the budget, else on a second miss.
    Read(u64),
    /// A read of single chunks by id, whose blob is unknown: admitted on a second miss.
    SecondMiss,
    /// Everything (warm-ups).
    Always,
    /// Nothing, into hot or warm (the engine's own scans).
    Never,
}

/// Chunks read below hot recently and not admitted, in two generations.
#[derive(Debug, Default)]
pub(crate) struct Ghosts {
    sets: Mutex<[HashSet<ChunkKey>; 2]>,
}

impl Ghosts {
    /// Whether `key` was missed recently; remembers it if not.
    fn seen_again(&self, key: ChunkKey) -> bool {
        let mut sets = lock(&self.sets);
        if sets[0].contains(&key) || sets[1].contains(&key) {
            return true;
        }
        if sets[0].len() >= GHOST_KEYS {
            sets[1] = std::mem::take(&mut sets[0]);
        }
        sets[0].insert(key);
        false
    }

    /// Forgets a key once it was admitted.
    fn forget(&self, key: &ChunkKey) {
        let mut sets = lock(&self.sets);
        sets[0].remove(key);
        sets[1].remove(key);
    }
}

impl Admit {
    /// Whether a chunk read below hot enters hot, by the rule above.
    pub(crate) fn admits(self, hot_budget: u64, ghosts: &Ghosts, key: ChunkKey) -> bool {
        let admitted = match self {
            Admit::Always => true,
            Admit::Read(len) => len <= hot_budget / 8 || ghosts.seen_again(key),
            Admit::SecondMiss => ghosts.seen_again(key),
            Admit::Never => false,
        };
        if admitted && self != Admit::Always {
            ghosts.forget(&key);
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChunkId;
    use crate::names::TenantId;

    fn key(i: u32) -> ChunkKey {
        ChunkKey::new(TenantId([1; 8]), &ChunkId::of(&i.to_le_bytes()))
    }

    #[test]
    fn small_reads_are_admitted_and_large_ones_only_on_a_second_miss() {
        let ghosts = Ghosts::default();
        let budget = 8 << 20;
        assert!(Admit::Read(1 << 20).admits(budget, &ghosts, key(1)));
        assert!(!Admit::Read(100 << 20).admits(budget, &ghosts, key(2)));
        assert!(Admit::Read(100 << 20).admits(budget, &ghosts, key(2)));
        // Admitted once, it is forgotten: a later eviction and miss starts over.
        assert!(!Admit::Read(100 << 20).admits(budget, &ghosts, key(2)));
        assert!(Admit::Always.admits(budget, &ghosts, key(3)));
        // A scan admits nothing, and leaves no memory of its misses behind.
        assert!(!Admit::Never.admits(budget, &ghosts, key(4)));
        assert!(!Admit::Never.admits(budget, &ghosts, key(4)));
        assert!(!Admit::Read(100 << 20).admits(budget, &ghosts, key(4)));
    }

    #[test]
    fn the_second_miss_memory_keeps_two_generations_and_forgets_older_keys() {
        let ghosts = Ghosts::default();
        let big = Admit::Read(u64::MAX);
        for i in 0..(GHOST_KEYS as u32 * 3) {
            assert!(!big.admits(1 << 30, &ghosts, key(i)));
        }
        // The newest generation and the one before are remembered; the first is gone.
        assert!(big.admits(1 << 30, &ghosts, key(GHOST_KEYS as u32 * 3 - 1)));
        assert!(big.admits(1 << 30, &ghosts, key(GHOST_KEYS as u32 + 5)));
        assert!(!big.admits(1 << 30, &ghosts, key(0)));
    }
}
