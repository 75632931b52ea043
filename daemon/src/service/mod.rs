//! The gRPC services, one file per proto service. Each method is thin: take the verified
//! claims, parse and check what the caller sent (namespace first, then the permission,
//! before anything is looked up; every decision is [`crate::auth::access`]'s), call the
//! [`Store`], and map errors with [`crate::status`]. Refusals are [`Error`] values, which
//! `?` turns into statuses there.

pub mod admin;
pub mod blobs;
pub mod chunks;
pub mod info;
pub mod lookups;
pub mod refs;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::request_memory::RequestMemory;
use scipcache_proto::pb;
use scipcache_tiers::Store;
use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey};
use scipcache_tiers::refs::RefRecord;

/// Most manifest entries accepted in one commit: the engine's limit
/// ([`scipcache_tiers::manifest::MAX_CHUNKS_PER_BLOB`]) as the wire counts it.
pub const MAX_CHUNKS_PER_BLOB: u64 = scipcache_tiers::manifest::MAX_CHUNKS_PER_BLOB as u64;
/// Refs listed when the request says 0.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
/// Most refs listed in one response.
pub const MAX_LIST_LIMIT: usize = 10_000;
/// Most fallback prefixes in one request.
pub const MAX_FALLBACKS: usize = 16;
/// Messages buffered ahead of a slow reader in server streams.
pub const STREAM_BUFFER: usize = 16;

/// What every service holds.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The engine.
    pub store: Store,
    /// Metrics the services update directly.
    pub metrics: Arc<Metrics>,
    /// The budget of buffered commit and upload data (`--request-memory`).
    pub request_memory: RequestMemory,
    /// The audit log (and the refusal counter).
    pub audit: Audit,
    /// How GC and fsck run.
    pub lifecycle: Lifecycle,
}

/// The settings of GC and fsck calls.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// `--gc-grace`: a GC's grace period unless the call gives one.
    pub gc_grace: Duration,
    /// `--compact-below`.
    pub compact_below: f64,
    /// Fires when the daemon shuts down: running GCs and fscks stop at their next safe point.
    pub shutdown: CancellationToken,
}

/// Parses a namespace sent by a caller.
pub fn parse_namespace(s: &str) -> Result<Namespace> {
    if s.is_empty() {
        return Err(Error::BadRequest(
            "namespace is required (tenant/team/project)".into(),
        ));
    }
    Ok(s.parse()?)
}

/// Parses a ref key sent by a caller.
pub fn parse_key(s: &str) -> Result<RefKey> {
    Ok(s.parse()?)
}

/// Parses fallback key prefixes.
pub fn parse_prefixes(prefixes: &[String]) -> Result<Vec<KeyPrefix>> {
    if prefixes.len() > MAX_FALLBACKS {
        return Err(Error::BadRequest(format!(
            "{} fallback prefixes given, at most {MAX_FALLBACKS} allowed",
            prefixes.len()
        )));
    }
    prefixes.iter().map(|p| Ok(p.parse()?)).collect()
}

/// Parses a list of 32-byte ids, at most `max`.
pub fn parse_ids<T>(
    ids: &[bytes::Bytes],
    max: usize,
    parse: impl Fn(&[u8]) -> scipcache_tiers::Result<T>,
) -> Result<Vec<T>> {
    if ids.len() > max {
        return Err(Error::BadRequest(format!(
            "{} ids in one request, at most {max} allowed; split the request",
            ids.len()
        )));
    }
    ids.iter().map(|id| Ok(parse(id)?)).collect()
}

/// The wire form of a ref.
pub fn ref_info(ns: &Namespace, key: &RefKey, rec: &RefRecord) -> pb::RefInfo {
    pb::RefInfo {
        namespace: ns.as_str().to_owned(),
        key: key.as_str().to_owned(),
        blob: bytes::Bytes::copy_from_slice(rec.blob.as_bytes()),
        size: rec.size,
        chunks: rec.chunks,
        manifest: bytes::Bytes::copy_from_slice(rec.manifest.as_bytes()),
        created_at_ms: rec.created_at_ms,
        expires_at_ms: rec.expires_at_ms.unwrap_or(0),
        labels: rec.labels.iter().cloned().collect(),
        versions: Vec::new(),
    }
}

/// `NOT_FOUND` for a ref the caller may read but that does not exist (or expired).
pub fn no_ref(ns: &Namespace, key: &RefKey, fallbacks: &[KeyPrefix]) -> Error {
    Error::NoRef {
        ns: ns.clone(),
        key: key.clone(),
        fallbacks: !fallbacks.is_empty(),
    }
}
