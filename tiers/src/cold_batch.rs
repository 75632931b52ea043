//! Batched reads of the cold tier: the chunks of a read batch grouped by pack object, with
//! neighbouring ranges of one object read by one ranged GET.

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{ColdTier, Location};
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::meta::ChunkKey;
use crate::names::TenantId;

/// Ranges of one object closer than this are read with one GET (the bytes between are cheaper
/// than another request's latency).
const COALESCE_GAP: u64 = 1 << 20;
/// Ranged GETs of one batch in flight at once (the [`LimitStore`] caps them further).
const COLD_READS_IN_FLIGHT: usize = 16;

/// Chunks per decoding job of a batch (a shared block is never split between jobs).
const DECODE_PART: usize = 16;

/// A pack object: its tenant and pack id.
type PackObject = (TenantId, [u8; 32]);

/// One ranged GET: the byte range, and the `(index, location)` of every frame in it.
type Coalesced = (std::ops::Range<u64>, Vec<(usize, Location)>);

/// Merges locations (sorted by offset) whose gaps are at most `gap` into one range each; every
/// merged range lists the `(index, location)` pairs it covers.
fn coalesce(locs: &[(usize, Location)], gap: u64) -> Vec<Coalesced> {
    let mut out: Vec<Coalesced> = Vec::new();
    for &(i, loc) in locs {
        let end = loc.offset + u64::from(loc.len);
        match out.last_mut() {
            Some((range, members)) if loc.offset <= range.end.saturating_add(gap) => {
                range.end = range.end.max(end);
                members.push((i, loc));
            }
            _ => out.push((loc.offset..end, vec![(i, loc)])),
        }
    }
    out
}

impl ColdTier {
    /// Frames of many chunks, one result per key in order (`None`: no cold copy). Keys are
    /// grouped by pack object; ranges of one object that lie within [`COALESCE_GAP`] of each
    /// other are read with one ranged GET, and the objects are fetched concurrently (the
    /// [`LimitStore`] bounds the requests). A failed read fails only the keys it carried.
    pub(crate) async fn get_many(&self, keys: Vec<ChunkKey>) -> Result<Vec<Result<Option<Frame>>>> {
        let lookup = keys.clone();
        let locations: Vec<Option<Location>> = self
            .meta
            .read(move |t, txn| {
                lookup
                    .iter()
                    .map(|k| {
                        t.cold
                            .get(txn, k.as_bytes())?
                            .map(Location::decode)
                            .transpose()
                    })
                    .collect()
            })
            .await?;
        let mut by_pack: std::collections::BTreeMap<PackObject, Vec<(usize, Location)>> =
            std::collections::BTreeMap::new();
        for (i, (key, loc)) in keys.iter().zip(&locations).enumerate() {
            if let Some(loc) = loc {
                by_pack
                    .entry((key.tenant(), loc.pack))
                    .or_default()
                    .push((i, *loc));
            }
        }
        let mut out: Vec<Result<Option<Frame>>> = keys.iter().map(|_| Ok(None)).collect();
        let reads = by_pack.into_iter().flat_map(|((tenant, pack), mut locs)| {
            locs.sort_by_key(|(_, l)| l.offset);
            let path = self.pack_path(tenant, &pack);
            coalesce(&locs, COALESCE_GAP)
                .into_iter()
                .map(move |(range, members)| (tenant, pack, path.clone(), range, members))
        });
        let mut fetched = futures::stream::iter(reads)
            .map(|(tenant, pack, path, range, members)| async move {
                // The trailer is checked once per pack and process, beside the first GET.
                let got = futures::try_join!(
                    async {
                        self.store
                            .get_range(&path, range.clone())
                            .await
                            .map_err(|e| self.read_error(&path, e))
                    },
                    self.check_pack(tenant, &pack),
                )
                .map(|(bytes, ())| bytes);
                (path, range, members, got)
            })
            .buffer_unordered(COLD_READS_IN_FLIGHT);
        let mut failed = Vec::new();
        while let Some((path, range, members, got)) = fetched.next().await {
            let bytes = match got {
                Ok(bytes) => bytes,
                Err(e) => {
                    for (i, _) in members {
                        failed.push(i);
                        out[i] = Err(for_each_key(&e));
                    }
                    continue;
                }
            };
            // Members of one shared block are cut out of one decode of it.
            // Blocks are decoded in parallel, a few at a time, each once for all its members.
            let what = format!("cold pack {path}");
            let jobs = by_blocks(members, DECODE_PART).into_iter().map(|part| {
                let (bytes, what) = (bytes.clone(), what.clone());
                crate::blocking::spawn(move || {
                    Ok(super::block::frames_of(&bytes, range.start, &part, &what))
                })
            });
            for (i, frame) in futures::future::try_join_all(jobs)
                .await?
                .into_iter()
                .flatten()
            {
                out[i] = frame.map(Some);
            }
        }
        drop(fetched);
        // A key whose pack was replaced meanwhile (compaction deletes the old object at once)
        // is read again at its new location.
        for i in failed {
            if self.location(keys[i]).await? != locations[i] {
                out[i] = crate::tier::ChunkTier::get(self, keys[i]).await;
            }
        }
        Ok(out)
    }
}

/// `locs` (sorted by offset) in runs of about `part`, each ending at a block's end.
fn by_blocks(locs: Vec<(usize, Location)>, part: usize) -> Vec<Vec<(usize, Location)>> {
    let mut out: Vec<Vec<(usize, Location)>> = Vec::new();
    for item in locs {
        match out.last_mut() {
            Some(run)
                if run.len() < part || run.last().is_some_and(|l| l.1.offset == item.1.offset) =>
            {
                run.push(item);
            }
            _ => out.push(vec![item]),
        }
    }
    out
}

/// The error of one ranged read, for each key it carried.
fn for_each_key(e: &Error) -> Error {
    match e {
        Error::Format(m) => Error::Format(m.clone()),
        Error::NewerFormat {
            what,
            found,
            supported,
        } => Error::NewerFormat {
            what: what.clone(),
            found: *found,
            supported: *supported,
        },
        other => Error::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_ranges_of_a_pack_are_coalesced_and_distant_ones_are_not() {
        let at = |offset, len| Location::whole([0; 32], offset, len);
        let locs = vec![
            (0, at(0, 100)),
            (3, at(100, 50)),
            (1, at(1_000, 10)),
            (2, at(10_000_000, 5)),
        ];
        let merged = coalesce(&locs, 1 << 20);
        let ranges: Vec<_> = merged.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, vec![0..1_010, 10_000_000..10_000_005]);
        let first: Vec<usize> = merged[0].1.iter().map(|(i, _)| *i).collect();
        assert_eq!(first, vec![0, 3, 1]);
        assert_eq!(
            coalesce(&locs, 0).len(),
            3,
            "only touching ranges merge without a gap"
        );
    }

    #[test]
    fn decoding_runs_never_split_a_shared_block() {
        let at = |offset| Location::whole([0; 32], offset, 10);
        let locs: Vec<(usize, Location)> = [0, 0, 0, 10, 20, 20, 20, 20, 30]
            .iter()
            .enumerate()
            .map(|(i, o)| (i, at(*o)))
            .collect();
        let runs: Vec<Vec<usize>> = by_blocks(locs, 2)
            .into_iter()
            .map(|r| r.into_iter().map(|(i, _)| i).collect())
            .collect();
        assert_eq!(
            runs,
            vec![vec![0, 1, 2], vec![3, 4, 5, 6, 7], vec![8]],
            "a run grows past its size only to finish its block"
        );
    }
}
