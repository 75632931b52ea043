//! `scipcache.v1.Chunks`: which chunks are missing, uploading them, reading them by id.
//!
//! A Read names at most [`MAX_IDS_PER_REQUEST`] ids; repeated ids are collapsed (each chunk
//! is sent once, in the order of its first mention), and a Read whose distinct chunks hold
//! more than [`MAX_READ_BYTES`] raw bytes is refused with `RESOURCE_EXHAUSTED`.

use std::collections::HashSet;

use scipcache_proto::pb;
use scipcache_proto::pb::chunks_server::Chunks;
use scipcache_proto::{MAX_IDS_PER_REQUEST, MAX_READ_BYTES, convert};
use scipcache_tiers::codec::{FRAME_HEADER_LEN, Frame};
use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::manifest::ManifestEntry;
use scipcache_tiers::names::Tenant;
use scipcache_tiers::store::PutSummary;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{STREAM_BUFFER, Shared, no_ref, parse_ids, parse_key, parse_namespace};
use crate::auth::{Right, access, interceptor};
use crate::error::Error;
use crate::request_memory::Reservation;
use crate::status;

/// An upload batch is handed to the store once it holds this many bytes…
pub const BATCH_BYTES: usize = 4 << 20;
/// …or this many chunks: one durable commit (one fsync) per batch.
pub const BATCH_CHUNKS: usize = 512;

/// The Chunks service.
#[derive(Clone, Debug)]
pub struct ChunksService {
    shared: Shared,
}

impl ChunksService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }

    /// Checks one uploaded chunk: a 32-byte id and a frame whose header is valid and whose
    /// declared length fits the server's chunker. The bytes are verified by the store.
    fn parse_chunk(&self, chunk: pb::ChunkFrame) -> Result<(ChunkId, Frame), Status> {
        let id = convert::chunk_id(&chunk.id).map_err(status::from_upload)?;
        let max = self.shared.store.chunker().max as usize;
        if chunk.frame.len() > FRAME_HEADER_LEN + max {
            return Err(Error::BadRequest(format!(
                "chunk {id}: frame of {} bytes is larger than the biggest chunk this server \
                 accepts ({max} bytes plus a {FRAME_HEADER_LEN}-byte header); cut chunks with \
                 the chunker from Info/GetServerInfo",
                chunk.frame.len()
            ))
            .into());
        }
        let frame = Frame::from_bytes(chunk.frame).map_err(status::from_upload)?;
        let raw = frame.raw_len();
        if raw == 0 || raw > max {
            return Err(Error::BadRequest(format!(
                "chunk {id}: declares {raw} bytes; chunks must hold 1 to {max} bytes"
            ))
            .into());
        }
        Ok((id, frame))
    }
}

/// The ids in the order given, each once: a Read sends every chunk it names once, however
/// often it is named, so a small request cannot ask for the same bytes thousands of times.
fn distinct(ids: Vec<ChunkId>) -> Vec<ChunkId> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

/// The raw bytes of the (distinct) chunks `ids`, as the blob's manifest gives them.
fn raw_bytes(entries: &[ManifestEntry], ids: &[ChunkId]) -> u64 {
    let mut wanted: HashSet<ChunkId> = ids.iter().copied().collect();
    entries
        .iter()
        .filter(|e| wanted.remove(&e.id))
        .map(|e| u64::from(e.len))
        .sum()
}

/// Refuses a Read whose (distinct) chunks hold more than `max` raw bytes.
fn within_read_limit(entries: &[ManifestEntry], ids: &[ChunkId], max: u64) -> Result<(), Error> {
    let bytes = raw_bytes(entries, ids);
    if bytes > max {
        return Err(Error::ReadTooLarge {
            chunks: ids.len(),
            bytes,
            max,
        });
    }
    Ok(())
}

