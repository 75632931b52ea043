//! Checksummed metadata records (data dir format 3).
//!
//! LMDB keeps no checksums of its own, so every value of the tables the engine reads to find
//! data (`chunks`, `warm`, `cold`, `manifests`, `refs`; see `meta.rs`) is *sealed*: stored as
//!
//! | size | field |
//! | --- | --- |
//! | n | the record as its module specifies it |
//! | 8 | XXH3-64, little-endian, of the record with the seed XXH3-64(key) |
//!
//! so a flipped byte in the key or the value is found when the record is read. [`Sealed`]
//! wraps such a table: `put` seals, `get` and the iterators check and strip the seal, and a
//! record that fails the check is [`Error::MetadataLoss`] naming what it held (the ref, the
//! manifest, the chunk). Data dirs of formats 1 and 2 hold unsealed records; opening one seals
//! every record in the transaction that stamps format 3 (`version.rs`).

use heed::types::Bytes as RawBytes;
use heed::{Database, RoTxn, RwTxn};

use crate::error::{Error, Result};
use crate::ids::ManifestId;

/// Bytes the seal adds to a record.
pub(crate) const SEAL_LEN: usize = 8;

type Table = Database<'static, RawBytes, RawBytes>;

/// What a sealed table holds, for messages that name the damaged record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `chunks`: a chunk's index entry.
    ChunkInfo,
    /// `warm`: where a chunk lives in a warm pack.
    WarmLocation,
    /// `cold`: where a chunk lives in a cold pack object.
    ColdLocation,
    /// `manifests`.
    Manifest,
    /// `refs`.
    Ref,
    /// `lookup_state`: whether a blob's lookup tables are built.
    LookupState,
    /// `lookups`: a row of a blob's lookup tables.
    Lookup,
}

impl Kind {
    /// The table's name.
    pub(crate) fn table(self) -> &'static str {
        match self {
            Self::ChunkInfo => "chunks",
            Self::WarmLocation => "warm",
            Self::ColdLocation => "cold",
            Self::Manifest => "manifests",
            Self::Ref => "refs",
            Self::LookupState => "lookup_state",
            Self::Lookup => "lookups",
        }
    }

    /// What the record under `key` describes, in words.
    pub(crate) fn describe(self, key: &[u8]) -> String {
        let tenant_and_id = |what: &str| match (key.get(..8), key.get(8..)) {
            (Some(t), Some(id)) if id.len() == 32 => {
                format!("{what} {} of tenant id {}", hex::encode(id), hex::encode(t))
            }
            _ => format!("a {what} under a key of {} bytes", key.len()),
        };
        match self {
            Self::ChunkInfo => tenant_and_id("the index entry of chunk"),
            Self::WarmLocation => tenant_and_id("the warm location of chunk"),
            Self::ColdLocation => tenant_and_id("the cold location of chunk"),
            Self::Manifest => tenant_and_id("manifest"),
            Self::LookupState => tenant_and_id("the lookup tables' state of manifest"),
            Self::Lookup => match (key.get(..8), key.get(8..40)) {
                (Some(t), Some(id)) => format!(
                    "a lookup table row of manifest {} of tenant id {}",
                    hex::encode(id),
                    hex::encode(t)
                ),
                _ => format!("a lookup table row under a key of {} bytes", key.len()),
            },
            Self::Ref => match key.iter().position(|&b| b == 0) {
                Some(at) => format!(
                    "ref {} {}",
                    String::from_utf8_lossy(&key[..at]),
                    String::from_utf8_lossy(&key[at + 1..])
                ),
                None => format!("ref {}", String::from_utf8_lossy(key)),
            },
        }
    }
}

/// The seal of `value` stored under `key`.
fn checksum(key: &[u8], value: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(value, xxhash_rust::xxh3::xxh3_64(key))
}

/// `value` followed by its seal.
pub(crate) fn seal(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + SEAL_LEN);
    out.extend_from_slice(value);
    out.extend_from_slice(&checksum(key, value).to_le_bytes());
    out
}

/// The record of a sealed value, or [`Error::MetadataLoss`] when the seal does not match.
pub(crate) fn unseal<'a>(kind: Kind, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8]> {
    let damaged = || {
        Error::MetadataLoss(format!(
            "{} is damaged in the server's index (its checksum does not match), so it cannot be \
             served; the operator can recreate the index from the cold tier with `scipcached \
             rebuild`",
            kind.describe(key)
        ))
    };
    let Some(split) = stored.len().checked_sub(SEAL_LEN) else {
        return Err(damaged());
    };
    let (value, tail) = stored.split_at(split);
    let mut seal = [0u8; SEAL_LEN];
    seal.copy_from_slice(tail);
    if u64::from_le_bytes(seal) != checksum(key, value) {
        return Err(damaged());
    }
    Ok(value)
}

