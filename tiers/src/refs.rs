//! Refs: `(Namespace, RefKey)` → blob, the GC roots.
//!
//! # Ref record, format 1 (LMDB table `refs`, integers little-endian)
//!
//! Key: the namespace text, a `0x00` byte, the key text (both ASCII without NUL, so keys of
//! one namespace sort together and a prefix scan lists them).
//!
//! | size | field |
//! | --- | --- |
//! | 1 | format `1` |
//! | 32 | blob id |
//! | 32 | manifest id |
//! | 8 | size `u64` |
//! | 8 | chunk count `u64` |
//! | 8 | created_at, Unix ms `u64` |
//! | 8 | expires_at, Unix ms `u64`, `0` = never |
//! | 4 | label count `u32` |
//! | … | per label: key length `u16`, key, value length `u16`, value (UTF-8) |

use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::byte_reader::ByteReader;
use crate::error::{Error, Result};
use crate::ids::{BlobId, ManifestId};
use crate::names::{Namespace, RefKey};

/// What a ref points at, and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    /// The blob's content id.
    pub blob: BlobId,
    /// The manifest listing the blob's chunks.
    pub manifest: ManifestId,
    /// Blob length in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// When the ref was set, Unix milliseconds.
    pub created_at_ms: u64,
    /// When it stops resolving, Unix milliseconds; `None` = never.
    pub expires_at_ms: Option<u64>,
    /// Free-form labels (`--label k=v`).
    pub labels: Vec<(String, String)>,
}

/// Most labels on one ref, and longest label key or value.
pub const MAX_LABELS: usize = 64;
/// Longest label key or value in bytes.
pub const MAX_LABEL_LEN: usize = 1024;

/// Options when setting a ref.
#[derive(Clone, Debug, Default)]
pub struct RefOptions {
    /// Expire after this long.
    pub ttl: Option<Duration>,
    /// Labels.
    pub labels: Vec<(String, String)>,
}

impl RefOptions {
    /// Checks label counts and sizes.
    pub fn validate(&self) -> Result<()> {
        if self.labels.len() > MAX_LABELS {
            return Err(Error::InvalidArgument(format!(
                "{} labels given, at most {MAX_LABELS} allowed",
                self.labels.len()
            )));
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN {
                return Err(Error::InvalidArgument(format!(
                    "label {k:?}: keys must be 1 to {MAX_LABEL_LEN} bytes, values at most {MAX_LABEL_LEN}"
                )));
            }
        }
        Ok(())
    }
}

impl RefRecord {
    /// Whether the ref has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }

    /// The on-disk encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(101 + self.labels.len() * 32);
        out.put_u8(1);
        out.put_slice(self.blob.as_bytes());
        out.put_slice(self.manifest.as_bytes());
        out.put_u64_le(self.size);
        out.put_u64_le(self.chunks);
        out.put_u64_le(self.created_at_ms);
        out.put_u64_le(self.expires_at_ms.unwrap_or(0));
        out.put_u32_le(self.labels.len() as u32);
        for (k, v) in &self.labels {
            for s in [k, v] {
                // Lengths are capped at MAX_LABEL_LEN by RefOptions::validate.
                out.put_u16_le(s.len() as u16);
                out.put_slice(s.as_bytes());
            }
        }
        out.to_vec()
    }

    /// Decodes [`RefRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = ByteReader::new(bytes);
        let bad = || Error::Format("ref record is truncated or has an unknown format".into());
        if r.take(1).ok_or_else(bad)? != [1] {
            return Err(bad());
        }
        let blob = BlobId::from_slice(r.take(32).ok_or_else(bad)?)?;
        let manifest = ManifestId::from_slice(r.take(32).ok_or_else(bad)?)?;
        let size = r.u64().ok_or_else(bad)?;
        let chunks = r.u64().ok_or_else(bad)?;
        let created_at_ms = r.u64().ok_or_else(bad)?;
        let expires = r.u64().ok_or_else(bad)?;
        let count = r.u32().ok_or_else(bad)? as usize;
        if count > MAX_LABELS {
            return Err(bad());
        }
        let mut labels = Vec::with_capacity(count);
        for _ in 0..count {
            let mut pair = [String::new(), String::new()];
            for s in &mut pair {
                let len = usize::from(r.u16().ok_or_else(bad)?);
                *s = String::from_utf8(r.take(len).ok_or_else(bad)?.to_vec()).map_err(|_| bad())?;
            }
            let [k, v] = pair;
            labels.push((k, v));
        }
        Ok(Self {
            blob,
            manifest,
            size,
            chunks,
            created_at_ms,
            expires_at_ms: (expires != 0).then_some(expires),
            labels,
        })
    }
}

/// The LMDB key of a ref.
pub fn ref_table_key(ns: &Namespace, key: &RefKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.as_str().len() + 1 + key.as_str().len());
    k.extend_from_slice(ns.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_str().as_bytes());
    k
}

/// The LMDB key prefix of every ref of `ns` whose key starts with `prefix`.
pub fn ref_table_prefix(ns: &Namespace, prefix: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.as_str().len() + 1 + prefix.len());
    k.extend_from_slice(ns.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(prefix.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn ref_records_round_trip(size in any::<u64>(), chunks in any::<u64>(), created in any::<u64>(),
                                  expires in prop::option::of(1u64..), labels in prop::collection::vec(("[a-z]{1,8}", ".{0,20}"), 0..5)) {
            let r = RefRecord {
                blob: BlobId::of(&size.to_le_bytes()),
                manifest: ManifestId::of(&chunks.to_le_bytes()),
                size, chunks, created_at_ms: created, expires_at_ms: expires, labels,
            };
            prop_assert_eq!(RefRecord::decode(&r.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?, r);
        }
    }

    #[test]
    fn truncated_ref_record_is_a_format_error() {
        let r = RefRecord {
            blob: BlobId::of(b"a"),
            manifest: ManifestId::of(b"b"),
            size: 1,
            chunks: 1,
            created_at_ms: 5,
            expires_at_ms: None,
            labels: vec![("k".into(), "v".into())],
        };
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert!(RefRecord::decode(&bytes[..cut]).is_err());
        }
    }
}
