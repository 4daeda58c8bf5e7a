//! `POST /api/v1/chat/completions`: a user's chat completion, streamed to their tabs as
//! `events` of type `chat:completion` (the accumulated text so far, then `done: true`), as Open
//! WebUI's pipeline does. The answer comes from an OpenAI-compatible upstream
//! (`OPENAI_API_BASE_URL`), or, without one, from a built-in demo model so the web demo and the
//! tests work offline. Upstream failures become a `chat:message:error` event, never a hang.

use std::time::Duration;

use axum::{Json, Router, extract::State, routing::post};
use futures_util::{Stream, StreamExt, stream::BoxStream};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, JsonBody};
use crate::{
    auth::Identity,
    config::Upstream,
    error::{ApiError, ErrorCode},
    realtime::chat::emit_chat_event,
    state::AppState,
};

/// The model that answers when no upstream is configured.
pub const DEMO_MODEL: &str = "tandem-demo";
/// Longest wait for the upstream to answer, and then between two chunks.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(30);
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);
/// Pause between the demo model's words: slow enough to look like streaming.
const DEMO_WORD_DELAY: Duration = Duration::from_millis(40);

pub fn router() -> Router<AppState> {
    Router::new().route("/chat/completions", post(completions))
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    chat_id: Option<String>,
    /// The assistant message id the answer belongs to.
    #[serde(default)]
    id: Option<String>,
    /// The tab that asked; its presence selects the background (socket) mode, as in Open WebUI.
    #[serde(default)]
    session_id: Option<String>,
}

async fn completions(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CompletionBody>,
) -> Result<Json<Value>, ApiError> {
    let user = caller.user()?.clone();
    if body.messages.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidPayload, "messages must not be empty"));
    }
    match (&body.chat_id, &body.id, &body.session_id) {
        (Some(chat_id), Some(message_id), Some(_)) if !chat_id.is_empty() && !message_id.is_empty() => {
            let task_id = uuid::Uuid::new_v4().to_string();
            let (chat_id, message_id) = (chat_id.clone(), message_id.clone());
            let task_app = app.clone();
            app.tasks.spawn(async move {
                stream_to_tabs(task_app, user, body.model, body.messages, chat_id, message_id).await;
            });
            Ok(Json(json!({ "status": true, "task_id": task_id })))
        }
        // An API client without a tab: the whole answer in the HTTP response.
        _ => {
            let mut deltas = completion_stream(&app, &user, &body.model, &body.messages).await?;
            let mut content = String::new();
            while let Some(delta) = deltas.next().await {
                content.push_str(&delta.map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?);
            }
            Ok(Json(json!({
                "id": format!("chatcmpl-{}", uuid::Uuid::new_v4()),
                "object": "chat.completion",
                "model": body.model,
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
            })))
        }
    }
}

/// Streams the answer to the user's tabs and persists the final content.
async fn stream_to_tabs(
    app: AppState,
    user: Identity,
    model: String,
    messages: Vec<Value>,
    chat_id: String,
    message_id: String,
) {
    let emit = |data: Value| {
        let (app, user_id, chat_id, message_id) = (app.clone(), user.id.clone(), chat_id.clone(), message_id.clone());
        async move {
            if let Err(error) = emit_chat_event(&app, &user_id, &chat_id, &message_id, &data).await {
                tracing::warn!(message = %error.message, "emitting a chat event failed");
            }
        }
    };
    let outcome: Result<String, String> = async {
        let mut deltas = completion_stream(&app, &user, &model, &messages).await.map_err(|e| e.message)?;
        let mut content = String::new();
        loop {
            let next = tokio::select! {
                next = deltas.next() => next,
                _ = app.shutdown.cancelled() => return Err("the server is shutting down".to_string()),
            };
            let Some(delta) = next else { break };
            let delta = delta?;
            if delta.is_empty() {
                continue;
            }
            content.push_str(&delta);
            emit(json!({ "type": "chat:completion", "data": { "content": content } })).await;
        }
        Ok(content)
    }
    .await;
    match outcome {
        Ok(content) => {
            emit(json!({ "type": "chat:completion", "data": { "content": content, "done": true } })).await;
            let saved = !["local:", "temporary:", "channel:"].iter().any(|p| chat_id.starts_with(p));
            if saved {
                let edit = |message: &mut crate::store::ChatMessage| {
                    message.content = content.clone();
                    true
                };
                if let Err(error) = app.store.edit_chat_message(&chat_id, &message_id, Some(&user.id), &edit).await {
                    tracing::warn!(%error, "saving the completed answer failed");
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, model, "chat completion failed");
            emit(json!({ "type": "chat:message:error", "data": { "error": { "content": error } } })).await;
        }
    }
}

/// The answer as a stream of text deltas.
async fn completion_stream(
    app: &AppState,
    user: &Identity,
    model: &str,
    messages: &[Value],
) -> Result<BoxStream<'static, Result<String, String>>, ApiError> {
    match &app.upstream {
        Some(upstream) => Ok(upstream_stream(upstream, model, messages).await?.boxed()),
        None if model == DEMO_MODEL || model.is_empty() => Ok(demo_stream(user, messages).boxed()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("model {model:?} is not available: no OPENAI_API_BASE_URL is configured (try {DEMO_MODEL:?})"),
        )),
    }
}

