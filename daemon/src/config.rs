//! The daemon's options.
//!
//! Each option is declared once, as a field of [`Config`]: its doc comment is the `--help`
//! text, its `#[arg]` names the flag, the environment variable and the default, and serde
//! reads and prints it as a TOML key. Every option can be given three ways; the first one
//! present wins:
//! 1. a command-line flag (`--data-dir DIR`);
//! 2. an environment variable `SCIPCACHE_<NAME>` (`SCIPCACHE_DATA_DIR`). Only the daemon's
//!    own options are read: other `SCIPCACHE_*` variables (the CLI's `SCIPCACHE_TOKEN`,
//!    `SCIPCACHE_SERVER`, …) are ignored;
//! 3. a TOML file given by `--config FILE` (`SCIPCACHE_CONFIG`), whose keys are the option
//!    names with `_` for `-` (`data_dir = "/var/lib/scipcache"`). Unknown keys are refused.
//!
//! and otherwise the built-in default. clap resolves flag > environment > default; the file
//! slots in under the first two: [`Given`] records which options came from a flag or the
//! environment, and [`Config::layered`] takes every other key from the file.
//! `daemon/config.example.toml` documents every key; `scipcached --print-config` prints the
//! effective configuration.
//!
//! Durations are humantime (`90s`, `30m`, `24h`, `7d`); sizes are plain bytes or
//! `4GiB`-style. Relative paths are relative to the current directory (also in the file).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches, ValueEnum};
use scipcache_tiers::names::KeyPrefix;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::retention::{Retention, check_quotas, check_rules};
use crate::values::{ByteSize, DEFAULT_DATA_DIR, Fraction, Share, humantime_serde, parse_duration};

/// What the command line and the environment say about running the daemon.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Which options came from a flag or a variable. First: clap takes each value out of the
    /// matches as it fills the fields below, and with it where the value came from.
    #[command(flatten)]
    pub given: Given,
    /// TOML file with options (keys = option names with '_').
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The options, each from its flag, its variable or its default.
    #[command(flatten)]
    pub options: Config,
}

impl ServeArgs {
    /// These arguments, given after a subcommand, over `outer`, given before it: an option
    /// counts as given in either place, and the one after the subcommand wins.
    pub fn over(&self, outer: &Self) -> Result<Self> {
        let mut table = toml::Table::try_from(&outer.options).map_err(printing)?;
        for (key, value) in toml::Table::try_from(&self.options).map_err(printing)? {
            if self.given.contains(&key) {
                table.insert(key, value);
            }
        }
        let options = table
            .try_into()
            .map_err(|e| Error::Config(format!("options: {e}")))?;
        let mut given = outer.given.clone();
        given.0.extend(self.given.0.iter().cloned());
        Ok(Self {
            given,
            config: self.config.clone().or_else(|| outer.config.clone()),
            print_config: self.print_config || outer.print_config,
            options,
        })
    }
}

/// The options given as a flag or an environment variable: they beat the file. Read from
/// clap's record of where each value came from; it adds no arguments of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given(BTreeSet<String>);

impl Given {
    /// Whether the option `name` (its file key) was given.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

impl FromArgMatches for Given {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Self::default();
        given.update_from_arg_matches(matches)?;
        Ok(given)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let from_user = |id: &&str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        self.0.extend(
            matches
                .ids()
                .map(clap::Id::as_str)
                .filter(from_user)
                .map(str::to_owned),
        );
        Ok(())
    }
}

impl Args for Given {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd
    }
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

/// When a push is acknowledged (`--durability`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Once the hot tier holds it durably; the cold copy is written behind.
    #[default]
    Local,
    /// Once the object store holds every chunk, the manifest and the ref.
    Cold,
}

impl From<Durability> for scipcache_tiers::store::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Local => Self::Local,
            Durability::Cold => Self::Cold,
        }
    }
}

