//! The HTTP side port: `/healthz` and `/metrics`.
//!
//! `/healthz` answers 200 only while the daemon is ready: the gRPC port is bound and
//! served, the signing key exists and the store is open; otherwise 503 (starting up or
//! shutting down).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use scipcache_tiers::Store;

use crate::metrics::Metrics;

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
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
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
