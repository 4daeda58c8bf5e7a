//! The Socket.IO layer: Open WebUI's event protocol on `/ws/socket.io`.
//!
//! One file per concern: [`session`] (handshake, `user-join`, `join-channels`, `heartbeat`,
//! `disconnect`) and [`docs`] (`ydoc:*`). This module owns what they share: the per-socket
//! [`Conn`] (verified identity, joined documents, event ordering), the [`Ctx`] extractor every
//! handler takes, room names, and the wire helpers.
//!
//! Events of one socket are handled in the order they arrived. socketioxide spawns a task per
//! event, so without [`Ctx::in_order`] an update sent right after a join could overtake it.

pub mod chat;
pub mod docs;
mod payload;
pub mod rooms;
pub mod session;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use serde::Serialize;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Event, SocketRef},
    handler::{FromMessageParts, Value},
    socket::Socket,
};
use tokio::sync::watch;

pub use payload::{MaybeYBytes, YBytes};

use crate::{
    auth::{Access, Identity},
    error::EventError,
};

/// Room of every socket of one user.
pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Room of a channel's members.
pub fn channel_room(channel_id: &str) -> String {
    format!("channel:{channel_id}")
}

/// Room of a collaborative document's editors (Open WebUI's `doc_{document_id}`).
pub fn doc_room(doc_id: &str) -> String {
    format!("doc_{doc_id}")
}

/// What tandem knows about one socket; lives in the socket's extensions.
#[derive(Default)]
pub struct Conn {
    identity: Mutex<Option<Identity>>,
    /// Documents this socket joined, with the access checked at join time.
    docs: Mutex<HashMap<String, Access>>,
    /// Models this socket reported `usage` of, forgotten on disconnect.
    models: Mutex<std::collections::HashSet<String>>,
    /// When this socket's heartbeat last wrote the user's `last_active_at` (epoch s).
    last_activity_write: AtomicI64,
    /// Event ordering: tickets are handed out as events arrive and served in that order.
    next_ticket: AtomicU64,
    serving: watch::Sender<u64>,
}

// The locks in `Conn` guard tiny map operations and are never held across an `.await`; a
// poisoned one can only follow a panic inside such an operation and still holds valid data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    pub fn identity(&self) -> Option<Identity> {
        lock(&self.identity).clone()
    }

    pub fn set_identity(&self, identity: Option<Identity>) -> Option<Identity> {
        std::mem::replace(&mut *lock(&self.identity), identity)
    }

    pub fn doc_access(&self, doc_id: &str) -> Option<Access> {
        lock(&self.docs).get(doc_id).copied()
    }

    pub fn add_doc(&self, doc_id: &str, access: Access) {
        lock(&self.docs).insert(doc_id.to_string(), access);
    }

    pub fn remove_doc(&self, doc_id: &str) -> bool {
        lock(&self.docs).remove(doc_id).is_some()
    }

    pub fn take_docs(&self) -> Vec<String> {
        lock(&self.docs).drain().map(|(id, _)| id).collect()
    }

    /// Whether a heartbeat at `now_secs` should record activity: at most once per
    /// `every_secs` per socket, like Open WebUI's `DATABASE_USER_ACTIVE_STATUS_UPDATE_INTERVAL`.
    pub fn activity_due(&self, now_secs: i64, every_secs: i64) -> bool {
        let last = self.last_activity_write.load(Ordering::Relaxed);
        now_secs - last >= every_secs
            && self.last_activity_write.compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    pub fn add_model(&self, model: &str) {
        lock(&self.models).insert(model.to_string());
    }

    pub fn take_models(&self) -> Vec<String> {
        lock(&self.models).drain().collect()
    }

    fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }
}

/// The socket's [`Conn`], created by the handshake middleware. A socket that somehow has none
/// gets a fresh anonymous one, which can do nothing that needs identity.
pub fn conn<A: Adapter>(s: &Socket<A>) -> Arc<Conn> {
    match s.extensions.get::<Arc<Conn>>() {
        Some(conn) => conn,
        None => {
            let conn = Arc::new(Conn::default());
            s.extensions.insert(conn.clone());
            conn
        }
    }
}

/// The context of one event: the socket, its [`Conn`], the event's name, whether the client
/// asked for an ack, and the event's place in the socket's order.
pub struct Ctx<A: Adapter> {
    pub socket: SocketRef<A>,
    pub conn: Arc<Conn>,
    pub event: String,
    ack: Option<AckSender<A>>,
    wants_ack: bool,
    ticket: Option<u64>,
}

