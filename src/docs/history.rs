//! A document's history on the store: versions, snapshots, compaction, and restore or import
//! for a document no server holds live.
//!
//! Everything here is safe while a server runs on the same database: it reads a consistent
//! snapshot, and writes only new rows (an update, a version) or deletes rows a stored version
//! already contains. A server holding the document live picks up an update written here as
//! soon as it notices the gap in seqs; to make connected clients see a restore at once, go
//! through the server (`Docs::replace`).

use serde::Serialize;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update, updates::decoder::Decode, updates::encoder::Encode};

use super::{
    DocError,
    content::{self, replace_content},
};
use crate::store::{AppendBatch, NewSnapshot, Prune, Snapshot, SnapshotKind, Store, StoreError, VersionInfo};

fn storage(e: StoreError) -> DocError {
    match e {
        StoreError::NotFound(what) => DocError::NotFound(what),
        other => DocError::Storage(other.to_string()),
    }
}

/// A document built from the store, and the last seq it contains.
pub struct Loaded {
    pub doc: Doc,
    pub seq: i64,
}

/// Builds a document from its newest version and the updates after it.
pub async fn load(store: &dyn Store, id: &str) -> Result<Loaded, DocError> {
    if store.document(id).await.map_err(storage)?.is_none() {
        return Err(DocError::NotFound(format!("document {id}")));
    }
    let stored = store.load_document(id).await.map_err(storage)?;
    let doc = Doc::new();
    let mut seq = stored.snapshot.as_ref().map_or(0, |s| s.seq);
    {
        let mut txn = doc.transact_mut();
        let parts =
            stored.snapshot.iter().map(|s| (s.seq, &s.state)).chain(stored.updates.iter().map(|u| (u.seq, &u.data)));
        for (at, bytes) in parts {
            let update = Update::decode_v1(bytes).map_err(|e| DocError::Storage(format!("stored update {at}: {e}")))?;
            txn.apply_update(update).map_err(|e| DocError::Storage(format!("stored update {at}: {e}")))?;
            seq = seq.max(at);
        }
    }
    Ok(Loaded { doc, seq })
}

/// The stored state of one version.
pub async fn version(store: &dyn Store, id: &str, version: i64) -> Result<Snapshot, DocError> {
    store
        .snapshot(id, version)
        .await
        .map_err(storage)?
        .ok_or_else(|| DocError::NotFound(format!("version {version} of document {id}")))
}

/// The newest version created at or before `at_ms`.
pub async fn version_at(store: &dyn Store, id: &str, at_ms: i64) -> Result<VersionInfo, DocError> {
    store
        .versions(id)
        .await
        .map_err(storage)?
        .into_iter()
        .filter(|v| v.created_at <= at_ms)
        .max_by_key(|v| (v.created_at, v.version))
        .ok_or_else(|| DocError::NotFound(format!("a version of document {id} at or before that time")))
}

/// A document's versions and how many updates are not folded into one yet.
#[derive(Debug, Serialize)]
pub struct History {
    pub document_id: String,
    pub versions: Vec<VersionInfo>,
    pub pending_updates: i64,
}

pub async fn history(store: &dyn Store, id: &str) -> Result<History, DocError> {
    if store.document(id).await.map_err(storage)?.is_none() {
        return Err(DocError::NotFound(format!("document {id}")));
    }
    Ok(History {
        document_id: id.to_string(),
        versions: store.versions(id).await.map_err(storage)?,
        pending_updates: store.pending_update_count(id).await.map_err(storage)?,
    })
}

fn snapshot_of(doc: &Doc, seq: i64, kind: SnapshotKind, label: Option<String>) -> NewSnapshot {
    let txn = doc.transact();
    NewSnapshot {
        seq,
        state: txn.encode_state_as_update_v1(&StateVector::default()),
        state_vector: txn.state_vector().encode_v1(),
        kind,
        label,
    }
}

/// Stores the document's current state as a new version.
pub async fn snapshot(store: &dyn Store, id: &str, kind: SnapshotKind, label: Option<String>) -> Result<i64, DocError> {
    let loaded = load(store, id).await?;
    store.write_snapshot(id, &snapshot_of(&loaded.doc, loaded.seq, kind, label), None).await.map_err(storage)
}

/// The outcome of a restore or import: the forward update's seq and the version recording it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Replaced {
    pub seq: i64,
    pub version: i64,
}

