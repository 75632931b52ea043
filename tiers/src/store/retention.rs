//! Retention: which refs a GC deletes because they expired or a `[[retention]]` rule gives
//! them up, and the default TTL a rule gives new refs.
//!
//! A rule matches the ref keys that start with its prefix, in every namespace; the longest
//! matching prefix decides. `keep_last = N` keeps the newest N refs under the prefix in each
//! namespace (by creation time, then key); `ttl` is the TTL of refs set without `--ttl` (set
//! at commit, and applied by GC to refs set before the rule existed); `keep = "forever"`
//! exempts the prefix from the rules of shorter prefixes. A push's own `--ttl` always applies.

use std::collections::HashMap;
use std::time::Duration;

use super::Engine;
use super::lifecycle_types::{RetentionOutcome, RetentionPolicy, RetentionRule};
use crate::cold::refs::RefChange;
use crate::error::Result;
use crate::writeback::enqueue_ref_in_txn;

/// Refs deleted per transaction.
const APPLY_BATCH: usize = 1024;

/// The rule that decides for `key`: the one with the longest matching prefix.
fn rule_for<'a>(rules: &'a [RetentionRule], key: &str) -> Option<(usize, &'a RetentionRule)> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| key.starts_with(&r.prefix))
        .max_by_key(|(_, r)| r.prefix.len())
}

/// The TTL a new ref under `key` gets when its push gives none.
pub(crate) fn default_ttl(rules: &[RetentionRule], key: &str) -> Option<Duration> {
    match rule_for(rules, key) {
        Some((
            _,
            RetentionRule {
                policy: RetentionPolicy::Ttl(d),
                ..
            },
        )) => Some(*d),
        _ => None,
    }
}

/// What retention gives up in one run.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Table key and stored (sealed) value of each ref to delete.
    pub(crate) refs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Of those, refs past their `expires_at`.
    pub(crate) expired: u64,
    /// Per rule, how many it gives up.
    pub(crate) outcomes: Vec<RetentionOutcome>,
}

/// Finds the refs under `ns_prefix` that expired or that a rule gives up.
pub(crate) async fn plan(e: &Engine, ns_prefix: &[u8], now_ms: u64) -> Result<Plan> {
    let rules = e.config.retention.clone();
    let prefix = ns_prefix.to_vec();
    e.meta
        .read(move |t, txn| {
            let mut plan = Plan {
                outcomes: rules
                    .iter()
                    .map(|r| RetentionOutcome {
                        prefix: r.prefix.clone(),
                        policy: r.policy.to_string(),
                        deleted: 0,
                    })
                    .collect(),
                ..Plan::default()
            };
            // Per namespace and keep_last rule: (created, key, table key, stored value).
            type Kept = Vec<(u64, Vec<u8>, Vec<u8>)>;
            let mut groups: HashMap<(Vec<u8>, usize), Kept> = HashMap::new();
            for item in crate::meta::raw_prefix_iter(&t.refs.raw, txn, &prefix)? {
                let (k, stored) = item?;
                // A damaged ref is left for fsck.
                let Ok(record) = crate::sealed::unseal(t.refs.kind, k, stored)
                    .and_then(|v| super::refs::decode_ref(v, k))
                else {
                    continue;
                };
                if record.is_expired(now_ms) {
                    plan.expired += 1;
                    plan.refs.push((k.to_vec(), stored.to_vec()));
                    continue;
                }
                let Some(split) = k.iter().position(|b| *b == 0) else {
                    continue;
                };
                let key = String::from_utf8_lossy(&k[split + 1..]);
                match rule_for(&rules, &key) {
                    Some((
                        i,
                        RetentionRule {
                            policy: RetentionPolicy::Ttl(d),
                            ..
                        },
                    )) => {
                        let ttl = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                        if record.expires_at_ms.is_none()
                            && record.created_at_ms.saturating_add(ttl) <= now_ms
                        {
                            plan.outcomes[i].deleted += 1;
                            plan.refs.push((k.to_vec(), stored.to_vec()));
                        }
                    }
                    Some((
                        i,
                        RetentionRule {
                            policy: RetentionPolicy::KeepLast(_),
                            ..
                        },
                    )) => {
                        groups.entry((k[..split].to_vec(), i)).or_default().push((
                            record.created_at_ms,
                            k.to_vec(),
                            stored.to_vec(),
                        ));
                    }
                    _ => {}
                }
            }
            for ((_, i), mut refs) in groups {
                let RetentionPolicy::KeepLast(n) = rules[i].policy else {
                    continue;
                };
                refs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
                for (_, k, stored) in refs
                    .into_iter()
                    .skip(usize::try_from(n).unwrap_or(usize::MAX))
                {
                    plan.outcomes[i].deleted += 1;
                    plan.refs.push((k, stored));
                }
            }
            Ok(plan)
        })
        .await
}

/// Deletes the planned refs that are still as planned (a ref set again meanwhile stays), each
/// deletion queued for the cold tier.
pub(crate) async fn apply(e: &Engine, refs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    for batch in refs.chunks(APPLY_BATCH) {
        let batch = batch.to_vec();
        e.meta
            .write(move |t, txn| {
                for (k, stored) in batch {
                    if t.refs.raw.get(txn, &k)? != Some(&stored[..]) {
                        continue;
                    }
                    let (ns, key) = super::refs::parse_ref_key(&k)?;
                    t.refs.delete(txn, &k)?;
                    enqueue_ref_in_txn(t, txn, &ns, &key, RefChange::Deleted)?;
                }
                Ok(())
            })
            .await?;
    }
    if !refs.is_empty() {
        e.uploader.notify.notify_one();
    }
    Ok(())
}
