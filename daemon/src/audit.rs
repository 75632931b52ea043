//! The audit log (`--audit-log FILE`, `-` = stdout): one JSON object a line for every push
//! (commit), ref deletion (one ref or a prefix), GC, fsck and warm-up, and for every refused
//! call (unauthenticated or permission denied, with the reason). Refusals are also counted in
//! `scipcache_auth_refusals_total{reason}`, with or without an audit log.
//!
//! ```json
//! {"time":"2026-01-31T12:00:00.123Z","subject":"ci-web","tenant":"acme","action":"push","ns":"acme/web/app","key":"commit/abc","outcome":"ok","bytes":1048576,"chunks":9}
//! ```
//!
//! Fields: `time` (RFC 3339, UTC), `subject` (the token's `sub`, or its `jti` when `sub` is
//! empty; `null` for a call without a valid token; `scheduler` for the scheduled GC),
//! `tenant` (the namespace's tenant; for gc and fsck the tenant covered, `*` for all),
//! `action` (`push`, `rm`, `rm_prefix`, `gc`, `fsck`, `warm`, or for a refusal the refused
//! call's action such as `pull` or `ls`), `ns` and `key` (`null` where there is none),
//! `outcome` (`ok` or the gRPC code's name, e.g. `PERMISSION_DENIED`), then details: `bytes`,
//! `chunks`, `deleted`, the gc and fsck figures, `reason` of a refusal. A token is never
//! written, nor any other secret: only claims that name the holder.
//!
//! Writing happens off the request path: calls put their line on a bounded queue and a
//! writer task appends whole lines (one `write` each batch of whole lines) to the file,
//! opened in append mode and created 0600. A call never waits for the disk: when the queue
//! is full (a full or slow disk) the line is dropped, counted in
//! `scipcache_audit_dropped_total` and warned about.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec};
use scipcache_tiers::Clock;
use scipcache_tiers::names::{Namespace, Tenant};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Claims;
use crate::error::{AuthError, Error, Result};
use crate::metrics::Metrics;

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 8192;
/// Most bytes the writer gathers into one write.
const BATCH_BYTES: usize = 256 * 1024;

/// Where audit lines go, and the refusal counter. Cheap to clone; every clone feeds the same
/// writer.
#[derive(Clone, Debug)]
pub struct Audit(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    tx: Option<mpsc::Sender<String>>,
    dropped: IntCounter,
    refusals: IntCounterVec,
    clock: Clock,
}

/// The writer task of an audit log; [`AuditWriter::finish`] writes what is queued and stops.
#[derive(Debug)]
pub struct AuditWriter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl AuditWriter {
    /// Stops taking lines, writes those queued and waits for the writer (2 s at most).
    pub async fn finish(self) {
        self.stop.cancel();
        if tokio::time::timeout(std::time::Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the audit log writer did not finish within 2 s; lines may be lost");
        }
    }
}

/// Where the writer appends.
#[derive(Clone, Debug)]
enum Sink {
    Stdout,
    File(Arc<std::fs::File>, PathBuf),
}

impl Sink {
    fn write(&self, batch: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(batch)?;
                out.flush()
            }
            Self::File(file, _) => (&**file).write_all(batch),
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Stdout => "stdout".into(),
            Self::File(_, path) => path.display().to_string(),
        }
    }
}

impl Audit {
    /// No audit log; refusals are still counted.
    pub fn off(metrics: &Metrics) -> Self {
        Self(Arc::new(Inner {
            tx: None,
            dropped: metrics.audit_dropped.clone(),
            refusals: metrics.auth_refusals.clone(),
            clock: Clock::system(),
        }))
    }

    /// Opens the audit log `path` (`-` = stdout) for appending, creating it 0600, and starts
    /// its writer.
    pub async fn open(path: &Path, metrics: &Metrics) -> Result<(Self, AuditWriter)> {
        let sink = if path == Path::new("-") {
            Sink::Stdout
        } else {
            let owned = path.to_path_buf();
            let file = crate::blocking::spawn(move || {
                let mut opts = std::fs::OpenOptions::new();
                opts.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                opts.open(&owned)
                    .map_err(|e| Error::io("cannot open the audit log", &owned, e))
            })
            .await??;
            Sink::File(Arc::new(file), path.to_path_buf())
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_lines(
            rx,
            sink,
            stop.clone(),
            metrics.audit_errors.clone(),
        ));
        let audit = Self(Arc::new(Inner {
            tx: Some(tx),
            dropped: metrics.audit_dropped.clone(),
            refusals: metrics.auth_refusals.clone(),
            clock: Clock::system(),
        }));
        Ok((audit, AuditWriter { stop, task }))
    }

