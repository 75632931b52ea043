//! `scipcache.v1.Blobs`: committing manifests under refs, streaming blobs out, and warming a
//! ref's chunks into the hot tier before a burst of reads.

use std::time::Duration;

use futures::StreamExt;
use scipcache_proto::pb::blobs_server::Blobs;
use scipcache_proto::pb::{commit_request, read_blob_response};
use scipcache_proto::{convert, pb};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::manifest::{Manifest, ManifestEntry};
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::store::{BlobPart, ReadForm};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    MAX_CHUNKS_PER_BLOB, STREAM_BUFFER, Shared, no_ref, parse_key, parse_namespace, parse_prefixes,
    ref_info,
};
use crate::audit::{Event, outcome};
use crate::auth::{Right, interceptor};
use crate::error::Error;
use crate::status;

/// Entries allocated up front for a commit; more grow as they arrive (never past the count
/// the header declares), so a header alone cannot make the server allocate for millions of
/// entries.
const INITIAL_ENTRIES: usize = 64 * 1024;

/// Request memory a commit reserves per manifest entry ([`crate::request_memory`]): the entry
/// and its offset in the blob while the manifest is checked, the index of an absent one, and
/// its encoding while the manifest is stored. Decoding one message at a time adds at most a
/// message (the gRPC message limit) to that.
pub const COMMIT_BYTES_PER_ENTRY: usize = size_of::<ManifestEntry>()
    + size_of::<bool>()
    + size_of::<u64>()
    + size_of::<u32>()
    + scipcache_tiers::manifest::ENTRY_LEN
    + 1;

/// The Blobs service.
#[derive(Clone, Debug)]
pub struct BlobsService {
    shared: Shared,
}

impl BlobsService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Blobs for BlobsService {
    async fn commit(
        &self,
        req: Request<Streaming<pb::CommitRequest>>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let caller = interceptor::caller(&req)?;
        let mut stream = req.into_inner();
        let header = read_header(&mut stream).await?;
        let ns = parse_namespace(&header.namespace)?;
        caller.check(&ns, Right::Write)?;
        let key = parse_key(&header.key)?;
        let (bytes, chunks) = (header.size, header.chunk_count);
        let result = self.commit_checked(&ns, &key, header, stream).await;
        let mut event = Event::new("push", outcome(&result))
            .by(&caller.claims)
            .ns(&ns)
            .key(key.as_str())
            .detail("bytes", bytes)
            .detail("chunks", chunks);
        if let Ok(answer) = &result
            && let Some(info) = &answer.get_ref().r#ref
        {
            event = event.detail("blob", hex::encode(&info.blob));
        }
        self.shared.audit.record(event);
        result
    }

    type ReadStream = ReceiverStream<Result<pb::ReadBlobResponse, Status>>;

