//! Channels, notes and model usage on the socket: `events:channel` (typing, `last_read_at`),
//! `join-note` and `usage`.

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{State, TryData},
};

use super::{Ctx, channel_room};
use crate::{auth::Access, directory::OnMissing, error::EventError, state::AppState, store::now_ms};

/// Longest model id accepted in `usage`.
const MAX_MODEL_ID: usize = 256;

#[derive(Debug, Deserialize)]
pub struct ChannelEvent {
    channel_id: String,
    #[serde(default)]
    message_id: Option<Value>,
    data: ChannelEventData,
}

#[derive(Debug, Deserialize)]
pub struct ChannelEventData {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Value>,
}

/// `events:channel {channel_id, message_id, data: {type, data}}` from a member of the channel:
/// `typing` goes to the channel's room, sender included, with the verified `user`;
/// `last_read_at` is recorded. Other types are ignored, as Open WebUI does.
pub async fn on_channel_event<A: Adapter>(
    mut ctx: Ctx<A>,
    State(app): State<AppState>,
    TryData(data): TryData<ChannelEvent>,
) {
    ctx.in_order().await;
    let result = async {
        let event = data.map_err(|e| {
            EventError::invalid(format!("expected {{channel_id, message_id?, data: {{type, data?}}}}: {e}"))
        })?;
        let identity = ctx.identity()?;
        let room = channel_room(&event.channel_id);
        // Only members' sockets are in a channel's room (user-join, join-channels, or channel
        // creation put them there).
        if !ctx.socket.rooms().iter().any(|r| **r == *room) {
            return Err(EventError::forbidden("not a member of this channel"));
        }
        match event.data.kind.as_str() {
            "typing" => {
                let payload = json!({
                    "channel_id": event.channel_id,
                    "message_id": event.message_id,
                    "data": { "type": "typing", "data": event.data.data.unwrap_or(Value::Null) },
                    "user": { "id": identity.id, "name": identity.name, "role": identity.role.as_str() },
                });
                ctx.socket
                    .within(room)
                    .emit("events:channel", &payload)
                    .await
                    .map_err(|e| EventError::new(crate::error::ErrorCode::Unavailable, e.to_string()))?;
            }
            "last_read_at" => {
                app.directory.mark_channel_read(&event.channel_id, &identity, now_ms()).await?;
            }
            _ => {}
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        ctx.fail(error, None);
    }
}

#[derive(Debug, Deserialize)]
pub struct JoinNote {
    note_id: String,
}

/// `join-note {note_id}`: readers of `note:{note_id}` enter the room `note:{note_id}`, where
/// note events are sent.
pub async fn on_join_note<A: Adapter>(mut ctx: Ctx<A>, State(app): State<AppState>, TryData(data): TryData<JoinNote>) {
    ctx.in_order().await;
    let result = async {
        let payload = data.map_err(|e| EventError::invalid(format!("expected {{note_id: string}}: {e}")))?;
        let identity = ctx.identity()?;
        let doc_id = super::docs::normalize_doc_id(&format!("note:{}", payload.note_id))?;
        if app.directory.document_access(&doc_id, &identity, OnMissing::Deny).await? < Access::Read {
            return Err(EventError::forbidden("no read access to this note"));
        }
        ctx.socket.join(doc_id);
        Ok(())
    }
    .await;
    if let Err(error) = result {
        ctx.fail(error, None);
    }
}

#[derive(Debug, Deserialize)]
pub struct Usage {
    model: String,
}

/// `usage {model}`: the session is using `model` now. Entries expire 3 s after the last one.
pub async fn on_usage<A: Adapter>(mut ctx: Ctx<A>, State(app): State<AppState>, TryData(data): TryData<Usage>) {
    ctx.in_order().await;
    let result = async {
        let usage = data.map_err(|e| EventError::invalid(format!("expected {{model: string}}: {e}")))?;
        ctx.identity()?;
        if usage.model.is_empty() || usage.model.len() > MAX_MODEL_ID {
            return Err(EventError::invalid(format!("model must be 1 to {MAX_MODEL_ID} bytes")));
        }
        ctx.release();
        ctx.conn.add_model(&usage.model);
        app.bus.touch_usage(&usage.model, &ctx.sid(), now_ms() / 1000).await?;
        Ok(())
    }
    .await;
    if let Err(error) = result {
        ctx.fail(error, None);
    }
}

/// Open WebUI's `events` envelope for a user's tabs: emitted to `user:{user_id}` on every
/// instance, and persisted on the message as Open WebUI's emitter does (§6.1), except for
/// chats that are not saved (`local:`, `temporary:`, `channel:` ids).
pub async fn emit_chat_event(
    app: &AppState,
    user_id: &str,
    chat_id: &str,
    message_id: &str,
    data: &Value,
) -> Result<(), EventError> {
    let rooms =
        app.rooms().ok_or_else(|| EventError::new(crate::error::ErrorCode::Unavailable, "the server is starting"))?;
    let envelope = json!({ "chat_id": chat_id, "message_id": message_id, "data": data });
    rooms
        .emit(&super::user_room(user_id), "events", &envelope)
        .await
        .map_err(|e| EventError::new(crate::error::ErrorCode::Unavailable, e))?;
    let saved = !chat_id.is_empty()
        && !message_id.is_empty()
        && !["local:", "temporary:", "channel:"].iter().any(|p| chat_id.starts_with(p));
    let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
    if saved && PERSISTED.contains(&kind) {
        let payload = data.get("data").cloned().unwrap_or(Value::Null);
        let edit = |message: &mut crate::store::ChatMessage| persist_event(message, kind, &payload);
        app.store.edit_chat_message(chat_id, message_id, Some(user_id), &edit).await?;
    }
    Ok(())
}

/// Event types the emitter writes to the message.
const PERSISTED: &[&str] = &["status", "message", "replace", "embeds", "files", "source", "citation"];

/// Applies one event to a message by Open WebUI's rules; returns whether it changed.
pub fn persist_event(message: &mut crate::store::ChatMessage, kind: &str, data: &Value) -> bool {
    let list = |key: &str| data.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    match kind {
        "status" => message.status_history.push(data.clone()),
        "message" => message.content.push_str(data.get("content").and_then(Value::as_str).unwrap_or_default()),
        "replace" => message.content = data.get("content").and_then(Value::as_str).unwrap_or_default().to_string(),
        "embeds" => {
            let mut embeds = list("embeds");
            if data.get("replace").and_then(Value::as_bool) != Some(true) {
                embeds.append(&mut message.embeds);
            }
            message.embeds = embeds;
        }
        "files" => {
            let mut files = list("files");
            files.append(&mut message.files);
            message.files = files;
        }
        // Open WebUI appends plain sources; typed ones (code executions) go elsewhere.
        "source" | "citation" if data.get("type").is_none_or(Value::is_null) => message.sources.push(data.clone()),
        _ => return false,
    }
    true
}

/// How often the leader sweeps expired usage entries (Open WebUI's `TIMEOUT_DURATION`).
const USAGE_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// Keeps the usage pool clean: one instance at a time (the holder of an owner-checked lock)
/// drops entries older than 3 s. Unlike Open WebUI, an instance that loses the election keeps
/// trying, so the pool is swept again soon after a leader dies.
pub async fn sweep_usage_until_shutdown(app: AppState) {
    const LOCK: &str = "usage_cleanup_lock";
    let mut tick = tokio::time::interval(USAGE_SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match app.bus.try_lock(LOCK, app.config.lock_timeout).await {
            Ok(true) => {
                let cutoff = now_ms() / 1000 - crate::http::USAGE_EXPIRY_SECS;
                if let Err(error) = app.bus.sweep_usage(cutoff).await {
                    tracing::warn!(%error, "sweeping model usage failed");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "usage sweep lock unavailable"),
        }
    }
    if let Err(error) = app.bus.release_lock(LOCK).await {
        tracing::debug!(%error, "releasing the usage sweep lock failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChatMessage;

    #[test]
    fn open_webui_persistence_rules() {
        let mut m = ChatMessage::default();
        assert!(persist_event(&mut m, "message", &json!({"content": "Hel"})));
        persist_event(&mut m, "message", &json!({"content": "lo"}));
        assert_eq!(m.content, "Hello");
        persist_event(&mut m, "replace", &json!({"content": "Bye"}));
        assert_eq!(m.content, "Bye");
        persist_event(&mut m, "status", &json!({"description": "searching", "done": false}));
        persist_event(&mut m, "status", &json!({"description": "done", "done": true}));
        assert_eq!(m.status_history.len(), 2);
        persist_event(&mut m, "embeds", &json!({"embeds": ["a"]}));
        persist_event(&mut m, "embeds", &json!({"embeds": ["b"]}));
        assert_eq!(m.embeds, vec![json!("b"), json!("a")]);
        persist_event(&mut m, "embeds", &json!({"embeds": ["c"], "replace": true}));
        assert_eq!(m.embeds, vec![json!("c")]);
        persist_event(&mut m, "files", &json!({"files": [{"id": 1}]}));
        persist_event(&mut m, "files", &json!({"files": [{"id": 2}]}));
        assert_eq!(m.files, vec![json!({"id": 2}), json!({"id": 1})]);
        persist_event(&mut m, "source", &json!({"source": {"name": "x"}}));
        assert!(!persist_event(&mut m, "citation", &json!({"type": "code_execution", "id": "1"})));
        assert_eq!(m.sources.len(), 1);
        // Like Open WebUI's emitter, completions are not written here (the pipeline does it).
        assert!(!persist_event(&mut m, "chat:completion", &json!({"content": "final", "done": true})));
        assert!(!persist_event(&mut m, "notification", &json!({"content": "hi"})));
    }
}
