//! Lifecycle calls: deleting every ref under a prefix, garbage collection and fsck
//! (`scipcache rm NS --prefix P`, `scipcache gc`, `scipcache fsck`).
//!
//! GC and fsck stream their progress: the callback given to [`Client::gc`] or
//! [`Client::fsck`] sees each update, and the call returns the final report. Dropping the
//! call's future (Ctrl-C in the CLI) closes the stream, which cancels the run on the server
//! at its next safe point.

use std::time::{Duration, Instant};

use scipcache_proto::pb;
use scipcache_tiers::names::{KeyPrefix, Namespace};
use serde::Serialize;

use crate::connect::Client;
use crate::error::{Error, Result};

/// Where a GC or fsck is on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunProgress {
    /// The step: `retention`, `mark`, `sweep`, `compact`, `cold`, `check`, …
    pub phase: String,
    /// Items done in this step.
    pub done: u64,
    /// Items in this step; 0 when the server does not know yet.
    pub total: u64,
}

impl From<pb::LifecycleProgress> for RunProgress {
    fn from(p: pb::LifecycleProgress) -> Self {
        Self {
            phase: p.phase,
            done: p.done,
            total: p.total,
        }
    }
}

/// How to run a GC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcOptions {
    /// Report what would go, delete nothing.
    pub dry_run: bool,
    /// Keep unreferenced chunks younger than this; `None` = the server's `--gc-grace`.
    pub grace: Option<Duration>,
}

/// What a GC did (`scipcache gc --json` prints it).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// Whether it was a dry run (nothing deleted; the figures say what would go).
    pub dry_run: bool,
    /// The tenant it covered; `None` = every tenant (an operator's run).
    pub tenant: Option<String>,
    /// The grace period it used, in seconds.
    pub grace_seconds: f64,
    /// Refs that stay.
    pub live_refs: u64,
    /// Distinct chunks those refs name.
    pub live_chunks: u64,
    /// Chunks removed from every tier.
    pub swept_chunks: u64,
    /// Stored bytes those chunks took, summed over the tiers that held them.
    pub swept_bytes: u64,
    /// Unreferenced manifests removed.
    pub swept_manifests: u64,
    /// Refs removed because they had expired.
    pub expired_refs: u64,
    /// Refs removed by each `[[retention]]` rule.
    pub retention: Vec<RetentionOutcome>,
    /// Packs rewritten because their live share was low.
    pub compacted_packs: u64,
    /// Bytes compaction gave back.
    pub compacted_bytes: u64,
    /// Cold objects deleted.
    pub deleted_objects: u64,
    /// Unreferenced chunks kept because they are younger than the grace period.
    pub kept_young_chunks: u64,
    /// Wall time of the run on the server.
    pub seconds: f64,
}

/// What one retention rule removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionOutcome {
    /// The rule's prefix.
    pub prefix: String,
    /// The rule, e.g. `keep_last = 10`.
    pub policy: String,
    /// Refs it deleted.
    pub deleted: u64,
}

impl From<pb::GcReport> for GcReport {
    fn from(r: pb::GcReport) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let grace_seconds = r.grace_ms as f64 / 1000.0;
        Self {
            dry_run: r.dry_run,
            tenant: (!r.tenant.is_empty()).then_some(r.tenant),
            grace_seconds,
            live_refs: r.live_refs,
            live_chunks: r.live_chunks,
            swept_chunks: r.swept_chunks,
            swept_bytes: r.swept_bytes,
            swept_manifests: r.swept_manifests,
            expired_refs: r.expired_refs,
            retention: r
                .retention
                .into_iter()
                .map(|o| RetentionOutcome {
                    prefix: o.prefix,
                    policy: o.policy,
                    deleted: o.deleted,
                })
                .collect(),
            compacted_packs: r.compacted_packs,
            compacted_bytes: r.compacted_bytes,
            deleted_objects: r.deleted_objects,
            kept_young_chunks: r.kept_young_chunks,
            seconds: r.seconds,
        }
    }
}

/// What an fsck found (`scipcache fsck --json` prints it).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FsckReport {
    /// Whether the run repaired what it could.
    pub repair: bool,
    /// Chunk index entries checked.
    pub checked_chunks: u64,
    /// Manifests checked.
    pub checked_manifests: u64,
    /// Copies or records named somewhere but not there.
    pub missing: u64,
    /// Copies or records whose bytes fail their check.
    pub corrupt: u64,
    /// Of those, repaired.
    pub repaired: u64,
    /// Leftovers of interrupted work (not errors).
    pub garbage: u64,
    /// The problems the server listed.
    pub problems: Vec<FsckProblem>,
    /// Problems beyond those listed.
    pub problems_left_off: u64,
    /// Wall time of the run on the server.
    pub seconds: f64,
}

impl FsckReport {
    /// Whether something is missing or corrupt and was not repaired (`fsck` exits 1).
    pub fn has_unrepaired(&self) -> bool {
        self.missing + self.corrupt > self.repaired
    }

    /// The cause line of an fsck that leaves damage, e.g. `fsck found 2 corrupt and 1
    /// missing …; run fsck --repair …` (the CLI prints it after `data loss: `).
    pub fn damage_message(&self) -> String {
        let left = (self.missing + self.corrupt).saturating_sub(self.repaired);
        let found = format!(
            "fsck found {} corrupt and {} missing copies or records",
            self.corrupt, self.missing
        );
        if self.repair {
            format!(
                "{found}; {} repaired, {left} could not be (no good copy anywhere): push the \
                 refs named in the problems again, or delete them",
                self.repaired
            )
        } else {
            format!(
                "{found}; run fsck --repair to repair those with a good copy elsewhere (an \
                 operator's token)"
            )
        }
    }
}

