//! Checking one tier's copy of a chunk before it is used or sent: the one place reads verify.
//!
//! A copy is good when it decodes and its bytes hash (BLAKE3) to the chunk id. Copies that
//! are sent on as frames, without the server needing their raw bytes, go through
//! [`check_frame`]: a format-2 frame carries an XXH3-64 checksum of its header and payload,
//! taken when the frame was encoded and checked again when it was stored (uploads are decoded
//! and hashed at put time), so checking that checksum proves the stored bytes are the ones
//! that were verified, without decoding or hashing them again. Format-1 frames (stored by
//! older builds) have no checksum and are decoded and hashed. The client decodes and hashes
//! every chunk and the whole blob in any case.

use bytes::Bytes;

use crate::codec::{Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::meta::ChunkKey;
use crate::tier::TierName;

/// Chunks per blocking job when reading, verifying or recoding many (so a batch spreads over
/// the cores).
pub(crate) const VERIFY_PART: usize = 16;

/// What the caller does with a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Sends the frame as it is (the reader decodes and verifies it again).
    Frame,
    /// Uses the raw bytes (range ends, promotion into another codec, hashing a blob).
    Raw,
}

/// A copy that passed [`verify_copy`].
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    /// The stored frame.
    pub(crate) frame: Frame,
    /// Its decoded bytes, when they were needed or had to be computed anyway.
    pub(crate) raw: Option<Bytes>,
}

/// Verifies one copy of chunk `id`. `trusted` (the hot tier with `verify_hot_reads` off)
/// skips the hash: frames are passed through, raw bytes only decoded.
pub(crate) fn verify_copy(
    id: &ChunkId,
    frame: Frame,
    need: Need,
    trusted: bool,
) -> Result<Checked> {
    let raw = match (need, trusted) {
        (Need::Frame, true) => None,
        (Need::Raw, true) => Some(frame.decode(MAX_CHUNK_LEN)?),
        (Need::Frame, false) => check_frame(id, &frame)?,
        (Need::Raw, false) => Some(frame.decode_verified(id, MAX_CHUNK_LEN)?),
    };
    Ok(Checked { frame, raw })
}

/// Verifies a copy that will be sent as a frame: by its checksum when it has one (nothing is
/// decoded), else decoded and hashed (the decoded bytes are kept since they exist).
fn check_frame(id: &ChunkId, frame: &Frame) -> Result<Option<Bytes>> {
    if frame.has_checksum() {
        frame.verify_checksum().map_err(|e| Error::Corrupt {
            id: *id,
            actual: format!("<{e}>"),
        })?;
        return Ok(None);
    }
    frame.decode_verified(id, MAX_CHUNK_LEN).map(Some)
}

/// What trying the tiers for one chunk found: the first good copy, the tiers whose copy was
/// bad, and whether a tier could not be reached.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) key: ChunkKey,
    /// What the reader does with the copy (a frame sent on is checked by its checksum).
    need: Need,
    pub(crate) good: Option<(TierName, Checked)>,
    pub(crate) bad: Vec<TierName>,
    unavailable: Option<String>,
}

impl Lookup {
    /// Nothing tried yet; `hot_bad` when the hot copy already failed. Every copy offered is
    /// decoded and hashed (the scrub).
    pub(crate) fn new(key: ChunkKey, hot_bad: bool) -> Self {
        Self::needing(key, hot_bad, Need::Raw)
    }

    /// [`Lookup::new`] for a reader that needs `need`: a copy sent on as a frame is checked by
    /// its checksum, like a hot copy (promotion decodes and hashes it before it enters hot).
    pub(crate) fn needing(key: ChunkKey, hot_bad: bool, need: Need) -> Self {
        Self {
            key,
            need,
            good: None,
            bad: if hot_bad {
                vec![TierName::Hot]
            } else {
                Vec::new()
            },
            unavailable: None,
        }
    }

