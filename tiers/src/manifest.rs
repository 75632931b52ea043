//! Manifests: a blob as an ordered list of chunks.
//!
//! # Encoding, format 1 (all integers little-endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `SCM` and format byte `1` |
//! | 4 | 1 | chunker algorithm (see [`ChunkerAlgorithm`]) |
//! | 5 | 12 | chunker min, avg, max: three `u32` |
//! | 17 | 32 | blob id (BLAKE3 of the whole content) |
//! | 49 | 8 | total length `u64` |
//! | 57 | 8 | entry count `u64` |
//! | 65 | 36 × count | entries: chunk id (32 bytes), chunk length `u32` |
//!
//! The [`ManifestId`] is the BLAKE3 hash of this encoding, so manifests are content-addressed
//! like chunks. A decoder checks that the entry count matches the remaining bytes (and a
//! caller-given limit) before allocating, that every length lies in `1..=max`, and that the
//! lengths add up to the total.

use bytes::{BufMut, Bytes, BytesMut};

use crate::chunking::{ChunkerAlgorithm, ChunkerSpec};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId, ManifestId};

const MAGIC: [u8; 4] = *b"SCM\x01";
/// Bytes of the encoding before the entries.
pub const HEADER_LEN: usize = 65;
/// Bytes of one encoded entry.
pub const ENTRY_LEN: usize = 36;
/// Most entries one manifest may hold: 4 Mi chunks, a 128 GiB blob at the default 32 KiB
/// average chunk size ([`crate::chunking::DEFAULT_AVG_CHUNK`]).
pub const MAX_CHUNKS_PER_BLOB: usize = 4 << 20;

/// Length of the encoding of a manifest of `entries` entries.
pub const fn encoded_len(entries: usize) -> usize {
    HEADER_LEN + ENTRY_LEN * entries
}

/// One chunk of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Its raw length.
    pub len: u32,
}

/// A blob's chunk list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    chunker: ChunkerSpec,
    blob: BlobId,
    total_len: u64,
    entries: Vec<ManifestEntry>,
    /// `offsets[i]` is where entry `i` starts in the blob; one more element holds the total.
    offsets: Vec<u64>,
}

impl Manifest {
    /// Builds a manifest, checking that the entries add up to `total_len`.
    pub fn new(
        chunker: ChunkerSpec,
        blob: BlobId,
        total_len: u64,
        entries: Vec<ManifestEntry>,
    ) -> Result<Self> {
        let mut offsets = Vec::with_capacity(entries.len() + 1);
        let mut at = 0u64;
        for e in &entries {
            if e.len == 0 || e.len > chunker.max {
                return Err(Error::InvalidArgument(format!(
                    "manifest entry {} has length {}, outside 1..={}",
                    e.id, e.len, chunker.max
                )));
            }
            offsets.push(at);
            at += u64::from(e.len);
        }
        offsets.push(at);
        if at != total_len {
            return Err(Error::InvalidArgument(format!(
                "manifest chunks add up to {at} bytes, but the blob is declared as {total_len}"
            )));
        }
        Ok(Self {
            chunker,
            blob,
            total_len,
            entries,
            offsets,
        })
    }

    /// The chunker that cut this blob.
    pub fn chunker(&self) -> ChunkerSpec {
        self.chunker
    }

    /// The blob's id.
    pub fn blob(&self) -> BlobId {
        self.blob
    }

    /// The blob's length.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The chunks, in order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Where entry `index` starts in the blob.
    pub fn offset_of(&self, index: usize) -> u64 {
        self.offsets.get(index).copied().unwrap_or(self.total_len)
    }

