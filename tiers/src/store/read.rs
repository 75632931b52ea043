//! The read pipeline, for whole blobs, byte ranges and single chunks.
//!
//! A blob is read in batches of [`READ_BATCH`] chunks, [`READ_AHEAD`] batches in flight.
//! For each batch:
//! 1. **hot**: one blocking job per part of [`VERIFY_PART`] chunks reads the frames in one
//!    LMDB transaction and passes each through `verify_copy`, so decode and hash spread over
//!    the cores;
//! 2. **misses** (absent or bad in hot) of the batch go together, each chunk behind its
//!    single-flight gate: hot again (another reader may have promoted it), then **warm**
//!    (blocking jobs per part), then **cold** (`ColdTier::get_many`: ranged GETs grouped by
//!    pack object, neighbouring ranges coalesced, fetched concurrently), every copy verified;
//! 3. copies found below hot are **promoted** as the admission rule allows (`admission.rs`)
//!    and bad copies **repaired** (`repair.rs`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::admission::Admit;
use super::gate::Gate;
use super::repair;
use super::types::{BlobPart, ReadForm};
use super::verify::{Checked, Lookup, Need, VERIFY_PART, verify_copy};
use super::{Engine, Store};
use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::manifest::Manifest;
use crate::meta::ChunkKey;
use crate::names::{Tenant, TenantId};
use crate::tier::TierName;

/// Chunks per batch of a blob read.
const READ_BATCH: usize = 64;
/// Batches of a blob in flight at once.
const READ_AHEAD: usize = 4;

impl Store {
    /// Reads one chunk through the tiers (hot, warm, cold), verifying and promoting.
    pub async fn get_chunk(&self, tenant: &Tenant, id: ChunkId) -> Result<Frame> {
        let e = self.engine()?;
        let key = ChunkKey::new(tenant.id(), &id);
        let mut copies = read_chunks(&e, vec![(key, Need::Frame)], Admit::SecondMiss).await?;
        copies
            .pop()
            .map(|c| c.frame)
            .ok_or_else(|| Error::NotFound(format!("chunk {id} is not stored")))
    }

    /// Reads chunk `id` of the blob `manifest` describes, as [`Store::get_chunk`] does, and
    /// when the manifest stores it normalized, restores its real versions: the frame then
    /// holds the restored bytes uncompressed and `true` says so (its BLAKE3 is no longer
    /// `id`'s, which named the stored form the read verified).
    pub async fn get_blob_chunk(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
        id: ChunkId,
    ) -> Result<(Frame, bool)> {
        let frame = self.get_chunk(tenant, id).await?;
        let normalized = manifest
            .entries()
            .iter()
            .position(|e| e.id == id)
            .is_some_and(|i| manifest.is_normalized(i));
        if !normalized {
            return Ok((frame, false));
        }
        let raw = manifest
            .versions()
            .restore_bytes(frame.decode_verified(&id, MAX_CHUNK_LEN)?)?;
        Ok((Frame::encode(&raw, Compression::Raw)?, true))
    }

    /// Streams `length` bytes (`None` = to the end) of a blob from `offset`, in order, with a
    /// bounded read-ahead. `form` says which whole chunks come as their stored frames (the
    /// reader then decodes and verifies them, and restores normalized ones); the ends of a
    /// range and every other chunk come as verified raw bytes, normalized chunks restored
    /// here. A chunk the manifest lists that no tier holds is [`Error::MetadataLoss`]: the
    /// blob is damaged, not absent.
    pub fn read_blob(
        &self,
        tenant: &Tenant,
        manifest: Arc<Manifest>,
        offset: u64,
        length: Option<u64>,
        form: ReadForm,
    ) -> BoxStream<'static, Result<BlobPart>> {
        match self.engine() {
            Ok(e) => Box::pin(
                read_blob(e, tenant.id(), manifest, offset, length, form)
                    .map(|part| part.map_err(listed_chunk_lost)),
            ),
            Err(err) => Box::pin(futures::stream::once(async { Err(err) })),
        }
    }
}

