//! Token verification and scope checks.

use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};

use super::*;

/// Test-only keys (generated with `openssl genpkey`), never used outside these tests.
const ED25519_A: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHEbRb7gGkZyV8vFQjkfsN5kyqoUtVRle2+6lijbXrAv
-----END PRIVATE KEY-----
";
const ED25519_B: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPpYCLiVYdSeUubx/3d962PBTJWPEwJrJhqd6uqPpF8y
-----END PRIVATE KEY-----
";
const P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPFiZCuMr2rxPnz5V
726iSdC+nGcmdpAavKjpSygsIZuhRANCAARW4/Tu+LPJUANENH/F594gutYCVDyM
2Wi1GsFvsvEMFX2sjFpfh/qUQ0ZVopgBKGgafRmyzMDy9dk+QUqMRCgu
-----END PRIVATE KEY-----
";

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn secret(fill: u8) -> Secret {
    match Secret::new(vec![fill; 32], Path::new("test")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn verifier(secret: &Secret) -> Verifier {
    verifier_with(VerifierConfig {
        hs256: Some(secret.clone()),
        leeway: Duration::from_secs(1),
        ..VerifierConfig::default()
    })
}

fn verifier_with(config: VerifierConfig) -> Verifier {
    match Verifier::new(config) {
        Ok(v) => v,
        Err(e) => panic!("verifier: {e}"),
    }
}

fn request(tenant: &str, scopes: &[&str]) -> MintRequest {
    MintRequest {
        sub: "ci".into(),
        tenant: tenant.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ttl: Duration::from_secs(3600),
        issuer: None,
        audience: None,
    }
}

fn claims_at(exp_offset: i64, nbf_offset: Option<i64>) -> WireClaims {
    let now = jsonwebtoken::get_current_timestamp();
    let at = |off: i64| now.saturating_add_signed(off);
    WireClaims {
        sub: "ci".into(),
        tenant: "acme".into(),
        scopes: vec!["*:read".into()],
        jti: "j1".into(),
        exp: at(exp_offset),
        iat: now,
        nbf: nbf_offset.map(at),
        iss: None,
        aud: None,
    }
}

fn sign_hs(claims: &WireClaims, secret: &Secret) -> String {
    match jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    ) {
        Ok(t) => t,
        Err(e) => panic!("encode: {e}"),
    }
}

fn ns(s: &str) -> Namespace {
    match s.parse() {
        Ok(ns) => ns,
        Err(e) => panic!("{s}: {e}"),
    }
}

#[test]
fn minted_token_verifies_with_the_same_secret() -> TestResult {
    let key = secret(7);
    let minted = mint(&key, &request("acme", &["web/app:write", "*:read"]))?;
    let claims = verifier(&key).verify(&minted.token)?;
    assert_eq!(claims.jti, minted.jti);
    assert_eq!(claims.sub, "ci");
    assert_eq!(claims.tenant.to_string(), "acme");
    assert_eq!(claims.scopes.len(), 2);
    assert!(claims.exp > claims.iat);
    Ok(())
}

#[test]
fn minting_refuses_bad_tenants_scopes_and_ttls() {
    let key = secret(7);
    assert!(mint(&key, &request("Acme", &["*:read"])).is_err());
    assert!(mint(&key, &request("acme", &[])).is_err());
    assert!(mint(&key, &request("acme", &["web:read"])).is_err());
    assert!(mint(&key, &request("acme", &["*:owner"])).is_err());
    let mut zero = request("acme", &["*:read"]);
    zero.ttl = Duration::ZERO;
    assert!(mint(&key, &zero).is_err());
    assert!(mint(&key, &request("*", &["*:admin"])).is_ok());
}

#[test]
fn expired_tokens_are_refused_beyond_the_leeway() {
    let key = secret(1);
    let v = verifier(&key);
    let expired = sign_hs(&claims_at(-10, None), &key);
    assert_eq!(v.verify(&expired), Err(AuthError::Expired));
    assert!(AuthError::Expired.to_string().contains("mint a new one"));
    // Within the 1 s leeway.
    let just = sign_hs(&claims_at(0, None), &key);
    assert!(v.verify(&just).is_ok());
}

#[test]
fn tokens_before_their_nbf_are_refused() {
    let key = secret(1);
    let early = sign_hs(&claims_at(3600, Some(120)), &key);
    assert_eq!(verifier(&key).verify(&early), Err(AuthError::NotYetValid));
}

#[test]
fn tokens_without_exp_are_refused() {
    let key = secret(1);
    let claims =
        serde_json::json!({"sub": "x", "tenant": "acme", "scopes": ["*:read"], "jti": "j"});
    let token = match jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    ) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    assert!(verifier(&key).verify(&token).is_err());
}

