//! Prometheus metrics: per-RPC counts (by method and status code), latency and bytes, counted
//! by a tower layer around every gRPC service; chunk counters from the services; the tier
//! budgets; and the engine's per-tier figures and movement between tiers (demotions,
//! evictions, promotions), read from `Store::stats` at scrape time.
//!
//! A call is counted when its response ends: at the status trailer, or when the response is
//! dropped early (the client left: `CANCELLED`). Latency covers the whole call, streaming
//! included.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use scipcache_tiers::store::{GcReport, MovementStats, Stats, TierName};

use crate::error::Result;

/// Every RPC the daemon serves, as `package.Service/Method`; anything else counts as `other`
/// so that label values stay bounded whatever clients send.
const METHODS: &[&str] = &[
    "scipcache.v1.Info/GetServerInfo",
    "scipcache.v1.Chunks/FindMissing",
    "scipcache.v1.Chunks/Upload",
    "scipcache.v1.Chunks/Read",
    "scipcache.v1.Blobs/Commit",
    "scipcache.v1.Blobs/Read",
    "scipcache.v1.Blobs/Stat",
    "scipcache.v1.Blobs/Warm",
    "scipcache.v1.Refs/Get",
    "scipcache.v1.Refs/List",
    "scipcache.v1.Refs/Delete",
    "scipcache.v1.Refs/DeletePrefix",
    "scipcache.v1.Admin/Stats",
    "scipcache.v1.Admin/Gc",
    "scipcache.v1.Admin/Fsck",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// gRPC status names, indexed by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn method_label(path: &str) -> &'static str {
    let path = path.strip_prefix('/').unwrap_or(path);
    METHODS
        .iter()
        .find(|m| **m == path)
        .copied()
        .unwrap_or("other")
}

/// The name of a gRPC status code, e.g. `PERMISSION_DENIED`.
pub fn code_name(code: tonic::Code) -> &'static str {
    usize::try_from(i32::from(code))
        .ok()
        .and_then(|i| CODES.get(i).copied())
        .unwrap_or("UNKNOWN")
}

/// The method a call is for (its `package.Service/Method` label, or `other`), put into every
/// request's extensions by [`MetricsLayer`], so that a refusal can say what was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcMethod(pub &'static str);

fn code_label(value: Option<&http::HeaderValue>) -> Option<&'static str> {
    let code: usize = value?.to_str().ok()?.parse().ok()?;
    Some(CODES.get(code).copied().unwrap_or("UNKNOWN"))
}

/// All of the daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    received_bytes: IntCounterVec,
    sent_bytes: IntCounterVec,
    /// Chunk frames received by `Chunks/Upload`.
    pub chunks_received: IntCounter,
    /// Chunks newly stored by uploads.
    pub chunks_stored: IntCounter,
    /// Uploaded chunks the tenant already had.
    pub chunks_already_present: IntCounter,
    tier_chunks: IntGaugeVec,
    tier_stored_bytes: IntGaugeVec,
    tier_logical_bytes: IntGaugeVec,
    tier_compression: GaugeVec,
    tier_hits: IntGaugeVec,
    logical_bytes: IntGauge,
    refs: IntGauge,
    cold_queue: IntGauge,
    scrub_checked: IntGauge,
    scrub_bad_copies: IntGaugeVec,
    scrub_lost: IntGauge,
    scrub_cycles: IntGauge,
    cold_recompress: IntGauge,
    tier_budget: IntGaugeVec,
    movement: MovementCounters,
    stats_errors: IntCounter,
    /// Bytes of the request-memory budget that calls hold now.
    pub request_memory_reserved: IntGauge,
    tier_misses: IntGaugeVec,
    /// Refused calls by reason (`audit::refusal_reason`).
    pub auth_refusals: IntCounterVec,
    /// Audit lines dropped because the writer could not keep up.
    pub audit_dropped: IntCounter,
    /// Audit lines the writer failed to write.
    pub audit_errors: IntCounter,
    lifecycle: LifecycleMetrics,
}

