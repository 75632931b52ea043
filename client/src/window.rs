//! The pure parts of a push's pipeline: cutting the chunk sequence into windows, picking the
//! chunks not yet seen, splitting work for parallel threads and grouping frames into messages.
//!
//! A push works a window at a time so that memory stays bounded whatever the blob size: the
//! reader fills one window while earlier ones are hashed, looked up and uploaded.

use std::collections::HashSet;
use std::ops::Range;

use bytes::Bytes;
use scipcache_tiers::ids::ChunkId;

/// Most chunks in one window: one FindMissing request each (far below
/// [`scipcache_proto::MAX_IDS_PER_REQUEST`]).
pub(crate) const WINDOW_MAX_CHUNKS: usize = 1024;
/// Most raw bytes in one window. Several windows are in flight at once (one filling, one
/// queued, one being looked up, [`UPLOADS_IN_FLIGHT`] uploading), so this bounds memory.
pub(crate) const WINDOW_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Windows compressing or uploading at the same time.
pub(crate) const UPLOADS_IN_FLIGHT: usize = 3;
/// Target size of one upload message: just under 4 MiB, so that a message also passes a
/// server left at tonic's default decoding limit (4 MiB).
pub(crate) const UPLOAD_MESSAGE_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;
/// Below this many bytes, hashing or compressing a window on several threads costs more than
/// it saves.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Collects chunks until a window is full.
#[derive(Debug)]
pub(crate) struct WindowBuilder {
    max_chunks: usize,
    max_bytes: usize,
    chunks: Vec<Bytes>,
    bytes: usize,
}

impl WindowBuilder {
    pub(crate) fn new(max_chunks: usize, max_bytes: usize) -> Self {
        Self {
            max_chunks: max_chunks.max(1),
            max_bytes,
            chunks: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a chunk; returns the window once it holds `max_chunks` chunks or `max_bytes`
    /// bytes.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Option<Vec<Bytes>> {
        self.bytes += chunk.len();
        self.chunks.push(chunk);
        if self.chunks.len() >= self.max_chunks || self.bytes >= self.max_bytes {
            self.bytes = 0;
            Some(std::mem::take(&mut self.chunks))
        } else {
            None
        }
    }

    /// The last, partly filled window, if any chunk is left.
    pub(crate) fn finish(&mut self) -> Option<Vec<Bytes>> {
        self.bytes = 0;
        let rest = std::mem::take(&mut self.chunks);
        (!rest.is_empty()).then_some(rest)
    }
}

/// Indices of the ids not in `seen` (the first occurrence only when an id repeats), adding
/// them to `seen`: a chunk that appears twice in a blob is looked up and uploaded once.
pub(crate) fn first_sightings(ids: &[ChunkId], seen: &mut HashSet<ChunkId>) -> Vec<usize> {
    ids.iter()
        .enumerate()
        .filter(|(_, id)| seen.insert(**id))
        .map(|(i, _)| i)
        .collect()
}

/// How many threads to split `bytes` of CPU work over.
pub(crate) fn parallelism(bytes: usize) -> usize {
    if bytes < PARALLEL_MIN_BYTES {
        return 1;
    }
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// Splits `0..len` into at most `parts` contiguous, non-empty ranges of near-equal length.
pub(crate) fn split_even(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let end = start + base + usize::from(i < extra);
            let range = start..end;
            start = end;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Groups items, in order, so that each group's total `size` stays within `max_bytes`; an
/// item larger than that goes alone.
pub(crate) fn group_by_size<T>(
    items: Vec<T>,
    size: impl Fn(&T) -> usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for item in items {
        let n = size(&item);
        if !current.is_empty() && current_bytes + n > max_bytes {
            groups.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += n;
        current.push(item);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    #[test]
    fn windows_close_at_the_chunk_limit() {
        let mut w = WindowBuilder::new(3, usize::MAX);
        assert!(w.push(chunk(1)).is_none());
        assert!(w.push(chunk(1)).is_none());
        assert_eq!(w.push(chunk(1)).map(|c| c.len()), Some(3));
        assert!(w.finish().is_none());
    }

    #[test]
    fn windows_close_at_the_byte_limit_and_the_rest_comes_out_at_finish() {
        let mut w = WindowBuilder::new(100, 10);
        assert!(w.push(chunk(4)).is_none());
        assert_eq!(w.push(chunk(6)).map(|c| c.len()), Some(2));
        assert!(w.push(chunk(9)).is_none());
        assert_eq!(w.finish().map(|c| c.len()), Some(1));
        assert!(w.finish().is_none());
    }

    #[test]
    fn every_chunk_lands_in_exactly_one_window_in_order() {
        let mut w = WindowBuilder::new(WINDOW_MAX_CHUNKS, WINDOW_MAX_BYTES);
        let lens: Vec<usize> = (0..5000).map(|i| 1 + (i * 7919) % 65_536).collect();
        let mut out = Vec::new();
        for &len in &lens {
            if let Some(win) = w.push(chunk(len)) {
                assert!(win.len() <= WINDOW_MAX_CHUNKS);
                let bytes: usize = win.iter().map(Bytes::len).sum();
                assert!(bytes - win.last().map_or(0, Bytes::len) < WINDOW_MAX_BYTES);
                out.extend(win);
            }
        }
        out.extend(w.finish().unwrap_or_default());
        let got: Vec<usize> = out.iter().map(Bytes::len).collect();
        assert_eq!(got, lens);
    }

    #[test]
    fn repeated_chunks_are_picked_once_across_windows() {
        let a = ChunkId::of(b"a");
        let b = ChunkId::of(b"b");
        let c = ChunkId::of(b"c");
        let mut seen = HashSet::new();
        assert_eq!(first_sightings(&[a, b, a, a], &mut seen), vec![0, 1]);
        assert_eq!(first_sightings(&[b, c, c, a], &mut seen), vec![1]);
        assert!(first_sightings(&[a, b, c], &mut seen).is_empty());
    }

    #[test]
    fn split_even_covers_the_range_without_empty_parts() {
        for len in [0, 1, 2, 7, 1024] {
            for parts in [0, 1, 2, 3, 8, 2000] {
                let ranges = split_even(len, parts);
                let covered: Vec<usize> = ranges.iter().flat_map(Clone::clone).collect();
                assert_eq!(covered, (0..len).collect::<Vec<_>>(), "{len}/{parts}");
                assert!(ranges.iter().all(|r| !r.is_empty()));
                assert!(ranges.len() <= parts.max(1));
                let lens: Vec<usize> = ranges.iter().map(ExactSizeIterator::len).collect();
                if let (Some(max), Some(min)) = (lens.iter().max(), lens.iter().min()) {
                    assert!(max - min <= 1);
                }
            }
        }
    }

    #[test]
    fn groups_respect_the_byte_limit_and_keep_order() {
        let groups = group_by_size(vec![3, 3, 3, 10, 1, 1], |&n| n, 6);
        assert_eq!(groups, vec![vec![3, 3], vec![3], vec![10], vec![1, 1]]);
        assert!(group_by_size(Vec::<usize>::new(), |&n| n, 6).is_empty());
    }

    #[test]
    fn small_work_stays_on_one_thread() {
        assert_eq!(parallelism(1000), 1);
        assert!(parallelism(WINDOW_MAX_BYTES) >= 1);
    }
}
