//! Warm tier: append-only pack files on local disk (zstd at a low level by default).
//!
//! # Pack file layout, format 2
//!
//! `warm/pack-NNNNNNNN.pack` starts with a 16-byte header, then a sequence of records.
//!
//! Header:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `SCPWPACK` |
//! | 8 | 4 | pack format `u32` LE, `2` |
//! | 12 | 4 | reserved, zero |
//!
//! Record:
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
//! # Format versions
//!
//! | format | layout |
//! | --- | --- |
//! | 1 | records from byte 0, no header (packs written before the header existed) |
//! | 2 | the header above, then records |
//!
//! A pack whose first 8 bytes are not the magic is format 1: its first 8 bytes are a tenant
//! id, a BLAKE3-derived value that equals the magic with probability 2⁻⁶⁴. Format 1 packs
//! stay readable, and the active pack keeps its format when appended to (records are the same
//! in both), so a data dir needs no migration. A pack of a format newer than
//! [`WARM_PACK_FORMAT`] is refused with [`Error::NewerFormat`] when it is opened for reading
//! or appending. The header is written by the first put into a pack, with its records, so it
//! is covered by the durable length like any record.
//!
//! # Crash safety
//!
//! A put writes its records at the pack's *durable length* with positioned writes (the file is
//! not opened `O_APPEND`), fsyncs the pack, and only then commits the index entries together
//! with the pack's new durable length (table `warm_packs`). The in-memory length is advanced
//! only after that commit, so it never runs ahead of what is durable and indexed. A put that
//! fails anywhere (a short write on ENOSPC, an fsync error, a failed commit) leaves the
//! durable length unchanged: its bytes are cut off at once where possible, and the next put
//! overwrites them in any case, so they can never shift a later put's offsets.
//! At open, every pack is truncated to its durable length, so bytes of a put that crashed
//! before its commit (a torn tail) vanish, and no index entry can point at bytes that were not
//! fsync'd. Once a pack reaches the size limit, the next put starts a new one. Deleting a
//! chunk only drops its index entry and counts its bytes as dead. A sealed pack whose last
//! live chunk goes is removed: its row is deleted in that transaction and the file after the
//! commit (a crash in between leaves a row-less file, removed at the next open). Eviction
//! drops chunks in least-recently-used order, which is about the order demotion wrote them,
//! so whole packs empty and give their space back; compaction of partly live packs is the
//! garbage collector's (lifecycle issue).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use heed::RwTxn;

use crate::meta::{
    ChunkKey, Meta, Tables, bump_counter, clear_tier_bit, le_u32, le_u64, list_table, set_tier_bit,
    tier_bits,
};
use crate::names::TenantId;
use crate::tier::{ChunkTier, TierName};

const RECORD_HEADER: usize = 44;
/// Newest pack format this build reads and writes.
pub(crate) const WARM_PACK_FORMAT: u32 = 2;
/// The format of a pack without a header.
const HEADERLESS_FORMAT: u32 = 1;
const PACK_MAGIC: [u8; 8] = *b"SCPWPACK";
const PACK_HEADER_LEN: usize = 16;

/// The header every new pack starts with.
fn pack_header() -> [u8; PACK_HEADER_LEN] {
    let mut h = [0u8; PACK_HEADER_LEN];
    h[..8].copy_from_slice(&PACK_MAGIC);
    h[8..12].copy_from_slice(&WARM_PACK_FORMAT.to_le_bytes());
    h
}

/// A pack's format, from its first bytes (fewer than a header's: an empty or headerless pack).
fn pack_format(head: &[u8], path: &Path) -> Result<u32> {
    if head.len() < PACK_HEADER_LEN || head[..8] != PACK_MAGIC {
        return Ok(HEADERLESS_FORMAT);
    }
    match le_u32(&head[8..12]) {
        v if v > WARM_PACK_FORMAT => Err(Error::NewerFormat {
            what: format!("warm pack {}", path.display()),
            found: u64::from(v),
            supported: u64::from(WARM_PACK_FORMAT),
        }),
        v if v <= HEADERLESS_FORMAT => Err(Error::Format(format!(
            "warm pack {} has a header claiming format {v}, which has no header",
            path.display()
        ))),
        v => Ok(v),
    }
}

/// Reads a pack file's header and checks that this build reads its format.
fn check_pack_format(file: &File, path: &Path) -> Result<u32> {
    let mut head = [0u8; PACK_HEADER_LEN];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
    pack_format(&head[..got], path)
}

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

