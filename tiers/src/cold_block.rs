//! Cold blocks: one codec frame over the raw bytes of several consecutive chunks.
//!
//! zstd at the cold level finds far more to share across a few hundred KiB than inside one
//! 16–64 KiB chunk: `bench/MEASUREMENTS.md` measured 256 KiB frames 17% smaller than one frame
//! per chunk on series A (11% on B, 13% on C). The price is paid by a read of one chunk from
//! the cold tier, which fetches and decompresses its whole block (145 µs instead of 14 µs at
//! 256 KiB); reads of whole blobs, the common case below hot and warm, decode each block once
//! for all its members (`cold_batch.rs`).
//!
//! A block is *whole* when it holds one chunk: its frame is that chunk's frame, exactly as
//! before blocks existed (a chunk larger than the block target is always whole). A *shared*
//! block holds several; each member is found by its offset and length inside the block's
//! decoded bytes, and is charged a share of the block's stored bytes in proportion to its
//! raw length (the shares sum to the block's stored length, so the cold tier's counters and
//! the garbage collector's live bytes stay exact). Members are hash-verified by the reader,
//! like every chunk; the block frame's own checksum catches damage before decompression.

use std::collections::HashMap;

use bytes::Bytes;

use super::Location;
use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use crate::meta::ChunkKey;

/// Raw bytes of a block by default (`StoreConfig::cold_block_target`).
pub(crate) const DEFAULT_BLOCK_TARGET: usize = 256 << 10;
/// The largest block target accepted: a shared block is decoded whole for one member.
pub(crate) const MAX_BLOCK_TARGET: usize = 4 << 20;

/// One chunk inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) key: ChunkKey,
    /// Offset of its raw bytes in the block's decoded bytes.
    pub(crate) inner: u32,
    /// Its raw length.
    pub(crate) raw: u32,
}

/// One frame and the chunks it holds, in order.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) frame: Frame,
    pub(crate) members: Vec<Member>,
}

impl Block {
    /// A block of one chunk: its frame as it is.
    pub(crate) fn whole(key: ChunkKey, frame: Frame) -> Self {
        let raw = u32::try_from(frame.raw_len()).unwrap_or(u32::MAX);
        Self {
            members: vec![Member { key, inner: 0, raw }],
            frame,
        }
    }

    /// Whether several chunks share the frame.
    pub(crate) fn is_shared(&self) -> bool {
        self.members.len() > 1
    }

    /// Each member's share of the stored bytes, by raw length; the last takes what rounding
    /// left, so the shares sum to the frame's stored length.
    pub(crate) fn shares(&self) -> Vec<u32> {
        shares(
            self.frame.stored_len() as u64,
            self.members.iter().map(|m| m.raw),
        )
    }
}

/// `len` split among members of the given raw lengths (see [`Block::shares`]).
pub(crate) fn shares(len: u64, raws: impl Iterator<Item = u32> + Clone) -> Vec<u32> {
    let total: u64 = raws.clone().map(u64::from).sum::<u64>().max(1);
    let n = raws.clone().count();
    let mut left = len;
    raws.enumerate()
        .map(|(i, raw)| {
            let share = if i + 1 == n {
                left
            } else {
                (len * u64::from(raw) / total).min(left)
            };
            left -= share;
            u32::try_from(share).unwrap_or(u32::MAX)
        })
        .collect()
}

/// A member's raw bytes out of its block's decoded bytes, as a frame of the raw codec (the
/// caller verifies its hash, as for any frame read).
pub(crate) fn member_frame(decoded: &Bytes, inner: u32, raw: u32, what: &str) -> Result<Frame> {
    let start = inner as usize;
    let end = start.saturating_add(raw as usize);
    let bytes = decoded.get(start..end).ok_or_else(|| {
        Error::Format(format!(
            "{what}: bytes {start}..{end} of a cold block of {} bytes",
            decoded.len()
        ))
    })?;
    Frame::encode(bytes, Compression::Raw)
}

/// Decodes a shared block's frame, its checksum checked first (a shared block's members
/// are verified one by one only after it is decoded). A shared block holds at most
/// [`MAX_BLOCK_TARGET`] bytes.
pub(crate) fn decode_block(frame: &Frame) -> Result<Bytes> {
    frame.verify_checksum()?;
    frame.decode(MAX_BLOCK_TARGET)
}

/// The frames of the chunks at `locs`, out of `body`, the bytes of a pack from offset `base`
/// on: a whole block's frame as stored, a member's bytes cut out of its block (decoded once
/// for all its members). `what` names the pack in errors.
pub(crate) fn frames_of<K: Copy>(
    body: &Bytes,
    base: u64,
    locs: &[(K, Location)],
    what: &str,
) -> Vec<(K, Result<Frame>)> {
    let mut decoded: HashMap<u64, Result<Bytes>> = HashMap::new();
    locs.iter()
        .map(|(key, loc)| {
            let start = loc
                .offset
                .checked_sub(base)
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(usize::MAX);
            let end = start.saturating_add(loc.len as usize);
            let Some(stored) = body.get(start..end) else {
                return (
                    *key,
                    Err(Error::Format(format!(
                        "{what} is shorter than its index says"
                    ))),
                );
            };
            let frame = Frame::from_bytes(body.slice_ref(stored));
            let Some(p) = loc.part else {
                return (*key, frame);
            };
            let block = decoded
                .entry(loc.offset)
                .or_insert_with(|| frame.and_then(|f| decode_block(&f)));
            let got = match block {
                Ok(b) => member_frame(b, p.inner, p.raw, what),
                Err(e) => Err(Error::Format(format!(
                    "{what}: the shared block at {} cannot be decoded: {e}",
                    loc.offset
                ))),
            };
            (*key, got)
        })
        .collect()
}

