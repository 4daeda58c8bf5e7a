//! `/api/v1/channels`: standalone channels. Admins (or the service key) create channels and
//! manage members; members post and read messages, which reach the channel's room as
//! `events:channel` of type `message`.

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
    realtime::{channel_room, user_room},
    state::AppState,
    store::{ChannelMessage, now_ms},
};

/// Longest channel message accepted.
const MAX_MESSAGE_CHARS: usize = 16 * 1024;
/// Messages returned by a read.
const HISTORY_LIMIT: u32 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/channels", post(create))
        .route("/channels/{id}/members", post(add_members))
        .route("/channels/{id}/messages", get(messages).post(post_message))
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    member_ids: Vec<String>,
}

/// Creates a channel in the directory; returns its id.
async fn create_channel(app: &AppState, name: &str, owner: &str, member_ids: &[String]) -> Result<String, ApiError> {
    if name.trim().is_empty() || name.trim().chars().count() > 128 {
        return Err(ApiError::new(ErrorCode::InvalidPayload, "name must be 1 to 128 characters"));
    }
    Ok(app.directory.create_channel(name, owner, member_ids).await?)
}

/// Puts every connected socket of these users in the channel's room, on every instance.
async fn join_connected(app: &AppState, channel_id: &str, user_ids: &[String]) -> Result<(), ApiError> {
    let rooms = app.rooms().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the server is starting"))?;
    for user_id in user_ids {
        rooms
            .add_to(&user_room(user_id), &channel_room(channel_id))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?;
    }
    Ok(())
}

async fn create(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let owner = match &caller {
        Caller::User(user) => user.id.clone(),
        Caller::Service => "service".to_string(),
    };
    let id = create_channel(&app, &body.name, &owner, &body.member_ids).await?;
    join_connected(&app, &id, &body.member_ids).await?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Debug, Deserialize)]
struct MembersBody {
    user_ids: Vec<String>,
}

/// `NotFound` unless the channel exists.
async fn require_channel(app: &AppState, id: &str) -> Result<(), ApiError> {
    match app.store.channel(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("channel {id} not found"))),
    }
}

async fn add_members(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MembersBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    require_channel(&app, &id).await?;
    for user_id in &body.user_ids {
        app.store.add_channel_member(&id, user_id).await?;
    }
    join_connected(&app, &id, &body.user_ids).await?;
    Ok(Json(json!({ "id": id, "member_ids": app.store.channel_member_ids(&id).await? })))
}

/// The caller's user id if they may use the channel: members, and admins or the service key
/// acting for a member (`user_id` in the body).
async fn member(
    app: &AppState,
    caller: &Caller,
    channel_id: &str,
    acting_for: Option<&str>,
) -> Result<String, ApiError> {
    require_channel(app, channel_id).await?;
    let user_id = match (caller, acting_for) {
        (Caller::User(user), None) => user.id.clone(),
        (caller, Some(user_id)) => {
            caller.require_admin()?;
            user_id.to_string()
        }
        (Caller::Service, None) => {
            return Err(ApiError::new(ErrorCode::InvalidPayload, "the service key must say which user_id is posting"));
        }
    };
    if !app.store.is_channel_member(channel_id, &user_id).await? {
        return Err(ApiError::new(ErrorCode::Forbidden, "not a member of this channel"));
    }
    Ok(user_id)
}

async fn messages(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match &caller {
        Caller::User(user) if !user.is_admin() => {
            member(&app, &caller, &id, None).await?;
        }
        _ => require_channel(&app, &id).await?,
    }
    Ok(Json(json!(app.store.channel_messages(&id, HISTORY_LIMIT).await?)))
}

#[derive(Debug, Deserialize)]
struct PostBody {
    content: String,
    /// For admins and the service key: the member the message is from.
    #[serde(default)]
    user_id: Option<String>,
}

async fn post_message(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PostBody>,
) -> Result<Json<Value>, ApiError> {
    let user_id = member(&app, &caller, &id, body.user_id.as_deref()).await?;
    let content = body.content.trim();
    if content.is_empty() || content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            format!("content must be 1 to {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    let user = app.directory.user(&user_id).await?;
    let message = ChannelMessage {
        id: uuid::Uuid::new_v4().to_string(),
        channel_id: id.clone(),
        user_id: user_id.clone(),
        content: content.to_string(),
        created_at: now_ms(),
    };
    app.store.add_channel_message(&message).await?;
    let rooms = app.rooms().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the server is starting"))?;
    let event = json!({
        "channel_id": id,
        "message_id": message.id,
        "data": { "type": "message", "data": message },
        "user": {
            "id": user_id,
            "name": user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
            "role": user.as_ref().map(|u| u.role.clone()).unwrap_or_default(),
        },
    });
    rooms
        .emit(&channel_room(&id), "events:channel", &event)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?;
    Ok(Json(json!(message)))
}
