//! `scipcached token`: mint a token with the local HS256 key (or `--jwt-key-file`).
//!
//! It only reads the key file, never the store, so it works while the daemon runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::keys::{Secret, local_key_path};
use crate::auth::{MintRequest, Minted, mint};
use crate::config::{Config, read_file};
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
    /// Refuse a --ttl above this (match the daemon's --jwt-max-ttl, which refuses longer
    /// tokens). [default: the --config file's jwt_max_ttl, else no limit]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_JWT_MAX_TTL", value_parser = parse_duration)]
    pub jwt_max_ttl: Option<Duration>,
    /// The daemon's TOML config file, read for jwt_max_ttl.
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl TokenArgs {
    /// The longest `--ttl` allowed: `--jwt-max-ttl` (flag or environment), else the config
    /// file's `jwt_max_ttl`, with where it came from.
    pub fn max_ttl(&self) -> Result<Option<(Duration, String)>> {
        if let Some(max) = self.jwt_max_ttl {
            return Ok(Some((max, "--jwt-max-ttl".into())));
        }
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let config: Config = read_file(path)?
            .try_into()
            .map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))?;
        Ok(config
            .jwt_max_ttl
            .map(|max| (max, format!("jwt_max_ttl in {}", path.display()))))
    }

    /// Reads the key and mints the token.
    pub fn mint(&self) -> Result<Minted> {
        if let Some((max, origin)) = self.max_ttl()?
            && self.ttl > max
        {
            return Err(Error::Mint(format!(
                "--ttl {} is longer than {} ({origin}), so the daemon would refuse the token; \
                 give a --ttl of at most that",
                humantime::format_duration(self.ttl),
                humantime::format_duration(max)
            )));
        }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        token: TokenArgs,
    }

    fn key_file(dir: &std::path::Path) -> Result<PathBuf> {
        let path = dir.join("hs256.key");
        std::fs::write(&path, [7u8; 48]).map_err(|e| Error::io("write", &path, e))?;
        Ok(path)
    }

    fn args(extra: &[&str], key: &std::path::Path) -> Result<TokenArgs> {
        let mut argv = vec!["token", "--tenant", "acme", "--scope", "*:read"];
        let key = key.to_str().unwrap_or_default();
        argv.extend_from_slice(&["--jwt-key-file", key]);
        argv.extend_from_slice(extra);
        Cmd::try_parse_from(argv)
            .map(|c| c.token)
            .map_err(|e| Error::Config(e.to_string()))
    }

    #[test]
    fn a_ttl_above_the_max_ttl_flag_is_refused_with_both_durations() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let key = key_file(dir.path())?;
        let err = args(&["--ttl", "48h", "--jwt-max-ttl", "1day"], &key)?
            .mint()
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--ttl 2days") && err.contains("1day") && err.contains("--jwt-max-ttl"),
            "{err}"
        );
        args(&["--ttl", "24h", "--jwt-max-ttl", "24h"], &key)?.mint()?;
        Ok(())
    }

    #[test]
    fn the_max_ttl_is_read_from_the_config_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let key = key_file(dir.path())?;
        let config = dir.path().join("scipcached.toml");
        std::fs::write(&config, "jwt_max_ttl = \"1h\"\nlisten = \"127.0.0.1:1\"\n")
            .map_err(|e| Error::io("write", &config, e))?;
        let config = config.to_str().unwrap_or_default();
        let err = args(&["--ttl", "2h", "--config", config], &key)?
            .mint()
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("jwt_max_ttl in") && err.contains("1h"),
            "{err}"
        );
        args(&["--ttl", "30m", "--config", config], &key)?.mint()?;
        // The flag beats the file.
        args(
            &["--ttl", "2h", "--config", config, "--jwt-max-ttl", "3h"],
            &key,
        )?
        .mint()?;
        Ok(())
    }
}
