//! What the lifecycle operations take and return: retention rules, garbage collection, fsck.

use std::time::Duration;

use crate::names::Tenant;

/// What a `[[retention]]` rule does with the refs whose key starts with its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetentionPolicy {
    /// Keep the newest N refs under the prefix in each namespace; GC deletes the others.
    KeepLast(u64),
    /// Refs set without `--ttl` expire this long after they were set (also those set before
    /// the rule existed: GC judges them by their creation time).
    Ttl(Duration),
    /// Never deleted by retention, and no default TTL (a push's own `--ttl` still applies).
    Forever,
}

impl std::fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeepLast(n) => write!(f, "keep_last = {n}"),
            Self::Ttl(d) => write!(f, "ttl = {}", humantime::format_duration(*d)),
            Self::Forever => f.write_str("keep = forever"),
        }
    }
}

/// One `[[retention]]` table: a policy for the ref keys under `prefix`, in every namespace.
/// When several rules match a key, the one with the longest prefix decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    /// Ref key prefix, e.g. `commit/` (empty: every key).
    pub prefix: String,
    /// What happens to the refs under it.
    pub policy: RetentionPolicy,
}

/// How to run one garbage collection ([`crate::Store::gc`]).
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Only this tenant's refs and chunks (a tenant admin's run); `None` = every tenant.
    pub tenant: Option<Tenant>,
    /// Unreferenced chunks younger than this (by their last write or read) are kept: they may
    /// belong to a push in flight.
    pub grace: Duration,
    /// Report what would go, delete nothing.
    pub dry_run: bool,
    /// Warm and cold packs whose live share falls under this (0..=1) are rewritten.
    pub compact_below: f64,
}

/// What one garbage collection did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Refs that stay (live after retention).
    pub live_refs: u64,
    /// Distinct chunks those refs name.
    pub live_chunks: u64,
    /// Chunks removed from every tier.
    pub swept_chunks: u64,
    /// Stored bytes those chunks took, summed over the tiers that held them.
    pub swept_bytes: u64,
    /// Unreferenced manifests removed (index and cold tier).
    pub swept_manifests: u64,
    /// Refs removed because they had expired.
    pub expired_refs: u64,
    /// Refs removed by each retention rule.
    pub retention: Vec<RetentionOutcome>,
    /// Warm pack files and cold pack objects rewritten because their live share was low, or
    /// deleted because nothing in them was live.
    pub compacted_packs: u64,
    /// Bytes that gave back (old packs' sizes minus what their live chunks take now).
    pub compacted_bytes: u64,
    /// Cold objects deleted: old packs, unreferenced manifests, refs' superseded versions and
    /// tombstones.
    pub deleted_objects: u64,
    /// Unreferenced chunks kept because they are younger than the grace period.
    pub kept_young_chunks: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

/// What one retention rule removed in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// The rule's prefix.
    pub prefix: String,
    /// The rule, as written in the config file.
    pub policy: String,
    /// Refs it deleted.
    pub deleted: u64,
}

/// The step a long-running operation (GC, fsck) is at, for progress displays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The step's name (`retention`, `mark`, `sweep`, `compact`, `cold`, `check`, …).
    pub phase: &'static str,
    /// Items done in this step.
    pub done: u64,
    /// Items in this step (0 when not known yet).
    pub total: u64,
}

/// What [`crate::Store::fsck`] found (and, with repair, fixed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FsckReport {
    /// Chunk index entries checked.
    pub checked_chunks: u64,
    /// Manifests checked (every live ref's).
    pub checked_manifests: u64,
    /// Copies or records that an index entry or a manifest names but that are not there.
    pub missing: u64,
    /// Copies or records whose bytes fail their check.
    pub corrupt: u64,
    /// Of those, fixed from a good copy or by dropping an entry that pointed nowhere.
    pub repaired: u64,
    /// Leftovers of interrupted work: files, objects or queue entries nothing needs.
    pub garbage: u64,
    /// Each problem, with the refs it touches.
    pub problems: Vec<FsckProblem>,
    /// Wall time of the run.
    pub seconds: f64,
}

impl FsckReport {
    /// Whether something is missing or corrupt and was not repaired (fsck's exit code 1).
    pub fn has_unrepaired(&self) -> bool {
        self.missing + self.corrupt > self.repaired
    }
}

/// One thing fsck found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsckProblem {
    /// What is wrong, e.g. "chunk 3f…: the warm copy is corrupt (a good hot copy exists)".
    pub what: String,
    /// The refs it touches, as `namespace key` (empty for a chunk no ref names).
    pub refs: Vec<String>,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}
