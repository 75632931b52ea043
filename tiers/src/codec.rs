//! Byte layouts shared by every tier and the wire: the chunk frame.
//!
//! # Chunk frame, format 1
//!
//! Every stored or transferred chunk is a frame: a 6-byte header and a payload.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | format, `0xC1` for this version |
//! | 1 | 1 | codec: `0` raw, `1` lz4 block (lz4_flex, no size prefix), `2` zstd frame |
//! | 2 | 4 | raw length, little-endian `u32` |
//! | 6 | n | payload |
//!
//! A decoder checks the declared raw length against a caller-given limit (the maximum chunk
//! size) *before* allocating, and checks that the payload decodes to exactly that many bytes:
//! a frame cannot make a reader allocate more than the limit (no decompression bombs).
//!
//! An encoder stores the chunk raw when compression would save less than 1/32 of its size, so
//! incompressible data grows by exactly the 6-byte header.
//!
//! The LMDB layouts live with the code that owns them (`meta.rs`), the pack layouts in
//! `warm.rs` and `cold.rs`, the manifest layout in `manifest.rs`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::ids::ChunkId;

/// First byte of every format-1 frame.
pub const FRAME_FORMAT: u8 = 0xC1;
/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 6;
/// No chunk is ever larger than this, whatever the chunker parameters (fastcdc's own maximum).
pub const MAX_CHUNK_LEN: usize = 16 * 1024 * 1024;

/// How a frame's payload is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CodecId {
    /// Stored as is.
    Raw = 0,
    /// lz4 block.
    Lz4 = 1,
    /// zstd frame.
    Zstd = 2,
}

impl CodecId {
    fn from_byte(b: u8) -> Result<Self> {
        match b {
            0 => Ok(Self::Raw),
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zstd),
            other => Err(Error::Format(format!("unknown chunk codec {other}"))),
        }
    }
}

/// A tier's compression setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    Raw,
    /// lz4_flex block compression.
    Lz4,
    /// zstd at the given level.
    Zstd(i32),
}

impl Compression {
    /// The codec a frame encoded with this setting carries (when compression pays).
    pub fn codec(self) -> CodecId {
        match self {
            Self::Raw => CodecId::Raw,
            Self::Lz4 => CodecId::Lz4,
            Self::Zstd(_) => CodecId::Zstd,
        }
    }
}

/// One encoded chunk: header plus payload, cheaply clonable.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("codec", &self.codec())
            .field("raw_len", &self.raw_len())
            .field("stored_len", &self.0.len())
            .finish()
    }
}