/// GC, fsck and quota figures.
#[derive(Debug)]
struct LifecycleMetrics {
    gc_runs: IntCounterVec,
    gc_duration: Histogram,
    gc_swept_chunks: IntCounter,
    gc_swept_bytes: IntCounter,
    gc_compacted_bytes: IntCounter,
    gc_deleted_refs: IntCounterVec,
    gc_running: IntGauge,
    fsck_runs: IntCounterVec,
    tenant_quota: IntGaugeVec,
    tenant_stored: IntGaugeVec,
    tenant_logical: IntGaugeVec,
    tenant_dedup: GaugeVec,
}

impl LifecycleMetrics {
    fn new(registry: &Registry) -> Result<Self> {
        let m = Self {
            gc_runs: IntCounterVec::new(
                Opts::new(
                    "gc_runs_total",
                    "garbage collections by outcome (ok, dry_run, cancelled, already_running,                      failed)",
                ),
                &["outcome"],
            )?,
            gc_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "gc_duration_seconds",
                    "wall time of garbage collections that ran to the end (dry runs included)",
                )
                .buckets(vec![
                    0.01,
                    0.1,
                    0.5,
                    1.0,
                    5.0,
                    15.0,
                    60.0,
                    300.0,
                    900.0,
                    3600.0,
                    4.0 * 3600.0,
                ]),
            )?,
            gc_swept_chunks: IntCounter::new(
                "gc_swept_chunks_total",
                "chunks garbage collections removed from every tier",
            )?,
            gc_swept_bytes: IntCounter::new(
                "gc_swept_bytes_total",
                "stored bytes of the chunks garbage collections removed, summed over tiers",
            )?,
            gc_compacted_bytes: IntCounter::new(
                "gc_compacted_bytes_total",
                "bytes garbage collections gave back by rewriting sparse packs",
            )?,
            gc_deleted_refs: IntCounterVec::new(
                Opts::new(
                    "gc_deleted_refs_total",
                    "refs garbage collections deleted, by cause (expired, retention)",
                ),
                &["cause"],
            )?,
            gc_running: IntGauge::new("gc_running", "1 while a garbage collection runs")?,
            fsck_runs: IntCounterVec::new(
                Opts::new(
                    "fsck_runs_total",
                    "fsck runs by outcome (clean, repaired, unrepaired, cancelled, failed)",
                ),
                &["outcome"],
            )?,
            tenant_quota: IntGaugeVec::new(
                Opts::new("tenant_quota_bytes", "[quotas] of each tenant that has one"),
                &["tenant"],
            )?,
            tenant_stored: IntGaugeVec::new(
                Opts::new(
                    "tenant_stored_bytes",
                    "what a tenant with a quota stores as the quota counts it (each chunk once,                      at its largest stored size)",
                ),
                &["tenant"],
            )?,
            tenant_logical: IntGaugeVec::new(
                Opts::new(
                    "tenant_logical_bytes",
                    "sum of the sizes of the live refs' blobs of a tenant with a quota",
                ),
                &["tenant"],
            )?,
            tenant_dedup: GaugeVec::new(
                Opts::new(
                    "tenant_dedup_ratio",
                    "tenant_logical_bytes / tenant_stored_bytes of a tenant with a quota",
                ),
                &["tenant"],
            )?,
        };
        registry.register(Box::new(m.gc_runs.clone()))?;
        registry.register(Box::new(m.gc_duration.clone()))?;
        registry.register(Box::new(m.gc_swept_chunks.clone()))?;
        registry.register(Box::new(m.gc_swept_bytes.clone()))?;
        registry.register(Box::new(m.gc_compacted_bytes.clone()))?;
        registry.register(Box::new(m.gc_deleted_refs.clone()))?;
        registry.register(Box::new(m.gc_running.clone()))?;
        registry.register(Box::new(m.fsck_runs.clone()))?;
        registry.register(Box::new(m.tenant_quota.clone()))?;
        registry.register(Box::new(m.tenant_stored.clone()))?;
        registry.register(Box::new(m.tenant_logical.clone()))?;
        registry.register(Box::new(m.tenant_dedup.clone()))?;
        Ok(m)
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self> {
        let registry = Registry::new_custom(Some("scipcache".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("rpc_requests_total", "gRPC calls by method and status code"),
            &["method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "rpc_duration_seconds",
                "gRPC call latency, streams included",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ]),
            &["method"],
        )?;
        let received_bytes = IntCounterVec::new(
            Opts::new(
                "rpc_received_bytes_total",
                "gRPC request body bytes received",
            ),
            &["method"],
        )?;
        let sent_bytes = IntCounterVec::new(
            Opts::new("rpc_sent_bytes_total", "gRPC response body bytes sent"),
            &["method"],
        )?;
        let chunks_received = IntCounter::new(
            "upload_chunks_received_total",
            "chunk frames received by Chunks/Upload",
        )?;
        let chunks_stored = IntCounter::new(
            "upload_chunks_stored_total",
            "chunks newly stored by uploads",
        )?;
        let chunks_already_present = IntCounter::new(
            "upload_chunks_already_present_total",
            "uploaded chunks the tenant already had",
        )?;
        let tier_chunks =
            IntGaugeVec::new(Opts::new("tier_chunks", "chunks held per tier"), &["tier"])?;
        let tier_stored_bytes = IntGaugeVec::new(
            Opts::new("tier_stored_bytes", "bytes held per tier, as stored"),
            &["tier"],
        )?;
        let tier_logical_bytes = IntGaugeVec::new(
            Opts::new(
                "tier_logical_bytes",
                "raw (uncompressed) bytes of the chunks held per tier (a scan at most a minute old)",
            ),
            &["tier"],
        )?;
        let tier_compression = GaugeVec::new(
            Opts::new(
                "tier_compression_ratio",
                "tier_logical_bytes / tier_stored_bytes per tier (0 for an empty tier)",
            ),
            &["tier"],
        )?;
        let tier_hits = IntGaugeVec::new(
            Opts::new("tier_hits", "reads served per tier since start"),
            &["tier"],
        )?;
        let logical_bytes =
            IntGauge::new("logical_bytes", "sum of the sizes of all live refs' blobs")?;
        let refs = IntGauge::new("refs", "live refs")?;
        let cold_queue = IntGauge::new("cold_queue", "chunks waiting for their cold copy")?;
        let scrub_checked = IntGauge::new(
            "scrub_checked_chunks",
            "chunks whose every copy the background scrub verified since start",
        )?;
        let scrub_bad_copies = IntGaugeVec::new(
            Opts::new(
                "scrub_bad_copies",
                "bad copies the scrub found (and repaired from a good one) since start, per tier",
            ),
            &["tier"],
        )?;
        let scrub_lost = IntGauge::new(
            "scrub_lost_chunks",
            "chunks the scrub found no good copy of since start",
        )?;
        let scrub_cycles = IntGauge::new(
            "scrub_cycles",
            "passes of the scrub over every chunk completed since start",
        )?;
        let cold_recompress = IntGauge::new(
            "cold_recompress_packs",
            "cold packs written at the fast level, waiting to be recompressed when idle",
        )?;
        let tier_budget = IntGaugeVec::new(
            Opts::new(
                "tier_budget_bytes",
                "byte budget per tier (--hot-bytes, --warm-bytes; 0 = the tier is off)",
            ),
            &["tier"],
        )?;
        let movement = MovementCounters::new()?;
        let stats_errors = IntCounter::new(
            "stats_errors_total",
            "scrapes whose engine figures could not be read",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(received_bytes.clone()))?;
        registry.register(Box::new(sent_bytes.clone()))?;
        registry.register(Box::new(chunks_received.clone()))?;
        registry.register(Box::new(chunks_stored.clone()))?;
        registry.register(Box::new(chunks_already_present.clone()))?;
        registry.register(Box::new(tier_chunks.clone()))?;
        registry.register(Box::new(tier_stored_bytes.clone()))?;
        registry.register(Box::new(tier_logical_bytes.clone()))?;
        registry.register(Box::new(tier_compression.clone()))?;
        registry.register(Box::new(tier_hits.clone()))?;
        registry.register(Box::new(logical_bytes.clone()))?;
        registry.register(Box::new(refs.clone()))?;
        registry.register(Box::new(cold_queue.clone()))?;
        registry.register(Box::new(scrub_checked.clone()))?;
        registry.register(Box::new(scrub_bad_copies.clone()))?;
        registry.register(Box::new(scrub_lost.clone()))?;
        registry.register(Box::new(scrub_cycles.clone()))?;
        registry.register(Box::new(cold_recompress.clone()))?;
        registry.register(Box::new(tier_budget.clone()))?;
        movement.register(&registry)?;
        registry.register(Box::new(stats_errors.clone()))?;
        let request_memory_reserved = IntGauge::new(
            "request_memory_reserved_bytes",
            "bytes of the --request-memory budget held by commits and uploads",
        )?;
        registry.register(Box::new(request_memory_reserved.clone()))?;
        let tier_misses = IntGaugeVec::new(
            Opts::new(
                "tier_misses",
                "reads a tier could not serve since start: those the tiers below it served",
            ),
            &["tier"],
        )?;
        let auth_refusals = IntCounterVec::new(
            Opts::new(
                "auth_refusals_total",
                "calls refused as unauthenticated or permission denied, by reason",
            ),
            &["reason"],
        )?;
        let audit_dropped = IntCounter::new(
            "audit_dropped_total",
            "audit log lines dropped because the writer could not keep up",
        )?;
        let audit_errors = IntCounter::new(
            "audit_write_errors_total",
            "audit log lines that could not be written",
        )?;
        registry.register(Box::new(tier_misses.clone()))?;
        registry.register(Box::new(auth_refusals.clone()))?;
        registry.register(Box::new(audit_dropped.clone()))?;
        registry.register(Box::new(audit_errors.clone()))?;
        let lifecycle = LifecycleMetrics::new(&registry)?;
        Ok(Self {
            registry,
            requests,
            duration,
            received_bytes,
            sent_bytes,
            chunks_received,
            chunks_stored,
            chunks_already_present,
            tier_chunks,
            tier_stored_bytes,
            tier_logical_bytes,
            tier_compression,
            tier_hits,
            logical_bytes,
            refs,
            cold_queue,
            scrub_checked,
            scrub_bad_copies,
            scrub_lost,
            scrub_cycles,
            cold_recompress,
            tier_budget,
            movement,
            stats_errors,
            request_memory_reserved,
            tier_misses,
            auth_refusals,
            audit_dropped,
            audit_errors,
            lifecycle,
        })
    }

    /// Records the end of a garbage collection: `outcome` is `ok`, `dry_run`, `cancelled`,
    /// `already_running` or `failed`; a report's totals count unless it was a dry run.
    pub fn gc_finished(&self, outcome: &str, seconds: f64, report: Option<&GcReport>) {
        let m = &self.lifecycle;
        m.gc_runs.with_label_values(&[outcome]).inc();
        if let Some(r) = report {
            m.gc_duration.observe(seconds);
            if !r.dry_run {
                m.gc_swept_chunks.inc_by(r.swept_chunks);
                m.gc_swept_bytes.inc_by(r.swept_bytes);
                m.gc_compacted_bytes.inc_by(r.compacted_bytes);
                m.gc_deleted_refs
                    .with_label_values(&["expired"])
                    .inc_by(r.expired_refs);
                let retained: u64 = r.retention.iter().map(|o| o.deleted).sum();
                m.gc_deleted_refs
                    .with_label_values(&["retention"])
                    .inc_by(retained);
            }
        }
    }

    /// Marks a garbage collection as running (while the guard lives).
    pub fn gc_running(&self) -> GcRunningGuard {
        self.lifecycle.gc_running.inc();
        GcRunningGuard(self.lifecycle.gc_running.clone())
    }

    /// Records the end of an fsck: `clean`, `repaired`, `unrepaired`, `cancelled` or `failed`.
    pub fn fsck_finished(&self, outcome: &str) {
        self.lifecycle.fsck_runs.with_label_values(&[outcome]).inc();
    }

    /// Sets the quota gauges (the configuration, set once at start).
    pub fn set_quotas<'a>(&self, quotas: impl IntoIterator<Item = (&'a String, u64)>) {
        for (tenant, bytes) in quotas {
            self.lifecycle
                .tenant_quota
                .with_label_values(&[tenant.as_str()])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Sets a tenant's stored and logical bytes and their ratio (its dedup ratio).
    pub fn set_tenant_figures(&self, tenant: &str, stored: u64, logical: u64) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let m = &self.lifecycle;
        m.tenant_stored
            .with_label_values(&[tenant])
            .set(gauge(stored));
        m.tenant_logical
            .with_label_values(&[tenant])
            .set(gauge(logical));
        #[allow(clippy::cast_precision_loss)]
        let ratio = if stored == 0 {
            0.0
        } else {
            logical as f64 / stored as f64
        };
        m.tenant_dedup.with_label_values(&[tenant]).set(ratio);
    }

    /// Sets the engine gauges from a stats snapshot.
    pub fn set_store_stats(&self, stats: &Stats) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (tier, figures) in &stats.tiers {
            let label = [tier.as_str()];
            self.tier_chunks
                .with_label_values(&label)
                .set(gauge(figures.chunks));
            self.tier_stored_bytes
                .with_label_values(&label)
                .set(gauge(figures.stored_bytes));
            self.tier_logical_bytes
                .with_label_values(&label)
                .set(gauge(figures.raw_bytes));
            let ratio = if figures.stored_bytes == 0 {
                0.0
            } else {
                figures.raw_bytes as f64 / figures.stored_bytes as f64
            };
            self.tier_compression.with_label_values(&label).set(ratio);
            self.tier_hits
                .with_label_values(&label)
                .set(gauge(figures.hits));
        }
        // A read a tier misses is one a tier below it serves (hot → warm → cold).
        for (i, (tier, _)) in stats.tiers.iter().enumerate() {
            let below: u64 = stats.tiers[i + 1..].iter().map(|(_, t)| t.hits).sum();
            self.tier_misses
                .with_label_values(&[tier.as_str()])
                .set(gauge(below));
        }
        self.logical_bytes.set(gauge(stats.logical_bytes));
        self.refs.set(gauge(stats.refs));
        self.cold_queue.set(gauge(stats.cold_queue));
        self.scrub_checked.set(gauge(stats.scrub.checked));
        for (tier, n) in &stats.scrub.bad_copies {
            self.scrub_bad_copies
                .with_label_values(&[tier.as_str()])
                .set(gauge(*n));
        }
        self.scrub_lost.set(gauge(stats.scrub.lost));
        self.scrub_cycles.set(gauge(stats.scrub.cycles));
        self.cold_recompress.set(gauge(stats.cold_recompress));
        self.movement.advance(&stats.movement);
    }

    /// Sets the tier budget gauges (the configuration, set once at start).
    pub fn set_tier_budgets(&self, hot_bytes: u64, warm_bytes: u64) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.tier_budget
            .with_label_values(&[TierName::Hot.as_str()])
            .set(gauge(hot_bytes));
        self.tier_budget
            .with_label_values(&[TierName::Warm.as_str()])
            .set(gauge(warm_bytes));
    }

    /// Counts a scrape whose engine figures failed.
    pub fn stats_failed(&self) {
        self.stats_errors.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    fn finish(&self, method: &'static str, code: &'static str, started: Instant) {
        self.requests.with_label_values(&[method, code]).inc();
        self.duration
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The engine's movement counters (`Stats::movement`, counted since the store opened) as
/// Prometheus counters. The engine keeps the totals; each scrape advances the counters to
/// them, under a lock so that two concurrent scrapes cannot both add the same difference.
#[derive(Debug)]
struct MovementCounters {
    demoted: IntCounter,
    evicted_chunks: IntCounterVec,
    evicted_bytes: IntCounterVec,
    promoted: IntCounter,
    not_admitted: IntCounter,
    passes: IntCounter,
    advancing: Mutex<()>,
}

impl MovementCounters {
    fn new() -> Result<Self> {
        Ok(Self {
            demoted: IntCounter::new(
                "demoted_chunks_total",
                "chunks the evictor copied from hot to warm",
            )?,
            evicted_chunks: IntCounterVec::new(
                Opts::new(
                    "evicted_chunks_total",
                    "copies the evictor dropped, per tier (hot, warm)",
                ),
                &["tier"],
            )?,
            evicted_bytes: IntCounterVec::new(
                Opts::new(
                    "evicted_bytes_total",
                    "stored bytes of the copies the evictor dropped, per tier",
                ),
                &["tier"],
            )?,
            promoted: IntCounter::new(
                "promoted_chunks_total",
                "chunks reads and warm-ups promoted into hot",
            )?,
            not_admitted: IntCounter::new(
                "not_admitted_chunks_total",
                "chunks read from below hot that the admission rule kept out of hot",
            )?,
            passes: IntCounter::new(
                "eviction_passes_total",
                "eviction passes run (a pass starts when a tier reaches its budget)",
            )?,
            advancing: Mutex::new(()),
        })
    }

    fn register(&self, registry: &Registry) -> Result<()> {
        registry.register(Box::new(self.demoted.clone()))?;
        registry.register(Box::new(self.evicted_chunks.clone()))?;
        registry.register(Box::new(self.evicted_bytes.clone()))?;
        registry.register(Box::new(self.promoted.clone()))?;
        registry.register(Box::new(self.not_admitted.clone()))?;
        registry.register(Box::new(self.passes.clone()))?;
        Ok(())
    }

    /// Advances every counter to the engine's total (never backwards).
    fn advance(&self, m: &MovementStats) {
        let _held = self
            .advancing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        advance(&self.demoted, m.demoted);
        for (tier, chunks, bytes) in &m.evicted {
            let label = [tier.as_str()];
            advance(&self.evicted_chunks.with_label_values(&label), *chunks);
            advance(&self.evicted_bytes.with_label_values(&label), *bytes);
        }
        advance(&self.promoted, m.promoted);
        advance(&self.not_admitted, m.not_admitted);
        advance(&self.passes, m.passes);
    }
}

/// Keeps `scipcache_gc_running` raised while it lives.
#[derive(Debug)]
pub struct GcRunningGuard(IntGauge);

impl Drop for GcRunningGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Adds to `counter` what it lacks of `total`.
fn advance(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The tower layer that meters every gRPC call.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ResBody> tower::Service<http::Request<tonic::body::Body>> for MetricsService<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let started = Instant::now();
        let method = method_label(req.uri().path());
        req.extensions_mut().insert(RpcMethod(method));
        let metrics = self.metrics.clone();
        let received = metrics.received_bytes.with_label_values(&[method]);
        let req = req.map(|body| {
            tonic::body::Body::new(CountingBody {
                inner: body,
                counter: received,
            })
        });
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            let code = code_label(response.headers().get("grpc-status"));
            let sent = metrics.sent_bytes.with_label_values(&[method]);
            Ok(response.map(|inner| MeteredBody {
                inner,
                metrics,
                method,
                started,
                code,
                sent,
                done: false,
            }))
        })
    }
}

