//! Reading: whole blobs (pull), byte ranges (for LSP gateways) and chunks by id.
//!
//! Everything read is verified. `Blobs/Read` is asked for frames (`accept_frames`), so whole
//! chunks arrive as stored; each is decoded and hashed against its id, and a pull also hashes
//! the whole blob against the id the server announced in its first message.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use scipcache_proto::pb;
use scipcache_proto::pb::read_blob_response::Part;
use scipcache_tiers::codec::{Frame, MAX_CHUNK_LEN};
use scipcache_tiers::ids::{BlobId, ChunkId};
use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

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

/// Decodes a frame received under `id` and checks that it hashes to `id`.
pub(crate) fn decode_frame(id: ChunkId, frame: Bytes) -> Result<Bytes> {
    Frame::from_bytes(frame)
        .and_then(|f| f.decode_verified(&id, MAX_CHUNK_LEN))
        .map_err(|e| Error::ChunkMismatch {
            id,
            detail: match e {
                scipcache_tiers::Error::Corrupt { actual, .. } => {
                    format!("its bytes hash to {actual}")
                }
                other => other.to_string(),
            },
        })
}

/// The bytes of a blob (or a range of it) as they arrive, each frame verified against its
/// chunk id. Ends with an error if the server sends more or fewer bytes than it announced.
pub struct BlobStream {
    info: RefSummary,
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

    fn part(&mut self, part: Part) -> Result<Option<Bytes>> {
        let bytes = match part {
            Part::Data(data) => data,
            Part::Frame(frame) => {
                let id = ChunkId::from_slice(&frame.id).map_err(|e| {
                    Error::Protocol(format!("a blob frame has a malformed chunk id: {e}"))
                })?;
                decode_frame(id, frame.frame)?
            }
            Part::Ref(_) => {
                return Err(Error::Protocol(
                    "a second RefInfo arrived in the middle of a blob".into(),
                ));
            }
        };
        self.received += bytes.len() as u64;
        if self.received > self.expected {
            return Err(Error::SizeMismatch {
                expected: self.expected,
                actual: self.received,
            });
        }
        Ok((!bytes.is_empty()).then_some(bytes))
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.done {
            let item = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None if this.received == this.expected => None,
                None => Some(Err(Error::SizeMismatch {
                    expected: this.expected,
                    actual: this.received,
                })),
                Some(Err(status)) => Some(Err(status.into())),
                Some(Ok(pb::ReadBlobResponse { part: None })) => continue,
                Some(Ok(pb::ReadBlobResponse { part: Some(part) })) => match this.part(part) {
                    Ok(None) => continue,
                    Ok(Some(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                    Err(e) => Some(Err(e)),
                },
            };
            this.done = true;
            return Poll::Ready(item);
        }
        Poll::Ready(None)
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
                Ok(Ok((info, inner))) => {
                    let expected = range_len(info.size, offset, length);
                    return Ok(BlobStream {
                        info,
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
    ) -> Result<(RefSummary, tonic::Streaming<pb::ReadBlobResponse>)> {
        let mut inner = self.blobs().read(req).await?.into_inner();
        match inner.message().await?.and_then(|m| m.part) {
            Some(Part::Ref(info)) => Ok((RefSummary::try_from(info)?, inner)),
            _ => Err(Error::Protocol(
                "the blob stream did not start with a RefInfo".into(),
            )),
        }
    }

    /// Streams the blob under `key` (or the newest ref under the first of `fallbacks` that
    /// has one) into `writer`, verifying every chunk, the whole blob's BLAKE3 and its length.
    ///
    /// On error, `writer` may hold part of the blob: write to a temporary file and rename it
    /// on success (the CLI does).
    pub async fn pull<W>(
        &self,
        ns: &Namespace,
        key: &RefKey,
        fallbacks: &[KeyPrefix],
        writer: W,
        opts: &PullOptions,
    ) -> Result<PullReport>
    where
        W: AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let stream = self.open_blob(ns, key, fallbacks, 0, 0).await?;
        let info = stream.info().clone();
        report(opts.progress.as_ref(), |p| p.start(info.size));
        let result = write_verified(stream, &info, writer, opts.progress.as_ref()).await;
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
    /// under `key`, which the caller must be allowed to read.
    pub async fn read_chunks(
        &self,
        ns: &Namespace,
        key: &RefKey,
        ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, Bytes)>> {
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(self.server_info().max_ids_per_request.max(1)) {
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
                out.push((id, decode_frame(id, frame.frame)?));
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

/// Writes the stream to `writer` while hashing it. Frames are decoded and verified on another
/// task, so decoding overlaps hashing and writing.
async fn write_verified<W>(
    stream: BlobStream,
    info: &RefSummary,
    mut writer: W,
    progress: Option<&SharedProgress>,
) -> Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes>>(64);
    // Dropping the set (on error or cancellation) aborts the reader task.
    let mut reader = JoinSet::new();
    reader.spawn(async move {
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    while let Some(item) = rx.recv().await {
        let bytes = item?;
        hasher.update(&bytes);
        writer
            .write_all(&bytes)
            .await
            .map_err(|e| Error::io("cannot write the blob", e))?;
        written += bytes.len() as u64;
        report(progress, |p| p.advance(bytes.len() as u64));
    }
    writer
        .flush()
        .await
        .map_err(|e| Error::io("cannot write the blob", e))?;
    if let Some(done) = reader.join_next().await {
        done?;
    }
    if written != info.size {
        return Err(Error::SizeMismatch {
            expected: info.size,
            actual: written,
        });
    }
    let actual = BlobId::from(hasher.finalize());
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
}
