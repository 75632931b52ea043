//! The last step of a push: commit the manifest under its ref, and when the server lacks
//! chunks at that moment, upload exactly those and commit again, a bounded number of times.
//!
//! The server re-checks, in the transaction that sets the ref, that it holds every chunk: a GC
//! sweep or an eviction may have removed one that FindMissing called present. It then answers
//! `FAILED_PRECONDITION` with the missing ids in machine-readable metadata
//! ([`Error::missing_chunks`]). The client reads exactly those chunks back from the file, at
//! the offsets the manifest entries give, checks that they still hash to their ids, uploads
//! them and commits again, at most [`COMMIT_RETRIES`] times. When the server lists only some
//! of them (more than [`scipcache_proto::MAX_LISTED_MISSING`] are missing) or none (a server
//! that sends no list), FindMissing over the manifest gives the full set. A blob read from a
//! stream cannot be read again: the push then fails with [`Error::CommitIncomplete`] and the
//! caller pushes again from the start.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use scipcache_proto::ENTRIES_PER_BATCH;
use scipcache_proto::pb;
use scipcache_proto::pb::commit_request::Part;
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::manifest::ManifestEntry;
use scipcache_tiers::scip::{CutMode, Cutter};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::connect::Client;
use crate::error::{Error, Result};
use crate::window::WINDOW_MAX_BYTES;

/// Commits after the first one, each after uploading what the previous one lacked.
pub(crate) const COMMIT_RETRIES: u32 = 3;

/// Where the chunks of a pushed blob can be read again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reread<'a> {
    /// A regular file: chunks are read back at their manifest offsets and hashed again
    /// (plain cutting), or the file is cut again to find them (SCIP-aware cutting, whose
    /// normalized chunks are not the file's bytes).
    File {
        /// The file.
        path: &'a Path,
        /// How messages name it.
        name: &'a str,
        /// How the push cut it.
        mode: CutMode,
    },
    /// A stream or a pipe: nothing can be read again.
    Stream {
        /// How messages name it.
        name: &'a str,
    },
}

impl Reread<'_> {
    /// How messages name the blob's source.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::File { name, .. } | Self::Stream { name } => name,
        }
    }

    /// The same source, cut with `mode`.
    pub(crate) fn cut_with(self, mode: CutMode) -> Self {
        match self {
            Self::File { path, name, .. } => Self::File { path, name, mode },
            stream => stream,
        }
    }
}

/// What committing took beyond the push's pipeline.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Bytes sent: every commit attempt, and the lookups and uploads between them.
    pub(crate) bytes_sent: u64,
    /// Chunks uploaded again between attempts.
    pub(crate) reuploaded: u64,
}

/// Chunks and bytes one re-upload sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Chunks uploaded.
    pub(crate) chunks: u64,
    /// Bytes on the wire.
    pub(crate) bytes: u64,
}

