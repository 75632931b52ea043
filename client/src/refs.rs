//! Refs and figures: resolve, list and delete refs; the server's per-tier statistics.

use std::collections::BTreeMap;

use scipcache_proto::pb;
use scipcache_tiers::ids::{BlobId, ManifestId};
use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey, Tenant};
use serde::Serialize;
use time::OffsetDateTime;

use crate::connect::Client;
use crate::error::{Error, Result};

/// A ref as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefSummary {
    /// The namespace (as the server names it; may be empty if the server leaves it out).
    pub namespace: String,
    /// The ref's key: after a fallback, the key that was resolved.
    pub key: String,
    /// The blob it names.
    pub blob: BlobId,
    /// The blob's length.
    pub size: u64,
    /// Chunks in the blob.
    pub chunks: u64,
    /// The manifest's id, when the server sends one.
    pub manifest: Option<ManifestId>,
    /// When the ref was set.
    pub created_at: OffsetDateTime,
    /// When the ref expires; `None` for never.
    pub expires_at: Option<OffsetDateTime>,
    /// Labels given at push time.
    pub labels: BTreeMap<String, String>,
}

fn from_unix_ms(ms: u64, what: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| Error::Protocol(format!("{what} {ms} ms is out of range: {e}")))
}

impl TryFrom<pb::RefInfo> for RefSummary {
    type Error = Error;

    fn try_from(info: pb::RefInfo) -> Result<Self> {
        let blob = BlobId::from_slice(&info.blob).map_err(|e| {
            Error::Protocol(format!("ref {:?} has a malformed blob id: {e}", info.key))
        })?;
        let manifest = ManifestId::from_slice(&info.manifest).ok();
        Ok(Self {
            blob,
            manifest,
            size: info.size,
            chunks: info.chunks,
            created_at: from_unix_ms(info.created_at_ms, "created_at")?,
            expires_at: match info.expires_at_ms {
                0 => None,
                ms => Some(from_unix_ms(ms, "expires_at")?),
            },
            labels: info.labels.into_iter().collect(),
            namespace: info.namespace,
            key: info.key,
        })
    }
}

/// Refs under a prefix, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefList {
    /// The refs.
    pub refs: Vec<RefSummary>,
    /// More refs matched than the server returned.
    pub truncated: bool,
}

/// One tier's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierStats {
    /// `hot`, `warm` or `cold`.
    pub name: String,
    /// Chunks held.
    pub chunks: u64,
    /// Bytes stored (compressed, with overhead).
    pub stored_bytes: u64,
    /// Reads served from this tier.
    pub hits: u64,
}

/// The server's figures, of the caller's tenant or (for an operator) of all tenants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Per tier, in the server's order.
    pub tiers: Vec<TierStats>,
    /// Bytes of all blobs under refs, as if stored whole.
    pub logical_bytes: u64,
    /// Refs.
    pub refs: u64,
    /// Chunks waiting to be written to the cold tier.
    pub cold_queue: u64,
    /// Cold packs waiting to be recompressed at the cold level when the server is idle.
    pub cold_recompress: u64,
    /// What moved between tiers since the server started (all tenants).
    pub movement: Movement,
}

/// Movement between the server's tiers since it started: what its evictor and its promotions
/// did (`scipcache stat --json` prints it as `movement`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Movement {
    /// Chunks copied from hot to warm by the evictor.
    pub demoted: u64,
    /// Copies the evictor dropped, per tier (hot, warm).
    pub evicted: Vec<EvictedCopies>,
    /// Chunks reads and warm-ups promoted into hot.
    pub promoted: u64,
    /// Chunks read from below hot that the admission rule kept out of hot.
    pub not_admitted: u64,
    /// Eviction passes run.
    pub passes: u64,
}

/// Copies the evictor dropped from one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EvictedCopies {
    /// `hot` or `warm`.
    pub tier: String,
    /// Chunks whose copy there was dropped.
    pub chunks: u64,
    /// Stored bytes of those copies.
    pub bytes: u64,
}

impl From<pb::Movement> for Movement {
    fn from(m: pb::Movement) -> Self {
        Self {
            demoted: m.demoted,
            evicted: m
                .evicted
                .into_iter()
                .map(|e| EvictedCopies {
                    tier: e.tier,
                    chunks: e.chunks,
                    bytes: e.bytes,
                })
                .collect(),
            promoted: m.promoted,
            not_admitted: m.not_admitted,
            passes: m.passes,
        }
    }
}

impl From<pb::StatsResponse> for Stats {
    fn from(s: pb::StatsResponse) -> Self {
        Self {
            tiers: s
                .tiers
                .into_iter()
                .map(|t| TierStats {
                    name: t.name,
                    chunks: t.chunks,
                    stored_bytes: t.stored_bytes,
                    hits: t.hits,
                })
                .collect(),
            logical_bytes: s.logical_bytes,
            refs: s.refs,
            cold_queue: s.cold_queue,
            cold_recompress: s.cold_recompress,
            // A server that predates the movement figures sends none: all zero.
            movement: s.movement.map(Movement::from).unwrap_or_default(),
        }
    }
}

