//! # Tokens: the spec
//!
//! Every gRPC call carries `authorization: Bearer <JWT>`. The daemon verifies the token here
//! (pure code, no tonic) and then checks, before looking anything up, that it covers the
//! namespace the call touches.
//!
//! ## Signature
//! - **HS256** with a shared secret: the local key `<data-dir>/keys/hs256.key` (created on
//!   first start when no key is configured; mode 0600) or `--jwt-key-file` (the file's bytes,
//!   at least 32). `scipcached token` signs with it. Such tokens carry no `kid`.
//! - **Public keys** from `--jwks FILE`, a JWK set whose keys each have a `kid`; a token
//!   names its key with the `kid` header, and each key verifies only its one algorithm
//!   (RS256, ES256, ES384, EdDSA …). Several keys may be listed at once for rotation.
//!
//! The algorithm is pinned per key: a token whose `alg` differs from its key's is refused,
//! so an RSA public key can never be used as an HMAC secret.
//!
//! ## Claims
//! | claim | type | meaning |
//! | --- | --- | --- |
//! | `sub` | string | who holds the token (a CI job, a person); logged; revocable |
//! | `tenant` | string | the tenant whose namespaces the scopes cover, or `*` for all |
//! | `scopes` | array of strings | what the token may do (below) |
//! | `jti` | string | unique token id; revocable |
//! | `exp` | number | expiry, Unix seconds; **required** |
//! | `iat` | number | issue time, Unix seconds |
//! | `nbf` | number | not valid before, Unix seconds; checked when present |
//! | `iss` | string | issuer; required and checked when `--jwt-issuer` is set |
//! | `aud` | string or array | audience; required and checked when `--jwt-audience` is set (a token with an `aud` is refused by a daemon without `--jwt-audience`) |
//!
//! `exp` and `nbf` are checked with `--jwt-leeway` of clock skew (1 s by default), and so is
//! `iat`: a token issued further in the future than the leeway is refused. With
//! `--jwt-max-ttl D` a token must carry `iat`, and one whose `exp − iat` exceeds `D` is
//! refused (`scipcached token` refuses to mint such a token too).
//!
//! ## Scopes
//! A scope is `team/project:right`. `team` and `project` are exact names or `*`; `*:right`
//! is short for `*/*:right`. Rights: `read` (resolve, list, pull, read chunks), `write`
//! (implies read; upload chunks, commit, delete refs) and `admin` (implies both; `*:admin`
//! also allows stats and GC of the whole tenant). A scope only ever covers namespaces of the
//! token's `tenant`: a token for tenant `acme` can never touch `other/…`. A token with
//! `tenant: "*"` covers every tenant; with `*:admin` it is the **operator**, which may also
//! see the stats of every tenant.
//!
//! ## Revocation
//! `--denylist FILE` lists `jti` and `sub` values, one a line (`#` comments); it is reloaded
//! when it changes. A revoked token is refused as `UNAUTHENTICATED: token revoked`.
//!
//! ## Example
//! Header `{"alg":"HS256","typ":"JWT"}`, claims:
//! ```json
//! {
//!   "sub": "ci-web",
//!   "tenant": "acme",
//!   "scopes": ["web/app:write", "web/*:read"],
//!   "jti": "3f1c0e9a4b7d2e6f8a9b0c1d2e3f4a5b",
//!   "iat": 1767225600,
//!   "nbf": 1767225600,
//!   "exp": 1767312000
//! }
//! ```
//! This token may push to and pull from `acme/web/app`, pull from every `acme/web/*`
//! project, and nothing in any other tenant. Mint one with
//! `scipcached token --data-dir DIR --tenant acme --scope web/app:write --scope 'web/*:read'`.

pub mod access;
pub mod denylist;
pub mod interceptor;
pub mod keys;
pub mod scope;
mod verified;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use scipcache_tiers::clock::Clock;
use scipcache_tiers::names::{Namespace, Tenant};
use serde::{Deserialize, Serialize};

pub use denylist::Denylist;
pub use keys::{PublicKey, Secret};
pub use scope::{Pattern, Right, Scope, TenantClaim};

pub use crate::error::AuthError;
use crate::error::{Error, Result};

/// The claims as they travel in the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WireClaims {
    sub: String,
    tenant: String,
    scopes: Vec<String>,
    jti: String,
    exp: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A verified token's claims, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Holder.
    pub sub: String,
    /// Tenant covered.
    pub tenant: TenantClaim,
    /// Rights.
    pub scopes: Vec<Scope>,
    /// Token id.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// Not before, Unix seconds.
    pub nbf: Option<u64>,
    /// Issuer.
    pub iss: Option<String>,
    /// Audiences.
    pub aud: Vec<String>,
}