/// The daemon's options: the effective configuration once [`Config::load`]ed. Each field is
/// a flag `--<name>`, a variable `SCIPCACHE_<NAME>` and a file key `<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root of all local state; made absolute at start and created if missing.
    #[arg(long, value_name = "DIR", env = "SCIPCACHE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// gRPC address.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SCIPCACHE_LISTEN",
        default_value = "127.0.0.1:7741"
    )]
    pub listen: SocketAddr,
    /// HTTP address of /metrics (Prometheus) and /healthz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SCIPCACHE_METRICS_LISTEN",
        default_value = "127.0.0.1:7742"
    )]
    pub metrics_listen: SocketAddr,

    /// Cold tier object store URL: file:///abs/path, s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix, memory://. [default: file://<data-dir>/cold]
    #[arg(long, value_name = "URL", env = "SCIPCACHE_COLD_URL")]
    pub cold_url: Option<String>,
    /// Extra object store option KEY=VALUE (e.g. aws_endpoint=http://127.0.0.1:9000);
    /// repeatable, comma-separated in the environment; a table in the file.
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "SCIPCACHE_COLD_OPTIONS",
        value_delimiter = ',',
        value_parser = parse_key_value
    )]
    #[serde(with = "key_values")]
    pub cold_options: Vec<(String, String)>,
    /// Concurrent requests to the cold tier. [default: engine default]
    #[arg(long, value_name = "N", env = "SCIPCACHE_COLD_CONCURRENCY")]
    pub cold_concurrency: Option<usize>,
    /// Flush a partial cold pack after this long. [default: engine default]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_COLD_FLUSH_AFTER", value_parser = parse_duration)]
    #[serde(with = "humantime_serde::option")]
    pub cold_flush_after: Option<Duration>,
    /// Cold queue entries at which the write-behind switches from zstd 9 to zstd 3 (and back
    /// under an eighth of it); the packs written at zstd 3 are recompressed when idle.
    /// [default: 2048]
    #[arg(long, value_name = "N", env = "SCIPCACHE_COLD_FAST_BACKLOG")]
    pub cold_fast_backlog: Option<u64>,
    /// How long the cold queue must have been empty before packs written at the fast level are
    /// recompressed. [default: 10s]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_COLD_IDLE_AFTER", value_parser = parse_duration)]
    #[serde(with = "humantime_serde::option")]
    pub cold_idle_after: Option<Duration>,
    /// Cold queue entries beyond which uploads wait (up to 10 s each) for the write-behind to
    /// catch up: backpressure when the cold tier cannot keep pace; 0 = never. [default: 131072]
    #[arg(long, value_name = "N", env = "SCIPCACHE_COLD_BACKLOG_LIMIT")]
    pub cold_backlog_limit: Option<u64>,
    /// Raw bytes of consecutive chunks the cold tier compresses together as one frame
    /// (plain bytes or 256KiB-style, at most 4MiB): larger blocks store less, and a cold
    /// read of one chunk decodes its whole block; 0 = one frame per chunk. [default: 256KiB]
    #[arg(long, value_name = "SIZE", env = "SCIPCACHE_COLD_BLOCK")]
    pub cold_block: Option<ByteSize>,
    /// LMDB map size: the most the hot tier and metadata can ever hold. [default: 64GiB]
    #[arg(long, value_name = "SIZE", env = "SCIPCACHE_LMDB_MAP_SIZE")]
    pub lmdb_map_size: Option<ByteSize>,
    /// Decode and re-hash chunks read from the hot tier too (warm and cold reads always are).
    /// [default: true]
    #[arg(long, value_name = "BOOL", env = "SCIPCACHE_VERIFY_HOT_READS")]
    pub verify_hot_reads: Option<bool>,
    /// Share of the chunks whose every tier's copy the background scrub reads and verifies per
    /// day (bad copies are repaired from good ones); 0 turns the scrub off. [default: 0.1]
    #[arg(long, value_name = "F", env = "SCIPCACHE_SCRUB_PER_DAY")]
    pub scrub_per_day: Option<Share>,
    /// Hot tier budget in stored bytes (plain bytes or 4GiB-style), as `scipcache stat`
    /// reports them: the evictor starts when the hot tier reaches it and stops at 90%,
    /// demoting the least recently used chunks to warm (pinned refs' chunks last). Must be
    /// more than 0 and below --lmdb-map-size, which holds the hot tier.
    #[arg(
        long,
        value_name = "SIZE",
        env = "SCIPCACHE_HOT_BYTES",
        default_value = "1GiB"
    )]
    pub hot_bytes: ByteSize,
    /// Warm tier budget in stored bytes (same rule): warm copies of chunks the cold tier holds
    /// are dropped, least recently used first. 0 turns the warm tier off: hot then drops a
    /// chunk only once the cold tier holds it.
    #[arg(
        long,
        value_name = "SIZE",
        env = "SCIPCACHE_WARM_BYTES",
        default_value = "10GiB"
    )]
    pub warm_bytes: ByteSize,
    /// When a push is acknowledged: `local` once the hot tier holds it durably (the cold copy
    /// is written behind), `cold` once the object store holds its chunks, manifest and ref
    /// (a push then fails with UNAVAILABLE while the cold tier does, and sets no ref).
    #[arg(
        long,
        value_name = "MODE",
        env = "SCIPCACHE_DURABILITY",
        default_value = "local"
    )]
    pub durability: Durability,
    /// Ref-key prefixes (e.g. `branch/`) whose refs' chunks the evictor drops from hot last,
    /// in every namespace. Config file only.
    #[arg(skip)]
    pub pin_prefixes: Vec<String>,

    /// Run a garbage collection of every tenant this often, with --gc-grace; its report goes
    /// to the log, and a run refused because another one is running is only logged.
    /// [default: off]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_GC_INTERVAL", value_parser = parse_duration)]
    #[serde(with = "humantime_serde::option")]
    pub gc_interval: Option<Duration>,
    /// Unreferenced chunks younger than this (by their last write or read) survive a GC: they
    /// may belong to a push in flight. `scipcache gc --grace D` overrides it for one run.
    #[arg(
        long,
        value_name = "DURATION",
        env = "SCIPCACHE_GC_GRACE",
        default_value = "1h",
        value_parser = parse_duration
    )]
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// A GC rewrites warm pack files and cold pack objects whose live share is under this
    /// fraction (0 to 1; 0 = never compact).
    #[arg(
        long,
        value_name = "F",
        env = "SCIPCACHE_COMPACT_BELOW",
        default_value = "0.5"
    )]
    pub compact_below: Fraction,
    /// Append one JSON object a line to FILE (created 0600) for every push, delete, gc, fsck,
    /// warm-up and refused call; `-` writes them to stdout. [default: off]
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// `[[retention]]` tables: which refs GC deletes by age or count, per key prefix. Config
    /// file only.
    #[arg(skip)]
    pub retention: Vec<Retention>,
    /// `[quotas]`: tenant name = most stored bytes (plain bytes or 50GiB-style) of its chunks
    /// across tiers, each chunk counted once at its largest stored size. Config file only.
    #[arg(skip)]
    pub quotas: BTreeMap<String, ByteSize>,

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
    /// Clock skew allowed on exp, nbf and iat.
    #[arg(
        long,
        value_name = "DURATION",
        env = "SCIPCACHE_JWT_LEEWAY",
        default_value = "1s",
        value_parser = parse_duration
    )]
    #[serde(with = "humantime_serde")]
    pub jwt_leeway: Duration,
    /// Refuse tokens whose lifetime (exp - iat) exceeds this, and `scipcached token --ttl`
    /// above it. [default: no limit]
    #[arg(long, value_name = "DURATION", env = "SCIPCACHE_JWT_MAX_TTL", value_parser = parse_duration)]
    #[serde(with = "humantime_serde::option")]
    pub jwt_max_ttl: Option<Duration>,
    /// Revoked token ids (jti) and subjects (sub), one a line; reloaded when it changes.
    #[arg(long, value_name = "FILE", env = "SCIPCACHE_DENYLIST")]
    pub denylist: Option<PathBuf>,

    /// Log format.
    #[arg(
        long,
        value_name = "FORMAT",
        env = "SCIPCACHE_LOG_FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,
    /// Concurrent calls per client connection.
    #[arg(
        long,
        value_name = "N",
        env = "SCIPCACHE_MAX_CONCURRENT_CALLS",
        default_value = "256"
    )]
    pub max_concurrent_calls: usize,
    /// Memory shared by the commit and upload data that calls buffer at once (plain bytes or
    /// 4GiB-style): a commit reserves its manifest (80 bytes per chunk) from its header, an
    /// upload each message as it arrives. A call beyond the budget waits for room; one larger
    /// than the whole budget fails at once with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        value_name = "SIZE",
        env = "SCIPCACHE_REQUEST_MEMORY",
        default_value = "512MiB"
    )]
    pub request_memory: ByteSize,
    /// How long a call waits for room in --request-memory before it fails with
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        value_name = "DURATION",
        env = "SCIPCACHE_REQUEST_MEMORY_WAIT",
        default_value = "30s",
        value_parser = parse_duration
    )]
    #[serde(with = "humantime_serde")]
    pub request_memory_wait: Duration,
    /// Connections the gRPC port holds at most. At the bound a new connection is still
    /// accepted and the oldest one that has not completed its HTTP/2 handshake is closed; if
    /// every one has, the new one is closed. Capped so that a quarter of the open-file limit
    /// (at least 128 descriptors) stays for the engine's files. [default: a quarter of the
    /// open-file limit, at least 64]
    #[arg(long, value_name = "N", env = "SCIPCACHE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// A gRPC connection that has not completed the HTTP/2 handshake (with TLS, the TLS
    /// handshake first) this long after it was accepted is closed.
    #[arg(
        long,
        value_name = "DURATION",
        env = "SCIPCACHE_HANDSHAKE_TIMEOUT",
        default_value = "5s",
        value_parser = parse_duration
    )]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// At SIGINT/SIGTERM, how long in-flight calls may take before they are aborted.
    #[arg(
        long,
        value_name = "DURATION",
        env = "SCIPCACHE_SHUTDOWN_GRACE",
        default_value = "5s",
        value_parser = parse_duration
    )]
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for Config {
    /// The built-in defaults: what the `#[arg]`s above give without flags or environment.
    fn default() -> Self {
        let defaults = Self::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        match defaults
            .try_get_matches_from(["defaults"])
            .and_then(|matches| Self::from_arg_matches(&matches))
        {
            Ok(config) => config,
            // Only a `default_value` that does not parse gets here: a bug every test catches.
            Err(e) => panic!("the built-in option defaults do not parse: {e}"),
        }
    }
}