impl Frame {
    /// Encodes raw chunk bytes.
    pub fn encode(raw: &[u8], compression: Compression) -> Result<Self> {
        if raw.len() > MAX_CHUNK_LEN {
            return Err(Error::InvalidArgument(format!(
                "chunk of {} bytes exceeds the {MAX_CHUNK_LEN}-byte limit",
                raw.len()
            )));
        }
        let worth = |compressed: usize| compressed + raw.len() / 32 < raw.len();
        let compressed = match compression {
            Compression::Raw => None,
            Compression::Lz4 => {
                let mut out = BytesMut::zeroed(
                    FRAME_HEADER_LEN + lz4_flex::block::get_maximum_output_size(raw.len()),
                );
                let n = lz4_flex::block::compress_into(raw, &mut out[FRAME_HEADER_LEN..])
                    .map_err(|e| Error::Format(format!("lz4 compression failed: {e}")))?;
                worth(n).then(|| {
                    out.truncate(FRAME_HEADER_LEN + n);
                    out
                })
            }
            Compression::Zstd(level) => {
                let payload = zstd::bulk::compress(raw, level)
                    .map_err(|e| Error::io("zstd compression failed", e))?;
                worth(payload.len()).then(|| {
                    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
                    out.put_bytes(0, FRAME_HEADER_LEN);
                    out.put_slice(&payload);
                    out
                })
            }
        };
        let (codec, mut out) = match compressed {
            Some(out) => (compression.codec(), out),
            None => {
                let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + raw.len());
                out.put_bytes(0, FRAME_HEADER_LEN);
                out.put_slice(raw);
                (CodecId::Raw, out)
            }
        };
        out[0] = FRAME_FORMAT;
        out[1] = codec as u8;
        // Lossless: raw.len() <= MAX_CHUNK_LEN < u32::MAX.
        out[2..6].copy_from_slice(&(raw.len() as u32).to_le_bytes());
        Ok(Self(out.freeze()))
    }

    /// Wraps bytes read from storage or the wire after checking the header.
    pub fn from_bytes(bytes: Bytes) -> Result<Self> {
        if bytes.len() < FRAME_HEADER_LEN {
            return Err(Error::Format(format!(
                "chunk frame of {} bytes is shorter than its header",
                bytes.len()
            )));
        }
        if bytes[0] != FRAME_FORMAT {
            return Err(Error::Format(format!(
                "unknown chunk frame format 0x{:02x}",
                bytes[0]
            )));
        }
        CodecId::from_byte(bytes[1])?;
        Ok(Self(bytes))
    }

    /// The codec of the payload.
    pub fn codec(&self) -> CodecId {
        // Checked in from_bytes/encode.
        CodecId::from_byte(self.0[1]).unwrap_or(CodecId::Raw)
    }

    /// The declared raw length.
    pub fn raw_len(&self) -> usize {
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.0[2..6]);
        u32::from_le_bytes(len) as usize
    }

    /// Header plus payload, as stored.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Takes the stored bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Stored size in bytes.
    pub fn stored_len(&self) -> usize {
        self.0.len()
    }

    /// Decodes the payload, refusing a declared length above `limit` before allocating.
    pub fn decode(&self, limit: usize) -> Result<Bytes> {
        let raw_len = self.raw_len();
        if raw_len > limit.min(MAX_CHUNK_LEN) {
            return Err(Error::Format(format!(
                "chunk frame declares {raw_len} bytes, more than the {limit}-byte limit"
            )));
        }
        let payload = &self.0[FRAME_HEADER_LEN..];
        let decoded = match self.codec() {
            CodecId::Raw => {
                if payload.len() != raw_len {
                    return Err(Error::Format(format!(
                        "raw chunk frame declares {raw_len} bytes but holds {}",
                        payload.len()
                    )));
                }
                return Ok(self.0.slice(FRAME_HEADER_LEN..));
            }
            CodecId::Lz4 => {
                let mut out = vec![0u8; raw_len];
                let n = lz4_flex::block::decompress_into(payload, &mut out)
                    .map_err(|e| Error::Format(format!("lz4 payload is damaged: {e}")))?;
                (n, out)
            }
            CodecId::Zstd => {
                let mut out = vec![0u8; raw_len];
                let n = zstd::bulk::decompress_to_buffer(payload, &mut out[..])
                    .map_err(|e| Error::Format(format!("zstd payload is damaged: {e}")))?;
                (n, out)
            }
        };
        let (n, out) = decoded;
        if n != raw_len {
            return Err(Error::Format(format!(
                "chunk frame declares {raw_len} bytes but decodes to {n}"
            )));
        }
        Ok(Bytes::from(out))
    }

    /// Decodes and checks that the bytes hash to `id`.
    pub fn decode_verified(&self, id: &ChunkId, limit: usize) -> Result<Bytes> {
        let raw = self.decode(limit).map_err(|e| Error::Corrupt {
            id: *id,
            actual: format!("<undecodable: {e}>"),
        })?;
        let actual = ChunkId::of(&raw);
        if &actual != id {
            return Err(Error::Corrupt {
                id: *id,
                actual: actual.to_string(),
            });
        }
        Ok(raw)
    }

    /// Re-encodes with another compression unless the frame already uses its codec (a raw
    /// frame is kept raw when the target compresses: it was stored raw because it did not pay).
    pub fn recode(&self, raw: &[u8], compression: Compression) -> Result<Self> {
        if self.codec() == compression.codec() {
            return Ok(self.clone());
        }
        Self::encode(raw, compression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_compressions() -> [Compression; 4] {
        [
            Compression::Raw,
            Compression::Lz4,
            Compression::Zstd(3),
            Compression::Zstd(19),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn frames_round_trip_every_codec(data in prop::collection::vec(any::<u8>(), 0..70_000), rep in 1usize..50) {
            let repetitive: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).take(MAX_CHUNK_LEN).collect();
            for raw in [&data, &repetitive] {
                for c in all_compressions() {
                    let frame = Frame::encode(raw, c).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let again = Frame::from_bytes(frame.as_bytes().clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let out = again.decode_verified(&ChunkId::of(raw), MAX_CHUNK_LEN).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&out[..], &raw[..]);
                }
            }
        }
    }

    #[test]
    fn incompressible_chunk_is_stored_raw_and_grows_by_header_only() -> Result<()> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for c in all_compressions() {
            let frame = Frame::encode(&random, c)?;
            assert_eq!(frame.codec(), CodecId::Raw);
            assert_eq!(frame.stored_len(), random.len() + FRAME_HEADER_LEN);
        }
        Ok(())
    }

    #[test]
    fn declared_length_over_limit_is_refused_before_decoding() -> Result<()> {
        let frame = Frame::encode(&vec![7u8; 100_000], Compression::Zstd(3))?;
        assert!(matches!(frame.decode(65_536), Err(Error::Format(_))));
        // A header that lies about its length is caught too.
        let mut bytes = frame.as_bytes().to_vec();
        bytes[2..6].copy_from_slice(&(u32::MAX).to_le_bytes());
        let liar = Frame::from_bytes(Bytes::from(bytes))?;
        assert!(liar.decode(MAX_CHUNK_LEN).is_err());
        Ok(())
    }

    #[test]
    fn flipped_payload_byte_is_reported_corrupt() -> Result<()> {
        let raw = b"hello hello hello hello hello hello hello hello".repeat(100);
        for c in all_compressions() {
            let frame = Frame::encode(&raw, c)?;
            let mut bytes = frame.as_bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x55;
            let bad = Frame::from_bytes(Bytes::from(bytes))?;
            let result = bad.decode_verified(&ChunkId::of(&raw), MAX_CHUNK_LEN);
            assert!(
                matches!(result, Err(Error::Corrupt { .. })),
                "{c:?}: {result:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_format_or_codec_is_refused() {
        assert!(Frame::from_bytes(Bytes::from_static(&[0xC2, 0, 0, 0, 0, 0])).is_err());
        assert!(Frame::from_bytes(Bytes::from_static(&[0xC1, 9, 0, 0, 0, 0])).is_err());
        assert!(Frame::from_bytes(Bytes::from_static(&[0xC1, 0])).is_err());
    }
}
