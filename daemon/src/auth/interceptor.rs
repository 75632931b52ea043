//! The tonic side of auth: the interceptor turns `authorization: Bearer <jwt>` into
//! [`Claims`] in the request's extensions (or refuses with `UNAUTHENTICATED`), and
//! [`require`] checks a namespace against them with [`access::check`] (or refuses with
//! `PERMISSION_DENIED`).
//!
//! Refusals name the namespace, never the key, and carry nothing that varies between calls
//! (no request id, no timestamp), so refusals of existing and missing refs read the same.
//!
//! Every refusal, here and in [`Caller`]'s checks, is counted and written to the audit log
//! ([`Audit::refused`]), with the method the metrics layer put into the request
//! ([`RpcMethod`]).

use std::sync::Arc;

use scipcache_tiers::names::{Namespace, Tenant};
use tonic::{Request, Status};

use super::scope::Right;
use super::{Claims, Verifier, access};
use crate::audit::Audit;
use crate::error::{AuthError, Error, Result};
use crate::metrics::RpcMethod;

/// Verifies the bearer token of every call.
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    verifier: Arc<Verifier>,
    audit: Option<Audit>,
}

impl AuthInterceptor {
    /// An interceptor using `verifier`, recording refusals in `audit`.
    pub fn new(verifier: Arc<Verifier>, audit: Option<Audit>) -> Self {
        Self { verifier, audit }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let claims = match authenticate(&self.verifier, &req) {
            Ok(claims) => claims,
            Err(e) => {
                tracing::debug!(reason = %e, "unauthenticated call");
                let err = Error::Unauthenticated(e);
                if let Some(audit) = &self.audit {
                    audit.refused(method_of(&req), None, &err);
                }
                return Err(err.into());
            }
        };
        req.extensions_mut().insert(claims);
        if let Some(audit) = &self.audit {
            req.extensions_mut().insert(audit.clone());
        }
        Ok(req)
    }
}

/// The method a request is for, as the metrics layer labelled it.
fn method_of<T>(req: &Request<T>) -> &'static str {
    req.extensions().get::<RpcMethod>().map_or("other", |m| m.0)
}

/// A verified caller: its claims, and where its refusals are recorded.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's claims.
    pub claims: Arc<Claims>,
    method: &'static str,
    audit: Option<Audit>,
}

impl Caller {
    /// Allows a call that needs `right` on `ns` ([`access::check`]).
    pub fn check(&self, ns: &Namespace, right: Right) -> Result<()> {
        access::check(&self.claims, ns, right).inspect_err(|e| self.refused(e))
    }

    /// Whose data an admin call covers ([`access::admin_scope`]).
    pub fn admin_scope(&self, asked: Option<Tenant>) -> Result<Option<Tenant>> {
        access::admin_scope(&self.claims, asked).inspect_err(|e| self.refused(e))
    }

    /// Allows an operator-only call.
    pub fn operator(&self) -> Result<()> {
        if self.claims.is_operator() {
            Ok(())
        } else {
            let err = Error::DeniedEveryTenant;
            self.refused(&err);
            Err(err)
        }
    }

    /// The audit log, when there is one.
    pub fn audit(&self) -> Option<&Audit> {
        self.audit.as_ref()
    }

    fn refused(&self, err: &Error) {
        if let Some(audit) = &self.audit {
            audit.refused(self.method, Some(&self.claims), err);
        }
    }
}

/// The verified caller of a request.
pub fn caller<T>(req: &Request<T>) -> Result<Caller> {
    Ok(Caller {
        claims: claims(req)?,
        method: method_of(req),
        audit: req.extensions().get::<Audit>().cloned(),
    })
}

fn authenticate(verifier: &Verifier, req: &Request<()>) -> Result<Arc<Claims>, AuthError> {
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
    verifier.verify_cached(token)
}

/// The verified claims of a request.
pub fn claims<T>(req: &Request<T>) -> Result<Arc<Claims>> {
    req.extensions()
        .get::<Arc<Claims>>()
        .cloned()
        .ok_or(Error::Unauthenticated(AuthError::Missing))
}

/// Checks that the request's token holds `right` over `ns`.
pub fn require<T>(req: &Request<T>, ns: &Namespace, right: Right) -> Result<Arc<Claims>> {
    let caller = caller(req)?;
    caller.check(ns, right)?;
    Ok(caller.claims)
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
        (AuthInterceptor::new(Arc::new(verifier), None), secret)
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
        let refused = require(&req, &ns, Right::Write).err().map(Status::from);
        assert!(
            refused.is_some_and(|s| s.code() == tonic::Code::PermissionDenied
                && s.message() == "token has no write access to acme/web/app")
        );
        let other: Namespace = "globex/web/app".parse()?;
        assert!(require(&req, &other, Right::Read).is_err());
        Ok(())
    }
}
