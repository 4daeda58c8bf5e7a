//! The web demo: its page (built into `web-demo/dist` and embedded in the binary, so a fresh
//! clone serves it without Node) and a dev-only sign-in that issues a token for a chosen name.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::json;

use super::JsonBody;
use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
    store::{ChannelRecord, UserRecord, now_ms},
};

/// The channel every demo user joins, so the chat pane has someone to talk to.
pub const DEMO_CHANNEL: &str = "demo";
/// Demo tokens last a working day.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(rust_embed::RustEmbed)]
#[folder = "web-demo/dist/"]
#[allow_missing = true]
struct Assets;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/demo/signin", post(signin)).fallback(asset)
}

/// Serves the page and its assets; `/` is `index.html`.
async fn asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Assets::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            ([(header::CONTENT_TYPE, mime.as_ref().to_string())], file.data.into_owned()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct SigninBody {
    name: String,
}

/// A user id from a display name: lower-case letters, digits and dashes.
fn user_id_for(name: &str) -> String {
    let mut id = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') && !id.is_empty() {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_string()
}

/// `POST /api/v1/demo/signin {name}` → `{token, user: {id, name, role}, channel_id}`. Only on
/// when `WEBUI_SECRET_KEY` was not set explicitly (or `TANDEM_DEMO_SIGNIN=true`): it hands a
/// token to anyone who asks.
async fn signin(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<SigninBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !app.config.demo_signin {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "demo sign-in is off (WEBUI_SECRET_KEY is set; TANDEM_DEMO_SIGNIN=true turns it on)",
        ));
    }
    let name = body.name.trim();
    let id = user_id_for(name);
    if id.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "name must be 1 to 64 characters with at least one letter or digit",
        ));
    }
    let existing = app.store.user(&id).await?;
    // Demo sign-in never touches an admin, and never hands out an admin token.
    if existing.as_ref().is_some_and(|u| u.role == "admin") {
        return Err(ApiError::new(ErrorCode::Forbidden, "that name belongs to an admin"));
    }
    app.store
        .upsert_user(&UserRecord {
            id: id.clone(),
            name: name.to_string(),
            role: "user".into(),
            last_active_at: existing.map_or(0, |u| u.last_active_at),
        })
        .await?;
    if app.store.channel(DEMO_CHANNEL).await?.is_none() {
        let channel =
            ChannelRecord { id: DEMO_CHANNEL.into(), name: "demo".into(), owner_id: id.clone(), created_at: now_ms() };
        // Two first sign-ins can race to create it; the loser just joins.
        if let Err(error) = app.store.create_channel(&channel, std::slice::from_ref(&id)).await {
            tracing::debug!(%error, "demo channel already created");
        }
    }
    app.store.add_channel_member(DEMO_CHANNEL, &id).await?;
    let token = app.keys.mint(&id, Some(DEMO_TOKEN_TTL));
    Ok(Json(json!({
        "token": token,
        "user": { "id": id, "name": name, "role": "user" },
        "channel_id": DEMO_CHANNEL,
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_ids_from_names() {
        assert_eq!(super::user_id_for("Alice"), "alice");
        assert_eq!(super::user_id_for("  Bob  Smith! "), "bob-smith");
        assert_eq!(super::user_id_for("Zoë"), "zoë");
        assert_eq!(super::user_id_for("!!!"), "");
    }
}
