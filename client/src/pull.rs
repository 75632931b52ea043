//! Reading: whole blobs (pull), byte ranges (for LSP gateways) and chunks by id.
//!
//! Everything read is verified. `Blobs/Read` is asked for frames (`accept_frames`), so whole
//! chunks arrive as stored; each is decoded and hashed against its id, and a pull also hashes
//! the whole blob against the id the server announced in its first message. The client also
//! restores versions itself (`restores_versions`): chunks stored with version placeholders
//! arrive as stored too, and after their hash is checked the blob's version table (sent in the
//! first message) puts the real versions back, so the server spends no CPU on them.
//!
//! # Pull pipeline
//!
//! ```text
//! receive ─▶ batches of ~1 MiB ─▶ decode + BLAKE3 per chunk ─▶ in blob order ─▶ blob hash + write
//! (tokio     of frames            into one reused buffer       (≤8 jobs ahead)  (one blocking
//!  task)                          (blocking pool, jobs in                        thread, 1 MiB
//!                                  parallel)                                     writes)
//! ```
//!
//! Decoding, the chunk hashes, the whole-blob hash and the file writes all overlap. Frames are
//! decoded straight into the batch buffer that is then hashed and written (no copy between),
//! and the buffers are reused, so memory stays at about a dozen MiB whatever the blob size.

use std::collections::HashSet;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use scipcache_proto::pb::read_blob_response::Part;
use scipcache_proto::{convert, pb};
use scipcache_tiers::codec::{Frame, MAX_CHUNK_LEN};
use scipcache_tiers::ids::{BlobId, ChunkId};
use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey};
use scipcache_tiers::scip::VersionTable;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::connect::Client;
use crate::error::{Error, Result};
use crate::progress::{SharedProgress, report};
use crate::refs::RefSummary;
use crate::report::PullReport;
use crate::retry;

/// How a pull reports.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Started with the blob's size once the server announced it, then told of every write.
    pub progress: Option<SharedProgress>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("progress", &self.progress.as_ref().map(|_| "<progress>"))
            .finish()
    }
}

/// Raw bytes of frames decoded by one blocking job: enough that the hand-off costs little
/// against the work (~0.5 ms a job), little enough that a batch is still in cache when it is
/// hashed and written.
const DECODE_BATCH_BYTES: usize = 1 << 20;
/// Decode jobs queued or running ahead of the writer (about 8 MiB of decoded bytes).
const DECODE_JOBS_AHEAD: usize = 8;
/// Decoded batches waiting for the writer.
const WRITES_AHEAD: usize = 2;

/// Decodes a frame received under `id` and checks that it hashes to `id`.
pub(crate) fn decode_frame(id: ChunkId, frame: Bytes) -> Result<Bytes> {
    let frame = Frame::from_bytes(frame).map_err(|e| mismatch(id, e))?;
    verify_frame(id, &frame)
}

/// Decodes a frame received under `id` and checks it (checksum, then BLAKE3) against `id`.
fn verify_frame(id: ChunkId, frame: &Frame) -> Result<Bytes> {
    frame
        .decode_verified(&id, MAX_CHUNK_LEN)
        .map_err(|e| mismatch(id, e))
}

fn mismatch(id: ChunkId, e: scipcache_tiers::Error) -> Error {
    Error::ChunkMismatch {
        id,
        detail: match e {
            scipcache_tiers::Error::Corrupt { actual, .. } => {
                format!("its bytes hash to {actual}")
            }
            other => other.to_string(),
        },
    }
}

/// A received piece of a blob, its frame not yet decoded.
enum Piece {
    Data(Bytes),
    Frame(ChunkId, Frame),
    /// A chunk as stored, with version placeholders: verified against its id, then restored
    /// with the blob's table.
    Normalized(ChunkId, Frame, Arc<VersionTable>),
}