impl Client {
    /// `Blobs/Commit` of `entries` under `header`; on `FAILED_PRECONDITION` for missing chunks,
    /// re-reads them from `reread`, hands them to `upload` (in batches of at most
    /// [`WINDOW_MAX_BYTES`]) and commits again, at most [`COMMIT_RETRIES`] times.
    pub(crate) async fn commit_with_retry<U, Fut>(
        &self,
        header: pb::CommitHeader,
        entries: Vec<ManifestEntry>,
        normalized: Vec<bool>,
        reread: Reread<'_>,
        mut upload: U,
    ) -> Result<Committed>
    where
        U: FnMut(Vec<(ChunkId, Bytes)>) -> Fut,
        Fut: Future<Output = Result<Sent>>,
    {
        let entries = Arc::new(entries);
        let normalized = Arc::new(normalized);
        let mut done = Committed::default();
        let mut retry = 0;
        loop {
            let (answer, sent) = self
                .commit_once(
                    header.clone(),
                    Arc::clone(&entries),
                    Arc::clone(&normalized),
                )
                .await;
            done.bytes_sent += sent;
            let refused = match answer {
                Ok(()) => return Ok(done),
                Err(e) if e.code() == tonic::Code::FailedPrecondition => e,
                Err(e) => return Err(e),
            };
            let missing = self
                .missing_after(&refused, &header.namespace, &entries, &mut done)
                .await?;
            if missing.is_empty() {
                // Not about chunks, or they arrived meanwhile with nothing left to list.
                return Err(refused);
            }
            let count = missing.len() as u64;
            if retry == COMMIT_RETRIES {
                return Err(Error::CommitIncomplete {
                    missing: count,
                    why: format!(
                        "still missing after {} commits, each after uploading the missing ones \
                         again; the server removes chunks as they arrive (a GC or an eviction \
                         under a tight budget?): push again later or ask its operator",
                        retry + 1
                    ),
                });
            }
            let Reread::File { path, name, mode } = reread else {
                return Err(Error::CommitIncomplete {
                    missing: count,
                    why: format!(
                        "they were lost during the push, and {} cannot be read again to upload \
                         them; push it again",
                        reread.name()
                    ),
                });
            };
            tracing::info!(
                missing = count,
                retry,
                "the commit lacked chunks; uploading them"
            );
            let sent = if mode == CutMode::Plain {
                reupload(path, name, &entries, &missing, &mut upload).await?
            } else {
                let spec = self.server_info().chunker;
                recut_and_upload(path, name, spec, mode, &missing, &mut upload).await?
            };
            done.reuploaded += sent.chunks;
            done.bytes_sent += sent.bytes;
            retry += 1;
        }
    }

    /// One `Blobs/Commit`: the header, then the entries in batches built as the stream is
    /// read. Returns the answer and the bytes sent (also when it failed).
    async fn commit_once(
        &self,
        header: pb::CommitHeader,
        entries: Arc<Vec<ManifestEntry>>,
        normalized: Arc<Vec<bool>>,
    ) -> (Result<()>, u64) {
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let messages = commit_messages(header, entries, normalized).inspect(move |m| {
            counter.fetch_add(m.encoded_len() as u64, Ordering::Relaxed);
        });
        let answer = match self.blobs().commit(messages).await {
            Ok(answer) => {
                if let Some(info) = answer.into_inner().r#ref {
                    tracing::debug!(key = %info.key, chunks = info.chunks, "committed");
                }
                Ok(())
            }
            Err(status) => Err(status.into()),
        };
        (answer, sent.load(Ordering::Relaxed))
    }

    /// The chunks a refused commit lacked: the server's list when it is complete, otherwise
    /// FindMissing over the whole manifest (its bytes are added to `done`).
    async fn missing_after(
        &self,
        refused: &Error,
        namespace: &str,
        entries: &[ManifestEntry],
        done: &mut Committed,
    ) -> Result<Vec<ChunkId>> {
        match refused.missing_chunks()? {
            Some(list) if list.is_complete() => Ok(list.listed),
            _ => {
                let mut seen = HashSet::new();
                let ids: Vec<ChunkId> = entries
                    .iter()
                    .map(|e| e.id)
                    .filter(|id| seen.insert(*id))
                    .collect();
                let (missing, sent) = find_missing(self, namespace, &ids).await?;
                done.bytes_sent += sent;
                Ok(ids.into_iter().filter(|id| missing.contains(id)).collect())
            }
        }
    }
}

/// `Chunks/FindMissing` for `ids`, in batches the server accepts: the ids it lacks, and the
/// bytes sent.
pub(crate) async fn find_missing(
    client: &Client,
    namespace: &str,
    ids: &[ChunkId],
) -> Result<(HashSet<ChunkId>, u64)> {
    let mut missing = HashSet::new();
    let mut sent = 0;
    let batch = client.server_info().max_ids_per_request.max(1);
    for ids in ids.chunks(batch) {
        let req = pb::FindMissingRequest {
            namespace: namespace.to_owned(),
            ids: ids
                .iter()
                .map(|id| Bytes::copy_from_slice(id.as_bytes()))
                .collect(),
        };
        sent += req.encoded_len() as u64;
        let answer = client
            .unary(
                "Chunks/FindMissing",
                |c, r| async move { c.chunks().find_missing(r).await },
                req,
            )
            .await?;
        for id in answer.missing {
            missing.insert(ChunkId::from_slice(&id).map_err(|e| {
                Error::Protocol(format!("FindMissing answered a malformed id: {e}"))
            })?);
        }
    }
    Ok((missing, sent))
}

