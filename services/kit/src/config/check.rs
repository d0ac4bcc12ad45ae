//! Small checks shared by the tables' validation.

use std::collections::BTreeSet;

use super::locate::{KeyPath, Source};
use super::ConfigError;

/// `pattern` at `path` compiles as a regex.
pub(super) fn regex(src: &Source<'_>, path: &KeyPath, pattern: &str) -> Result<(), ConfigError> {
    regex::Regex::new(pattern).map(drop).map_err(|e| {
        src.error(
            path,
            format!("invalid regex {pattern:?}: {}", regex_reason(&e)),
        )
    })
}

/// The reason of a regex error without its multi-line excerpt.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error:").map(|r| r.trim().to_owned()))
        .unwrap_or(text)
}

/// `addr` at `path` is a `host:port` to listen on.
pub(super) fn listen(src: &Source<'_>, path: &KeyPath, addr: &str) -> Result<(), ConfigError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(src.error(path, format!("{addr:?} is not a host:port to listen on")))
    }
}

/// At most one of the keys of `table` marked as set is set.
pub(super) fn at_most_one(
    src: &Source<'_>,
    table: &KeyPath,
    keys: &[(&str, bool)],
) -> Result<(), ConfigError> {
    let set: Vec<&str> = keys.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect();
    if let [_, second, ..] = set.as_slice() {
        let all: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        return Err(src.error(
            &table.key(second),
            format!("set only one of {}", all.join(", ")),
        ));
    }
    Ok(())
}

/// `value` at `path` is not empty.
pub(super) fn non_empty(src: &Source<'_>, path: &KeyPath, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(src.error(path, "must not be empty"))
    } else {
        Ok(())
    }
}

/// The values are distinct; a repeat is reported at its own path, `what`
/// naming the values in the message.
pub(super) fn unique<'v>(
    src: &Source<'_>,
    items: impl IntoIterator<Item = (KeyPath, &'v str)>,
    what: &str,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for (path, value) in items {
        if !seen.insert(value) {
            return Err(src.error(&path, format!("duplicate {what} {value:?}")));
        }
    }
    Ok(())
}
