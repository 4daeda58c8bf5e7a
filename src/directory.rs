//! The directory: users, roles, channels and memberships, and document access records.
//!
//! tandem talks to the directory only through the [`Directory`] trait, so an Open WebUI-backed
//! directory (reading Open WebUI's `user`, `note`, `channel` and `access_grant` tables) can
//! replace the standalone one, which keeps everything in tandem's own store.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    auth::{Access, Identity, document_access},
    store::{ChannelRecord, DynStore, StoreError, UserRecord, now_ms},
};

#[derive(Debug, thiserror::Error)]
#[error("directory: {0}")]
pub struct DirectoryError(#[from] pub StoreError);

pub type DynDirectory = Arc<dyn Directory>;

/// What to do when asked about a document nobody has created yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// Create it, owned by the asking user (joining a new document creates it).
    Create,
    /// Answer `Access::None`.
    Deny,
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, DirectoryError>;
    /// Records activity (Open WebUI's `last_active_at`, epoch seconds).
    async fn touch_active(&self, user_id: &str, at_secs: i64) -> Result<(), DirectoryError>;
    /// The channels whose rooms the user's sockets join.
    async fn channel_ids(&self, user: &Identity) -> Result<Vec<String>, DirectoryError>;
    async fn is_channel_member(&self, channel_id: &str, user: &Identity) -> Result<bool, DirectoryError>;
    /// Creates a channel with these members and returns its id.
    async fn create_channel(&self, name: &str, owner_id: &str, member_ids: &[String])
    -> Result<String, DirectoryError>;
    /// Records `last_read_at`; false when the user is not a member.
    async fn mark_channel_read(&self, channel_id: &str, user: &Identity, at_ms: i64) -> Result<bool, DirectoryError>;
    /// What `user` may do with the collaborative document `doc_id`.
    async fn document_access(
        &self,
        doc_id: &str,
        user: &Identity,
        on_missing: OnMissing,
    ) -> Result<Access, DirectoryError>;
    /// Saves a writer's `{md, html, json}` rendering of the document.
    async fn save_document_content(&self, doc_id: &str, content: &serde_json::Value) -> Result<(), DirectoryError>;
}

/// The directory kept in tandem's own tables.
#[derive(Clone)]
pub struct StandaloneDirectory {
    store: DynStore,
}

impl StandaloneDirectory {
    pub fn new(store: DynStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Directory for StandaloneDirectory {
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, DirectoryError> {
        Ok(self.store.user(id).await?)
    }

    async fn touch_active(&self, user_id: &str, at_secs: i64) -> Result<(), DirectoryError> {
        Ok(self.store.touch_user(user_id, at_secs).await?)
    }

    async fn channel_ids(&self, user: &Identity) -> Result<Vec<String>, DirectoryError> {
        Ok(self.store.channel_ids_for_user(&user.id).await?)
    }

    async fn is_channel_member(&self, channel_id: &str, user: &Identity) -> Result<bool, DirectoryError> {
        Ok(self.store.is_channel_member(channel_id, &user.id).await?)
    }

    async fn create_channel(
        &self,
        name: &str,
        owner_id: &str,
        member_ids: &[String],
    ) -> Result<String, DirectoryError> {
        let channel = ChannelRecord {
            id: uuid::Uuid::new_v4().to_string(),
            // Open WebUI lower-cases channel names.
            name: name.trim().to_lowercase(),
            owner_id: owner_id.to_string(),
            created_at: now_ms(),
        };
        self.store.create_channel(&channel, member_ids).await?;
        Ok(channel.id)
    }

    async fn mark_channel_read(&self, channel_id: &str, user: &Identity, at_ms: i64) -> Result<bool, DirectoryError> {
        Ok(self.store.mark_channel_read(channel_id, &user.id, at_ms).await?)
    }

    async fn document_access(
        &self,
        doc_id: &str,
        user: &Identity,
        on_missing: OnMissing,
    ) -> Result<Access, DirectoryError> {
        let record = match (self.store.document(doc_id).await?, on_missing) {
            (Some(record), _) => record,
            (None, OnMissing::Create) => self.store.create_document(doc_id, Some(&user.id)).await?,
            (None, OnMissing::Deny) => return Ok(Access::None),
        };
        Ok(document_access(user, record.owner_id.as_deref(), record.access_control.as_ref(), &[]))
    }

    async fn save_document_content(&self, doc_id: &str, content: &serde_json::Value) -> Result<(), DirectoryError> {
        Ok(self.store.save_content(doc_id, content).await?)
    }
}
