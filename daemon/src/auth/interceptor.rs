//! The tonic side of auth: the interceptor turns `authorization: Bearer <jwt>` into
//! [`Claims`] in the request's extensions (or refuses with `UNAUTHENTICATED`), and
//! [`require`] checks a namespace against them (or refuses with `PERMISSION_DENIED`).
//!
//! Refusals name the namespace, never the key, and carry nothing that varies between calls
//! (no request id, no timestamp), so refusals of existing and missing refs read the same.

use std::sync::Arc;

use scipcache_tiers::names::{Namespace, Tenant};
use tonic::{Request, Status};

use super::{AuthError, Claims, Right, Verifier};

/// Verifies the bearer token of every call.
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    verifier: Arc<Verifier>,
}

impl AuthInterceptor {
    /// An interceptor using `verifier`.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let claims = authenticate(&self.verifier, &req).map_err(|e| {
            tracing::debug!(reason = %e, "unauthenticated call");
            Status::unauthenticated(e.to_string())
        })?;
        req.extensions_mut().insert(Arc::new(claims));
        Ok(req)
    }
}

fn authenticate(verifier: &Verifier, req: &Request<()>) -> Result<Claims, AuthError> {
    let value = req
        .metadata()
        .get(scipcache_proto::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization is not ASCII".into()))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(AuthError::Malformed(
                "expected `authorization: Bearer <token>`".into(),
            ));
        }
    };
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    verifier.verify(token)
}

/// The verified claims of a request.
pub fn claims<T>(req: &Request<T>) -> Result<Arc<Claims>, Status> {
    req.extensions()
        .get::<Arc<Claims>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated(AuthError::Missing.to_string()))
}

/// Checks that the request's token holds `right` over `ns`.
pub fn require<T>(req: &Request<T>, ns: &Namespace, right: Right) -> Result<Arc<Claims>, Status> {
    let claims = claims(req)?;
    check(&claims, ns, right)?;
    Ok(claims)
}

/// Checks that `claims` hold `right` over `ns`.
pub fn check(claims: &Claims, ns: &Namespace, right: Right) -> Result<(), Status> {
    if claims.allows(ns, right) {
        Ok(())
    } else {
        Err(denied(ns.as_str(), right))
    }
}

/// Checks that `claims` hold `right` over every namespace of `tenant`.
pub fn check_tenant(claims: &Claims, tenant: &Tenant, right: Right) -> Result<(), Status> {
    if claims.allows_tenant(tenant, right) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "token has no {right} access to tenant {tenant} (that needs the scope '*:{right}' \
             for tenant {tenant})"
        )))
    }
}

/// The refusal for `right` on `ns`: the same text whatever exists there.
pub fn denied(ns: &str, right: Right) -> Status {
    Status::permission_denied(format!("token has no {right} access to {ns}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::service::Interceptor;

    use super::*;
    use crate::auth::{MintRequest, Secret, VerifierConfig, mint};

    fn setup() -> (AuthInterceptor, Secret) {
        let secret = match Secret::new(vec![42; 32], std::path::Path::new("test")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let verifier = match Verifier::new(VerifierConfig {
            hs256: Some(secret.clone()),
            leeway: Duration::from_secs(1),
            ..VerifierConfig::default()
        }) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        (AuthInterceptor::new(Arc::new(verifier)), secret)
    }

    fn with_auth(value: &str) -> Request<()> {
        let mut req = Request::new(());
        if let Ok(v) = value.parse() {
            req.metadata_mut().insert("authorization", v);
        }
        req
    }

    #[test]
    fn calls_without_or_with_bad_tokens_are_unauthenticated() {
        let (mut i, _) = setup();
        let err = i.call(Request::new(())).err();
        assert!(
            err.as_ref()
                .is_some_and(|s| s.code() == tonic::Code::Unauthenticated
                    && s.message().starts_with("missing token"))
        );
        let err = i.call(with_auth("Basic abc")).err();
        assert!(err.is_some_and(|s| s.code() == tonic::Code::Unauthenticated));
        let err = i.call(with_auth("Bearer not.a.jwt")).err();
        assert!(err.is_some_and(|s| s.code() == tonic::Code::Unauthenticated));
    }

    #[test]
    fn a_good_token_puts_claims_in_the_extensions_and_scopes_are_enforced()
    -> Result<(), Box<dyn std::error::Error>> {
        let (mut i, secret) = setup();
        let minted = mint(
            &secret,
            &MintRequest {
                sub: "ci".into(),
                tenant: "acme".into(),
                scopes: vec!["web/app:read".into()],
                ttl: Duration::from_secs(60),
                issuer: None,
                audience: None,
            },
        )?;
        let req = i.call(with_auth(&format!("bearer {}", minted.token)))?;
        let ns: Namespace = "acme/web/app".parse()?;
        assert!(require(&req, &ns, Right::Read).is_ok());
        let refused = require(&req, &ns, Right::Write).err();
        assert!(
            refused.is_some_and(|s| s.code() == tonic::Code::PermissionDenied
                && s.message() == "token has no write access to acme/web/app")
        );
        let other: Namespace = "globex/web/app".parse()?;
        assert!(require(&req, &other, Right::Read).is_err());
        Ok(())
    }
}
