//! An in-memory stand-in for scipcached, implementing `scipcache.v1` just far enough to drive
//! the client end to end: one tenant, a bearer token, fault injection. The real daemon's
//! behaviour is tested in the workspace's `tests/` crate.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use scipcache_proto::convert::encode_missing_chunks;
use scipcache_proto::pb;
use scipcache_proto::pb::admin_server::{Admin, AdminServer};
use scipcache_proto::pb::blobs_server::{Blobs, BlobsServer};
use scipcache_proto::pb::chunks_server::{Chunks, ChunksServer};
use scipcache_proto::pb::info_server::{Info, InfoServer};
use scipcache_proto::pb::refs_server::{Refs, RefsServer};
use scipcache_proto::{
    MAX_IDS_PER_REQUEST, MAX_LISTED_MISSING, MAX_MESSAGE_BYTES, MISSING_CHUNKS_METADATA,
};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::codec::{Compression, Frame, MAX_CHUNK_LEN};
use scipcache_tiers::ids::{BlobId, ChunkId};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

pub const TOKEN: &str = "good-token";

#[derive(Clone, Debug)]
struct StoredRef {
    blob: Bytes,
    size: u64,
    entries: Vec<(ChunkId, u32)>,
    created_at_ms: u64,
    expires_at_ms: u64,
    labels: HashMap<String, String>,
}

#[derive(Default, Debug)]
pub struct State {
    chunks: Mutex<HashMap<ChunkId, Bytes>>,
    refs: Mutex<BTreeMap<(String, String), StoredRef>>,
    clock: AtomicU64,
    /// Next commit fails with FAILED_PRECONDITION after forgetting every chunk.
    pub lose_chunks_at_next_commit: AtomicBool,
    /// Reads send one corrupted frame.
    pub corrupt_reads: AtomicBool,
    /// Reads announce a wrong blob id.
    pub lie_about_blob: AtomicBool,
    pub commits: AtomicU64,
    /// Keep only chunk ids, not their bytes (for pushes larger than the test should hold);
    /// commits then skip the blob hash check and reads fail.
    pub forget_bytes: AtomicBool,
    pub uploaded_frames: AtomicU64,
    /// The next `forgetful_commits` commits each forget this many distinct chunks of their
    /// manifest first (spread over it), and so fail with FAILED_PRECONDITION listing them.
    pub forget_per_commit: AtomicUsize,
    pub forgetful_commits: AtomicU64,
    /// What the last forgetful commit forgot.
    pub forgotten: Mutex<Vec<ChunkId>>,
    /// FAILED_PRECONDITION carries no machine-readable list (a server that predates it).
    pub unlisted_missing: AtomicBool,
    /// Every chunk id uploaded, in order, and `uploads.len()` at the start of each commit.
    pub uploads: Mutex<Vec<ChunkId>>,
    pub uploads_at_commit: Mutex<Vec<usize>>,
}

