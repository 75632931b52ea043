//! # scipcache-daemon: `scipcached`
//!
//! The gRPC server in front of the storage engine ([`scipcache_tiers::Store`]). It verifies
//! tokens, checks every call's namespace against the token's scopes, and hands the work to
//! the engine; it also serves `grpc.health.v1.Health`, server reflection (v1 and v1alpha,
//! so `grpcurl` works) and, on a second port, `/metrics` and `/healthz`.
//!
//! [`run`] is the whole daemon: it takes an already bound gRPC listener, a metrics listener
//! and a shutdown future, so tests can bind `127.0.0.1:0` and call the same function as
//! `main`.
//!
//! ## Layout
//! - `main.rs`: the binary: command line, logging, binding, signals, `token` subcommand.
//! - [`cli`]: the command line: the daemon's options and its subcommands.
//! - [`config`]: every option; flags > environment > TOML file > defaults.
//! - [`auth`]: the token spec (its docs), the pure [`auth::Verifier`], scopes, keys,
//!   denylist; [`auth::interceptor`] is the tonic adapter.
//! - [`service`]: one file per proto service (`info`, `chunks`, `blobs`, `refs`, `admin`);
//!   thin methods.
//! - [`status`]: the only mapping of engine errors to gRPC statuses.
//! - [`audit`]: the audit log (`--audit-log`) and the count of refused calls.
//! - [`retention`]: the config file's `[[retention]]` tables and `[quotas]`.
//! - `schedule`: the scheduled GC (`--gc-interval`).
//! - [`metrics`]: Prometheus registry and the per-call tower layer; [`http`]: the HTTP port.
//! - [`tls`]: TLS and mutual TLS for the gRPC port, and the certificate's expiry.
//! - `listener`: the gRPC port's accept loop: `--max-connections`, `--handshake-timeout`,
//!   shedding of connections that never complete their HTTP/2 handshake, accept errors.
//! - [`open_files`]: the open-file limit (raised at start) and the descriptor reserve.
//! - `message_limit`: the tower layer that answers an oversized message with
//!   `RESOURCE_EXHAUSTED` and the limit.
//! - [`token`]: `scipcached token`.
//! - [`index_check`]: the walk of the index in a child process before serving (hidden
//!   subcommand `check-index`).
//! - [`values`]: durations, sizes and the default data dir both command lines share.
//! - [`error`]: the crate's error type.
//! - [`file_modes`]: owner-only files: the umask, fixing an existing data dir, key warnings.
//! - `blocking`: the one helper that runs blocking work off the async threads.
//!
//! ## Lifecycle
//! Start (`main` first sets the umask to 077, then runs the index walk in a child process,
//! `index_check`: a damaged index refuses the start and names `scipcached rebuild`). Then
//! ([`run`]): the open-file soft limit raised to the hard limit, HTTP port (so `/healthz` says
//! 503 while starting), data dir (created, key files checked, modes made owner-only), keys,
//! TLS, store (which locks the data dir), gRPC. The log line
//! `scipcached ready grpc=<addr> metrics=<addr>`
//! marks readiness. On shutdown the gRPC listener closes at once, running GCs and fscks are
//! cancelled (they stop at their next safe point), in-flight calls get `--shutdown-grace` to
//! finish before they are aborted, the audit log writes what is queued, then the store shuts
//! down (persisting its queues).

pub mod audit;
pub mod auth;
mod blocking;
pub mod cli;
pub mod config;
pub mod error;
pub mod file_modes;
pub mod http;
pub mod index_check;
mod listener;
mod message_limit;
pub mod metrics;
pub mod open_files;
pub mod rebuild;
pub mod request_memory;
pub mod retention;
mod schedule;
pub mod service;
pub mod status;
pub mod tls;
pub mod token;
pub mod values;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use scipcache_proto::MAX_MESSAGE_BYTES;
use scipcache_proto::pb::admin_server::AdminServer;
use scipcache_proto::pb::blobs_server::BlobsServer;
use scipcache_proto::pb::chunks_server::ChunksServer;
use scipcache_proto::pb::info_server::InfoServer;
use scipcache_proto::pb::lookups_server::LookupsServer;
use scipcache_proto::pb::refs_server::RefsServer;
use scipcache_tiers::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use config::Config;
pub use error::{Error, Result};

