//! Per-tenant quotas (`[quotas]`): a tenant's usage is the stored bytes of its chunks across
//! the tiers, each chunk counted once at its largest stored size.
//!
//! The usage of a tenant with a quota is computed once by a scan of its chunk rows, inside an
//! LMDB write job (so no put lands between the scan and the figure), and kept in memory: each
//! put adds its new frames' hot sizes (a chunk's largest: hot's lz4 compresses least), each
//! swept chunk subtracts its largest copy. A chunk that later leaves hot stays counted at its
//! hot size until the next GC, which drops the figures so the next put scans again: the figure
//! never undercounts. A put is checked and charged in the write job that stores it, so two
//! concurrent pushes cannot both slip under the quota.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use heed::RoTxn;

use super::{Engine, Store};
use crate::error::{Error, Result};
use crate::meta::{Tables, le_u32};
use crate::names::{Tenant, TenantId};

/// Known usage per tenant.
pub(crate) type Usage = Arc<Mutex<HashMap<TenantId, u64>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A figure is valid after any panic (at worst it is scanned again after the next GC).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The largest stored size of each of a tenant's chunks, summed.
fn scan(t: &Tables, txn: &RoTxn<'_>, tenant: TenantId) -> Result<u64> {
    let mut total = 0u64;
    for item in t.chunks.raw.prefix_iter(txn, &tenant.0)? {
        let (k, _) = item?;
        let mut largest = t.hot.get(txn, k)?.map_or(0, |v| v.len() as u64);
        if let Some(v) = t.warm.get_unless_damaged(txn, k)? {
            largest = largest.max(u64::from(le_u32(&v[12..16])));
        }
        if let Some(v) = t.cold.get_unless_damaged(txn, k)? {
            largest = largest.max(u64::from(crate::cold::charged_len(v)));
        }
        total += largest;
    }
    Ok(total)
}

/// A tenant's usage, scanned if not known (call inside a write job).
fn known_or_scan(usage: &Usage, t: &Tables, txn: &RoTxn<'_>, tenant: TenantId) -> Result<u64> {
    if let Some(n) = lock(usage).get(&tenant) {
        return Ok(*n);
    }
    let n = scan(t, txn, tenant)?;
    lock(usage).insert(tenant, n);
    Ok(n)
}

/// Checks that `adding` stored bytes fit the tenant's quota and charges them (inside the write
/// job that stores them); [`Error::QuotaExceeded`] otherwise.
pub(crate) fn charge(
    usage: &Usage,
    t: &Tables,
    txn: &RoTxn<'_>,
    tenant: &Tenant,
    quota: u64,
    adding: u64,
) -> Result<()> {
    let tid = tenant.id();
    let now = known_or_scan(usage, t, txn, tid)?;
    if now.saturating_add(adding) > quota {
        return Err(Error::QuotaExceeded {
            tenant: tenant.as_str().to_owned(),
            quota,
            usage: now,
            adding,
        });
    }
    if let Some(n) = lock(usage).get_mut(&tid) {
        *n += adding;
    }
    Ok(())
}

/// Subtracts what a sweep freed.
pub(crate) fn swept(e: &Engine, freed: &HashMap<TenantId, u64>) {
    let mut usage = lock(&e.usage);
    for (tenant, bytes) in freed {
        if let Some(n) = usage.get_mut(tenant) {
            *n = n.saturating_sub(*bytes);
        }
    }
}

/// Drops the figures a GC may have left too high (of one tenant, or all).
pub(crate) fn forget(e: &Engine, tenant: Option<TenantId>) {
    let mut usage = lock(&e.usage);
    match tenant {
        Some(t) => {
            usage.remove(&t);
        }
        None => usage.clear(),
    }
}

impl Store {
    /// What a tenant stores for its quota: each chunk once, at its largest stored size.
    pub async fn tenant_usage(&self, tenant: &Tenant) -> Result<u64> {
        let e = self.engine()?;
        let (usage, tid) = (e.usage.clone(), tenant.id());
        if let Some(n) = lock(&usage).get(&tid) {
            return Ok(*n);
        }
        e.meta
            .write(move |t, txn| known_or_scan(&usage, t, txn, tid))
            .await
    }
}
