//! Warm tier: append-only pack files on local disk (zstd at a low level by default).
//!
//! # Pack file layout
//!
//! `warm/pack-NNNNNNNN.pack` is a sequence of records, each:
//!
//! | size | field |
//! | --- | --- |
//! | 8 | tenant id |
//! | 32 | chunk id |
//! | 4 | frame length `u32` LE |
//! | n | the chunk frame (`codec.rs`) |
//!
//! The record header makes a pack self-describing (an index can be rebuilt from packs alone);
//! the LMDB `warm` table maps a chunk key to (pack, frame offset, frame length).
//!
//! # Crash safety
//!
//! A put appends its records, fsyncs the pack, and only then commits the index entries together
//! with the pack's new *durable length* (table `warm_packs`). At open, every pack is truncated to
//! its durable length, so bytes of a put that crashed before its commit (a torn tail) vanish,
//! and no index entry can point at bytes that were not fsync'd. A pack is sealed once it
//! reaches the size limit and a new one is started. Deleting a chunk only drops its index entry
//! and counts its bytes as dead; compaction reclaims them (lifecycle issue).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use crate::meta::{
    ChunkKey, Meta, bump_counter, clear_tier_bit, le_u32, le_u64, list_table, set_tier_bit,
    tier_bits,
};
use crate::names::TenantId;
use crate::tier::{ChunkTier, TierName};

const RECORD_HEADER: usize = 44;

/// Where a frame lives in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    pack: u32,
    offset: u64,
    len: u32,
}

impl Location {
    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 16 {
            return Err(Error::Format(format!("warm location of {} bytes", b.len())));
        }
        Ok(Self {
            pack: le_u32(&b[..4]),
            offset: le_u64(&b[4..12]),
            len: le_u32(&b[12..]),
        })
    }
}

/// `warm_packs` row.
#[derive(Clone, Copy, Debug, Default)]
struct PackRow {
    durable_len: u64,
    live_bytes: u64,
    dead_bytes: u64,
}

impl PackRow {
    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.durable_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.live_bytes.to_le_bytes());
        b[16..].copy_from_slice(&self.dead_bytes.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 24 {
            return Err(Error::Format(format!("warm pack row of {} bytes", b.len())));
        }
        Ok(Self {
            durable_len: le_u64(&b[..8]),
            live_bytes: le_u64(&b[8..16]),
            dead_bytes: le_u64(&b[16..]),
        })
    }
}

struct Active {
    id: u32,
    file: File,
    len: u64,
}

/// Where a simulated crash stops a put (tests only).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Records appended, not fsync'd, index not committed.
    AfterAppend,
    /// Records fsync'd, index not committed.
    AfterSync,
}

/// The warm tier.
#[derive(Clone)]
pub(crate) struct WarmTier {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    meta: Meta,
    compression: Compression,
    pack_limit: u64,
    active: Mutex<Active>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
    #[cfg(test)]
    fault: Mutex<Option<Fault>>,
}

