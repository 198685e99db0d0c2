//! The HTTP endpoints: `/metrics`, `/healthz` (the process serves), `/readyz` (caches synced
//! and leadership known).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::runtime::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// Starting: leadership not known yet, or caches not synced.
    #[default]
    Starting,
    /// Waiting for the lease as a standby replica.
    Standby,
    /// Leading with synced caches.
    Serving,
}

#[derive(Clone)]
struct Endpoints {
    metrics: Arc<Metrics>,
    readiness: watch::Receiver<Readiness>,
}

/// Serves the endpoints until the process exits.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: watch::Receiver<Readiness>,
) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Endpoints { metrics, readiness });
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%address, %error, "cannot listen for /metrics, /healthz and /readyz");
            return;
        }
    };
    info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics, /healthz, /readyz");
    if let Err(error) = axum::serve(listener, app).await {
        warn!(%error, "HTTP server stopped");
    }
}

async fn render_metrics(
    State(endpoints): State<Endpoints>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        endpoints.metrics.encode(),
    )
}

async fn ready(State(endpoints): State<Endpoints>) -> (StatusCode, &'static str) {
    match *endpoints.readiness.borrow() {
        Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Readiness::Standby => (StatusCode::OK, "standby"),
        Readiness::Serving => (StatusCode::OK, "ok"),
    }
}
