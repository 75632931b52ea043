//! Per-tier figures: chunk counts and stored bytes from the `counters` table, raw bytes from
//! a scan of the chunk index (one read of every row, reused for [`RAW_SCAN_EVERY`]),
//! logical bytes from the live refs, hit counts from the access log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long a scan of the raw bytes per tier is reused.
pub const RAW_SCAN_EVERY: Duration = Duration::from_secs(60);

/// When a scan ran, and the raw bytes per tier it found.
type RawScan = (Instant, [u64; 3]);

/// The last raw-bytes scan of each scope (one tenant, or all).
#[derive(Debug, Default)]
pub(crate) struct RawScans(Mutex<HashMap<Option<TenantId>, RawScan>>);

impl RawScans {
    fn fresh(&self, tid: Option<TenantId>) -> Option<[u64; 3]> {
        let scans = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scans
            .get(&tid)
            .filter(|(at, _)| at.elapsed() < RAW_SCAN_EVERY)
            .map(|(_, raw)| *raw)
    }

    fn store(&self, tid: Option<TenantId>, raw: [u64; 3]) {
        let mut scans = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scans.insert(tid, (Instant::now(), raw));
    }
}

/// Raw bytes of the chunks each tier holds (in [`TierName::ALL`] order), by their index rows.
fn scan_raw(t: &Tables, txn: &RoTxn<'_, WithoutTls>, tid: Option<&TenantId>) -> Result<[u64; 3]> {
    let mut raw = [0u64; 3];
    let prefix = tid.map(|t| t.0.to_vec()).unwrap_or_default();
    for item in crate::meta::raw_prefix_iter(&t.chunks.raw, txn, &prefix)? {
        let (k, stored) = item?;
        // A damaged row is not counted (fsck reports it).
        let Ok(info) = crate::sealed::unseal(t.chunks.kind, k, stored)
            .and_then(crate::meta::ChunkInfo::decode)
        else {
            continue;
        };
        for tier in TierName::ALL {
            if info.tiers & tier.bit() != 0 {
                raw[tier.index()] += u64::from(info.raw_len);
            }
        }
    }
    Ok(raw)
}

impl Store {
    /// Figures for one tenant, or all.
    pub async fn stats(&self, tenant: Option<&Tenant>) -> Result<Stats> {
        let e = self.engine()?;
        let tid = tenant.map(Tenant::id);
        let ref_prefix = tenant.map(|t| format!("{}/", t.as_str()));
        let now = e.meta.clock().now_ms();
        let known_raw = e.raw_scans.fresh(tid);
        let (per_tier, raw, logical, refs, queue, recompress) = e
            .meta
            .read(move |t, txn| {
                let per_tier = sum_counters(t, txn, tid.as_ref())?;
                let raw = match known_raw {
                    Some(raw) => raw,
                    None => scan_raw(t, txn, tid.as_ref())?,
                };
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
                Ok((
                    per_tier,
                    raw,
                    logical,
                    refs,
                    t.cold_queue.len(txn)?,
                    recompress,
                ))
            })
            .await?;
        if known_raw.is_none() {
            e.raw_scans.store(tid, raw);
        }
        let tiers = TierName::ALL
            .iter()
            .zip(per_tier)
            .zip(raw)
            .map(|((name, (chunks, stored_bytes)), raw_bytes)| {
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
                        raw_bytes,
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