impl State {
    pub fn chunk_count(&self) -> usize {
        self.chunks.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The chunk ids uploaded after commit number `n` (from 1) and before the next one;
    /// `n = 0` means before the first commit.
    pub fn uploaded_after_commit(&self, n: usize) -> Vec<ChunkId> {
        let (Ok(uploads), Ok(marks)) = (self.uploads.lock(), self.uploads_at_commit.lock()) else {
            return Vec::new();
        };
        let from = match n {
            0 => 0,
            n => marks.get(n - 1).copied().unwrap_or(uploads.len()),
        };
        let to = marks.get(n).copied().unwrap_or(uploads.len());
        uploads[from..to].to_vec()
    }

    /// Forgets `count` distinct chunks of `entries`, spread over it, if a forgetful commit is
    /// due.
    fn forget_some(&self, entries: &[(ChunkId, u32)]) -> Result<(), Status> {
        let due = self
            .forgetful_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !due {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<ChunkId> = entries
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| seen.insert(*c))
            .collect();
        let count = self
            .forget_per_commit
            .load(Ordering::SeqCst)
            .min(distinct.len());
        let stride = (distinct.len() / count.max(1)).max(1);
        let forget: Vec<ChunkId> = distinct
            .iter()
            .step_by(stride)
            .take(count)
            .copied()
            .collect();
        let mut chunks = self.chunks.lock().map_err(|_| Status::internal("lock"))?;
        for c in &forget {
            chunks.remove(c);
        }
        *self
            .forgotten
            .lock()
            .map_err(|_| Status::internal("lock"))? = forget;
        Ok(())
    }

    /// FAILED_PRECONDITION as the daemon answers it: the ids in the message and, unless
    /// `unlisted_missing`, as `MissingChunks` metadata.
    fn missing_status(&self, missing: &[ChunkId]) -> Status {
        let listed: Vec<String> = missing
            .iter()
            .take(MAX_LISTED_MISSING)
            .map(ToString::to_string)
            .collect();
        let message = format!("{} chunks are missing: {}", missing.len(), listed.join(","));
        let mut metadata = tonic::metadata::MetadataMap::new();
        if !self.unlisted_missing.load(Ordering::SeqCst) {
            metadata.insert_bin(
                MISSING_CHUNKS_METADATA,
                tonic::metadata::MetadataValue::from_bytes(&encode_missing_chunks(
                    missing,
                    missing.len() as u64,
                )),
            );
        }
        Status::with_metadata(tonic::Code::FailedPrecondition, message, metadata)
    }
}

type Shared = Arc<State>;

fn check_auth<T>(req: &Request<T>) -> Result<(), Status> {
    match req.metadata().get("authorization").map(|v| v.to_str()) {
        Some(Ok(v)) if v == format!("Bearer {TOKEN}") => Ok(()),
        Some(_) => Err(Status::unauthenticated("the token is not valid")),
        None => Err(Status::unauthenticated("no token: pass --token")),
    }
}

fn id(bytes: &[u8]) -> Result<ChunkId, Status> {
    ChunkId::from_slice(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn spec() -> ChunkerSpec {
    ChunkerSpec::default()
}

#[derive(Clone, Debug)]
struct Svc(Shared);

#[tonic::async_trait]
impl Info for Svc {
    async fn get_server_info(
        &self,
        _req: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::ServerInfo>, Status> {
        Ok(Response::new(pb::ServerInfo {
            version: "fake".into(),
            chunker: Some(spec().into()),
            max_ids_per_request: MAX_IDS_PER_REQUEST as u32,
            max_message_bytes: MAX_MESSAGE_BYTES as u32,
            max_chunks_per_blob: 1 << 20,
            // The fake cuts and stores plainly.
            scip_splitter: 0,
        }))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Chunks for Svc {
    async fn find_missing(
        &self,
        req: Request<pb::FindMissingRequest>,
    ) -> Result<Response<pb::FindMissingResponse>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        if req.ids.len() > MAX_IDS_PER_REQUEST {
            return Err(Status::invalid_argument("too many ids"));
        }
        let chunks = self.0.chunks.lock().map_err(|_| Status::internal("lock"))?;
        let mut missing = Vec::new();
        for raw in req.ids {
            if !chunks.contains_key(&id(&raw)?) {
                missing.push(raw);
            }
        }
        Ok(Response::new(pb::FindMissingResponse { missing }))
    }

    async fn upload(
        &self,
        req: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        check_auth(&req)?;
        let mut stream = req.into_inner();
        let mut first = true;
        let mut answer = pb::UploadResponse::default();
        while let Some(msg) = stream.message().await? {
            if first && msg.namespace.is_empty() {
                return Err(Status::invalid_argument(
                    "the first upload message names no namespace",
                ));
            }
            first = false;
            for f in msg.chunks {
                let cid = id(&f.id)?;
                let raw = Frame::from_bytes(f.frame)
                    .and_then(|fr| fr.decode_verified(&cid, MAX_CHUNK_LEN))
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                answer.received += 1;
                self.0.uploaded_frames.fetch_add(1, Ordering::Relaxed);
                self.0
                    .uploads
                    .lock()
                    .map_err(|_| Status::internal("lock"))?
                    .push(cid);
                let raw = if self.0.forget_bytes.load(Ordering::Relaxed) {
                    Bytes::new()
                } else {
                    raw
                };
                let mut chunks = self.0.chunks.lock().map_err(|_| Status::internal("lock"))?;
                if chunks.insert(cid, raw).is_some() {
                    answer.already_present += 1;
                } else {
                    answer.stored += 1;
                }
            }
        }
        Ok(Response::new(answer))
    }

    type ReadStream = BoxStream<pb::ChunkFrame>;

    async fn read(
        &self,
        req: Request<pb::ReadChunksRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let refs = self.0.refs.lock().map_err(|_| Status::internal("lock"))?;
        let stored = refs
            .get(&(req.namespace.clone(), req.key.clone()))
            .ok_or_else(|| Status::not_found(format!("no ref in {}", req.namespace)))?;
        let chunks = self.0.chunks.lock().map_err(|_| Status::internal("lock"))?;
        let mut out = Vec::new();
        for raw_id in req.ids {
            let cid = id(&raw_id)?;
            if !stored.entries.iter().any(|(e, _)| *e == cid) {
                return Err(Status::permission_denied("chunk not in that blob"));
            }
            let raw = chunks.get(&cid).ok_or_else(|| Status::data_loss("lost"))?;
            let frame = Frame::encode(raw, Compression::Lz4)
                .map_err(|e| Status::internal(e.to_string()))?;
            out.push(Ok(pb::ChunkFrame {
                id: raw_id,
                frame: frame.into_bytes(),
                restored: false,
                normalized: false,
            }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(out))))
    }
}

impl Svc {
    fn resolve(
        &self,
        ns: &str,
        key: &str,
        fallbacks: &[String],
    ) -> Result<(String, StoredRef), Status> {
        let refs = self.0.refs.lock().map_err(|_| Status::internal("lock"))?;
        if let Some(r) = refs.get(&(ns.to_owned(), key.to_owned())) {
            return Ok((key.to_owned(), r.clone()));
        }
        for prefix in fallbacks {
            let newest = refs
                .iter()
                .filter(|((n, k), _)| n == ns && k.starts_with(prefix.as_str()))
                .max_by_key(|(_, r)| r.created_at_ms);
            if let Some(((_, k), r)) = newest {
                return Ok((k.clone(), r.clone()));
            }
        }
        Err(Status::not_found(format!("no such ref in {ns}")))
    }

    fn info(ns: &str, key: &str, r: &StoredRef) -> pb::RefInfo {
        pb::RefInfo {
            namespace: ns.to_owned(),
            key: key.to_owned(),
            blob: r.blob.clone(),
            size: r.size,
            chunks: r.entries.len() as u64,
            manifest: Bytes::new(),
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            labels: r.labels.clone(),
            versions: Vec::new(),
        }
    }
}

#[tonic::async_trait]
impl Blobs for Svc {
    async fn commit(
        &self,
        req: Request<Streaming<pb::CommitRequest>>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        use pb::commit_request::Part;
        check_auth(&req)?;
        self.0.commits.fetch_add(1, Ordering::Relaxed);
        {
            let uploaded = self
                .0
                .uploads
                .lock()
                .map_err(|_| Status::internal("lock"))?
                .len();
            self.0
                .uploads_at_commit
                .lock()
                .map_err(|_| Status::internal("lock"))?
                .push(uploaded);
        }
        let mut stream = req.into_inner();
        let header = match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Header(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the commit must start with a header",
                ));
            }
        };
        if header.chunker != Some(spec().into()) {
            return Err(Status::invalid_argument("unexpected chunker spec"));
        }
        let mut entries = Vec::new();
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(Part::Entries(batch)) => {
                    for e in batch.entries {
                        entries.push((id(&e.id)?, e.len));
                    }
                }
                _ => return Err(Status::invalid_argument("a second header")),
            }
        }
        if entries.len() as u64 != header.chunk_count {
            return Err(Status::invalid_argument(
                "chunk_count disagrees with the entries",
            ));
        }
        let total: u64 = entries.iter().map(|(_, l)| u64::from(*l)).sum();
        if total != header.size {
            return Err(Status::invalid_argument(
                "the entries do not add up to the blob",
            ));
        }
        if self
            .0
            .lose_chunks_at_next_commit
            .swap(false, Ordering::SeqCst)
        {
            self.0
                .chunks
                .lock()
                .map_err(|_| Status::internal("lock"))?
                .clear();
        }
        self.0.forget_some(&entries)?;
        {
            let chunks = self.0.chunks.lock().map_err(|_| Status::internal("lock"))?;
            let mut seen = std::collections::HashSet::new();
            let missing: Vec<ChunkId> = entries
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| !chunks.contains_key(c) && seen.insert(*c))
                .collect();
            if !missing.is_empty() {
                return Err(self.0.missing_status(&missing));
            }
            let mut hasher = blake3::Hasher::new();
            for (c, _) in &entries {
                if let Some(raw) = chunks.get(c) {
                    hasher.update(raw);
                }
            }
            if !self.0.forget_bytes.load(Ordering::Relaxed)
                && BlobId::from(hasher.finalize()).as_bytes()[..] != header.blob[..]
            {
                return Err(Status::invalid_argument(
                    "blob id does not match the chunks",
                ));
            }
        }
        let now = self.0.clock.fetch_add(1, Ordering::SeqCst) + 1_700_000_000_000;
        let stored = StoredRef {
            blob: header.blob.clone(),
            size: header.size,
            entries,
            created_at_ms: now,
            expires_at_ms: if header.ttl_seconds == 0 {
                0
            } else {
                now + header.ttl_seconds * 1000
            },
            labels: header.labels.clone(),
        };
        let info = Self::info(&header.namespace, &header.key, &stored);
        self.0
            .refs
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .insert((header.namespace, header.key), stored);
        Ok(Response::new(pb::CommitResponse {
            r#ref: Some(info),
            manifest: Bytes::new(),
        }))
    }

    type ReadStream = BoxStream<pb::ReadBlobResponse>;

    async fn read(
        &self,
        req: Request<pb::ReadBlobRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        use pb::read_blob_response::Part;
        check_auth(&req)?;
        let req = req.into_inner();
        let (key, stored) = self.resolve(&req.namespace, &req.key, &req.fallback_prefixes)?;
        let mut info = Self::info(&req.namespace, &key, &stored);
        if self.0.lie_about_blob.load(Ordering::SeqCst) {
            info.blob = Bytes::copy_from_slice(BlobId::of(b"lie").as_bytes());
        }
        let chunks = self.0.chunks.lock().map_err(|_| Status::internal("lock"))?;
        let start = req.offset;
        let end = if req.length == 0 {
            stored.size
        } else {
            (start + req.length).min(stored.size)
        };
        let mut out = vec![Ok(pb::ReadBlobResponse {
            part: Some(Part::Ref(info)),
        })];
        let mut at = 0u64;
        let mut corrupt = self.0.corrupt_reads.load(Ordering::SeqCst);
        for (cid, len) in &stored.entries {
            let (lo, hi) = (at, at + u64::from(*len));
            at = hi;
            if hi <= start || lo >= end {
                continue;
            }
            let raw = chunks.get(cid).ok_or_else(|| Status::data_loss("lost"))?;
            let part = if lo >= start && hi <= end && req.accept_frames {
                let mut frame = Frame::encode(raw, Compression::Lz4)
                    .map_err(|e| Status::internal(e.to_string()))?
                    .into_bytes()
                    .to_vec();
                if corrupt {
                    corrupt = false;
                    if let Some(last) = frame.last_mut() {
                        *last ^= 0x55;
                    }
                }
                Part::Frame(pb::ChunkFrame {
                    id: Bytes::copy_from_slice(cid.as_bytes()),
                    frame: frame.into(),
                    restored: false,
                    normalized: false,
                })
            } else {
                let from = (start.max(lo) - lo) as usize;
                let to = (end.min(hi) - lo) as usize;
                Part::Data(raw.slice(from..to))
            };
            out.push(Ok(pb::ReadBlobResponse { part: Some(part) }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(out))))
    }

    async fn stat(
        &self,
        req: Request<pb::StatBlobRequest>,
    ) -> Result<Response<pb::RefInfo>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let (key, stored) = self.resolve(&req.namespace, &req.key, &req.fallback_prefixes)?;
        Ok(Response::new(Self::info(&req.namespace, &key, &stored)))
    }

    /// Everything is in memory, so everything is "hot": nothing to promote.
    async fn warm(
        &self,
        req: Request<pb::WarmRequest>,
    ) -> Result<Response<pb::WarmResponse>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let (_, stored) = self.resolve(&req.namespace, &req.key, &[])?;
        let distinct: std::collections::HashSet<ChunkId> =
            stored.entries.iter().map(|(c, _)| *c).collect();
        let chunks = distinct.len() as u64;
        Ok(Response::new(pb::WarmResponse {
            chunks,
            hot_chunks: chunks,
            promoted_chunks: 0,
            promoted_bytes: 0,
        }))
    }
}

