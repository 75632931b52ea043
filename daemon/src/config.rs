//! The daemon's options.
//!
//! Every option can be given three ways; the first one present wins:
//! 1. a command-line flag (`--data-dir DIR`);
//! 2. an environment variable `SCIPCACHE_<NAME>` (`SCIPCACHE_DATA_DIR`). Only the daemon's
//!    own options are read: other `SCIPCACHE_*` variables (the CLI's `SCIPCACHE_TOKEN`,
//!    `SCIPCACHE_SERVER`, …) are ignored;
//! 3. a TOML file given by `--config FILE` (`SCIPCACHE_CONFIG`), whose keys are the option
//!    names with `_` for `-` (`data_dir = "/var/lib/scipcache"`). Unknown keys are refused.
//!
//! and otherwise the built-in default. `daemon/config.example.toml` documents every key;
//! `scipcached --print-config` prints the effective configuration.
//!
//! Durations are humantime (`90s`, `30m`, `24h`, `7d`); sizes are plain bytes or
//! `4GiB`-style. Relative paths are relative to the current directory (also in the file).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::token::TokenArgs;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./scipcache-data";
/// Default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7741";
/// Default metrics and health address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:7742";
/// Default leeway on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(1);
/// Default concurrent calls per client connection.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 256;
/// Default time in-flight calls get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `scipcached`: the command line.
#[derive(Debug, Parser)]
#[command(
    name = "scipcached",
    version,
    about = "scipcache daemon: a content-addressed cache for SCIP code indexes, served over gRPC",
    after_help = "Every option can also be set in the environment (SCIPCACHE_<NAME>, e.g. \
                  SCIPCACHE_DATA_DIR) or in the --config TOML file (key = option name with '_', \
                  e.g. data_dir). Precedence: flag > environment > file > default."
)]
pub struct Cli {
    /// A subcommand; without one the daemon runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the daemon.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint a token signed with the local key: prints only the token on stdout, its jti on
    /// stderr. Works while the daemon runs (it only reads the key file).
    Token(TokenArgs),
}

/// The daemon's options as given on the command line or in the environment. `None` means
/// "not given here": the file or the default decides.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML file with options (keys = option names with '_').
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Root of all local state; made absolute at start and created if missing.
    /// [default: ./scipcache-data]
    #[arg(long, value_name = "DIR", env = "SCIPCACHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC address. [default: 127.0.0.1:7741]
    #[arg(long, value_name = "ADDR", env = "SCIPCACHE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP address of /metrics (Prometheus) and /healthz. [default: 127.0.0.1:7742]
    #[arg(long, value_name = "ADDR", env = "SCIPCACHE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Cold tier object store URL: file:///abs/path, s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix, memory://. [default: file://<data-dir>/cold]
    #[arg(long, value_name = "URL", env = "SCIPCACHE_COLD_URL")]
    pub cold_url: Option<String>,
    /// Extra object store option KEY=VALUE (e.g. aws_endpoint=http://127.0.0.1:9000);
    /// repeatable, comma-separated in the environment.
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "SCIPCACHE_COLD_OPTIONS",
        value_delimiter = ',',
        value_parser = parse_key_value
    )]
    pub cold_options: Vec<(String, String)>,
    /// Concurrent requests to the cold tier. [default: engine default]
    #[arg(long, value_name = "N", env = "SCIPCACHE_COLD_CONCURRENCY")]
    pub cold_concurrency: Option<usize>,
    /// Flush a partial cold pack after this long. [default: engine default]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_COLD_FLUSH_AFTER", value_parser = parse_duration)]
    pub cold_flush_after: Option<Duration>,
    /// LMDB map size: the most the hot tier and metadata can ever hold. [default: 64GiB]
    #[arg(long, value_name = "SIZE", env = "SCIPCACHE_LMDB_MAP_SIZE")]
    pub lmdb_map_size: Option<ByteSize>,
    /// Decode and re-hash chunks read from the hot tier too (warm and cold reads always are).
    /// [default: true]
    #[arg(long, value_name = "BOOL", env = "SCIPCACHE_VERIFY_HOT_READS")]
    pub verify_hot_reads: Option<bool>,

    /// TLS certificate chain (PEM); serves https with --tls-key.
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to (mutual TLS).
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// HS256 secret: the file's bytes, at least 32. [default: <data-dir>/keys/hs256.key,
    /// created on first start, unless --jwks is given]
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// JWK set (JSON) of public keys (RS256, ES256, EdDSA …), selected by the token's kid.
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_JWKS")]
    pub jwks: Option<PathBuf>,
    /// Required `iss` of tokens.
    #[arg(long, value_name = "ISSUER", env = "SCIPCACHE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    #[arg(long, value_name = "AUDIENCE", env = "SCIPCACHE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on exp and nbf. [default: 1s]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_JWT_LEEWAY", value_parser = parse_duration)]
    pub jwt_leeway: Option<Duration>,
    /// Revoked token ids (jti) and subjects (sub), one a line; reloaded when it changes.
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_DENYLIST")]
    pub denylist: Option<PathBuf>,

    /// Log format. [default: human]
    #[arg(long, value_name = "FORMAT", env = "SCIPCACHE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Concurrent calls per client connection. [default: 256]
    #[arg(long, value_name = "N", env = "SCIPCACHE_MAX_CONCURRENT_CALLS")]
    pub max_concurrent_calls: Option<usize>,
    /// At SIGINT/SIGTERM, how long in-flight calls may take before they are aborted.
    /// [default: 5s]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_SHUTDOWN_GRACE", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
}

