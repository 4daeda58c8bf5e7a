//! `ydoc:*`: Open WebUI's collaborative documents on the document engine.
//!
//! Every event is authorized against the verified session: joining needs read access, updates
//! and awareness need write access and membership of the document's room, and every
//! `user_id` that goes out is the verified one (Open WebUI trusts the payload, weakness 6).
//! Updates are broadcast only once the engine says they are durable.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::json;
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{SocketRef, State, TryData},
    socket::Sid,
};

use super::{Ctx, MaybeYBytes, YBytes, doc_room};
use crate::{
    auth::{Access, Identity},
    directory::{DynDirectory, OnMissing},
    docs::{Applied, Origin, UpdateSink},
    error::{ErrorCode, EventError},
    state::AppState,
};

/// Longest document id accepted; ids become room names and Redis keys.
const MAX_DOC_ID: usize = 256;
/// Largest awareness message relayed; real ones are a few hundred bytes.
const MAX_AWARENESS_BYTES: usize = 64 << 10;
/// Open WebUI saves a note's content this long after the last update.
const SAVE_DEBOUNCE: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
pub struct JoinPayload {
    document_id: String,
    /// A display hint; `user_id` and `user_name` in the payload are ignored.
    #[serde(default)]
    user_color: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct DocPayload {
    document_id: String,
}

#[derive(Debug, Deserialize)]
pub struct UpdatePayload {
    document_id: String,
    #[serde(default)]
    update: MaybeYBytes,
    #[serde(default)]
    data: Option<UpdateData>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateData {
    #[serde(default)]
    content: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct AwarenessPayload {
    document_id: String,
    update: YBytes,
}

/// Yjs bytes on their way out, in the form the sender used: a number array (what Open WebUI
/// clients send and expect) or a binary attachment.
struct OutBytes {
    bytes: Arc<Vec<u8>>,
    binary: bool,
}

impl Serialize for OutBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.binary {
            // socketioxide's parser turns `serialize_bytes` into a binary attachment.
            s.serialize_bytes(&self.bytes)
        } else {
            s.collect_seq(self.bytes.iter())
        }
    }
}

impl OutBytes {
    fn new(bytes: impl Into<Arc<Vec<u8>>>, binary: bool) -> Self {
        Self { bytes: bytes.into(), binary }
    }
}

/// Accepts Open WebUI's document ids; its newer server rewrites a leading `note_` to `note:`
/// before authorizing, so both spellings name one document.
pub fn normalize_doc_id(raw: &str) -> Result<String, EventError> {
    if raw.is_empty() || raw.len() > MAX_DOC_ID || raw.chars().any(char::is_control) {
        return Err(EventError::invalid(format!(
            "document_id must be 1 to {MAX_DOC_ID} bytes without control characters"
        )));
    }
    Ok(match raw.strip_prefix("note_") {
        Some(rest) => format!("note:{rest}"),
        None => raw.to_string(),
    })
}

fn parse<T>(data: Result<T, socketioxide::ParserError>, shape: &str) -> Result<T, EventError> {
    data.map_err(|e| EventError::invalid(format!("expected {shape}: {e}")))
}

/// `ydoc:document:join {document_id, user_color?}` → `ydoc:document:state` to the joiner and
/// `ydoc:user:joined` to the others.
pub async fn on_join<A: Adapter>(mut ctx: Ctx<A>, State(app): State<AppState>, TryData(data): TryData<JoinPayload>) {
    ctx.in_order().await;
    let payload = match parse(data, "{document_id: string}") {
        Ok(payload) => payload,
        Err(error) => return ctx.fail(error, None),
    };
    let doc_id = match normalize_doc_id(&payload.document_id) {
        Ok(doc_id) => doc_id,
        Err(error) => return ctx.fail(error, None),
    };
    if let Err(error) = join(&ctx, &app, &doc_id, payload.user_color).await {
        ctx.fail(error, Some(&doc_id));
    }
}

async fn join<A: Adapter>(
    ctx: &Ctx<A>,
    app: &AppState,
    doc_id: &str,
    user_color: Option<serde_json::Value>,
) -> Result<(), EventError> {
    let identity = ctx.identity()?;
    let access = app.directory.document_access(doc_id, &identity, OnMissing::Create).await?;
    if access < Access::Read {
        return Err(EventError::forbidden("no read access to this document"));
    }
    let sid = ctx.sid();
    let room = doc_room(doc_id);
    // Enter the room before reading the state: an update committed after the read is then
    // broadcast to us, and one committed before it is in the state.
    ctx.socket.join(room.clone());
    let state = match app.docs.join(doc_id, &sid).await {
        Ok(state) => state,
        Err(error) => {
            ctx.socket.leave(room);
            return Err(error.into());
        }
    };
    let rejoin = ctx.conn.doc_access(doc_id).is_some();
    ctx.conn.add_doc(doc_id, access);
    app.bus.add_doc_session(doc_id, &sid).await?;
    let sessions = app.bus.doc_sessions(doc_id).await?;
    let _ = ctx.socket.emit("ydoc:document:state", &StateOut::new(doc_id, state, &sessions));
    if !rejoin {
        let color = user_color
            .and_then(|c| c.as_str().map(str::to_string))
            .filter(|c| c.len() <= 32)
            .unwrap_or_else(|| "#000000".to_string());
        // `socket_id` is beyond Open WebUI's shape: it tells apart two tabs of one user.
        let joined = json!({
            "document_id": doc_id,
            "user_id": identity.id,
            "user_name": identity.name,
            "user_color": color,
            "socket_id": sid,
        });
        if let Err(error) = ctx.socket.to(room).emit("ydoc:user:joined", &joined).await {
            tracing::warn!(%error, doc_id, "broadcasting ydoc:user:joined failed");
        }
    }
    Ok(())
}

/// `ydoc:document:state {document_id}`: the full state again, for a member.
pub async fn on_state<A: Adapter>(mut ctx: Ctx<A>, State(app): State<AppState>, TryData(data): TryData<DocPayload>) {
    ctx.in_order().await;
    let result = async {
        let payload = parse(data, "{document_id: string}")?;
        let doc_id = normalize_doc_id(&payload.document_id)?;
        ctx.identity()?;
        if ctx.conn.doc_access(&doc_id).is_none() {
            return Err((EventError::forbidden("join the document first"), Some(doc_id)));
        }
        Ok(doc_id)
    }
    .await
    .map_err(|e: EventErrorWithDoc| e);
    let doc_id = match result {
        Ok(doc_id) => doc_id,
        Err((error, doc_id)) => return ctx.fail(error, doc_id.as_deref()),
    };
    let answer = async {
        let state = app.docs.state(&doc_id).await?;
        let sessions = app.bus.doc_sessions(&doc_id).await?;
        Ok::<_, EventError>((state, sessions))
    }
    .await;
    match answer {
        Ok((state, sessions)) => {
            let _ = ctx.socket.emit("ydoc:document:state", &StateOut::new(&doc_id, state, &sessions));
        }
        Err(error) => ctx.fail(error, Some(&doc_id)),
    }
}

/// An error together with the document it concerns, when known.
type EventErrorWithDoc = (EventError, Option<String>);

impl From<EventError> for EventErrorWithDoc {
    fn from(e: EventError) -> Self {
        (e, None)
    }
}

/// Checks that the socket may write to a document it joined.
fn writer<A: Adapter>(ctx: &Ctx<A>, doc_id: &str) -> Result<Identity, EventError> {
    let identity = ctx.identity()?;
    match ctx.conn.doc_access(doc_id) {
        None => Err(EventError::forbidden("join the document before sending to it")),
        Some(Access::Write) => Ok(identity),
        Some(_) => Err(EventError::forbidden("no write access to this document")),
    }
}

/// `ydoc:document:update {document_id, update?, data?: {content}}`: validated, made durable,
/// then broadcast to the document's room without the sender. Without `update` it is a content
/// refresh: only `data.content` is saved.
pub async fn on_update<A: Adapter>(
    mut ctx: Ctx<A>,
    State(app): State<AppState>,
    TryData(data): TryData<UpdatePayload>,
) {
    ctx.in_order().await;
    let checked = async {
        let payload = parse(data, "{document_id: string, update?: bytes, data?: {content}}")?;
        let doc_id = normalize_doc_id(&payload.document_id)?;
        match writer(&ctx, &doc_id) {
            Ok(identity) => Ok((payload, doc_id, identity)),
            Err(error) => Err((error, Some(doc_id))),
        }
    }
    .await
    .map_err(|e: EventErrorWithDoc| e);
    let (payload, doc_id, identity) = match checked {
        Ok(ok) => ok,
        Err((error, doc_id)) => return ctx.fail(error, doc_id.as_deref()),
    };
    let content = payload.data.and_then(|d| d.content);
    let Some(update) = payload.update.0 else {
        if let Some(content) = content {
            app.saver().schedule(&app, &doc_id, content);
        }
        return;
    };
    let sid = ctx.sid();
    let origin = Origin { user_id: identity.id.clone(), socket_id: sid.clone(), binary: update.binary };
    let pending = match app.docs.submit(&doc_id, update.bytes, origin).await {
        Ok(pending) => pending,
        Err(error) => return ctx.fail(error.into(), Some(&doc_id)),
    };
    let bytes = pending.update();
    // Queued in order behind this socket's earlier updates; the next event may start while
    // this one waits for its commit.
    ctx.release();
    match pending.outcome().await {
        Ok(Applied::Stored { .. }) => {
            let message = UpdateOut {
                document_id: &doc_id,
                user_id: &identity.id,
                update: OutBytes::new(bytes, update.binary),
                socket_id: &sid,
            };
            // Local sockets only: other instances apply the update from the bus and deliver
            // it to their own sockets.
            if let Err(error) = ctx.socket.to(doc_room(&doc_id)).local().emit("ydoc:document:update", &message).await {
                tracing::warn!(%error, doc_id, "broadcasting an update failed");
            }
        }
        // Nothing new: an echo or a re-sent state; nothing to store or broadcast.
        Ok(Applied::AlreadyKnown) => {}
        Err(error) => return ctx.fail(error.into(), Some(&doc_id)),
    }
    if let Some(content) = content {
        app.saver().schedule(&app, &doc_id, content);
    }
}

/// `ydoc:document:leave {document_id}`.
pub async fn on_leave<A: Adapter>(mut ctx: Ctx<A>, State(app): State<AppState>, TryData(data): TryData<DocPayload>) {
    ctx.in_order().await;
    let result = async {
        let payload = parse(data, "{document_id: string}")?;
        let doc_id = normalize_doc_id(&payload.document_id)?;
        Ok::<_, EventError>((ctx.identity()?, doc_id))
    }
    .await;
    match result {
        Ok((identity, doc_id)) => {
            if ctx.conn.remove_doc(&doc_id) {
                leave_document(&ctx.socket, &app, &identity, &doc_id).await;
            }
        }
        Err(error) => ctx.fail(error, None),
    }
}

/// Takes a socket out of a document: room, cluster session set, engine membership, and tells
/// the others with `ydoc:user:left`.
pub async fn leave_document<A: Adapter>(s: &SocketRef<A>, app: &AppState, identity: &Identity, doc_id: &str) {
    let sid = s.id.to_string();
    let room = doc_room(doc_id);
    s.leave(room.clone());
    if let Err(error) = app.bus.remove_doc_session(doc_id, &sid).await {
        tracing::warn!(%error, doc_id, "could not remove the session from the document's set");
    }
    app.docs.leave(doc_id, &sid).await;
    let left = json!({ "document_id": doc_id, "user_id": identity.id, "socket_id": sid });
    if let Err(error) = s.to(room).emit("ydoc:user:left", &left).await {
        tracing::warn!(%error, doc_id, "broadcasting ydoc:user:left failed");
    }
}

/// `ydoc:awareness:update {document_id, update}`: relayed verbatim to the room without the
/// sender, with the verified `user_id`. Not stored.
pub async fn on_awareness<A: Adapter>(
    mut ctx: Ctx<A>,
    State(_app): State<AppState>,
    TryData(data): TryData<AwarenessPayload>,
) {
    ctx.in_order().await;
    let checked = async {
        let payload = parse(data, "{document_id: string, update: bytes}")?;
        let doc_id = normalize_doc_id(&payload.document_id)?;
        let identity = writer(&ctx, &doc_id).map_err(|e| (e, Some(doc_id.clone())))?;
        if payload.update.bytes.len() > MAX_AWARENESS_BYTES {
            return Err((
                EventError::new(
                    ErrorCode::TooLarge,
                    format!("awareness updates are limited to {MAX_AWARENESS_BYTES} bytes"),
                ),
                Some(doc_id),
            ));
        }
        Ok((payload.update, doc_id, identity))
    }
    .await
    .map_err(|e: EventErrorWithDoc| e);
    let (update, doc_id, identity) = match checked {
        Ok(ok) => ok,
        Err((error, doc_id)) => return ctx.fail(error, doc_id.as_deref()),
    };
    ctx.release();
    let relay = json!({ "document_id": doc_id, "user_id": identity.id, "socket_id": ctx.sid() });
    let message = AwarenessOut { relay, update: OutBytes::new(update.bytes, update.binary) };
    if let Err(error) = ctx.socket.to(doc_room(&doc_id)).emit("ydoc:awareness:update", &message).await {
        tracing::warn!(%error, doc_id, "relaying awareness failed");
    }
}

/// `{document_id, user_id, socket_id, update}` with `update` in the sender's form.
struct AwarenessOut {
    relay: serde_json::Value,
    update: OutBytes,
}

impl Serialize for AwarenessOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("document_id", &self.relay["document_id"])?;
        map.serialize_entry("user_id", &self.relay["user_id"])?;
        map.serialize_entry("socket_id", &self.relay["socket_id"])?;
        map.serialize_entry("update", &self.update)?;
        map.end()
    }
}

