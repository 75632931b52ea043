//! Warm-up: a ref's chunks promoted into the server's hot tier before a burst of reads
//! (`scipcache warm`).

use std::time::Instant;

use scipcache_proto::pb;
use scipcache_tiers::names::{Namespace, RefKey};

use crate::connect::Client;
use crate::error::Result;
use crate::report::WarmReport;

impl Client {
    /// Asks the server to promote the chunks of the ref `ns`/`key` into its hot tier, as many
    /// as its hot budget allows: `Blobs/Warm`, which needs read access. Retried on
    /// `UNAVAILABLE` like the other idempotent calls: a warm-up changes only where copies of
    /// chunks live, never what a ref names.
    pub async fn warm(&self, ns: &Namespace, key: &RefKey) -> Result<WarmReport> {
        let started = Instant::now();
        let req = pb::WarmRequest {
            namespace: ns.to_string(),
            key: key.to_string(),
        };
        let answer = self
            .unary(
                "Blobs/Warm",
                |c, r| async move { c.blobs().warm(r).await },
                req,
            )
            .await?;
        Ok(WarmReport {
            ns: ns.clone(),
            key: key.clone(),
            chunks: answer.chunks,
            hot_chunks: answer.hot_chunks,
            promoted_chunks: answer.promoted_chunks,
            promoted_bytes: answer.promoted_bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
