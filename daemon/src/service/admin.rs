//! `scipcache.v1.Admin`: figures of a tenant (tenant admins) or of every tenant (the
//! operator).

use scipcache_proto::pb;
use scipcache_proto::pb::admin_server::Admin;
use scipcache_tiers::names::Tenant;
use scipcache_tiers::store::MovementStats;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::auth::{access, interceptor};
use crate::status;

/// The Admin service.
#[derive(Clone, Debug)]
pub struct AdminService {
    shared: Shared,
}

impl AdminService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let claims = interceptor::claims(&req)?;
        let asked = &req.get_ref().tenant;
        let tenant: Option<Tenant> = if asked.is_empty() {
            None
        } else {
            Some(asked.parse().map_err(status::from_store)?)
        };
        let scope = access::admin_scope(&claims, tenant)?;
        let stats = self
            .shared
            .store
            .stats(scope.as_ref())
            .await
            .map_err(status::from_store)?;
        Ok(Response::new(pb::StatsResponse {
            tiers: stats
                .tiers
                .iter()
                .map(|(name, t)| pb::TierStats {
                    name: name.as_str().to_owned(),
                    chunks: t.chunks,
                    stored_bytes: t.stored_bytes,
                    hits: t.hits,
                })
                .collect(),
            logical_bytes: stats.logical_bytes,
            refs: stats.refs,
            cold_queue: stats.cold_queue,
            cold_recompress: stats.cold_recompress,
            movement: Some(movement(&stats.movement)),
        }))
    }
}

/// The wire form of the engine's movement counters.
fn movement(m: &MovementStats) -> pb::Movement {
    pb::Movement {
        demoted: m.demoted,
        evicted: m
            .evicted
            .iter()
            .map(|(tier, chunks, bytes)| pb::EvictedCopies {
                tier: tier.as_str().to_owned(),
                chunks: *chunks,
                bytes: *bytes,
            })
            .collect(),
        promoted: m.promoted,
        not_admitted: m.not_admitted,
        passes: m.passes,
    }
}
