//! Console sessions, kept in the KV bucket `talon_sessions` so every console
//! replica honours every session. The cookie holds a random token; the
//! bucket holds only its SHA-256, so reading the bucket gives no one a
//! session.

use std::time::Duration;

use async_nats::jetstream::kv;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "talon_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, thiserror::Error)]
#[error("sessions: {0}")]
pub struct SessionError(String);

fn err(e: impl std::fmt::Display) -> SessionError {
    SessionError(e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    user: String,
    expires_at: DateTime<Utc>,
    /// [`credential`] of the user's password hash at login: a session ends
    /// when the hash changes. Absent in sessions of earlier releases, which
    /// therefore end at the upgrade.
    #[serde(default)]
    credential: String,
}

/// A short fingerprint of a password hash, kept in the session: enough to
/// tell that the hash changed, nothing to attack it with.
pub fn credential(hash: &str) -> String {
    let digest = Sha256::digest(format!("talon-session:{hash}").as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// A live session: its user and the credential it was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub credential: String,
}

#[derive(Clone)]
pub struct Sessions {
    store: kv::Store,
}

/// The bucket key of a token.
fn key_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Sessions {
    pub fn new(store: kv::Store) -> Sessions {
        Sessions { store }
    }

    /// Starts a session for `user`, whose password hash has `credential`;
    /// returns its token.
    pub async fn create(&self, user: &str, credential: &str) -> Result<String, SessionError> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let record = Record {
            user: user.to_owned(),
            expires_at: Utc::now() + SESSION_TTL,
            credential: credential.to_owned(),
        };
        // A Record holds a string and a time: it always serializes, and this
        // error is never returned.
        let value = serde_json::to_vec(&record).map_err(err)?;
        self.store
            .put(key_of(&token), value.into())
            .await
            .map_err(err)?;
        Ok(token)
    }

    /// A live session, or `None`.
    pub async fn user(&self, token: &str) -> Result<Option<Session>, SessionError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(value) = self.store.get(key_of(token)).await.map_err(err)? else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<Record>(&value) else {
            return Ok(None);
        };
        Ok((record.expires_at > Utc::now()).then_some(Session {
            user: record.user,
            credential: record.credential,
        }))
    }

    /// Ends a session.
    pub async fn end(&self, token: &str) -> Result<(), SessionError> {
        self.store.purge(key_of(token)).await.map_err(err)
    }
}

/// The session token in a request's `Cookie` headers.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value that starts a session (`Secure` when asked).
pub fn set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(cookies: &[&str], expected: Option<&str>) {
        let mut headers = HeaderMap::new();
        for c in cookies {
            headers.append(
                axum::http::header::COOKIE,
                HeaderValue::from_str(c).unwrap(),
            );
        }
        assert_eq!(token(&headers).as_deref(), expected, "{cookies:?}");
    }

    #[test]
    fn the_token_is_found_among_cookies() {
        check(&[], None);
        check(&["talon_session=abc"], Some("abc"));
        check(&["a=1; talon_session=abc; b=2"], Some("abc"));
        check(&["a=1", "talon_session=xyz"], Some("xyz"));
        check(&["xtalon_session=abc"], None);
        check(&["talon_session"], None);
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("t0k", false);
        assert!(c.starts_with("talon_session=t0k;"), "{c}");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        assert!(!c.contains("Secure"));
        assert!(set_cookie("t0k", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert!(clear_cookie(true).ends_with("; Secure"));
    }

    #[test]
    fn credentials_tell_hashes_apart_and_hide_them() {
        let a = credential("$argon2id$v=19$m=19456,t=2,p=1$aaaa$bbbb");
        assert_eq!(a.len(), 16);
        assert_eq!(a, credential("$argon2id$v=19$m=19456,t=2,p=1$aaaa$bbbb"));
        assert_ne!(a, credential("$argon2id$v=19$m=19456,t=2,p=1$aaaa$cccc"));
    }

    #[test]
    fn keys_are_token_hashes() {
        // The bucket never holds the token itself.
        assert_eq!(
            key_of("t"),
            "e3b98a4da31a127d4bde6e43033f66ba274cab0eb7eb1c70ec41402bf6273dd8"
        );
        assert_ne!(key_of("t"), key_of("u"));
    }
}