    /// Queues one line (never waits: a full queue drops it, counted and warned about).
    pub fn record(&self, event: Event<'_>) {
        let Some(tx) = &self.0.tx else {
            return;
        };
        let line = event.to_line(&self.0.clock);
        if tx.try_send(line).is_err() {
            self.0.dropped.inc();
            let n = self.0.dropped.get();
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = n,
                    "audit log lines dropped: its writer cannot keep up (is its disk full or \
                     slow?); scipcache_audit_dropped_total counts them"
                );
            }
        }
    }

    /// Counts a refused call of `method` and records it, with the claims when the token was
    /// valid (a permission refusal) and the reason.
    pub fn refused(&self, method: &str, claims: Option<&Claims>, err: &Error) {
        let reason = refusal_reason(err);
        self.0.refusals.with_label_values(&[reason]).inc();
        let outcome = match err {
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            _ => "PERMISSION_DENIED",
        };
        let mut event = Event::new(action_of(method), outcome)
            .detail("reason", err.to_string())
            .detail("refusal", reason);
        if let Some(claims) = claims {
            event = event.by(claims);
        }
        match err {
            Error::Denied { ns, .. } => event = event.ns(ns),
            Error::DeniedTenant { tenant, .. } => event = event.tenant(tenant.as_str()),
            _ => {}
        }
        self.record(event);
    }
}

/// The writer: appends batches of whole lines until stopped, then what is still queued.
async fn write_lines(
    mut rx: mpsc::Receiver<String>,
    sink: Sink,
    stop: CancellationToken,
    errors: IntCounter,
) {
    loop {
        let first = tokio::select! {
            line = rx.recv() => line,
            () = stop.cancelled() => None,
        };
        let mut batch = match first {
            Some(line) => line,
            None => {
                rx.close();
                String::new()
            }
        };
        let stopping = batch.is_empty();
        while batch.len() < BATCH_BYTES || stopping {
            match rx.try_recv() {
                Ok(line) => batch.push_str(&line),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let lines = batch.matches('\n').count() as u64;
            let target = sink.clone();
            let written = crate::blocking::spawn(move || target.write(batch.as_bytes())).await;
            if let Err(e) = written
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
            {
                errors.inc_by(lines);
                tracing::warn!(
                    "cannot write {lines} audit log lines to {}: {e}; they are lost",
                    sink.name()
                );
            }
        }
        if stopping {
            return;
        }
    }
}

/// One audit line in the making.
#[derive(Debug)]
pub struct Event<'a> {
    subject: Option<String>,
    tenant: Option<String>,
    action: &'a str,
    ns: Option<String>,
    key: Option<String>,
    outcome: &'a str,
    details: Map<String, Value>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    subject: Option<&'a str>,
    tenant: Option<&'a str>,
    action: &'a str,
    ns: Option<&'a str>,
    key: Option<&'a str>,
    outcome: &'a str,
    #[serde(flatten)]
    details: &'a Map<String, Value>,
}

impl<'a> Event<'a> {
    /// An `action` with its `outcome` (`ok` or a gRPC code name, see [`outcome`]).
    pub fn new(action: &'a str, outcome: &'a str) -> Self {
        Self {
            subject: None,
            tenant: None,
            action,
            ns: None,
            key: None,
            outcome,
            details: Map::new(),
        }
    }

    /// Done by the holder of `claims` (their tenant unless a namespace names another).
    #[must_use]
    pub fn by(mut self, claims: &Claims) -> Self {
        self.subject = Some(subject(claims).to_owned());
        if self.tenant.is_none() {
            self.tenant = Some(claims.tenant.to_string());
        }
        self
    }

    /// Done by the daemon itself (the scheduled GC).
    #[must_use]
    pub fn by_daemon(mut self, who: &str) -> Self {
        self.subject = Some(who.to_owned());
        self
    }

    /// On the namespace `ns` (and its tenant).
    #[must_use]
    pub fn ns(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.to_string());
        self.tenant = Some(ns.tenant().to_string());
        self
    }

    /// On the ref key (or prefix) `key`.
    #[must_use]
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// Covering `tenant` (`*` for every tenant).
    #[must_use]
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_owned());
        self
    }

    /// Over the tenant a GC or fsck covered: one, or every tenant (`*`).
    #[must_use]
    pub fn scope(self, tenant: Option<&Tenant>) -> Self {
        let name = tenant.map_or("*", Tenant::as_str).to_owned();
        self.tenant(&name)
    }

    /// A detail field.
    #[must_use]
    pub fn detail(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.details.insert(name.to_owned(), value.into());
        self
    }

    /// Several detail fields at once (e.g. a report serialized to an object).
    #[must_use]
    pub fn details(mut self, fields: Map<String, Value>) -> Self {
        self.details.extend(fields);
        self
    }

    fn to_line(&self, clock: &Clock) -> String {
        let line = Line {
            time: rfc3339_ms(clock.now_ms()),
            subject: self.subject.as_deref(),
            tenant: self.tenant.as_deref(),
            action: self.action,
            ns: self.ns.as_deref(),
            key: self.key.as_deref(),
            outcome: self.outcome,
            details: &self.details,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_else(|e| {
            format!(
                r#"{{"action":"{}","outcome":"unprintable: {e}"}}"#,
                self.action
            )
        });
        text.push('\n');
        text
    }
}

