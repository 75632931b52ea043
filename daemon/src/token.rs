//! `scipcached token`: mint a token with the local HS256 key (or `--jwt-key-file`).
//!
//! It only reads the key file, never the store, so it works while the daemon runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::keys::{Secret, local_key_path};
use crate::auth::{MintRequest, Minted, mint};
use crate::error::{Error, Result};
use crate::values::{DEFAULT_DATA_DIR, parse_duration};

/// `scipcached token (--data-dir DIR | --jwt-key-file FILE) --tenant T --scope SCOPE...
/// [--ttl 24h] [--sub NAME]`.
#[derive(Debug, Args)]
#[command(
    after_help = "A scope is team/project:right; team and project may be *, and *:right \
                        is short for */*:right. Rights: read, write (implies read), admin \
                        (implies both, and with *:admin allows stats and gc of the tenant). \
                        --tenant '*' with --scope '*:admin' mints an operator token."
)]
pub struct TokenArgs {
    /// Data dir whose local key signs the token (<DIR>/keys/hs256.key).
    #[arg(long, value_name = "DIR", env = "SCIPCACHE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// HS256 secret file to sign with instead of the data dir's key.
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// The tenant the token is for, or * for every tenant.
    #[arg(long)]
    pub tenant: String,
    /// What the token may do: team/project:right or *:right; repeatable.
    #[arg(long = "scope", value_name = "SCOPE", required = true, num_args = 1..)]
    pub scopes: Vec<String>,
    /// Lifetime (humantime: 90s, 30m, 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Who holds the token (the `sub` claim; revocable through the denylist).
    #[arg(long, value_name = "NAME", default_value = "scipcached-token")]
    pub sub: String,
    /// `iss` claim (match the daemon's --jwt-issuer).
    #[arg(long, value_name = "ISSUER", env = "SCIPCACHE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// `aud` claim (match the daemon's --jwt-audience).
    #[arg(long, value_name = "AUDIENCE", env = "SCIPCACHE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl TokenArgs {
    /// Reads the key and mints the token.
    pub fn mint(&self) -> Result<Minted> {
        let secret = match &self.jwt_key_file {
            Some(file) => Secret::read(file)?,
            None => {
                let dir = &self.data_dir;
                let path = local_key_path(dir);
                if !path.exists() {
                    return Err(Error::Key(format!(
                        "no signing key at {}: start `scipcached --data-dir {}` once to create \
                         it, or pass --jwt-key-file",
                        path.display(),
                        dir.display()
                    )));
                }
                Secret::read(&path)?
            }
        };
        mint(
            &secret,
            &MintRequest {
                sub: self.sub.clone(),
                tenant: self.tenant.clone(),
                scopes: self.scopes.clone(),
                ttl: self.ttl,
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
            },
        )
    }
}
