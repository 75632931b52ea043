//! Compaction of warm packs: the live records of a sealed pack whose live share fell under a
//! threshold are copied into the active pack, and the old pack file is removed.
//!
//! 1. The pack's records are walked from its header to its durable length; a record is live
//!    when the `warm` index still points at it. Frames are copied as they are (checked by
//!    their checksum; a frame that fails it is left where it is, for the scrub and reads to
//!    repair from another tier).
//! 2. The copies are written like any put: at the active pack's durable length, fsync'd.
//! 3. One transaction re-points each chunk whose location is still the old one, moves the
//!    bytes from the old pack's live count to its dead count, records the active pack's new
//!    durable length, and deletes the old pack's row once nothing in it is live; its file is
//!    removed after that commit (a crash in between leaves a row-less file, removed at open).
//!
//! A reader that looked up an old location just before the commit finds the file gone and
//! looks the chunk up again (`WarmTier::get_now`). A crash before the commit leaves the
//! copies past the durable length, where they are cut off at open.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::{Location, PackRow, RECORD_HEADER, WarmTier, lock, pack_path};
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::meta::{ChunkKey, bump_counter, tier_bits};

/// Bytes of frames copied per write and commit.
const COPY_STEP: usize = 16 << 20;

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Compacted {
    /// Packs rewritten.
    pub(crate) packs: u64,
    /// Bytes given back: the old files' sizes minus what their live records take now.
    pub(crate) freed: u64,
}

