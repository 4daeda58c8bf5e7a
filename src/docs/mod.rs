//! The document engine: one live `yrs::Doc` per open document, owned by one task.
//!
//! Every mutation of a document goes through its task ([`doc`]): updates are validated, applied,
//! committed to the store (grouped across documents by [`commit`]) and only then acknowledged,
//! so the caller broadcasts nothing that is not durable. Updates accepted by other instances
//! arrive over the bus and are applied to the local copy, then handed to the [`UpdateSink`] so
//! local clients see them. Idle documents are folded into a snapshot and unloaded.
//!
//! The engine knows nothing of Socket.IO, SQL or Redis: it sees bytes, the `Store` and `Bus`
//! traits, and a sink.

mod commit;
pub mod content;
mod doc;
pub mod history;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    bus::{DocUpdateMessage, DynBus},
    config::Limits,
    error::ErrorCode,
    store::{DynStore, SnapshotKind},
};
use commit::Committer;
use doc::{Command, DocTask};
use history::{ImportMode, Replaced};

/// Why the engine refused or failed an operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DocError {
    #[error("invalid Yjs update: {0}")]
    InvalidUpdate(String),
    #[error("update is {size} bytes; the limit is {limit}")]
    UpdateTooLarge { size: usize, limit: usize },
    #[error("the document would grow past its {limit}-byte limit")]
    DocumentTooLarge { limit: usize },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0} not found")]
    NotFound(String),
    #[error("the document is not empty; replace its content instead")]
    NotEmpty,
    #[error("invalid content: {0}")]
    InvalidContent(String),
}

impl DocError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DocError::InvalidUpdate(_) => ErrorCode::InvalidUpdate,
            DocError::UpdateTooLarge { .. } | DocError::DocumentTooLarge { .. } => ErrorCode::TooLarge,
            DocError::Storage(_) => ErrorCode::Unavailable,
            DocError::ShuttingDown => ErrorCode::Unavailable,
            DocError::NotFound(_) => ErrorCode::NotFound,
            DocError::NotEmpty => ErrorCode::Conflict,
            DocError::InvalidContent(_) => ErrorCode::InvalidPayload,
        }
    }
}

/// Who sent an update: carried to the store (author) and to every receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Verified user id.
    pub user_id: String,
    /// The sending socket, which receivers skip.
    pub socket_id: String,
    /// Whether the sender used a binary attachment; receivers get the same form.
    pub binary: bool,
}

/// The outcome of an accepted update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Durable at this seq; broadcast it.
    Stored { seq: i64 },
    /// The document already contained all of it (an echo or a re-sent state): nothing was
    /// stored and there is nothing to broadcast.
    AlreadyKnown,
}

/// Where updates that no local socket sent go once applied: those accepted by other
/// instances, and those the server makes itself (restores, imports). The realtime layer
/// delivers them to this instance's sockets in the document.
#[async_trait::async_trait]
pub trait UpdateSink: Send + Sync + 'static {
    async fn deliver(&self, doc_id: &str, origin: &Origin, update: &[u8]);
}

/// Tuning knobs of the engine; the defaults suit production, tests shrink the timers.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub limits: Limits,
    /// Fold the update tail into a snapshot after this many updates...
    pub snapshot_every_updates: u32,
    /// ...or once the tail holds this many bytes and at least as many as the last snapshot.
    pub snapshot_min_bytes: usize,
    /// Unload a document nobody is in after this long without activity.
    pub idle_unload: Duration,
    /// Automatic versions kept per document; older ones are pruned with the updates they fold.
    pub keep_auto_versions: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            snapshot_every_updates: 500,
            snapshot_min_bytes: 1 << 20,
            idle_unload: Duration::from_secs(30),
            keep_auto_versions: 20,
        }
    }
}

/// Commands queued per document before senders wait.
const DOC_QUEUE: usize = 1024;