/// Stores batches one at a time in the background, so that receiving the next batch
/// overlaps with the previous batch's verification and fsync. At most one batch is in the
/// store and one being filled, which bounds memory per upload; both hold their share of the
/// request-memory budget until the store has them.
struct Pipeline {
    shared: Shared,
    tenant: Tenant,
    batch: Vec<(ChunkId, Frame)>,
    batch_bytes: usize,
    batch_memory: Reservation,
    in_flight: Option<JoinHandle<scipcache_tiers::Result<PutSummary>>>,
    totals: PutSummary,
}

impl Pipeline {
    async fn push(&mut self, id: ChunkId, frame: Frame, memory: Reservation) -> Result<(), Status> {
        self.batch_bytes += frame.stored_len();
        self.batch.push((id, frame));
        self.batch_memory.merge(memory);
        if self.batch.len() >= BATCH_CHUNKS || self.batch_bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Reserves `bytes` of request memory for the next message. When there is no room, first
    /// stores what this upload holds (giving its share back), so that it waits only for
    /// other calls, never for itself.
    async fn reserve(&mut self, bytes: usize) -> Result<Reservation, Status> {
        let what = "an upload message";
        if let Some(memory) = self.shared.request_memory.try_reserve(bytes, what)? {
            return Ok(memory);
        }
        self.flush().await?;
        self.wait().await?;
        Ok(self.shared.request_memory.reserve(bytes, what).await?)
    }

    /// Waits for the batch in the store, then hands it the current one.
    async fn flush(&mut self) -> Result<(), Status> {
        self.wait().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let memory = std::mem::replace(&mut self.batch_memory, self.shared.request_memory.none());
        let store = self.shared.store.clone();
        let tenant = self.tenant.clone();
        // A spawned put finishes even if the client leaves: its chunks are complete and
        // verified, so storing them is harmless, and no ref changes.
        self.in_flight = Some(tokio::spawn(async move {
            let stored = store.put_chunks(&tenant, batch).await;
            drop(memory);
            stored
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), Status> {
        if let Some(handle) = self.in_flight.take() {
            let summary = handle
                .await
                .map_err(|e| status::internal(&e))?
                .map_err(status::from_upload)?;
            self.totals.stored += summary.stored;
            self.totals.already_present += summary.already_present;
            self.shared.metrics.chunks_stored.inc_by(summary.stored);
            self.shared
                .metrics
                .chunks_already_present
                .inc_by(summary.already_present);
        }
        Ok(())
    }
}

/// The bytes of a message's chunks: what an upload buffers of it.
fn chunk_bytes(chunks: &[pb::ChunkFrame]) -> usize {
    chunks.iter().map(|c| c.id.len() + c.frame.len()).sum()
}

#[tonic::async_trait]
impl Chunks for ChunksService {
    async fn find_missing(
        &self,
        req: Request<pb::FindMissingRequest>,
    ) -> Result<Response<pb::FindMissingResponse>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        interceptor::require(&req, &ns, Right::Write)?;
        let ids = parse_ids(&req.get_ref().ids, MAX_IDS_PER_REQUEST, convert::chunk_id)?;
        let missing = self
            .shared
            .store
            .find_missing(ns.tenant(), ids)
            .await
            .map_err(status::from_store)?;
        Ok(Response::new(pb::FindMissingResponse {
            missing: missing
                .iter()
                .map(|id| bytes::Bytes::copy_from_slice(id.as_bytes()))
                .collect(),
        }))
    }

    async fn upload(
        &self,
        req: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let caller = interceptor::caller(&req)?;
        let mut stream = req.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Error::BadRequest(
                "empty upload: the first message must name the namespace".into(),
            )
            .into());
        };
        let ns = parse_namespace(&first.namespace)?;
        caller.check(&ns, Right::Write)?;
        let mut pipeline = Pipeline {
            shared: self.shared.clone(),
            tenant: ns.tenant().clone(),
            batch: Vec::new(),
            batch_bytes: 0,
            batch_memory: self.shared.request_memory.none(),
            in_flight: None,
            totals: PutSummary::default(),
        };
        let mut received: u64 = 0;
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => match stream.message().await? {
                    Some(m) => m,
                    None => break,
                },
            };
            let mut memory = pipeline.reserve(chunk_bytes(&message.chunks)).await?;
            for chunk in message.chunks {
                received += 1;
                self.shared.metrics.chunks_received.inc();
                let share = memory.split(chunk.id.len() + chunk.frame.len());
                let (id, frame) = self.parse_chunk(chunk)?;
                pipeline.push(id, frame, share).await?;
            }
        }
        pipeline.flush().await?;
        pipeline.wait().await?;
        Ok(Response::new(pb::UploadResponse {
            received,
            stored: pipeline.totals.stored,
            already_present: pipeline.totals.already_present,
        }))
    }

    type ReadStream = ReceiverStream<Result<pb::ChunkFrame, Status>>;

    async fn read(
        &self,
        req: Request<pb::ReadChunksRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        interceptor::require(&req, &ns, Right::Read)?;
        let key = parse_key(&req.get_ref().key)?;
        let ids = distinct(parse_ids(
            &req.get_ref().ids,
            MAX_IDS_PER_REQUEST,
            convert::chunk_id,
        )?);
        let store = &self.shared.store;
        let record = store
            .get_ref(&ns, &key)
            .await
            .map_err(|e| status::from_store_for_ref(e, &ns, &key))?
            .ok_or_else(|| no_ref(&ns, &key, &[]))?;
        let manifest = store
            .manifest(ns.tenant(), record.manifest)
            .await
            .map_err(|e| status::from_store_for_ref(e, &ns, &key))?;
        access::may_read_chunks(&ns, &key, manifest.entries().iter().map(|e| e.id), &ids)?;
        within_read_limit(manifest.entries(), &ids, MAX_READ_BYTES)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let store = store.clone();
        let tenant = ns.tenant().clone();
        tokio::spawn(async move {
            for id in ids {
                // Every id is one the ref's manifest lists: a chunk no tier holds is lost.
                // A normalized chunk comes back with its blob's versions restored.
                let item = store
                    .get_blob_chunk(&tenant, &manifest, id)
                    .await
                    .map(|(frame, restored)| pb::ChunkFrame {
                        id: bytes::Bytes::copy_from_slice(id.as_bytes()),
                        frame: frame.into_bytes(),
                        restored,
                        normalized: false,
                    })
                    .map_err(|e| {
                        status::from_store_for_ref(
                            scipcache_tiers::store::listed_chunk_lost(e),
                            &ns,
                            &key,
                        )
                    });
                let failed = item.is_err();
                // A failed send means the client left.
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::of(&[n])
    }

    #[test]
    fn repeated_ids_are_collapsed_in_the_order_first_named() {
        let (a, b, c) = (id(1), id(2), id(3));
        assert_eq!(distinct(vec![b, a, b, b, c, a]), vec![b, a, c]);
        assert_eq!(distinct(vec![a; 16_384]), vec![a]);
    }

    #[test]
    fn a_read_is_refused_when_its_distinct_chunks_hold_more_than_the_limit() {
        let (a, b) = (id(1), id(2));
        // The blob holds `a` twice: its bytes count once.
        let entries = [
            ManifestEntry { id: a, len: 100 },
            ManifestEntry { id: b, len: 50 },
            ManifestEntry { id: a, len: 100 },
        ];
        assert_eq!(raw_bytes(&entries, &[a, b]), 150);
        assert!(within_read_limit(&entries, &[a, b], 150).is_ok());
        let refused = within_read_limit(&entries, &[a, b], 149);
        assert!(
            matches!(
                refused,
                Err(Error::ReadTooLarge {
                    chunks: 2,
                    bytes: 150,
                    max: 149
                })
            ),
            "{refused:?}"
        );
        let status = tonic::Status::from(refused.err().unwrap_or(Error::BadRequest(String::new())));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("fewer ids"),
            "{}",
            status.message()
        );
    }
}