use audit::Audit;
use auth::interceptor::AuthInterceptor;
use auth::{Denylist, Verifier, VerifierConfig, keys};
use listener::AcceptSettings;
use message_limit::MessageLimitLayer;
use metrics::{Metrics, MetricsLayer};
use open_files::ConnectionBudget;
use request_memory::RequestMemory;
use service::Shared;
use tls::{CertificateInfo, TlsSetup};

/// How long the store gets to flush and stop.
const STORE_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the HTTP port gets to close.
const HTTP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keepalive ping interval and timeout: dead peers are noticed within a minute.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive on accepted connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Runs the daemon on bound listeners until `shutdown` completes, then stops gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let cancel = CancellationToken::new();
    let work = run_until_cancelled(config, listener, metrics_listener, cancel.clone());
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => return result,
        () = shutdown => {
            tracing::info!("shutdown requested: no new connections; finishing in-flight calls");
            cancel.cancel();
        }
    }
    work.await
}

/// Like [`run`], stopping when `cancel` fires.
pub async fn run_until_cancelled(
    config: Config,
    listener: TcpListener,
    metrics_listener: TcpListener,
    cancel: CancellationToken,
) -> Result<()> {
    let grpc_addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("gRPC listener has no address: {e}")))?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|e| Error::Config(format!("metrics listener has no address: {e}")))?;
    raise_open_file_limit();
    let metrics = Arc::new(Metrics::new()?);
    metrics.set_tier_budgets(config.hot_bytes.0, config.warm_bytes.0);
    metrics.set_quotas(config.quotas.iter().map(|(t, size)| (t, size.0)));
    // Validated names (Config::validate).
    let quota_tenants: Vec<scipcache_tiers::names::Tenant> = config
        .quotas
        .keys()
        .filter_map(|t| t.parse().ok())
        .collect();
    let ready = Arc::new(AtomicBool::new(false));
    let store_cell = Arc::new(OnceLock::new());
    let certificate = Arc::new(OnceLock::new());

    // The HTTP port first, so /healthz answers (503) while the store opens.
    let http_stop = CancellationToken::new();
    let router = http::router(http::HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        store: store_cell.clone(),
        certificate: certificate.clone(),
        quota_tenants: Arc::new(quota_tenants),
    });
    let metrics_listener = listener::HttpListener::new(metrics_listener, config.handshake_timeout);
    let mut http_task = tokio::spawn(
        axum::serve(metrics_listener, router)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );

    let result = serve_grpc(GrpcParts {
        config,
        listener,
        grpc_addr,
        metrics_addr,
        metrics,
        ready: ready.clone(),
        store_cell,
        certificate,
        cancel: cancel.clone(),
    })
    .await;
    ready.store(false, Ordering::Release);
    // Whatever ended the gRPC side ends the background tasks too.
    cancel.cancel();
    http_stop.cancel();
    match tokio::time::timeout(HTTP_SHUTDOWN_TIMEOUT, &mut http_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("metrics server: {e}"),
        Ok(Err(e)) => tracing::warn!("metrics server task: {e}"),
        Err(_) => http_task.abort(),
    }
    if result.is_ok() {
        tracing::info!("scipcached stopped");
    }
    result
}

struct GrpcParts {
    config: Config,
    listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    store_cell: Arc<OnceLock<Store>>,
    certificate: Arc<OnceLock<CertificateInfo>>,
    cancel: CancellationToken,
}