    async fn read(
        &self,
        req: Request<pb::ReadBlobRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        interceptor::require(&req, &ns, Right::Read)?;
        let r = req.into_inner();
        let key = parse_key(&r.key)?;
        let fallbacks = parse_prefixes(&r.fallback_prefixes)?;
        let store = &self.shared.store;
        let (resolved, record) = store
            .resolve(&ns, &key, &fallbacks)
            .await
            .map_err(|e| status::from_store_for_ref(e, &ns, &key))?
            .ok_or_else(|| no_ref(&ns, &key, &fallbacks))?;
        if r.offset > record.size {
            return Err(Error::OffsetPastEnd {
                offset: r.offset,
                size: record.size,
            }
            .into());
        }
        let manifest = store
            .manifest(ns.tenant(), record.manifest)
            .await
            .map_err(|e| status::from_store_for_ref(e, &ns, &resolved))?;
        let length = (r.length > 0).then_some(r.length);
        let form = match (r.accept_frames, r.restores_versions) {
            (false, _) => ReadForm::Raw,
            (true, false) => ReadForm::Frames,
            (true, true) => ReadForm::StoredFrames,
        };
        let mut info = ref_info(&ns, &resolved, &record);
        if form == ReadForm::StoredFrames {
            info.versions = convert::version_entries(manifest.versions());
        }
        let mut parts = store.read_blob(ns.tenant(), manifest, r.offset, length, form);
        let head = pb::ReadBlobResponse {
            part: Some(read_blob_response::Part::Ref(info)),
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (ns_name, ref_key) = (ns.clone(), resolved.clone());
        tokio::spawn(async move {
            // A failed send means the client left: stop reading.
            if tx.send(Ok(head)).await.is_err() {
                return;
            }
            while let Some(part) = parts.next().await {
                let item = part
                    .map(|part| pb::ReadBlobResponse {
                        part: Some(match part {
                            BlobPart::Frame(id, frame) => frame_part(id, frame, false),
                            BlobPart::Normalized(id, frame) => frame_part(id, frame, true),
                            BlobPart::Data(data) => read_blob_response::Part::Data(data),
                        }),
                    })
                    .map_err(|e| status::from_store_for_ref(e, &ns_name, &ref_key));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stat(
        &self,
        req: Request<pb::StatBlobRequest>,
    ) -> Result<Response<pb::RefInfo>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        interceptor::require(&req, &ns, Right::Read)?;
        let key = parse_key(&req.get_ref().key)?;
        let fallbacks = parse_prefixes(&req.get_ref().fallback_prefixes)?;
        let (resolved, record) = self
            .shared
            .store
            .resolve(&ns, &key, &fallbacks)
            .await
            .map_err(|e| status::from_store_for_ref(e, &ns, &key))?
            .ok_or_else(|| no_ref(&ns, &key, &fallbacks))?;
        Ok(Response::new(ref_info(&ns, &resolved, &record)))
    }

    async fn warm(
        &self,
        req: Request<pb::WarmRequest>,
    ) -> Result<Response<pb::WarmResponse>, Status> {
        // Checked like Read, in the same order: a caller who may not read the namespace gets
        // the same refusal whether the ref exists or not.
        let ns = parse_namespace(&req.get_ref().namespace)?;
        let caller = interceptor::caller(&req)?;
        caller.check(&ns, Right::Read)?;
        let key = parse_key(&req.get_ref().key)?;
        let result = match self.shared.store.warm(&ns, &key).await {
            Ok(report) => Ok(report),
            // Absent or expired: the NOT_FOUND a pull of it gets.
            Err(scipcache_tiers::Error::NotFound(_)) => Err(no_ref(&ns, &key, &[]).into()),
            Err(e) => Err(status::from_store_for_ref(e, &ns, &key)),
        };
        let mut event = Event::new("warm", outcome(&result))
            .by(&caller.claims)
            .ns(&ns)
            .key(key.as_str());
        if let Ok(r) = &result {
            event = event
                .detail("chunks", r.chunks)
                .detail("promoted_chunks", r.promoted_chunks)
                .detail("promoted_bytes", r.promoted_bytes);
        }
        self.shared.audit.record(event);
        let report = result?;
        Ok(Response::new(pb::WarmResponse {
            chunks: report.chunks,
            hot_chunks: report.hot_chunks,
            promoted_chunks: report.promoted_chunks,
            promoted_bytes: report.promoted_bytes,
        }))
    }
}

impl BlobsService {
    /// The commit once the caller may write to `ns`: the header checked, the entries read,
    /// the manifest stored under the ref.
    async fn commit_checked(
        &self,
        ns: &Namespace,
        key: &RefKey,
        header: pb::CommitHeader,
        mut stream: Streaming<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let blob = convert::blob_id(&header.blob).map_err(status::from_store)?;
        let chunker = match header.chunker {
            Some(spec) => ChunkerSpec::try_from(spec).map_err(status::from_store)?,
            None => self.shared.store.chunker(),
        };
        let count = header.chunk_count;
        if count > MAX_CHUNKS_PER_BLOB {
            return Err(Error::BadRequest(format!(
                "blob of {count} chunks; this server accepts at most {MAX_CHUNKS_PER_BLOB}"
            ))
            .into());
        }
        if count > header.size || header.size > count.saturating_mul(u64::from(chunker.max)) {
            return Err(Error::BadRequest(format!(
                "{count} chunks of at most {} bytes cannot make a blob of {} bytes",
                chunker.max, header.size
            ))
            .into());
        }
        // Lossless: count <= MAX_CHUNKS_PER_BLOB.
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let mut labels: Vec<(String, String)> = header.labels.into_iter().collect();
        labels.sort();
        let opts = RefOptions {
            ttl: (header.ttl_seconds > 0).then(|| Duration::from_secs(header.ttl_seconds)),
            labels,
        };
        opts.validate().map_err(status::from_store)?;

        // All at once, before any entry arrives: a commit that waits holds nothing.
        let _memory = self
            .shared
            .request_memory
            .reserve(
                count.saturating_mul(COMMIT_BYTES_PER_ENTRY),
                &format!("a commit of {count} chunks"),
            )
            .await?;
        let versions = convert::version_table(&header.versions).map_err(status::from_store)?;
        let (entries, normalized) = read_entries(&mut stream, count).await?;
        drop(stream);
        let manifest = Manifest::new(chunker, blob, header.size, entries)
            .and_then(|m| m.with_scip(header.scip_splitter, normalized, versions))
            .map_err(status::from_store)?;
        let record = self
            .shared
            .store
            .commit(ns, key, manifest, opts)
            .await
            .map_err(status::from_store)?;
        Ok(Response::new(pb::CommitResponse {
            manifest: bytes::Bytes::copy_from_slice(record.manifest.as_bytes()),
            r#ref: Some(ref_info(ns, key, &record)),
        }))
    }
}

/// The first message of a commit stream, which must be its header.
async fn read_header(
    stream: &mut Streaming<pb::CommitRequest>,
) -> Result<pb::CommitHeader, Status> {
    match stream.message().await? {
        Some(pb::CommitRequest {
            part: Some(commit_request::Part::Header(h)),
        }) => Ok(h),
        Some(_) => {
            Err(Error::BadRequest("the first commit message must be the header".into()).into())
        }
        None => Err(Error::BadRequest("empty commit: send a header first".into()).into()),
    }
}

/// The manifest entries after the header, exactly `count` of them, with their normalized
/// flags.
async fn read_entries(
    stream: &mut Streaming<pb::CommitRequest>,
    count: usize,
) -> Result<(Vec<ManifestEntry>, Vec<bool>), Status> {
    let mut entries: Vec<ManifestEntry> = Vec::with_capacity(count.min(INITIAL_ENTRIES));
    let mut normalized: Vec<bool> = Vec::with_capacity(count.min(INITIAL_ENTRIES));
    while let Some(message) = stream.message().await? {
        let batch = match message.part {
            Some(commit_request::Part::Entries(batch)) => batch,
            Some(commit_request::Part::Header(_)) => {
                return Err(Error::BadRequest(
                    "a commit has exactly one header, in its first message".into(),
                )
                .into());
            }
            None => continue,
        };
        if entries.len() + batch.entries.len() > count {
            return Err(Error::BadRequest(format!(
                "more manifest entries than the {count} chunks the header declares"
            ))
            .into());
        }
        let needed = entries.len() + batch.entries.len();
        if needed > entries.capacity() {
            // Doubling, but never past the declared count: no slack at the end.
            let grown = entries.capacity().saturating_mul(2).max(needed).min(count);
            entries.reserve_exact(grown - entries.len());
            normalized.reserve_exact(grown - normalized.len());
        }
        for entry in &batch.entries {
            entries.push(ManifestEntry::try_from(entry).map_err(status::from_store)?);
            normalized.push(entry.normalized);
        }
    }
    if entries.len() != count {
        return Err(Error::BadRequest(format!(
            "the header declares {count} chunks but {} manifest entries arrived",
            entries.len()
        ))
        .into());
    }
    Ok((entries, normalized))
}

/// A whole chunk of a blob read, as its stored frame (`normalized`: with version placeholders,
/// for a client that restores them).
fn frame_part(
    id: scipcache_tiers::ids::ChunkId,
    frame: scipcache_tiers::codec::Frame,
    normalized: bool,
) -> read_blob_response::Part {
    read_blob_response::Part::Frame(pb::ChunkFrame {
        id: bytes::Bytes::copy_from_slice(id.as_bytes()),
        frame: frame.into_bytes(),
        restored: false,
        normalized,
    })
}