/// A chunk a stored manifest lists that is not found is lost: [`Error::MetadataLoss`].
pub fn listed_chunk_lost(err: Error) -> Error {
    match err {
        Error::NotFound(what) => Error::MetadataLoss(format!(
            "{what}, but the blob's manifest lists it, so the blob cannot be served; push it \
             again"
        )),
        other => other,
    }
}

/// The part of a blob being read.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: u64,
    end: u64,
    form: ReadForm,
}

impl Window {
    /// Whether the chunk at `chunk_start..chunk_end` (`normalized` or not) is sent whole, as
    /// its stored frame.
    fn sends_frame(&self, chunk_start: u64, chunk_end: u64, normalized: bool) -> bool {
        let as_stored = match self.form {
            ReadForm::Raw => false,
            ReadForm::Frames => !normalized,
            ReadForm::StoredFrames => true,
        };
        as_stored && chunk_start >= self.start && chunk_end <= self.end
    }
}

/// [`Store::read_blob`] on an open engine: a caller's read, which promotes by the admission
/// rule.
pub(super) fn read_blob(
    e: Arc<Engine>,
    tid: TenantId,
    manifest: Arc<Manifest>,
    offset: u64,
    length: Option<u64>,
    form: ReadForm,
) -> BoxStream<'static, Result<BlobPart>> {
    read_blob_as(e, tid, manifest, offset, length, form, Admit::Read)
}

/// The whole of a blob's restored bytes for one of the engine's own passes over it, which
/// changes no tier ([`Admit::Never`]).
pub(super) fn scan_blob(
    e: Arc<Engine>,
    tid: TenantId,
    manifest: Arc<Manifest>,
) -> BoxStream<'static, Result<BlobPart>> {
    read_blob_as(e, tid, manifest, 0, None, ReadForm::Raw, |_| Admit::Never)
}

/// A read of `offset..offset + length` whose admission `admit` picks from the read's length.
fn read_blob_as(
    e: Arc<Engine>,
    tid: TenantId,
    manifest: Arc<Manifest>,
    offset: u64,
    length: Option<u64>,
    form: ReadForm,
    admit: impl FnOnce(u64) -> Admit,
) -> BoxStream<'static, Result<BlobPart>> {
    let total = manifest.total_len();
    let start = offset.min(total);
    let end = length.map_or(total, |l| start.saturating_add(l).min(total));
    if start >= end {
        return Box::pin(futures::stream::empty());
    }
    let first = manifest.entry_at(start);
    let last = manifest.entry_at(end - 1);
    let window = Window { start, end, form };
    let admit = admit(end - start);
    let batches: Vec<Range<usize>> = (first..=last)
        .step_by(READ_BATCH)
        .map(|b| b..(b + READ_BATCH).min(last + 1))
        .collect();
    let stream = futures::stream::iter(batches)
        .map(move |range| read_batch(e.clone(), tid, manifest.clone(), range, window, admit))
        .buffered(READ_AHEAD)
        .flat_map(|r: Result<Vec<BlobPart>>| match r {
            Ok(parts) => futures::stream::iter(parts.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::once(async { Err(e) }).right_stream(),
        });
    Box::pin(stream)
}

/// One batch of a blob as parts: frames for whole chunks, verified bytes for the rest.
async fn read_batch(
    e: Arc<Engine>,
    tid: TenantId,
    manifest: Arc<Manifest>,
    range: Range<usize>,
    w: Window,
    admit: Admit,
) -> Result<Vec<BlobPart>> {
    e.check_open()?;
    let wanted: Vec<(ChunkKey, Need)> = range
        .clone()
        .map(|i| {
            let whole = w.sends_frame(
                manifest.offset_of(i),
                manifest.offset_of(i + 1),
                manifest.is_normalized(i),
            );
            let need = if whole { Need::Frame } else { Need::Raw };
            (ChunkKey::new(tid, &manifest.entries()[i].id), need)
        })
        .collect();
    let copies = read_chunks(&e, wanted, admit).await?;
    let mut parts = Vec::with_capacity(copies.len());
    for (i, copy) in range.zip(copies) {
        let id = manifest.entries()[i].id;
        let chunk_start = manifest.offset_of(i);
        let chunk_end = chunk_start + copy.frame.raw_len() as u64;
        let normalized = manifest.is_normalized(i);
        if w.sends_frame(chunk_start, chunk_end, normalized) {
            parts.push(if normalized {
                BlobPart::Normalized(id, copy.frame)
            } else {
                BlobPart::Frame(id, copy.frame)
            });
            continue;
        }
        let mut raw = match copy.raw {
            Some(raw) => raw,
            None => copy.frame.decode_verified(&id, MAX_CHUNK_LEN)?,
        };
        if normalized {
            raw = manifest.versions().restore_bytes(raw)?;
        }
        let to = usize::try_from(w.end.min(chunk_end) - chunk_start)
            .unwrap_or(usize::MAX)
            .min(raw.len());
        let from = usize::try_from(w.start.saturating_sub(chunk_start))
            .unwrap_or(usize::MAX)
            .min(to);
        parts.push(BlobPart::Data(raw.slice(from..to)));
    }
    Ok(parts)
}

