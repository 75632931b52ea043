//! Cold ref objects: every change of a ref, written behind to the cold tier, so that the
//! bucket alone can restore the refs (`scipcached rebuild`, `store/rebuild.rs`).
//!
//! # Object names
//!
//! `refs/<tenant id hex>/<ref hash hex>/<version>` under the cold URL's prefix, where
//! - the *ref hash* is the BLAKE3 key derivation `"scipcache 2026 cold ref name v1"` of the
//!   namespace, a `0x00` byte and the key (64 hex digits: a namespace and key can be ~450
//!   bytes, too long for one path segment on local file systems; the name itself is inside the
//!   object);
//! - the *version* is 16 lowercase hex digits (a `u64`, most significant first), so an
//!   object listing sorts a ref's events by version.
//!
//! # Ref event object, format 1 (integers little-endian)
//!
//! | size | field |
//! | --- | --- |
//! | 4 | magic `SCRF` |
//! | 1 | format `1` |
//! | 1 | event: `1` set, `2` deleted |
//! | 8 | version `u64` (the same as in the object's name) |
//! | 8 | when the event happened, Unix ms `u64` |
//! | 2 + n | namespace: length `u16`, UTF-8 |
//! | 2 + n | key: length `u16`, UTF-8 |
//! | … | set events only: blob id (32), manifest id (32), size `u64`, chunk count `u64`, created_at Unix ms `u64`, expires_at Unix ms `u64` (`0` = never), label count `u16`, per label: key length `u16`, key, value length `u16`, value |
//! | 32 | BLAKE3 of every byte before it |
//!
//! The layout is this module's own and does not follow the LMDB ref record (`refs.rs`), so
//! either can change without the other. A reader refuses a format newer than
//! [`COLD_REF_FORMAT`] with [`Error::NewerFormat`], and an object whose checksum, name or
//! tenant folder does not match with [`Error::Format`].
//!
//! | format | change |
//! | --- | --- |
//! | 1 | the layout above |
//!
//! # Newest wins
//!
//! Every set and every deletion of a ref gets a version, taken from the LMDB `state` key
//! `ref_version` in the same transaction as the change and its `cold_queue` entry:
//! `max(last version + 1, now in Unix ms)`. Versions only grow, also across a restart and a
//! rebuild (which records the largest version it found). Each event is its own object, written
//! with `PutMode::Create` (a retried upload is harmless); only after it is stored are the
//! ref's objects of smaller versions deleted. So, whatever order the queue's uploads, retries
//! and crashes put the objects in, the object of the largest version describes the ref: a
//! rebuild restores it if it is a set that has not expired, and never restores a ref whose
//! newest event is a deletion (a *tombstone*, which is kept). Two queued events of one ref are
//! both uploaded; the later version wins, and the older object is pruned when the later
//! one is written, or right after its own upload if the later one is already stored.

use bytes::{BufMut, Bytes, BytesMut};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::ColdTier;
use crate::byte_reader::ByteReader;
use crate::error::{Error, Result};
use crate::ids::{BlobId, ManifestId};
use crate::names::{Namespace, RefKey, TenantId};
use crate::refs::{MAX_LABEL_LEN, MAX_LABELS, RefRecord};

/// Newest cold ref event format this build reads and writes.
pub(crate) const COLD_REF_FORMAT: u8 = 1;
const MAGIC: [u8; 4] = *b"SCRF";
const EVENT_SET: u8 = 1;
const EVENT_DELETED: u8 = 2;
/// Largest ref event object read back (labels at their limits fit several times over).
pub(crate) const MAX_REF_OBJECT: usize = 1 << 20;

/// What happened to a ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RefChange {
    /// It was set to this record.
    Set(RefRecord),
    /// It was deleted.
    Deleted,
}

/// One change of one ref, as the cold tier stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RefEvent {
    pub(crate) ns: Namespace,
    pub(crate) key: RefKey,
    pub(crate) version: u64,
    pub(crate) at_ms: u64,
    pub(crate) change: RefChange,
}

impl RefEvent {
    /// Whether this event deletes the ref.
    pub(crate) fn is_deletion(&self) -> bool {
        matches!(self.change, RefChange::Deleted)
    }

