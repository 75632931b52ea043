//! Key material: the HS256 secret file (the local one under `<data-dir>/keys/` or
//! `--jwt-key-file`) and the JWK set of `--jwks`. Synchronous file I/O: callers in async
//! code run these in `spawn_blocking`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::{Error, Result};

/// Fewest bytes an HS256 secret may have.
pub const MIN_SECRET_LEN: usize = 32;

/// Where the local key lives inside a data dir.
pub fn local_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("hs256.key")
}

/// An HS256 secret: the exact bytes of its file.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Wraps secret bytes, refusing fewer than [`MIN_SECRET_LEN`].
    pub fn new(bytes: Vec<u8>, origin: &Path) -> Result<Self> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(Error::Key(format!(
                "HS256 key file {} holds {} bytes; it needs at least {MIN_SECRET_LEN} \
                 (e.g. `head -c 48 /dev/urandom > {}`)",
                origin.display(),
                bytes.len(),
                origin.display()
            )));
        }
        Ok(Self(bytes))
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads a secret file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read key file", path, e))?;
        Self::new(bytes, path)
    }
}

/// Reads the local key of `data_dir`, creating it (and `keys/`, mode 0700) when missing.
/// Returns the secret and whether it was created now. Safe against a concurrent creator:
/// the file appears whole or not at all, and the first one to appear wins.
pub fn ensure_local_key(data_dir: &Path) -> Result<(Secret, bool)> {
    let path = local_key_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => return Ok((Secret::new(bytes, &path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot read key file", &path, e)),
    }
    let dir = data_dir.join("keys");
    create_private_dir(&dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>()).into_bytes();
    let tmp = dir.join(format!(".hs256.key.{}.tmp", std::process::id()));
    write_private_file(&tmp, &secret)?;
    // hard_link never replaces an existing file: if another process created the key
    // meanwhile, keep theirs.
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&dir);
            Ok((Secret::new(secret, &path)?, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((Secret::read(&path)?, false))
        }
        Err(e) => Err(Error::io("cannot create key file", &path, e)),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::io("cannot create key directory", dir, e))
}

fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Error::io("cannot create key file", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("cannot write key file", path, e))
}

fn sync_dir(dir: &Path) {
    // Best effort: the key is re-created on the next start if a crash loses it.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A public key from a JWK set, with the one algorithm it may verify.
#[derive(Clone)]
pub struct PublicKey {
    /// The key.
    pub key: DecodingKey,
    /// Its pinned algorithm.
    pub alg: Algorithm,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?})", self.alg)
    }
}

/// Parses a JWK set (`{"keys": [...]}`): every key needs a unique `kid`; its algorithm is its
/// `alg`, or follows from its type (RSA → RS256, EC P-256 → ES256, EC P-384 → ES384, OKP
/// Ed25519 → EdDSA). Symmetric (`oct`) keys are refused: use `--jwt-key-file` for those.
pub fn parse_jwks(json: &str, origin: &Path) -> Result<HashMap<String, PublicKey>> {
    let bad = |what: String| Error::Key(format!("JWK set {}: {what}", origin.display()));
    let set: JwkSet = serde_json::from_str(json).map_err(|e| bad(format!("not a JWK set: {e}")))?;
    if set.keys.is_empty() {
        return Err(bad("holds no keys".into()));
    }
    let mut keys = HashMap::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| bad("a key has no \"kid\"; every key needs one".into()))?;
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(bad(format!("key {kid}: unsupported curve"))),
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(bad(format!(
                    "key {kid} is a symmetric (oct) key; give HS256 secrets with --jwt-key-file"
                )));
            }
            _ => return Err(bad(format!("key {kid}: unsupported key type"))),
        };
        let alg = match jwk.common.key_algorithm {
            None => implied,
            Some(alg) => {
                let alg = Algorithm::try_from(alg)
                    .map_err(|_| bad(format!("key {kid}: unsupported alg {alg}")))?;
                let key_family = DecodingKey::from_jwk(jwk)
                    .map_err(|e| bad(format!("key {kid}: {e}")))?
                    .family();
                if alg.family() != key_family {
                    return Err(bad(format!(
                        "key {kid}: alg {alg:?} does not fit its key type"
                    )));
                }
                alg
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("key {kid}: {e}")))?;
        if keys.insert(kid.clone(), PublicKey { key, alg }).is_some() {
            return Err(bad(format!("kid {kid} appears twice")));
        }
    }
    Ok(keys)
}

/// Reads and parses a JWK set file.
pub fn read_jwks(path: &Path) -> Result<HashMap<String, PublicKey>> {
    let json =
        std::fs::read_to_string(path).map_err(|e| Error::io("cannot read JWK set", path, e))?;
    parse_jwks(&json, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_key_is_created_once_private_and_long_enough() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let (first, created) = ensure_local_key(dir.path())?;
        assert!(created);
        assert!(first.as_bytes().len() >= MIN_SECRET_LEN);
        let (again, created) = ensure_local_key(dir.path())?;
        assert!(!created);
        assert_eq!(first.as_bytes(), again.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = local_key_path(dir.path());
            let mode = std::fs::metadata(&path)
                .map_err(|e| Error::io("stat", &path, e))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn short_secret_files_are_refused_with_a_hint() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let path = dir.path().join("short");
        std::fs::write(&path, b"too short").map_err(|e| Error::io("write", &path, e))?;
        let err = Secret::read(&path).map(|_| ()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("at least 32")));
        Ok(())
    }

    #[test]
    fn jwks_without_kid_or_with_symmetric_keys_is_refused() {
        let no_kid = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert!(parse_jwks(no_kid, Path::new("x")).is_err());
        let oct =
            r#"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}"#;
        assert!(parse_jwks(oct, Path::new("x")).is_err());
        assert!(parse_jwks(r#"{"keys":[]}"#, Path::new("x")).is_err());
        assert!(parse_jwks("nope", Path::new("x")).is_err());
    }
}