/// What a put indexes for one chunk: its key, location and raw length.
type IndexEntry = (ChunkKey, Location, u32);

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

/// The pack puts go to.
struct Active {
    id: u32,
    file: File,
    /// The durable length: what `warm_packs` records for this pack, and where the next put
    /// writes. Advanced only after a put's index commit.
    len: u64,
}

/// An injected failure of a put (tests only).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A crash: records written, not fsync'd, index not committed, no cleanup.
    AfterAppend,
    /// A crash: records fsync'd, index not committed, no cleanup.
    AfterSync,
    /// The write stops after half of the records with ENOSPC; the process carries on.
    WriteFailsMidway,
    /// The fsync fails with EIO after a complete write; the process carries on.
    SyncFails,
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
        let mut unindexed = Vec::new();
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
            if !known.contains_key(&id) {
                unindexed.push((id, path.clone()));
            }
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
        // A pack below the active one without a row was emptied by eviction and its removal
        // did not happen (a crash after the commit), or it never had a committed byte.
        for (stale, path) in unindexed {
            if stale < id {
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            }
        }
        let path = pack_path(dir, id);
        let file = open_pack(&path)?;
        if len > 0 {
            // Appending keeps a pack's format, so it must be one this build writes.
            check_pack_format(&file, &path)?;
        }
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
        let f =
            File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        check_pack_format(&f, &path)?;
        let f = Arc::new(f);
        readers.insert(pack, f.clone());
        Ok(f)
    }

    /// Reads a frame (blocking).
    pub(crate) fn get_now(&self, key: ChunkKey) -> Result<Option<Frame>> {
        let locate = || {
            self.inner.meta.read_now(|t, txn| {
                t.warm
                    .get(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()
            })
        };
        let Some(loc) = locate()? else {
            return Ok(None);
        };
        match self.read_at(loc) {
            // Compaction moved the chunk and removed its old pack after the lookup.
            Err(err) => match locate()? {
                Some(now) if now != loc => self.read_at(now).map(Some),
                _ => Err(err),
            },
            Ok(frame) => Ok(Some(frame)),
        }
    }

    fn read_at(&self, loc: Location) -> Result<Frame> {
        let file = self.reader(loc.pack)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            Error::io(
                format!("reading warm pack {} at {}", loc.pack, loc.offset),
                e,
            )
        })?;
        Frame::from_bytes(Bytes::from(buf))
    }

    /// Writes at the durable length, fsyncs, then indexes (blocking). Returns how many chunks
    /// were new.
    pub(crate) fn put_now(&self, batch: Vec<(ChunkKey, Frame)>) -> Result<u64> {
        let inner = &self.inner;
        let mut active = lock(&inner.active);
        self.roll_over(&mut active)?;
        // Skip what is already here.
        let fresh: Vec<(ChunkKey, Frame)> = inner.meta.read_now(|t, txn| {
            let mut fresh = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (k, f) in batch {
                // A damaged location is written again.
                if t.warm.get_unless_damaged(txn, k.as_bytes())?.is_none() && seen.insert(k) {
                    fresh.push((k, f));
                }
            }
            Ok(fresh)
        })?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let (buf, entries) = self.records(&active, &fresh)?;
        let new_len = active.len + buf.len() as u64;
        let pack = active.id;
        let n = entries.len() as u64;
        // A warm copy is never the only one: it may not take the room the index needs.
        crate::disk_space::ensure_room(&inner.dir, buf.len() as u64, "a warm pack write")?;
        self.write_and_sync(&active, &buf)?;
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
            // Nothing points at the written bytes.
            discard_tail(&active, &pack_path(&inner.dir, pack));
            return Err(e);
        }
        active.len = new_len;
        Ok(n)
    }

    /// Starts a new active pack once the current one is full.
    fn roll_over(&self, active: &mut Active) -> Result<()> {
        if active.len >= self.inner.pack_limit {
            let id = active.id + 1;
            *active = Active {
                id,
                file: open_pack(&pack_path(&self.inner.dir, id))?,
                len: 0,
            };
        }
        Ok(())
    }

    /// The pack file and offset of a chunk's frame (for tests that damage packs).
    #[cfg(test)]
    pub(crate) fn locate(&self, key: ChunkKey) -> Result<Option<(PathBuf, u64)>> {
        let loc = self.inner.meta.read_now(|t, txn| {
            t.warm
                .get(txn, key.as_bytes())?
                .map(Location::decode)
                .transpose()
        })?;
        Ok(loc.map(|l| {
            (
                pack_path(&self.inner.dir, l.pack),
                l.offset + u64::from(l.len) - 1,
            )
        }))
    }

    /// Pack files in the folder that have no row (leftovers, removed at the next open).
    pub(crate) fn unindexed_files(&self) -> Result<u64> {
        let active = self.active_id();
        let rows: std::collections::HashSet<u32> = self.inner.meta.read_now(|t, txn| {
            let mut rows = std::collections::HashSet::new();
            for item in t.warm_packs.iter(txn)? {
                let (k, _) = item?;
                if let Ok(id) = <[u8; 4]>::try_from(k) {
                    rows.insert(u32::from_be_bytes(id));
                }
            }
            Ok(rows)
        })?;
        let dir = &self.inner.dir;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let mut n = 0;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing warm packs", e))?;
            let id = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("pack-"))
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(id) = id
                && id != active
                && !rows.contains(&id)
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The pack puts go to now (packs below it are sealed).
    pub(crate) fn active_id(&self) -> u32 {
        lock(&self.inner.active).id
    }

    /// Removes the file of a pack whose row is gone (best effort: open removes leftovers).
    pub(crate) fn remove_file(&self, pack: u32) {
        lock(&self.inner.readers).remove(&pack);
        let path = pack_path(&self.inner.dir, pack);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(pack = %path.display(), "removed an empty warm pack"),
            Err(e) => {
                tracing::warn!(pack = %path.display(), error = %e, "removing an empty warm pack failed")
            }
        }
    }

    /// The bytes of a put into the active pack (its header first if the pack is empty), and
    /// each chunk's index entry and raw length.
    fn records(
        &self,
        active: &Active,
        fresh: &[(ChunkKey, Frame)],
    ) -> Result<(Vec<u8>, Vec<IndexEntry>)> {
        let compression = self.inner.compression;
        let mut buf = Vec::new();
        if active.len == 0 {
            buf.extend_from_slice(&pack_header());
        }
        let mut entries = Vec::with_capacity(fresh.len());
        for (key, frame) in fresh {
            let frame = if frame.codec() == compression.codec() {
                frame.clone()
            } else {
                frame.recode(&frame.decode(MAX_CHUNK_LEN)?, compression)?
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
        Ok((buf, entries))
    }

    /// Writes `buf` at the durable length and fsyncs it. On failure the bytes past the durable
    /// length are cut off (best effort: the next put overwrites them anyway).
    fn write_and_sync(&self, active: &Active, buf: &[u8]) -> Result<()> {
        let path = pack_path(&self.inner.dir, active.id);
        if let Err(e) = self.write_at(&active.file, buf, active.len) {
            discard_tail(active, &path);
            let err = Error::io(format!("writing to {}", path.display()), e);
            return Err(crate::disk_space::classify(err, &path));
        }
        #[cfg(test)]
        if self.fault() == Some(Fault::AfterAppend) {
            return Err(Error::Unavailable("injected crash after append".into()));
        }
        let mut synced = self.sync(&active.file);
        if synced.is_ok() && active.len == 0 {
            // A new pack's directory entry must be as durable as its bytes.
            synced = File::open(&self.inner.dir).and_then(|d| d.sync_all());
        }
        if let Err(e) = synced {
            discard_tail(active, &path);
            let err = Error::io(format!("syncing {}", path.display()), e);
            return Err(crate::disk_space::classify(err, &path));
        }
        #[cfg(test)]
        if self.fault() == Some(Fault::AfterSync) {
            return Err(Error::Unavailable("injected crash after sync".into()));
        }
        Ok(())
    }

    fn write_at(&self, file: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fault() == Some(Fault::WriteFailsMidway) {
            file.write_all_at(&buf[..buf.len() / 2], at)?;
            return Err(std::io::ErrorKind::StorageFull.into());
        }
        file.write_all_at(buf, at)
    }

    fn sync(&self, file: &File) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fault() == Some(Fault::SyncFails) {
            return Err(std::io::Error::other("injected EIO"));
        }
        file.sync_data()
    }

    #[cfg(test)]
    fn fault(&self) -> Option<Fault> {
        *lock(&self.inner.fault)
    }

    /// Drops index entries (blocking).
    pub(crate) fn delete_now(&self, keys: Vec<ChunkKey>) -> Result<u64> {
        let (n, _) = self.drop_now(keys, false)?;
        Ok(n)
    }

    /// Drops the warm copies of `keys`, with `only_if_cold` only those the cold tier holds (the
    /// evictor: checked in the transaction that drops them). Returns the copies dropped and
    /// their stored bytes. A sealed pack left without a live chunk is removed from disk.
    pub(crate) fn drop_now(&self, keys: Vec<ChunkKey>, only_if_cold: bool) -> Result<(u64, u64)> {
        let active = lock(&self.inner.active).id;
        let (n, bytes, emptied) = self.inner.meta.write_blocking(move |t, txn| {
            let (mut n, mut bytes) = (0, 0);
            let mut emptied = Vec::new();
            for key in keys {
                if only_if_cold && !t.cold.contains(txn, key.as_bytes())? {
                    continue;
                }
                match delete_in_txn(t, txn, key, active)? {
                    Dropped::No => {}
                    Dropped::Yes { len, emptied: e } => {
                        n += 1;
                        bytes += u64::from(len);
                        emptied.extend(e);
                    }
                }
            }
            Ok((n, bytes, emptied))
        })?;
        for pack in emptied {
            self.remove_file(pack);
        }
        Ok((n, bytes))
    }
}