impl WarmTier {
    /// Rewrites every sealed pack whose live share is under `below` (blocking); `stop` is
    /// asked between packs.
    pub(crate) fn compact_now(&self, below: f64, stop: &dyn Fn() -> bool) -> Result<Compacted> {
        self.seal_active_if_sparse(below)?;
        let active = lock(&self.inner.active).id;
        let rows: Vec<(u32, PackRow)> = self.inner.meta.read_now(|t, txn| {
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
        let mut done = Compacted::default();
        for (pack, row) in rows {
            let total = row.live_bytes + row.dead_bytes;
            if pack >= active || total == 0 || row.live_bytes as f64 >= below * total as f64 {
                continue;
            }
            if stop() {
                break;
            }
            let (moved, removed) = self.compact_pack(pack, row.durable_len)?;
            done.packs += 1;
            if removed {
                done.freed += row.durable_len.saturating_sub(moved);
            }
            tracing::info!(pack, moved, removed, "compacted a warm pack");
        }
        Ok(done)
    }

    /// Starts a new active pack when the current one's live share is under `below`, so the
    /// compaction that follows can rewrite it like any sealed pack.
    fn seal_active_if_sparse(&self, below: f64) -> Result<()> {
        let mut active = lock(&self.inner.active);
        let id = active.id;
        let row = self.inner.meta.read_now(move |t, txn| {
            t.warm_packs
                .get(txn, &id.to_be_bytes())?
                .map(PackRow::decode)
                .transpose()
        })?;
        let Some(row) = row else { return Ok(()) };
        let total = row.live_bytes + row.dead_bytes;
        if row.dead_bytes > 0 && (row.live_bytes as f64) < below * total as f64 {
            let next = id + 1;
            *active = super::Active {
                id: next,
                file: super::open_pack(&pack_path(&self.inner.dir, next))?,
                len: 0,
            };
        }
        Ok(())
    }

    /// Copies one pack's live records into the active pack; the bytes copied, and whether the
    /// old pack was removed.
    fn compact_pack(&self, pack: u32, durable_len: u64) -> Result<(u64, bool)> {
        let file = match self.reader(pack) {
            Ok(f) => f,
            // Emptied and removed by the evictor since the rows were read.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok((0, false));
            }
            Err(e) => return Err(e),
        };
        let path = pack_path(&self.inner.dir, pack);
        let start = match super::check_pack_format(&file, &path)? {
            super::HEADERLESS_FORMAT => 0,
            _ => super::PACK_HEADER_LEN as u64,
        };
        // Every record's key and frame location, from the record headers.
        let mut records = Vec::new();
        let mut at = start;
        let mut head = [0u8; RECORD_HEADER];
        while at + RECORD_HEADER as u64 <= durable_len {
            file.read_exact_at(&mut head, at)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let key = ChunkKey::from_slice(&head[..40])?;
            let len = crate::meta::le_u32(&head[40..]);
            let offset = at + RECORD_HEADER as u64;
            records.push((key, Location { pack, offset, len }));
            at = offset + u64::from(len);
        }
        let live: Vec<(ChunkKey, Location)> = self.inner.meta.read_now(move |t, txn| {
            let mut live = Vec::new();
            for (key, loc) in records {
                let current = t
                    .warm
                    .get_unless_damaged(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()?;
                if current == Some(loc) {
                    live.push((key, loc));
                }
            }
            Ok(live)
        })?;
        let mut moved = 0;
        let mut removed = false;
        let mut batch: Vec<(ChunkKey, Frame, Location)> = Vec::new();
        let mut batch_bytes = 0;
        let last = live.len();
        for (i, (key, loc)) in live.into_iter().enumerate() {
            let mut buf = vec![0u8; loc.len as usize];
            file.read_exact_at(&mut buf, loc.offset)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            match Frame::from_bytes(Bytes::from(buf)).and_then(|f| f.verify_checksum().map(|()| f))
            {
                Ok(frame) => {
                    batch_bytes += frame.stored_len();
                    batch.push((key, frame, loc));
                }
                Err(e) => {
                    tracing::warn!(chunk = %key.id(), pack, error = %e, "a warm copy fails its check; compaction leaves it for the scrub");
                }
            }
            if batch_bytes >= COPY_STEP || (i + 1 == last && !batch.is_empty()) {
                let (n, emptied) = self.relocate_now(std::mem::take(&mut batch))?;
                moved += n;
                removed |= emptied.contains(&pack);
                batch_bytes = 0;
            }
        }
        if last == 0 {
            // Nothing live: the row and file go like an emptied pack's.
            removed = self.remove_if_empty(pack)?;
        }
        Ok((moved, removed))
    }

    /// Writes frames into the active pack and re-points the chunks still at their old
    /// locations; the bytes re-pointed, and the packs this emptied (removed).
    fn relocate_now(&self, batch: Vec<(ChunkKey, Frame, Location)>) -> Result<(u64, Vec<u32>)> {
        let inner = &self.inner;
        let mut active = lock(&inner.active);
        self.roll_over(&mut active)?;
        let old: Vec<Location> = batch.iter().map(|(_, _, l)| *l).collect();
        let frames: Vec<(ChunkKey, Frame)> = batch.into_iter().map(|(k, f, _)| (k, f)).collect();
        let (buf, entries) = self.records(&active, &frames)?;
        let new_len = active.len + buf.len() as u64;
        let pack = active.id;
        crate::disk_space::ensure_room(&inner.dir, buf.len() as u64, "a warm compaction")?;
        self.write_and_sync(&active, &buf)?;
        let committed = inner.meta.write_blocking(move |t, txn| {
            let row_of = |txn: &heed::RwTxn<'_>, updated: &HashMap<u32, PackRow>, id: u32| {
                if let Some(r) = updated.get(&id) {
                    return Ok::<_, Error>(*r);
                }
                Ok(match t.warm_packs.get(txn, &id.to_be_bytes())? {
                    Some(v) => PackRow::decode(v)?,
                    None => PackRow::default(),
                })
            };
            let mut updated: HashMap<u32, PackRow> = HashMap::new();
            let mut moved = 0u64;
            for ((key, loc, _), was) in entries.iter().zip(&old) {
                let current = t
                    .warm
                    .get_unless_damaged(txn, key.as_bytes())?
                    .map(Location::decode)
                    .transpose()?;
                let mut new_row = row_of(txn, &updated, pack)?;
                if current != Some(*was) {
                    // Moved or dropped meanwhile: the copy is dead on arrival.
                    new_row.dead_bytes += u64::from(loc.len);
                    updated.insert(pack, new_row);
                    continue;
                }
                t.warm.put(txn, key.as_bytes(), &loc.encode())?;
                new_row.live_bytes += u64::from(loc.len);
                updated.insert(pack, new_row);
                let mut old_row = row_of(txn, &updated, was.pack)?;
                old_row.live_bytes = old_row.live_bytes.saturating_sub(u64::from(was.len));
                old_row.dead_bytes += u64::from(was.len);
                updated.insert(was.pack, old_row);
                bump_counter(
                    t,
                    txn,
                    key.tenant(),
                    tier_bits::WARM,
                    0,
                    i64::from(loc.len) - i64::from(was.len),
                )?;
                moved += u64::from(loc.len);
            }
            let mut row = row_of(txn, &updated, pack)?;
            row.durable_len = new_len;
            updated.insert(pack, row);
            let mut emptied = Vec::new();
            for (id, row) in updated {
                if id != pack && row.live_bytes == 0 {
                    t.warm_packs.delete(txn, &id.to_be_bytes())?;
                    emptied.push(id);
                } else {
                    t.warm_packs.put(txn, &id.to_be_bytes(), &row.encode())?;
                }
            }
            Ok((moved, emptied))
        });
        let (moved, emptied) = match committed {
            Ok(done) => done,
            Err(e) => {
                super::discard_tail(&active, &pack_path(&inner.dir, pack));
                return Err(e);
            }
        };
        active.len = new_len;
        drop(active);
        for id in &emptied {
            self.remove_file(*id);
        }
        Ok((moved, emptied))
    }

    /// Removes a sealed pack's row and file when nothing in it is live; whether it went.
    fn remove_if_empty(&self, pack: u32) -> Result<bool> {
        let gone = self.inner.meta.write_blocking(move |t, txn| {
            let key = pack.to_be_bytes();
            let Some(v) = t.warm_packs.get(txn, &key)? else {
                return Ok(false);
            };
            if PackRow::decode(v)?.live_bytes > 0 {
                return Ok(false);
            }
            t.warm_packs.delete(txn, &key)?;
            Ok(true)
        })?;
        if gone {
            self.remove_file(pack);
        }
        Ok(gone)
    }
}