impl Claims {
    /// Whether the token may exercise `right` on `ns`: the tenant matches exactly (or the
    /// token is for every tenant) and some scope covers team and project with at least
    /// `right`.
    pub fn allows(&self, ns: &Namespace, right: Right) -> bool {
        self.tenant.matches(ns.tenant())
            && self
                .scopes
                .iter()
                .any(|s| s.allows(ns.team(), ns.project(), right))
    }

    /// Whether the token is the operator's: every tenant, `*:admin`.
    pub fn is_operator(&self) -> bool {
        self.tenant == TenantClaim::Any && self.has_tenant_wide(Right::Admin)
    }

    /// Whether the token holds `right` over every namespace of `tenant` (what tenant-wide
    /// operations such as stats and GC need).
    pub fn allows_tenant(&self, tenant: &Tenant, right: Right) -> bool {
        self.tenant.matches(tenant) && self.has_tenant_wide(right)
    }

    fn has_tenant_wide(&self, right: Right) -> bool {
        self.scopes
            .iter()
            .any(|s| s.is_tenant_wide() && s.right >= right)
    }
}

/// Checks tokens: signature with a pinned algorithm, times, issuer, audience, claims and the
/// denylist. Cheap to share behind an `Arc`.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    jwks: HashMap<String, PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_ttl: Option<Duration>,
    denylist: Option<Denylist>,
    clock: Clock,
    /// Tokens verified in full, remembered until they expire (`verified.rs`).
    verified: verified::VerifiedTokens,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_ttl", &self.max_ttl)
            .field("denylist", &self.denylist.as_ref().map(Denylist::len))
            .finish()
    }
}

