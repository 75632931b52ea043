//! Every allow/deny decision the services need, made from verified [`Claims`] and what a
//! call touches. Pure code: the services call these and only pass the answer on; the
//! refusals become statuses in [`crate::status`].

use std::collections::HashSet;

use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::names::{Namespace, RefKey, Tenant};

use super::Claims;
use super::scope::{Right, TenantClaim};
use crate::error::{Error, Result};

/// Allows a call that needs `right` on `ns`.
pub fn check(claims: &Claims, ns: &Namespace, right: Right) -> Result<()> {
    if claims.allows(ns, right) {
        Ok(())
    } else {
        Err(Error::Denied {
            ns: ns.clone(),
            right,
        })
    }
}

/// Allows a tenant-wide call (stats, GC) that needs `right` over every namespace of
/// `tenant`.
pub fn check_tenant(claims: &Claims, tenant: &Tenant, right: Right) -> Result<()> {
    if claims.allows_tenant(tenant, right) {
        Ok(())
    } else {
        Err(Error::DeniedTenant {
            tenant: tenant.clone(),
            right,
        })
    }
}

/// Whose figures an admin call (stats, and next GC) covers: the tenant `asked` for, which
/// needs `*:admin` over it; without one, the token's own tenant, or every tenant (`None`)
/// for the operator only.
pub fn admin_scope(claims: &Claims, asked: Option<Tenant>) -> Result<Option<Tenant>> {
    match (&claims.tenant, asked) {
        (_, Some(tenant)) => {
            check_tenant(claims, &tenant, Right::Admin)?;
            Ok(Some(tenant))
        }
        (TenantClaim::One(own), None) => {
            check_tenant(claims, own, Right::Admin)?;
            Ok(Some(own.clone()))
        }
        (TenantClaim::Any, None) if claims.is_operator() => Ok(None),
        (TenantClaim::Any, None) => Err(Error::DeniedEveryTenant),
    }
}

/// Allows reading chunks by id through the ref `key` in `ns` (read access to `ns` already
/// checked) only if every one of `wanted` is a chunk of that ref's blob (`blob_chunks`):
/// reading a chunk needs read access to a blob that holds it, whoever else stored the same
/// bytes.
pub fn may_read_chunks(
    ns: &Namespace,
    key: &RefKey,
    blob_chunks: impl IntoIterator<Item = ChunkId>,
    wanted: &[ChunkId],
) -> Result<()> {
    let mut unseen: HashSet<ChunkId> = wanted.iter().copied().collect();
    for id in blob_chunks {
        if unseen.is_empty() {
            break;
        }
        unseen.remove(&id);
    }
    match wanted.iter().find(|id| unseen.contains(id)) {
        None => Ok(()),
        Some(id) => Err(Error::ChunkNotInBlob {
            id: *id,
            ns: ns.clone(),
            key: key.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn claims(tenant: &str, scopes: &[&str]) -> std::result::Result<Claims, String> {
        Ok(Claims {
            sub: "test".into(),
            tenant: tenant.parse()?,
            scopes: scopes
                .iter()
                .map(|s| s.parse())
                .collect::<std::result::Result<_, _>>()?,
            jti: "j".into(),
            exp: u64::MAX,
            iat: 0,
            nbf: None,
            iss: None,
            aud: Vec::new(),
        })
    }

    #[test]
    fn a_namespace_refusal_names_the_namespace_and_the_right() -> TestResult {
        let c = claims("acme", &["web/app:read"])?;
        let ns: Namespace = "acme/web/app".parse()?;
        assert!(check(&c, &ns, Right::Read).is_ok());
        let refused = check(&c, &ns, Right::Write).err().map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("token has no write access to acme/web/app")
        );
        Ok(())
    }

    #[test]
    fn admin_scope_is_the_asked_or_own_tenant_and_every_tenant_only_for_the_operator() -> TestResult
    {
        let acme: Tenant = "acme".parse()?;
        let globex: Tenant = "globex".parse()?;
        let admin = claims("acme", &["*:admin"])?;
        assert_eq!(admin_scope(&admin, None)?, Some(acme.clone()));
        assert_eq!(admin_scope(&admin, Some(acme.clone()))?, Some(acme.clone()));
        assert!(matches!(
            admin_scope(&admin, Some(globex.clone())),
            Err(Error::DeniedTenant { .. })
        ));
        let writer = claims("acme", &["*:write"])?;
        assert!(matches!(
            admin_scope(&writer, None),
            Err(Error::DeniedTenant { .. })
        ));
        let operator = claims("*", &["*:admin"])?;
        assert_eq!(admin_scope(&operator, None)?, None);
        assert_eq!(admin_scope(&operator, Some(globex.clone()))?, Some(globex));
        let reader_of_all = claims("*", &["*:read"])?;
        assert!(matches!(
            admin_scope(&reader_of_all, None),
            Err(Error::DeniedEveryTenant)
        ));
        assert!(matches!(
            admin_scope(&reader_of_all, Some(acme)),
            Err(Error::DeniedTenant { .. })
        ));
        Ok(())
    }

    #[test]
    fn chunks_are_readable_through_a_ref_only_if_its_blob_holds_them() -> TestResult {
        let ns: Namespace = "acme/web/app".parse()?;
        let key: RefKey = "main".parse()?;
        let (a, b, c) = (ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"c"));
        assert!(may_read_chunks(&ns, &key, [a, b], &[b, a, b]).is_ok());
        assert!(may_read_chunks(&ns, &key, [a, b], &[]).is_ok());
        let refused = may_read_chunks(&ns, &key, [a, b], &[a, c]).err();
        assert_eq!(
            refused.map(|e| e.to_string()),
            Some(format!(
                "chunk {c} is not part of the blob under main in acme/web/app"
            ))
        );
        Ok(())
    }
}