fn demo_stream(user: &Identity, messages: &[Value]) -> impl Stream<Item = Result<String, String>> + use<> {
    let question = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    let answer = format!(
        "Hello {}! You asked: \"{question}\". I am tandem's built-in demo model: I stream this answer word by word \
         over Socket.IO, the way Open WebUI streams chat completions. Set OPENAI_API_BASE_URL to talk to a real model.",
        user.name
    );
    let words: Vec<String> = answer.split_inclusive(' ').map(str::to_string).collect();
    futures_util::stream::iter(words).then(|word| async move {
        tokio::time::sleep(DEMO_WORD_DELAY).await;
        Ok(word)
    })
}

/// Streams `choices[0].delta.content` from an OpenAI-compatible server-sent event stream.
async fn upstream_stream(
    upstream: &Upstream,
    model: &str,
    messages: &[Value],
) -> Result<impl Stream<Item = Result<String, String>> + use<>, ApiError> {
    let client = reqwest::Client::builder()
        .connect_timeout(UPSTREAM_CONNECT)
        .build()
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut request = client
        .post(format!("{}/chat/completions", upstream.base_url))
        .json(&json!({ "model": model, "messages": messages, "stream": true }));
    if let Some(key) = &upstream.api_key {
        request = request.bearer_auth(key);
    }
    let response = tokio::time::timeout(UPSTREAM_CONNECT, request.send())
        .await
        .map_err(|_| ApiError::new(ErrorCode::Timeout, "the model did not answer in time"))?
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, format!("cannot reach the model: {e}")))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("the model answered {status}: {}", text.chars().take(500).collect::<String>()),
        ));
    }
    let bytes = response.bytes_stream();
    // Bytes, not text, are buffered: a chunk can end in the middle of a UTF-8 character.
    Ok(futures_util::stream::unfold((bytes, Vec::<u8>::new(), false), |(mut bytes, mut buffer, finished)| async move {
        if finished {
            return None;
        }
        loop {
            // One complete line in the buffer: parse it.
            if let Some(newline) = buffer.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = buffer.drain(..=newline).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim();
                let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
                if data == "[DONE]" {
                    return None;
                }
                let parsed: Value = match serde_json::from_str(data) {
                    Ok(v) => v,
                    Err(e) => {
                        return Some((Err(format!("malformed stream from the model: {e}")), (bytes, buffer, true)));
                    }
                };
                if let Some(error) = parsed.get("error") {
                    let message = error
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| error.to_string());
                    return Some((Err(message), (bytes, buffer, true)));
                }
                let delta = parsed["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_string();
                return Some((Ok(delta), (bytes, buffer, false)));
            }
            match tokio::time::timeout(UPSTREAM_IDLE, bytes.next()).await {
                Err(_) => return Some((Err("the model stopped sending".to_string()), (bytes, buffer, true))),
                Ok(None) => {
                    // The stream ended without [DONE]; whatever is buffered is the last line.
                    if buffer.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    buffer.push(b'\n');
                }
                Ok(Some(Err(e))) => {
                    return Some((Err(format!("the model's stream broke: {e}")), (bytes, buffer, true)));
                }
                Ok(Some(Ok(chunk))) => buffer.extend_from_slice(&chunk),
            }
        }
    }))
}
