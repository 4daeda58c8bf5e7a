//! Sessions: the handshake, `user-join`, `join-channels`, `heartbeat` and `disconnect`.
//!
//! A socket is always accepted (Open WebUI's clients expect that); a valid handshake token
//! makes it a session: registered in the session pool and in the room `user:{id}`. Without
//! one it stays anonymous and every event that needs identity is refused.

use std::convert::Infallible;

use serde::Deserialize;
use serde_json::json;
use socketioxide::{
    adapter::Adapter,
    extract::{SocketRef, State, TryData},
    socket::DisconnectReason,
};

use super::{Ctx, channel_room, conn, user_room};
use crate::{
    auth::{self, Identity},
    bus::SessionEntry,
    error::EventError,
    state::AppState,
    store::now_ms,
};

/// A user counts as active for 180 s after `last_active_at` (Open WebUI); writing it at most
/// once a minute per socket keeps heartbeats off the database.
const ACTIVITY_WRITE_EVERY_SECS: i64 = 60;

/// The `auth` object of the handshake.
#[derive(Debug, Deserialize)]
pub struct HandshakeAuth {
    #[serde(default)]
    token: Option<String>,
}

/// `{"auth": {"token": "..."}}`, the payload of `user-join` and `join-channels`.
#[derive(Debug, Deserialize)]
pub struct TokenPayload {
    #[serde(default)]
    auth: Option<HandshakeAuth>,
}

impl TokenPayload {
    fn token(&self) -> Option<&str> {
        self.auth.as_ref().and_then(|a| a.token.as_deref())
    }
}

/// Connect middleware, run before the client is told it is connected: verifies the handshake
/// token, registers the event handlers, and makes a verified socket a session (room
/// `user:{id}`, session pool). Never refuses the connection.
pub async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    State(app): State<AppState>,
    TryData(auth): TryData<HandshakeAuth>,
) -> Result<(), Infallible> {
    let conn = conn(&s);
    // socketioxide does not put a socket in a room named after its id; `except(sid)` and
    // targeted emits rely on it.
    s.join(s.id);
    super::register_handlers(&s);
    let token = auth.ok().and_then(|a| a.token);
    match auth::authenticate(&app.keys, app.directory.as_ref(), token.as_deref()).await {
        Ok(identity) => {
            s.join(user_room(&identity.id));
            register(&app, &s.id.to_string(), &identity).await;
            conn.set_identity(Some(identity));
        }
        Err(error) => tracing::debug!(sid = %s.id, %error, "anonymous socket"),
    }
    Ok(())
}

async fn register(app: &AppState, sid: &str, identity: &Identity) {
    let entry = SessionEntry::new(identity, app.bus.instance_id(), now_ms() / 1000);
    if let Err(error) = app.bus.put_session(sid, &entry).await {
        tracing::warn!(%error, sid, "could not record the session in the pool");
    }
}

/// `user-join {auth: {token}}`: (re-)authenticates, joins `user:{id}` and the user's channel
/// rooms, acks `{id, name}`. A bad token acks an error and changes nothing. Switching to
/// another identity first leaves the previous identity's rooms (Open WebUI keeps them,
/// weakness 19).
pub async fn on_user_join<A: Adapter>(
    mut ctx: Ctx<A>,
    State(app): State<AppState>,
    TryData(data): TryData<TokenPayload>,
) {
    ctx.in_order().await;
    let result = async {
        let identity = authenticate_payload(&app, data).await?;
        let channels = app.directory.channel_ids(&identity).await?;
        Ok::<_, EventError>((identity, channels))
    }
    .await;
    let (identity, channels) = match result {
        Ok(ok) => ok,
        Err(error) => return ctx.fail(error, None),
    };
    let previous = ctx.conn.set_identity(Some(identity.clone()));
    if let Some(previous) = previous.filter(|p| p.id != identity.id) {
        leave_identity_rooms(&ctx, &app, &previous).await;
    }
    ctx.socket.join(user_room(&identity.id));
    for channel in &channels {
        ctx.socket.join(channel_room(channel));
    }
    register(&app, &ctx.sid(), &identity).await;
    ctx.ack(&json!({ "id": identity.id, "name": identity.name }));
}

