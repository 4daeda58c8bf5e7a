//! The HTTP API: health, readiness and the `/api/v1` routes. Each resource owns its routes.

mod channels;
mod chat;
mod demo;
mod documents;
mod events;
mod extract;

use std::time::Duration;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::json;

pub use events::USAGE_EXPIRY_SECS;
pub use extract::{Caller, JsonBody};

use crate::state::AppState;

/// How long `/readyz` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/stats", get(stats))
        .nest("/api/v1", documents::router().merge(events::router()).merge(channels::router()).merge(chat::router()))
        .merge(demo::router())
        .with_state(state)
}

/// 200 while the process serves requests.
async fn healthz() -> &'static str {
    "ok"
}

/// Operational counters, for admins and the service key.
async fn stats(State(app): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, crate::error::ApiError> {
    caller.require_admin()?;
    Ok(Json(json!({ "live_documents": app.docs.live_count() })))
}

/// 200 only when the store (and Redis, when configured) answer.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let store = tokio::time::timeout(READY_TIMEOUT, app.store.ping()).await;
    let bus = tokio::time::timeout(READY_TIMEOUT, app.bus.ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let bus_ok = matches!(bus, Ok(Ok(())));
    let status = if store_ok && bus_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(json!({
            "store": { "backend": app.store.backend().to_string(), "status": word(store_ok) },
            "bus": { "kind": app.bus.kind(), "status": word(bus_ok) },
        })),
    )
}
