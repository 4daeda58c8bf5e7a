//! One live document and the task that owns it.
//!
//! The task is the only code that touches its `yrs::Doc` (architecture invariant 1). It handles
//! commands one at a time; a run of queued updates is validated and applied together and
//! committed as one append, and nothing else (a join, a state request) is answered until that
//! append is durable, so no one can observe state that a crash could lose.

use std::{
    collections::{BTreeSet, HashSet},
    panic::AssertUnwindSafe,
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use yrs::{
    Doc, ReadTxn, StateVector, Transact, Update, WriteTxn,
    updates::{decoder::Decode, encoder::Encode},
};

use super::{
    Applied, DocError, Docs, Origin, Retry, content,
    history::{self, ImportMode, Replaced},
};
use crate::{
    bus::DocUpdateMessage,
    store::{AppendBatch, NewSnapshot, Prune, SnapshotKind, StoredDocument},
};

/// Most updates folded into one append.
const MAX_BATCH: usize = 256;
/// How long a hole in the seqs received from other instances may last before the task reads
/// the missing updates from the store.
const GAP_GRACE: Duration = Duration::from_millis(500);

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Retry>>;

pub(crate) enum Command {
    Join {
        member: String,
        reply: Reply<Arc<Vec<u8>>>,
    },
    State {
        reply: Reply<Arc<Vec<u8>>>,
    },
    Leave {
        member: String,
    },
    Update {
        update: Arc<Vec<u8>>,
        origin: Origin,
        reply: Reply<Applied>,
    },
    /// An update another instance accepted (already durable).
    Remote(DocUpdateMessage),
    Snapshot {
        kind: SnapshotKind,
        label: Option<String>,
        reply: Reply<i64>,
    },
    /// Restore or import: make the content equal to `target` (a full state).
    Replace {
        target: Arc<Vec<u8>>,
        mode: ImportMode,
        author: String,
        label: Option<String>,
        reply: Reply<Replaced>,
    },
}

pub(crate) struct DocTask {
    id: String,
    generation: u64,
    engine: Docs,
}

/// The loaded document and its bookkeeping.
struct Live {
    doc: Doc,
    /// Every update with seq <= watermark is applied; snapshots are taken at the watermark.
    watermark: i64,
    /// Seqs above the watermark already applied (updates from other instances can arrive out
    /// of order, and our own appends can land after someone else's).
    applied_above: BTreeSet<i64>,
    /// When the oldest unfilled hole above the watermark appeared.
    gap_since: Option<Instant>,
    /// This document's update-count trigger: the configured one, jittered per document so that
    /// documents edited at the same pace do not all write their snapshots at the same moment.
    snapshot_every: u32,
    /// Updates and bytes since the last snapshot.
    tail_updates: u32,
    tail_bytes: usize,
    /// Size of the last snapshot (or load), the yardstick for the byte trigger.
    snapshot_bytes: usize,
    /// Upper bound of the encoded document size, checked against the document limit.
    approx_bytes: usize,
    /// The encoded full state, reused until the next change.
    cached_state: Option<Arc<Vec<u8>>>,
    members: HashSet<String>,
    last_activity: Instant,
}

impl DocTask {
    pub(crate) fn new(id: String, generation: u64, engine: Docs) -> Self {
        Self { id, generation, engine }
    }

    #[tracing::instrument(name = "doc", skip_all, fields(doc_id = %self.id))]
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<Command>) {
        let mut live = match self.load().await {
            Ok(live) => live,
            Err(error) => {
                tracing::error!(%error, "loading the document failed");
                self.retire_with(&mut rx, Retry::Error(error)).await;
                return;
            }
        };
        let shutdown = self.engine.inner.shutdown.clone();
        let mut deferred: Option<Command> = None;
        loop {
            let command = match deferred.take() {
                Some(command) => command,
                None => {
                    let idle_at = live.last_activity + self.engine.inner.settings.idle_unload;
                    let gap_at = live.gap_since.map(|since| since + GAP_GRACE);
                    tokio::select! {
                        command = rx.recv() => match command {
                            Some(command) => command,
                            // Every sender is gone: the engine is shutting down.
                            None => break,
                        },
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(idle_at), if live.members.is_empty() => {
                            if self.engine.try_retire(&self.id, self.generation, &rx) {
                                self.flush(&mut live).await;
                                self.retire_with(&mut rx, Retry::Unloading).await;
                                tracing::debug!("unloaded idle document");
                                return;
                            }
                            continue;
                        }
                        _ = sleep_until_opt(gap_at) => {
                            self.fill_gap(&mut live).await;
                            continue;
                        }
                    }
                }
            };
            // Other instances' traffic does not keep a document nobody here uses in memory.
            if !matches!(command, Command::Remote(_)) {
                live.last_activity = Instant::now();
            }
            match command {
                Command::Join { member, reply } => {
                    live.members.insert(member);
                    let _ = reply.send(Ok(live.state()));
                }
                Command::State { reply } => {
                    let _ = reply.send(Ok(live.state()));
                }
                Command::Leave { member } => {
                    live.members.remove(&member);
                }
                Command::Remote(message) => self.apply_remote(&mut live, message).await,
                Command::Snapshot { kind, label, reply } => {
                    let _ = reply.send(self.snapshot_now(&mut live, kind, label).await.map_err(Retry::from));
                }
                Command::Replace { target, mode, author, label, reply } => {
                    let result = self.replace(&mut live, &target, mode, &author, label).await;
                    let healthy = match &result {
                        Err(error @ DocError::Storage(_)) => self.recover(&mut live, error).await,
                        _ => true,
                    };
                    let _ = reply.send(result.map_err(Retry::from));
                    if !healthy {
                        self.engine.try_retire(&self.id, self.generation, &rx);
                        self.retire_with(&mut rx, Retry::Unloading).await;
                        return;
                    }
                }
                Command::Update { update, origin, reply } => {
                    let mut batch = vec![(update, origin, reply)];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Command::Update { update, origin, reply }) => batch.push((update, origin, reply)),
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(error) = self.apply_batch(&mut live, batch).await
                        && !self.recover(&mut live, &error).await
                    {
                        self.engine.try_retire(&self.id, self.generation, &rx);
                        self.retire_with(&mut rx, Retry::Unloading).await;
                        return;
                    }
                    self.maybe_snapshot(&mut live);
                }
            }
        }
        // Shutdown: answer what is queued, then save replay work for the next start.
        self.flush(&mut live).await;
        self.retire_with(&mut rx, Retry::Error(DocError::ShuttingDown)).await;
    }

    /// After a failed commit (or a partly applied update) the in-memory document may hold
    /// changes the store does not: rebuild it from the store. False if even that failed, and
    /// the task must stop.
    async fn recover(&self, live: &mut Live, cause: &DocError) -> bool {
        tracing::error!(error = %cause, "reloading the document from the store");
        match self.load().await {
            Ok(mut fresh) => {
                fresh.members = std::mem::take(&mut live.members);
                *live = fresh;
                true
            }
            Err(error) => {
                tracing::error!(%error, "reloading failed; unloading the document");
                false
            }
        }
    }

    async fn load(&self) -> Result<Live, DocError> {
        let started = std::time::Instant::now();
        let stored =
            self.engine.inner.store.load_document(&self.id).await.map_err(|e| DocError::Storage(e.to_string()))?;
        let StoredDocument { snapshot, updates } = stored;
        let doc = Doc::new();
        let mut watermark = snapshot.as_ref().map_or(0, |s| s.seq);
        let mut bytes = snapshot.as_ref().map_or(0, |s| s.state.len());
        let snapshot_bytes = bytes;
        {
            let mut txn = doc.transact_mut();
            let stored_updates =
                snapshot.iter().map(|s| (s.seq, &s.state)).chain(updates.iter().map(|u| (u.seq, &u.data)));
            for (seq, data) in stored_updates {
                // Stored updates were validated when accepted; one that no longer decodes
                // (a hand-edited row) is skipped rather than making the document unloadable.
                match Update::decode_v1(data) {
                    Ok(update) => {
                        if let Err(error) = txn.apply_update(update) {
                            tracing::error!(seq, %error, "stored update does not apply; skipped");
                        }
                    }
                    Err(error) => tracing::error!(seq, %error, "stored update does not decode; skipped"),
                }
                watermark = watermark.max(seq);
            }
            bytes += updates.iter().map(|u| u.data.len()).sum::<usize>();
        }
        tracing::debug!(
            snapshot = snapshot.as_ref().map(|s| s.version),
            updates = updates.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "loaded"
        );
        Ok(Live {
            doc,
            watermark,
            applied_above: BTreeSet::new(),
            gap_since: None,
            snapshot_every: jittered(self.engine.inner.settings.snapshot_every_updates),
            tail_updates: updates.len() as u32,
            tail_bytes: updates.iter().map(|u| u.data.len()).sum(),
            snapshot_bytes,
            approx_bytes: bytes,
            cached_state: None,
            members: HashSet::new(),
            last_activity: Instant::now(),
        })
    }

    /// Validates and applies a run of updates, commits the accepted ones as one append, and
    /// answers every sender. An error means the in-memory document may now hold updates that
    /// are not durable, so the caller must reload it.
    async fn apply_batch(
        &self,
        live: &mut Live,
        batch: Vec<(Arc<Vec<u8>>, Origin, Reply<Applied>)>,
    ) -> Result<(), DocError> {
        let limits = self.engine.inner.settings.limits;
        let mut accepted = Vec::with_capacity(batch.len());
        let mut needs_reload = false;
        for (update, origin, reply) in batch {
            if live.approx_bytes + update.len() > limits.max_document_bytes {
                // The estimate over-counts; measure before refusing.
                live.approx_bytes = live.state().len();
                if live.approx_bytes + update.len() > limits.max_document_bytes {
                    let _ = reply.send(Err(DocError::DocumentTooLarge { limit: limits.max_document_bytes }.into()));
                    continue;
                }
            }
            match live.validate_and_apply(&update) {
                Ok(Change::Changed) => {
                    // Counted now, so later updates of this batch are checked against it.
                    live.approx_bytes += update.len();
                    accepted.push((update, origin, reply));
                }
                Ok(Change::Nothing) => {
                    let _ = reply.send(Ok(Applied::AlreadyKnown));
                }
                Err(Rejection { error, partially_applied }) => {
                    needs_reload |= partially_applied;
                    let _ = reply.send(Err(error.into()));
                }
            }
        }
        if accepted.is_empty() {
            return if needs_reload { Err(DocError::InvalidUpdate("partially applied".into())) } else { Ok(()) };
        }
        live.cached_state = None;
        let append = AppendBatch {
            doc_id: self.id.clone(),
            authors: accepted.iter().map(|(_, o, _)| Some(o.user_id.clone())).collect(),
            updates: accepted.iter().map(|(u, _, _)| u.as_ref().clone()).collect(),
        };
        let first = match self.engine.inner.committer.append(append).await {
            Ok(first) => first,
            Err(message) => {
                let error = DocError::Storage(message);
                for (_, _, reply) in accepted {
                    let _ = reply.send(Err(error.clone().into()));
                }
                return Err(error);
            }
        };
        let bus = &self.engine.inner.bus;
        for (k, (update, origin, reply)) in accepted.into_iter().enumerate() {
            let seq = first + k as i64;
            live.record_seq(seq);
            live.tail_updates += 1;
            live.tail_bytes += update.len();
            let message = DocUpdateMessage {
                instance: bus.instance_id().to_string(),
                doc_id: self.id.clone(),
                seq,
                user_id: origin.user_id.clone(),
                socket_id: origin.socket_id.clone(),
                binary: origin.binary,
                update: update.as_ref().clone(),
            };
            if let Err(error) = bus.publish_doc_update(&message).await {
                // Durable already; other instances catch up from the store.
                tracing::warn!(%error, seq, "publishing to the bus failed");
            }
            let _ = reply.send(Ok(Applied::Stored { seq }));
        }
        if needs_reload { Err(DocError::InvalidUpdate("partially applied".into())) } else { Ok(()) }
    }

    async fn apply_remote(&self, live: &mut Live, message: DocUpdateMessage) {
        if message.seq <= live.watermark || live.applied_above.contains(&message.seq) {
            return;
        }
        self.integrate_remote(live, message).await;
    }

    /// Applies a durable update from elsewhere and passes it on to local clients.
    async fn integrate_remote(&self, live: &mut Live, message: DocUpdateMessage) {
        match Update::decode_v1(&message.update) {
            Ok(update) => {
                let mut txn = live.doc.transact_mut();
                if let Err(error) = txn.apply_update(update) {
                    tracing::warn!(%error, seq = message.seq, "remote update does not apply");
                }
            }
            Err(error) => tracing::warn!(%error, seq = message.seq, "remote update does not decode"),
        }
        live.cached_state = None;
        live.record_seq(message.seq);
        live.tail_updates += 1;
        live.tail_bytes += message.update.len();
        live.approx_bytes += message.update.len();
        self.engine.deliver_remote(&self.id, &message).await;
    }

    /// Reads updates that other instances committed but whose bus messages never came. If
    /// another instance already folded them into a snapshot (and pruned them), the snapshot
    /// itself is applied: Yjs merges are idempotent, so re-applying known content is harmless.
    async fn fill_gap(&self, live: &mut Live) {
        let stored = match self.engine.inner.store.load_document(&self.id).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "reading missing updates failed; retrying");
                live.gap_since = Some(Instant::now());
                return;
            }
        };
        let blank = |seq: i64, update: Vec<u8>| DocUpdateMessage {
            instance: String::new(),
            doc_id: self.id.clone(),
            seq,
            user_id: String::new(),
            socket_id: String::new(),
            binary: false,
            update,
        };
        if let Some(snapshot) = stored.snapshot.filter(|s| s.seq > live.watermark) {
            let seq = snapshot.seq;
            self.integrate_remote(live, blank(seq, snapshot.state)).await;
            // The snapshot covers every seq up to its own.
            live.watermark = live.watermark.max(seq);
            live.applied_above.retain(|&s| s > seq);
            live.record_seq(seq);
        }
        for update in stored.updates {
            self.apply_remote(live, blank(update.seq, update.data)).await;
        }
        live.gap_since = if live.applied_above.is_empty() { None } else { Some(Instant::now()) };
    }

    /// Writes the document's state as a version now, at the watermark.
    async fn snapshot_now(&self, live: &mut Live, kind: SnapshotKind, label: Option<String>) -> Result<i64, DocError> {
        let snapshot = {
            let txn = live.doc.transact();
            NewSnapshot {
                seq: live.watermark,
                state: txn.encode_state_as_update_v1(&StateVector::default()),
                state_vector: txn.state_vector().encode_v1(),
                kind,
                label,
            }
        };
        let version = self
            .engine
            .inner
            .store
            .write_snapshot(&self.id, &snapshot, None)
            .await
            .map_err(|e| DocError::Storage(e.to_string()))?;
        live.snapshot_bytes = snapshot.state.len();
        live.approx_bytes = snapshot.state.len();
        live.tail_updates = 0;
        live.tail_bytes = 0;
        Ok(version)
    }

    /// Restore or import: one forward update that makes the content equal to `target`,
    /// committed like any update, published, delivered to this instance's sockets, and recorded
    /// as a version. A `Storage` error means the live document may be ahead of the store.
    async fn replace(
        &self,
        live: &mut Live,
        target: &[u8],
        mode: ImportMode,
        author: &str,
        label: Option<String>,
    ) -> Result<Replaced, DocError> {
        let target = content::doc_from_state(target).map_err(|e| DocError::InvalidContent(e.to_string()))?;
        let update = history::change_to(&live.doc, &target, mode)?;
        live.cached_state = None;
        let append = AppendBatch {
            doc_id: self.id.clone(),
            authors: vec![Some(author.to_string())],
            updates: vec![update.clone()],
        };
        let seq = self.engine.inner.committer.append(append).await.map_err(DocError::Storage)?;
        live.record_seq(seq);
        let bus = &self.engine.inner.bus;
        let message = DocUpdateMessage {
            instance: bus.instance_id().to_string(),
            doc_id: self.id.clone(),
            seq,
            user_id: author.to_string(),
            socket_id: String::new(),
            binary: false,
            update,
        };
        if let Err(error) = bus.publish_doc_update(&message).await {
            tracing::warn!(%error, seq, "publishing to the bus failed");
        }
        self.engine.deliver_remote(&self.id, &message).await;
        let kind = match mode {
            ImportMode::IntoEmpty => SnapshotKind::Manual,
            ImportMode::Replace => SnapshotKind::Restore,
        };
        // The update is durable; failing to record the version only loses the bookmark.
        let version = self.snapshot_now(live, kind, label).await?;
        Ok(Replaced { seq, version })
    }

    /// Folds the update tail into a new automatic version when it has grown enough.
    fn maybe_snapshot(&self, live: &mut Live) {
        let settings = &self.engine.inner.settings;
        let by_count = live.tail_updates >= live.snapshot_every;
        let by_bytes = live.tail_bytes >= settings.snapshot_min_bytes.max(live.snapshot_bytes);
        if by_count || by_bytes {
            self.spawn_snapshot(live);
        }
    }

    fn spawn_snapshot(&self, live: &mut Live) -> Option<tokio::task::JoinHandle<()>> {
        if live.tail_updates == 0 {
            return None;
        }
        let (state, state_vector) = {
            let txn = live.doc.transact();
            (txn.encode_state_as_update_v1(&StateVector::default()), txn.state_vector().encode_v1())
        };
        live.snapshot_bytes = state.len();
        live.approx_bytes = state.len();
        live.tail_updates = 0;
        live.tail_bytes = 0;
        let snapshot = NewSnapshot { seq: live.watermark, state, state_vector, kind: SnapshotKind::Auto, label: None };
        let store = self.engine.inner.store.clone();
        let keep = self.engine.inner.settings.keep_auto_versions;
        let id = self.id.clone();
        Some(self.engine.inner.tracker.spawn(async move {
            // One transaction (one fsync) writes the version and folds away what it contains.
            let prune = Prune { keep_versions: keep, kinds: &[SnapshotKind::Auto] };
            match store.write_snapshot(&id, &snapshot, Some(prune)).await {
                Ok(version) => tracing::debug!(doc_id = %id, version, seq = snapshot.seq, "snapshot written"),
                // The updates are still stored; the next snapshot will fold them.
                Err(error) => tracing::warn!(%error, doc_id = %id, "writing a snapshot failed"),
            }
        }))
    }

    /// Writes a final snapshot if updates are pending, and waits for it.
    async fn flush(&self, live: &mut Live) {
        if let Some(handle) = self.spawn_snapshot(live) {
            let _ = handle.await;
        }
    }

    /// Stops taking commands and answers everything still queued.
    async fn retire_with(&self, rx: &mut mpsc::Receiver<Command>, answer: Retry) {
        rx.close();
        while let Some(command) = rx.recv().await {
            let answer = match &answer {
                Retry::Unloading => Retry::Unloading,
                Retry::Error(e) => Retry::Error(e.clone()),
            };
            match command {
                Command::Join { reply, .. } | Command::State { reply } => {
                    let _ = reply.send(Err(answer));
                }
                Command::Update { reply, .. } => {
                    let _ = reply.send(Err(answer));
                }
                Command::Snapshot { reply, .. } => {
                    let _ = reply.send(Err(answer));
                }
                Command::Replace { reply, .. } => {
                    let _ = reply.send(Err(answer));
                }
                Command::Leave { .. } | Command::Remote(_) => {}
            }
        }
    }
}