/// Who a token names: its `sub`, or its `jti` when `sub` is empty.
pub fn subject(claims: &Claims) -> &str {
    if claims.sub.is_empty() {
        &claims.jti
    } else {
        &claims.sub
    }
}

/// The outcome field of a call's result: `ok`, or the status code's name.
pub fn outcome<T>(result: &std::result::Result<T, tonic::Status>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(status) => crate::metrics::code_name(status.code()),
    }
}

/// The `reason` label of `scipcache_auth_refusals_total`.
pub fn refusal_reason(err: &Error) -> &'static str {
    match err {
        Error::Unauthenticated(e) => match e {
            AuthError::Missing => "missing_token",
            AuthError::Malformed(_) => "malformed_token",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture { .. } => "issued_in_future",
            AuthError::LifetimeTooLong { .. } => "lifetime_too_long",
            AuthError::BadSignature => "bad_signature",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::WrongAlgorithm(_) => "wrong_algorithm",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::BadClaims(_) => "bad_claims",
            AuthError::Revoked => "revoked",
        },
        Error::Denied { .. } => "no_namespace_access",
        Error::DeniedTenant { .. } => "no_tenant_access",
        Error::DeniedEveryTenant => "not_operator",
        _ => "other",
    }
}

/// The audit action of a gRPC method (`scipcache.v1.Service/Method`).
pub fn action_of(method: &str) -> &'static str {
    match method.rsplit_once('.').map_or(method, |(_, m)| m) {
        "Blobs/Commit" => "push",
        "Chunks/Upload" => "upload",
        "Chunks/FindMissing" => "find_missing",
        "Blobs/Read" => "pull",
        "Chunks/Read" => "read_chunks",
        "Blobs/Stat" => "stat_ref",
        "Blobs/Warm" => "warm",
        "Refs/Get" => "get_ref",
        "Refs/List" => "ls",
        "Refs/Delete" => "rm",
        "Refs/DeletePrefix" => "rm_prefix",
        "Admin/Stats" => "stats",
        "Admin/Gc" => "gc",
        "Admin/Fsck" => "fsck",
        "Info/GetServerInfo" => "server_info",
        _ => "other",
    }
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds, e.g. `2026-01-31T12:00:00.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn claims(sub: &str) -> std::result::Result<Claims, String> {
        Ok(Claims {
            sub: sub.into(),
            tenant: "acme".parse()?,
            scopes: vec!["*:write".parse()?],
            jti: "jti-1".into(),
            exp: u64::MAX,
            iat: 0,
            nbf: None,
            iss: None,
            aud: Vec::new(),
        })
    }

    #[test]
    fn a_line_carries_the_required_fields_in_order_and_its_details() -> TestResult {
        let ns: Namespace = "acme/web/app".parse()?;
        let line = Event::new("push", "ok")
            .by(&claims("ci")?)
            .ns(&ns)
            .key("commit/abc")
            .detail("bytes", 10u64)
            .to_line(&Clock::manual(1_767_225_600_123));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert!(
            line.starts_with(
                r#"{"time":"2026-01-01T00:00:00.123Z","subject":"ci","tenant":"acme","action":"push","ns":"acme/web/app","key":"commit/abc","outcome":"ok","#
            ),
            "{line}"
        );
        assert!(line.contains(r#""bytes":10"#), "{line}");
        Ok(())
    }

    #[test]
    fn the_subject_is_the_jti_when_sub_is_empty() -> TestResult {
        assert_eq!(subject(&claims("")?), "jti-1");
        assert_eq!(subject(&claims("ci")?), "ci");
        Ok(())
    }

    #[test]
    fn refusal_reasons_are_bounded_labels() {
        assert_eq!(
            refusal_reason(&Error::Unauthenticated(AuthError::Expired)),
            "expired"
        );
        assert_eq!(refusal_reason(&Error::DeniedEveryTenant), "not_operator");
        assert_eq!(action_of("scipcache.v1.Refs/DeletePrefix"), "rm_prefix");
        assert_eq!(action_of("scipcache.v1.Blobs/Read"), "pull");
        assert_eq!(action_of("nonsense"), "other");
    }

    #[tokio::test]
    async fn lines_are_appended_whole_to_an_owner_only_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let metrics = Metrics::new()?;
        let (audit, writer) = Audit::open(&path, &metrics).await?;
        for i in 0..100u64 {
            audit.record(Event::new("rm", "ok").detail("i", i));
        }
        writer.finish().await;
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        for line in lines {
            let v: Value = serde_json::from_str(line)?;
            assert_eq!(v["action"], "rm");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        // Appended, not truncated, when opened again.
        let (audit, writer) = Audit::open(&path, &metrics).await?;
        audit.record(Event::new("gc", "ok"));
        writer.finish().await;
        assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 101);
        Ok(())
    }
}