/// A request body that counts the bytes it yields.
struct CountingBody {
    inner: tonic::body::Body,
    counter: IntCounter,
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts its bytes and records the call when it ends.
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    code: Option<&'static str>,
    sent: IntCounter,
    done: bool,
}

impl<B> MeteredBody<B> {
    fn finish(&mut self, fallback: &'static str) {
        if !self.done {
            self.done = true;
            self.metrics
                .finish(self.method, self.code.unwrap_or(fallback), self.started);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for MeteredBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent.inc_by(data.len() as u64);
                } else if let Some(trailers) = frame.trailers_ref()
                    && let Some(code) = code_label(trailers.get("grpc-status"))
                {
                    self.code = Some(code);
                    self.finish("OK");
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish("INTERNAL"),
            Poll::Ready(None) => self.finish("OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away.
        self.finish("CANCELLED");
    }
}

#[cfg(test)]
mod tests {
    use scipcache_tiers::store::{MovementStats, ScrubStats, TierName, TierStats};

    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            method_label("/scipcache.v1.Chunks/Upload"),
            "scipcache.v1.Chunks/Upload"
        );
        assert_eq!(method_label("/scipcache.v1.Chunks/Nope"), "other");
        assert_eq!(method_label("/x"), "other");
    }

    #[test]
    fn status_codes_get_their_grpc_names() {
        let v = http::HeaderValue::from_static("7");
        assert_eq!(code_label(Some(&v)), Some("PERMISSION_DENIED"));
        let v = http::HeaderValue::from_static("99");
        assert_eq!(code_label(Some(&v)), Some("UNKNOWN"));
        assert_eq!(code_label(None), None);
    }