/// `ydoc:document:state` as sent: `{document_id, state, sessions}`, the state as a number
/// array (Open WebUI's client compares it with `[0, 0]`), written straight from the bytes.
#[derive(Serialize)]
struct StateOut<'a> {
    document_id: &'a str,
    state: OutBytes,
    sessions: &'a [String],
}

impl<'a> StateOut<'a> {
    fn new(document_id: &'a str, state: Arc<Vec<u8>>, sessions: &'a [String]) -> Self {
        Self { document_id, state: OutBytes::new(state, false), sessions }
    }
}

/// `ydoc:document:update` as broadcast: `{document_id, user_id, update, socket_id}`.
#[derive(Serialize)]
struct UpdateOut<'a> {
    document_id: &'a str,
    user_id: &'a str,
    update: OutBytes,
    socket_id: &'a str,
}

/// Delivers updates no local socket sent (other instances', restores, imports) to this
/// instance's sockets in the document.
pub struct IoSink<A: Adapter>(pub SocketIo<A>);

#[async_trait::async_trait]
impl<A: Adapter> UpdateSink for IoSink<A> {
    async fn deliver(&self, doc_id: &str, origin: &Origin, update: &[u8]) {
        let message = UpdateOut {
            document_id: doc_id,
            user_id: &origin.user_id,
            update: OutBytes::new(update.to_vec(), origin.binary),
            socket_id: &origin.socket_id,
        };
        let mut target = self.0.local().to(doc_room(doc_id));
        if let Ok(sid) = origin.socket_id.parse::<Sid>() {
            target = target.except(sid);
        }
        if let Err(error) = target.emit("ydoc:document:update", &message).await {
            tracing::warn!(%error, doc_id, "delivering a remote update failed");
        }
    }
}