#[tonic::async_trait]
impl Refs for Svc {
    async fn get(&self, req: Request<pb::GetRefRequest>) -> Result<Response<pb::RefInfo>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let (key, stored) = self.resolve(&req.namespace, &req.key, &[])?;
        Ok(Response::new(Self::info(&req.namespace, &key, &stored)))
    }

    async fn list(
        &self,
        req: Request<pb::ListRefsRequest>,
    ) -> Result<Response<pb::ListRefsResponse>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let refs = self.0.refs.lock().map_err(|_| Status::internal("lock"))?;
        let mut found: Vec<pb::RefInfo> = refs
            .iter()
            .filter(|((n, k), _)| *n == req.namespace && k.starts_with(&req.prefix))
            .map(|((n, k), r)| Self::info(n, k, r))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
        Ok(Response::new(pb::ListRefsResponse {
            refs: found,
            truncated: false,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRefRequest>,
    ) -> Result<Response<pb::DeleteRefResponse>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let deleted = self
            .0
            .refs
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .remove(&(req.namespace, req.key))
            .is_some();
        Ok(Response::new(pb::DeleteRefResponse { deleted }))
    }

    async fn delete_prefix(
        &self,
        req: Request<pb::DeletePrefixRequest>,
    ) -> Result<Response<pb::DeletePrefixResponse>, Status> {
        check_auth(&req)?;
        let req = req.into_inner();
        let mut refs = self.0.refs.lock().map_err(|_| Status::internal("lock"))?;
        let before = refs.len();
        refs.retain(|(n, k), _| !(*n == req.namespace && k.starts_with(&req.prefix)));
        Ok(Response::new(pb::DeletePrefixResponse {
            deleted: (before - refs.len()) as u64,
        }))
    }
}