impl<A: Adapter> FromMessageParts<A> for Ctx<A> {
    type Error = std::convert::Infallible;

    fn from_message_parts(s: &Arc<Socket<A>>, v: &mut Value, ack_id: &Option<i64>) -> Result<Self, Self::Error> {
        let conn = conn(s);
        let ticket = conn.ticket();
        let event = Event::from_message_parts(s, v, ack_id).map(|e| e.0).unwrap_or_default();
        Ok(Self {
            socket: SocketRef::from(s.clone()),
            event,
            ack: AckSender::from_message_parts(s, v, ack_id).ok(),
            wants_ack: ack_id.is_some(),
            ticket: Some(ticket),
            conn,
        })
    }
}

impl<A: Adapter> Ctx<A> {
    /// Waits until every earlier event of this socket has been handled (or released).
    pub async fn in_order(&mut self) {
        if let Some(ticket) = self.ticket {
            let mut serving = self.conn.serving.subscribe();
            // The sender lives in `conn`, which we hold, so the channel cannot close.
            let _ = serving.wait_for(|&now| now >= ticket).await;
        }
    }

    /// Lets the socket's next event start while this one finishes (e.g. waits for a commit).
    pub fn release(&mut self) {
        if self.ticket.take().is_some() {
            self.conn.serving.send_modify(|now| *now += 1);
        }
    }

    /// The verified identity, or the error every identity-requiring event answers.
    pub fn identity(&self) -> Result<Identity, EventError> {
        self.conn.identity().ok_or_else(EventError::unauthorized)
    }

    pub fn sid(&self) -> String {
        self.socket.id.to_string()
    }

    /// Acks `value` if the client asked for an ack.
    pub fn ack<T: Serialize + ?Sized>(&mut self, value: &T) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(value);
        }
    }

    /// Refuses the event: logged once, then an error ack if the client asked for one, else an
    /// `error` event `{message, code, event, document_id?}`.
    pub fn fail(&mut self, error: EventError, document_id: Option<&str>) {
        error.log(&self.event, &self.socket.id.to_string());
        if self.wants_ack {
            self.ack(&error.to_ack());
        } else {
            let _ = self.socket.emit("error", &error.to_event(&self.event, document_id));
        }
    }
}

impl<A: Adapter> Drop for Ctx<A> {
    fn drop(&mut self) {
        // Every event that asked for an ack gets one: handlers ack their own results or
        // errors; an event that succeeded with nothing to say acks `{"ok": true}`.
        if let Some(ack) = self.ack.take().filter(|_| self.wants_ack) {
            let _ = ack.send(&serde_json::json!({ "ok": true }));
        }
        let Some(ticket) = self.ticket.take() else { return };
        let conn = self.conn.clone();
        // Our turn may not have come yet (the handler returned before `in_order`, or never
        // ran): pass it on once it does, so later events are not stuck behind us.
        if *conn.serving.borrow() >= ticket {
            conn.serving.send_modify(|now| *now += 1);
        } else {
            tokio::spawn(async move {
                let mut serving = conn.serving.subscribe();
                let _ = serving.wait_for(|&now| now >= ticket).await;
                conn.serving.send_modify(|now| *now += 1);
            });
        }
    }
}

/// The namespace's connect handler. Everything happens earlier, in [`session::authenticate`]:
/// socketioxide sends the client its CONNECT packet before it spawns this handler, so an event
/// the client emits right away could otherwise arrive before any handler is registered.
pub async fn on_connect<A: Adapter>(_s: SocketRef<A>) {}

/// Registers every event handler on a new socket; called before the handshake completes.
pub(crate) fn register_handlers<A: Adapter>(s: &SocketRef<A>) {
    s.on("user-join", session::on_user_join::<A>);
    s.on("join-channels", session::on_join_channels::<A>);
    s.on("heartbeat", session::on_heartbeat::<A>);
    s.on("ydoc:document:join", docs::on_join::<A>);
    s.on("ydoc:document:state", docs::on_state::<A>);
    s.on("ydoc:document:update", docs::on_update::<A>);
    s.on("ydoc:document:leave", docs::on_leave::<A>);
    s.on("ydoc:awareness:update", docs::on_awareness::<A>);
    s.on("events:channel", chat::on_channel_event::<A>);
    s.on("join-note", chat::on_join_note::<A>);
    s.on("usage", chat::on_usage::<A>);
    s.on_disconnect(session::on_disconnect::<A>);
}
