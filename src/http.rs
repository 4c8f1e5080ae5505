//! The axum router: webhooks, health and readiness, with a body limit, a
//! timeout and a request id on every request.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::directory::Directory;
use crate::store::Store;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// What the health routes need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The configured directory, for `/readyz`.
    pub directory: Arc<dyn Directory>,
}

/// The whole router: health, and each channel's own routes.
pub fn router(state: AppState, channels: Router, request_timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(channels)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id = id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "database not reachable");
        return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable");
    }
    if let Err(e) = state.directory.ping().await {
        tracing::warn!(error = %e, "directory not reachable");
        return (StatusCode::SERVICE_UNAVAILABLE, "directory unreachable");
    }
    (StatusCode::OK, "ready")
}