/// How [`build`] encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockEncoding {
    pub(crate) compression: Compression,
    /// Encode a lone chunk anew even when its frame already uses the codec (recompression at
    /// another level).
    pub(crate) fresh: bool,
    /// Raw bytes a block may hold; a chunk that does not fit starts the next block, and `0`
    /// gives every chunk its own frame.
    pub(crate) target: usize,
}

/// Verifies each chunk's frame against its id and groups the chunks, in order, into blocks of
/// at most `how.target` raw bytes encoded with `how.compression`.
pub(crate) fn build(frames: Vec<(ChunkKey, Frame)>, how: BlockEncoding) -> Result<Vec<Block>> {
    let target = how.target.min(MAX_BLOCK_TARGET);
    let mut out = Vec::new();
    let mut group: Vec<(ChunkKey, Frame, Bytes)> = Vec::new();
    let mut group_raw = 0usize;
    for (key, frame) in frames {
        let raw = frame.decode_verified(&key.id(), MAX_CHUNK_LEN)?;
        if !group.is_empty() && group_raw + raw.len() > target {
            out.push(close(std::mem::take(&mut group), how)?);
            group_raw = 0;
        }
        group_raw += raw.len();
        group.push((key, frame, raw));
    }
    if !group.is_empty() {
        out.push(close(group, how)?);
    }
    Ok(out)
}

fn close(mut group: Vec<(ChunkKey, Frame, Bytes)>, how: BlockEncoding) -> Result<Block> {
    if group.len() == 1 {
        let (key, frame, raw) = group.remove(0);
        let frame = if how.fresh {
            Frame::encode(&raw, how.compression)?
        } else {
            frame.recode(&raw, how.compression)?
        };
        return Ok(Block::whole(key, frame));
    }
    let total: usize = group.iter().map(|(_, _, raw)| raw.len()).sum();
    let mut joined = Vec::with_capacity(total);
    let mut members = Vec::with_capacity(group.len());
    for (key, _, raw) in &group {
        members.push(Member {
            key: *key,
            inner: joined.len() as u32,
            raw: raw.len() as u32,
        });
        joined.extend_from_slice(raw);
    }
    Ok(Block {
        frame: Frame::encode(&joined, how.compression)?,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChunkId;
    use crate::names::TenantId;

    fn chunk(i: u8, len: usize) -> (ChunkKey, Frame, Vec<u8>) {
        let raw: Vec<u8> = (0..len).map(|j| (j as u8) ^ i).collect();
        let key = ChunkKey::new(TenantId([1; 8]), &ChunkId::of(&raw));
        let frame = Frame::encode(&raw, Compression::Lz4).expect("an lz4 frame");
        (key, frame, raw)
    }

    const HOW: BlockEncoding = BlockEncoding {
        compression: Compression::Zstd(3),
        fresh: false,
        target: 10_000,
    };

    #[test]
    fn chunks_are_grouped_up_to_the_target_and_each_member_reads_back() -> Result<()> {
        let chunks: Vec<_> = [3000, 3000, 3000, 3000, 20_000, 100]
            .iter()
            .enumerate()
            .map(|(i, len)| chunk(i as u8, *len))
            .collect();
        let blocks = build(
            chunks.iter().map(|(k, f, _)| (*k, f.clone())).collect(),
            HOW,
        )?;
        let sizes: Vec<usize> = blocks.iter().map(|b| b.members.len()).collect();
        assert_eq!(
            sizes,
            vec![3, 1, 1, 1],
            "a chunk that does not fit starts a block"
        );
        let mut found = Vec::new();
        for b in &blocks {
            assert_eq!(
                b.shares().iter().map(|s| u64::from(*s)).sum::<u64>(),
                b.frame.stored_len() as u64
            );
            let decoded = b.frame.decode(MAX_CHUNK_LEN)?;
            for m in &b.members {
                let f = member_frame(&decoded, m.inner, m.raw, "test")?;
                found.push(f.decode_verified(&m.key.id(), MAX_CHUNK_LEN)?.to_vec());
            }
        }
        let want: Vec<Vec<u8>> = chunks.into_iter().map(|(_, _, raw)| raw).collect();
        assert_eq!(found, want);
        Ok(())
    }

    #[test]
    fn a_frame_that_does_not_match_its_id_is_refused_before_it_joins_a_block() {
        let (key, _, _) = chunk(1, 100);
        let (_, other, _) = chunk(2, 100);
        assert!(build(vec![(key, other)], HOW).is_err());
    }

    #[test]
    fn a_target_of_zero_gives_every_chunk_its_own_frame() -> Result<()> {
        let chunks: Vec<_> = (0..4).map(|i| chunk(i, 500)).collect();
        let how = BlockEncoding { target: 0, ..HOW };
        let blocks = build(chunks.into_iter().map(|(k, f, _)| (k, f)).collect(), how)?;
        assert_eq!(blocks.len(), 4);
        assert!(blocks.iter().all(|b| !b.is_shared()));
        Ok(())
    }

    #[test]
    fn shares_sum_to_the_stored_length_whatever_the_rounding() {
        for len in [0u64, 1, 7, 1000, 99_999] {
            let s = shares(len, [1u32, 1, 1].into_iter());
            assert_eq!(s.iter().map(|x| u64::from(*x)).sum::<u64>(), len);
        }
    }
}