#[tonic::async_trait]
impl Admin for Svc {
    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        check_auth(&req)?;
        let chunks = self.0.chunks.lock().map_err(|_| Status::internal("lock"))?;
        let refs = self.0.refs.lock().map_err(|_| Status::internal("lock"))?;
        Ok(Response::new(pb::StatsResponse {
            tiers: vec![pb::TierStats {
                name: "hot".into(),
                chunks: chunks.len() as u64,
                stored_bytes: chunks.values().map(|c| c.len() as u64).sum(),
                hits: 0,
            }],
            logical_bytes: refs.values().map(|r| r.size).sum(),
            refs: refs.len() as u64,
            cold_queue: 0,
            // Like a server that predates the movement figures.
            cold_recompress: 0,
            movement: None,
        }))
    }

    type GcStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::GcEvent, Status>>>;

    /// Two progress updates, then a report of as many live chunks as the fake holds.
    async fn gc(&self, req: Request<pb::GcRequest>) -> Result<Response<Self::GcStream>, Status> {
        use pb::gc_event::Event;
        check_auth(&req)?;
        let chunks = self
            .0
            .chunks
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .len() as u64;
        let progress = |phase: &str, done| pb::GcEvent {
            event: Some(Event::Progress(pb::LifecycleProgress {
                phase: phase.into(),
                done,
                total: chunks,
            })),
        };
        let events = vec![
            Ok(progress("mark", 0)),
            Ok(progress("mark", chunks)),
            Ok(pb::GcEvent {
                event: Some(Event::Report(pb::GcReport {
                    dry_run: req.get_ref().dry_run,
                    live_chunks: chunks,
                    grace_ms: req.get_ref().grace_ms.unwrap_or(3_600_000),
                    ..pb::GcReport::default()
                })),
            }),
        ];
        Ok(Response::new(tokio_stream::iter(events)))
    }

    type FsckStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::FsckEvent, Status>>>;

    /// A report of one corrupt copy, repaired when asked.
    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> Result<Response<Self::FsckStream>, Status> {
        check_auth(&req)?;
        let repair = req.get_ref().repair;
        let report = pb::FsckReport {
            checked_chunks: 1,
            corrupt: 1,
            repaired: u64::from(repair),
            problems: vec![pb::FsckProblem {
                what: "chunk 00: the warm copy is corrupt".into(),
                refs: vec!["acme/web/app commit/1".into()],
                repaired: repair,
            }],
            ..pb::FsckReport::default()
        };
        Ok(Response::new(tokio_stream::iter(vec![Ok(pb::FsckEvent {
            event: Some(pb::fsck_event::Event::Report(report)),
        })])))
    }
}

