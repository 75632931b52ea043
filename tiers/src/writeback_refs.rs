//! Ref events in the write-behind queue: queued in the transaction that changes the ref,
//! uploaded as cold ref objects (`cold_refs.rs`).

use std::collections::HashMap;

use heed::RwTxn;

use super::{QueueItem, Uploader, enqueue_in_txn};
use crate::cold::refs::{RefChange, RefEvent};
use crate::error::Result;
use crate::meta::{Tables, state_get, state_put};
use crate::names::{Namespace, RefKey, TenantId};

/// The `state` key of the last ref event version given out.
pub(crate) const REF_VERSION_KEY: &str = "ref_version";

/// Queues the cold copy of a change of a ref, inside the transaction that makes the change.
/// Its version comes from [`next_ref_version`].
pub(crate) fn enqueue_ref_in_txn(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    ns: &Namespace,
    key: &RefKey,
    change: RefChange,
) -> Result<()> {
    let now = t.clock.now_ms();
    let version = next_ref_version(t, txn)?;
    let event = RefEvent {
        ns: ns.clone(),
        key: key.clone(),
        version,
        at_ms: now,
        change,
    };
    let item = QueueItem::Ref {
        tenant: ns.tenant().id(),
        deleted: event.is_deletion(),
        object: event.encode(),
    };
    enqueue_in_txn(t, txn, item)
}

/// Gives out the next ref event version: `max(last + 1, now in Unix ms)`, larger than every
/// earlier one.
pub(crate) fn next_ref_version(t: &Tables, txn: &mut RwTxn<'_>) -> Result<u64> {
    let version = state_get(t, txn, REF_VERSION_KEY)?
        .saturating_add(1)
        .max(t.clock.now_ms());
    state_put(t, txn, REF_VERSION_KEY, version)?;
    Ok(version)
}

/// Uploads the ref events of this round, except those of a tenant with chunks queued before
/// them still waiting (`waiting`: per tenant, the first such sequence); the uploaded ones go
/// to `done`.
pub(super) async fn upload_ref_events(
    inner: &Uploader,
    events: Vec<(u64, TenantId, Vec<u8>)>,
    waiting: &HashMap<TenantId, u64>,
    done: &mut Vec<u64>,
) -> Result<()> {
    for (seq, tenant, object) in events {
        if waiting.get(&tenant).is_some_and(|first| *first < seq) {
            continue;
        }
        inner.cold.put_ref_event(tenant, &object).await?;
        done.push(seq);
    }
    Ok(())
}
