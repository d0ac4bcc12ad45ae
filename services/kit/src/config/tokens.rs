//! Bearer tokens held in an environment variable (ingest's HTTP edge,
//! dedup's API): how they are read, and what a service refuses at start.

use super::{ConfigError, Env};

/// The shortest bearer token a service accepts.
pub const MIN_TOKEN_CHARS: usize = 24;

/// The variable `name`, split on commas, trimmed, empties dropped; unset
/// gives none.
pub fn split_tokens(env: &Env, name: &str) -> Vec<String> {
    env.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `tokens` (from `$env_name`, set by the key `key`) when each is at least
/// [`MIN_TOKEN_CHARS`] characters and none an example value (anything
/// holding `change-me`, or the old `dev-token`); else the error naming the
/// key and the token's place, never the token.
pub fn check_tokens(
    key: &str,
    env_name: &str,
    tokens: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    for (i, token) in tokens.iter().enumerate() {
        let why = if token.contains("change-me") || token == "dev-token" {
            "is the example value: make one with `openssl rand -hex 24`"
        } else if token.chars().count() < MIN_TOKEN_CHARS {
            "is shorter than 24 characters: make one with `openssl rand -hex 24`"
        } else {
            continue;
        };
        return Err(ConfigError::new(
            key,
            format!("token {} of ${env_name} {why}", i + 1),
        ));
    }
    Ok(tokens)
}