    /// The format-1 object bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(256);
        b.put_slice(&MAGIC);
        b.put_u8(COLD_REF_FORMAT);
        b.put_u8(if self.is_deletion() {
            EVENT_DELETED
        } else {
            EVENT_SET
        });
        b.put_u64_le(self.version);
        b.put_u64_le(self.at_ms);
        for s in [self.ns.as_str(), self.key.as_str()] {
            // Namespaces and keys are at most a few hundred bytes (names.rs).
            b.put_u16_le(s.len() as u16);
            b.put_slice(s.as_bytes());
        }
        if let RefChange::Set(r) = &self.change {
            b.put_slice(r.blob.as_bytes());
            b.put_slice(r.manifest.as_bytes());
            b.put_u64_le(r.size);
            b.put_u64_le(r.chunks);
            b.put_u64_le(r.created_at_ms);
            b.put_u64_le(r.expires_at_ms.unwrap_or(0));
            // At most MAX_LABELS labels of at most MAX_LABEL_LEN bytes (RefOptions::validate).
            b.put_u16_le(r.labels.len() as u16);
            for (k, v) in &r.labels {
                for s in [k, v] {
                    b.put_u16_le(s.len() as u16);
                    b.put_slice(s.as_bytes());
                }
            }
        }
        let sum = blake3::hash(&b);
        b.put_slice(sum.as_bytes());
        b.to_vec()
    }

    /// Decodes [`RefEvent::encode`] of the object `name` (for messages), checking its checksum.
    pub(crate) fn decode(bytes: &[u8], name: &str) -> Result<Self> {
        let bad = |what: &str| Error::Format(format!("cold ref object {name}: {what}"));
        if bytes.len() < 4 + 1 + 1 + 16 + 4 + 32 || bytes[..4] != MAGIC {
            return Err(bad("not a scipcache ref object"));
        }
        let format = bytes[4];
        if format > COLD_REF_FORMAT {
            return Err(Error::NewerFormat {
                what: format!("cold ref object {name}"),
                found: u64::from(format),
                supported: u64::from(COLD_REF_FORMAT),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad("its checksum does not match its bytes (damaged)"));
        }
        if format == 0 {
            return Err(bad("format 0, which no build writes"));
        }
        let mut r = ByteReader::new(&body[5..]);
        let truncated = || bad("truncated");
        let event = r.u8().ok_or_else(truncated)?;
        let version = r.u64().ok_or_else(truncated)?;
        let at_ms = r.u64().ok_or_else(truncated)?;
        let ns: Namespace = r.text().ok_or_else(truncated)?.parse()?;
        let key: RefKey = r.text().ok_or_else(truncated)?.parse()?;
        let change = match event {
            EVENT_DELETED => RefChange::Deleted,
            EVENT_SET => RefChange::Set(read_record(&mut r).ok_or_else(truncated)??),
            other => return Err(bad(&format!("unknown event {other}"))),
        };
        if !r.is_empty() {
            return Err(bad("bytes after the record"));
        }
        Ok(Self {
            ns,
            key,
            version,
            at_ms,
            change,
        })
    }
}

fn read_record(r: &mut ByteReader<'_>) -> Option<Result<RefRecord>> {
    let blob = r.take(32)?;
    let manifest = r.take(32)?;
    let size = r.u64()?;
    let chunks = r.u64()?;
    let created_at_ms = r.u64()?;
    let expires = r.u64()?;
    let count = usize::from(r.u16()?);
    if count > MAX_LABELS {
        return Some(Err(Error::Format(format!("{count} labels on a cold ref"))));
    }
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let k = r.text()?;
        let v = r.text()?;
        if k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN {
            return Some(Err(Error::Format("a cold ref label is too long".into())));
        }
        labels.push((k.to_owned(), v.to_owned()));
    }
    let ids = BlobId::from_slice(blob).and_then(|b| Ok((b, ManifestId::from_slice(manifest)?)));
    Some(ids.map(|(blob, manifest)| RefRecord {
        blob,
        manifest,
        size,
        chunks,
        created_at_ms,
        expires_at_ms: (expires != 0).then_some(expires),
        labels,
    }))
}

/// The ref hash of the object names (see the module docs).
pub(crate) fn ref_hash(ns: &Namespace, key: &RefKey) -> [u8; 32] {
    let name = crate::refs::ref_table_key(ns, key);
    blake3::derive_key("scipcache 2026 cold ref name v1", &name)
}

/// Where a listed ref object sits: its tenant and ref folders and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RefObjectName {
    pub(crate) tenant: TenantId,
    pub(crate) ref_hash: [u8; 32],
    pub(crate) version: u64,
    /// The full object path, for reading it and for messages.
    pub(crate) path: Path,
}

impl ColdTier {
    fn refs_root(&self) -> Path {
        self.prefix.clone().join("refs")
    }

    fn ref_folder(&self, tenant: TenantId, hash: &[u8; 32]) -> Path {
        self.refs_root()
            .join(hex::encode(tenant.0))
            .join(hex::encode(hash))
    }

