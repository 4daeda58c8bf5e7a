//! `/api/v1/documents`: a document's record and history for its readers; snapshots, restores
//! and imports for its writers; access rules, listing and compaction for admins.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, JsonBody};
use crate::{
    auth::{Access, document_access},
    directory::OnMissing,
    docs::{
        content::{self, Format, Schema},
        history::{self, ImportMode, Run},
    },
    error::{ApiError, ErrorCode},
    realtime::docs::normalize_doc_id,
    state::AppState,
    store::SnapshotKind,
};

/// Largest import body accepted (a document at the default size limit, as JSON).
const MAX_IMPORT_BYTES: usize = 256 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/documents", get(list_documents))
        .route("/documents/{id}", get(get_document))
        .route("/documents/{id}/access", put(put_access))
        .route("/documents/{id}/history", get(get_history))
        .route("/documents/{id}/snapshot", post(post_snapshot))
        .route("/documents/{id}/restore", post(post_restore))
        .route("/documents/{id}/compact", post(post_compact))
        .route("/documents/{id}/export", get(get_export))
        .route(
            "/documents/{id}/import",
            post(post_import).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
}

/// What the caller may do with a document: the service key and admins everything, users what
/// the directory says. A document that does not exist gives `NotFound`.
async fn access(app: &AppState, caller: &Caller, id: &str) -> Result<Access, ApiError> {
    if app.store.document(id).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, format!("document {id} not found")));
    }
    match caller {
        Caller::Service => Ok(Access::Write),
        Caller::User(user) => Ok(app.directory.document_access(id, user, OnMissing::Deny).await?),
    }
}

async fn require(app: &AppState, caller: &Caller, id: &str, needed: Access) -> Result<(), ApiError> {
    if access(app, caller, id).await? < needed {
        let what = if needed == Access::Write { "write" } else { "read" };
        return Err(ApiError::new(ErrorCode::Forbidden, format!("no {what} access to this document")));
    }
    Ok(())
}

fn author(caller: &Caller) -> String {
    match caller {
        Caller::User(user) => user.id.clone(),
        Caller::Service => "service".to_string(),
    }
}

/// `[{document_id, bytes, updates, updated_at}]`, for admins.
async fn list_documents(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(json!(app.store.list_documents().await?)))
}

/// `{document_id, versions: [{version, seq, created_at, kind, bytes, label}], pending_updates}`.
async fn get_history(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(&id)?;
    require(&app, &caller, &id, Access::Read).await?;
    Ok(Json(json!(history::history(app.store.as_ref(), &id).await?)))
}

#[derive(Debug, Default, Deserialize)]
struct SnapshotBody {
    #[serde(default)]
    label: Option<String>,
}

/// A manual version of the live document: `{document_id, version}`.
async fn post_snapshot(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(&id)?;
    require(&app, &caller, &id, Access::Write).await?;
    // The body is optional: no body means no label.
    let body: SnapshotBody = if body.iter().all(u8::is_ascii_whitespace) {
        SnapshotBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidPayload, format!("expected {{\"label\"?: string}}: {e}")))?
    };
    let label = body.label.filter(|l| !l.is_empty());
    let version = app.docs.snapshot(&id, SnapshotKind::Manual, label).await?;
    Ok(Json(json!({ "document_id": id, "version": version })))
}

#[derive(Debug, Deserialize)]
struct RestoreBody {
    #[serde(default)]
    version: Option<i64>,
    /// RFC 3339: the newest version at or before this time.
    #[serde(default)]
    at: Option<String>,
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_time(at: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(at.trim()).map(|t| t.timestamp_millis()).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            format!("invalid time {at:?}: {e} (expected RFC 3339, e.g. 2026-11-22T10:00:00Z)"),
        )
    })
}

/// Makes the live document's content equal to a version's, as a forward change every
/// connected editor receives: `{document_id, restored_version, new_version}`.
async fn post_restore(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RestoreBody>,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(&id)?;
    require(&app, &caller, &id, Access::Write).await?;
    let version = match (body.version, body.at) {
        (Some(version), None) => version,
        (None, Some(at)) => history::version_at(app.store.as_ref(), &id, parse_time(&at)?).await?.version,
        _ => return Err(ApiError::new(ErrorCode::InvalidPayload, "give exactly one of \"version\" or \"at\"")),
    };
    let snapshot = history::version(app.store.as_ref(), &id, version).await?;
    let replaced = app
        .docs
        .replace(
            &id,
            snapshot.state,
            ImportMode::Replace,
            &author(&caller),
            Some(format!("restore of version {version}")),
        )
        .await?;
    Ok(Json(json!({ "document_id": id, "restored_version": version, "new_version": replaced.version })))
}

#[derive(Debug, Deserialize)]
struct CompactBody {
    #[serde(default = "default_keep")]
    keep_versions: u32,
    #[serde(default)]
    dry_run: bool,
}

