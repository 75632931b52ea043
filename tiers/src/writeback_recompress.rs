//! The write-behind's idle work: packs written at the fast level while a backlog drained are
//! recompressed at the cold level, one per step, once the queue has been empty for
//! `UploadConfig::idle_after` (`cold_recompress.rs` has the steps and their crash safety).

use std::sync::atomic::Ordering;

use super::Uploader;
use crate::error::{Error, Result};

/// Deletes replaced packs that are due, and recompresses one marked pack if the write-behind
/// is idle. Returns whether there may be more to do at once.
pub(super) async fn step(inner: &Uploader) -> Result<bool> {
    inner.cold.delete_due().await?;
    let since = inner
        .clock()
        .now_ms()
        .saturating_sub(inner.last_busy_ms.load(Ordering::Relaxed));
    let idle_ms = u64::try_from(inner.config.idle_after.as_millis()).unwrap_or(u64::MAX);
    if since < idle_ms {
        return Ok(false);
    }
    let Some((tenant, pack)) = inner.cold.next_to_recompress().await? else {
        return Ok(false);
    };
    let how = super::Encoding {
        compression: inner.config.compression,
        fresh: true,
        target: inner.config.block_target,
    };
    let encoder = &inner.encoder;
    let started = std::time::Instant::now();
    match inner
        .cold
        .recompress(tenant, pack, |frames| encoder.encode(frames, how))
        .await
    {
        Ok(done) => {
            tracing::debug!(
                pack = %hex::encode(pack),
                chunks = done.chunks,
                before = done.before,
                after = done.after,
                ms = started.elapsed().as_millis() as u64,
                "recompressed a cold pack at the cold level"
            );
            Ok(true)
        }
        Err(e @ (Error::Corrupt { .. } | Error::DataLoss { .. } | Error::Format(_))) => {
            tracing::warn!(
                pack = %hex::encode(pack),
                error = %e,
                "a cold pack written at the fast level holds a bad frame; it stays as it is (the \
                 scrub and reads repair its chunks from other copies)"
            );
            inner.cold.unmark(tenant, pack).await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}
