//! The backend-facing event API: emit chat events to a user's tabs, call one tab and wait for
//! its answer, read what the emitter persisted, and see who is online and which models are in
//! use. Callers present an admin token or the service key.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, JsonBody};
use crate::{
    error::{ApiError, ErrorCode},
    realtime::{chat::emit_chat_event, rooms::CallError},
    state::AppState,
    store::now_ms,
};

/// Open WebUI's usage entries expire this long after the last `usage` event.
pub const USAGE_EXPIRY_SECS: i64 = 3;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events/emit", post(emit))
        .route("/events/call", post(call))
        .route("/chats/{chat_id}/messages/{message_id}", get(chat_message))
        .route("/presence", get(presence))
        .route("/usage", get(usage))
}

#[derive(Debug, Deserialize)]
struct EmitBody {
    user_id: String,
    chat_id: String,
    message_id: String,
    data: EventData,
}

/// `{type, data}`: checked for shape, passed on verbatim.
#[derive(Debug, Deserialize)]
struct EventData {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

impl EventData {
    fn to_value(&self) -> Value {
        json!({ "type": self.kind, "data": self.data })
    }
}

/// `POST /events/emit`: `events {chat_id, message_id, data}` to every tab of `user_id`, on
/// every instance, persisted by Open WebUI's rules.
async fn emit(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<EmitBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if body.user_id.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidPayload, "user_id must not be empty"));
    }
    emit_chat_event(&app, &body.user_id, &body.chat_id, &body.message_id, &body.data.to_value()).await?;
    Ok(Json(json!({ "status": true })))
}

#[derive(Debug, Deserialize)]
struct CallBody {
    session_id: String,
    user_id: String,
    chat_id: String,
    message_id: String,
    data: EventData,
}

/// `POST /events/call`: sends `events` to one tab (`session_id`) and returns its ack as
/// `{result}`. The tab must belong to `user_id` (Open WebUI's classic server let anyone aim
/// calls at anyone's tab, weakness 7).
async fn call(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CallBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let session = app.bus.session(&body.session_id).await?;
    let Some(session) = session else {
        return Err(ApiError::new(ErrorCode::NotFound, "that session is not connected"));
    };
    if session.id != body.user_id {
        return Err(ApiError::new(ErrorCode::Forbidden, "that session belongs to another user"));
    }
    let rooms = app.rooms().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the server is starting"))?;
    let envelope = json!({ "chat_id": body.chat_id, "message_id": body.message_id, "data": body.data.to_value() });
    match rooms.call(&body.session_id, "events", &envelope, app.config.event_caller_timeout).await {
        Ok(result) => Ok(Json(json!({ "result": result }))),
        Err(CallError::Gone) => Err(ApiError::new(ErrorCode::NotFound, "that session is not connected")),
        Err(CallError::Timeout) => {
            Err(ApiError::new(ErrorCode::Timeout, "the tab did not answer in time; it may be inactive or closed"))
        }
        Err(CallError::Failed(e)) => Err(ApiError::new(ErrorCode::Unavailable, e)),
    }
}

/// What the emitter persisted for a message.
async fn chat_message(
    State(app): State<AppState>,
    caller: Caller,
    Path((chat_id, message_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let message = app
        .store
        .chat_message(&chat_id, &message_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such chat message"))?;
    Ok(Json(json!(message)))
}

/// Who is online, across the cluster: `{users: [{id, name, role, sessions, last_seen_at,
/// last_active_at}]}`.
async fn presence(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let mut users: std::collections::BTreeMap<String, Value> = Default::default();
    for (_, entry) in app.bus.sessions().await? {
        let user = users.entry(entry.id.clone()).or_insert_with(
            || json!({ "id": entry.id, "name": entry.name, "role": entry.role, "sessions": 0, "last_seen_at": 0 }),
        );
        user["sessions"] = json!(user["sessions"].as_i64().unwrap_or(0) + 1);
        if entry.last_seen_at > user["last_seen_at"].as_i64().unwrap_or(0) {
            user["last_seen_at"] = json!(entry.last_seen_at);
        }
    }
    for (id, user) in users.iter_mut() {
        let active = app.directory.user(id).await?.map_or(0, |u| u.last_active_at);
        user["last_active_at"] = json!(active);
    }
    Ok(Json(json!({ "users": users.into_values().collect::<Vec<_>>() })))
}

/// Models in use in the last 3 seconds: `{models: [...]}`.
async fn usage(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let cutoff = now_ms() / 1000 - USAGE_EXPIRY_SECS;
    let mut models: Vec<String> = app
        .bus
        .usage()
        .await?
        .into_iter()
        .filter(|(_, sessions)| sessions.values().any(|&at| at >= cutoff))
        .map(|(model, _)| model)
        .collect();
    models.sort();
    Ok(Json(json!({ "models": models })))
}