/// How an imported state meets the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Only into a document without content; refused otherwise.
    IntoEmpty,
    /// Over whatever is there, as a restore.
    Replace,
}

/// The forward update that turns `doc` into `target` (applied to `doc` too), or, for an import
/// into an empty document, `target`'s own state.
pub fn change_to(doc: &Doc, target: &Doc, mode: ImportMode) -> Result<Vec<u8>, DocError> {
    match mode {
        ImportMode::IntoEmpty => {
            if !content::roots(&doc.transact()).is_empty() {
                return Err(DocError::NotEmpty);
            }
            let state = content::state_of(target);
            let update = Update::decode_v1(&state).map_err(|e| DocError::InvalidContent(e.to_string()))?;
            doc.transact_mut().apply_update(update).map_err(|e| DocError::InvalidContent(e.to_string()))?;
            Ok(state)
        }
        ImportMode::Replace => {
            let mut txn = doc.transact_mut();
            replace_content(&mut txn, target).map_err(|e| DocError::InvalidContent(e.to_string()))?;
            Ok(txn.encode_update_v1())
        }
    }
}

/// Restores or imports on the store directly: one forward update, then a version recording it.
pub async fn replace(
    store: &dyn Store,
    id: &str,
    target: &Doc,
    mode: ImportMode,
    author: &str,
    label: Option<String>,
) -> Result<Replaced, DocError> {
    let loaded = match load(store, id).await {
        Ok(loaded) => loaded,
        Err(DocError::NotFound(_)) if mode == ImportMode::IntoEmpty => {
            store.create_document(id, None).await.map_err(storage)?;
            Loaded { doc: Doc::new(), seq: 0 }
        }
        Err(e) => return Err(e),
    };
    let update = change_to(&loaded.doc, target, mode)?;
    let batch = AppendBatch { doc_id: id.to_string(), authors: vec![Some(author.to_string())], updates: vec![update] };
    let seq = store.append_updates(&[batch]).await.map_err(storage)?[0];
    let kind = match mode {
        ImportMode::IntoEmpty => SnapshotKind::Manual,
        ImportMode::Replace => SnapshotKind::Restore,
    };
    let version = store.write_snapshot(id, &snapshot_of(&loaded.doc, seq, kind, label), None).await.map_err(storage)?;
    Ok(Replaced { seq, version })
}

/// What a compaction did (or, dry, would do) to one document.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CompactReport {
    pub bytes_before: i64,
    pub bytes_after: i64,
    pub rows_before: i64,
    pub rows_after: i64,
}

/// Whether a compaction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Write,
    DryRun,
}

/// Folds the update log into a new `compact` version and keeps only the newest
/// `keep_versions` versions (at least the new one). Updates committed while this runs have
/// higher seqs than the version and are left alone.
pub async fn compact(store: &dyn Store, id: &str, keep_versions: u32, run: Run) -> Result<CompactReport, DocError> {
    let before = store.history_stats(id).await.map_err(storage)?;
    let loaded = load(store, id).await?;
    let snapshot = snapshot_of(&loaded.doc, loaded.seq, SnapshotKind::Compact, None);
    let keep = keep_versions.max(1);
    let after = match run {
        Run::Write => {
            let all = [SnapshotKind::Auto, SnapshotKind::Compact, SnapshotKind::Restore, SnapshotKind::Manual];
            let prune = Prune { keep_versions: keep, kinds: &all };
            store.write_snapshot(id, &snapshot, Some(prune)).await.map_err(storage)?;
            store.history_stats(id).await.map_err(storage)?
        }
        Run::DryRun => {
            // The versions that would stay: the new one plus the newest `keep - 1` others.
            let versions = store.versions(id).await.map_err(storage)?;
            let kept: Vec<&VersionInfo> = versions.iter().rev().take(keep as usize - 1).collect();
            let pending_after = store.updates_after(id, loaded.seq).await.map_err(storage)?;
            crate::store::HistoryStats {
                update_rows: pending_after.len() as i64,
                update_bytes: pending_after.iter().map(|u| u.data.len() as i64).sum(),
                version_rows: kept.len() as i64 + 1,
                version_bytes: kept.iter().map(|v| v.bytes).sum::<i64>()
                    + (snapshot.state.len() + snapshot.state_vector.len()) as i64,
            }
        }
    };
    Ok(CompactReport {
        bytes_before: before.bytes(),
        bytes_after: after.bytes(),
        rows_before: before.rows(),
        rows_after: after.rows(),
    })
}