/// Debounced saving of a note's `{md, html, json}`: the content of the last update frame
/// wins, written 500 ms after it arrived, as Open WebUI does.
#[derive(Default)]
pub struct ContentSaver {
    /// The generation of the newest pending save per document.
    pending: Mutex<HashMap<String, u64>>,
    generations: AtomicU64,
}

impl ContentSaver {
    pub fn schedule(&self, app: &AppState, doc_id: &str, content: serde_json::Value) {
        if !content.is_object() {
            tracing::debug!(doc_id, "ignoring content that is not an object");
            return;
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(doc_id.to_string(), generation);
        let app = app.clone();
        let directory: DynDirectory = app.directory.clone();
        let doc_id = doc_id.to_string();
        let shutdown = app.shutdown.clone();
        let tasks = app.tasks.clone();
        tasks.spawn(async move {
            // On shutdown the save happens at once rather than being lost.
            tokio::select! {
                _ = tokio::time::sleep(SAVE_DEBOUNCE) => {}
                _ = shutdown.cancelled() => {}
            }
            let current = {
                let mut pending = app.saver().pending.lock().unwrap_or_else(|p| p.into_inner());
                let current = pending.get(&doc_id) == Some(&generation);
                if current {
                    pending.remove(&doc_id);
                }
                current
            };
            if current && let Err(error) = directory.save_document_content(&doc_id, &content).await {
                tracing::warn!(%error, doc_id, "saving document content failed");
            }
        });
    }
}

impl AppState {
    pub fn saver(&self) -> &ContentSaver {
        &self.content_saver
    }
}