    /// Verifies what `tier` returned for the chunk as the reader needs it and records the
    /// outcome; the first good copy is kept.
    pub(crate) fn offer(&mut self, tier: TierName, got: Result<Option<Frame>>) {
        let id = self.key.id();
        match got {
            Ok(None) => {}
            Ok(Some(frame)) => match verify_copy(&id, frame, self.need, false) {
                Ok(copy) => {
                    if self.good.is_none() {
                        self.good = Some((tier, copy));
                    }
                }
                Err(e) => {
                    tracing::error!(chunk = %id, tier = tier.as_str(), error = %e, "copy failed verification");
                    self.bad.push(tier);
                }
            },
            Err(Error::Unavailable(m)) => self.unavailable = Some(m),
            Err(e) => {
                tracing::error!(chunk = %id, tier = tier.as_str(), error = %e, "reading a copy failed");
                self.bad.push(tier);
            }
        }
    }

    /// Why no good copy was found: a tier was unreachable, nothing holds the chunk, or every
    /// copy was bad.
    pub(crate) fn failure(&self) -> Error {
        if let Some(m) = &self.unavailable {
            return Error::Unavailable(m.clone());
        }
        if self.bad.is_empty() {
            return Error::NotFound(format!("chunk {} is not stored", self.key.id()));
        }
        let tried: Vec<&str> = self.bad.iter().map(|t| t.as_str()).collect();
        Error::DataLoss {
            id: self.key.id(),
            detail: format!("bad copies in {}", tried.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Compression;
    use crate::error::Error;

    /// A format-1 frame (what older builds stored): header `0xC1`, codec, raw length, payload.
    fn v1_raw_frame(raw: &[u8]) -> Result<Frame> {
        let mut b = vec![crate::codec::FRAME_FORMAT_V1, 0];
        b.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        b.extend_from_slice(raw);
        Frame::from_bytes(Bytes::from(b))
    }

    #[test]
    fn a_copy_whose_bytes_do_not_hash_to_its_id_fails_unless_trusted_as_a_frame() -> Result<()> {
        let old = v1_raw_frame(b"some chunk bytes")?;
        let new = Frame::encode(b"some chunk bytes", Compression::Lz4)?;
        let wrong = ChunkId::of(b"other bytes");
        for need in [Need::Frame, Need::Raw] {
            let r = verify_copy(&wrong, old.clone(), need, false);
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{need:?}: {r:?}");
        }
        let r = verify_copy(&wrong, new.clone(), Need::Raw, false);
        assert!(
            matches!(r, Err(Error::Corrupt { .. })),
            "raw bytes are hashed: {r:?}"
        );
        let passed = verify_copy(&wrong, old.clone(), Need::Frame, true)?;
        assert!(passed.raw.is_none(), "a trusted frame is not decoded");
        let good = verify_copy(&ChunkId::of(b"some chunk bytes"), old, Need::Raw, false)?;
        assert_eq!(good.raw.as_deref(), Some(&b"some chunk bytes"[..]));
        Ok(())
    }

    #[test]
    fn a_checksummed_frame_sent_as_is_is_checked_by_its_checksum_without_decoding() -> Result<()> {
        let raw = b"some chunk bytes, long enough to compress: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let id = ChunkId::of(raw);
        let frame = Frame::encode(raw, Compression::Lz4)?;
        assert!(frame.has_checksum());
        let passed = verify_copy(&id, frame.clone(), Need::Frame, false)?;
        assert!(passed.raw.is_none(), "checked by checksum, not decoded");
        let mut damaged = frame.as_bytes().to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        let damaged = Frame::from_bytes(Bytes::from(damaged))?;
        let r = verify_copy(&id, damaged, Need::Frame, false);
        assert!(
            matches!(r, Err(Error::Corrupt { .. })),
            "a flipped bit is caught: {r:?}"
        );
        Ok(())
    }
}