impl Piece {
    /// The raw bytes it stands for (declared, for a frame: decoding checks it).
    fn raw_len(&self) -> usize {
        match self {
            Self::Data(data) => data.len(),
            Self::Frame(_, frame) | Self::Normalized(_, frame, _) => frame.raw_len(),
        }
    }

    fn decode(self) -> Result<Bytes> {
        match self {
            Self::Data(data) => Ok(data),
            Self::Frame(id, frame) => verify_frame(id, &frame),
            Self::Normalized(id, frame, versions) => versions
                .restore_bytes(verify_frame(id, &frame)?)
                .map_err(|e| mismatch(id, e)),
        }
    }

    /// Decodes and verifies into `out`, of exactly [`Piece::raw_len`] bytes.
    fn decode_into(&self, out: &mut [u8]) -> Result<()> {
        match self {
            Self::Data(data) => {
                out.copy_from_slice(data);
                Ok(())
            }
            Self::Frame(id, frame) => frame
                .decode_verified_into(id, out)
                .map_err(|e| mismatch(*id, e)),
            Self::Normalized(id, frame, versions) => {
                frame
                    .decode_verified_into(id, out)
                    .and_then(|()| versions.restore_in_place(out))
                    .map_err(|e| mismatch(*id, e))?;
                Ok(())
            }
        }
    }
}

/// The bytes of a blob (or a range of it) as they arrive, each frame verified against its
/// chunk id. Ends with an error if the server sends more or fewer bytes than it announced.
pub struct BlobStream {
    info: RefSummary,
    /// What the placeholders of normalized chunks stand for.
    versions: Arc<VersionTable>,
    inner: tonic::Streaming<pb::ReadBlobResponse>,
    expected: u64,
    received: u64,
    done: bool,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("info", &self.info)
            .field("expected", &self.expected)
            .field("received", &self.received)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// The ref being read (after fallback resolution).
    pub fn info(&self) -> &RefSummary {
        &self.info
    }

    /// Bytes this stream yields in all.
    pub fn expected_len(&self) -> u64 {
        self.expected
    }

    /// Checks a received part and counts the bytes it declares. A frame's length is the one
    /// its header declares; decoding it checks that it holds exactly that.
    fn piece(&mut self, part: Part) -> Result<Option<Piece>> {
        let piece = match part {
            Part::Data(data) => Piece::Data(data),
            Part::Frame(frame) => {
                let id = ChunkId::from_slice(&frame.id).map_err(|e| {
                    Error::Protocol(format!("a blob frame has a malformed chunk id: {e}"))
                })?;
                let normalized = frame.normalized;
                let frame = Frame::from_bytes(frame.frame).map_err(|e| mismatch(id, e))?;
                if frame.raw_len() > MAX_CHUNK_LEN {
                    return Err(Error::Protocol(format!(
                        "chunk {id} declares {} bytes, more than any chunk can hold",
                        frame.raw_len()
                    )));
                }
                if normalized {
                    Piece::Normalized(id, frame, self.versions.clone())
                } else {
                    Piece::Frame(id, frame)
                }
            }
            Part::Ref(_) => {
                return Err(Error::Protocol(
                    "a second RefInfo arrived in the middle of a blob".into(),
                ));
            }
        };
        self.received += piece.raw_len() as u64;
        if self.received > self.expected {
            return Err(Error::SizeMismatch {
                expected: self.expected,
                actual: self.received,
            });
        }
        Ok((piece.raw_len() > 0).then_some(piece))
    }

