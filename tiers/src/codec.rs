//! Byte layouts shared by every tier and the wire: the chunk frame.
//!
//! # Chunk frame, format 2
//!
//! Every stored or transferred chunk is a frame: a 14-byte header and a payload.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | format, `0xC2` for this version |
//! | 1 | 1 | codec: `0` raw, `1` lz4 block (lz4_flex, no size prefix), `2` zstd frame |
//! | 2 | 4 | raw length, little-endian `u32` |
//! | 6 | 8 | checksum, little-endian `u64`: XXH3-64 of the payload, seeded with the header's bytes 1..6 read as a little-endian integer (`codec \| raw_len << 8`) |
//! | 14 | n | payload |
//!
//! The checksum lets a tier check a stored copy at memory speed (XXH3 runs at well over
//! 10 GB/s a core, BLAKE3 plus decoding at 1-2) and send it as it is: a copy whose checksum
//! holds is byte for byte the frame that was written, so if it was verified against its chunk
//! id when written (every put does that) it still decodes to that chunk. Seeding with the codec
//! and length makes a damaged header fail the check too. The checksum is no defence against a
//! writer that lies: it is computed by whoever encodes the frame, so a frame from the network
//! is always decoded and hashed against its id once, at put time
//! ([`Frame::decode_verified`] checks the checksum as well, so a frame with a wrong one is
//! refused there).
//!
//! # Chunk frame, format 1 (read only)
//!
//! The same without the checksum: format byte `0xC1`, codec, raw length, then the payload at
//! offset 6. Frames stored or sent before format 2 still decode; every encoder writes format 2,
//! and [`Frame::recode`] upgrades a format-1 frame by adding the checksum (the payload is kept).
//!
//! # Both formats
//!
//! A decoder checks the declared raw length against a caller-given limit (the maximum chunk
//! size) *before* allocating, and checks that the payload decodes to exactly that many bytes:
//! a frame cannot make a reader allocate more than the limit (no decompression bombs).
//!
//! An encoder stores the chunk raw when compression would save less than 1/32 of its size, so
//! incompressible data grows by exactly the header.
//!
//! The LMDB layouts live with the code that owns them (`meta.rs`), the pack layouts in
//! `warm.rs` and `cold.rs`, the manifest layout in `manifest.rs`.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::ids::ChunkId;

/// First byte of every frame written today (format 2, with a checksum).
pub const FRAME_FORMAT: u8 = 0xC2;
/// First byte of a format-1 frame (no checksum), still read.
pub const FRAME_FORMAT_V1: u8 = 0xC1;
/// Bytes before the payload of a format-2 frame: the longest header of any format, so
/// `FRAME_HEADER_LEN + n` bounds the stored size of a frame of `n` payload bytes.
pub const FRAME_HEADER_LEN: usize = 14;
/// Bytes before the payload of a format-1 frame.
pub const FRAME_HEADER_LEN_V1: usize = 6;
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

thread_local! {
    // One zstd context per thread, kept across chunks: a fresh context per chunk costs
    // 20-50% of the compression time at levels 1-3 (bench/MEASUREMENTS.md).
    static ZSTD_COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// zstd-compresses `raw` into `out` with this thread's context; returns the bytes written.
fn zstd_compress_into(raw: &[u8], level: i32, out: &mut [u8]) -> std::io::Result<usize> {
    ZSTD_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some((current, c)) => {
                if *current != level {
                    c.set_compression_level(level)?;
                    *current = level;
                }
                c
            }
            None => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress_to_buffer(raw, out)
    })
}

/// zstd-decompresses `payload` into `out` with this thread's context; returns the bytes written.
fn zstd_decompress_into(payload: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    ZSTD_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress_to_buffer(payload, out)
    })
}

/// The format-2 checksum of a payload under the header's codec byte and raw length.
fn checksum(codec: u8, raw_len: u32, payload: &[u8]) -> u64 {
    let seed = u64::from(codec) | (u64::from(raw_len) << 8);
    xxhash_rust::xxh3::xxh3_64_with_seed(payload, seed)
}

