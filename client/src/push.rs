//! Push: chunk and hash a blob locally, upload only the chunks the server lacks, then commit
//! the manifest under a ref.
//!
//! # Pipeline
//!
//! ```text
//! reader ─▶ chunk + blob hash ─▶ window ─▶ chunk ids ─▶ FindMissing ─▶ lz4 ─▶ Upload ─┐
//!           (a blocking thread   (≤1024    (blocking    (new ids      (blocking  (≤3    │
//!            for a file, else     chunks,   pool, in     only)         pool)     streams)│
//!            the caller's task)   ≤8 MiB)   parallel)                                   ▼
//!                                                                   all done ─▶ Commit
//! ```
//!
//! The commit and its bounded retry (upload what the server lacks at commit time, commit
//! again) are in [`crate::commit`].
//!
//! Memory is bounded whatever the blob size: a window is at most 8 MiB, one is being filled,
//! one queued, one looked up and at most three (`UPLOADS_IN_FLIGHT`) compressing or
//! uploading (a permit is taken *before* the upload task is spawned, so the reader cannot run
//! ahead). What grows with the blob is 36 bytes per chunk for the manifest plus the set of ids
//! already handled, so a chunk repeated in the blob is looked up and uploaded once.
//!
//! Uploads use a connection of their own (see [`Client`]), so FindMissing answers are never
//! queued behind megabytes of frames.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use scipcache_proto::{convert, pb};
use scipcache_tiers::codec::{Compression, Frame};
use scipcache_tiers::ids::{BlobId, ChunkId};
use scipcache_tiers::manifest::ManifestEntry;
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::scip::{CutMode, Cutter, SPLITTER_VERSION, VersionTable};
use tokio::io::AsyncRead;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::commit::{self, Reread, Sent};
use crate::connect::Client;
use crate::error::{Error, Result};
use crate::progress::{SharedProgress, report};
use crate::report::PushReport;
use crate::retry;
use crate::window::{
    UPLOAD_MESSAGE_BYTES, UPLOADS_IN_FLIGHT, WINDOW_MAX_BYTES, WINDOW_MAX_CHUNKS, WindowBuilder,
    first_sightings, group_by_size, parallelism, split_even,
};

/// How a push sets its ref.
#[derive(Clone, Default)]
pub struct PushOptions {
    /// The ref expires this long after the push; `None` keeps it until deleted.
    pub ttl: Option<Duration>,
    /// Labels stored with the ref.
    pub labels: Vec<(String, String)>,
    /// Told about bytes as their window is stored (uploaded or found present).
    pub progress: Option<SharedProgress>,
    /// How to cut the blob; `None` picks the best the server accepts (SCIP-aware cutting
    /// with version normalization when it advertises this client's splitter version, plain
    /// FastCDC otherwise).
    pub cutting: Option<CutMode>,
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("ttl", &self.ttl)
            .field("labels", &self.labels)
            .field("progress", &self.progress.as_ref().map(|_| "<progress>"))
            .field("cutting", &self.cutting)
            .finish()
    }
}

impl PushOptions {
    /// The header fields checked: a TTL of at least a second, label keys non-empty and unique.
    fn checked(&self) -> Result<(u64, HashMap<String, String>)> {
        let ttl_seconds = match self.ttl {
            None => 0,
            Some(ttl) if ttl < Duration::from_secs(1) => {
                return Err(Error::InvalidArgument(format!(
                    "a TTL must be at least 1s, not {}",
                    humantime::format_duration(ttl)
                )));
            }
            // Rounded up: 0 would mean "never expires".
            Some(ttl) => ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0),
        };
        let mut labels = HashMap::with_capacity(self.labels.len());
        for (k, v) in &self.labels {
            if k.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "label with value {v:?} has an empty key"
                )));
            }
            if labels.insert(k.clone(), v.clone()).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "label {k:?} is given more than once"
                )));
            }
        }
        Ok((ttl_seconds, labels))
    }
}

/// What the reader stage learned about the blob.
#[derive(Debug)]
struct Chunked {
    blob: BlobId,
    bytes: u64,
    chunks: u64,
    /// One flag per chunk, in order: stored with version placeholders.
    normalized: Vec<bool>,
    /// What the placeholders stand for.
    versions: VersionTable,
    /// Whether the cutter took the blob for a SCIP index (cut at least one field as a unit).
    scip: bool,
}