    /// The next piece as received (frames not decoded), or `None` at the end.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Piece>>> {
        while !self.done {
            let item = match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                None if self.received == self.expected => None,
                None => Some(Err(Error::SizeMismatch {
                    expected: self.expected,
                    actual: self.received,
                })),
                Some(Err(status)) => Some(Err(status.into())),
                Some(Ok(pb::ReadBlobResponse { part: None })) => continue,
                Some(Ok(pb::ReadBlobResponse { part: Some(part) })) => match self.piece(part) {
                    Ok(None) => continue,
                    Ok(Some(piece)) => return Poll::Ready(Some(Ok(piece))),
                    Err(e) => Some(Err(e)),
                },
            };
            self.done = true;
            return Poll::Ready(item);
        }
        Poll::Ready(None)
    }

    async fn next_piece(&mut self) -> Option<Result<Piece>> {
        futures::future::poll_fn(|cx| self.poll_piece(cx)).await
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes>;

    /// Decodes and verifies each frame as it arrives, on the polling task.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = ready!(this.poll_piece(cx)).map(|piece| piece.and_then(Piece::decode));
        if matches!(item, Some(Err(_))) {
            this.done = true;
        }
        Poll::Ready(item)
    }
}

/// Bytes a read of `length` (0 = to the end) from `offset` yields from a blob of `size`.
fn range_len(size: u64, offset: u64, length: u64) -> u64 {
    let rest = size.saturating_sub(offset);
    if length == 0 { rest } else { rest.min(length) }
}

impl Client {
    /// Opens a read of `length` bytes (0 = to the end) from `offset` of the blob under `key`,
    /// or under the newest ref of the first of `fallbacks` that has one. Waits for the
    /// server's first message (retrying on `UNAVAILABLE`, within the call timeout).
    pub async fn open_blob(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
        offset: u64,
        length: u64,
    ) -> Result<BlobStream> {
        let req = pb::ReadBlobRequest {
            namespace: ns.to_string(),
            key: key.to_string(),
            fallback_prefixes: fallbacks.iter().map(|p| p.as_str().to_owned()).collect(),
            offset,
            length,
            accept_frames: true,
            restores_versions: true,
        };
        let mut retry = 0;
        loop {
            let opened = tokio::time::timeout(self.timeout(), self.open_once(req.clone())).await;
            match opened {
                Err(_) => {
                    return Err(Error::Timeout {
                        call: "Blobs/Read",
                        timeout: self.timeout(),
                    });
                }
                Ok(Err(Error::Status(s)))
                    if s.code() == tonic::Code::Unavailable && retry + 1 < retry::ATTEMPTS =>
                {
                    tokio::time::sleep(retry::backoff(retry)).await;
                    retry += 1;
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok((info, versions, inner))) => {
                    let expected = range_len(info.size, offset, length);
                    return Ok(BlobStream {
                        info,
                        versions: Arc::new(versions),
                        inner,
                        expected,
                        received: 0,
                        done: false,
                    });
                }
            }
        }
    }

    async fn open_once(
        &self,
        req: pb::ReadBlobRequest,
    ) -> Result<(
        RefSummary,
        VersionTable,
        tonic::Streaming<pb::ReadBlobResponse>,
    )> {
        let mut inner = self.blobs().read(req).await?.into_inner();
        match inner.message().await?.and_then(|m| m.part) {
            Some(Part::Ref(mut info)) => {
                let versions = convert::version_table(&std::mem::take(&mut info.versions))
                    .map_err(|e| {
                        Error::Protocol(format!("the blob's version table is unusable: {e}"))
                    })?;
                Ok((RefSummary::try_from(info)?, versions, inner))
            }
            _ => Err(Error::Protocol(
                "the blob stream did not start with a RefInfo".into(),
            )),
        }
    }

    /// Streams the blob under `key` (or the newest ref under the first of `fallbacks` that
    /// has one) into `writer`, verifying every chunk, the whole blob's BLAKE3 and its length.
    ///
    /// On error, `writer` may hold part of the blob: write to a temporary file and rename it
    /// on success (the CLI does). To a file, [`Client::pull_file`] is faster.
    pub async fn pull<W>(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
        mut writer: W,
        opts: &PullOptions,
    ) -> Result<PullReport>
    where
        W: AsyncWrite + Unpin,
    {
        self.pull_into(ns, key, fallbacks, Output::Async(&mut writer), opts)
            .await
    }

