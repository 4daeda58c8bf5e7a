//! Identity and permissions: HS256 tokens as Open WebUI issues them, the verified [`Identity`]
//! every event is authorized against, and the access rules for documents.
//!
//! Identity always comes from a verified token and the directory, never from a payload field.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::directory::{Directory, DirectoryError};

/// The claims Open WebUI puts in a session token. Only `id` is required.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why a token yields no identity. The message is safe to show to the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("unknown user")]
    UnknownUser,
    #[error("user is not active (role {0})")]
    NotActive(String),
    #[error("directory unavailable")]
    Directory(#[from] DirectoryError),
}

impl AuthError {
    /// Stable machine-readable code for error payloads.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Directory(_) => "unavailable",
            _ => "unauthorized",
        }
    }
}

/// A user's role; `pending` users never get an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// Who a verified session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Signs and verifies tokens with `WEBUI_SECRET_KEY`.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        // Only HS256 is accepted: a token naming any other algorithm, `none` included, fails.
        let mut validation = Validation::new(Algorithm::HS256);
        // Open WebUI issues tokens without `exp` when JWT_EXPIRES_IN is -1; `exp` is still
        // checked whenever it is present.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        // PyJWT's default: no leeway.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Mints a token the way Open WebUI's sign-in does: `{id, exp?, jti, iat}`.
    pub fn mint(&self, user_id: &str, ttl: Option<Duration>) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims {
            id: user_id.to_string(),
            exp: ttl.map(|ttl| (now + ttl).as_secs()),
            iat: Some(now.as_secs()),
            jti: Some(uuid::Uuid::new_v4().to_string()),
        };
        // Encoding HS256 claims of plain strings and integers cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        // Bound the work a hostile client can ask for; real tokens are a few hundred bytes.
        if token.len() > 8192 {
            return Err(AuthError::Invalid("token too long".into()));
        }
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) if data.claims.id.is_empty() => Err(AuthError::Invalid("missing id claim".into())),
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(AuthError::Expired),
                kind => Err(AuthError::Invalid(format!("{kind:?}"))),
            },
        }
    }
}

/// Verifies a token and resolves its user in the directory.
pub async fn authenticate(
    keys: &TokenKeys,
    directory: &dyn Directory,
    token: Option<&str>,
) -> Result<Identity, AuthError> {
    let token = token.ok_or(AuthError::Missing)?;
    let claims = keys.verify(token)?;
    let user = directory.user(&claims.id).await?.ok_or(AuthError::UnknownUser)?;
    let role = match user.role.as_str() {
        "admin" => Role::Admin,
        "user" => Role::User,
        other => return Err(AuthError::NotActive(other.to_string())),
    };
    Ok(Identity { id: user.id, name: user.name, role })
}

/// What a user may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    Read,
    Write,
}

/// Open WebUI's `access_control` rule: owners and admins may write; `null` lets every
/// signed-in user read and write (tandem's standalone default for shared documents); otherwise
/// the listed user ids (and, when the directory knows them, group ids) get read or write.
/// Unlike Open WebUI's `has_access`, write implies read.
pub fn document_access(
    user: &Identity,
    owner_id: Option<&str>,
    access_control: Option<&serde_json::Value>,
    user_group_ids: &[String],
) -> Access {
    if user.is_admin() || owner_id == Some(user.id.as_str()) {
        return Access::Write;
    }
    let Some(rules) = access_control else {
        return Access::Write;
    };
    let listed = |permission: &str| {
        let Some(rule) = rules.get(permission) else { return false };
        let contains = |key: &str, wanted: &str| {
            rule.get(key).and_then(|v| v.as_array()).is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(wanted)))
        };
        contains("user_ids", &user.id) || user_group_ids.iter().any(|g| contains("group_ids", g))
    };
    if listed("write") {
        Access::Write
    } else if listed("read") {
        Access::Read
    } else {
        Access::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str, role: Role) -> Identity {
        Identity { id: id.into(), name: id.into(), role }
    }

    #[test]
    fn roundtrip_and_expiry() {
        let keys = TokenKeys::new("secret");
        let token = keys.mint("u1", Some(Duration::from_secs(60)));
        assert_eq!(keys.verify(&token).unwrap().id, "u1");
        let no_exp = keys.mint("u1", None);
        assert!(keys.verify(&no_exp).unwrap().exp.is_none());
        let claims = Claims { id: "u1".into(), exp: Some(1), iat: None, jti: None };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(matches!(keys.verify(&expired), Err(AuthError::Expired)));
    }

    #[test]
    fn forged_and_foreign_algorithms_are_refused() {
        let keys = TokenKeys::new("secret");
        let other = TokenKeys::new("other");
        assert!(keys.verify(&other.mint("u1", None)).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims { id: "u1".into(), exp: None, iat: None, jti: None },
            &keys.encoding,
        )
        .unwrap();
        assert!(keys.verify(&hs512).is_err());
        // alg=none: header {"alg":"none","typ":"JWT"}, payload {"id":"u1"}, empty signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpZCI6InUxIn0.";
        assert!(keys.verify(none).is_err());
        assert!(keys.verify("garbage").is_err());
        let no_id = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"sub": "x"}), &keys.encoding).unwrap();
        assert!(keys.verify(&no_id).is_err());
    }

    #[test]
    fn access_rules() {
        let alice = user("alice", Role::User);
        let admin = user("root", Role::Admin);
        assert_eq!(document_access(&alice, Some("bob"), None, &[]), Access::Write);
        let private = json!({});
        assert_eq!(document_access(&alice, Some("bob"), Some(&private), &[]), Access::None);
        assert_eq!(document_access(&alice, Some("alice"), Some(&private), &[]), Access::Write);
        assert_eq!(document_access(&admin, Some("bob"), Some(&private), &[]), Access::Write);
        let read =
            json!({"read": {"user_ids": ["alice"], "group_ids": []}, "write": {"user_ids": [], "group_ids": []}});
        assert_eq!(document_access(&alice, Some("bob"), Some(&read), &[]), Access::Read);
        let write = json!({"read": {"user_ids": []}, "write": {"group_ids": ["g1"]}});
        assert_eq!(document_access(&alice, Some("bob"), Some(&write), &["g1".into()]), Access::Write);
    }
}
