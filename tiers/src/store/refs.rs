//! Reading and deleting refs (setting one is the end of a commit, in `ingest.rs`). Expiry is
//! judged on the engine's clock.

use std::sync::Arc;

use heed::{RoTxn, WithoutTls};

use super::{Engine, Store};
use crate::cold::refs::RefChange;
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::{MAX_CHUNKS_PER_BLOB, Manifest, max_encoded_len};
use crate::meta::{Tables, manifest_key};
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant, TenantId};
use crate::refs::{RefRecord, ref_table_key, ref_table_prefix};
use crate::sealed::missing_manifest;
use crate::writeback::enqueue_ref_in_txn;

/// Most refs one transaction of [`Store::delete_prefix`] deletes.
const DELETE_BATCH: usize = 4096;

/// Decodes a stored manifest that must hash to `id`; anything else is
/// [`Error::MetadataLoss`] naming the copy (`place`).
fn decode_manifest(bytes: &[u8], id: &ManifestId, place: &str) -> Result<Manifest> {
    let damaged = |why: String| {
        Error::MetadataLoss(format!(
            "manifest {id} in the {place} is damaged ({why}), so the blob cannot be served"
        ))
    };
    let m = Manifest::decode(bytes, MAX_CHUNKS_PER_BLOB).map_err(|e| damaged(e.to_string()))?;
    if m.id() != *id {
        return Err(damaged("its bytes do not hash to its id".into()));
    }
    Ok(m)
}

impl Store {
    /// A manifest of the tenant that a ref names: from LMDB, else (absent or damaged there)
    /// from the cold tier, which then repairs the local copy. A manifest that no tier holds
    /// intact is [`Error::MetadataLoss`]: a ref names it, so it is lost, not a cache miss.
    pub async fn manifest(&self, tenant: &Tenant, id: ManifestId) -> Result<Arc<Manifest>> {
        let e = self.engine()?;
        load_manifest(&e, tenant.id(), id).await
    }

    /// A live (unexpired) ref.
    pub async fn get_ref(&self, ns: &Namespace, key: &RefKey) -> Result<Option<RefRecord>> {
        let e = self.engine()?;
        let rkey = ref_table_key(ns, key);
        let now = e.meta.clock().now_ms();
        e.meta
            .read(move |t, txn| live_ref_in(t, txn, &rkey, now))
            .await
    }

    /// `key` if live, else the newest live ref under the first of `fallbacks` that has one;
    /// in one read transaction.
    pub async fn resolve(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
    ) -> Result<Option<(RefKey, RefRecord)>> {
        let e = self.engine()?;
        let now = e.meta.clock().now_ms();
        let (ns, key, fallbacks) = (ns.clone(), key.clone(), fallbacks.to_vec());
        e.meta
            .read(move |t, txn| resolve_in(t, txn, &ns, &key, &fallbacks, now))
            .await
    }

    /// Live refs of `ns` under `prefix`, newest first, at most `limit`; and whether more matched.
    pub async fn list_refs(
        &self,
        ns: &Namespace,
        prefix: &KeyPrefix,
        limit: usize,
    ) -> Result<(Vec<(RefKey, RefRecord)>, bool)> {
        let e = self.engine()?;
        let now = e.meta.clock().now_ms();
        let (ns, prefix) = (ns.clone(), prefix.clone());
        let mut all = e
            .meta
            .read(move |t, txn| live_refs_in(t, txn, &ns, &prefix, now))
            .await?;
        let truncated = all.len() > limit;
        all.truncate(limit);
        Ok((all, truncated))
    }