/// The identity of a `{"auth": {"token"}}` payload.
async fn authenticate_payload(
    app: &AppState,
    data: Result<TokenPayload, socketioxide::ParserError>,
) -> Result<Identity, EventError> {
    let payload =
        data.map_err(|e| EventError::invalid(format!("expected {{\"auth\": {{\"token\": string}}}}: {e}")))?;
    Ok(auth::authenticate(&app.keys, app.directory.as_ref(), payload.token()).await?)
}

/// Leaves everything joined under a previous identity: its user and channel rooms, and its
/// documents (whose access was checked for that identity).
async fn leave_identity_rooms<A: Adapter>(ctx: &Ctx<A>, app: &AppState, previous: &Identity) {
    for room in ctx.socket.rooms() {
        if room.starts_with("user:") || room.starts_with("channel:") || room.starts_with("note:") {
            ctx.socket.leave(room);
        }
    }
    for doc_id in ctx.conn.take_docs() {
        super::docs::leave_document(&ctx.socket, app, previous, &doc_id).await;
    }
}

/// `join-channels {auth: {token}}`: joins the channel rooms of the token's user. The token must
/// be this socket's own identity; a socket cannot listen in on another user's channels.
pub async fn on_join_channels<A: Adapter>(
    mut ctx: Ctx<A>,
    State(app): State<AppState>,
    TryData(data): TryData<TokenPayload>,
) {
    ctx.in_order().await;
    let result = async {
        let identity = authenticate_payload(&app, data).await?;
        if ctx.conn.identity().is_some_and(|current| current.id != identity.id) {
            return Err(EventError::forbidden("the token belongs to another user than this session"));
        }
        Ok(app.directory.channel_ids(&identity).await?)
    }
    .await;
    match result {
        Ok(channels) => {
            for channel in &channels {
                ctx.socket.join(channel_room(channel));
            }
            ctx.ack(&json!({ "channels": channels }));
        }
        Err(error) => ctx.fail(error, None),
    }
}

/// `heartbeat {}`: refreshes the session's last-seen time and the user's last-active time.
pub async fn on_heartbeat<A: Adapter>(mut ctx: Ctx<A>, State(app): State<AppState>) {
    ctx.in_order().await;
    let identity = match ctx.identity() {
        Ok(identity) => identity,
        Err(error) => return ctx.fail(error, None),
    };
    ctx.release();
    let now_secs = now_ms() / 1000;
    register(&app, &ctx.sid(), &identity).await;
    if ctx.conn.activity_due(now_secs, ACTIVITY_WRITE_EVERY_SECS)
        && let Err(error) = app.directory.touch_active(&identity.id, now_secs).await
    {
        tracing::warn!(%error, user_id = %identity.id, "could not record activity");
    }
}

/// `disconnect`: leaves every document (telling the others, which Open WebUI never does,
/// weakness 16) and drops the session from the pool.
pub async fn on_disconnect<A: Adapter>(s: SocketRef<A>, State(app): State<AppState>, reason: DisconnectReason) {
    let conn = conn(&s);
    let sid = s.id.to_string();
    tracing::debug!(%sid, ?reason, "socket disconnected");
    if let Some(identity) = conn.identity() {
        for doc_id in conn.take_docs() {
            super::docs::leave_document(&s, &app, &identity, &doc_id).await;
        }
        if let Err(error) = app.bus.remove_session(&sid).await {
            tracing::warn!(%error, %sid, "could not remove the session from the pool");
        }
        if let Err(error) = app.bus.remove_usage(&sid, &conn.take_models()).await {
            tracing::warn!(%error, %sid, "could not remove the session's model usage");
        }
    }
}