/// What the window stage produced.
#[derive(Debug)]
struct Planned {
    entries: Vec<ManifestEntry>,
    new_chunks: u64,
    bytes_sent: u64,
}

/// One window's upload.
#[derive(Debug)]
struct Uploaded {
    chunks: u64,
    bytes_sent: u64,
}

impl Client {
    /// Pushes the blob read from `reader` under `key` in `ns`.
    ///
    /// Calls only [`crate::Progress::advance`] on `opts.progress`: the caller knows the total,
    /// if anyone does. A reader cannot be read again, so when the server lost chunks between
    /// the lookup and the commit this fails with [`Error::CommitIncomplete`] (see
    /// [`Error::is_missing_chunks`]); pushing again from the start fixes that.
    /// [`Client::push_file`] instead uploads the lost chunks from the file and commits again.
    pub async fn push<R>(
        &self,
        ns: &Namespace,
        key: &RefKey,
        reader: R,
        opts: &PushOptions,
    ) -> Result<PushReport>
    where
        R: AsyncRead + Unpin + Send,
    {
        let source = Reread::Stream { name: "the blob" };
        self.push_from(ns, key, Source::Async(reader), opts, source)
            .await
    }

    /// Pushes the file at `path`, streaming it (memory stays bounded however large it is).
    /// When the commit fails because the server lost chunks meanwhile, reads exactly those
    /// back from the file, uploads them and commits again (a bounded number of times; see
    /// [`crate::commit`]). A path that is not a regular file (a FIFO, `/dev/stdin`) is read
    /// as a stream, as [`Client::push`] reads.
    pub async fn push_file(
        &self,
        ns: &Namespace,
        key: &RefKey,
        path: &Path,
        opts: &PushOptions,
    ) -> Result<PushReport> {
        let name = path.display().to_string();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(format!("cannot open {name}"), e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("cannot stat {name}"), e))?;
        if meta.is_dir() {
            return Err(Error::InvalidArgument(format!("{name} is a directory")));
        }
        report(opts.progress.as_ref(), |p| p.start(meta.len()));
        let source = if meta.is_file() {
            Reread::File {
                path,
                name: &name,
                mode: CutMode::Plain,
            }
        } else {
            Reread::Stream { name: &name }
        };
        let file = Source::<tokio::io::Empty>::File(file.into_std().await);
        let result = self.push_from(ns, key, file, opts, source).await;
        report(opts.progress.as_ref(), |p| p.finish());
        result
    }

    async fn push_from<R>(
        &self,
        ns: &Namespace,
        key: &RefKey,
        reader: Source<R>,
        opts: &PushOptions,
        source: Reread<'_>,
    ) -> Result<PushReport>
    where
        R: AsyncRead + Unpin + Send,
    {
        let started = Instant::now();
        let (ttl_seconds, labels) = opts.checked()?;
        let mode = self.cut_mode(opts.cutting)?;
        let cutter = Cutter::new(self.server_info().chunker, mode)
            .map_err(|e| Error::Protocol(format!("the server's chunker spec is unusable: {e}")))?;
        let (windows_tx, windows_rx) = mpsc::channel(1);
        let planner = Planner::new(self, ns, opts.progress.clone());
        // Both stages run in this task: the reader needs no 'static bound, and the planner
        // only waits on work it hands to other threads.
        let name = source.name().to_owned();
        let reading = async {
            match reader {
                Source::Async(reader) => read_windows(reader, cutter, windows_tx, &name).await,
                Source::File(file) => {
                    crate::blocking::spawn(move || {
                        read_file_windows(file, cutter, &windows_tx, &name)
                    })
                    .await?
                }
            }
        };
        let (chunked, planned) = tokio::try_join!(reading, planner.run(windows_rx))?;
        let header = pb::CommitHeader {
            namespace: ns.to_string(),
            key: key.to_string(),
            blob: Bytes::copy_from_slice(chunked.blob.as_bytes()),
            size: chunked.bytes,
            chunker: Some(self.server_info().chunker.into()),
            chunk_count: planned.entries.len() as u64,
            ttl_seconds,
            labels,
            // A blob cut as plain bytes from its start keeps a format-1 manifest.
            scip_splitter: if chunked.scip { SPLITTER_VERSION } else { 0 },
            versions: convert::version_entries(&chunked.versions),
        };
        // Chunks the commit finds missing go up the way the pipeline's do.
        let namespace = ns.to_string();
        let reupload = |chunks| {
            let namespace = namespace.clone();
            async move {
                let done = upload_window(self, namespace, chunks).await?;
                Ok(Sent {
                    chunks: done.chunks,
                    bytes: done.bytes_sent,
                })
            }
        };
        let committed = self
            .commit_with_retry(
                header,
                planned.entries,
                chunked.normalized,
                source.cut_with(mode),
                reupload,
            )
            .await?;
        Ok(PushReport {
            ns: ns.clone(),
            key: key.clone(),
            blob: chunked.blob,
            bytes: chunked.bytes,
            chunks: chunked.chunks,
            new_chunks: planned.new_chunks + committed.reuploaded,
            bytes_sent: planned.bytes_sent + committed.bytes_sent,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// What a push reads.
enum Source<R> {
    /// Any reader, read on the pushing task.
    Async(R),
    /// A file, read, cut and hashed on a blocking thread of its own (the CLI's case): no
    /// hand-off to the blocking pool per read, and no copy out of tokio's file buffer.
    File(std::fs::File),
}

/// Size of each read from a file or a stream.
const READ_BLOCK: usize = 4 << 20;
/// A block at least this large is hashed on a thread of its own while it is cut.
const HASH_APART_MIN: usize = 1 << 20;

impl Client {
    /// The cutting a push uses: `asked`, or the best the server accepts.
    fn cut_mode(&self, asked: Option<CutMode>) -> Result<CutMode> {
        let scip = self.server_info().scip_splitter == SPLITTER_VERSION;
        match asked {
            None if scip => Ok(CutMode::Normalized),
            None | Some(CutMode::Plain) => Ok(CutMode::Plain),
            Some(mode) if scip => Ok(mode),
            Some(mode) => Err(Error::InvalidArgument(format!(
                "{mode:?} cutting needs a server that accepts SCIP splitter version \
                 {SPLITTER_VERSION}; this one advertises {}",
                self.server_info().scip_splitter
            ))),
        }
    }
}

/// The cutting half of both reader stages: hashes the input, cuts it, fills windows.
struct Windows<'a> {
    cutter: Cutter,
    hasher: blake3::Hasher,
    window: WindowBuilder,
    normalized: Vec<bool>,
    bytes: u64,
    source: &'a str,
}

impl<'a> Windows<'a> {
    fn new(cutter: Cutter, source: &'a str) -> Self {
        Self {
            cutter,
            hasher: blake3::Hasher::new(),
            window: WindowBuilder::new(WINDOW_MAX_CHUNKS, WINDOW_MAX_BYTES),
            normalized: Vec::new(),
            bytes: 0,
            source,
        }
    }

    /// Takes `block` of input (`eof` after the last one) and returns the windows it filled.
    /// A large block is hashed into the blob's id on a thread of its own while it is cut.
    fn feed(&mut self, block: &[u8], eof: bool) -> Result<Vec<Vec<Bytes>>> {
        self.bytes += block.len() as u64;
        self.cutter.push(block);
        let Self {
            hasher,
            cutter,
            window,
            normalized,
            source,
            ..
        } = self;
        let mut cut = || -> Result<Vec<Vec<Bytes>>> {
            let mut full = Vec::new();
            while let Some(cut) = cutter
                .next_cut(eof)
                .map_err(|e| Error::Internal(format!("cannot cut {source}: {e}")))?
            {
                normalized.push(cut.normalized);
                if let Some(window) = window.push(cut.data) {
                    full.push(window);
                }
            }
            if eof && let Some(last) = window.finish() {
                full.push(last);
            }
            Ok(full)
        };
        if block.len() < HASH_APART_MIN {
            hasher.update(block);
            return cut();
        }
        std::thread::scope(|s| {
            let hashing = s.spawn(|| {
                hasher.update(block);
            });
            let full = cut();
            hashing
                .join()
                .map_err(|_| Error::Internal("the blob hash thread panicked".into()))?;
            full
        })
    }

    fn finish(self) -> Chunked {
        Chunked {
            blob: self.hasher.finalize().into(),
            bytes: self.bytes,
            chunks: self.normalized.len() as u64,
            normalized: self.normalized,
            scip: self.cutter.units() > 0,
            versions: self.cutter.finish(),
        }
    }
}

fn stopped() -> Error {
    Error::Internal("the push's upload stage stopped early".into())
}

/// The reader stage for a file, on a blocking thread: reads large blocks, cuts and hashes
/// them, and hands the chunks on in windows.
fn read_file_windows(
    mut file: std::fs::File,
    cutter: Cutter,
    windows: &mpsc::Sender<Vec<Bytes>>,
    source: &str,
) -> Result<Chunked> {
    let mut stage = Windows::new(cutter, source);
    let mut buf = vec![0u8; READ_BLOCK];
    loop {
        let n = read_some(&mut file, &mut buf)
            .map_err(|e| Error::io(format!("cannot read {source}"), e))?;
        for full in stage.feed(&buf[..n], n == 0)? {
            windows.blocking_send(full).map_err(|_| stopped())?;
        }
        if n == 0 {
            return Ok(stage.finish());
        }
    }
}

/// One `read`, retried when interrupted by a signal.
fn read_some(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The reader stage for any reader: the same as [`read_file_windows`], on the caller's task.
async fn read_windows<R>(
    mut reader: R,
    cutter: Cutter,
    windows: mpsc::Sender<Vec<Bytes>>,
    source: &str,
) -> Result<Chunked>
where
    R: AsyncRead + Unpin + Send,
{
    use tokio::io::AsyncReadExt;
    let mut stage = Windows::new(cutter, source);
    let mut buf = BytesMut::with_capacity(READ_BLOCK);
    loop {
        buf.clear();
        let n = reader
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::io(format!("cannot read {source}"), e))?;
        for full in stage.feed(&buf[..n], n == 0)? {
            windows.send(full).await.map_err(|_| stopped())?;
        }
        if n == 0 {
            return Ok(stage.finish());
        }
    }
}

/// The window stage: ids, lookups, and the spawning of bounded uploads.
struct Planner {
    client: Client,
    namespace: String,
    progress: Option<SharedProgress>,
    seen: HashSet<ChunkId>,
    entries: Vec<ManifestEntry>,
    uploads: JoinSet<Result<Uploaded>>,
    permits: Arc<Semaphore>,
    new_chunks: u64,
    bytes_sent: u64,
}

impl Planner {
    fn new(client: &Client, ns: &Namespace, progress: Option<SharedProgress>) -> Self {
        Self {
            client: client.clone(),
            namespace: ns.to_string(),
            progress,
            seen: HashSet::new(),
            entries: Vec::new(),
            uploads: JoinSet::new(),
            permits: Arc::new(Semaphore::new(UPLOADS_IN_FLIGHT)),
            new_chunks: 0,
            bytes_sent: 0,
        }
    }

    async fn run(mut self, mut windows: mpsc::Receiver<Vec<Bytes>>) -> Result<Planned> {
        while let Some(window) = windows.recv().await {
            self.window(window).await?;
        }
        while let Some(done) = self.uploads.join_next().await {
            self.absorb(done?)?;
        }
        Ok(Planned {
            entries: self.entries,
            new_chunks: self.new_chunks,
            bytes_sent: self.bytes_sent,
        })
    }

    fn absorb(&mut self, done: Result<Uploaded>) -> Result<()> {
        let done = done?;
        self.new_chunks += done.chunks;
        self.bytes_sent += done.bytes_sent;
        Ok(())
    }

    async fn window(&mut self, chunks: Vec<Bytes>) -> Result<()> {
        let window_bytes: usize = chunks.iter().map(Bytes::len).sum();
        let chunks = Arc::new(chunks);
        let ids = hash_ids(Arc::clone(&chunks), window_bytes).await?;
        self.entries
            .extend(ids.iter().zip(chunks.iter()).map(|(&id, c)| ManifestEntry {
                id,
                // Lossless: chunks are at most the spec's max, itself at most 16 MiB.
                len: c.len() as u32,
            }));
        let limit = self.client.server_info().max_chunks_per_blob;
        if limit > 0 && self.entries.len() as u64 > limit {
            return Err(Error::TooLarge(format!(
                "the blob has more than {limit} chunks, the most the server accepts in one blob"
            )));
        }
        let fresh = first_sightings(&ids, &mut self.seen);
        let fresh_ids: Vec<ChunkId> = fresh.iter().map(|&i| ids[i]).collect();
        let missing = self.find_missing(&fresh_ids).await?;
        let to_send: Vec<(ChunkId, Bytes)> = fresh
            .into_iter()
            .filter(|&i| missing.contains(&ids[i]))
            .map(|i| (ids[i], chunks[i].clone()))
            .collect();
        drop(chunks);
        if to_send.is_empty() {
            report(self.progress.as_ref(), |p| p.advance(window_bytes as u64));
            return Ok(());
        }
        // The permit comes before the spawn: without it the reader would run ahead and fill
        // memory with windows waiting to upload.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the upload limiter was closed".into()))?;
        while let Some(done) = self.uploads.try_join_next() {
            self.absorb(done?)?;
        }
        let client = self.client.clone();
        let namespace = self.namespace.clone();
        let progress = self.progress.clone();
        self.uploads.spawn(async move {
            let uploaded = upload_window(&client, namespace, to_send).await?;
            drop(permit);
            report(progress.as_ref(), |p| p.advance(window_bytes as u64));
            Ok(uploaded)
        });
        Ok(())
    }

    /// `Chunks/FindMissing` for `ids`, in batches the server accepts.
    async fn find_missing(&mut self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>> {
        let (missing, sent) = commit::find_missing(&self.client, &self.namespace, ids).await?;
        self.bytes_sent += sent;
        Ok(missing)
    }
}

/// Hashes each chunk of a window, on the blocking pool, in parallel when it pays.
async fn hash_ids(chunks: Arc<Vec<Bytes>>, bytes: usize) -> Result<Vec<ChunkId>> {
    let parts: Vec<_> = split_even(chunks.len(), parallelism(bytes))
        .into_iter()
        .map(|range| {
            let chunks = Arc::clone(&chunks);
            crate::blocking::spawn(move || {
                chunks[range]
                    .iter()
                    .map(|c| ChunkId::of(c))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(chunks.len());
    for part in parts {
        ids.extend(part.await?);
    }
    Ok(ids)
}

/// lz4-compresses chunks into frames, on the blocking pool, in parallel when it pays.
async fn compress(chunks: Vec<(ChunkId, Bytes)>) -> Result<Vec<pb::ChunkFrame>> {
    let bytes = chunks.iter().map(|(_, c)| c.len()).sum();
    let chunks = Arc::new(chunks);
    let parts: Vec<_> = split_even(chunks.len(), parallelism(bytes))
        .into_iter()
        .map(|range| {
            let chunks = Arc::clone(&chunks);
            crate::blocking::spawn(move || {
                chunks[range]
                    .iter()
                    .map(|(id, raw)| {
                        let frame = Frame::encode(raw, Compression::Lz4).map_err(|e| {
                            Error::Internal(format!("cannot encode chunk {id}: {e}"))
                        })?;
                        Ok(pb::ChunkFrame {
                            id: Bytes::copy_from_slice(id.as_bytes()),
                            frame: frame.into_bytes(),
                            restored: false,
                            normalized: false,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
        })
        .collect();
    let mut frames = Vec::with_capacity(chunks.len());
    for part in parts {
        frames.extend(part.await??);
    }
    Ok(frames)
}

/// Upload messages of about [`UPLOAD_MESSAGE_BYTES`]; the namespace goes in the first.
fn upload_messages(
    namespace: String,
    frames: Vec<pb::ChunkFrame>,
    max_message_bytes: usize,
) -> Vec<pb::UploadRequest> {
    // Room for the namespace and the message's own framing.
    let budget = UPLOAD_MESSAGE_BYTES.min(max_message_bytes.saturating_sub(64 * 1024).max(1));
    let frame_size = |f: &pb::ChunkFrame| {
        let len = f.encoded_len();
        len + prost::length_delimiter_len(len) + 1
    };
    let mut namespace = Some(namespace);
    group_by_size(frames, frame_size, budget)
        .into_iter()
        .map(|chunks| pb::UploadRequest {
            namespace: namespace.take().unwrap_or_default(),
            chunks,
        })
        .collect()
}

/// Compresses and uploads one window's missing chunks over one `Chunks/Upload` stream,
/// retrying on `UNAVAILABLE` (uploads are idempotent: content-addressed).
async fn upload_window(
    client: &Client,
    namespace: String,
    chunks: Vec<(ChunkId, Bytes)>,
) -> Result<Uploaded> {
    let count = chunks.len() as u64;
    let frames = compress(chunks).await?;
    let messages = upload_messages(namespace, frames, client.server_info().max_message_bytes);
    let size: u64 = messages.iter().map(|m| m.encoded_len() as u64).sum();
    let mut bytes_sent = 0;
    let mut retry = 0;
    loop {
        bytes_sent += size;
        let stream = futures::stream::iter(messages.clone());
        match client.bulk_chunks().upload(stream).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                tracing::debug!(
                    received = answer.received,
                    stored = answer.stored,
                    already_present = answer.already_present,
                    "uploaded a window"
                );
                return Ok(Uploaded {
                    chunks: count,
                    bytes_sent,
                });
            }
            Err(s) if s.code() == tonic::Code::Unavailable && retry + 1 < retry::ATTEMPTS => {
                tokio::time::sleep(retry::backoff(retry)).await;
                retry += 1;
            }
            Err(s) => return Err(s.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_and_zero_is_refused() -> Result<()> {
        let opts = |ttl| PushOptions {
            ttl,
            ..PushOptions::default()
        };
        assert_eq!(opts(None).checked()?.0, 0);
        assert_eq!(opts(Some(Duration::from_secs(90))).checked()?.0, 90);
        assert_eq!(opts(Some(Duration::from_millis(1500))).checked()?.0, 2);
        assert!(matches!(
            opts(Some(Duration::from_millis(10))).checked(),
            Err(Error::InvalidArgument(_))
        ));
        Ok(())
    }

    #[test]
    fn labels_need_unique_non_empty_keys() -> Result<()> {
        let opts = |labels: &[(&str, &str)]| PushOptions {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..PushOptions::default()
        };
        let (_, labels) = opts(&[("ci", "github"), ("lang", "")]).checked()?;
        assert_eq!(labels.get("ci").map(String::as_str), Some("github"));
        assert!(opts(&[("", "x")]).checked().is_err());
        assert!(opts(&[("a", "1"), ("a", "2")]).checked().is_err());
        Ok(())
    }

    #[tokio::test]
    async fn compressed_frames_decode_to_their_chunks() -> Result<()> {
        let chunks: Vec<(ChunkId, Bytes)> = (0..40u32)
            .map(|i| {
                let raw = Bytes::from(i.to_le_bytes().repeat(2000 + i as usize));
                (ChunkId::of(&raw), raw)
            })
            .collect();
        let frames = compress(chunks.clone()).await?;
        assert_eq!(frames.len(), chunks.len());
        for (frame, (id, raw)) in frames.iter().zip(&chunks) {
            assert_eq!(&frame.id[..], id.as_bytes());
            let decoded = Frame::from_bytes(frame.frame.clone())
                .and_then(|f| f.decode_verified(id, raw.len()))
                .map_err(|e| Error::Internal(e.to_string()))?;
            assert_eq!(decoded, raw);
            assert!(
                frame.frame.len() < raw.len(),
                "repetitive data must compress"
            );
        }
        Ok(())
    }

    #[test]
    fn upload_messages_carry_the_namespace_first_and_stay_within_budget() {
        let frames: Vec<pb::ChunkFrame> = (0..10u8)
            .map(|i| pb::ChunkFrame {
                id: Bytes::from(vec![i; 32]),
                frame: Bytes::from(vec![i; 1024 * 1024]),
                restored: false,
                normalized: false,
            })
            .collect();
        let messages = upload_messages("acme/web/app".into(), frames.clone(), 16 << 20);
        assert!(messages.len() >= 3);
        assert_eq!(messages[0].namespace, "acme/web/app");
        assert!(messages[1..].iter().all(|m| m.namespace.is_empty()));
        assert!(
            messages
                .iter()
                .all(|m| m.encoded_len() <= UPLOAD_MESSAGE_BYTES + 64)
        );
        let all: Vec<pb::ChunkFrame> = messages.into_iter().flat_map(|m| m.chunks).collect();
        assert_eq!(all, frames);
    }
}