/// Writes a format-2 header into the first [`FRAME_HEADER_LEN`] bytes of `out`, whose
/// payload follows it.
fn write_header(out: &mut [u8], codec: CodecId, raw_len: usize) {
    // Lossless: raw_len <= MAX_CHUNK_LEN < u32::MAX (checked by every caller).
    let raw_len = raw_len as u32;
    let sum = checksum(codec as u8, raw_len, &out[FRAME_HEADER_LEN..]);
    out[0] = FRAME_FORMAT;
    out[1] = codec as u8;
    out[2..6].copy_from_slice(&raw_len.to_le_bytes());
    out[6..FRAME_HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
}

fn undecodable(id: &ChunkId, e: Error) -> Error {
    Error::Corrupt {
        id: *id,
        actual: format!("<undecodable: {e}>"),
    }
}

/// [`Error::Corrupt`] unless `raw` hashes to `id`.
fn check_id(id: &ChunkId, raw: &[u8]) -> Result<()> {
    let actual = ChunkId::of(raw);
    if &actual == id {
        Ok(())
    } else {
        Err(Error::Corrupt {
            id: *id,
            actual: actual.to_string(),
        })
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
            .field("checksum", &self.has_checksum())
            .finish()
    }
}

impl Frame {
    /// Encodes raw chunk bytes as a format-2 frame.
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
                let mut out =
                    BytesMut::zeroed(FRAME_HEADER_LEN + zstd::zstd_safe::compress_bound(raw.len()));
                let n = zstd_compress_into(raw, level, &mut out[FRAME_HEADER_LEN..])
                    .map_err(|e| Error::io("zstd compression failed", e))?;
                worth(n).then(|| {
                    out.truncate(FRAME_HEADER_LEN + n);
                    out
                })
            }
        };
        let (codec, mut out) = match compressed {
            Some(out) => (compression.codec(), out),
            None => {
                let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + raw.len());
                out.resize(FRAME_HEADER_LEN, 0);
                out.extend_from_slice(raw);
                (CodecId::Raw, out)
            }
        };
        write_header(&mut out, codec, raw.len());
        Ok(Self(out.freeze()))
    }

    /// Wraps bytes read from storage or the wire after checking the header (format 1 or 2).
    /// The checksum is not checked here: see [`Frame::verify_checksum`].
    pub fn from_bytes(bytes: Bytes) -> Result<Self> {
        let header = match bytes.first() {
            Some(&FRAME_FORMAT) => FRAME_HEADER_LEN,
            Some(&FRAME_FORMAT_V1) => FRAME_HEADER_LEN_V1,
            Some(other) => {
                return Err(Error::Format(format!(
                    "unknown chunk frame format 0x{other:02x}"
                )));
            }
            None => return Err(Error::Format("empty chunk frame".into())),
        };
        if bytes.len() < header {
            return Err(Error::Format(format!(
                "chunk frame of {} bytes is shorter than its {header}-byte header",
                bytes.len()
            )));
        }
        CodecId::from_byte(bytes[1])?;
        Ok(Self(bytes))
    }

    fn header_len(&self) -> usize {
        if self.has_checksum() {
            FRAME_HEADER_LEN
        } else {
            FRAME_HEADER_LEN_V1
        }
    }

    /// Whether the header carries a checksum (format 2); format-1 frames do not.
    pub fn has_checksum(&self) -> bool {
        self.0[0] == FRAME_FORMAT
    }

    /// Checks the payload and header against the header's checksum, without decoding: `Ok`
    /// means these are the bytes their encoder wrote. Fails with [`Error::Format`] on a
    /// mismatch, and also for a format-1 frame, which has no checksum (decode and hash it with
    /// [`Frame::decode_verified`] instead; [`Frame::has_checksum`] tells which applies).
    pub fn verify_checksum(&self) -> Result<()> {
        if !self.has_checksum() {
            return Err(Error::Format(
                "a format-1 chunk frame carries no checksum; decode and hash it instead".into(),
            ));
        }
        let mut stored = [0u8; 8];
        stored.copy_from_slice(&self.0[6..FRAME_HEADER_LEN]);
        let stored = u64::from_le_bytes(stored);
        // Lossless: raw_len() was read from a u32.
        let actual = checksum(self.0[1], self.raw_len() as u32, self.payload());
        if actual == stored {
            Ok(())
        } else {
            Err(Error::Format(format!(
                "chunk frame checksum mismatch: the header says {stored:016x}, the bytes give \
                 {actual:016x} (damaged in storage or in transit)"
            )))
        }
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

    /// The encoded payload, after the header.
    pub fn payload(&self) -> &[u8] {
        &self.0[self.header_len()..]
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

    /// Decodes the payload, refusing a declared length above `limit` before allocating. Does
    /// not check the checksum (see [`Frame::decode_verified`]). A raw frame's bytes are
    /// returned without a copy.
    pub fn decode(&self, limit: usize) -> Result<Bytes> {
        let raw_len = self.raw_len();
        if raw_len > limit.min(MAX_CHUNK_LEN) {
            return Err(Error::Format(format!(
                "chunk frame declares {raw_len} bytes, more than the {limit}-byte limit"
            )));
        }
        if self.codec() == CodecId::Raw {
            self.check_raw_payload()?;
            return Ok(self.0.slice(self.header_len()..));
        }
        let mut out = vec![0u8; raw_len];
        self.decode_into(&mut out)?;
        Ok(Bytes::from(out))
    }

    /// Decodes the payload into `out`, which must be exactly [`Frame::raw_len`] bytes long (so
    /// the caller, who sized it, has already bounded the declared length). Lets a reader decode
    /// many chunks into one reused buffer. Does not check the checksum.
    pub fn decode_into(&self, out: &mut [u8]) -> Result<()> {
        let raw_len = self.raw_len();
        if out.len() != raw_len {
            return Err(Error::InvalidArgument(format!(
                "a chunk frame of {raw_len} bytes cannot be decoded into {} bytes",
                out.len()
            )));
        }
        let payload = self.payload();
        let n = match self.codec() {
            CodecId::Raw => {
                self.check_raw_payload()?;
                out.copy_from_slice(payload);
                raw_len
            }
            CodecId::Lz4 => lz4_flex::block::decompress_into(payload, out)
                .map_err(|e| Error::Format(format!("lz4 payload is damaged: {e}")))?,
            CodecId::Zstd => zstd_decompress_into(payload, out)
                .map_err(|e| Error::Format(format!("zstd payload is damaged: {e}")))?,
        };
        if n != raw_len {
            return Err(Error::Format(format!(
                "chunk frame declares {raw_len} bytes but decodes to {n}"
            )));
        }
        Ok(())
    }

    fn check_raw_payload(&self) -> Result<()> {
        let (declared, held) = (self.raw_len(), self.payload().len());
        if declared == held {
            Ok(())
        } else {
            Err(Error::Format(format!(
                "raw chunk frame declares {declared} bytes but holds {held}"
            )))
        }
    }

    /// Checks the checksum (when the frame has one), decodes, and checks that the bytes hash
    /// to `id`; any failure is [`Error::Corrupt`].
    pub fn decode_verified(&self, id: &ChunkId, limit: usize) -> Result<Bytes> {
        self.verify_checksum_if_any(id)?;
        let raw = self.decode(limit).map_err(|e| undecodable(id, e))?;
        check_id(id, &raw)?;
        Ok(raw)
    }

    /// [`Frame::decode_verified`] into `out`, which must be exactly [`Frame::raw_len`] bytes
    /// long (see [`Frame::decode_into`]).
    pub fn decode_verified_into(&self, id: &ChunkId, out: &mut [u8]) -> Result<()> {
        self.verify_checksum_if_any(id)?;
        self.decode_into(out).map_err(|e| undecodable(id, e))?;
        check_id(id, out)
    }

    fn verify_checksum_if_any(&self, id: &ChunkId) -> Result<()> {
        if self.has_checksum() {
            self.verify_checksum().map_err(|e| undecodable(id, e))?;
        }
        Ok(())
    }

    /// Re-encodes with another compression unless the frame already uses its codec (a raw
    /// frame is kept raw when the target compresses: it was stored raw because it did not pay).
    /// A format-1 frame kept in its codec is upgraded to format 2: same payload, a header with
    /// a checksum.
    pub fn recode(&self, raw: &[u8], compression: Compression) -> Result<Self> {
        if self.codec() != compression.codec() {
            return Self::encode(raw, compression);
        }
        if self.has_checksum() {
            return Ok(self.clone());
        }
        let payload = self.payload();
        let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
        out.resize(FRAME_HEADER_LEN, 0);
        out.extend_from_slice(payload);
        write_header(&mut out, self.codec(), self.raw_len());
        Ok(Self(out.freeze()))
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