#[test]
fn a_token_signed_with_another_secret_has_a_bad_signature() -> TestResult {
    let minted = mint(&secret(1), &request("acme", &["*:read"]))?;
    assert_eq!(
        verifier(&secret(2)).verify(&minted.token),
        Err(AuthError::BadSignature)
    );
    Ok(())
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let v = verifier(&secret(1));
    for bad in ["", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30."] {
        assert!(v.verify(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn issuer_and_audience_are_required_when_configured() -> TestResult {
    let key = secret(3);
    let v = verifier_with(VerifierConfig {
        hs256: Some(key.clone()),
        issuer: Some("ci.example".into()),
        audience: Some("scipcache".into()),
        leeway: Duration::from_secs(1),
        ..VerifierConfig::default()
    });
    let mut good = request("acme", &["*:read"]);
    good.issuer = Some("ci.example".into());
    good.audience = Some("scipcache".into());
    assert!(v.verify(&mint(&key, &good)?.token).is_ok());

    let mut wrong_iss = good.clone();
    wrong_iss.issuer = Some("evil".into());
    assert_eq!(
        v.verify(&mint(&key, &wrong_iss)?.token),
        Err(AuthError::WrongIssuer)
    );

    let mut wrong_aud = good.clone();
    wrong_aud.audience = Some("other".into());
    assert_eq!(
        v.verify(&mint(&key, &wrong_aud)?.token),
        Err(AuthError::WrongAudience)
    );

    let mut no_iss = good;
    no_iss.issuer = None;
    assert_eq!(
        v.verify(&mint(&key, &no_iss)?.token),
        Err(AuthError::MissingClaim("iss".into()))
    );
    Ok(())
}

#[test]
fn revoked_jti_and_sub_are_refused() -> TestResult {
    let key = secret(4);
    let first = mint(&key, &request("acme", &["*:read"]))?;
    let second = mint(&key, &request("acme", &["*:read"]))?;
    let mut other_sub = request("acme", &["*:read"]);
    other_sub.sub = "leaked-bot".into();
    let third = mint(&key, &other_sub)?;
    let v = verifier_with(VerifierConfig {
        hs256: Some(key.clone()),
        leeway: Duration::from_secs(1),
        denylist: Some(Denylist::fixed(&[first.jti.as_str(), "leaked-bot"])),
        ..VerifierConfig::default()
    });
    assert_eq!(v.verify(&first.token), Err(AuthError::Revoked));
    assert!(v.verify(&second.token).is_ok());
    assert_eq!(v.verify(&third.token), Err(AuthError::Revoked));
    Ok(())
}

fn jwk_of(pem: &str, alg: Algorithm, kid: &str) -> (EncodingKey, Jwk) {
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()),
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => panic!("{kid}: {e}"),
    };
    let mut jwk = match Jwk::from_encoding_key(&key, alg) {
        Ok(j) => j,
        Err(e) => panic!("{kid}: {e}"),
    };
    jwk.common.key_id = Some(kid.to_owned());
    (key, jwk)
}

fn sign_with(key: &EncodingKey, alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    match jsonwebtoken::encode(&header, &claims_at(600, None), key) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn jwks_keys_are_selected_by_kid_for_rotation() -> TestResult {
    let (old_key, old_jwk) = jwk_of(ED25519_A, Algorithm::EdDSA, "2025");
    let (new_key, new_jwk) = jwk_of(ED25519_B, Algorithm::EdDSA, "2026");
    let (ec_key, ec_jwk) = jwk_of(P256, Algorithm::ES256, "ec");
    let set = JwkSet {
        keys: vec![old_jwk, new_jwk, ec_jwk],
    };
    let jwks = keys::parse_jwks(&serde_json::to_string(&set)?, Path::new("test"))?;
    let v = verifier_with(VerifierConfig {
        jwks,
        leeway: Duration::from_secs(1),
        ..VerifierConfig::default()
    });
    assert!(
        v.verify(&sign_with(&old_key, Algorithm::EdDSA, Some("2025")))
            .is_ok()
    );
    assert!(
        v.verify(&sign_with(&new_key, Algorithm::EdDSA, Some("2026")))
            .is_ok()
    );
    assert!(
        v.verify(&sign_with(&ec_key, Algorithm::ES256, Some("ec")))
            .is_ok()
    );
    // Signed by one key, claiming the other's kid.
    assert_eq!(
        v.verify(&sign_with(&old_key, Algorithm::EdDSA, Some("2026"))),
        Err(AuthError::BadSignature)
    );
    assert!(matches!(
        v.verify(&sign_with(&old_key, Algorithm::EdDSA, Some("1999"))),
        Err(AuthError::UnknownKey(_))
    ));
    // No kid with several public keys and no secret.
    assert!(matches!(
        v.verify(&sign_with(&old_key, Algorithm::EdDSA, None)),
        Err(AuthError::UnknownKey(_))
    ));
    Ok(())
}

#[test]
fn the_algorithm_is_pinned_per_key() -> TestResult {
    let (_, jwk) = jwk_of(ED25519_A, Algorithm::EdDSA, "ed");
    let set = JwkSet { keys: vec![jwk] };
    let jwks = keys::parse_jwks(&serde_json::to_string(&set)?, Path::new("test"))?;
    let hs = secret(9);
    let v = verifier_with(VerifierConfig {
        hs256: Some(hs.clone()),
        jwks,
        leeway: Duration::from_secs(1),
        ..VerifierConfig::default()
    });
    // An HS256 token naming the EdDSA key's kid must not be checked as HMAC.
    let confused = sign_with(
        &EncodingKey::from_secret(hs.as_bytes()),
        Algorithm::HS256,
        Some("ed"),
    );
    assert!(matches!(
        v.verify(&confused),
        Err(AuthError::WrongAlgorithm(_))
    ));
    // The secret still verifies tokens without a kid.
    assert!(
        v.verify(&mint(&hs, &request("acme", &["*:read"]))?.token)
            .is_ok()
    );
    Ok(())
}

fn claims(tenant: &str, scopes: &[&str]) -> Claims {
    let wire = WireClaims {
        tenant: tenant.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..claims_at(60, None)
    };
    match parse_claims(wire) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn claims_allow_only_their_tenant_and_matching_scopes() {
    let c = claims("acme", &["web/app:write", "web/*:read"]);
    assert!(c.allows(&ns("acme/web/app"), Right::Write));
    assert!(c.allows(&ns("acme/web/app"), Right::Read));
    assert!(!c.allows(&ns("acme/web/app"), Right::Admin));
    assert!(c.allows(&ns("acme/web/lib"), Right::Read));
    assert!(!c.allows(&ns("acme/web/lib"), Right::Write));
    assert!(!c.allows(&ns("acme/api/app"), Right::Read));
    // Another tenant, even with the same team and project.
    assert!(!c.allows(&ns("other/web/app"), Right::Read));
    assert!(!c.allows(&ns("acme2/web/app"), Right::Read));
    assert!(!c.is_operator());
}

#[test]
fn a_tenant_wildcard_scope_stays_inside_the_tenant()
-> std::result::Result<(), scipcache_tiers::Error> {
    let c = claims("acme", &["*:admin"]);
    assert!(c.allows(&ns("acme/any/thing"), Right::Admin));
    assert!(!c.allows(&ns("globex/any/thing"), Right::Read));
    assert!(c.allows_tenant(&"acme".parse()?, Right::Admin));
    assert!(!c.allows_tenant(&"globex".parse()?, Right::Read));
    assert!(!c.is_operator());
    let narrow = claims("acme", &["web/*:admin"]);
    assert!(!narrow.allows_tenant(&"acme".parse()?, Right::Admin));
    Ok(())
}

#[test]
fn the_operator_is_tenant_star_with_star_admin() -> std::result::Result<(), scipcache_tiers::Error>
{
    let op = claims("*", &["*:admin"]);
    assert!(op.is_operator());
    assert!(op.allows(&ns("acme/web/app"), Right::Admin));
    assert!(op.allows(&ns("globex/x/y"), Right::Write));
    assert!(op.allows_tenant(&"globex".parse()?, Right::Admin));
    let reader = claims("*", &["*:read"]);
    assert!(!reader.is_operator());
    assert!(reader.allows(&ns("globex/x/y"), Right::Read));
    assert!(!reader.allows(&ns("globex/x/y"), Right::Write));
    assert!(!claims("acme", &["*:admin"]).is_operator());
    Ok(())
}

#[test]
fn tokens_with_invalid_scopes_or_tenants_are_refused() {
    let key = secret(5);
    let mut wire = claims_at(60, None);
    wire.scopes = vec!["web:read".into()];
    assert!(matches!(
        verifier(&key).verify(&sign_hs(&wire, &key)),
        Err(AuthError::BadClaims(_))
    ));
    let mut wire = claims_at(60, None);
    wire.tenant = "ACME".into();
    assert!(matches!(
        verifier(&key).verify(&sign_hs(&wire, &key)),
        Err(AuthError::BadClaims(_))
    ));
}

#[test]
fn tokens_issued_in_the_future_beyond_the_leeway_are_refused() {
    let key = secret(6);
    let v = verifier(&key);
    let mut ahead = claims_at(3600, None);
    ahead.iat += 120;
    let refused = v.verify(&sign_hs(&ahead, &key));
    assert!(
        matches!(refused, Err(AuthError::IssuedInFuture { ahead_s }) if (119..=121).contains(&ahead_s)),
        "{refused:?}"
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("in the future") && message.contains("clock"),
        "{message}"
    );
    // Within the 1 s leeway: the issuer's clock may run a little ahead.
    let mut within = claims_at(3600, None);
    within.iat += 1;
    assert!(v.verify(&sign_hs(&within, &key)).is_ok());
}

#[test]
fn the_issue_time_is_compared_with_the_verifiers_clock() {
    let key = secret(6);
    let now_ms = scipcache_tiers::clock::Clock::system().now_ms();
    // This verifier's clock stands ten minutes behind the token's issuer.
    let v = verifier_with(VerifierConfig {
        hs256: Some(key.clone()),
        leeway: Duration::from_secs(1),
        clock: scipcache_tiers::clock::Clock::manual(now_ms - 600_000),
        ..VerifierConfig::default()
    });
    assert!(matches!(
        v.verify(&sign_hs(&claims_at(3600, None), &key)),
        Err(AuthError::IssuedInFuture { .. })
    ));
}

fn capped(key: &Secret, max_ttl: Duration) -> Verifier {
    verifier_with(VerifierConfig {
        hs256: Some(key.clone()),
        leeway: Duration::from_secs(1),
        max_ttl: Some(max_ttl),
        ..VerifierConfig::default()
    })
}

#[test]
fn tokens_living_longer_than_the_max_ttl_are_refused() -> TestResult {
    let key = secret(8);
    let v = capped(&key, Duration::from_secs(3600));
    let mut long = request("acme", &["*:read"]);
    long.ttl = Duration::from_secs(7200);
    let refused = v.verify(&mint(&key, &long)?.token);
    assert_eq!(
        refused,
        Err(AuthError::LifetimeTooLong {
            lifetime_s: 7200,
            max_s: 3600
        })
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("2h") && message.contains("1h") && message.contains("--jwt-max-ttl"),
        "{message}"
    );
    // Exactly the limit is accepted.
    let mut exact = request("acme", &["*:read"]);
    exact.ttl = Duration::from_secs(3600);
    assert!(v.verify(&mint(&key, &exact)?.token).is_ok());
    // Without a limit the long token is fine.
    assert!(verifier(&key).verify(&mint(&key, &long)?.token).is_ok());
    Ok(())
}

#[test]
fn with_a_max_ttl_a_token_without_iat_is_refused() {
    let key = secret(8);
    let mut no_iat = claims_at(60, None);
    no_iat.iat = 0;
    let token = sign_hs(&no_iat, &key);
    assert_eq!(
        capped(&key, Duration::from_secs(3600)).verify(&token),
        Err(AuthError::MissingClaim("iat".into()))
    );
    assert!(verifier(&key).verify(&token).is_ok());
}

#[test]
fn a_remembered_token_is_refused_once_the_denylist_names_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("deny");
    std::fs::write(&path, "# nobody yet\n")?;
    let list = Denylist::load(&path)?;
    let key = secret(5);
    let v = verifier_with(VerifierConfig {
        hs256: Some(key.clone()),
        leeway: Duration::from_secs(1),
        denylist: Some(list.clone()),
        ..VerifierConfig::default()
    });
    let minted = mint(&key, &request("acme", &["*:read"]))?;
    assert!(v.verify_cached(&minted.token).is_ok());
    assert!(v.verify_cached(&minted.token).is_ok());
    assert_eq!(
        v.verified.len(),
        1,
        "the second call is answered from memory"
    );
    let tmp = dir.path().join("deny.new");
    std::fs::write(&tmp, format!("{}\n", minted.jti))?;
    std::fs::rename(&tmp, &path)?;
    list.poll()?;
    list.poll()?;
    assert!(list.contains(&minted.jti));
    assert_eq!(v.verify_cached(&minted.token), Err(AuthError::Revoked));
    Ok(())
}

#[test]
fn a_remembered_token_is_refused_as_expired_once_its_exp_passes() -> TestResult {
    let key = secret(6);
    let v = verifier(&key);
    let wire = claims_at(60, None);
    let token = sign_hs(&wire, &key);
    let claims = v.verify_cached(&token)?;
    // At exp + leeway the token still holds; a second later it is forgotten.
    assert!(v.verified.get(&token, claims.exp + 1, 1).is_some());
    assert!(v.verified.get(&token, claims.exp + 2, 1).is_none());
    assert_eq!(v.verified.len(), 0);
    // A token expired beyond the leeway is never remembered.
    let old = sign_hs(&claims_at(-10, None), &key);
    assert_eq!(v.verify_cached(&old), Err(AuthError::Expired));
    assert_eq!(v.verified.len(), 0);
    Ok(())
}

#[test]
fn a_token_refused_in_full_is_never_remembered() -> TestResult {
    let key = secret(7);
    let v = verifier(&key);
    let forged = sign_hs(&claims_at(60, None), &secret(8));
    assert_eq!(v.verify_cached(&forged), Err(AuthError::BadSignature));
    assert_eq!(v.verify_cached(&forged), Err(AuthError::BadSignature));
    assert_eq!(v.verified.len(), 0);
    Ok(())
}
