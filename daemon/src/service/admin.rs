//! `scipcache.v1.Admin`: figures of a tenant (tenant admins) or of every tenant (the
//! operator); garbage collection (admin) and fsck (operator).
//!
//! Gc and Fsck stream: the engine's run goes on a task of its own, its progress (a watch
//! channel) is forwarded as events without ever waiting for a slow client (an update that
//! does not fit the stream's buffer is skipped; the next one says where the run is), and its
//! report is the last event. When the client goes away (Ctrl-C drops the stream), the run's
//! cancellation token fires and the engine stops at its next safe point; the daemon's
//! shutdown fires it too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scipcache_proto::pb;
use scipcache_proto::pb::admin_server::Admin;
use scipcache_tiers::names::Tenant;
use scipcache_tiers::store::{FsckReport, GcOptions, GcReport, MovementStats, Progress};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{STREAM_BUFFER, Shared};
use crate::audit::{Event, outcome};
use crate::auth::{Claims, interceptor};
use crate::status;

/// Problems listed in one fsck report; the rest are counted in `problems_left_off`.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// The Admin service.
#[derive(Clone, Debug)]
pub struct AdminService {
    shared: Shared,
}

impl AdminService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let caller = interceptor::caller(&req)?;
        let tenant = asked_tenant(&req.get_ref().tenant)?;
        let scope = caller.admin_scope(tenant)?;
        let stats = self
            .shared
            .store
            .stats(scope.as_ref())
            .await
            .map_err(status::from_store)?;
        Ok(Response::new(pb::StatsResponse {
            tiers: stats
                .tiers
                .iter()
                .map(|(name, t)| pb::TierStats {
                    name: name.as_str().to_owned(),
                    chunks: t.chunks,
                    stored_bytes: t.stored_bytes,
                    hits: t.hits,
                })
                .collect(),
            logical_bytes: stats.logical_bytes,
            refs: stats.refs,
            cold_queue: stats.cold_queue,
            cold_recompress: stats.cold_recompress,
            movement: Some(movement(&stats.movement)),
        }))
    }

    type GcStream = ReceiverStream<Result<pb::GcEvent, Status>>;

    async fn gc(&self, req: Request<pb::GcRequest>) -> Result<Response<Self::GcStream>, Status> {
        let caller = interceptor::caller(&req)?;
        let r = req.get_ref();
        let tenant = caller.admin_scope(asked_tenant(&r.tenant)?)?;
        let opts = GcOptions {
            tenant,
            grace: r
                .grace_ms
                .map_or(self.shared.lifecycle.gc_grace, Duration::from_millis),
            dry_run: r.dry_run,
            compact_below: self.shared.lifecycle.compact_below,
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shared = self.shared.clone();
        let who = Who::Caller(caller.claims.clone());
        tokio::spawn(async move {
            let cancel = shared.lifecycle.shutdown.child_token();
            let (progress, watching) = watch::channel(Progress::default());
            let (tenant, grace) = (opts.tenant.clone(), opts.grace);
            let run = run_gc(&shared, opts, cancel.clone(), progress, &who);
            let result = drive(run, watching, cancel, &tx, |p| pb::GcEvent {
                event: Some(pb::gc_event::Event::Progress(progress_event(p))),
            })
            .await;
            let last = result.map(|report| pb::GcEvent {
                event: Some(pb::gc_event::Event::Report(gc_report(
                    &report,
                    tenant.as_ref(),
                    grace,
                ))),
            });
            // The client may have left; then nobody reads it.
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type FsckStream = ReceiverStream<Result<pb::FsckEvent, Status>>;

    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> Result<Response<Self::FsckStream>, Status> {
        let caller = interceptor::caller(&req)?;
        caller.operator()?;
        let repair = req.get_ref().repair;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shared = self.shared.clone();
        let claims = caller.claims.clone();
        tokio::spawn(async move {
            let cancel = shared.lifecycle.shutdown.child_token();
            let (progress, watching) = watch::channel(Progress::default());
            let run = run_fsck(&shared, repair, cancel.clone(), progress, &claims);
            let result = drive(run, watching, cancel, &tx, |p| pb::FsckEvent {
                event: Some(pb::fsck_event::Event::Progress(progress_event(p))),
            })
            .await;
            let last = result.map(|report| pb::FsckEvent {
                event: Some(pb::fsck_event::Event::Report(fsck_report(&report))),
            });
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The tenant a request names (empty: none).
fn asked_tenant(text: &str) -> Result<Option<Tenant>, Status> {
    if text.is_empty() {
        Ok(None)
    } else {
        Ok(Some(text.parse().map_err(status::from_store)?))
    }
}

/// Polls `run` to its end, forwarding its progress into `tx` as `event`s, and cancels it (it
/// ends at its next safe point) once the client closes the stream.
async fn drive<R, E>(
    run: impl Future<Output = Result<R, Status>>,
    mut progress: watch::Receiver<Progress>,
    cancel: CancellationToken,
    tx: &mpsc::Sender<Result<E, Status>>,
    event: impl Fn(&Progress) -> E,
) -> Result<R, Status> {
    tokio::pin!(run);
    let (mut left, mut reporting) = (false, true);
    loop {
        tokio::select! {
            result = &mut run => return result,
            () = tx.closed(), if !left => {
                left = true;
                tracing::info!("the client left; cancelling its run at the next safe point");
                cancel.cancel();
            }
            changed = progress.changed(), if reporting && !left => {
                if changed.is_err() {
                    reporting = false;
                    continue;
                }
                let now = progress.borrow_and_update().clone();
                // Never wait for a slow client: the run is polled by this loop.
                let _ = tx.try_send(Ok(event(&now)));
            }
        }
    }
}

/// Who started a GC.
#[derive(Debug)]
pub enum Who {
    /// A caller with these claims.
    Caller(Arc<Claims>),
    /// The daemon's schedule (`--gc-interval`).
    Schedule,
}

/// Runs one GC: metrics, the log line and the audit line around [`scipcache_tiers::Store::gc`].
pub async fn run_gc(
    shared: &Shared,
    opts: GcOptions,
    cancel: CancellationToken,
    progress: watch::Sender<Progress>,
    who: &Who,
) -> Result<GcReport, Status> {
    let started = Instant::now();
    let (tenant, grace, dry_run) = (opts.tenant.clone(), opts.grace, opts.dry_run);
    let result = {
        let _running = shared.metrics.gc_running();
        shared.store.gc(opts, cancel, progress).await
    };
    let seconds = started.elapsed().as_secs_f64();
    let label = match &result {
        Ok(r) if r.dry_run => "dry_run",
        Ok(_) => "ok",
        Err(scipcache_tiers::Error::GcRunning { .. }) => "already_running",
        Err(scipcache_tiers::Error::Cancelled(_)) => "cancelled",
        Err(_) => "failed",
    };
    shared
        .metrics
        .gc_finished(label, seconds, result.as_ref().ok());
    let scope = tenant.as_ref().map_or("every tenant", Tenant::as_str);
    match &result {
        Ok(r) => tracing::info!(
            tenant = scope,
            dry_run = r.dry_run,
            live_refs = r.live_refs,
            live_chunks = r.live_chunks,
            swept_chunks = r.swept_chunks,
            swept_bytes = r.swept_bytes,
            expired_refs = r.expired_refs,
            compacted_bytes = r.compacted_bytes,
            seconds = r.seconds,
            "gc of {scope} done{}",
            if r.dry_run {
                " (dry run, nothing deleted)"
            } else {
                ""
            }
        ),
        Err(e) => tracing::warn!(tenant = scope, "gc of {scope} did not complete: {e}"),
    }
    let result = result.map_err(status::from_store);
    let mut event = Event::new("gc", outcome(&result))
        .scope(tenant.as_ref())
        .detail("dry_run", dry_run)
        .detail("grace", humantime::format_duration(grace).to_string());
    event = match who {
        Who::Caller(claims) => event.by(claims),
        Who::Schedule => event.by_daemon("scheduler"),
    };
    match &result {
        Ok(r) => event = event.details(gc_details(r)),
        Err(status) => event = event.detail("reason", status.message()),
    }
    shared.audit.record(event);
    result
}

/// Runs one fsck: metrics, the log line and the audit line around
/// [`scipcache_tiers::Store::fsck`].
async fn run_fsck(
    shared: &Shared,
    repair: bool,
    cancel: CancellationToken,
    progress: watch::Sender<Progress>,
    claims: &Claims,
) -> Result<FsckReport, Status> {
    let result = shared.store.fsck(repair, cancel, progress).await;
    let label = match &result {
        Ok(r) if r.missing + r.corrupt == 0 => "clean",
        Ok(r) if !r.has_unrepaired() => "repaired",
        Ok(_) => "unrepaired",
        Err(scipcache_tiers::Error::Cancelled(_)) => "cancelled",
        Err(_) => "failed",
    };
    shared.metrics.fsck_finished(label);
    match &result {
        Ok(r) if r.has_unrepaired() => tracing::warn!(
            missing = r.missing,
            corrupt = r.corrupt,
            repaired = r.repaired,
            garbage = r.garbage,
            "fsck{}: {} missing and {} corrupt, {} repaired",
            if repair { " --repair" } else { "" },
            r.missing,
            r.corrupt,
            r.repaired
        ),
        Ok(r) => tracing::info!(
            checked_chunks = r.checked_chunks,
            missing = r.missing,
            corrupt = r.corrupt,
            repaired = r.repaired,
            garbage = r.garbage,
            "fsck{} done: nothing missing or corrupt{}",
            if repair { " --repair" } else { "" },
            if r.repaired > 0 { " after repair" } else { "" }
        ),
        Err(e) => tracing::warn!("fsck did not complete: {e}"),
    }
    let result = result.map_err(status::from_store);
    let mut event = Event::new("fsck", outcome(&result))
        .by(claims)
        .tenant("*")
        .detail("repair", repair);
    match &result {
        Ok(r) => {
            event = event
                .detail("checked_chunks", r.checked_chunks)
                .detail("checked_manifests", r.checked_manifests)
                .detail("missing", r.missing)
                .detail("corrupt", r.corrupt)
                .detail("repaired", r.repaired)
                .detail("garbage", r.garbage)
                .detail("seconds", r.seconds);
        }
        Err(status) => event = event.detail("reason", status.message()),
    }
    shared.audit.record(event);
    result
}

/// A GC report's figures as audit details.
fn gc_details(r: &GcReport) -> Map<String, Value> {
    let mut m = Map::new();
    for (name, v) in [
        ("live_refs", r.live_refs),
        ("live_chunks", r.live_chunks),
        ("swept_chunks", r.swept_chunks),
        ("swept_bytes", r.swept_bytes),
        ("swept_manifests", r.swept_manifests),
        ("expired_refs", r.expired_refs),
        (
            "retention_deleted",
            r.retention.iter().map(|o| o.deleted).sum(),
        ),
        ("compacted_packs", r.compacted_packs),
        ("compacted_bytes", r.compacted_bytes),
        ("deleted_objects", r.deleted_objects),
        ("kept_young_chunks", r.kept_young_chunks),
    ] {
        m.insert(name.to_owned(), v.into());
    }
    m.insert("seconds".to_owned(), r.seconds.into());
    m
}

/// The wire form of a progress update.
fn progress_event(p: &Progress) -> pb::LifecycleProgress {
    pb::LifecycleProgress {
        phase: p.phase.to_owned(),
        done: p.done,
        total: p.total,
    }
}

/// The wire form of a GC report.
pub fn gc_report(r: &GcReport, tenant: Option<&Tenant>, grace: Duration) -> pb::GcReport {
    pb::GcReport {
        dry_run: r.dry_run,
        live_refs: r.live_refs,
        live_chunks: r.live_chunks,
        swept_chunks: r.swept_chunks,
        swept_bytes: r.swept_bytes,
        swept_manifests: r.swept_manifests,
        expired_refs: r.expired_refs,
        retention: r
            .retention
            .iter()
            .map(|o| pb::RetentionOutcome {
                prefix: o.prefix.clone(),
                policy: o.policy.clone(),
                deleted: o.deleted,
            })
            .collect(),
        compacted_packs: r.compacted_packs,
        compacted_bytes: r.compacted_bytes,
        deleted_objects: r.deleted_objects,
        kept_young_chunks: r.kept_young_chunks,
        seconds: r.seconds,
        tenant: tenant.map(|t| t.as_str().to_owned()).unwrap_or_default(),
        grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The wire form of an fsck report, listing at most [`MAX_LISTED_PROBLEMS`] problems.
pub fn fsck_report(r: &FsckReport) -> pb::FsckReport {
    let listed = r.problems.len().min(MAX_LISTED_PROBLEMS);
    pb::FsckReport {
        checked_chunks: r.checked_chunks,
        checked_manifests: r.checked_manifests,
        missing: r.missing,
        corrupt: r.corrupt,
        repaired: r.repaired,
        garbage: r.garbage,
        problems: r.problems[..listed]
            .iter()
            .map(|p| pb::FsckProblem {
                what: p.what.clone(),
                refs: p.refs.clone(),
                repaired: p.repaired,
            })
            .collect(),
        problems_left_off: (r.problems.len() - listed) as u64,
        seconds: r.seconds,
    }
}

/// The wire form of the engine's movement counters.
fn movement(m: &MovementStats) -> pb::Movement {
    pb::Movement {
        demoted: m.demoted,
        evicted: m
            .evicted
            .iter()
            .map(|(tier, chunks, bytes)| pb::EvictedCopies {
                tier: tier.as_str().to_owned(),
                chunks: *chunks,
                bytes: *bytes,
            })
            .collect(),
        promoted: m.promoted,
        not_admitted: m.not_admitted,
        passes: m.passes,
    }
}
