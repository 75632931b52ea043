//! Per-tier figures: chunk counts and stored bytes from the `counters` table, logical bytes
//! from the live refs, hit counts from the access log.

use super::Store;
use super::types::{Stats, TierStats};
use crate::error::{Error, Result};
use heed::{RoTxn, WithoutTls};

use crate::meta::{Tables, le_u64};
use crate::names::{Tenant, TenantId};
use crate::refs::RefRecord;
use crate::tier::TierName;

/// A table scan, whole or by prefix (LMDB refuses an empty prefix key).
type RawIter<'t> = Box<dyn Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>> + 't>;

/// Chunks and stored bytes per tier (in [`TierName::ALL`] order) from the `counters` table,
/// of one tenant or all.
pub(super) fn sum_counters(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    tid: Option<&TenantId>,
) -> Result<[(u64, u64); 3]> {
    let mut per_tier = [(0u64, 0u64); 3];
    let counters: RawIter<'_> = match tid {
        Some(tid) => Box::new(t.counters.prefix_iter(txn, &tid.0)?),
        None => Box::new(t.counters.iter(txn)?),
    };
    for item in counters {
        let (k, v) = item?;
        if k.len() != 9 || v.len() != 16 {
            continue;
        }
        if let Some(tier) = TierName::ALL.iter().find(|t| t.bit() == k[8]) {
            per_tier[tier.index()].0 += le_u64(&v[..8]);
            per_tier[tier.index()].1 += le_u64(&v[8..]);
        }
    }
    Ok(per_tier)
}

impl Store {
    /// Figures for one tenant, or all.
    pub async fn stats(&self, tenant: Option<&Tenant>) -> Result<Stats> {
        let e = self.engine()?;
        let tid = tenant.map(Tenant::id);
        let ref_prefix = tenant.map(|t| format!("{}/", t.as_str()));
        let now = e.meta.clock().now_ms();
        let (per_tier, logical, refs, queue, recompress) = e
            .meta
            .read(move |t, txn| {
                let per_tier = sum_counters(t, txn, tid.as_ref())?;
                let (mut logical, mut refs) = (0, 0);
                let refs_iter = match &ref_prefix {
                    Some(p) => t.refs.prefix_iter(txn, p.as_bytes())?,
                    None => t.refs.iter(txn)?,
                };
                for item in refs_iter {
                    // A damaged ref is not counted; reading it answers DATA_LOSS.
                    let v = match item {
                        Ok((_, v)) => v,
                        Err(Error::MetadataLoss(m)) => {
                            tracing::warn!(error = %m, "stats skip a damaged ref");
                            continue;
                        }
                        Err(err) => return Err(err),
                    };
                    let Ok(r) = RefRecord::decode(v) else {
                        continue;
                    };
                    if !r.is_expired(now) {
                        logical += r.size;
                        refs += 1;
                    }
                }
                let recompress = crate::cold::recompress::pending(t, txn)?;
                Ok((per_tier, logical, refs, t.cold_queue.len(txn)?, recompress))
            })
            .await?;
        let tiers = TierName::ALL
            .iter()
            .zip(per_tier)
            .map(|(name, (chunks, stored_bytes))| {
                // Hit counts are not kept per tenant.
                let hits = if tenant.is_none() {
                    e.access.hits(*name)
                } else {
                    0
                };
                (
                    *name,
                    TierStats {
                        chunks,
                        stored_bytes,
                        hits,
                    },
                )
            })
            .collect();
        Ok(Stats {
            tiers,
            logical_bytes: logical,
            refs,
            cold_queue: queue,
            cold_recompress: recompress,
            scrub: e.scrub.snapshot(),
            movement: e.movement.snapshot(),
        })
    }
}