/// Verified copies of `wanted`, in order: hot first, then every miss through the lower tiers
/// (what is found there is promoted as `admit` allows).
pub(super) async fn read_chunks(
    e: &Arc<Engine>,
    wanted: Vec<(ChunkKey, Need)>,
    admit: Admit,
) -> Result<Vec<Checked>> {
    let trusted = !e.config.verify_hot_reads;
    let hot = e.hot.clone();
    let found = crate::blocking::map_parts(wanted.clone(), VERIFY_PART, move |part| {
        let keys: Vec<ChunkKey> = part.iter().map(|(k, _)| *k).collect();
        let frames = hot.get_many_now(&keys)?;
        Ok(frames
            .into_iter()
            .zip(part)
            .map(|(f, (k, need))| f.map(|f| verify_copy(&k.id(), f, need, trusted)))
            .collect())
    })
    .await?;
    let mut out: Vec<Option<Checked>> = Vec::with_capacity(found.len());
    let mut misses = Vec::new();
    let mut hits = Vec::new();
    for (index, ((key, need), f)) in wanted.iter().zip(found).enumerate() {
        let hot_bad = match f {
            Some(Ok(copy)) => {
                hits.push(*key);
                out.push(Some(copy));
                continue;
            }
            Some(Err(err)) => {
                tracing::error!(chunk = %key.id(), error = %err, "hot copy failed verification; trying other tiers");
                true
            }
            None => false,
        };
        misses.push(Miss {
            index,
            key: *key,
            hot_bad,
            need: *need,
        });
        out.push(None);
    }
    if !hits.is_empty() {
        let n = hits.len() as u64;
        e.access.record(hits, TierName::Hot, n);
    }
    if !misses.is_empty() {
        for (index, copy) in fetch_misses(e, misses, admit).await? {
            out[index] = Some(copy);
        }
    }
    out.into_iter()
        .zip(wanted)
        .map(|(c, (k, _))| {
            c.ok_or_else(|| Error::NotFound(format!("chunk {} is not stored", k.id())))
        })
        .collect()
}

/// A chunk read missed in hot: its place in the read, whether the hot copy was bad, and what
/// the reader needs.
#[derive(Clone, Copy, Debug)]
struct Miss {
    index: usize,
    key: ChunkKey,
    hot_bad: bool,
    need: Need,
}

/// Fetches misses below hot, once per distinct chunk, behind the chunks' gates (taken in key
/// order, so two batches never wait on each other in a cycle).
async fn fetch_misses(
    e: &Arc<Engine>,
    misses: Vec<Miss>,
    admit: Admit,
) -> Result<Vec<(usize, Checked)>> {
    let mut distinct: BTreeMap<ChunkKey, (bool, Need)> = BTreeMap::new();
    for m in &misses {
        let entry = distinct.entry(m.key).or_insert((false, Need::Frame));
        entry.0 |= m.hot_bad;
        if m.need == Need::Raw {
            entry.1 = Need::Raw;
        }
    }
    let mut gates = Vec::with_capacity(distinct.len());
    for key in distinct.keys() {
        gates.push(Gate::acquire(e, *key).await);
    }
    let found = fetch_distinct(e, distinct, admit, gates).await?;
    misses
        .into_iter()
        .map(|Miss { index, key, .. }| {
            found
                .get(&key)
                .cloned()
                .map(|c| (index, c))
                .ok_or_else(|| Error::NotFound(format!("chunk {} is not stored", key.id())))
        })
        .collect()
}