/// How logs are written (always to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// The options file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// See `--listen`.
    pub listen: Option<SocketAddr>,
    /// See `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// See `--cold-url`.
    pub cold_url: Option<String>,
    /// See `--cold-options`: a table of strings.
    pub cold_options: Option<BTreeMap<String, String>>,
    /// See `--cold-concurrency`.
    pub cold_concurrency: Option<usize>,
    /// See `--cold-flush-after`.
    #[serde(default, with = "humantime_opt")]
    pub cold_flush_after: Option<Duration>,
    /// See `--lmdb-map-size`.
    pub lmdb_map_size: Option<ByteSize>,
    /// See `--verify-hot-reads`.
    pub verify_hot_reads: Option<bool>,
    /// See `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// See `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// See `--tls-client-ca`.
    pub tls_client_ca: Option<PathBuf>,
    /// See `--jwt-key-file`.
    pub jwt_key_file: Option<PathBuf>,
    /// See `--jwks`.
    pub jwks: Option<PathBuf>,
    /// See `--jwt-issuer`.
    pub jwt_issuer: Option<String>,
    /// See `--jwt-audience`.
    pub jwt_audience: Option<String>,
    /// See `--jwt-leeway`.
    #[serde(default, with = "humantime_opt")]
    pub jwt_leeway: Option<Duration>,
    /// See `--denylist`.
    pub denylist: Option<PathBuf>,
    /// See `--log-format`.
    pub log_format: Option<LogFormat>,
    /// See `--max-concurrent-calls`.
    pub max_concurrent_calls: Option<usize>,
    /// See `--shutdown-grace`.
    #[serde(default, with = "humantime_opt")]
    pub shutdown_grace: Option<Duration>,
}