impl Config {
    /// Resolves flags and environment (`args`), the `--config` file they name, and defaults;
    /// makes the data dir absolute and checks that the options fit together.
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let mut config = Self::layered(args, file)?;
        config.data_dir = std::path::absolute(&config.data_dir)
            .map_err(|e| Error::io("cannot make the data dir absolute", &config.data_dir, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Flags/environment over `file` (a parsed options file, see [`parse_file`]) over
    /// defaults, without touching the disk.
    pub fn layered(args: &ServeArgs, mut file: toml::Table) -> Result<Self> {
        let from_args = toml::Table::try_from(&args.options).map_err(printing)?;
        for (key, value) in from_args {
            if args.given.contains(&key) {
                file.insert(key, value);
            }
        }
        file.try_into()
            .map_err(|e| Error::Config(format!("config file: {e}")))
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
        if self.request_memory.0 == 0 {
            return Err(Error::Config(
                "--request-memory must be more than 0 bytes (e.g. 512MiB): commits and uploads \
                 buffer data in it"
                    .into(),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(Error::Config("--max-connections must be at least 1".into()));
        }
        if self.handshake_timeout.is_zero() {
            return Err(Error::Config(
                "--handshake-timeout must be above 0 (e.g. 5s)".into(),
            ));
        }
        if self.cold_concurrency == Some(0) {
            return Err(Error::Config(
                "--cold-concurrency must be at least 1".into(),
            ));
        }
        if self.cold_block.is_some_and(|b| b.0 > 4 << 20) {
            return Err(Error::Config(
                "--cold-block must be at most 4MiB (a cold read of one chunk decodes its whole \
                 block); 256KiB is the default"
                    .into(),
            ));
        }
        self.validate_tiers()?;
        self.validate_lifecycle()?;
        if self.jwt_leeway > Duration::from_secs(300) {
            return Err(Error::Config(
                "--jwt-leeway above 5m defeats token expiry; use at most a few seconds".into(),
            ));
        }
        if self
            .jwt_max_ttl
            .is_some_and(|max| max < Duration::from_secs(1))
        {
            return Err(Error::Config(
                "--jwt-max-ttl must be at least 1s (tokens count their lifetime in seconds)".into(),
            ));
        }
        Ok(())
    }

    /// Checks the tier budgets and the pin prefixes.
    fn validate_tiers(&self) -> Result<()> {
        if self.hot_bytes.0 == 0 {
            return Err(Error::Config(
                "--hot-bytes must be more than 0 bytes (e.g. 1GiB): every push lands in the hot \
                 tier first. To keep little in hot, give a small budget such as 256MiB"
                    .into(),
            ));
        }
        let map_size = self.store_config().lmdb_map_size;
        if self.hot_bytes.0 >= map_size {
            return Err(Error::Config(format!(
                "--hot-bytes {} must be below --lmdb-map-size {map_size}: the LMDB map holds the \
                 hot tier and the metadata. Lower --hot-bytes or raise --lmdb-map-size",
                self.hot_bytes
            )));
        }
        for prefix in &self.pin_prefixes {
            if prefix.is_empty() {
                return Err(Error::Config(
                    "pin_prefixes: an empty prefix would pin every ref; name prefixes such as \
                     \"branch/\""
                        .into(),
                ));
            }
            prefix.parse::<KeyPrefix>().map_err(|e| {
                Error::Config(format!(
                    "pin_prefixes: {e}; name ref-key prefixes such as \"branch/\""
                ))
            })?;
        }
        Ok(())
    }

    /// Checks the GC schedule, the retention rules and the quotas.
    fn validate_lifecycle(&self) -> Result<()> {
        if self.gc_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config(
                "--gc-interval must be above 0 (e.g. 6h); leave it out for no scheduled GC".into(),
            ));
        }
        if self
            .audit_log
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(Error::Config(
                "--audit-log needs a file name, or - for stdout".into(),
            ));
        }
        check_rules(&self.retention).map_err(Error::Config)?;
        check_quotas(self.quotas.keys()).map_err(Error::Config)?;
        Ok(())
    }

    /// The engine's configuration.
    pub fn store_config(&self) -> scipcache_tiers::StoreConfig {
        let mut store = scipcache_tiers::StoreConfig::new(&self.data_dir);
        if let Some(url) = &self.cold_url {
            store.cold_url.clone_from(url);
        }
        // A later KEY=VALUE wins over an earlier one, as in the printed table.
        let options: BTreeMap<&String, &String> =
            self.cold_options.iter().map(|(k, v)| (k, v)).collect();
        store.cold_options = options
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(n) = self.cold_concurrency {
            store.cold_concurrency = n;
        }
        if let Some(d) = self.cold_flush_after {
            store.cold_flush_after = d;
        }
        if let Some(n) = self.cold_fast_backlog {
            store.cold_fast_backlog = n;
        }
        if let Some(d) = self.cold_idle_after {
            store.cold_idle_after = d;
        }
        if let Some(n) = self.cold_backlog_limit {
            store.cold_backlog_limit = n;
        }
        if let Some(size) = self.cold_block {
            store.cold_block_target = usize::try_from(size.0).unwrap_or(usize::MAX);
        }
        if let Some(size) = self.lmdb_map_size {
            store.lmdb_map_size = size.0;
        }
        if let Some(share) = self.scrub_per_day {
            store.scrub_per_day = share.get();
        }
        if let Some(verify) = self.verify_hot_reads {
            store.verify_hot_reads = verify;
        }
        store.hot_bytes = self.hot_bytes.0;
        store.warm_bytes = self.warm_bytes.0;
        store.durability = self.durability.into();
        store.pin_prefixes.clone_from(&self.pin_prefixes);
        store.retention = self.retention.iter().map(|r| r.0.clone()).collect();
        store.quotas = self
            .quotas
            .iter()
            .map(|(tenant, size)| (tenant.clone(), size.0))
            .collect();
        store
    }

    /// The configuration as a TOML file would hold it, with the cold tier's URL resolved.
    pub fn to_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        shown.cold_url = Some(self.store_config().cold_url);
        toml::to_string(&shown).map_err(printing)
    }
}

