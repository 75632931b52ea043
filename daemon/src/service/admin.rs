//! `scipcache.v1.Admin`: figures of a tenant (tenant admins) or of every tenant (the
//! operator).

use scipcache_proto::pb;
use scipcache_proto::pb::admin_server::Admin;
use scipcache_tiers::names::Tenant;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::auth::interceptor;
use crate::auth::{Right, TenantClaim};
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
        // Whose figures: the operator may ask for all or one; anyone else gets their own
        // tenant's, and only with '*:admin' over it.
        let scope = match (&claims.tenant, tenant) {
            (_, Some(t)) => {
                interceptor::check_tenant(&claims, &t, Right::Admin)?;
                Some(t)
            }
            (TenantClaim::One(own), None) => {
                interceptor::check_tenant(&claims, own, Right::Admin)?;
                Some(own.clone())
            }
            (TenantClaim::Any, None) => {
                if !claims.is_operator() {
                    return Err(Status::permission_denied(
                        "token has no admin access to every tenant (that needs tenant * with \
                         the scope '*:admin')",
                    ));
                }
                None
            }
        };
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
        }))
    }
}