/// One problem fsck found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FsckProblem {
    /// What is wrong.
    pub what: String,
    /// The refs it touches, as `namespace key`.
    pub refs: Vec<String>,
    /// Whether the run repaired it.
    pub repaired: bool,
}

impl FsckReport {
    fn from_wire(r: pb::FsckReport, repair: bool) -> Self {
        Self {
            repair,
            checked_chunks: r.checked_chunks,
            checked_manifests: r.checked_manifests,
            missing: r.missing,
            corrupt: r.corrupt,
            repaired: r.repaired,
            garbage: r.garbage,
            problems: r
                .problems
                .into_iter()
                .map(|p| FsckProblem {
                    what: p.what,
                    refs: p.refs,
                    repaired: p.repaired,
                })
                .collect(),
            problems_left_off: r.problems_left_off,
            seconds: r.seconds,
        }
    }
}

/// What `rm NS --prefix P` did (`--json`: `ns prefix deleted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeletePrefixReport {
    /// The namespace.
    pub ns: String,
    /// The prefix.
    pub prefix: String,
    /// Refs deleted.
    pub deleted: u64,
}

impl Client {
    /// Deletes every ref of `ns` whose key starts with `prefix` (needs write access): their
    /// chunks go at the next GC if nothing else uses them. Returns how many were deleted. Not
    /// retried: a first attempt may have deleted some. An empty prefix is refused (it would
    /// name every ref of the namespace).
    pub async fn delete_prefix(&self, ns: &Namespace, prefix: &KeyPrefix) -> Result<u64> {
        if prefix.as_str().is_empty() {
            return Err(Error::InvalidArgument(
                "an empty --prefix would delete every ref of the namespace; name a prefix such \
                 as commit/"
                    .into(),
            ));
        }
        let req = pb::DeletePrefixRequest {
            namespace: ns.to_string(),
            prefix: prefix.as_str().to_owned(),
        };
        let answer = self
            .unary_once(
                "Refs/DeletePrefix",
                &|c: Client, r| async move { c.refs().delete_prefix(r).await },
                req,
            )
            .await?;
        Ok(answer.deleted)
    }

    /// Runs a garbage collection: of the caller's tenant (a tenant admin's token) or of every
    /// tenant (the operator's). `progress` sees each update; the report comes once the sweep,
    /// compaction and deletions are done. Only one GC runs at a time on a server: another is
    /// refused with `FAILED_PRECONDITION`.
    pub async fn gc(
        &self,
        opts: &GcOptions,
        mut progress: impl FnMut(&RunProgress),
    ) -> Result<GcReport> {
        let started = Instant::now();
        let req = pb::GcRequest {
            dry_run: opts.dry_run,
            grace_ms: opts
                .grace
                .map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
            tenant: String::new(),
        };
        let mut stream = self.admin().gc(req).await?.into_inner();
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(pb::gc_event::Event::Progress(p)) => progress(&p.into()),
                Some(pb::gc_event::Event::Report(r)) => {
                    let mut report = GcReport::from(r);
                    if report.seconds == 0.0 {
                        report.seconds = started.elapsed().as_secs_f64();
                    }
                    return Ok(report);
                }
                None => {}
            }
        }
        Err(Error::Protocol(
            "the gc stream ended without a report".into(),
        ))
    }

    /// Checks every stored copy and manifest on the server, repairing from good copies with
    /// `repair` (the operator's token). `progress` sees each update. A report with
    /// [`FsckReport::has_unrepaired`] is still `Ok`: the caller decides what damage means.
    pub async fn fsck(
        &self,
        repair: bool,
        mut progress: impl FnMut(&RunProgress),
    ) -> Result<FsckReport> {
        let mut stream = self
            .admin()
            .fsck(pb::FsckRequest { repair })
            .await?
            .into_inner();
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(pb::fsck_event::Event::Progress(p)) => progress(&p.into()),
                Some(pb::fsck_event::Event::Report(r)) => {
                    return Ok(FsckReport::from_wire(r, repair));
                }
                None => {}
            }
        }
        Err(Error::Protocol(
            "the fsck stream ended without a report".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_messages_say_what_was_found_and_what_to_do() {
        let mut r = FsckReport {
            missing: 1,
            corrupt: 2,
            ..FsckReport::default()
        };
        assert!(r.has_unrepaired());
        let msg = r.damage_message();
        assert!(
            msg.starts_with("fsck found 2 corrupt and 1 missing") && msg.contains("fsck --repair"),
            "{msg}"
        );
        r.repair = true;
        r.repaired = 2;
        let msg = r.damage_message();
        assert!(msg.contains("2 repaired, 1 could not be"), "{msg}");
        r.repaired = 3;
        assert!(!r.has_unrepaired());
    }

    #[test]
    fn a_wire_gc_report_keeps_every_figure() {
        let r = GcReport::from(pb::GcReport {
            dry_run: true,
            live_chunks: 7,
            swept_chunks: 3,
            swept_bytes: 300,
            grace_ms: 1500,
            retention: vec![pb::RetentionOutcome {
                prefix: "pr/".into(),
                policy: "keep_last = 1".into(),
                deleted: 2,
            }],
            ..pb::GcReport::default()
        });
        assert!(r.dry_run && r.tenant.is_none());
        assert_eq!((r.live_chunks, r.swept_chunks, r.swept_bytes), (7, 3, 300));
        assert!((r.grace_seconds - 1.5).abs() < 1e-9);
        assert_eq!(r.retention[0].deleted, 2);
    }
}
