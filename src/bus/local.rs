//! The single-instance bus: everything in this process's memory.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use async_trait::async_trait;

use super::{Bus, DocUpdateMessage, DocUpdateReceiver, Result, SessionEntry, UsagePool};

#[derive(Default)]
pub struct LocalBus {
    instance: String,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    doc_sessions: Mutex<HashMap<String, BTreeSet<String>>>,
    usage: Mutex<UsagePool>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self { instance: uuid::Uuid::new_v4().to_string(), ..Default::default() }
    }
}

// Locks here guard plain map operations and are never held across an `.await`; a poisoned
// lock can only follow a panic inside one of these few lines, so its data is still consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Bus for LocalBus {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn instance_id(&self) -> &str {
        &self.instance
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn put_session(&self, sid: &str, entry: &SessionEntry) -> Result<()> {
        lock(&self.sessions).insert(sid.to_string(), entry.clone());
        Ok(())
    }

    async fn remove_session(&self, sid: &str) -> Result<()> {
        lock(&self.sessions).remove(sid);
        Ok(())
    }

    async fn session(&self, sid: &str) -> Result<Option<SessionEntry>> {
        Ok(lock(&self.sessions).get(sid).cloned())
    }

    async fn sessions(&self) -> Result<Vec<(String, SessionEntry)>> {
        Ok(lock(&self.sessions).iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn add_doc_session(&self, doc_id: &str, sid: &str) -> Result<()> {
        lock(&self.doc_sessions).entry(doc_id.to_string()).or_default().insert(sid.to_string());
        Ok(())
    }

    async fn remove_doc_session(&self, doc_id: &str, sid: &str) -> Result<()> {
        let mut docs = lock(&self.doc_sessions);
        if let Some(set) = docs.get_mut(doc_id) {
            set.remove(sid);
            if set.is_empty() {
                docs.remove(doc_id);
            }
        }
        Ok(())
    }

    async fn doc_sessions(&self, doc_id: &str) -> Result<Vec<String>> {
        Ok(lock(&self.doc_sessions).get(doc_id).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    async fn publish_doc_update(&self, _message: &DocUpdateMessage) -> Result<()> {
        // A single instance has already applied the update to its only live copy.
        Ok(())
    }

    fn take_doc_updates(&self) -> Option<DocUpdateReceiver> {
        None
    }

    async fn touch_usage(&self, model: &str, sid: &str, now_secs: i64) -> Result<()> {
        lock(&self.usage).entry(model.to_string()).or_default().insert(sid.to_string(), now_secs);
        Ok(())
    }

    async fn remove_usage(&self, sid: &str, models: &[String]) -> Result<()> {
        let mut usage = lock(&self.usage);
        for model in models {
            if let Some(sessions) = usage.get_mut(model) {
                sessions.remove(sid);
                if sessions.is_empty() {
                    usage.remove(model);
                }
            }
        }
        Ok(())
    }

    async fn usage(&self) -> Result<UsagePool> {
        Ok(lock(&self.usage).clone())
    }

    async fn sweep_usage(&self, cutoff_secs: i64) -> Result<()> {
        let mut usage = lock(&self.usage);
        usage.retain(|_, sessions| {
            sessions.retain(|_, at| *at >= cutoff_secs);
            !sessions.is_empty()
        });
        Ok(())
    }

    async fn try_lock(&self, _name: &str, _ttl: std::time::Duration) -> Result<bool> {
        // The only instance is always the leader.
        Ok(true)
    }

    async fn release_lock(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    async fn shutdown(&self) {}
}