    /// Deletes a ref; whether it existed (and was live). The deletion is queued for the cold
    /// tier with the change, so a rebuild from the cold tier never brings the ref back.
    pub async fn delete_ref(&self, ns: &Namespace, key: &RefKey) -> Result<bool> {
        let e = self.engine()?;
        let rkey = ref_table_key(ns, key);
        let now = e.meta.clock().now_ms();
        let (ns, key) = (ns.clone(), key.clone());
        let (existed, live) = e
            .meta
            .write(move |t, txn| {
                let live = match t.refs.get(txn, &rkey) {
                    Ok(Some(v)) => !decode_ref(v, &rkey)?.is_expired(now),
                    Ok(None) => return Ok((false, false)),
                    // A damaged ref can still be deleted.
                    Err(Error::MetadataLoss(_)) => true,
                    Err(err) => return Err(err),
                };
                t.refs.delete(txn, &rkey)?;
                enqueue_ref_in_txn(t, txn, &ns, &key, RefChange::Deleted)?;
                Ok((true, live))
            })
            .await?;
        if existed {
            e.uploader.notify.notify_one();
        }
        Ok(live)
    }

    /// Deletes every ref of `ns` whose key starts with `prefix` (live or expired); how many
    /// live ones went. Each deletion is queued for the cold tier like [`Store::delete_ref`]'s.
    /// Runs in transactions of at most [`DELETE_BATCH`] refs, so a prefix of millions of
    /// refs does not hold the writer for long; a ref set under the prefix while it runs may
    /// survive it.
    pub async fn delete_prefix(&self, ns: &Namespace, prefix: &KeyPrefix) -> Result<u64> {
        let e = self.engine()?;
        let start = ref_table_prefix(ns, prefix.as_str());
        let skip = ns.as_str().len() + 1;
        let mut deleted = 0;
        loop {
            let now = e.meta.clock().now_ms();
            let (start, ns) = (start.clone(), ns.clone());
            let (live, more) = e
                .meta
                .write(move |t, txn| {
                    let mut batch: Vec<(Vec<u8>, bool)> = Vec::new();
                    let mut more = false;
                    for item in t.refs.raw.prefix_iter(txn, &start)? {
                        let (k, stored) = item?;
                        if batch.len() == DELETE_BATCH {
                            more = true;
                            break;
                        }
                        // A damaged ref goes too, counted as live.
                        let live = crate::sealed::unseal(t.refs.kind, k, stored)
                            .and_then(|v| decode_ref(v, k))
                            .map_or(true, |r| !r.is_expired(now));
                        batch.push((k.to_vec(), live));
                    }
                    let mut live = 0;
                    for (k, was_live) in batch {
                        let key = std::str::from_utf8(&k[skip..])
                            .map_err(|_| Error::Format("ref key is not UTF-8".into()))?
                            .parse::<RefKey>()?;
                        t.refs.delete(txn, &k)?;
                        enqueue_ref_in_txn(t, txn, &ns, &key, RefChange::Deleted)?;
                        live += u64::from(was_live);
                    }
                    Ok((live, more))
                })
                .await?;
            deleted += live;
            e.uploader.notify.notify_one();
            if !more {
                return Ok(deleted);
            }
        }
    }
}

/// A live ref by its refs-table key, read in `txn`.
fn live_ref_in(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    rkey: &[u8],
    now_ms: u64,
) -> Result<Option<RefRecord>> {
    Ok(t.refs
        .get(txn, rkey)?
        .map(|v| decode_ref(v, rkey))
        .transpose()?
        .filter(|r| !r.is_expired(now_ms)))
}

/// Live refs of `ns` under `prefix`, newest first (ties: the greater key first), read in
/// `txn`.
fn live_refs_in(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    ns: &Namespace,
    prefix: &KeyPrefix,
    now_ms: u64,
) -> Result<Vec<(RefKey, RefRecord)>> {
    let start = ref_table_prefix(ns, prefix.as_str());
    let skip = ns.as_str().len() + 1;
    let mut out = Vec::new();
    for item in t.refs.prefix_iter(txn, &start)? {
        let (k, v) = item?;
        let record = decode_ref(v, k)?;
        if record.is_expired(now_ms) {
            continue;
        }
        let key = std::str::from_utf8(&k[skip..])
            .map_err(|_| Error::Format("ref key is not UTF-8".into()))?
            .parse::<RefKey>()?;
        out.push((key, record));
    }
    out.sort_by(|a, b| {
        b.1.created_at_ms
            .cmp(&a.1.created_at_ms)
            .then_with(|| b.0.cmp(&a.0))
    });
    Ok(out)
}