impl FileConfig {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(format!("config file {origin}: {e}")))
    }

    /// Reads and parses a TOML file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read config file", path, e))?;
        Self::parse(&text, &path.display().to_string())
    }
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Root of all local state (absolute after [`Config::load`]).
    pub data_dir: PathBuf,
    /// gRPC address.
    pub listen: SocketAddr,
    /// Metrics and health address.
    pub metrics_listen: SocketAddr,
    /// Cold tier URL; `None` = `file://<data-dir>/cold`.
    pub cold_url: Option<String>,
    /// Extra object store options.
    pub cold_options: BTreeMap<String, String>,
    /// Concurrent cold tier requests; `None` = engine default.
    pub cold_concurrency: Option<usize>,
    /// Partial cold pack flush delay; `None` = engine default.
    pub cold_flush_after: Option<Duration>,
    /// LMDB map size; `None` = engine default.
    pub lmdb_map_size: Option<u64>,
    /// Verify hot-tier reads; `None` = engine default (on).
    pub verify_hot_reads: Option<bool>,
    /// TLS certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// TLS key.
    pub tls_key: Option<PathBuf>,
    /// Client CA for mutual TLS.
    pub tls_client_ca: Option<PathBuf>,
    /// HS256 secret file.
    pub jwt_key_file: Option<PathBuf>,
    /// JWK set file.
    pub jwks: Option<PathBuf>,
    /// Required issuer.
    pub jwt_issuer: Option<String>,
    /// Required audience.
    pub jwt_audience: Option<String>,
    /// Leeway on exp and nbf.
    pub jwt_leeway: Duration,
    /// Denylist file.
    pub denylist: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Concurrent calls per connection.
    pub max_concurrent_calls: usize,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: SocketAddr::from(([127, 0, 0, 1], 7741)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 7742)),
            cold_url: None,
            cold_options: BTreeMap::new(),
            cold_concurrency: None,
            cold_flush_after: None,
            lmdb_map_size: None,
            verify_hot_reads: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            jwt_key_file: None,
            jwks: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: DEFAULT_JWT_LEEWAY,
            denylist: None,
            log_format: LogFormat::Human,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Config {
    /// Resolves flags and environment (`args`), the `--config` file they name, and defaults;
    /// makes the data dir absolute and checks that the options fit together.
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let mut config = Self::layered(args, file);
        config.data_dir = std::path::absolute(&config.data_dir)
            .map_err(|e| Error::io("cannot make the data dir absolute", &config.data_dir, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Flags/environment over file over defaults, without touching the disk.
    pub fn layered(args: &ServeArgs, file: FileConfig) -> Self {
        let d = Self::default();
        let cold_options = if args.cold_options.is_empty() {
            file.cold_options.unwrap_or_default()
        } else {
            args.cold_options.iter().cloned().collect()
        };
        Self {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            metrics_listen: args
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or(d.metrics_listen),
            cold_url: args.cold_url.clone().or(file.cold_url),
            cold_options,
            cold_concurrency: args.cold_concurrency.or(file.cold_concurrency),
            cold_flush_after: args.cold_flush_after.or(file.cold_flush_after),
            lmdb_map_size: args.lmdb_map_size.or(file.lmdb_map_size).map(|b| b.0),
            verify_hot_reads: args.verify_hot_reads.or(file.verify_hot_reads),
            tls_cert: args.tls_cert.clone().or(file.tls_cert),
            tls_key: args.tls_key.clone().or(file.tls_key),
            tls_client_ca: args.tls_client_ca.clone().or(file.tls_client_ca),
            jwt_key_file: args.jwt_key_file.clone().or(file.jwt_key_file),
            jwks: args.jwks.clone().or(file.jwks),
            jwt_issuer: args.jwt_issuer.clone().or(file.jwt_issuer),
            jwt_audience: args.jwt_audience.clone().or(file.jwt_audience),
            jwt_leeway: args.jwt_leeway.or(file.jwt_leeway).unwrap_or(d.jwt_leeway),
            denylist: args.denylist.clone().or(file.denylist),
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
            max_concurrent_calls: args
                .max_concurrent_calls
                .or(file.max_concurrent_calls)
                .unwrap_or(d.max_concurrent_calls),
            shutdown_grace: args
                .shutdown_grace
                .or(file.shutdown_grace)
                .unwrap_or(d.shutdown_grace),
        }
    }

    /// Checks combinations that no single option can.
    pub fn validate(&self) -> Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(Error::Config(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "--tls-key needs --tls-cert (the certificate chain)".into(),
                ));
            }
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(Error::Config(
                "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key".into(),
            ));
        }
        if self.max_concurrent_calls == 0 {
            return Err(Error::Config(
                "--max-concurrent-calls must be at least 1".into(),
            ));
        }
        if self.cold_concurrency == Some(0) {
            return Err(Error::Config(
                "--cold-concurrency must be at least 1".into(),
            ));
        }
        if self.jwt_leeway > Duration::from_secs(300) {
            return Err(Error::Config(
                "--jwt-leeway above 5m defeats token expiry; use at most a few seconds".into(),
            ));
        }
        Ok(())
    }

    /// The engine's configuration.
    pub fn store_config(&self) -> scipcache_tiers::StoreConfig {
        let mut store = scipcache_tiers::StoreConfig::new(&self.data_dir);
        if let Some(url) = &self.cold_url {
            store.cold_url.clone_from(url);
        }
        store.cold_options = self
            .cold_options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(n) = self.cold_concurrency {
            store.cold_concurrency = n;
        }
        if let Some(d) = self.cold_flush_after {
            store.cold_flush_after = d;
        }
        if let Some(size) = self.lmdb_map_size {
            store.lmdb_map_size = size;
        }
        if let Some(verify) = self.verify_hot_reads {
            store.verify_hot_reads = verify;
        }
        store
    }

    /// The configuration as a TOML file would hold it (every key set).
    pub fn to_toml(&self) -> Result<String> {
        let file = FileConfig {
            data_dir: Some(self.data_dir.clone()),
            listen: Some(self.listen),
            metrics_listen: Some(self.metrics_listen),
            cold_url: Some(
                self.cold_url
                    .clone()
                    .unwrap_or_else(|| format!("file://{}", self.data_dir.join("cold").display())),
            ),
            cold_options: Some(self.cold_options.clone()),
            cold_concurrency: self.cold_concurrency,
            cold_flush_after: self.cold_flush_after,
            lmdb_map_size: self.lmdb_map_size.map(ByteSize),
            verify_hot_reads: self.verify_hot_reads,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            jwt_key_file: self.jwt_key_file.clone(),
            jwks: self.jwks.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_audience: self.jwt_audience.clone(),
            jwt_leeway: Some(self.jwt_leeway),
            denylist: self.denylist.clone(),
            log_format: Some(self.log_format),
            max_concurrent_calls: Some(self.max_concurrent_calls),
            shutdown_grace: Some(self.shutdown_grace),
        };
        toml::to_string(&file).map_err(|e| Error::Config(format!("cannot print config: {e}")))
    }
}