    /// Like [`Client::pull`] into `file` from its current position, writing on a thread of
    /// its own with vectored writes straight from the decoded chunks. Does not sync the file.
    pub async fn pull_file(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
        file: std::fs::File,
        opts: &PullOptions,
    ) -> Result<PullReport> {
        self.pull_into::<tokio::io::Sink>(ns, key, fallbacks, Output::File(file), opts)
            .await
    }

    async fn pull_into<W>(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
        output: Output<'_, W>,
        opts: &PullOptions,
    ) -> Result<PullReport>
    where
        W: AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let stream = self.open_blob(ns, key, fallbacks, 0, 0).await?;
        let info = stream.info().clone();
        report(opts.progress.as_ref(), |p| p.start(info.size));
        let result = write_verified(stream, &info, output, opts.progress.as_ref()).await;
        report(opts.progress.as_ref(), |p| p.finish());
        let bytes = result?;
        Ok(PullReport {
            ns: ns.clone(),
            key: key.clone(),
            resolved_key: if info.key.is_empty() {
                key.to_string()
            } else {
                info.key
            },
            blob: info.blob,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// `length` bytes (0 = to the end) from `offset` of the blob under `key`, verified chunk
    /// by chunk. Holds the range in memory: use [`Client::open_blob`] for large ones.
    pub async fn read_range(
        &self,
        ns: &Namespace,
        key: &RefKey,
        offset: u64,
        length: u64,
    ) -> Result<Bytes> {
        let mut stream = self.open_blob(ns, key, &[], offset, length).await?;
        let capacity = usize::try_from(stream.expected_len()).unwrap_or(usize::MAX);
        let mut out = BytesMut::with_capacity(capacity.min(64 * 1024 * 1024));
        while let Some(bytes) = stream.next().await {
            out.extend_from_slice(&bytes?);
        }
        Ok(out.freeze())
    }

    /// Chunks by id, each verified, in the order the server sends them (low-latency reads
    /// for LSP gateways that keep a blob's manifest). Every id must be a chunk of the blob
    /// under `key`, which the caller must be allowed to read. A chunk stored with version
    /// placeholders comes back with the blob's real versions (the bytes at its place in the
    /// blob), verified by the server before it restored them.
    pub async fn read_chunks(
        &self,
        ns: &Namespace,
        key: &RefKey,
        ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, Bytes)>> {
        let mut out = Vec::with_capacity(ids.len());
        // Each Read stays within the server's byte limit, whatever the chunks' lengths.
        let info = self.server_info();
        let by_bytes = scipcache_proto::MAX_READ_BYTES / u64::from(info.chunker.max.max(1));
        let per_read = info
            .max_ids_per_request
            .min(usize::try_from(by_bytes).unwrap_or(usize::MAX))
            .max(1);
        for batch in ids.chunks(per_read) {
            let mut wanted: HashSet<ChunkId> = batch.iter().copied().collect();
            let req = pb::ReadChunksRequest {
                namespace: ns.to_string(),
                key: key.to_string(),
                ids: batch
                    .iter()
                    .map(|id| Bytes::copy_from_slice(id.as_bytes()))
                    .collect(),
            };
            let mut frames = self.chunks().read(req).await?.into_inner();
            while let Some(frame) = frames.message().await? {
                let id = ChunkId::from_slice(&frame.id).map_err(|e| {
                    Error::Protocol(format!("a chunk frame has a malformed id: {e}"))
                })?;
                if !wanted.remove(&id) {
                    return Err(Error::Protocol(format!(
                        "the server sent chunk {id}, which was not asked for (or twice)"
                    )));
                }
                let bytes = if frame.restored {
                    // The server verified the stored form and put the blob's versions back:
                    // the bytes no longer hash to the id (see `ChunkFrame.restored`).
                    Frame::from_bytes(frame.frame)
                        .and_then(|f| f.decode(MAX_CHUNK_LEN))
                        .map_err(|e| mismatch(id, e))?
                } else {
                    decode_frame(id, frame.frame)?
                };
                out.push((id, bytes));
            }
            if !wanted.is_empty() {
                return Err(Error::Protocol(format!(
                    "the server left out {} of the {} chunks asked for",
                    wanted.len(),
                    batch.len()
                )));
            }
        }
        Ok(out)
    }
}

/// Where a pull's verified bytes go.
enum Output<'a, W> {
    /// Written on the pulling task; the blob hash runs on a blocking thread meanwhile.
    Async(&'a mut W),
    /// Hashed and written on a blocking thread.
    File(std::fs::File),
}

/// Batch buffers, reused: decoding into memory already faulted in and initialised saves
/// the page faults and zeroing that a fresh buffer per chunk costs (a third of a pull's
/// kernel time).
#[derive(Clone, Default)]
struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// Buffers kept for reuse; more than are ever in flight at once.
    const KEEP: usize = DECODE_JOBS_AHEAD + WRITES_AHEAD + 4;

    fn take(&self) -> Vec<u8> {
        self.lock().pop().unwrap_or_default()
    }

    fn give(&self, buffer: Vec<u8>) {
        let mut pool = self.lock();
        if pool.len() < Self::KEEP {
            pool.push(buffer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One decode job: a batch of pieces decoded and verified, in order, into one buffer.
type DecodeJob = JoinHandle<Result<Vec<u8>>>;

/// Decodes `pieces` (of `raw_len` bytes in all) into `buffer`, resized to fit: only bytes
/// the buffer never held before are zeroed.
fn decode_batch(pieces: &[Piece], raw_len: usize, mut buffer: Vec<u8>) -> Result<Vec<u8>> {
    buffer.resize(raw_len, 0);
    let mut at = 0;
    for piece in pieces {
        let n = piece.raw_len();
        piece.decode_into(&mut buffer[at..at + n])?;
        at += n;
    }
    Ok(buffer)
}

/// The receive stage: groups pieces into batches of about [`DECODE_BATCH_BYTES`] and starts a
/// decode job for each, handing the jobs on in blob order. The bounded channel keeps at most
/// [`DECODE_JOBS_AHEAD`] jobs ahead of the writer.
async fn receive(
    mut stream: BlobStream,
    pool: BufferPool,
    jobs: mpsc::Sender<DecodeJob>,
) -> Result<()> {
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let piece = stream.next_piece().await.transpose()?;
        let end = piece.is_none();
        if let Some(piece) = piece {
            batch_bytes += piece.raw_len();
            batch.push(piece);
        }
        if (end && !batch.is_empty()) || batch_bytes >= DECODE_BATCH_BYTES {
            let pieces = std::mem::take(&mut batch);
            let raw_len = std::mem::take(&mut batch_bytes);
            let buffer = pool.take();
            let job = crate::blocking::spawn(move || decode_batch(&pieces, raw_len, buffer));
            if jobs.send(job).await.is_err() {
                // The writer stopped; its error is the one to report.
                return Ok(());
            }
        }
        if end {
            return Ok(());
        }
    }
}

/// The output stage, on a blocking thread: hashes the batches in order and, for a file,
/// writes them, then hands each buffer back for reuse. Returns the bytes seen and their
/// BLAKE3.
fn hash_and_write(
    mut batches: mpsc::Receiver<Vec<u8>>,
    mut file: Option<std::fs::File>,
    pool: &BufferPool,
) -> Result<(u64, BlobId)> {
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    while let Some(batch) = batches.blocking_recv() {
        hasher.update(&batch);
        if let Some(file) = &mut file {
            file.write_all(&batch)
                .map_err(|e| Error::io("cannot write the blob", e))?;
        }
        written += batch.len() as u64;
        pool.give(batch);
    }
    Ok((written, BlobId::from(hasher.finalize())))
}

/// Decodes (in parallel), verifies, hashes and writes the stream; checks the length and the
/// blob id at the end.
async fn write_verified<W>(
    stream: BlobStream,
    info: &RefSummary,
    output: Output<'_, W>,
    progress: Option<&SharedProgress>,
) -> Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let pool = BufferPool::default();
    let (jobs_tx, mut jobs) = mpsc::channel::<DecodeJob>(DECODE_JOBS_AHEAD);
    // Dropping the set (on error or cancellation) aborts the receive task.
    let mut receiver = JoinSet::new();
    receiver.spawn(receive(stream, pool.clone(), jobs_tx));
    let (mut writer, file) = match output {
        Output::Async(w) => (Some(w), None),
        Output::File(f) => (None, Some(f)),
    };
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(WRITES_AHEAD);
    let hashing = {
        let pool = pool.clone();
        crate::blocking::spawn(move || hash_and_write(out_rx, file, &pool))
    };
    while let Some(job) = jobs.recv().await {
        let batch = job.await??;
        let n = batch.len() as u64;
        if let Some(w) = writer.as_mut() {
            w.write_all(&batch)
                .await
                .map_err(|e| Error::io("cannot write the blob", e))?;
        }
        if out_tx.send(batch).await.is_err() {
            // The output stage failed: its error comes out below.
            break;
        }
        report(progress, |p| p.advance(n));
    }
    drop(out_tx);
    let (written, actual) = hashing.await??;
    if let Some(w) = writer.as_mut() {
        w.flush()
            .await
            .map_err(|e| Error::io("cannot write the blob", e))?;
    }
    if let Some(done) = receiver.join_next().await {
        done??;
    }
    if written != info.size {
        return Err(Error::SizeMismatch {
            expected: info.size,
            actual: written,
        });
    }
    if actual != info.blob {
        return Err(Error::BlobMismatch {
            expected: info.blob,
            actual,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scipcache_tiers::codec::Compression;

    #[test]
    fn range_lengths_clip_at_the_end_of_the_blob() {
        assert_eq!(range_len(100, 0, 0), 100);
        assert_eq!(range_len(100, 10, 0), 90);
        assert_eq!(range_len(100, 10, 20), 20);
        assert_eq!(range_len(100, 90, 20), 10);
        assert_eq!(range_len(100, 200, 5), 0);
    }

    #[test]
    fn frames_decode_only_under_their_own_id() -> Result<()> {
        let raw = b"scip index bytes ".repeat(500);
        let id = ChunkId::of(&raw);
        let frame = Frame::encode(&raw, Compression::Lz4)
            .map_err(|e| Error::Internal(e.to_string()))?
            .into_bytes();
        assert_eq!(decode_frame(id, frame.clone())?, &raw[..]);
        let other = ChunkId::of(b"other");
        let err = decode_frame(other, frame).err();
        assert!(matches!(err, Some(Error::ChunkMismatch { .. })), "{err:?}");
        let garbage = decode_frame(id, Bytes::from_static(b"\xC1\x01\x10\x00\x00\x00xx")).err();
        assert_eq!(garbage.map(|e| e.exit_code()), Some(1));
        Ok(())
    }

    fn frame_piece(raw: &[u8], compression: Compression) -> Result<Piece> {
        let frame = Frame::encode(raw, compression).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Piece::Frame(ChunkId::of(raw), frame))
    }

    #[test]
    fn a_batch_decodes_in_order_into_a_reused_buffer_of_any_previous_size() -> Result<()> {
        let chunks: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; 1000 + usize::from(i) * 777])
            .collect();
        let pieces = vec![
            frame_piece(&chunks[0], Compression::Lz4)?,
            Piece::Data(Bytes::from(chunks[1].clone())),
            frame_piece(&chunks[2], Compression::Zstd(3))?,
            frame_piece(&chunks[3], Compression::Raw)?,
            frame_piece(&chunks[4], Compression::Lz4)?,
            frame_piece(&chunks[5], Compression::Lz4)?,
        ];
        let want = chunks.concat();
        for previous in [Vec::new(), vec![0xEE; 10], vec![0xEE; 1 << 20]] {
            let out = decode_batch(&pieces, want.len(), previous)?;
            assert_eq!(out, want);
        }
        Ok(())
    }

    #[test]
    fn a_batch_with_a_chunk_under_the_wrong_id_fails() -> Result<()> {
        let good = frame_piece(b"good chunk bytes", Compression::Lz4)?;
        let Piece::Frame(_, frame) = frame_piece(b"other chunk bytes", Compression::Lz4)? else {
            return Err(Error::Internal("expected a frame".into()));
        };
        let liar = Piece::Frame(ChunkId::of(b"good chunk bytes"), frame);
        let len = good.raw_len() + liar.raw_len();
        let err = decode_batch(&[good, liar], len, Vec::new()).err();
        assert!(matches!(err, Some(Error::ChunkMismatch { .. })), "{err:?}");
        Ok(())
    }

    #[test]
    fn a_normalized_chunk_is_verified_as_stored_then_restored_with_the_blobs_table() -> Result<()> {
        let stored = b"scip-typescript npm vue \x01Abcd\x01 src/`a.ts`/f(). ".repeat(50);
        let original = b"scip-typescript npm vue 3.5.40 src/`a.ts`/f(). ".repeat(50);
        let mut table = VersionTable::new();
        table
            .insert(b"\x01Abcd\x01", b"3.5.40")
            .map_err(|e| Error::Internal(e.to_string()))?;
        let frame =
            Frame::encode(&stored, Compression::Lz4).map_err(|e| Error::Internal(e.to_string()))?;
        let id = ChunkId::of(&stored);
        let piece = Piece::Normalized(id, frame.clone(), Arc::new(table.clone()));
        let plain = frame_piece(b"plain bytes after it", Compression::Lz4)?;
        let len = piece.raw_len() + plain.raw_len();
        let out = decode_batch(&[piece, plain], len, vec![0xEE; 7])?;
        assert_eq!(out, [&original[..], b"plain bytes after it"].concat());
        let whole = Piece::Normalized(id, frame.clone(), Arc::new(table)).decode()?;
        assert_eq!(whole, &original[..]);
        // Under another id, or without the table entry, it is refused.
        let liar = Piece::Normalized(ChunkId::of(&original), frame.clone(), Arc::default());
        let err = liar.decode().err();
        assert!(matches!(err, Some(Error::ChunkMismatch { .. })), "{err:?}");
        let untabled = Piece::Normalized(id, frame, Arc::default());
        let err = decode_batch(&[untabled], stored.len(), Vec::new()).err();
        assert!(matches!(err, Some(Error::ChunkMismatch { .. })), "{err:?}");
        Ok(())
    }

    #[tokio::test]
    async fn the_output_stage_writes_and_hashes_batches_in_order() -> Result<()> {
        let file = tempfile::tempfile().map_err(|e| Error::io("tempfile", e))?;
        let mut check = file.try_clone().map_err(|e| Error::io("clone", e))?;
        let (tx, rx) = mpsc::channel(2);
        let pool = BufferPool::default();
        let stage = {
            let pool = pool.clone();
            crate::blocking::spawn(move || hash_and_write(rx, Some(file), &pool))
        };
        let batches = [b"first batch, ".to_vec(), b"second batch".to_vec()];
        for b in &batches {
            tx.send(b.clone())
                .await
                .map_err(|_| Error::Internal("stage stopped".into()))?;
        }
        drop(tx);
        let (written, blob) = stage.await??;
        let whole = batches.concat();
        assert_eq!(written, whole.len() as u64);
        assert_eq!(blob, BlobId::of(&whole));
        let mut back = Vec::new();
        use std::io::{Read, Seek};
        check
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| check.read_to_end(&mut back))
            .map_err(|e| Error::io("read back", e))?;
        assert_eq!(back, whole);
        assert_eq!(pool.lock().len(), 2, "both buffers came back for reuse");
        Ok(())
    }
}