/// A generated service with the message size limits, behind the token check.
macro_rules! guarded {
    ($server:ident, $service:ty, $shared:expr, $auth:expr) => {
        InterceptedService::new(
            $server::new(<$service>::new($shared.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            $auth.clone(),
        )
    };
}

async fn serve_grpc(parts: GrpcParts) -> Result<()> {
    let GrpcParts {
        config,
        listener,
        grpc_addr,
        metrics_addr,
        metrics,
        ready,
        store_cell,
        certificate,
        cancel,
    } = parts;
    // Keys and TLS are checked before the store opens, so a bad certificate fails fast.
    let (verifier, tls) = prepare_server(&config, &cancel).await?;
    if let Some(tls) = &tls {
        let _ = certificate.set(tls.certificate.clone());
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(scipcache_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("server reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(scipcache_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Config(format!("server reflection: {e}")))?;

    log_tiers(&config);
    let (audit, audit_writer) = match &config.audit_log {
        Some(path) => {
            let (audit, writer) = Audit::open(path, &metrics).await?;
            tracing::info!("audit log: {} (--audit-log)", path.display());
            (audit, Some(writer))
        }
        None => (Audit::off(&metrics), None),
    };
    // From here on nothing returns early: every exit path shuts the store down.
    let store = match Store::open(config.store_config()).await {
        Ok(store) => store,
        Err(e) => {
            if let Some(writer) = audit_writer {
                writer.finish().await;
            }
            return Err(e.into());
        }
    };
    // Set once: this is the only place that opens a store.
    let _ = store_cell.set(store.clone());
    if cancel.is_cancelled() {
        if let Some(writer) = audit_writer {
            writer.finish().await;
        }
        return shutdown_store(&store).await;
    }

    let shared = Shared {
        store: store.clone(),
        metrics: metrics.clone(),
        request_memory: RequestMemory::new(
            config.request_memory.0,
            config.request_memory_wait,
            metrics.request_memory_reserved.clone(),
        ),
        audit: audit.clone(),
        lifecycle: service::Lifecycle {
            gc_grace: config.gc_grace,
            compact_below: config.compact_below.get(),
            shutdown: cancel.clone(),
        },
    };
    let schedule = config
        .gc_interval
        .map(|every| schedule::start(shared.clone(), every, cancel.clone()));
    let auth = AuthInterceptor::new(verifier, Some(audit));
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;

    let router = Server::builder()
        .concurrency_limit_per_connection(config.max_concurrent_calls)
        // The 64 KiB HTTP/2 defaults throttle multi-MiB upload and read streams.
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(MetricsLayer::new(metrics))
        // Inside the metrics layer, so that calls are counted with the rewritten code.
        .layer(MessageLimitLayer::new(MAX_MESSAGE_BYTES))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(guarded!(
            InfoServer,
            service::info::InfoService,
            &shared,
            &auth
        ))
        .add_service(guarded!(
            ChunksServer,
            service::chunks::ChunksService,
            &shared,
            &auth
        ))
        .add_service(guarded!(
            BlobsServer,
            service::blobs::BlobsService,
            &shared,
            &auth
        ))
        .add_service(guarded!(
            LookupsServer,
            service::lookups::LookupsService,
            &shared,
            &auth
        ))
        .add_service(guarded!(
            RefsServer,
            service::refs::RefsService,
            &shared,
            &auth
        ))
        .add_service(guarded!(
            AdminServer,
            service::admin::AdminService,
            &shared,
            &auth
        ));

    let settings = accept_settings(&config, tls.map(|tls| tls.acceptor));
    let (incoming, _connections) = listener::incoming(listener, settings, cancel.clone());
    let serve = router.serve_with_incoming_shutdown(incoming, cancel.clone().cancelled_owned());
    ready.store(true, Ordering::Release);
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        "listening on {grpc_addr} ({scheme} gRPC), metrics and health on http://{metrics_addr}"
    );
    tracing::info!("scipcached ready grpc={grpc_addr} metrics={metrics_addr}");

    let stopping = async {
        ready.store(false, Ordering::Release);
        set_health(&health, ServingStatus::NotServing).await;
    };
    let served = until_stopped(serve, &cancel, stopping, config.shutdown_grace).await;
    ready.store(false, Ordering::Release);
    if let Some(task) = schedule {
        // Cancelled with everything else: a running GC stops at its next safe point.
        if tokio::time::timeout(STORE_SHUTDOWN_TIMEOUT, task)
            .await
            .is_err()
        {
            tracing::warn!("the scheduled GC did not stop within {STORE_SHUTDOWN_TIMEOUT:?}");
        }
    }
    if let Some(writer) = audit_writer {
        writer.finish().await;
    }
    let stopped = shutdown_store(&store).await;
    served?;
    stopped
}

/// Says what the tier budgets and the durability are.
fn log_tiers(config: &Config) {
    let size = |bytes: u64| scipcache_tiers::error::human_bytes(bytes);
    let warm = match config.warm_bytes.0 {
        0 => "off (--warm-bytes 0)".to_owned(),
        n => size(n),
    };
    tracing::info!(
        "tiers: hot budget {} (--hot-bytes), warm budget {warm} (--warm-bytes), durability {} \
         (--durability), pinned ref prefixes {:?} (pin_prefixes)",
        size(config.hot_bytes.0),
        match config.durability {
            config::Durability::Local => "local",
            config::Durability::Cold => "cold",
        },
        config.pin_prefixes,
    );
}

/// Raises the soft open-file limit to the hard limit, saying what it is now.
fn raise_open_file_limit() {
    match open_files::raise_to_hard_limit() {
        Ok(limit) if limit.before < limit.soft => tracing::info!(
            "open-file limit raised from {} to the hard limit {}",
            limit.before,
            limit.soft
        ),
        Ok(limit) => tracing::debug!("open-file limit {} (the hard limit)", limit.soft),
        Err(e) => tracing::warn!("{e}; connections are bounded by the limit as it is"),
    }
}

/// The gRPC port's accept settings: the connection bound within the open-file limit.
fn accept_settings(config: &Config, tls: Option<tokio_rustls::TlsAcceptor>) -> AcceptSettings {
    let budget = ConnectionBudget::new(open_files::current(), config.max_connections);
    if let Some(wanted) = budget.lowered_from {
        tracing::warn!(
            "--max-connections {wanted} lowered to {}: {} of the {} open-file descriptors stay \
             reserved for the engine's files; raise the hard limit (`ulimit -Hn`) to allow more",
            budget.max_connections,
            budget.reserved,
            open_files::current().map_or_else(|| "?".to_owned(), |n| n.to_string()),
        );
    }
    tracing::info!(
        "gRPC connections: at most {} (--max-connections), each closed unless its HTTP/2 \
         handshake completes within {} (--handshake-timeout)",
        budget.max_connections,
        humantime::format_duration(config.handshake_timeout)
    );
    AcceptSettings {
        max_connections: budget.max_connections,
        handshake_timeout: config.handshake_timeout,
        tls,
        tcp_keepalive: TCP_KEEPALIVE,
    }
}

/// What the gRPC server needs before the store opens: the data dir, the token verifier and
/// the TLS setup (each failure here is a configuration error).
async fn prepare_server(
    config: &Config,
    cancel: &CancellationToken,
) -> Result<(Arc<Verifier>, Option<TlsSetup>)> {
    blocking({
        let dir = config.data_dir.clone();
        move || {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create data dir", &dir, e))
        }
    })
    .await?;
    secure_data_dir(config).await?;
    let verifier = Arc::new(load_verifier(config, cancel).await?);
    tracing::debug!(?verifier, "token verification");
    let tls = blocking({
        let config = config.clone();
        move || tls::TlsFiles::read(&config)
    })
    .await?;
    let Some(tls) = tls else {
        return Ok((verifier, None));
    };
    let tls = tls.setup()?;
    if tls.mutual {
        tracing::info!("mutual TLS: clients must present a certificate from --tls-client-ca");
    }
    let now = i64::try_from(scipcache_tiers::clock::Clock::system().now_s()).unwrap_or(i64::MAX);
    if let Some(warning) = tls.certificate.expired_warning(now) {
        tracing::warn!("{warning}");
    }
    Ok((verifier, Some(tls)))
}

/// Warns about key files that group or others may read, then makes the data dir owner-only
/// (see [`file_modes`]); the key checks come first, so that a local key the walk fixes was
/// still reported.
async fn secure_data_dir(config: &Config) -> Result<()> {
    let keys = [
        (config.jwt_key_file.clone(), "--jwt-key-file"),
        (
            Some(keys::local_key_path(&config.data_dir)),
            "the local key",
        ),
        (config.tls_key.clone(), "--tls-key"),
    ];
    let dir = config.data_dir.clone();
    let fixed = blocking(move || {
        for (path, what) in &keys {
            if let Some(path) = path {
                file_modes::warn_if_exposed(path, what);
            }
        }
        Ok(file_modes::fix_data_dir(&dir))
    })
    .await?;
    if fixed.changed > 0 || fixed.failed > 0 {
        tracing::warn!(
            checked = fixed.checked,
            changed = fixed.changed,
            failed = fixed.failed,
            "the data dir had entries open to group or others: made {} of them owner-only \
             (directories {:o}, files {:o})",
            fixed.changed,
            file_modes::DIR_MODE,
            file_modes::FILE_MODE
        );
    } else {
        tracing::debug!(checked = fixed.checked, "the data dir is owner-only");
    }
    Ok(())
}

/// Serves until `serve` ends or `cancel` fires; then runs `stopping` and gives in-flight
/// calls `grace` to finish before they are aborted.
async fn until_stopped<E>(
    serve: impl Future<Output = std::result::Result<(), E>>,
    cancel: &CancellationToken,
    stopping: impl Future<Output = ()>,
    grace: Duration,
) -> std::result::Result<(), E> {
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => result,
        () = cancel.cancelled() => {
            stopping.await;
            match tokio::time::timeout(grace, &mut serve).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "in-flight calls still running after {}; aborting them",
                        humantime::format_duration(grace)
                    );
                    Ok(())
                }
            }
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in [
        "scipcache.v1.Info",
        "scipcache.v1.Chunks",
        "scipcache.v1.Blobs",
        "scipcache.v1.Refs",
        "scipcache.v1.Admin",
    ] {
        health.set_service_status(name, status).await;
    }
}

async fn shutdown_store(store: &Store) -> Result<()> {
    match tokio::time::timeout(STORE_SHUTDOWN_TIMEOUT, store.shutdown()).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::error!(
                "the store did not shut down within {STORE_SHUTDOWN_TIMEOUT:?}; exiting anyway \
                 (its write-ahead state is recovered at the next start)"
            );
            Ok(())
        }
    }
}

