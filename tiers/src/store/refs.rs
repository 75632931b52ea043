//! Reading and deleting refs (setting one is the end of a commit, in `ingest.rs`). Expiry is
//! judged on the engine's clock.

use std::sync::Arc;

use super::Store;
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::{MAX_CHUNKS_PER_BLOB, Manifest, encoded_len};
use crate::meta::manifest_key;
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant};
use crate::refs::{RefRecord, ref_table_key, ref_table_prefix};

impl Store {
    /// A manifest of the tenant (from LMDB, or rebuilt from the cold tier).
    pub async fn manifest(&self, tenant: &Tenant, id: ManifestId) -> Result<Arc<Manifest>> {
        let e = self.engine()?;
        let tid = tenant.id();
        let mkey = manifest_key(tid, &id);
        let local = e
            .meta
            .read(move |t, txn| {
                t.manifests
                    .get(txn, &mkey)?
                    .map(|b| Manifest::decode(b, MAX_CHUNKS_PER_BLOB))
                    .transpose()
            })
            .await?;
        if let Some(m) = local {
            return Ok(Arc::new(m));
        }
        let limit = encoded_len(MAX_CHUNKS_PER_BLOB);
        let Some(bytes) = e.cold.get_manifest(tid, &id, limit).await? else {
            return Err(Error::NotFound(format!("manifest {id} is not stored")));
        };
        let m = Manifest::decode(&bytes, MAX_CHUNKS_PER_BLOB)?;
        if m.id() != id {
            return Err(Error::Format(format!(
                "cold manifest {id} does not hash to its name"
            )));
        }
        Ok(Arc::new(m))
    }

    /// A live (unexpired) ref.
    pub async fn get_ref(&self, ns: &Namespace, key: &RefKey) -> Result<Option<RefRecord>> {
        let e = self.engine()?;
        let rkey = ref_table_key(ns, key);
        let now = e.meta.clock().now_ms();
        e.meta
            .read(move |t, txn| {
                Ok(t.refs
                    .get(txn, &rkey)?
                    .map(RefRecord::decode)
                    .transpose()?
                    .filter(|r| !r.is_expired(now)))
            })
            .await
    }

    /// `key` if live, else the newest live ref under the first of `fallbacks` that has one.
    pub async fn resolve(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
    ) -> Result<Option<(RefKey, RefRecord)>> {
        if let Some(r) = self.get_ref(ns, key).await? {
            return Ok(Some((key.clone(), r)));
        }
        for prefix in fallbacks {
            let (mut refs, _) = self.list_refs(ns, prefix, 1).await?;
            if let Some(found) = refs.pop() {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Live refs of `ns` under `prefix`, newest first, at most `limit`; and whether more matched.
    pub async fn list_refs(
        &self,
        ns: &Namespace,
        prefix: &KeyPrefix,
        limit: usize,
    ) -> Result<(Vec<(RefKey, RefRecord)>, bool)> {
        let e = self.engine()?;
        let start = ref_table_prefix(ns, prefix.as_str());
        let skip = ns.as_str().len() + 1;
        let now = e.meta.clock().now_ms();
        let mut all = e
            .meta
            .read(move |t, txn| {
                let mut out = Vec::new();
                for item in t.refs.prefix_iter(txn, &start)? {
                    let (k, v) = item?;
                    let record = RefRecord::decode(v)?;
                    if record.is_expired(now) {
                        continue;
                    }
                    let key = std::str::from_utf8(&k[skip..])
                        .map_err(|_| Error::Format("ref key is not UTF-8".into()))?
                        .parse::<RefKey>()?;
                    out.push((key, record));
                }
                Ok(out)
            })
            .await?;
        all.sort_by(|a, b| {
            b.1.created_at_ms
                .cmp(&a.1.created_at_ms)
                .then_with(|| b.0.cmp(&a.0))
        });
        let truncated = all.len() > limit;
        all.truncate(limit);
        Ok((all, truncated))
    }

    /// Deletes a ref; whether it existed (and was live).
    pub async fn delete_ref(&self, ns: &Namespace, key: &RefKey) -> Result<bool> {
        let e = self.engine()?;
        let rkey = ref_table_key(ns, key);
        let now = e.meta.clock().now_ms();
        e.meta
            .write(move |t, txn| {
                let live = match t.refs.get(txn, &rkey)? {
                    Some(v) => !RefRecord::decode(v)?.is_expired(now),
                    None => return Ok(false),
                };
                t.refs.delete(txn, &rkey)?;
                Ok(live)
            })
            .await
    }
}
