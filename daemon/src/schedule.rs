//! The scheduled GC (`--gc-interval D`): every `D` after the start, a GC of every tenant with
//! `--gc-grace`, like an operator's `scipcache gc`. Its report goes to the log and the audit
//! log (subject `scheduler`); a run refused because another GC is running (an operator's) is
//! only logged, and the next one comes a whole interval later.

use std::time::Duration;

use scipcache_tiers::store::{GcOptions, Progress};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::service::Shared;
use crate::service::admin::{Who, run_gc};

/// Starts the schedule; it stops when `stop` fires (a running GC stops at its next safe
/// point).
pub(crate) fn start(shared: Shared, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
    tracing::info!(
        "scheduled GC of every tenant every {} (--gc-interval), grace {} (--gc-grace)",
        humantime::format_duration(every),
        humantime::format_duration(shared.lifecycle.gc_grace)
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // A GC that outlasts the interval does not cause a burst of runs after it.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let opts = GcOptions {
                tenant: None,
                grace: shared.lifecycle.gc_grace,
                dry_run: false,
                compact_below: shared.lifecycle.compact_below,
            };
            // Nobody watches a scheduled run's progress; the receiver only keeps the channel
            // open.
            let (progress, _watching) = watch::channel(Progress::default());
            let result = run_gc(&shared, opts, stop.child_token(), progress, &Who::Schedule).await;
            if let Err(status) = result
                && status.code() == tonic::Code::FailedPrecondition
            {
                tracing::info!(
                    "scheduled GC skipped: {}; the next one runs in {}",
                    status.message(),
                    humantime::format_duration(every)
                );
            }
        }
    })
}