/// What [`delete_in_txn`] did.
pub(crate) enum Dropped {
    No,
    /// The copy of `len` stored bytes went; `emptied` names its pack when no live chunk is left
    /// in it and it is sealed (its row is gone; the caller removes the file after the commit).
    Yes {
        len: u32,
        emptied: Option<u32>,
    },
}

/// Drops one warm copy inside a write transaction. `active` is the pack puts go to (never
/// removed).
pub(crate) fn delete_in_txn(
    t: &Tables,
    txn: &mut RwTxn<'_>,
    key: ChunkKey,
    active: u32,
) -> Result<Dropped> {
    let Some(loc) = t
        .warm
        .get_unless_damaged(txn, key.as_bytes())?
        .map(Location::decode)
        .transpose()?
    else {
        // A damaged location goes too (its bytes are not counted).
        if t.warm.delete(txn, key.as_bytes())? {
            clear_tier_bit(t, txn, key, tier_bits::WARM)?;
            return Ok(Dropped::Yes {
                len: 0,
                emptied: None,
            });
        }
        return Ok(Dropped::No);
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
    let mut emptied = None;
    if let Some(v) = t.warm_packs.get(txn, &pack_key)? {
        let mut row = PackRow::decode(v)?;
        row.live_bytes = row.live_bytes.saturating_sub(u64::from(loc.len));
        row.dead_bytes += u64::from(loc.len);
        // Only packs below the active one are sealed (the active one may have moved on since
        // `active` was read: a pack at or above it is never removed here).
        if row.live_bytes == 0 && loc.pack < active {
            t.warm_packs.delete(txn, &pack_key)?;
            emptied = Some(loc.pack);
        } else {
            t.warm_packs.put(txn, &pack_key, &row.encode())?;
        }
    }
    Ok(Dropped::Yes {
        len: loc.len,
        emptied,
    })
}

/// Opens a pack for positioned writes (not `O_APPEND`: offsets come from the durable length).
fn open_pack(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            let err = Error::io(format!("opening {}", path.display()), e);
            crate::disk_space::classify(err, path)
        })
}

/// Cuts a failed put's bytes off the active pack. Best effort: if this fails too, the bytes
/// stay past the durable length, where the next put overwrites them and open truncates them.
fn discard_tail(active: &Active, path: &Path) {
    if let Err(e) = active.file.set_len(active.len) {
        tracing::warn!(pack = %path.display(), error = %e, "could not cut a failed put off a warm pack");
    }
}

impl ChunkTier for WarmTier {
    fn name(&self) -> TierName {
        TierName::Warm
    }

    async fn contains(&self, key: ChunkKey) -> Result<bool> {
        self.inner
            .meta
            .read(move |t, txn| t.warm.contains(txn, key.as_bytes()))
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
        crate::blocking::run(move || list_table(&meta, |t| t.warm.raw, tenant)).await
    }
}

#[path = "warm_compact.rs"]
pub(crate) mod compact;

#[cfg(test)]
#[path = "warm_tests.rs"]
mod tests;
