//! Conversions between wire messages and engine types. Parsing untrusted wire values happens
//! here, once, and fails with [`scipcache_tiers::Error::InvalidArgument`].

use scipcache_tiers::chunking::{ChunkerAlgorithm, ChunkerSpec};
use scipcache_tiers::ids::{BlobId, ChunkId, ManifestId};
use scipcache_tiers::manifest::ManifestEntry;
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
}