/// What [`Store::resolve`] answers, read in `txn`: the lookups resolve their ref in the
/// transaction that reads their tables.
pub(super) fn resolve_in(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    ns: &Namespace,
    key: &RefKey,
    fallbacks: &[KeyPrefix],
    now_ms: u64,
) -> Result<Option<(RefKey, RefRecord)>> {
    if let Some(r) = live_ref_in(t, txn, &ref_table_key(ns, key), now_ms)? {
        return Ok(Some((key.clone(), r)));
    }
    for prefix in fallbacks {
        if let Some(newest) = live_refs_in(t, txn, ns, prefix, now_ms)?.into_iter().next() {
            return Ok(Some(newest));
        }
    }
    Ok(None)
}

/// Decodes a ref record whose seal held; a record that still does not decode is
/// [`Error::MetadataLoss`] naming the ref.
pub(crate) fn decode_ref(bytes: &[u8], key: &[u8]) -> Result<RefRecord> {
    RefRecord::decode(bytes).map_err(|e| {
        Error::MetadataLoss(format!(
            "{} is damaged in the server's index ({e})",
            crate::sealed::Kind::Ref.describe(key)
        ))
    })
}

/// Splits a refs-table key into namespace and key.
pub(super) fn parse_ref_key(k: &[u8]) -> Result<(Namespace, RefKey)> {
    let bad = || Error::Format("a refs-table key is not `namespace NUL key`".into());
    let split = k.iter().position(|b| *b == 0).ok_or_else(bad)?;
    let ns = std::str::from_utf8(&k[..split]).map_err(|_| bad())?;
    let key = std::str::from_utf8(&k[split + 1..]).map_err(|_| bad())?;
    Ok((ns.parse()?, key.parse()?))
}

/// A manifest of tenant `tid`, as [`Store::manifest`] reads it (and repairs it).
pub(super) async fn load_manifest(
    e: &Arc<Engine>,
    tid: TenantId,
    id: ManifestId,
) -> Result<Arc<Manifest>> {
    let mkey = manifest_key(tid, &id);
    let local = e
        .meta
        .read(move |t, txn| {
            Ok(match t.manifests.get(txn, &mkey) {
                Ok(Some(b)) => Some(decode_manifest(b, &id, "index")),
                Ok(None) => None,
                Err(err @ Error::MetadataLoss(_)) => Some(Err(err)),
                Err(err) => return Err(err),
            })
        })
        .await?;
    let damage = match local {
        Some(Ok(m)) => return Ok(Arc::new(m)),
        Some(Err(err)) => {
            tracing::error!(manifest = %id, error = %err, "the local manifest is damaged; trying the cold copy");
            Some(err)
        }
        None => None,
    };
    let limit = max_encoded_len(MAX_CHUNKS_PER_BLOB);
    let cold = match e.cold.get_manifest(tid, &id, limit).await {
        Ok(bytes) => bytes,
        Err(Error::Format(why)) => {
            return Err(damage.unwrap_or_else(|| {
                Error::MetadataLoss(format!(
                    "manifest {id} in the cold tier is damaged ({why}), so the blob cannot \
                     be served"
                ))
            }));
        }
        Err(Error::Unavailable(m)) if damage.is_some() => {
            tracing::warn!(manifest = %id, error = %m, "the cold tier cannot be reached for a damaged manifest");
            None
        }
        Err(err) => return Err(err),
    };
    let Some(bytes) = cold else {
        return Err(damage.unwrap_or_else(|| missing_manifest(&id)));
    };
    let m = decode_manifest(&bytes, &id, "cold tier")?;
    if damage.is_some() {
        let encoded = bytes.to_vec();
        let repaired = e
            .meta
            .write(move |t, txn| t.manifests.put(txn, &mkey, &encoded))
            .await;
        match repaired {
            Ok(()) => {
                tracing::info!(manifest = %id, "repaired a damaged manifest from its cold copy")
            }
            Err(err) => {
                tracing::warn!(manifest = %id, error = %err, "repairing a damaged manifest failed; the read still succeeds")
            }
        }
    }
    Ok(Arc::new(m))
}
