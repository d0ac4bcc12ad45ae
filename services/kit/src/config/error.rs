//! The one error a bad configuration produces: which key, on which line.

use std::fmt;

/// A configuration problem, rendered as one line that names the key and its
/// line: `talon.toml:12: ingest.max_body_bytes: invalid type: string "big", expected usize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `ingest.max_body_bytes` or `channels[1].kind`; empty when unknown.
    pub key: String,
    /// 1-based line of the key in the file, when known.
    pub line: Option<usize>,
    /// What is wrong, on one line.
    pub message: String,
    /// The file path (`<config>` for text); empty for errors raised after loading.
    pub origin: String,
}

impl ConfigError {
    /// An error about `key` that is not tied to a place in a file (secret
    /// resolution at run time).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            line: None,
            message: one_line(&message.into()),
            origin: String::new(),
        }
    }

    /// The same error with its key placed under `prefix`
    /// (`password_env` within `secrets.soc_smtp` is `secrets.soc_smtp.password_env`).
    pub fn within(mut self, prefix: &str) -> ConfigError {
        self.key = match (prefix.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.key),
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.origin.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{}:{line}: ", self.origin)?,
            (false, None) => write!(f, "{}: ", self.origin)?,
            (true, Some(line)) => write!(f, "line {line}: ")?,
            (true, None) => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// `message` with its line breaks folded, so the error stays one line.
pub(super) fn one_line(message: &str) -> String {
    if !message.contains(['\n', '\r']) {
        return message.to_owned();
    }
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