/// `every` ± 25 %, at least 1.
fn jittered(every: u32) -> u32 {
    ((every as f64) * rand::random_range(0.75..1.25)).round().max(1.0) as u32
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

enum Change {
    Changed,
    Nothing,
}

struct Rejection {
    error: DocError,
    /// Part of the update was integrated before the problem showed; the in-memory document no
    /// longer matches the store and must be reloaded.
    partially_applied: bool,
}

impl Rejection {
    fn clean(message: impl Into<String>) -> Self {
        Self { error: DocError::InvalidUpdate(message.into()), partially_applied: false }
    }
}

impl Live {
    fn state(&mut self) -> Arc<Vec<u8>> {
        if let Some(state) = &self.cached_state {
            return state.clone();
        }
        let state = Arc::new(self.doc.transact().encode_state_as_update_v1(&StateVector::default()));
        self.cached_state = Some(state.clone());
        state
    }

    fn record_seq(&mut self, seq: i64) {
        if seq <= self.watermark {
            return;
        }
        self.applied_above.insert(seq);
        while self.applied_above.first() == Some(&(self.watermark + 1)) {
            self.applied_above.pop_first();
            self.watermark += 1;
        }
        self.gap_since = if self.applied_above.is_empty() { None } else { self.gap_since.or(Some(Instant::now())) };
    }

    /// Decodes an update, checks that everything it builds on is already in the document, and
    /// applies it. Garbage that happens to decode (STACK.md: `[0,1,2,…]` does) would otherwise
    /// sit in the document as a pending update and poison later ones.
    fn validate_and_apply(&mut self, bytes: &[u8]) -> Result<Change, Rejection> {
        let update = Update::decode_v1(bytes).map_err(|e| Rejection::clean(e.to_string()))?;
        let mut txn = self.doc.try_transact_mut().map_err(|_| Rejection::clean("document busy"))?;
        let known = txn.state_vector();
        let lower = update.state_vector_lower();
        for (client, clock) in lower.iter() {
            if *clock > known.get(client) {
                return Err(Rejection::clean(
                    "update builds on changes this document does not have; send your full state after rejoining",
                ));
            }
        }
        // Every deleted id must be one the document has or one this update inserts. (Not
        // `Update::state_vector`: it ignores a client whose blocks do not start at clock 0,
        // which is every client of a diff.)
        let mut uncovered = update.delete_set().clone();
        if !uncovered.is_empty() {
            let mut have = yrs::IdSet::new();
            for (client, clock) in known.iter() {
                have.insert(yrs::ID::new(*client, 0), *clock);
            }
            uncovered.diff_with(&have);
            uncovered.diff_with(&update.insertions(true));
            if uncovered.iter().any(|(_, ranges)| !ranges.is_empty()) {
                return Err(Rejection::clean("update deletes content this document does not have"));
            }
        }
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| txn.apply_update(update)));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Rejection { error: DocError::InvalidUpdate(e.to_string()), partially_applied: true });
            }
            Err(_) => {
                return Err(Rejection {
                    error: DocError::InvalidUpdate("update could not be applied".into()),
                    partially_applied: true,
                });
            }
        }
        if txn.has_missing_updates() {
            txn.prune_pending();
            return Err(Rejection {
                error: DocError::InvalidUpdate("update refers to content this document does not have".into()),
                partially_applied: true,
            });
        }
        if txn.before_state() == txn.after_state() && txn.delete_set().is_empty() {
            return Ok(Change::Nothing);
        }
        Ok(Change::Changed)
    }
}