/// Hot again, then warm, then cold for each chunk; hands what it found, with the `gates`, to
/// the promotion and repairs that follow (off the reader's path).
async fn fetch_distinct(
    e: &Arc<Engine>,
    distinct: BTreeMap<ChunkKey, (bool, Need)>,
    admit: Admit,
    gates: Vec<Gate>,
) -> Result<BTreeMap<ChunkKey, Checked>> {
    let mut done = recheck_hot(e, &distinct).await?;
    let todo: Vec<Lookup> = distinct
        .into_iter()
        .filter(|(k, _)| !done.contains_key(k))
        .map(|(key, (hot_bad, need))| Lookup::needing(key, hot_bad, need))
        .collect();
    if todo.is_empty() {
        return Ok(done);
    }
    let warm = e.warm.clone();
    let todo = crate::blocking::map_parts(todo, VERIFY_PART, move |part| {
        Ok(part
            .into_iter()
            .map(|mut l| {
                let got = warm.get_now(l.key);
                l.offer(TierName::Warm, got);
                l
            })
            .collect())
    })
    .await?;
    let todo = from_cold(e, todo).await?;
    for tier in [TierName::Warm, TierName::Cold] {
        let keys: Vec<ChunkKey> = todo
            .iter()
            .filter(|l| l.good.as_ref().is_some_and(|(t, _)| *t == tier))
            .map(|l| l.key)
            .collect();
        if !keys.is_empty() {
            let n = keys.len() as u64;
            e.access.record(keys, tier, n);
        }
    }
    for l in &todo {
        match &l.good {
            Some((_, copy)) => {
                done.insert(l.key, copy.clone());
            }
            None => return Err(l.failure()),
        }
    }
    repair::follow_up(e, todo, admit, gates).await;
    Ok(done)
}

/// Chunks another reader promoted while this one waited at their gates.
async fn recheck_hot(
    e: &Arc<Engine>,
    distinct: &BTreeMap<ChunkKey, (bool, Need)>,
) -> Result<BTreeMap<ChunkKey, Checked>> {
    let keys: Vec<ChunkKey> = distinct
        .iter()
        .filter(|(_, (hot_bad, _))| !*hot_bad)
        .map(|(k, _)| *k)
        .collect();
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let hot = e.hot.clone();
    let again = crate::blocking::map_parts(keys, VERIFY_PART, move |part| {
        let frames = hot.get_many_now(&part)?;
        Ok(part
            .into_iter()
            .zip(frames)
            .filter_map(|(k, f)| {
                let copy = verify_copy(&k.id(), f?, Need::Raw, false).ok()?;
                Some((k, copy))
            })
            .collect())
    })
    .await?;
    if !again.is_empty() {
        let n = again.len() as u64;
        e.access
            .record(again.iter().map(|(k, _)| *k), TierName::Hot, n);
    }
    Ok(again.into_iter().collect())
}

/// Offers the cold copies of the chunks still without a good copy, fetched in one batch.
async fn from_cold(e: &Arc<Engine>, todo: Vec<Lookup>) -> Result<Vec<Lookup>> {
    let (mut pending, found): (Vec<Lookup>, Vec<Lookup>) =
        todo.into_iter().partition(|l| l.good.is_none());
    if pending.is_empty() {
        return Ok(found);
    }
    let keys: Vec<ChunkKey> = pending.iter().map(|l| l.key).collect();
    let frames = e.cold.get_many(keys).await?;
    let offered: Vec<(Lookup, Result<Option<Frame>>)> = pending.drain(..).zip(frames).collect();
    let mut out = crate::blocking::map_parts(offered, VERIFY_PART, |part| {
        Ok(part
            .into_iter()
            .map(|(mut l, got)| {
                l.offer(TierName::Cold, got);
                l
            })
            .collect())
    })
    .await?;
    out.extend(found);
    Ok(out)
}
