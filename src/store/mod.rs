//! Durable storage: the `Store` trait and its SQLite (default) and Postgres implementations.
//!
//! The store owns every SQL statement in tandem. It keeps the standalone directory (users,
//! channels, memberships), the per-document record (owner, access control, saved content) and a
//! document's history: its update log (`document_updates`) and its versions
//! (`document_snapshots`). Loading a document is its newest snapshot plus the updates after it.
//!
//! Both backends share one implementation (`sql.rs`), expanded once per sqlx driver, because the
//! SQL is the same text on both; only the DDL in `migrations/<backend>` differs.

mod nodelay;
mod sql;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use serde::Serialize;

pub use sql::{PostgresStore, SqliteStore};

/// What can go wrong talking to the database. Callers map it once at their boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The shared handle every part of tandem uses.
pub type DynStore = Arc<dyn Store>;

/// Which database a store talks to; reported in logs and `tandem` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A user of the standalone directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    /// `pending`, `user` or `admin`, as in Open WebUI.
    pub role: String,
    /// Epoch seconds, as Open WebUI keeps it.
    pub last_active_at: i64,
}

/// The per-document record: who owns it, who may use it, and its last saved rendering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentRecord {
    pub id: String,
    pub owner_id: Option<String>,
    /// Open WebUI's `access_control` JSON; `None` means any signed-in user may read and write.
    pub access_control: Option<serde_json::Value>,
    pub content: Option<serde_json::Value>,
    pub last_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One row of a document's update log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    pub seq: i64,
    pub data: Vec<u8>,
}

/// Why a version exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Folded in by the server when the update tail grew or the document went idle.
    Auto,
    /// Written by `tandem compact`.
    Compact,
    /// The result of a restore.
    Restore,
    /// Asked for by an operator (`tandem snapshot`).
    Manual,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Auto => "auto",
            SnapshotKind::Compact => "compact",
            SnapshotKind::Restore => "restore",
            SnapshotKind::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => SnapshotKind::Auto,
            "compact" => SnapshotKind::Compact,
            "restore" => SnapshotKind::Restore,
            "manual" => SnapshotKind::Manual,
            _ => return None,
        })
    }
}

/// A full document state to be stored as a version.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    /// The last update seq whose effect is contained in `state`.
    pub seq: i64,
    /// The whole document as a Yjs v1 update.
    pub state: Vec<u8>,
    pub state_vector: Vec<u8>,
    pub kind: SnapshotKind,
    pub label: Option<String>,
}

/// What to drop when a version is written: the updates it contains, and all but the newest
/// `keep_versions` versions of `kinds` (never the one loading starts from).
#[derive(Debug, Clone, Copy)]
pub struct Prune<'a> {
    pub keep_versions: u32,
    pub kinds: &'a [SnapshotKind],
}

/// A stored version with its state.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: i64,
    pub seq: i64,
    pub state: Vec<u8>,
    pub created_at: i64,
}

/// A stored version without its state, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: i64,
    pub seq: i64,
    pub created_at: i64,
    pub kind: SnapshotKind,
    pub bytes: i64,
    pub label: Option<String>,
}

/// What loading a document needs: its newest version and every update after it.
#[derive(Debug, Clone, Default)]
pub struct StoredDocument {
    pub snapshot: Option<Snapshot>,
    pub updates: Vec<StoredUpdate>,
}

/// One document's share of a group commit.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    pub doc_id: String,
    /// Verified user id of each update's author, parallel to `updates`.
    pub authors: Vec<Option<String>>,
    pub updates: Vec<Vec<u8>>,
}

/// Sizes of one document, for `tandem docs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentStats {
    pub document_id: String,
    pub bytes: i64,
    pub updates: i64,
    pub updated_at: i64,
}

/// What a document's history occupies, for compaction reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    pub update_rows: i64,
    pub update_bytes: i64,
    pub version_rows: i64,
    pub version_bytes: i64,
}

impl HistoryStats {
    pub fn rows(&self) -> i64 {
        self.update_rows + self.version_rows
    }

    pub fn bytes(&self) -> i64 {
        self.update_bytes + self.version_bytes
    }
}

/// A chat message as the event emitter keeps it (Open WebUI keeps these fields on the message
/// inside the chat's JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatMessage {
    pub chat_id: String,
    pub message_id: String,
    pub content: String,
    pub status_history: Vec<serde_json::Value>,
    pub embeds: Vec<serde_json::Value>,
    pub files: Vec<serde_json::Value>,
    pub sources: Vec<serde_json::Value>,
    pub updated_at: i64,
}

