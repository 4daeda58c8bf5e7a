//! The errors tandem shows to the outside world, one type per boundary, each mapped once:
//! [`EventError`] for Socket.IO events (an `error` event or an error ack) and [`ApiError`] for
//! HTTP (a status code and `{"error": {code, message}}`). Internal details never leave the
//! server: database and bus failures become `unavailable` / `internal` with a generic message
//! and are logged where they are mapped.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;

use crate::{auth::AuthError, bus::BusError, directory::DirectoryError, docs::DocError, store::StoreError};

/// Stable, machine-readable error codes shared by events and HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not what the event or endpoint takes.
    InvalidPayload,
    /// No verified identity (missing, forged or expired token, unknown user).
    Unauthorized,
    /// A verified identity without the right to do this.
    Forbidden,
    NotFound,
    /// Bigger than a configured limit.
    TooLarge,
    /// Bytes that are not a Yjs update this document can apply.
    InvalidUpdate,
    /// A timeout waiting on someone else (a client's ack).
    Timeout,
    /// The request conflicts with the current state (importing into a non-empty document).
    Conflict,
    /// A dependency (database, Redis) is failing; retrying later may work.
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidUpdate => "invalid_update",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    fn is_server_fault(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Internal)
    }
}

/// An error answering a Socket.IO event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub code: ErrorCode,
    pub message: String,
}

impl EventError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "this event needs a signed-in session")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// The ack form: `{"error": {"code", "message"}}`.
    pub fn to_ack(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }

    /// The `error` event form: `{"message", "code", "event", "document_id"?}`.
    pub fn to_event(&self, event: &str, document_id: Option<&str>) -> serde_json::Value {
        let mut payload = json!({ "message": self.message, "code": self.code, "event": event });
        if let Some(document_id) = document_id {
            payload["document_id"] = json!(document_id);
        }
        payload
    }

    /// Logs the error once, at a level that matches whose fault it is.
    pub fn log(&self, event: &str, sid: &str) {
        if self.code.is_server_fault() {
            tracing::error!(event, sid, code = self.code.as_str(), message = %self.message, "event failed");
        } else {
            tracing::info!(event, sid, code = self.code.as_str(), message = %self.message, "event refused");
        }
    }
}

fn internal_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unavailable => "the server's storage is unavailable; try again",
        _ => "internal error",
    }
}

impl From<AuthError> for EventError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Directory(e) => e.into(),
            other => Self::new(ErrorCode::Unauthorized, other.to_string()),
        }
    }
}

impl From<DirectoryError> for EventError {
    fn from(e: DirectoryError) -> Self {
        tracing::error!(error = %e, "directory failure");
        Self::new(ErrorCode::Unavailable, internal_message(ErrorCode::Unavailable))
    }
}

impl From<StoreError> for EventError {
    fn from(e: StoreError) -> Self {
        DirectoryError(e).into()
    }
}

impl From<BusError> for EventError {
    fn from(e: BusError) -> Self {
        tracing::error!(error = %e, "bus failure");
        Self::new(ErrorCode::Unavailable, "the cluster bus is unavailable; try again")
    }
}

impl From<DocError> for EventError {
    fn from(e: DocError) -> Self {
        let code = e.code();
        if code.is_server_fault() {
            tracing::error!(error = %e, "document engine failure");
            Self::new(code, internal_message(code))
        } else {
            Self::new(code, e.to_string())
        }
    }
}

/// An error answering an HTTP request.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Only for codes whose status is ambiguous (a 400 body that is not JSON vs. a 422).
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: None }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(match self.code {
            ErrorCode::InvalidPayload => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidUpdate => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if self.code.is_server_fault() {
            tracing::error!(status = status.as_u16(), code = self.code.as_str(), message = %self.message, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), code = self.code.as_str(), message = %self.message, "request refused");
        }
        let message = if self.code.is_server_fault() { internal_message(self.code).to_string() } else { self.message };
        (status, Json(json!({ "error": { "code": self.code, "message": message } }))).into_response()
    }
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::new(ErrorCode::NotFound, format!("{what} not found")),
            other => Self::new(ErrorCode::Unavailable, other.to_string()),
        }
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        e.0.into()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        EventError::from(e).into()
    }
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        Self::new(ErrorCode::Unavailable, e.to_string())
    }
}