/// What a [`Verifier`] trusts and checks.
#[derive(Debug, Default)]
pub struct VerifierConfig {
    /// HS256 secret.
    pub hs256: Option<Secret>,
    /// Public keys by `kid`.
    pub jwks: HashMap<String, PublicKey>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required audience.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`/`iat`.
    pub leeway: Duration,
    /// Longest `exp − iat` accepted (`--jwt-max-ttl`); `None` = no limit.
    pub max_ttl: Option<Duration>,
    /// Revoked `jti`/`sub` values.
    pub denylist: Option<Denylist>,
    /// The clock `iat` is compared with (`exp` and `nbf` are checked by `jsonwebtoken`
    /// against the system clock).
    pub clock: Clock,
}

impl Verifier {
    /// A verifier; at least one key is needed.
    pub fn new(config: VerifierConfig) -> Result<Self> {
        if config.hs256.is_none() && config.jwks.is_empty() {
            return Err(Error::Key("no token verification key configured".into()));
        }
        Ok(Self {
            hs256: config.hs256.map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks: config.jwks,
            issuer: config.issuer,
            audience: config.audience,
            leeway: config.leeway,
            max_ttl: config.max_ttl,
            denylist: config.denylist,
            clock: config.clock,
            verified: verified::VerifiedTokens::default(),
        })
    }

    /// [`Verifier::verify`] for a request: a token verified before and still unexpired is
    /// answered from memory, after the denylist is checked again (`verified.rs`).
    pub fn verify_cached(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        let now_s = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self.verified.get(token, now_s, self.leeway_s()) {
            self.check_denylist(&claims)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify(token)?);
        self.verified.insert(token, claims.clone());
        Ok(claims)
    }

    /// The leeway in whole seconds, rounded up, as `jsonwebtoken` is given it.
    fn leeway_s(&self) -> u64 {
        self.leeway.as_secs() + u64::from(self.leeway.subsec_nanos() > 0)
    }

    fn check_denylist(&self, claims: &Claims) -> Result<(), AuthError> {
        if let Some(deny) = &self.denylist
            && (deny.contains(&claims.jti) || deny.contains(&claims.sub))
        {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }

    /// Verifies a bare JWT and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Malformed("not a JWT (header.claims.signature)".into()))?;
        let (key, alg) = self.key_for(&header)?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_s();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<WireClaims>(token, key, &validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        self.check_issue_time(&data.claims, validation.leeway)?;
        let claims = parse_claims(data.claims)?;
        self.check_denylist(&claims)?;
        Ok(claims)
    }

    /// `iat` not beyond the leeway in the future, and `exp − iat` within `--jwt-max-ttl`.
    fn check_issue_time(&self, claims: &WireClaims, leeway_s: u64) -> Result<(), AuthError> {
        let now = self.clock.now_s();
        if claims.iat > now.saturating_add(leeway_s) {
            return Err(AuthError::IssuedInFuture {
                ahead_s: claims.iat - now,
            });
        }
        if let Some(max) = self.max_ttl {
            // Without iat the lifetime is unknown; serde reads an absent iat as 0.
            if claims.iat == 0 {
                return Err(AuthError::MissingClaim("iat".into()));
            }
            let lifetime_s = claims.exp.saturating_sub(claims.iat);
            if Duration::from_secs(lifetime_s) > max {
                return Err(AuthError::LifetimeTooLong {
                    lifetime_s,
                    max_s: max.as_secs(),
                });
            }
        }
        Ok(())
    }

    fn key_for(&self, header: &Header) -> Result<(&DecodingKey, Algorithm), AuthError> {
        match &header.kid {
            Some(kid) => self
                .jwks
                .get(kid)
                .map(|k| (&k.key, k.alg))
                .ok_or_else(|| AuthError::UnknownKey(format!("unknown key id (kid) {kid:?}"))),
            None => {
                if let Some(key) = &self.hs256 {
                    return Ok((key, Algorithm::HS256));
                }
                // One public key and no secret: a token without kid can only mean that key.
                match self.jwks.values().collect::<Vec<_>>().as_slice() {
                    [only] => Ok((&only.key, only.alg)),
                    _ => Err(AuthError::UnknownKey(
                        "no key id (kid) in its header; this server needs one".into(),
                    )),
                }
            }
        }
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::WrongAlgorithm("of the token".into())
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::BadClaims(format!("{claim} has the wrong type"))
        }
        ErrorKind::Json(e) => AuthError::BadClaims(e.to_string()),
        _ => AuthError::Malformed("not a valid JWT".into()),
    }
}

fn parse_claims(wire: WireClaims) -> Result<Claims, AuthError> {
    let tenant = wire
        .tenant
        .parse()
        .map_err(|e| AuthError::BadClaims(format!("tenant: {e}")))?;
    let scopes = wire
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(AuthError::BadClaims)?;
    Ok(Claims {
        sub: wire.sub,
        tenant,
        scopes,
        jti: wire.jti,
        exp: wire.exp,
        iat: wire.iat,
        nbf: wire.nbf,
        iss: wire.iss,
        aud: match wire.aud {
            None => Vec::new(),
            Some(Audience::One(a)) => vec![a],
            Some(Audience::Many(a)) => a,
        },
    })
}

/// What to put in a new token.
#[derive(Clone, Debug)]
pub struct MintRequest {
    /// Holder.
    pub sub: String,
    /// `*` or a tenant name.
    pub tenant: String,
    /// Scopes as text; each is validated.
    pub scopes: Vec<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// Issuer claim.
    pub issuer: Option<String>,
    /// Audience claim.
    pub audience: Option<String>,
}

/// A minted token.
#[derive(Clone, Debug)]
pub struct Minted {
    /// The JWT.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
}

/// Signs an HS256 token after validating tenant and scopes.
pub fn mint(secret: &Secret, req: &MintRequest) -> Result<Minted> {
    let tenant: TenantClaim = req
        .tenant
        .parse()
        .map_err(|e| Error::Mint(format!("--tenant: {e}")))?;
    if req.scopes.is_empty() {
        return Err(Error::Mint(
            "give at least one --scope (team/project:right or *:right)".into(),
        ));
    }
    let scopes = req
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>().map(|s| s.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::Mint)?;
    if req.sub.is_empty() {
        return Err(Error::Mint("--sub must not be empty".into()));
    }
    if req.ttl.is_zero() {
        return Err(Error::Mint("--ttl must be positive".into()));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let exp = now
        .checked_add(req.ttl.as_secs().max(1))
        .ok_or_else(|| Error::Mint("--ttl is too long".into()))?;
    let jti = hex::encode(rand::random::<[u8; 16]>());
    let claims = WireClaims {
        sub: req.sub.clone(),
        tenant: tenant.to_string(),
        scopes,
        jti: jti.clone(),
        exp,
        iat: now,
        nbf: Some(now),
        iss: req.issuer.clone(),
        aud: req.audience.clone().map(Audience::One),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Mint(e.to_string()))?;
    Ok(Minted { token, jti })
}

#[cfg(test)]
mod tests;