    /// The index of the entry holding byte `offset` (or `entries().len()` at or past the end).
    pub fn entry_at(&self, offset: u64) -> usize {
        if offset >= self.total_len {
            return self.entries.len();
        }
        // offsets is sorted; the last start <= offset.
        self.offsets.partition_point(|&start| start <= offset) - 1
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(encoded_len(self.entries.len()));
        out.put_slice(&MAGIC);
        out.put_u8(self.chunker.algorithm as u8);
        out.put_u32_le(self.chunker.min);
        out.put_u32_le(self.chunker.avg);
        out.put_u32_le(self.chunker.max);
        out.put_slice(self.blob.as_bytes());
        out.put_u64_le(self.total_len);
        out.put_u64_le(self.entries.len() as u64);
        for e in &self.entries {
            out.put_slice(e.id.as_bytes());
            out.put_u32_le(e.len);
        }
        out.freeze()
    }

    /// The content address of [`Manifest::encode`].
    pub fn id(&self) -> ManifestId {
        ManifestId::of(&self.encode())
    }

    /// Decodes, refusing more than `max_entries` entries.
    pub fn decode(bytes: &[u8], max_entries: usize) -> Result<Self> {
        let bad = |why: String| Error::Format(format!("manifest: {why}"));
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes is shorter than the header",
                bytes.len()
            )));
        }
        if bytes[..4] != MAGIC {
            return Err(bad("unknown magic or format version".into()));
        }
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let chunker = ChunkerSpec {
            algorithm: ChunkerAlgorithm::from_byte(bytes[4]).map_err(|e| bad(e.to_string()))?,
            min: u32_at(5),
            avg: u32_at(9),
            max: u32_at(13),
        };
        chunker.validate().map_err(|e| bad(e.to_string()))?;
        let blob = BlobId::from_slice(&bytes[17..49])?;
        let total_len = u64_at(49);
        let count = u64_at(57);
        let body = &bytes[HEADER_LEN..];
        if count > max_entries as u64
            || count.checked_mul(ENTRY_LEN as u64) != Some(body.len() as u64)
        {
            return Err(bad(format!(
                "declares {count} entries but holds {} bytes of entries (limit {max_entries})",
                body.len()
            )));
        }
        let entries = body
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let mut len = [0u8; 4];
                len.copy_from_slice(&e[32..]);
                Ok(ManifestEntry {
                    id: ChunkId::from_slice(&e[..32])?,
                    len: u32::from_le_bytes(len),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(chunker, blob, total_len, entries).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn manifests_round_trip_their_encoding(lens in prop::collection::vec(1u32..=65_536, 0..300), seed in any::<u64>()) {
            let entries: Vec<ManifestEntry> = lens.iter().enumerate().map(|(i, &len)| ManifestEntry {
                id: ChunkId::of(&[seed.to_le_bytes(), (i as u64).to_le_bytes()].concat()),
                len,
            }).collect();
            let total = lens.iter().map(|&l| u64::from(l)).sum();
            let m = Manifest::new(ChunkerSpec::default(), BlobId::of(&seed.to_le_bytes()), total, entries)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let decoded = Manifest::decode(&m.encode(), 1 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&decoded, &m);
            prop_assert_eq!(decoded.id(), m.id());
            for (i, e) in m.entries().iter().enumerate() {
                let start = m.offset_of(i);
                prop_assert_eq!(m.entry_at(start), i);
                prop_assert_eq!(m.entry_at(start + u64::from(e.len) - 1), i);
            }
        }
    }

    #[test]
    fn manifest_whose_lengths_disagree_with_total_is_refused() {
        let e = ManifestEntry {
            id: ChunkId::of(b"x"),
            len: 10,
        };
        assert!(Manifest::new(ChunkerSpec::default(), BlobId::of(b""), 11, vec![e]).is_err());
    }

    #[test]
    fn truncated_or_oversized_encodings_are_refused() -> Result<()> {
        let e = ManifestEntry {
            id: ChunkId::of(b"x"),
            len: 1,
        };
        let m = Manifest::new(ChunkerSpec::default(), BlobId::of(b"x"), 2, vec![e, e])?;
        let bytes = m.encode();
        assert!(Manifest::decode(&bytes[..bytes.len() - 1], 10).is_err());
        assert!(Manifest::decode(&bytes, 1).is_err());
        let mut lying = bytes.to_vec();
        lying[57..65].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Manifest::decode(&lying, usize::MAX).is_err());
        Ok(())
    }
}