/// A table of sealed records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sealed {
    /// The table itself (the walk and the migration read it raw).
    pub(crate) raw: Table,
    pub(crate) kind: Kind,
}

/// Sealed records of a table, checked as they are read.
pub(crate) type Records<'t> = Box<dyn Iterator<Item = Result<(&'t [u8], &'t [u8])>> + 't>;

impl Sealed {
    pub(crate) fn new(raw: Table, kind: Kind) -> Self {
        Self { raw, kind }
    }

    /// The checked record under `key`.
    pub(crate) fn get<'t>(&self, txn: &'t RoTxn<'_>, key: &[u8]) -> Result<Option<&'t [u8]>> {
        match self.raw.get(txn, key)? {
            Some(stored) => unseal(self.kind, key, stored).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`Sealed::get`], but a damaged record reads as absent (logged): for writers that
    /// rewrite the record anyway, so the damage is repaired rather than blocking the write.
    pub(crate) fn get_unless_damaged<'t>(
        &self,
        txn: &'t RoTxn<'_>,
        key: &[u8],
    ) -> Result<Option<&'t [u8]>> {
        match self.get(txn, key) {
            Err(Error::MetadataLoss(message)) => {
                tracing::warn!(table = self.kind.table(), %message, "a damaged record reads as absent and is rewritten");
                Ok(None)
            }
            other => other,
        }
    }

    /// Whether a record (damaged or not) is stored under `key`.
    pub(crate) fn contains(&self, txn: &RoTxn<'_>, key: &[u8]) -> Result<bool> {
        Ok(self.raw.get(txn, key)?.is_some())
    }

    /// Seals and stores `value` under `key`.
    pub(crate) fn put(&self, txn: &mut RwTxn<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        self.raw.put(txn, key, &seal(key, value))?;
        Ok(())
    }

    /// Removes the record under `key` (damaged or not); whether there was one.
    pub(crate) fn delete(&self, txn: &mut RwTxn<'_>, key: &[u8]) -> Result<bool> {
        Ok(self.raw.delete(txn, key)?)
    }

    /// Every record, in key order, checked.
    pub(crate) fn iter<'t>(&self, txn: &'t RoTxn<'_>) -> Result<Records<'t>> {
        let kind = self.kind;
        Ok(Box::new(self.raw.iter(txn)?.map(move |item| {
            let (k, v) = item?;
            Ok((k, unseal(kind, k, v)?))
        })))
    }

    /// The records whose key starts with `prefix`, in key order, checked.
    pub(crate) fn prefix_iter<'t>(&self, txn: &'t RoTxn<'_>, prefix: &[u8]) -> Result<Records<'t>> {
        if prefix.is_empty() {
            // LMDB refuses an empty key to position at.
            return self.iter(txn);
        }
        let kind = self.kind;
        Ok(Box::new(self.raw.prefix_iter(txn, prefix)?.map(
            move |item| {
                let (k, v) = item?;
                Ok((k, unseal(kind, k, v)?))
            },
        )))
    }

    /// Number of records.
    pub(crate) fn len(&self, txn: &RoTxn<'_>) -> Result<u64> {
        Ok(self.raw.len(txn)?)
    }
}

/// [`Error::MetadataLoss`] for a manifest a ref names that no tier holds.
pub(crate) fn missing_manifest(id: &ManifestId) -> Error {
    Error::MetadataLoss(format!(
        "manifest {id} is stored neither in the index nor in the cold tier, so the blob cannot \
         be served; push it again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_in_the_key_value_or_seal_is_metadata_loss_naming_the_record() -> Result<()> {
        let key = b"acme/web/app\0commit/1".to_vec();
        let sealed = seal(&key, b"the record");
        assert_eq!(unseal(Kind::Ref, &key, &sealed)?, b"the record");
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            let err = unseal(Kind::Ref, &key, &bad).err();
            assert!(
                matches!(&err, Some(Error::MetadataLoss(m)) if m.contains("ref acme/web/app commit/1")),
                "byte {at}: {err:?}"
            );
        }
        let mut other_key = key.clone();
        other_key[0] ^= 1;
        assert!(unseal(Kind::Ref, &other_key, &sealed).is_err());
        assert!(unseal(Kind::Ref, &key, &sealed[..4]).is_err());
        Ok(())
    }
}