/// The commit stream: the header, then the entries (with their normalized flags, none for a
/// plain cut) in batches of [`ENTRIES_PER_BATCH`], each built only when the stream is polled.
fn commit_messages(
    header: pb::CommitHeader,
    entries: Arc<Vec<ManifestEntry>>,
    normalized: Arc<Vec<bool>>,
) -> impl futures::Stream<Item = pb::CommitRequest> + Send + 'static {
    let batches = entries.len().div_ceil(ENTRIES_PER_BATCH);
    let header = pb::CommitRequest {
        part: Some(Part::Header(header)),
    };
    let batches = (0..batches).map(move |i| {
        let lo = i * ENTRIES_PER_BATCH;
        let hi = (lo + ENTRIES_PER_BATCH).min(entries.len());
        pb::CommitRequest {
            part: Some(Part::Entries(pb::EntryBatch {
                entries: (lo..hi)
                    .map(|i| pb::ManifestEntry {
                        normalized: normalized.get(i).copied().unwrap_or(false),
                        ..entries[i].into()
                    })
                    .collect(),
            })),
        }
    });
    futures::stream::iter(std::iter::once(header).chain(batches))
}

/// Where one chunk lies in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    id: ChunkId,
    offset: u64,
    len: u32,
}

/// The first place of each of `wanted` in the blob, in file order. An id that is not in the
/// manifest is the server's mistake.
fn locate(entries: &[ManifestEntry], wanted: &[ChunkId]) -> Result<Vec<Span>> {
    let mut found: HashMap<ChunkId, Option<Span>> = wanted.iter().map(|&id| (id, None)).collect();
    let mut offset = 0u64;
    for e in entries {
        if let Some(slot @ None) = found.get_mut(&e.id) {
            *slot = Some(Span {
                id: e.id,
                offset,
                len: e.len,
            });
        }
        offset += u64::from(e.len);
    }
    let mut spans = Vec::with_capacity(found.len());
    for (id, span) in found {
        spans.push(span.ok_or_else(|| {
            Error::Protocol(format!(
                "the server says chunk {id} is missing, but it is not in this blob"
            ))
        })?);
    }
    spans.sort_by_key(|s| s.offset);
    Ok(spans)
}

/// Reads the `missing` chunks back from the file and uploads them, a batch of at most
/// [`WINDOW_MAX_BYTES`] at a time, so memory stays bounded however many are missing.
async fn reupload<U, Fut>(
    path: &Path,
    name: &str,
    entries: &[ManifestEntry],
    missing: &[ChunkId],
    upload: &mut U,
) -> Result<Sent>
where
    U: FnMut(Vec<(ChunkId, Bytes)>) -> Fut,
    Fut: Future<Output = Result<Sent>>,
{
    let spans = locate(entries, missing)?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("cannot open {name} again"), e))?;
    let mut total = Sent::default();
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    for (i, span) in spans.iter().enumerate() {
        let chunk = read_span(&mut file, name, *span, missing.len()).await?;
        batch_bytes += chunk.len();
        batch.push((span.id, chunk));
        if batch_bytes >= WINDOW_MAX_BYTES || i + 1 == spans.len() {
            let sent = upload(std::mem::take(&mut batch)).await?;
            total.chunks += sent.chunks;
            total.bytes += sent.bytes;
            batch_bytes = 0;
        }
    }
    Ok(total)
}