    #[test]
    fn render_includes_tier_gauges_and_call_counts() -> Result<()> {
        let m = Metrics::new()?;
        m.set_store_stats(&Stats {
            tiers: vec![(
                TierName::Hot,
                TierStats {
                    chunks: 3,
                    stored_bytes: 300,
                    raw_bytes: 1200,
                    hits: 1,
                },
            )],
            logical_bytes: 1000,
            refs: 2,
            cold_queue: 0,
            scrub: ScrubStats {
                checked: 7,
                bad_copies: vec![(TierName::Cold, 1)],
                lost: 0,
                cycles: 1,
            },
            cold_recompress: 2,
            movement: MovementStats {
                demoted: 5,
                evicted: vec![(TierName::Hot, 4, 4096), (TierName::Warm, 1, 512)],
                promoted: 3,
                not_admitted: 6,
                passes: 2,
            },
        });
        m.set_tier_budgets(4 << 20, 0);
        m.finish("scipcache.v1.Refs/Get", "NOT_FOUND", Instant::now());
        let text = m.render()?;
        assert!(
            text.contains("scipcache_tier_chunks{tier=\"hot\"} 3"),
            "{text}"
        );
        assert!(text.contains("scipcache_logical_bytes 1000"));
        assert!(text.contains("scipcache_tier_logical_bytes{tier=\"hot\"} 1200"));
        assert!(
            text.contains("scipcache_tier_compression_ratio{tier=\"hot\"} 4"),
            "{text}"
        );
        assert!(text.contains("scipcache_scrub_checked_chunks 7"), "{text}");
        assert!(text.contains("scipcache_scrub_bad_copies{tier=\"cold\"} 1"));
        assert!(text.contains(
            "scipcache_rpc_requests_total{code=\"NOT_FOUND\",method=\"scipcache.v1.Refs/Get\"} 1"
        ));
        assert!(text.contains("scipcache_rpc_duration_seconds_bucket"));
        for line in [
            "scipcache_cold_recompress_packs 2",
            "scipcache_demoted_chunks_total 5",
            "scipcache_evicted_chunks_total{tier=\"hot\"} 4",
            "scipcache_evicted_bytes_total{tier=\"hot\"} 4096",
            "scipcache_evicted_chunks_total{tier=\"warm\"} 1",
            "scipcache_evicted_bytes_total{tier=\"warm\"} 512",
            "scipcache_promoted_chunks_total 3",
            "scipcache_not_admitted_chunks_total 6",
            "scipcache_eviction_passes_total 2",
            "scipcache_tier_budget_bytes{tier=\"hot\"} 4194304",
            "scipcache_tier_budget_bytes{tier=\"warm\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
        assert!(text.contains("# TYPE scipcache_demoted_chunks_total counter"));
        Ok(())
    }

    #[test]
    fn movement_counters_follow_the_engine_totals_and_never_go_back() -> Result<()> {
        let m = Metrics::new()?;
        let at = |demoted, evicted| Stats {
            movement: MovementStats {
                demoted,
                evicted: vec![(TierName::Hot, evicted, evicted * 100)],
                ..MovementStats::default()
            },
            ..Stats::default()
        };
        m.set_store_stats(&at(5, 2));
        m.set_store_stats(&at(5, 2));
        m.set_store_stats(&at(9, 3));
        let text = m.render()?;
        assert!(text.contains("scipcache_demoted_chunks_total 9"), "{text}");
        assert!(text.contains("scipcache_evicted_bytes_total{tier=\"hot\"} 300"));
        // A lower total (never sent by one store) does not move a counter backwards.
        m.set_store_stats(&at(1, 1));
        assert!(m.render()?.contains("scipcache_demoted_chunks_total 9"));
        Ok(())
    }
}
