//! Key paths, and the line each one is on in the file.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::error::{one_line, ConfigError};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the document: `channels[1].kind`, `rules[0].where.Level`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The path of a top-level key.
    pub(super) fn of(key: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(key.to_owned())])
    }

    /// This path, then `key`.
    pub(super) fn key(&self, key: &str) -> KeyPath {
        let mut next = self.clone();
        next.0.push(Seg::Key(key.to_owned()));
        next
    }

    /// This path, then element `index`.
    pub(super) fn index(&self, index: usize) -> KeyPath {
        let mut next = self.clone();
        next.0.push(Seg::Index(index));
        next
    }

    /// The path serde_path_to_error recorded.
    pub(super) fn from_serde(path: &serde_path_to_error::Path) -> KeyPath {
        use serde_path_to_error::Segment;
        KeyPath(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Enum { .. } | Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The text being loaded, its origin, and (once it parsed) its span-aware
/// tree, to turn key paths into line numbers.
pub(super) struct Source<'a> {
    pub(super) origin: &'a str,
    text: &'a str,
    root: Option<&'a DeTable<'a>>,
}

impl<'a> Source<'a> {
    pub(super) fn new(origin: &'a str, text: &'a str, root: Option<&'a DeTable<'a>>) -> Self {
        Source { origin, text, root }
    }

    /// The 1-based line holding byte `offset`.
    pub(super) fn line_at(&self, offset: usize) -> usize {
        self.text
            .as_bytes()
            .iter()
            .take(offset)
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The span of `path` in the file: the key itself for a key, the element
    /// for an index; when the path goes beyond what the file holds (a key left
    /// to its default), the deepest part that is there.
    fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut found = None;
        let mut table = Some(self.root?);
        let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
        for seg in &path.0 {
            let value = match (seg, table, array) {
                (Seg::Key(k), Some(t), _) => match t.iter().find(|(key, _)| key.get_ref() == k) {
                    Some((key, value)) => {
                        found = Some(key.span());
                        value
                    }
                    None => break,
                },
                (Seg::Index(n), _, Some(items)) => match items.get(*n) {
                    Some(value) => {
                        found = Some(value.span());
                        value
                    }
                    None => break,
                },
                _ => break,
            };
            table = value.get_ref().as_table();
            array = value.get_ref().as_array().map(|a| &a[..]);
            if table.is_none() && array.is_none() {
                break;
            }
        }
        found
    }

    /// The line of `path`, when the file holds it (or a part of it).
    pub(super) fn line_of(&self, path: &KeyPath) -> Option<usize> {
        self.span_of(path).map(|s| self.line_at(s.start))
    }

    /// An error about `path`, placed on its line.
    pub(super) fn error(&self, path: &KeyPath, message: impl fmt::Display) -> ConfigError {
        ConfigError {
            key: path.to_string(),
            line: self.line_of(path),
            message: one_line(&message.to_string()),
            origin: self.origin.to_owned(),
        }
    }
}
