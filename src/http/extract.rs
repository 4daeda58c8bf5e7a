//! Request extractors that map every rejection to tandem's error shape.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    auth::{self, Identity},
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// Who is calling: a user with a verified token, or a backend presenting the service key.
#[derive(Debug, Clone)]
pub enum Caller {
    User(Identity),
    Service,
}

impl Caller {
    /// Backend-facing routes: admins and the service key.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Service => Ok(()),
            Caller::User(user) if user.is_admin() => Ok(()),
            Caller::User(_) => Err(ApiError::new(ErrorCode::Forbidden, "this needs an admin token or the service key")),
        }
    }

    /// User-facing routes act as a user; the service key has no user.
    pub fn user(&self) -> Result<&Identity, ApiError> {
        match self {
            Caller::User(user) => Ok(user),
            Caller::Service => Err(ApiError::new(ErrorCode::Forbidden, "this needs a user's token")),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing Authorization: Bearer <token>"))?;
        if let Some(key) = &app.config.service_key
            && constant_time_eq(token.as_bytes(), key.as_bytes())
        {
            return Ok(Caller::Service);
        }
        let identity = auth::authenticate(&app.keys, app.directory.as_ref(), Some(token)).await?;
        Ok(Caller::User(identity))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON body: not JSON → 400, wrong or missing fields → 422, both in tandem's error shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(ErrorCode::InvalidPayload, e.body_text())),
            Err(e) => Err(ApiError::new(ErrorCode::InvalidPayload, e.body_text()).with_status(StatusCode::BAD_REQUEST)),
        }
    }
}