    /// Stores one encoded ref event of `tenant` (idempotent), then deletes the same ref's
    /// objects of smaller versions, and this one if a larger version is already stored.
    pub(crate) async fn put_ref_event(&self, tenant: TenantId, encoded: &[u8]) -> Result<()> {
        let event = RefEvent::decode(encoded, "queued for upload")?;
        let hash = ref_hash(&event.ns, &event.key);
        let folder = self.ref_folder(tenant, &hash);
        let path = folder.clone().join(format!("{:016x}", event.version));
        self.put_create(&path, Bytes::copy_from_slice(encoded))
            .await?;
        let listed = self.list_all(&folder).await?;
        let versions: Vec<(u64, Path)> = listed
            .into_iter()
            .filter_map(|m| {
                let v = u64::from_str_radix(m.location.filename()?, 16).ok()?;
                Some((v, m.location))
            })
            .collect();
        let newest = versions.iter().map(|(v, _)| *v).max().unwrap_or(0);
        for (v, p) in versions {
            if v < newest {
                match self.store.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Every ref object in the bucket, with what its name says (names that are not ours are
    /// skipped and counted).
    pub(crate) async fn list_ref_objects(&self) -> Result<(Vec<RefObjectName>, u64)> {
        let root = self.refs_root();
        let listed = self.list_all(&root).await?;
        let mut out = Vec::with_capacity(listed.len());
        let mut foreign = 0;
        for m in listed {
            match parse_ref_object_name(&root, &m.location) {
                Some(name) => out.push(name),
                None => foreign += 1,
            }
        }
        Ok((out, foreign))
    }

    /// Reads and checks one ref object: its checksum, and that its name, version and tenant
    /// folder match its content.
    pub(crate) async fn read_ref_object(&self, name: &RefObjectName) -> Result<RefEvent> {
        let got = self.store.get(&name.path).await?;
        if got.meta.size > MAX_REF_OBJECT as u64 {
            return Err(Error::Format(format!(
                "cold ref object {} is {} bytes, more than a ref object can be",
                name.path, got.meta.size
            )));
        }
        let bytes = got.bytes().await?;
        let event = RefEvent::decode(&bytes, name.path.as_ref())?;
        let matches = event.version == name.version
            && event.ns.tenant().id() == name.tenant
            && ref_hash(&event.ns, &event.key) == name.ref_hash;
        if !matches {
            return Err(Error::Format(format!(
                "cold ref object {} names {} {} version {:016x}, which does not match where it \
                 is stored",
                name.path, event.ns, event.key, event.version
            )));
        }
        Ok(event)
    }
}

fn parse_ref_object_name(root: &Path, p: &Path) -> Option<RefObjectName> {
    let rest: Vec<_> = p.prefix_match(root)?.collect();
    let [tenant, hash, version] = rest.as_slice() else {
        return None;
    };
    let tenant: [u8; 8] = hex::decode(tenant.as_ref()).ok()?.try_into().ok()?;
    let ref_hash: [u8; 32] = hex::decode(hash.as_ref()).ok()?.try_into().ok()?;
    if version.as_ref().len() != 16 {
        return None;
    }
    let version = u64::from_str_radix(version.as_ref(), 16).ok()?;
    Some(RefObjectName {
        tenant: TenantId(tenant),
        ref_hash,
        version,
        path: p.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(change: RefChange) -> RefEvent {
        RefEvent {
            ns: "acme/web/app".parse().expect("a valid namespace"),
            key: "commit/abc".parse().expect("a valid key"),
            version: 0x1234,
            at_ms: 1_700_000_000_000,
            change,
        }
    }

    fn record() -> RefRecord {
        RefRecord {
            blob: BlobId::of(b"blob"),
            manifest: ManifestId::of(b"manifest"),
            size: 10,
            chunks: 2,
            created_at_ms: 1_700_000_000_000,
            expires_at_ms: Some(1_700_000_060_000),
            labels: vec![("ci".into(), "yes".into())],
        }
    }

    #[test]
    fn set_and_deletion_events_round_trip() -> Result<()> {
        for e in [event(RefChange::Set(record())), event(RefChange::Deleted)] {
            assert_eq!(RefEvent::decode(&e.encode(), "t")?, e);
        }
        Ok(())
    }

    #[test]
    fn a_flipped_or_cut_ref_object_is_refused_and_a_newer_one_named() {
        let bytes = event(RefChange::Set(record())).encode();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            assert!(RefEvent::decode(&damaged, "t").is_err(), "byte {i}");
        }
        for cut in 0..bytes.len() {
            assert!(
                RefEvent::decode(&bytes[..cut], "t").is_err(),
                "cut at {cut}"
            );
        }
        let mut newer = bytes.clone();
        newer[4] = COLD_REF_FORMAT + 1;
        let n = newer.len() - 32;
        let sum = *blake3::hash(&newer[..n]).as_bytes();
        newer[n..].copy_from_slice(&sum);
        assert!(matches!(
            RefEvent::decode(&newer, "t"),
            Err(Error::NewerFormat { found: 2, .. })
        ));
    }
}
