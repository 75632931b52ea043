//! `scipcache.v1.Refs`: get, list and delete refs.

use scipcache_proto::pb;
use scipcache_proto::pb::refs_server::Refs;
use scipcache_tiers::names::KeyPrefix;
use tonic::{Request, Response, Status};

use super::{
    DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, Shared, no_ref, parse_key, parse_namespace, ref_info,
};
use crate::audit::{Event, outcome};
use crate::auth::Right;
use crate::auth::interceptor;
use crate::error::Error;
use crate::status;

/// The Refs service.
#[derive(Clone, Debug)]
pub struct RefsService {
    shared: Shared,
}

impl RefsService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Refs for RefsService {
    async fn get(&self, req: Request<pb::GetRefRequest>) -> Result<Response<pb::RefInfo>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        interceptor::require(&req, &ns, Right::Read)?;
        let key = parse_key(&req.get_ref().key)?;
        let record = self
            .shared
            .store
            .get_ref(&ns, &key)
            .await
            .map_err(status::from_store)?
            .ok_or_else(|| no_ref(&ns, &key, &[]))?;
        Ok(Response::new(ref_info(&ns, &key, &record)))
    }

    async fn list(
        &self,
        req: Request<pb::ListRefsRequest>,
    ) -> Result<Response<pb::ListRefsResponse>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        interceptor::require(&req, &ns, Right::Read)?;
        let prefix: KeyPrefix = req.get_ref().prefix.parse().map_err(status::from_store)?;
        let limit = match usize::try_from(req.get_ref().limit) {
            Ok(0) => DEFAULT_LIST_LIMIT,
            Ok(n) => n.min(MAX_LIST_LIMIT),
            Err(_) => MAX_LIST_LIMIT,
        };
        let (refs, truncated) = self
            .shared
            .store
            .list_refs(&ns, &prefix, limit)
            .await
            .map_err(status::from_store)?;
        Ok(Response::new(pb::ListRefsResponse {
            refs: refs
                .iter()
                .map(|(key, record)| ref_info(&ns, key, record))
                .collect(),
            truncated,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRefRequest>,
    ) -> Result<Response<pb::DeleteRefResponse>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        let caller = interceptor::caller(&req)?;
        caller.check(&ns, Right::Write)?;
        let key = parse_key(&req.get_ref().key)?;
        let result = self
            .shared
            .store
            .delete_ref(&ns, &key)
            .await
            .map_err(status::from_store);
        let mut event = Event::new("rm", outcome(&result))
            .by(&caller.claims)
            .ns(&ns)
            .key(key.as_str());
        if let Ok(deleted) = &result {
            event = event.detail("deleted", *deleted);
        }
        self.shared.audit.record(event);
        Ok(Response::new(pb::DeleteRefResponse { deleted: result? }))
    }

    async fn delete_prefix(
        &self,
        req: Request<pb::DeletePrefixRequest>,
    ) -> Result<Response<pb::DeletePrefixResponse>, Status> {
        let ns = parse_namespace(&req.get_ref().namespace)?;
        let caller = interceptor::caller(&req)?;
        caller.check(&ns, Right::Write)?;
        let text = &req.get_ref().prefix;
        if text.is_empty() {
            return Err(Error::BadRequest(
                "an empty prefix would delete every ref of the namespace; name a prefix such                  as commit/"
                    .into(),
            )
            .into());
        }
        let prefix: KeyPrefix = text.parse().map_err(status::from_store)?;
        let result = self
            .shared
            .store
            .delete_prefix(&ns, &prefix)
            .await
            .map_err(status::from_store);
        let mut event = Event::new("rm_prefix", outcome(&result))
            .by(&caller.claims)
            .ns(&ns)
            .key(prefix.as_str());
        if let Ok(deleted) = &result {
            event = event.detail("deleted", *deleted);
        }
        self.shared.audit.record(event);
        Ok(Response::new(pb::DeletePrefixResponse { deleted: result? }))
    }
}