/// Cuts the file again as the push did and uploads the `missing` chunks as they come by, a
/// batch of at most [`WINDOW_MAX_BYTES`] at a time. A missing chunk the new cut does not give
/// means the file changed.
async fn recut_and_upload<U, Fut>(
    path: &Path,
    name: &str,
    spec: ChunkerSpec,
    mode: CutMode,
    missing: &[ChunkId],
    upload: &mut U,
) -> Result<Sent>
where
    U: FnMut(Vec<(ChunkId, Bytes)>) -> Fut,
    Fut: Future<Output = Result<Sent>>,
{
    let wanted: HashSet<ChunkId> = missing.iter().copied().collect();
    let count = wanted.len();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(ChunkId, Bytes)>>(1);
    let (path_owned, name_owned) = (path.to_owned(), name.to_owned());
    let cutting =
        crate::blocking::spawn(move || recut(&path_owned, &name_owned, spec, mode, wanted, &tx));
    let mut total = Sent::default();
    while let Some(batch) = rx.recv().await {
        let sent = upload(batch).await?;
        total.chunks += sent.chunks;
        total.bytes += sent.bytes;
    }
    let found = cutting.await??;
    if found < count {
        return Err(Error::CommitIncomplete {
            missing: (count - found) as u64,
            why: format!(
                "{name} changed during the push (cutting it again no longer gives every chunk \
                 the server lacks); push it again"
            ),
        });
    }
    Ok(total)
}

/// The blocking half of [`recut_and_upload`]: returns how many of `wanted` it found.
fn recut(
    path: &Path,
    name: &str,
    spec: ChunkerSpec,
    mode: CutMode,
    mut wanted: HashSet<ChunkId>,
    batches: &tokio::sync::mpsc::Sender<Vec<(ChunkId, Bytes)>>,
) -> Result<usize> {
    use std::io::Read;
    let total = wanted.len();
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {name} again"), e))?;
    let mut cutter = Cutter::new(spec, mode)
        .map_err(|e| Error::Protocol(format!("the server's chunker spec is unusable: {e}")))?;
    let mut buf = vec![0u8; 4 << 20];
    let (mut batch, mut batch_bytes) = (Vec::new(), 0usize);
    let stopped = || Error::Internal("the re-upload stopped early".into());
    while !wanted.is_empty() {
        let n = loop {
            match file.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other,
            }
        }
        .map_err(|e| Error::io(format!("cannot read {name} again"), e))?;
        cutter.push(&buf[..n]);
        while let Some(cut) = cutter
            .next_cut(n == 0)
            .map_err(|e| Error::Internal(format!("cannot cut {name} again: {e}")))?
        {
            let id = ChunkId::of(&cut.data);
            if wanted.remove(&id) {
                batch_bytes += cut.data.len();
                batch.push((id, cut.data));
                if batch_bytes >= WINDOW_MAX_BYTES {
                    batches
                        .blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| stopped())?;
                    batch_bytes = 0;
                }
            }
        }
        if n == 0 {
            break;
        }
    }
    if !batch.is_empty() {
        batches.blocking_send(batch).map_err(|_| stopped())?;
    }
    Ok(total - wanted.len())
}

