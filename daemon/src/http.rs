//! The HTTP side port: `/healthz` and `/metrics`.
//!
//! `/healthz` answers 200 only while the daemon is ready: the gRPC port is bound and
//! served, the signing key exists and the store is open; otherwise 503 (starting up or
//! shutting down). Below its first line (`ok` or `not ready`) come warnings an operator must
//! act on, one a line starting with `warning: `: an expired TLS certificate (`--tls-cert`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use scipcache_tiers::names::Tenant;
use scipcache_tiers::{Clock, Store};

use crate::metrics::Metrics;
use crate::tls::CertificateInfo;

/// How long a scrape waits for the engine's figures.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP handlers look at.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Whether the daemon serves.
    pub ready: Arc<AtomicBool>,
    /// The store, once open.
    pub store: Arc<OnceLock<Store>>,
    /// The gRPC port's TLS certificate, once loaded.
    pub certificate: Arc<OnceLock<CertificateInfo>>,
    /// The tenants with a `[quotas]` entry: their usage is read at every scrape.
    pub quota_tenants: Arc<Vec<Tenant>>,
}

/// The router. Every answer closes its connection (`Connection: close`): the port holds
/// few connections (see the listener), and scrapers and probes connect per request anyway.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(close_connection))
        .with_state(state)
}

async fn close_connection(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let (status, mut body) = if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, String::from("ok\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, String::from("not ready\n"))
    };
    let now = i64::try_from(Clock::system().now_s()).unwrap_or(i64::MAX);
    if let Some(warning) = state.certificate.get().and_then(|c| c.expired_warning(now)) {
        body.push_str("warning: ");
        body.push_str(&warning);
        body.push('\n');
    }
    (status, body).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    if let Some(store) = state.store.get() {
        match tokio::time::timeout(STATS_TIMEOUT, store.stats(None)).await {
            Ok(Ok(stats)) => state.metrics.set_store_stats(&stats),
            Ok(Err(e)) => {
                state.metrics.stats_failed();
                tracing::warn!("metrics scrape: cannot read store stats: {e}");
            }
            Err(_) => {
                state.metrics.stats_failed();
                tracing::warn!("metrics scrape: store stats took over {STATS_TIMEOUT:?}");
            }
        }
        for tenant in state.quota_tenants.iter() {
            let figures = async {
                let stored = store.tenant_usage(tenant).await?;
                let logical = store.stats(Some(tenant)).await?.logical_bytes;
                Ok::<_, scipcache_tiers::Error>((stored, logical))
            };
            match tokio::time::timeout(STATS_TIMEOUT, figures).await {
                Ok(Ok((stored, logical))) => {
                    state
                        .metrics
                        .set_tenant_figures(tenant.as_str(), stored, logical);
                }
                Ok(Err(e)) => {
                    state.metrics.stats_failed();
                    tracing::warn!("metrics scrape: cannot read the usage of tenant {tenant}: {e}");
                }
                Err(_) => {
                    state.metrics.stats_failed();
                    tracing::warn!(
                        "metrics scrape: the usage of tenant {tenant} took over {STATS_TIMEOUT:?}"
                    );
                }
            }
        }
    }
    match state.metrics.render() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("cannot render metrics: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n").into_response()
        }
    }
}