/// A running fake server.
#[derive(Debug)]
pub struct Fake {
    pub addr: SocketAddr,
    pub state: Shared,
}

impl Fake {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tls_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

/// Starts a fake server on 127.0.0.1:0 on its own runtime and threads, as a separate daemon
/// process would be; it runs until the test process ends.
pub async fn start() -> std::io::Result<Fake> {
    start_with(None).await
}

/// Like [`start`], serving TLS with the fixtures in `tests/data` and requiring a client
/// certificate signed by the test CA.
pub async fn start_tls() -> std::io::Result<Fake> {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let read = |name: &str| std::fs::read(format!("{data}/{name}"));
    // A workspace build links both rustls backends (object_store brings aws-lc-rs): pick ring,
    // as the client library does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            read("server.pem")?,
            read("server.key")?,
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(read("ca.pem")?));
    start_with(Some(tls)).await
}

async fn start_with(tls: Option<tonic::transport::ServerTlsConfig>) -> std::io::Result<Fake> {
    let state = Shared::default();
    let svc = Svc(Arc::clone(&state));
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match TcpListener::bind("127.0.0.1:0").await {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(listener.local_addr());
            if let Err(e) = serve(svc, listener, tls).await {
                eprintln!("fake server stopped: {e}");
            }
        });
    });
    let addr = rx
        .await
        .map_err(|_| std::io::Error::other("the fake server thread died"))??;
    Ok(Fake { addr, state })
}

async fn serve(
    svc: Svc,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
        .add_service(InfoServer::new(svc.clone()))
        .add_service(
            ChunksServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            BlobsServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(RefsServer::new(svc.clone()))
        .add_service(AdminServer::new(svc))
        // Like a real daemon must: small answers (FindMissing) would otherwise wait for Nagle.
        .serve_with_incoming(TcpListenerStream::new(listener).map(|conn| {
            conn.and_then(|c| {
                c.set_nodelay(true)?;
                Ok(c)
            })
        }))
        .await
}