impl std::fmt::Debug for WarmTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmTier")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("pack-{id:08}.pack"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave their data half-updated in a way later
    // users could observe (the file length is re-derived from LMDB at open), so poisoning is
    // ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WarmTier {
    /// Opens the pack directory, truncating every pack to its durable length (blocking).
    pub(crate) fn open(
        dir: &Path,
        meta: Meta,
        compression: Compression,
        pack_limit: u64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let rows: Vec<(u32, PackRow)> = meta.read_now(|t, txn| {
            let mut rows = Vec::new();
            for item in t.warm_packs.iter(txn)? {
                let (k, v) = item?;
                let id: [u8; 4] = k
                    .try_into()
                    .map_err(|_| Error::Format("warm pack key".into()))?;
                rows.push((u32::from_be_bytes(id), PackRow::decode(v)?));
            }
            Ok(rows)
        })?;
        let known: HashMap<u32, PackRow> = rows.iter().copied().collect();
        // Cut torn tails, and remove packs that never had a committed byte.
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing warm packs", e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("pack-"))
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let durable = known.get(&id).map_or(0, |r| r.durable_len);
            let len = entry
                .metadata()
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
                .len();
            if len > durable {
                tracing::warn!(pack = %path.display(), len, durable, "cutting a torn tail off a warm pack");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                f.set_len(durable)
                    .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
                f.sync_all()
                    .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
            }
        }
        let (id, len) = match rows.iter().max_by_key(|(id, _)| *id) {
            Some(&(id, row)) if row.durable_len < pack_limit => (id, row.durable_len),
            Some(&(id, _)) => (id + 1, 0),
            None => (1, 0),
        };
        let file = open_append(&pack_path(dir, id))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                meta,
                compression,
                pack_limit,
                active: Mutex::new(Active { id, file, len }),
                readers: Mutex::new(HashMap::new()),
                #[cfg(test)]
                fault: Mutex::new(None),
            }),
        })
    }

    #[cfg(test)]
    pub(crate) fn inject_fault(&self, fault: Option<Fault>) {
        *lock(&self.inner.fault) = fault;
    }

    fn reader(&self, pack: u32) -> Result<Arc<File>> {
        let mut readers = lock(&self.inner.readers);
        if let Some(f) = readers.get(&pack) {
            return Ok(f.clone());
        }
        let path = pack_path(&self.inner.dir, pack);
        let f = Arc::new(
            File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
        );
        readers.insert(pack, f.clone());
        Ok(f)
    }

    /// Reads a frame (blocking).
    pub(crate) fn get_now(&self, key: ChunkKey) -> Result<Option<Frame>> {
        let loc = self.inner.meta.read_now(|t, txn| {
            t.warm
                .get(txn, key.as_bytes())?
                .map(Location::decode)
                .transpose()
        })?;
        let Some(loc) = loc else { return Ok(None) };
        let file = self.reader(loc.pack)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            Error::io(
                format!("reading warm pack {} at {}", loc.pack, loc.offset),
                e,
            )
        })?;
        Frame::from_bytes(Bytes::from(buf)).map(Some)
    }

    /// Appends, fsyncs, then indexes (blocking). Returns how many chunks were new.
    pub(crate) fn put_now(&self, batch: Vec<(ChunkKey, Frame)>) -> Result<u64> {
        let inner = &self.inner;
        let mut active = lock(&inner.active);
        // Skip what is already here.
        let fresh: Vec<(ChunkKey, Frame)> = inner.meta.read_now(|t, txn| {
            let mut fresh = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (k, f) in batch {
                if t.warm.get(txn, k.as_bytes())?.is_none() && seen.insert(k) {
                    fresh.push((k, f));
                }
            }
            Ok(fresh)
        })?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::new();
        let mut entries = Vec::with_capacity(fresh.len());
        for (key, frame) in &fresh {
            let frame = if frame.codec() == inner.compression.codec() {
                frame.clone()
            } else {
                frame.recode(&frame.decode(MAX_CHUNK_LEN)?, inner.compression)?
            };
            let len = u32::try_from(frame.stored_len())
                .map_err(|_| Error::InvalidArgument("frame too large".into()))?;
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
            let offset = active.len + buf.len() as u64;
            buf.extend_from_slice(frame.as_bytes());
            entries.push((
                *key,
                Location {
                    pack: active.id,
                    offset,
                    len,
                },
                frame.raw_len() as u32,
            ));
        }
        debug_assert!(buf.len() >= RECORD_HEADER);
        let path = pack_path(&inner.dir, active.id);
        active
            .file
            .write_all(&buf)
            .map_err(|e| Error::io(format!("appending to {}", path.display()), e))?;
        #[cfg(test)]
        if *lock(&inner.fault) == Some(Fault::AfterAppend) {
            return Err(Error::Unavailable("injected crash after append".into()));
        }
        active
            .file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        #[cfg(test)]
        if *lock(&inner.fault) == Some(Fault::AfterSync) {
            return Err(Error::Unavailable("injected crash after sync".into()));
        }
        let old_len = active.len;
        let new_len = old_len + buf.len() as u64;
        let pack = active.id;
        let n = entries.len() as u64;
        let committed = inner.meta.write_blocking(move |t, txn| {
            let pack_key = pack.to_be_bytes();
            let mut row = match t.warm_packs.get(txn, &pack_key)? {
                Some(v) => PackRow::decode(v)?,
                None => PackRow::default(),
            };
            for (key, loc, raw_len) in &entries {
                t.warm.put(txn, key.as_bytes(), &loc.encode())?;
                set_tier_bit(t, txn, *key, tier_bits::WARM, *raw_len)?;
                bump_counter(t, txn, key.tenant(), tier_bits::WARM, 1, i64::from(loc.len))?;
                row.live_bytes += u64::from(loc.len);
            }
            row.durable_len = new_len;
            t.warm_packs.put(txn, &pack_key, &row.encode())?;
            Ok(())
        });
        if let Err(e) = committed {
            // Nothing points at the appended bytes; drop them so the next put appends cleanly.
            let _ = active.file.set_len(old_len);
            return Err(e);
        }
        active.len = new_len;
        if active.len >= inner.pack_limit {
            let id = active.id + 1;
            active.file = open_append(&pack_path(&inner.dir, id))?;
            active.id = id;
            active.len = 0;
        }
        Ok(n)
    }

    /// Drops index entries (blocking).
    pub(crate) fn delete_now(&self, keys: Vec<ChunkKey>) -> Result<u64> {
        self.inner.meta.write_blocking(move |t, txn| {
            let mut n = 0;
            for key in keys {
                let Some(loc) = t
                    .warm
                    .get(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()?
                else {
                    continue;
                };
                t.warm.delete(txn, key.as_bytes())?;
                clear_tier_bit(t, txn, key, tier_bits::WARM)?;
                bump_counter(
                    t,
                    txn,
                    key.tenant(),
                    tier_bits::WARM,
                    -1,
                    -i64::from(loc.len),
                )?;
                let pack_key = loc.pack.to_be_bytes();
                if let Some(v) = t.warm_packs.get(txn, &pack_key)? {
                    let mut row = PackRow::decode(v)?;
                    row.live_bytes = row.live_bytes.saturating_sub(u64::from(loc.len));
                    row.dead_bytes += u64::from(loc.len);
                    t.warm_packs.put(txn, &pack_key, &row.encode())?;
                }
                n += 1;
            }
            Ok(n)
        })
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

impl ChunkTier for WarmTier {
    fn name(&self) -> TierName {
        TierName::Warm
    }

    async fn contains(&self, key: ChunkKey) -> Result<bool> {
        self.inner
            .meta
            .read(move |t, txn| Ok(t.warm.get(txn, key.as_bytes())?.is_some()))
            .await
    }

    async fn get(&self, key: ChunkKey) -> Result<Option<Frame>> {
        let this = self.clone();
        crate::blocking::run(move || this.get_now(key)).await
    }

    async fn put(&self, batch: Vec<(ChunkKey, Frame)>) -> Result<u64> {
        let this = self.clone();
        crate::blocking::run(move || this.put_now(batch)).await
    }

    async fn delete(&self, keys: Vec<ChunkKey>) -> Result<u64> {
        let this = self.clone();
        crate::blocking::run(move || this.delete_now(keys)).await
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ChunkKey>> {
        let meta = self.inner.meta.clone();
        crate::blocking::run(move || list_table(&meta, |t| t.warm, tenant)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChunkId;

    fn open(dir: &Path) -> Result<(Meta, WarmTier)> {
        let meta = Meta::open(&dir.join("meta"), 1 << 30)?;
        let warm = WarmTier::open(
            &dir.join("warm"),
            meta.clone(),
            Compression::Zstd(3),
            1 << 20,
        )?;
        Ok((meta, warm))
    }

    fn item(n: u32) -> (ChunkKey, Frame, Vec<u8>) {
        let raw = format!("warm chunk {n} ")
            .repeat(500 + n as usize)
            .into_bytes();
        let key = ChunkKey::new(TenantId([7; 8]), &ChunkId::of(&raw));
        (
            key,
            Frame::encode(&raw, Compression::Lz4).expect("encode"),
            raw,
        )
    }

    #[tokio::test]
    async fn warm_tier_passes_the_conformance_suite() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let (_meta, warm) = open(dir.path())?;
        crate::tier::conformance::put_get_contains_delete_list(&warm).await
    }

    #[tokio::test]
    async fn crash_before_commit_leaves_no_torn_chunk_and_acknowledged_chunks_survive() -> Result<()>
    {
        for fault in [Fault::AfterAppend, Fault::AfterSync] {
            let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
            let acknowledged: Vec<_> = (0..10).map(item).collect();
            let torn: Vec<_> = (10..20).map(item).collect();
            {
                let (meta, warm) = open(dir.path())?;
                warm.put(
                    acknowledged
                        .iter()
                        .map(|(k, f, _)| (*k, f.clone()))
                        .collect(),
                )
                .await?;
                warm.inject_fault(Some(fault));
                let crashed = warm
                    .put(torn.iter().map(|(k, f, _)| (*k, f.clone())).collect())
                    .await;
                assert!(crashed.is_err(), "{fault:?}: the injected crash surfaces");
                crate::blocking::run(move || {
                    meta.close();
                    Ok(())
                })
                .await?;
            }
            let pack = pack_path(&dir.path().join("warm"), 1);
            let before = std::fs::metadata(&pack)
                .map_err(|e| Error::io("stat", e))?
                .len();
            let (_meta, warm) = open(dir.path())?;
            let after = std::fs::metadata(&pack)
                .map_err(|e| Error::io("stat", e))?
                .len();
            assert!(
                after < before,
                "{fault:?}: the torn tail is cut at open ({before} -> {after})"
            );
            for (key, _, raw) in &acknowledged {
                let frame = warm.get(*key).await?.expect("acknowledged chunk present");
                assert_eq!(
                    &frame.decode_verified(&key.id(), MAX_CHUNK_LEN)?[..],
                    &raw[..]
                );
            }
            for (key, _, _) in &torn {
                assert!(
                    !warm.contains(*key).await?,
                    "{fault:?}: no index entry for torn bytes"
                );
            }
            // And the pack keeps working after recovery.
            warm.put(torn.iter().map(|(k, f, _)| (*k, f.clone())).collect())
                .await?;
            for (key, _, raw) in &torn {
                let frame = warm.get(*key).await?.expect("re-put chunk present");
                assert_eq!(
                    &frame.decode_verified(&key.id(), MAX_CHUNK_LEN)?[..],
                    &raw[..]
                );
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn packs_are_sealed_at_the_size_limit() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let (_meta, warm) = open(dir.path())?;
        for n in 0..400 {
            let mut x = (n as u64) * 0x9e37_79b9 + 1;
            let raw: Vec<u8> = (0..8192)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            let key = ChunkKey::new(TenantId([1; 8]), &ChunkId::of(&raw));
            warm.put(vec![(key, Frame::encode(&raw, Compression::Raw)?)])
                .await?;
        }
        let packs = std::fs::read_dir(dir.path().join("warm"))
            .map_err(|e| Error::io("ls", e))?
            .count();
        assert!(
            packs >= 3,
            "400 × 8 KiB raw chunks over 1 MiB packs make several packs, got {packs}"
        );
        Ok(())
    }
}