/// Changes a chat message in place; returns whether anything changed (and must be written).
pub type ChatMessageEdit<'a> = &'a (dyn Fn(&mut ChatMessage) -> bool + Send + Sync);

/// A message posted to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelMessage {
    pub id: String,
    pub channel_id: String,
    pub user_id: String,
    pub content: String,
    pub created_at: i64,
}

/// A standalone channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelRecord {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub created_at: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Answers when the database does; `/readyz` uses it.
    async fn ping(&self) -> Result<()>;

    // Standalone directory: users.
    async fn upsert_user(&self, user: &UserRecord) -> Result<()>;
    async fn user(&self, id: &str) -> Result<Option<UserRecord>>;
    async fn touch_user(&self, id: &str, at_secs: i64) -> Result<()>;

    // Standalone directory: channels.
    async fn create_channel(&self, channel: &ChannelRecord, member_ids: &[String]) -> Result<()>;
    async fn add_channel_member(&self, channel_id: &str, user_id: &str) -> Result<()>;
    async fn channel(&self, id: &str) -> Result<Option<ChannelRecord>>;
    async fn channel_ids_for_user(&self, user_id: &str) -> Result<Vec<String>>;
    async fn channel_member_ids(&self, channel_id: &str) -> Result<Vec<String>>;
    async fn is_channel_member(&self, channel_id: &str, user_id: &str) -> Result<bool>;
    async fn mark_channel_read(&self, channel_id: &str, user_id: &str, at_ms: i64) -> Result<bool>;

    // Document records.
    async fn document(&self, id: &str) -> Result<Option<DocumentRecord>>;
    /// Creates the record with `owner_id` unless it exists; returns the record either way.
    async fn create_document(&self, id: &str, owner_id: Option<&str>) -> Result<DocumentRecord>;
    async fn set_access_control(&self, id: &str, access_control: Option<&serde_json::Value>) -> Result<()>;
    async fn save_content(&self, id: &str, content: &serde_json::Value) -> Result<()>;
    async fn list_documents(&self) -> Result<Vec<DocumentStats>>;

    // Document history.
    /// Appends every batch in one transaction and returns, per batch, the seq of its first
    /// update (the rest follow consecutively). Creates missing document records.
    async fn append_updates(&self, batches: &[AppendBatch]) -> Result<Vec<i64>>;
    async fn load_document(&self, id: &str) -> Result<StoredDocument>;
    async fn updates_after(&self, id: &str, seq: i64) -> Result<Vec<StoredUpdate>>;
    /// Stores a version and returns its number; with `prune`, also folds away (in the same
    /// transaction) the updates the version contains and the versions `prune` does not keep.
    async fn write_snapshot(&self, id: &str, snapshot: &NewSnapshot, prune: Option<Prune<'_>>) -> Result<i64>;
    /// Deletes updates folded into a stored version (seq <= `seq`) and all but the newest
    /// `keep_versions` versions of `kinds`; returns (updates deleted, versions deleted).
    async fn prune_history(&self, id: &str, seq: i64, keep_versions: u32, kinds: &[SnapshotKind])
    -> Result<(u64, u64)>;
    async fn versions(&self, id: &str) -> Result<Vec<VersionInfo>>;
    async fn snapshot(&self, id: &str, version: i64) -> Result<Option<Snapshot>>;
    async fn pending_update_count(&self, id: &str) -> Result<i64>;
    async fn history_stats(&self, id: &str) -> Result<HistoryStats>;

    // Chat messages (event emitter, chat streaming).
    async fn chat_message(&self, chat_id: &str, message_id: &str) -> Result<Option<ChatMessage>>;
    /// Creates the message if needed, then applies `edit` to it in one transaction, so two
    /// instances appending to one message never lose each other's text.
    async fn edit_chat_message(
        &self,
        chat_id: &str,
        message_id: &str,
        user_id: Option<&str>,
        edit: ChatMessageEdit<'_>,
    ) -> Result<ChatMessage>;

    // Channel messages.
    async fn add_channel_message(&self, message: &ChannelMessage) -> Result<()>;
    /// The newest `limit` messages, oldest first.
    async fn channel_messages(&self, channel_id: &str, limit: u32) -> Result<Vec<ChannelMessage>>;
}

/// Opens (creating if needed) the database a URL names and applies its migrations.
pub async fn open(url: &str) -> Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::InvalidUrl(format!("{url:?}: expected sqlite://path, sqlite:///absolute/path or postgres://")))
    }
}

/// Milliseconds since the Unix epoch: the unit of every tandem timestamp column.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
