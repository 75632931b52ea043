//! Warm-up: a ref's chunks promoted into hot before a burst of reads (`scipcache warm`).
//!
//! The ref's distinct chunks are read in manifest order through the read pipeline (every copy
//! verified) with every chunk admitted (`admission.rs`), in batches of [`BATCH`], so the hot
//! tier holds the start of the blob first. It stops once the ref's chunks in hot hold 90% of
//! `hot_bytes` (the evictor's low mark), so a ref larger than the budget warms as much as fits
//! and the warm-up never evicts its own chunks. The ref's chunks, promoted or already hot, are
//! stamped as just read, so the evictor makes room by demoting other chunks, least recently
//! used first.

use std::collections::HashSet;
use std::sync::Arc;

use super::Store;
use super::admission::Admit;
use super::read::read_chunks;
use super::types::WarmReport;
use super::verify::Need;
use crate::error::{Error, Result};
use crate::meta::ChunkKey;
use crate::names::{Namespace, RefKey};
use crate::tier::TierName;

/// Chunks read per step.
const BATCH: usize = 64;
/// Chunks read by the first step.
const FIRST_STEP: usize = 8;

impl Store {
    /// Promotes the chunks of the live ref `ns`/`key` into hot, within the hot budget.
    pub async fn warm(&self, ns: &Namespace, key: &RefKey) -> Result<WarmReport> {
        let e = self.engine()?;
        let record = self
            .get_ref(ns, key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("ref {ns} {key} does not exist")))?;
        let manifest = self.manifest(ns.tenant(), record.manifest).await?;
        let tid = ns.tenant().id();
        let mut seen = HashSet::new();
        let keys: Vec<(ChunkKey, u32)> = manifest
            .entries()
            .iter()
            .map(|entry| (ChunkKey::new(tid, &entry.id), entry.len))
            .filter(|(k, _)| seen.insert(*k))
            .collect();
        // Stamped as read before anything moves, so an eviction pass that starts meanwhile
        // takes other refs' chunks first.
        e.access
            .record(keys.iter().map(|(k, _)| *k), TierName::Hot, 0);
        e.access.flush().await?;
        let allowance = e.config.hot_bytes / 10 * 9;
        let mut report = WarmReport {
            chunks: keys.len() as u64,
            ..WarmReport::default()
        };
        let mut in_hot = 0u64;
        // Hot stored bytes per raw byte, measured on what was promoted so far; before the first
        // (small) step a guess (lz4 stores SCIP at about a sixth): a wrong guess costs at most
        // that step past the mark, which the evictor trims.
        let mut ratio = 0.25f64;
        // A small first step measures the ratio before larger ones rely on it.
        let mut at = 0;
        let mut step = FIRST_STEP;
        while at < keys.len() {
            let batch = &keys[at..(at + step).min(keys.len())];
            at += batch.len();
            step = BATCH;
            e.check_open()?;
            let before = hot_lens(&e, batch).await?;
            // Chunks already hot count as just read too (no hit is counted), so the evictor
            // makes room from other refs first.
            let already: Vec<ChunkKey> = batch
                .iter()
                .zip(&before)
                .filter(|(_, len)| len.is_some())
                .map(|((k, _), _)| *k)
                .collect();
            e.access.record(already, TierName::Hot, 0);
            let mut wanted = Vec::new();
            let mut planned = 0f64;
            let mut full = false;
            for ((key, raw_len), len) in batch.iter().zip(&before) {
                match len {
                    Some(len) => {
                        in_hot += len;
                        report.hot_chunks += 1;
                    }
                    None if !full => {
                        let estimate = f64::from(*raw_len) * ratio;
                        if in_hot as f64 + planned + estimate > allowance as f64 {
                            full = true;
                        } else {
                            planned += estimate;
                            wanted.push((*key, *raw_len));
                        }
                    }
                    None => {}
                }
            }
            if !wanted.is_empty() {
                let reads = wanted.iter().map(|(k, _)| (*k, Need::Frame)).collect();
                read_chunks(&e, reads, Admit::Always)
                    .await
                    .map_err(super::read::listed_chunk_lost)?;
                // Promotion follows the read off its path; count it once done.
                super::repair::settle(&e).await;
                let after = hot_lens(&e, &wanted).await?;
                let (mut stored, mut raw) = (0u64, 0u64);
                for ((_, raw_len), len) in wanted.iter().zip(after) {
                    if let Some(len) = len {
                        report.promoted_chunks += 1;
                        report.promoted_bytes += u64::from(*raw_len);
                        report.hot_chunks += 1;
                        stored += len;
                        raw += u64::from(*raw_len);
                    }
                }
                in_hot += stored;
                if raw > 0 {
                    ratio = stored as f64 / raw as f64;
                }
            }
            if full || in_hot >= allowance {
                break;
            }
        }
        e.evict_wake.notify_one();
        Ok(report)
    }
}

/// Stored lengths of the hot copies of `keys` (`None`: not in hot).
async fn hot_lens(e: &Arc<super::Engine>, keys: &[(ChunkKey, u32)]) -> Result<Vec<Option<u64>>> {
    let keys: Vec<ChunkKey> = keys.iter().map(|(k, _)| *k).collect();
    e.meta
        .read(move |t, txn| {
            keys.iter()
                .map(|k| Ok(t.hot.get(txn, k.as_bytes())?.map(|v| v.len() as u64)))
                .collect()
        })
        .await
}
