//! Conversions between wire messages and engine types. Parsing untrusted wire values happens
//! here, once, and fails with [`scipcache_tiers::Error::InvalidArgument`].

use scipcache_tiers::chunking::{ChunkerAlgorithm, ChunkerSpec};
use scipcache_tiers::ids::{BlobId, ChunkId, ManifestId};
use scipcache_tiers::manifest::ManifestEntry;
use scipcache_tiers::scip::VersionTable;
use scipcache_tiers::{Error, Result};

use crate::pb;

impl From<ChunkerSpec> for pb::ChunkerSpec {
    fn from(s: ChunkerSpec) -> Self {
        Self {
            algorithm: u32::from(s.algorithm as u8),
            min: s.min,
            avg: s.avg,
            max: s.max,
        }
    }
}

impl TryFrom<pb::ChunkerSpec> for ChunkerSpec {
    type Error = Error;
    fn try_from(s: pb::ChunkerSpec) -> Result<Self> {
        let algorithm = u8::try_from(s.algorithm)
            .map_err(|_| {
                Error::InvalidArgument(format!("unknown chunker algorithm {}", s.algorithm))
            })
            .and_then(ChunkerAlgorithm::from_byte)?;
        let spec = Self {
            algorithm,
            min: s.min,
            avg: s.avg,
            max: s.max,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// Parses a chunk id sent as 32 raw bytes.
pub fn chunk_id(bytes: &[u8]) -> Result<ChunkId> {
    ChunkId::from_slice(bytes)
}

/// Parses a blob id sent as 32 raw bytes.
pub fn blob_id(bytes: &[u8]) -> Result<BlobId> {
    BlobId::from_slice(bytes)
}

/// Parses a manifest id sent as 32 raw bytes.
pub fn manifest_id(bytes: &[u8]) -> Result<ManifestId> {
    ManifestId::from_slice(bytes)
}

impl From<ManifestEntry> for pb::ManifestEntry {
    fn from(e: ManifestEntry) -> Self {
        Self {
            id: e.id.as_bytes().to_vec().into(),
            len: e.len,
            normalized: false,
        }
    }
}

impl TryFrom<&pb::ManifestEntry> for ManifestEntry {
    type Error = Error;
    fn try_from(e: &pb::ManifestEntry) -> Result<Self> {
        Ok(Self {
            id: chunk_id(&e.id)?,
            len: e.len,
        })
    }
}

/// A version table as sent, in its canonical order (sorted by placeholder).
pub fn version_entries(table: &VersionTable) -> Vec<pb::VersionEntry> {
    table
        .entries()
        .into_iter()
        .map(|(placeholder, version)| pb::VersionEntry {
            placeholder: placeholder.to_vec().into(),
            version: version.to_vec().into(),
        })
        .collect()
}

/// Parses a version table sent by a peer, checking every entry ([`VersionTable::insert`]).
pub fn version_table(entries: &[pb::VersionEntry]) -> Result<VersionTable> {
    let mut table = VersionTable::new();
    for e in entries {
        table.insert(&e.placeholder, &e.version)?;
    }
    Ok(table)
}

/// The chunks a commit's `FAILED_PRECONDITION` says the tenant lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingChunkList {
    /// The ids listed: at most [`crate::MAX_LISTED_MISSING`].
    pub listed: Vec<ChunkId>,
    /// How many chunks are missing in all.
    pub total: u64,
}

impl MissingChunkList {
    /// Whether every missing chunk is listed.
    pub fn is_complete(&self) -> bool {
        self.listed.len() as u64 >= self.total
    }
}

/// Encodes the first [`crate::MAX_LISTED_MISSING`] of `listed` and `total`, the count of
/// every missing chunk (at least as many as listed), for the
/// [`crate::MISSING_CHUNKS_METADATA`] entry.
pub fn encode_missing_chunks(listed: &[ChunkId], total: u64) -> Vec<u8> {
    use prost::Message;
    let ids: Vec<_> = listed
        .iter()
        .take(crate::MAX_LISTED_MISSING)
        .map(|id| id.as_bytes().to_vec().into())
        .collect();
    let total = total.max(ids.len() as u64);
    pb::MissingChunks { ids, total }.encode_to_vec()
}

/// Decodes a [`crate::MISSING_CHUNKS_METADATA`] entry.
pub fn decode_missing_chunks(bytes: &[u8]) -> Result<MissingChunkList> {
    use prost::Message;
    let wire = pb::MissingChunks::decode(bytes)
        .map_err(|e| Error::InvalidArgument(format!("malformed missing-chunks list: {e}")))?;
    let listed = wire
        .ids
        .iter()
        .map(|id| chunk_id(id))
        .collect::<Result<Vec<_>>>()?;
    if (listed.len() as u64) > wire.total {
        return Err(Error::InvalidArgument(format!(
            "missing-chunks list names {} ids but counts {}",
            listed.len(),
            wire.total
        )));
    }
    Ok(MissingChunkList {
        listed,
        total: wire.total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunker_spec_round_trips_and_bad_specs_are_refused() -> Result<()> {
        let spec = ChunkerSpec::default();
        let wire: pb::ChunkerSpec = spec.into();
        assert_eq!(ChunkerSpec::try_from(wire)?, spec);
        let bad = pb::ChunkerSpec {
            algorithm: 9,
            ..spec.into()
        };
        assert!(ChunkerSpec::try_from(bad).is_err());
        Ok(())
    }

    #[test]
    fn ids_of_wrong_length_are_refused() {
        assert!(chunk_id(&[0u8; 31]).is_err());
        assert!(blob_id(&[0u8; 33]).is_err());
        assert!(chunk_id(&[0u8; 32]).is_ok());
    }

    #[test]
    fn missing_chunk_lists_round_trip_and_keep_the_total_when_cut() -> Result<()> {
        let ids: Vec<ChunkId> = (0..100u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        let few = decode_missing_chunks(&encode_missing_chunks(&ids[..3], 3))?;
        assert_eq!(few.listed, ids[..3]);
        assert_eq!(few.total, 3);
        assert!(few.is_complete());
        let cut = decode_missing_chunks(&encode_missing_chunks(&ids, 100))?;
        assert_eq!(cut.listed, ids[..crate::MAX_LISTED_MISSING]);
        assert_eq!(cut.total, 100);
        assert!(!cut.is_complete());
        Ok(())
    }

    #[test]
    fn malformed_missing_chunk_lists_are_refused() {
        use prost::Message;
        assert!(decode_missing_chunks(&[0xff, 0xff, 0xff]).is_err());
        let short_id = pb::MissingChunks {
            ids: vec![vec![1u8; 31].into()],
            total: 1,
        };
        assert!(decode_missing_chunks(&short_id.encode_to_vec()).is_err());
        let overcounted = pb::MissingChunks {
            ids: vec![vec![1u8; 32].into(), vec![2u8; 32].into()],
            total: 1,
        };
        assert!(decode_missing_chunks(&overcounted.encode_to_vec()).is_err());
    }
}
