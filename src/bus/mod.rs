//! The cluster bus: what instances of tandem share. The `local` implementation keeps it in
//! memory for a single instance; the `redis` one keeps it in Redis under Open WebUI's key names
//! (`{prefix}:session_pool`, `{prefix}:usage_pool`, `{prefix}:ydoc:documents:{D}:users`, ...)
//! and carries document updates between instances, so that every instance holding a document
//! live applies every update accepted anywhere.
//!
//! The bus never decides anything: the document engine and the realtime layer call it.

mod local;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::{
    local::LocalBus,
    redis::{RedisBus, builder as redis_builder},
};
use crate::auth::Identity;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("malformed bus message: {0}")]
    Malformed(String),
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;
pub type DynBus = Arc<dyn Bus>;

/// A socket's entry in the session pool (Open WebUI's `SESSION_POOL`), minus the personal data
/// Open WebUI copies there (weakness 22).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Epoch seconds of the last heartbeat.
    pub last_seen_at: i64,
    /// The instance holding the socket; entries of dead instances are ignored.
    pub instance: String,
}

impl SessionEntry {
    pub fn new(user: &Identity, instance: &str, now_secs: i64) -> Self {
        Self {
            id: user.id.clone(),
            name: user.name.clone(),
            role: user.role.as_str().to_string(),
            last_seen_at: now_secs,
            instance: instance.to_string(),
        }
    }
}

/// An accepted, durable document update travelling to the other instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocUpdateMessage {
    /// The instance that accepted it; it ignores its own messages.
    pub instance: String,
    pub doc_id: String,
    /// Its seq in the store's update log.
    pub seq: i64,
    pub user_id: String,
    pub socket_id: String,
    /// Whether the sender used a binary attachment, so receivers echo the same form.
    pub binary: bool,
    #[serde(skip)]
    pub update: Vec<u8>,
}

impl DocUpdateMessage {
    /// `[header length: u32 BE][JSON header][raw update]`: the update stays binary on the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        let header = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(4 + header.len() + self.update.len());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.update);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let malformed = |what: &str| BusError::Malformed(what.to_string());
        let len_bytes: [u8; 4] =
            bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| malformed("short header"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let header = bytes.get(4..4 + len).ok_or_else(|| malformed("truncated header"))?;
        let mut message: DocUpdateMessage =
            serde_json::from_slice(header).map_err(|e| BusError::Malformed(e.to_string()))?;
        message.update = bytes[4 + len..].to_vec();
        Ok(message)
    }
}

/// Where cross-instance document updates arrive.
pub type DocUpdateReceiver = mpsc::Receiver<DocUpdateMessage>;

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// `local` or `redis`, for logs.
    fn kind(&self) -> &'static str;
    /// This instance's id: unique per process.
    fn instance_id(&self) -> &str;
    async fn ping(&self) -> Result<()>;

    // The session pool: every authenticated socket of the cluster.
    async fn put_session(&self, sid: &str, entry: &SessionEntry) -> Result<()>;
    async fn remove_session(&self, sid: &str) -> Result<()>;
    async fn session(&self, sid: &str) -> Result<Option<SessionEntry>>;
    /// Live sessions only: entries of instances that stopped heartbeating are left out.
    async fn sessions(&self) -> Result<Vec<(String, SessionEntry)>>;

    // Per-document session sets, cluster-wide.
    async fn add_doc_session(&self, doc_id: &str, sid: &str) -> Result<()>;
    async fn remove_doc_session(&self, doc_id: &str, sid: &str) -> Result<()>;
    /// Live sessions in the document, across instances.
    async fn doc_sessions(&self, doc_id: &str) -> Result<Vec<String>>;

    // Document fan-out between instances.
    async fn publish_doc_update(&self, message: &DocUpdateMessage) -> Result<()>;
    /// The stream of other instances' updates; taken once, by the document engine.
    fn take_doc_updates(&self) -> Option<DocUpdateReceiver>;

    // Model usage (Open WebUI's `usage_pool`): model → {sid: {"updated_at": epoch s}}.
    async fn touch_usage(&self, model: &str, sid: &str, now_secs: i64) -> Result<()>;
    /// Forgets a session's usage of these models (on disconnect).
    async fn remove_usage(&self, sid: &str, models: &[String]) -> Result<()>;
    /// The whole pool: model → sid → last use (epoch s).
    async fn usage(&self) -> Result<UsagePool>;
    /// Drops entries last used before `cutoff_secs`, and models left without entries.
    async fn sweep_usage(&self, cutoff_secs: i64) -> Result<()>;

    /// Takes (or, if this instance holds it, renews) a named lock for `ttl`. Only the holder
    /// can renew or release it.
    async fn try_lock(&self, name: &str, ttl: std::time::Duration) -> Result<bool>;
    async fn release_lock(&self, name: &str) -> Result<()>;

    /// Stops background work (heartbeats, subscriptions) and forgets this instance's sessions.
    async fn shutdown(&self);
}

/// model → sid → last use (epoch seconds).
pub type UsagePool = std::collections::HashMap<String, std::collections::HashMap<String, i64>>;

/// Redis key for a document; Open WebUI replaces `:` by `_` in document ids.
pub fn doc_key_part(doc_id: &str) -> String {
    doc_id.replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_update_message_roundtrip() {
        let message = DocUpdateMessage {
            instance: "i1".into(),
            doc_id: "note:1".into(),
            seq: 7,
            user_id: "u".into(),
            socket_id: "s".into(),
            binary: true,
            update: vec![1, 2, 3, 0, 255],
        };
        assert_eq!(DocUpdateMessage::decode(&message.encode()).unwrap(), message);
        assert!(DocUpdateMessage::decode(&[0, 0, 0, 9, 1]).is_err());
        assert!(DocUpdateMessage::decode(&[]).is_err());
    }
}
