//! Secrets named by `*_env` and `*_file` keys, resolved only by the service
//! that needs them (ingest must start without SMTP_PASSWORD).

use std::path::Path;

use super::{ConfigError, Env};

/// The secret named by `<env_key> = VAR` or `<file_key> = PATH`: `None` when
/// neither is set. An unset or empty variable, or an unreadable or empty file,
/// is an error naming the key. A file's trailing line break is not part of the
/// secret. The error's key is relative to the table; callers use
/// [`ConfigError::within`] to place it.
pub(super) fn resolve(
    env_key: &str,
    env_name: Option<&str>,
    file_key: &str,
    file: Option<&Path>,
    env: &Env,
) -> Result<Option<String>, ConfigError> {
    if let Some(var) = env_name {
        return match env.get(var) {
            Some(value) if !value.is_empty() => Ok(Some(value.to_owned())),
            Some(_) => Err(ConfigError::new(
                env_key,
                format!("environment variable {var} is empty"),
            )),
            None => Err(ConfigError::new(
                env_key,
                format!("environment variable {var} is not set"),
            )),
        };
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(file_key, format!("cannot read {}: {e}", path.display()))
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(ConfigError::new(
                file_key,
                format!("{} is empty", path.display()),
            ));
        }
        return Ok(Some(value.to_owned()));
    }
    Ok(None)
}