/// The engine handle: cheap to clone, shared by the realtime and HTTP layers.
#[derive(Clone)]
pub struct Docs {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    bus: DynBus,
    settings: EngineSettings,
    committer: Committer,
    committer_stop: CancellationToken,
    committer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Live documents. The lock guards map operations only, never an `.await`.
    live: Mutex<HashMap<String, LiveEntry>>,
    /// Tells apart successive tasks of one document.
    generations: AtomicU64,
    sink: OnceLock<Arc<dyn UpdateSink>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Docs {
    pub fn new(store: DynStore, bus: DynBus, settings: EngineSettings) -> Self {
        let tracker = TaskTracker::new();
        let committer_stop = CancellationToken::new();
        let (committer, committer_task) = Committer::spawn(store.clone(), committer_stop.clone());
        let docs = Self {
            inner: Arc::new(Inner {
                store,
                bus,
                settings,
                committer,
                committer_stop,
                committer_task: Mutex::new(Some(committer_task)),
                live: Mutex::new(HashMap::new()),
                generations: AtomicU64::new(0),
                sink: OnceLock::new(),
                tracker,
                shutdown: CancellationToken::new(),
            }),
        };
        if let Some(remote) = docs.inner.bus.take_doc_updates() {
            docs.inner.tracker.spawn(docs.clone().route_remote(remote));
        }
        docs
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Installs where updates no local socket sent are delivered; the realtime layer calls it
    /// once.
    pub fn set_sink(&self, sink: Arc<dyn UpdateSink>) {
        let _ = self.inner.sink.set(sink);
    }

    /// Adds `member` to the document (loading it if needed) and returns its full state as a
    /// Yjs v1 update (`[0, 0]` for an empty document).
    pub async fn join(&self, doc_id: &str, member: &str) -> Result<Arc<Vec<u8>>, DocError> {
        let member = member.to_string();
        self.call(doc_id, |reply| Command::Join { member: member.clone(), reply }).await
    }

    /// The document's full state, for a client that asks again.
    pub async fn state(&self, doc_id: &str) -> Result<Arc<Vec<u8>>, DocError> {
        self.call(doc_id, |reply| Command::State { reply }).await
    }

    /// Removes `member`; a document nobody is in is unloaded once idle.
    pub async fn leave(&self, doc_id: &str, member: &str) {
        let sender = self.live_sender(doc_id);
        if let Some(sender) = sender {
            let _ = sender.send(Command::Leave { member: member.to_string() }).await;
        }
    }

    /// Validates, applies and durably stores an update. Only after `Ok(Applied::Stored)` may
    /// the caller show it to anyone.
    pub async fn apply(&self, doc_id: &str, update: Vec<u8>, origin: Origin) -> Result<Applied, DocError> {
        self.submit(doc_id, update, origin).await?.outcome().await
    }

    /// Queues an update behind everything already queued for the document and returns at
    /// once; [`PendingUpdate::outcome`] waits until it is durable (or refused). Callers that
    /// must keep a client's updates in order submit them in order and await outcomes later.
    pub async fn submit(&self, doc_id: &str, update: Vec<u8>, origin: Origin) -> Result<PendingUpdate, DocError> {
        let limit = self.inner.settings.limits.max_update_bytes;
        if update.len() > limit {
            return Err(DocError::UpdateTooLarge { size: update.len(), limit });
        }
        let update = Arc::new(update);
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(DocError::ShuttingDown);
            }
            let sender = self.sender(doc_id);
            let (reply, answer) = oneshot::channel();
            let command = Command::Update { update: update.clone(), origin: origin.clone(), reply };
            if sender.send(command).await.is_err() {
                self.forget(doc_id, &sender);
                continue;
            }
            return Ok(PendingUpdate { docs: self.clone(), doc_id: doc_id.to_string(), update, origin, answer });
        }
    }

    /// Stores the live document's state as a new version (loading it if needed).
    pub async fn snapshot(&self, doc_id: &str, kind: SnapshotKind, label: Option<String>) -> Result<i64, DocError> {
        self.call(doc_id, |reply| Command::Snapshot { kind, label: label.clone(), reply }).await
    }

    /// Restores or imports through the live document: one forward update, committed, sent to
    /// every editor of the document on every instance, and recorded as a version.
    pub async fn replace(
        &self,
        doc_id: &str,
        target: Vec<u8>,
        mode: ImportMode,
        author: &str,
        label: Option<String>,
    ) -> Result<Replaced, DocError> {
        let target = Arc::new(target);
        self.call(doc_id, |reply| Command::Replace {
            target: target.clone(),
            mode,
            author: author.to_string(),
            label: label.clone(),
            reply,
        })
        .await
    }