/// A byte count: plain bytes (`1073741824`) or with a unit (`4GiB`, `512 MiB`, `10GB`).
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the short `K`, `M`, `G`, `T`) are powers of
/// 1024; decimal ones (`KB`, `MB`, `GB`, `TB`) powers of 1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let bad = || format!("invalid size {s:?}: use bytes or a unit such as 512MiB or 4GiB");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // TOML integers are i64; sizes above that are printed as text.
        match i64::try_from(self.0) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `humantime` durations in the options file (`"90s"`, `"24h"`).
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a humantime duration (`90s`, `30m`, `24h`, `7d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 90s, 30m, 24h, 7d"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> std::result::Result<ServeArgs, clap::Error> {
        let mut full = vec!["scipcached"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).map(|cli| cli.serve)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::layered(&ServeArgs::default(), FileConfig::default());
        assert_eq!(c.data_dir, PathBuf::from("./scipcache-data"));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(c.jwt_leeway, Duration::from_secs(1));
        let store = c.store_config();
        assert_eq!(store.cold_url, "file://./scipcache-data/cold");
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() -> Result<()> {
        let file = FileConfig::parse(
            r#"
            data_dir = "/from/file"
            listen = "127.0.0.1:9000"
            jwt_leeway = "3s"
            cold_concurrency = 3
            "#,
            "test",
        )?;
        let a = args(&["--listen", "127.0.0.1:9001"]).map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, file);
        assert_eq!(
            c.listen.to_string(),
            "127.0.0.1:9001",
            "flag wins over file"
        );
        assert_eq!(
            c.data_dir,
            PathBuf::from("/from/file"),
            "file wins over default"
        );
        assert_eq!(c.jwt_leeway, Duration::from_secs(3));
        assert_eq!(c.cold_concurrency, Some(3));
        assert_eq!(c.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        Ok(())
    }

    #[test]
    fn unknown_file_keys_are_refused_with_their_name() {
        let err = FileConfig::parse("data_dri = \"/x\"", "test").map(|_| ());
        let msg = format!("{err:?}");
        assert!(msg.contains("data_dri"), "{msg}");
    }

    #[test]
    fn example_config_parses_and_documents_every_key() -> Result<()> {
        let text = include_str!("../config.example.toml");
        let file = FileConfig::parse(text, "config.example.toml")?;
        let c = Config::layered(&ServeArgs::default(), file);
        c.validate()?;
        // The example's values are the defaults.
        assert_eq!(c, Config::default());
        // Every key a file may hold appears in the example, set or commented out.
        let mut full = Config {
            cold_url: Some("s3://b/p".into()),
            cold_concurrency: Some(1),
            cold_flush_after: Some(Duration::from_secs(1)),
            lmdb_map_size: Some(1),
            verify_hot_reads: Some(true),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_client_ca: Some("ca".into()),
            jwt_key_file: Some("f".into()),
            jwks: Some("j".into()),
            jwt_issuer: Some("i".into()),
            jwt_audience: Some("a".into()),
            denylist: Some("d".into()),
            ..Config::default()
        };
        full.cold_options.insert("k".into(), "v".into());
        let printed: toml::Table =
            toml::from_str(&full.to_toml()?).map_err(|e| Error::Config(e.to_string()))?;
        assert_eq!(
            printed.len(),
            21,
            "a key was added: document it in config.example.toml"
        );
        for key in printed.keys() {
            assert!(
                text.contains(&format!("{key} =")) || text.contains(&format!("[{key}]")),
                "config.example.toml does not document {key}"
            );
        }
        Ok(())
    }

    #[test]
    fn printed_config_parses_back_to_the_same() -> Result<()> {
        let mut c = Config::layered(&ServeArgs::default(), FileConfig::default());
        c.cold_options
            .insert("aws_region".into(), "eu-west-1".into());
        c.lmdb_map_size = Some(1 << 33);
        let back = Config::layered(
            &ServeArgs::default(),
            FileConfig::parse(&c.to_toml()?, "x")?,
        );
        // The printed cold_url is the resolved default.
        c.cold_url = Some("file://./scipcache-data/cold".into());
        assert_eq!(back, c);
        Ok(())
    }

    #[test]
    fn engine_options_reach_the_store_config() -> Result<()> {
        let file = FileConfig::parse("verify_hot_reads = false\nlmdb_map_size = \"2GiB\"", "x")?;
        let store = Config::layered(&ServeArgs::default(), file).store_config();
        assert!(!store.verify_hot_reads);
        assert_eq!(store.lmdb_map_size, 2 << 30);
        let defaults = Config::layered(&ServeArgs::default(), FileConfig::default()).store_config();
        assert!(
            defaults.verify_hot_reads,
            "hot reads are verified unless configured off"
        );
        Ok(())
    }

    #[test]
    fn sizes_accept_bytes_and_units() {
        assert_eq!("123".parse::<ByteSize>(), Ok(ByteSize(123)));
        assert_eq!("4GiB".parse::<ByteSize>(), Ok(ByteSize(4 << 30)));
        assert_eq!("512 MiB".parse::<ByteSize>(), Ok(ByteSize(512 << 20)));
        assert_eq!("10GB".parse::<ByteSize>(), Ok(ByteSize(10_000_000_000)));
        assert_eq!("1k".parse::<ByteSize>(), Ok(ByteSize(1024)));
        assert!("4 parsecs".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn tls_options_must_come_together() {
        let mut c = Config {
            tls_cert: Some("c.pem".into()),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        c.tls_key = Some("k.pem".into());
        assert!(c.validate().is_ok());
        let c = Config {
            tls_client_ca: Some("ca.pem".into()),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn cold_options_parse_as_key_value_pairs() -> std::result::Result<(), clap::Error> {
        let a = args(&[
            "--cold-options",
            "aws_endpoint=http://127.0.0.1:9000",
            "--cold-options",
            "aws_allow_http=true",
        ])?;
        let c = Config::layered(&a, FileConfig::default());
        assert_eq!(
            c.cold_options.get("aws_endpoint").map(String::as_str),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(c.cold_options.len(), 2);
        assert!(args(&["--cold-options", "novalue"]).is_err());
        Ok(())
    }
}