impl Client {
    /// Resolves `key` (or, when it is absent, the newest ref under the first of `fallbacks`
    /// that has one) without reading the blob: `Blobs/Stat`.
    pub async fn stat(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
    ) -> Result<RefSummary> {
        let req = pb::StatBlobRequest {
            namespace: ns.to_string(),
            key: key.to_string(),
            fallback_prefixes: fallbacks.iter().map(|p| p.as_str().to_owned()).collect(),
        };
        self.unary(
            "Blobs/Stat",
            |c, r| async move { c.blobs().stat(r).await },
            req,
        )
        .await?
        .try_into()
    }

    /// One ref, exactly: `Refs/Get`.
    pub async fn get_ref(&self, ns: &Namespace, key: &RefKey) -> Result<RefSummary> {
        let req = pb::GetRefRequest {
            namespace: ns.to_string(),
            key: key.to_string(),
        };
        self.unary("Refs/Get", |c, r| async move { c.refs().get(r).await }, req)
            .await?
            .try_into()
    }

    /// Refs whose key starts with `prefix`, newest first, up to the server's default limit.
    pub async fn list_refs(&self, ns: &Namespace, prefix: &KeyPrefix) -> Result<RefList> {
        self.list_refs_limited(ns, prefix, 0).await
    }

    /// Like [`Client::list_refs`], with at most `limit` refs (0 = the server's default).
    pub async fn list_refs_limited(
        &self,
        ns: &Namespace,
        prefix: &KeyPrefix,
        limit: u32,
    ) -> Result<RefList> {
        let req = pb::ListRefsRequest {
            namespace: ns.to_string(),
            prefix: prefix.as_str().to_owned(),
            limit,
        };
        let answer = self
            .unary(
                "Refs/List",
                |c, r| async move { c.refs().list(r).await },
                req,
            )
            .await?;
        Ok(RefList {
            refs: answer
                .refs
                .into_iter()
                .map(RefSummary::try_from)
                .collect::<Result<_>>()?,
            truncated: answer.truncated,
        })
    }

    /// Deletes a ref (its chunks go at the next GC if nothing else uses them). Returns whether
    /// a ref was there. Not retried: the first attempt may have deleted it.
    pub async fn delete_ref(&self, ns: &Namespace, key: &RefKey) -> Result<bool> {
        let req = pb::DeleteRefRequest {
            namespace: ns.to_string(),
            key: key.to_string(),
        };
        let answer = self
            .unary_once(
                "Refs/Delete",
                &|c: Client, r| async move { c.refs().delete(r).await },
                req,
            )
            .await?;
        Ok(answer.deleted)
    }

    /// The server's figures for the caller's tenant (or all tenants, for an operator).
    pub async fn stats(&self) -> Result<Stats> {
        self.stats_request(String::new()).await
    }

    /// An operator's view of one tenant's figures.
    pub async fn tenant_stats(&self, tenant: &Tenant) -> Result<Stats> {
        self.stats_request(tenant.to_string()).await
    }

    async fn stats_request(&self, tenant: String) -> Result<Stats> {
        let req = pb::StatsRequest { tenant };
        let answer = self
            .unary(
                "Admin/Stats",
                |c, r| async move { c.admin().stats(r).await },
                req,
            )
            .await?;
        Ok(answer.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> pb::RefInfo {
        pb::RefInfo {
            namespace: "acme/web/app".into(),
            key: "commit/abc".into(),
            blob: BlobId::of(b"x").as_bytes().to_vec().into(),
            size: 1,
            chunks: 1,
            manifest: vec![7u8; 32].into(),
            created_at_ms: 1_700_000_000_123,
            expires_at_ms: 0,
            labels: [("ci".to_owned(), "yes".to_owned())].into_iter().collect(),
            versions: Vec::new(),
        }
    }

    #[test]
    fn ref_info_converts_times_and_optional_expiry() -> Result<()> {
        let summary = RefSummary::try_from(info())?;
        assert_eq!(summary.blob, BlobId::of(b"x"));
        assert_eq!(summary.created_at.unix_timestamp(), 1_700_000_000);
        assert_eq!(summary.created_at.millisecond(), 123);
        assert_eq!(summary.expires_at, None);
        assert!(summary.manifest.is_some());
        let expiring = RefSummary::try_from(pb::RefInfo {
            expires_at_ms: 1_800_000_000_000,
            ..info()
        })?;
        assert_eq!(
            expiring.expires_at.map(OffsetDateTime::unix_timestamp),
            Some(1_800_000_000)
        );
        Ok(())
    }

    #[test]
    fn ref_info_with_a_malformed_blob_id_is_a_protocol_error() {
        let bad = pb::RefInfo {
            blob: vec![1u8; 5].into(),
            ..info()
        };
        assert!(matches!(RefSummary::try_from(bad), Err(Error::Protocol(_))));
    }
}