    /// Documents currently held in memory.
    pub fn live_count(&self) -> usize {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Flushes every live document (a final snapshot where updates are pending) and waits for
    /// all engine tasks. Updates were already durable; this only saves replay work later.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        // Dropping the registry's senders lets each task drain its queue, flush and stop.
        let entries: Vec<_> = self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        drop(entries);
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        // No document task is left to send appends.
        self.inner.committer_stop.cancel();
        let task = self.inner.committer_task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Sends a command to the document's task, starting the task if the document is not live.
    /// A task that is unloading answers `Retry`, and the command goes to a fresh task.
    async fn call<T>(
        &self,
        doc_id: &str,
        make: impl Fn(oneshot::Sender<Result<T, Retry>>) -> Command,
    ) -> Result<T, DocError> {
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(DocError::ShuttingDown);
            }
            let sender = self.sender(doc_id);
            let (reply, answer) = oneshot::channel();
            if sender.send(make(reply)).await.is_err() {
                self.forget(doc_id, &sender);
                continue;
            }
            match answer.await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Retry::Error(e))) => return Err(e),
                Ok(Err(Retry::Unloading)) | Err(_) => {
                    self.forget(doc_id, &sender);
                    continue;
                }
            }
        }
    }

    fn live_sender(&self, doc_id: &str) -> Option<mpsc::Sender<Command>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).get(doc_id).map(|e| e.tx.clone())
    }

    fn sender(&self, doc_id: &str) -> mpsc::Sender<Command> {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = live.get(doc_id).filter(|e| !e.tx.is_closed()) {
            return entry.tx.clone();
        }
        let (tx, rx) = mpsc::channel(DOC_QUEUE);
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        live.insert(doc_id.to_string(), LiveEntry { generation, tx: tx.clone() });
        let task = DocTask::new(doc_id.to_string(), generation, self.clone());
        self.inner.tracker.spawn(task.run(rx));
        tx
    }

    /// Drops a registry entry if it still points at `sender`'s task.
    fn forget(&self, doc_id: &str, sender: &mpsc::Sender<Command>) {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(doc_id).is_some_and(|e| e.tx.same_channel(sender)) {
            live.remove(doc_id);
        }
    }

    /// Called by a document task that wants to unload: succeeds only if nothing is queued, in
    /// which case its registry entry is gone and no new command can reach it.
    fn try_retire(&self, doc_id: &str, generation: u64, rx: &mpsc::Receiver<Command>) -> bool {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if !rx.is_empty() {
            return false;
        }
        if live.get(doc_id).is_some_and(|e| e.generation == generation) {
            live.remove(doc_id);
        }
        true
    }

    /// Routes updates from other instances to the live copies here; documents not live here
    /// will load them from the store when they are opened.
    async fn route_remote(self, mut remote: crate::bus::DocUpdateReceiver) {
        loop {
            let message = tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                m = remote.recv() => match m { Some(m) => m, None => break },
            };
            if let Some(sender) = self.live_sender(&message.doc_id) {
                let _ = sender.send(Command::Remote(message)).await;
            }
        }
    }

    async fn deliver_remote(&self, doc_id: &str, message: &DocUpdateMessage) {
        if let Some(sink) = self.inner.sink.get() {
            let origin = Origin {
                user_id: message.user_id.clone(),
                socket_id: message.socket_id.clone(),
                binary: message.binary,
            };
            sink.deliver(doc_id, &origin, &message.update).await;
        }
    }
}

/// An update queued with [`Docs::submit`].
pub struct PendingUpdate {
    docs: Docs,
    doc_id: String,
    update: Arc<Vec<u8>>,
    origin: Origin,
    answer: oneshot::Receiver<Result<Applied, Retry>>,
}

impl PendingUpdate {
    /// The submitted bytes, shared with the engine rather than copied.
    pub fn update(&self) -> Arc<Vec<u8>> {
        self.update.clone()
    }

    pub async fn outcome(self) -> Result<Applied, DocError> {
        match self.answer.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(Retry::Error(e))) => Err(e),
            // The document was unloading (it had no members, so ordering cannot matter).
            Ok(Err(Retry::Unloading)) | Err(_) => {
                let update = Arc::unwrap_or_clone(self.update);
                self.docs
                    .call(&self.doc_id, |reply| Command::Update {
                        update: Arc::new(update.clone()),
                        origin: self.origin.clone(),
                        reply,
                    })
                    .await
            }
        }
    }
}

/// A document task's refusal to handle a command itself.
pub(crate) enum Retry {
    /// The task is unloading; send the command to a fresh one.
    Unloading,
    /// A real answer.
    Error(DocError),
}

impl From<DocError> for Retry {
    fn from(e: DocError) -> Self {
        Retry::Error(e)
    }
}

struct LiveEntry {
    generation: u64,
    tx: mpsc::Sender<Command>,
}