/// One chunk read back from the file, checked against its id.
async fn read_span(
    file: &mut tokio::fs::File,
    name: &str,
    span: Span,
    missing: usize,
) -> Result<Bytes> {
    let changed = || Error::CommitIncomplete {
        missing: missing as u64,
        why: format!(
            "{name} changed during the push (its {} bytes at offset {} are no longer chunk {}); \
             push it again",
            span.len, span.offset, span.id
        ),
    };
    let mut buf = vec![0u8; span.len as usize];
    file.seek(SeekFrom::Start(span.offset))
        .await
        .map_err(|e| Error::io(format!("cannot read {name} again"), e))?;
    match file.read_exact(&mut buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(changed()),
        Err(e) => return Err(Error::io(format!("cannot read {name} again"), e)),
    }
    if ChunkId::of(&buf) != span.id {
        return Err(changed());
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_of(chunks: &[&[u8]]) -> Vec<ManifestEntry> {
        chunks
            .iter()
            .map(|c| ManifestEntry {
                id: ChunkId::of(c),
                len: c.len() as u32,
            })
            .collect()
    }

    fn entries(n: usize) -> Vec<ManifestEntry> {
        (0..n)
            .map(|i| ManifestEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                len: 1,
            })
            .collect()
    }

    #[tokio::test]
    async fn commit_stream_is_a_header_then_entries_in_order() {
        let n = 2 * ENTRIES_PER_BATCH + 5;
        let messages: Vec<_> = commit_messages(
            pb::CommitHeader::default(),
            Arc::new(entries(n)),
            Arc::default(),
        )
        .collect()
        .await;
        assert_eq!(messages.len(), 4);
        assert!(matches!(messages[0].part, Some(Part::Header(_))));
        let mut got = Vec::new();
        for m in &messages[1..] {
            let Some(Part::Entries(batch)) = &m.part else {
                panic!("expected entries, got {m:?}");
            };
            assert!(batch.entries.len() <= ENTRIES_PER_BATCH);
            got.extend(batch.entries.iter().cloned());
        }
        let want: Vec<pb::ManifestEntry> = entries(n).into_iter().map(Into::into).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn empty_blob_commits_a_header_only() {
        let messages: Vec<_> =
            commit_messages(pb::CommitHeader::default(), Arc::default(), Arc::default())
                .collect()
                .await;
        assert_eq!(messages.len(), 1);
    }

    #[test]
    fn missing_chunks_are_located_at_their_first_offset_in_file_order() -> Result<()> {
        let parts: [&[u8]; 4] = [b"aaaa", b"bb", b"aaaa", b"cccccc"];
        let entries = entries_of(&parts);
        let spans = locate(&entries, &[ChunkId::of(b"cccccc"), ChunkId::of(b"aaaa")])?;
        assert_eq!(
            spans,
            vec![
                Span {
                    id: ChunkId::of(b"aaaa"),
                    offset: 0,
                    len: 4
                },
                Span {
                    id: ChunkId::of(b"cccccc"),
                    offset: 10,
                    len: 6
                },
            ]
        );
        Ok(())
    }

    #[test]
    fn a_missing_chunk_outside_the_blob_is_a_protocol_error() {
        let entries = entries_of(&[b"aaaa"]);
        let err = locate(&entries, &[ChunkId::of(b"zz")]).err();
        assert!(matches!(err, Some(Error::Protocol(_))), "{err:?}");
    }

    #[tokio::test]
    async fn reupload_reads_exactly_the_missing_chunks_back_from_the_file() -> Result<()> {
        let parts: [&[u8]; 4] = [b"first", b"second", b"third", b"fourth"];
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("blob");
        std::fs::write(&path, parts.concat()).map_err(|e| Error::io("write", e))?;
        let entries = entries_of(&parts);
        let wanted = [ChunkId::of(b"fourth"), ChunkId::of(b"second")];
        let mut got = Vec::new();
        let sent = reupload(&path, "blob", &entries, &wanted, &mut |chunks| {
            let n = chunks.len() as u64;
            got.extend(chunks);
            async move {
                Ok(Sent {
                    chunks: n,
                    bytes: 7,
                })
            }
        })
        .await?;
        assert_eq!(
            got,
            vec![
                (ChunkId::of(b"second"), Bytes::from_static(b"second")),
                (ChunkId::of(b"fourth"), Bytes::from_static(b"fourth")),
            ]
        );
        assert_eq!(
            sent,
            Sent {
                chunks: 2,
                bytes: 7
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_file_changed_since_it_was_chunked_is_not_uploaded() -> Result<()> {
        let parts: [&[u8]; 2] = [b"first", b"second"];
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("blob");
        std::fs::write(&path, b"firstSECOND").map_err(|e| Error::io("write", e))?;
        let entries = entries_of(&parts);
        let mut uploads = 0;
        let err = reupload(
            &path,
            "blob",
            &entries,
            &[ChunkId::of(b"second")],
            &mut |_| {
                uploads += 1;
                async { Ok(Sent::default()) }
            },
        )
        .await
        .err();
        assert_eq!(uploads, 0);
        let Some(Error::CommitIncomplete { missing: 1, why }) = err else {
            panic!("expected CommitIncomplete, got {err:?}");
        };
        assert!(why.contains("blob changed during the push"), "{why}");
        // Truncated: the chunk's bytes are gone.
        std::fs::write(&path, b"first").map_err(|e| Error::io("write", e))?;
        let err = reupload(
            &path,
            "blob",
            &entries,
            &[ChunkId::of(b"second")],
            &mut |_| async { Ok(Sent::default()) },
        )
        .await
        .err();
        assert!(
            matches!(err, Some(Error::CommitIncomplete { .. })),
            "{err:?}"
        );
        Ok(())
    }
}