/// Loads the keys and the denylist, creating the local key when none is configured, and
/// starts the denylist watcher.
async fn load_verifier(config: &Config, cancel: &CancellationToken) -> Result<Verifier> {
    let key_file = config.jwt_key_file.clone();
    let jwks_file = config.jwks.clone();
    let denylist_file = config.denylist.clone();
    let data_dir = config.data_dir.clone();
    let (hs256, jwks, denylist) = blocking(move || {
        let hs256 = match (&key_file, &jwks_file) {
            (Some(file), _) => Some(keys::Secret::read(file)?),
            (None, Some(_)) => None,
            (None, None) => {
                let (secret, created) = keys::ensure_local_key(&data_dir)?;
                log_local_key(&data_dir, created);
                Some(secret)
            }
        };
        let jwks = match &jwks_file {
            Some(file) => keys::read_jwks(file)?,
            None => Default::default(),
        };
        let denylist = denylist_file.as_deref().map(Denylist::load).transpose()?;
        Ok((hs256, jwks, denylist))
    })
    .await?;
    if let Some(list) = &denylist {
        tracing::info!(entries = list.len(), "denylist loaded");
        tokio::spawn(list.clone().watch(cancel.clone()));
    }
    Verifier::new(VerifierConfig {
        hs256,
        jwks,
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        leeway: config.jwt_leeway,
        max_ttl: config.jwt_max_ttl,
        denylist,
        clock: scipcache_tiers::clock::Clock::system(),
    })
}

fn log_local_key(data_dir: &Path, created: bool) {
    let path = keys::local_key_path(data_dir);
    let how = format!(
        "scipcached token --data-dir {} --tenant T --scope '*:write'",
        data_dir.display()
    );
    if created {
        tracing::info!(
            "created the token signing key {}; mint a token with: {how}",
            path.display()
        );
    } else {
        tracing::info!(
            "token signing key {}; mint a token with: {how}",
            path.display()
        );
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    crate::blocking::spawn(f).await?
}