fn default_keep() -> u32 {
    10
}

/// Folds the update log into a version and drops older history: `{documents, bytes_before,
/// bytes_after, rows_before, rows_after}`.
async fn post_compact(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CompactBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let id = doc_id(&id)?;
    let run = if body.dry_run { Run::DryRun } else { Run::Write };
    let report = history::compact(app.store.as_ref(), &id, body.keep_versions, run).await?;
    Ok(Json(json!({
        "documents": 1,
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
        "rows_before": report.rows_before,
        "rows_after": report.rows_after,
    })))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    version: Option<i64>,
}

/// The document (or one version) as `ybin` (default), `json`, `text` or `html`.
async fn get_export(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let id = doc_id(&id)?;
    require(&app, &caller, &id, Access::Read).await?;
    let format = query.format.unwrap_or(Format::Ybin);
    let doc = match query.version {
        Some(version) => content::doc_from_state(&history::version(app.store.as_ref(), &id, version).await?.state)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
        None => history::load(app.store.as_ref(), &id).await?.doc,
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], content::render(&doc, format)).into_response())
}

#[derive(Debug, Deserialize)]
struct ImportQuery {
    format: Format,
    #[serde(default)]
    replace: bool,
}

/// Imports the body into an empty or new document, or with `replace=true` over its content as
/// a restore: `{document_id, seq, version}`.
async fn post_import(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ImportQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(&id)?;
    if app.store.document(&id).await?.is_some() {
        require(&app, &caller, &id, Access::Write).await?;
    } else {
        let owner = match &caller {
            Caller::User(user) => Some(user.id.as_str()),
            Caller::Service => None,
        };
        app.store.create_document(&id, owner).await?;
    }
    let target = content::parse(&body, query.format, Schema::for_document(&id))
        .map_err(|e| ApiError::new(ErrorCode::InvalidPayload, e.to_string()))?;
    let mode = if query.replace { ImportMode::Replace } else { ImportMode::IntoEmpty };
    let label = Some(format!("import ({})", format!("{:?}", query.format).to_lowercase()));
    let replaced = app.docs.replace(&id, content::state_of(&target), mode, &author(&caller), label).await?;
    Ok(Json(json!({ "document_id": id, "seq": replaced.seq, "version": replaced.version })))
}

fn doc_id(raw: &str) -> Result<String, ApiError> {
    normalize_doc_id(raw).map_err(ApiError::from)
}

/// `{document_id, owner, access_control, content, updated_at}` to anyone who may read it.
async fn get_document(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = doc_id(&id)?;
    let record = app
        .store
        .document(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("document {id} not found")))?;
    if let Caller::User(user) = &caller
        && document_access(user, record.owner_id.as_deref(), record.access_control.as_ref(), &[]) < Access::Read
    {
        return Err(ApiError::new(ErrorCode::Forbidden, "no read access to this document"));
    }
    Ok(Json(json!({
        "document_id": record.id,
        "owner": record.owner_id,
        "access_control": record.access_control,
        "content": record.content,
        "updated_at": record.updated_at,
    })))
}

/// The body of `PUT /documents/{id}/access`: Open WebUI's `access_control` shape, or null for
/// "every signed-in user may read and write".
#[derive(Debug, Deserialize)]
struct AccessBody {
    access_control: Option<Value>,
}

async fn put_access(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AccessBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let id = doc_id(&id)?;
    if let Some(rules) = &body.access_control {
        validate_access_control(rules)?;
    }
    if app.store.document(&id).await?.is_none() {
        app.store.create_document(&id, None).await?;
    }
    app.store.set_access_control(&id, body.access_control.as_ref()).await?;
    Ok(Json(json!({ "document_id": id, "access_control": body.access_control })))
}

/// `{read?: {user_ids?: [..], group_ids?: [..]}, write?: {...}}` and nothing else.
pub fn validate_access_control(rules: &Value) -> Result<(), ApiError> {
    let invalid = |m: &str| ApiError::new(ErrorCode::InvalidPayload, format!("access_control: {m}"));
    let object = rules.as_object().ok_or_else(|| invalid("must be an object or null"))?;
    for (permission, rule) in object {
        if permission != "read" && permission != "write" {
            return Err(invalid("only \"read\" and \"write\" are allowed"));
        }
        let rule = rule.as_object().ok_or_else(|| invalid("each permission must be an object"))?;
        for (key, ids) in rule {
            if key != "user_ids" && key != "group_ids" {
                return Err(invalid("only \"user_ids\" and \"group_ids\" are allowed"));
            }
            let ok = ids.as_array().is_some_and(|ids| ids.iter().all(Value::is_string));
            if !ok {
                return Err(invalid("ids must be arrays of strings"));
            }
        }
    }
    Ok(())
}