/// Parses the text of an options file (`origin` names it in errors): every key optional,
/// unknown keys and bad values refused with their line.
pub fn parse_file(text: &str, origin: &str) -> Result<toml::Table> {
    let bad = |e: toml::de::Error| Error::Config(format!("config file {origin}: {e}"));
    // Read once as options, so that an unknown key or a bad value points at its line, then
    // kept as a table: only the keys the file sets may override the defaults.
    toml::from_str::<Config>(text).map_err(bad)?;
    toml::from_str(text).map_err(bad)
}

/// Reads and parses an options file.
pub fn read_file(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io("cannot read config file", path, e))?;
    parse_file(&text, &path.display().to_string())
}

fn printing(e: toml::ser::Error) -> Error {
    Error::Config(format!("cannot print config: {e}"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `--cold-options` pairs as a TOML table (a later pair wins over an earlier one).
mod key_values {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        pairs: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (&**k, &**v)).collect();
        s.collect_map(map)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's options as the command line gives them (the subcommands are `cli.rs`'s).
    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(argv: &[&str]) -> std::result::Result<ServeArgs, clap::Error> {
        use clap::Parser;
        let mut full = vec!["scipcached"];
        full.extend_from_slice(argv);
        Serve::try_parse_from(full).map(|cli| cli.serve)
    }

    fn file(text: &str) -> Result<toml::Table> {
        parse_file(text, "test")
    }

    #[test]
    fn defaults_follow_the_contract() -> Result<()> {
        let c = Config::layered(&ServeArgs::default(), toml::Table::new())?;
        assert_eq!(c, Config::default());
        assert_eq!(c.data_dir, PathBuf::from("./scipcache-data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:7741");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:7742");
        assert_eq!(c.jwt_leeway, Duration::from_secs(1));
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.max_concurrent_calls, 256);
        assert_eq!(c.max_connections, None, "a quarter of the open-file limit");
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.request_memory, ByteSize(512 << 20));
        assert_eq!(c.request_memory_wait, Duration::from_secs(30));
        assert_eq!(c.hot_bytes, ByteSize(1 << 30));
        assert_eq!(c.warm_bytes, ByteSize(10 << 30));
        assert_eq!(c.durability, Durability::Local);
        assert!(c.pin_prefixes.is_empty());
        let store = c.store_config();
        assert_eq!(store.cold_url, "file://./scipcache-data/cold");
        assert_eq!(store.hot_bytes, 1 << 30);
        assert_eq!(store.warm_bytes, 10 << 30);
        assert_eq!(store.durability, scipcache_tiers::store::Durability::Local);
        assert!(store.pin_prefixes.is_empty());
        assert_eq!(c.gc_interval, None, "no scheduled GC");
        assert_eq!(c.gc_grace, Duration::from_secs(3600));
        assert_eq!(c.compact_below.get(), 0.5);
        assert_eq!(c.audit_log, None);
        assert!(store.retention.is_empty() && store.quotas.is_empty());
        Ok(())
    }

    #[test]
    fn every_option_is_a_flag_a_variable_and_a_file_key_of_the_same_name() -> Result<()> {
        let keys: toml::Table =
            toml::from_str(&full_config().to_toml()?).map_err(|e| Error::Config(e.to_string()))?;
        let command = Config::augment_args(clap::Command::new("x"));
        let mut names = Vec::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()), "{id}");
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            assert_eq!(
                env,
                format!("SCIPCACHE_{}", id.to_ascii_uppercase()),
                "{id}"
            );
            assert!(keys.contains_key(id), "{id} is not a file key");
            names.push(id);
        }
        for key in keys.keys() {
            assert!(
                names.contains(&key.as_str()) || FILE_ONLY.contains(&key.as_str()),
                "the file key {key} has no flag (or add it to FILE_ONLY)"
            );
        }
        assert_eq!(
            names.len() + FILE_ONLY.len(),
            keys.len(),
            "a file key without a flag"
        );
        Ok(())
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() -> Result<()> {
        let file = file(
            r#"
            data_dir = "/from/file"
            listen = "127.0.0.1:9000"
            jwt_leeway = "3s"
            cold_concurrency = 3
            "#,
        )?;
        let a = args(&["--listen", "127.0.0.1:9001"]).map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, file)?;
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
        assert_eq!(c.metrics_listen, Config::default().metrics_listen);
        Ok(())
    }

    #[test]
    fn a_flag_equal_to_the_default_still_beats_the_file() -> Result<()> {
        let a =
            args(&["--max-concurrent-calls", "256"]).map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, file("max_concurrent_calls = 8")?)?;
        assert_eq!(c.max_concurrent_calls, 256);
        assert_eq!(c.max_connections, None, "a quarter of the open-file limit");
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        Ok(())
    }

    #[test]
    fn unknown_file_keys_are_refused_with_their_name() {
        let err = file("data_dri = \"/x\"").map(|_| ());
        let msg = format!("{err:?}");
        assert!(msg.contains("data_dri"), "{msg}");
    }

    #[test]
    fn bad_file_values_are_refused_with_their_line() {
        let err = file("listen = \"127.0.0.1:1\"\n\njwt_leeway = \"soon\"\n").map(|_| ());
        let msg = format!("{err:?}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("90s"), "{msg}");
    }

    /// The keys the contract allows only in the config file.
    const FILE_ONLY: &[&str] = &["pin_prefixes", "retention", "quotas"];

    /// A configuration with every option set, so that every key is printed.
    fn full_config() -> Config {
        Config {
            cold_url: Some("s3://b/p".into()),
            cold_options: vec![("k".into(), "v".into())],
            cold_concurrency: Some(1),
            max_connections: Some(1),
            cold_flush_after: Some(Duration::from_secs(1)),
            cold_fast_backlog: Some(1),
            cold_idle_after: Some(Duration::from_secs(1)),
            cold_backlog_limit: Some(1),
            cold_block: Some(ByteSize(1)),
            lmdb_map_size: Some(ByteSize(1)),
            verify_hot_reads: Some(true),
            scrub_per_day: "0.5".parse().ok(),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_client_ca: Some("ca".into()),
            jwt_key_file: Some("f".into()),
            jwks: Some("j".into()),
            jwt_issuer: Some("i".into()),
            jwt_audience: Some("a".into()),
            jwt_max_ttl: Some(Duration::from_secs(86_400)),
            denylist: Some("d".into()),
            pin_prefixes: vec!["branch/".into()],
            gc_interval: Some(Duration::from_secs(6 * 3600)),
            audit_log: Some("audit.log".into()),
            retention: vec![Retention(scipcache_tiers::store::RetentionRule {
                prefix: "commit/".into(),
                policy: scipcache_tiers::store::RetentionPolicy::KeepLast(50),
            })],
            quotas: [("acme".to_owned(), ByteSize(50 << 30))]
                .into_iter()
                .collect(),
            ..Config::default()
        }
    }

    #[test]
    fn example_config_parses_and_documents_every_key() -> Result<()> {
        let text = include_str!("../config.example.toml");
        let c = Config::layered(&ServeArgs::default(), file(text)?)?;
        c.validate()?;
        // The example's values are the defaults.
        assert_eq!(c, Config::default());
        // Every key a file may hold appears in the example, set or commented out.
        let printed: toml::Table =
            toml::from_str(&full_config().to_toml()?).map_err(|e| Error::Config(e.to_string()))?;
        assert_eq!(
            printed.len(),
            41,
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
    fn the_scrub_share_reaches_the_store_and_a_negative_one_is_refused() -> Result<()> {
        let store =
            Config::layered(&ServeArgs::default(), file("scrub_per_day = 0.5")?)?.store_config();
        assert!((store.scrub_per_day - 0.5).abs() < 1e-12);
        let defaults = Config::default().store_config();
        assert!(
            (defaults.scrub_per_day - 0.1).abs() < 1e-12,
            "the contract's default"
        );
        // The file is refused as it is read, naming the key's rule.
        let refused = file("scrub_per_day = -1.0");
        assert!(
            refused.is_err_and(|e| e.to_string().contains("0 or more")),
            "a negative share is refused"
        );
        Ok(())
    }

    #[test]
    fn printed_config_parses_back_to_the_same() -> Result<()> {
        let mut c = full_config();
        c.cold_url = None;
        c.cold_options = vec![("aws_region".into(), "eu-west-1".into())];
        c.lmdb_map_size = Some(ByteSize(1 << 33));
        c.log_format = LogFormat::Json;
        let back = Config::layered(&ServeArgs::default(), file(&c.to_toml()?)?)?;
        // The printed cold_url is the resolved default.
        c.cold_url = Some("file://./scipcache-data/cold".into());
        assert_eq!(back, c);
        Ok(())
    }

    #[test]
    fn engine_options_reach_the_store_config() -> Result<()> {
        let f = file("verify_hot_reads = false\nlmdb_map_size = \"2GiB\"")?;
        let store = Config::layered(&ServeArgs::default(), f)?.store_config();
        assert!(!store.verify_hot_reads);
        assert_eq!(store.lmdb_map_size, 2 << 30);
        let defaults = Config::default().store_config();
        assert!(
            defaults.verify_hot_reads,
            "hot reads are verified unless configured off"
        );
        Ok(())
    }

    #[test]
    fn request_memory_takes_sizes_and_durations_from_flags_and_the_file() -> Result<()> {
        let a = args(&["--request-memory", "4GiB"]).map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, file("request_memory_wait = \"5s\"")?)?;
        assert_eq!(c.request_memory, ByteSize(4 << 30));
        assert_eq!(c.request_memory_wait, Duration::from_secs(5));
        let c = Config::layered(&ServeArgs::default(), file("request_memory = 1048576")?)?;
        assert_eq!(c.request_memory, ByteSize(1 << 20));
        let none = Config {
            request_memory: ByteSize(0),
            ..Config::default()
        };
        assert!(
            none.validate().is_err(),
            "a budget of 0 bytes refuses every call"
        );
        Ok(())
    }

    #[test]
    fn connection_options_come_from_flags_variables_and_the_file() -> Result<()> {
        let a = args(&["--handshake-timeout", "2s"]).map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(
            &a,
            file("max_connections = 300\nhandshake_timeout = \"9s\"")?,
        )?;
        assert_eq!(c.max_connections, Some(300));
        assert_eq!(c.handshake_timeout, Duration::from_secs(2), "the flag wins");
        c.validate()?;
        let zero = Config {
            max_connections: Some(0),
            ..Config::default()
        };
        assert!(zero.validate().is_err());
        let instant = Config {
            handshake_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert!(instant.validate().is_err());
        Ok(())
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
    fn cold_options_parse_as_key_value_pairs_and_the_last_one_wins() -> Result<()> {
        let a = args(&[
            "--cold-options",
            "aws_endpoint=http://127.0.0.1:9000",
            "--cold-options",
            "aws_allow_http=true",
            "--cold-options",
            "aws_allow_http=false",
        ])
        .map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, file("[cold_options]\naws_region = \"x\"")?)?;
        let store = c.store_config();
        assert_eq!(
            store.cold_options,
            vec![
                ("aws_allow_http".to_owned(), "false".to_owned()),
                (
                    "aws_endpoint".to_owned(),
                    "http://127.0.0.1:9000".to_owned()
                ),
            ],
            "flags replace the file's table"
        );
        assert!(args(&["--cold-options", "novalue"]).is_err());
        Ok(())
    }

    #[test]
    fn tier_budgets_durability_and_pins_come_from_flag_then_file_then_default() -> Result<()> {
        let f = || {
            file(
                "hot_bytes = \"64MiB\"\nwarm_bytes = 0\ndurability = \"cold\"\n\
                 pin_prefixes = [\"branch/\", \"release/\"]",
            )
        };
        let c = Config::layered(&ServeArgs::default(), f()?)?;
        c.validate()?;
        assert_eq!(c.hot_bytes, ByteSize(64 << 20));
        assert_eq!(c.warm_bytes, ByteSize(0), "0 turns the warm tier off");
        assert_eq!(c.durability, Durability::Cold);
        let store = c.store_config();
        assert_eq!(store.hot_bytes, 64 << 20);
        assert_eq!(store.warm_bytes, 0);
        assert_eq!(store.durability, scipcache_tiers::store::Durability::Cold);
        assert_eq!(store.pin_prefixes, ["branch/", "release/"]);

        let a = args(&["--hot-bytes", "4MB", "--durability", "local"])
            .map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, f()?)?;
        assert_eq!(
            c.hot_bytes,
            ByteSize(4_000_000),
            "the flag wins over the file"
        );
        assert_eq!(
            c.durability,
            Durability::Local,
            "the flag wins over the file"
        );
        assert_eq!(c.warm_bytes, ByteSize(0), "the file wins over the default");
        assert_eq!(c.pin_prefixes, ["branch/", "release/"]);
        Ok(())
    }

    #[test]
    fn the_cold_block_size_reaches_the_store_and_one_beyond_4_mib_is_refused() -> Result<()> {
        let layered =
            |text: &str| -> Result<Config> { Config::layered(&ServeArgs::default(), file(text)?) };
        let c = layered("cold_block = \"64KiB\"")?;
        c.validate()?;
        assert_eq!(c.store_config().cold_block_target, 64 << 10);
        assert_eq!(
            layered("cold_block = 0")?.store_config().cold_block_target,
            0
        );
        assert_eq!(layered("")?.store_config().cold_block_target, 256 << 10);
        let msg = layered("cold_block = \"5MiB\"")?
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("at most 4MiB"), "{msg}");
        Ok(())
    }

    #[test]
    fn a_hot_budget_of_zero_or_beyond_the_lmdb_map_is_refused_saying_what_to_do() -> Result<()> {
        let zero = Config::layered(&ServeArgs::default(), file("hot_bytes = 0")?)?;
        let msg = zero
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("--hot-bytes must be more than 0"), "{msg}");
        assert!(
            msg.contains("256MiB"),
            "the message suggests a value: {msg}"
        );

        let beyond = Config::layered(
            &ServeArgs::default(),
            file("hot_bytes = \"8GiB\"\nlmdb_map_size = \"4GiB\"")?,
        )?;
        let msg = beyond
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("--lmdb-map-size"), "{msg}");

        let no_warm = Config::layered(&ServeArgs::default(), file("warm_bytes = 0")?)?;
        no_warm.validate()?;
        Ok(())
    }

    #[test]
    fn gc_and_audit_options_come_from_flags_then_the_file_and_reach_the_store() -> Result<()> {
        let f = || {
            file(
                "gc_interval = \"6h\"\ngc_grace = \"2h\"\ncompact_below = 0.25\n\
                 audit_log = \"/var/log/scipcache/audit.log\"\n\
                 [[retention]]\nprefix = \"commit/\"\nkeep_last = 50\n\
                 [[retention]]\nprefix = \"pr/\"\nttl = \"30d\"\n\
                 [[retention]]\nprefix = \"branch/\"\nkeep = \"forever\"\n\
                 [quotas]\nacme = \"50GiB\"\nglobex = 1048576\n",
            )
        };
        let c = Config::layered(&ServeArgs::default(), f()?)?;
        c.validate()?;
        assert_eq!(c.gc_interval, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(c.gc_grace, Duration::from_secs(2 * 3600));
        assert_eq!(c.compact_below.get(), 0.25);
        assert_eq!(
            c.audit_log.as_deref(),
            Some(Path::new("/var/log/scipcache/audit.log"))
        );
        let store = c.store_config();
        use scipcache_tiers::store::RetentionPolicy;
        let policies: Vec<(&str, &RetentionPolicy)> = store
            .retention
            .iter()
            .map(|r| (r.prefix.as_str(), &r.policy))
            .collect();
        assert_eq!(
            policies,
            [
                ("commit/", &RetentionPolicy::KeepLast(50)),
                (
                    "pr/",
                    &RetentionPolicy::Ttl(Duration::from_secs(30 * 86_400))
                ),
                ("branch/", &RetentionPolicy::Forever),
            ]
        );
        assert_eq!(store.quotas.get("acme"), Some(&(50u64 << 30)));
        assert_eq!(store.quotas.get("globex"), Some(&(1u64 << 20)));

        let a = args(&[
            "--gc-grace",
            "0s",
            "--compact-below",
            "1",
            "--audit-log",
            "-",
        ])
        .map_err(|e| Error::Config(e.to_string()))?;
        let c = Config::layered(&a, f()?)?;
        assert_eq!(c.gc_grace, Duration::ZERO, "the flag wins over the file");
        assert_eq!(c.compact_below.get(), 1.0);
        assert_eq!(c.audit_log.as_deref(), Some(Path::new("-")));
        assert_eq!(c.gc_interval, Some(Duration::from_secs(6 * 3600)));
        assert!(args(&["--compact-below", "1.5"]).is_err(), "0 to 1 only");
        assert!(
            args(&["--retention", "x"]).is_err(),
            "retention has no flag"
        );
        assert!(args(&["--quotas", "x"]).is_err(), "quotas has no flag");
        Ok(())
    }

    #[test]
    fn bad_retention_tables_and_quotas_are_config_errors_naming_them() -> Result<()> {
        for (text, wants) in [
            (
                "[[retention]]\nprefix = \"commit/\"\nkeep_last = 3\nkeep = \"forever\"",
                "[[retention]] table with prefix \"commit/\": give exactly one of",
            ),
            (
                "[[retention]]\nprefix = \"pr/\"\nttl = \"a while\"",
                "[[retention]] table with prefix \"pr/\": ttl: invalid duration",
            ),
            ("[quotas]\nacme = \"lots\"", "invalid size \"lots\""),
            ("[quotas]\nacme = -5", "invalid size -5"),
            ("compact_below = 2.0", "from 0 to 1"),
        ] {
            let msg = file(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(wants), "{text}: {msg}");
            assert!(msg.contains("line"), "the error points at the line: {msg}");
        }
        for (text, wants) in [
            (
                "[[retention]]\nprefix = \"commit/\"\nkeep_last = 3\n\
                 [[retention]]\nprefix = \"commit/\"\nttl = \"1d\"",
                "two [[retention]] tables have the prefix \"commit/\"",
            ),
            (
                "[quotas]\n\"Not A Tenant\" = 5",
                "[quotas] \"Not A Tenant\"",
            ),
            ("gc_interval = \"0s\"", "--gc-interval must be above 0"),
        ] {
            let c = Config::layered(&ServeArgs::default(), file(text)?)?;
            let msg = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(wants), "{text}: {msg}");
        }
        Ok(())
    }

    #[test]
    fn pin_prefixes_are_a_file_key_only_and_bad_ones_are_refused() -> Result<()> {
        assert!(
            args(&["--pin-prefixes", "branch/"]).is_err(),
            "pin_prefixes has no flag"
        );
        for bad in ["pin_prefixes = [\"\"]", "pin_prefixes = [\"bad prefix\"]"] {
            let c = Config::layered(&ServeArgs::default(), file(bad)?)?;
            let msg = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.starts_with("pin_prefixes: "), "{bad}: {msg}");
        }
        assert!(
            file("durability = \"somewhere\"").is_err(),
            "durability is local or cold"
        );
        Ok(())
    }
}
