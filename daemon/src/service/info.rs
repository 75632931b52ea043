//! `scipcache.v1.Info`: what a client needs to cut chunks the way the server does.

use scipcache_proto::pb;
use scipcache_proto::pb::info_server::Info;
use tonic::{Request, Response, Status};

use super::{MAX_CHUNKS_PER_BLOB, Shared};
use crate::auth::interceptor;

/// The Info service.
#[derive(Clone, Debug)]
pub struct InfoService {
    shared: Shared,
}

impl InfoService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Info for InfoService {
    async fn get_server_info(
        &self,
        req: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::ServerInfo>, Status> {
        // Any valid token may ask.
        interceptor::claims(&req)?;
        Ok(Response::new(pb::ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            chunker: Some(self.shared.store.chunker().into()),
            max_ids_per_request: u32::try_from(scipcache_proto::MAX_IDS_PER_REQUEST)
                .unwrap_or(u32::MAX),
            max_message_bytes: u32::try_from(scipcache_proto::MAX_MESSAGE_BYTES)
                .unwrap_or(u32::MAX),
            max_chunks_per_blob: MAX_CHUNKS_PER_BLOB,
            scip_splitter: scipcache_tiers::scip::SPLITTER_VERSION,
        }))
    }
}
