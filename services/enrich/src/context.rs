//! Context: the alert's `event_data` as the ordered key/value list the
//! channels show, as Velociraptor's `Server.Monitor.Alerts` builds its
//! "alert details" table (`FlattenContext`, `ContextInclude`,
//! `ContextExclude`, `ContextFieldLimit`, `ContextValueLimit`).

use regex::Regex;
use serde_json::{Map, Value};
use talon_kit::config::EnrichConfig;
use talon_proto::ContextEntry;

/// The key of the entry that stands for the fields the field limit left out.
pub const MORE_FIELDS_KEY: &str = "…";

/// The compiled `[enrich]` context settings.
#[derive(Debug, Clone)]
pub struct ContextRules {
    include: Regex,
    /// `None` when `context_exclude` is empty.
    exclude: Option<Regex>,
    field_limit: usize,
    value_limit: usize,
    flatten: bool,
}

impl ContextRules {
    /// Compiles `context_include`/`context_exclude` and takes the limits and
    /// `flatten_context` from `config`.
    pub fn new(config: &EnrichConfig) -> Result<ContextRules, regex::Error> {
        let exclude = match config.context_exclude.as_str() {
            "" => None,
            pattern => Some(Regex::new(pattern)?),
        };
        Ok(ContextRules {
            include: Regex::new(&config.context_include)?,
            exclude,
            field_limit: config.context_field_limit,
            value_limit: config.context_value_limit,
            flatten: config.flatten_context,
        })
    }

    /// The context of an alert with this `event_data` (overrides and the
    /// severity member already removed), in four steps:
    ///
    /// 1. Flatten, when `flatten_context` is on: nested objects and lists
    ///    become dotted keys, lists by index (`Details.Connections.0.DestinationIp`),
    ///    in input order. An empty object or list is kept as one entry,
    ///    `{}` or `[]`. With flattening off: the top-level keys only, nested
    ///    values as compact JSON text.
    ///
    ///    Values as text: strings as they are (no quotes); numbers, booleans
    ///    and null as their JSON text (`4120`, `true`, `null`), so a null is
    ///    shown, and told apart from an empty string.
    /// 2. Keep the keys `context_include` matches and `context_exclude` (when
    ///    not empty) does not; both are searches on the (flattened) key, not
    ///    anchored.
    /// 3. `context_field_limit`: keep the first N of those; when some were
    ///    left out, append one more entry, key [`MORE_FIELDS_KEY`] (`…`) and
    ///    value `1 more field` / `<n> more fields`.
    /// 4. `context_value_limit`: cut a value longer than that many characters
    ///    (Unicode scalar values, not bytes) to limit − 1 characters followed
    ///    by `…`, so it is exactly limit characters long. Keys, and the
    ///    `… more fields` entry, are never cut.
    ///
    /// A limit of 0 means no limit.
    ///
    /// The work is bounded before it is done, whatever the input: a key is
    /// built at most [`MAX_KEY_BYTES`] long (cut with `…`) in one buffer
    /// that every leaf reuses, only the kept fields are copied out, and at
    /// most [`MAX_LEAVES`] leaves are looked at (the `…` entry then says
    /// so).
    pub fn build(&self, event_data: &Map<String, Value>) -> Vec<ContextEntry> {
        let mut walk = Walk {
            rules: self,
            kept: Vec::new(),
            left_out: 0,
            visited: 0,
            stopped: false,
        };
        let mut path = String::new();
        for (key, value) in event_data {
            path.clear();
            push_bounded(&mut path, key);
            if self.flatten {
                walk.flatten(&mut path, value);
            } else {
                walk.leaf(&path, value);
            }
            if walk.stopped {
                break;
            }
        }
        // Values are rendered only for the fields kept.
        let mut context: Vec<ContextEntry> = walk
            .kept
            .into_iter()
            .map(|(key, value)| ContextEntry {
                key,
                value: cut(text(value), self.value_limit),
            })
            .collect();
        if walk.left_out > 0 || walk.stopped {
            context.push(ContextEntry {
                key: MORE_FIELDS_KEY.to_owned(),
                value: match (walk.left_out, walk.stopped) {
                    (0, true) => format!("more fields, past the {MAX_LEAVES} looked at"),
                    (n, true) => {
                        format!("{n} more fields, and more past the {MAX_LEAVES} looked at")
                    }
                    (1, false) => "1 more field".to_owned(),
                    (n, false) => format!("{n} more fields"),
                },
            });
        }
        context
    }
}

/// A context key is cut to this many bytes (then `…`): the key buffer never
/// grows past it, however deep or long the input's keys are.
pub const MAX_KEY_BYTES: usize = 256;

/// Leaves looked at per alert: flattening stops after this many.
pub const MAX_LEAVES: usize = 100_000;

/// One context build in progress.
struct Walk<'r, 'v> {
    rules: &'r ContextRules,
    /// The fields kept so far, at most `field_limit`.
    kept: Vec<(String, &'v Value)>,
    /// Fields that matched but were over the limit.
    left_out: usize,
    visited: usize,
    /// `MAX_LEAVES` was reached.
    stopped: bool,
}

impl<'v> Walk<'_, 'v> {
    /// Visits the leaves under `value` (scalars and empty containers), in
    /// order, `path` holding the dotted key so far.
    fn flatten(&mut self, path: &mut String, value: &'v Value) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let len = path.len();
                    push_bounded(path, ".");
                    push_bounded(path, k);
                    self.flatten(path, v);
                    path.truncate(len);
                    if self.stopped {
                        return;
                    }
                }
            }
            Value::Array(list) if !list.is_empty() => {
                for (i, v) in list.iter().enumerate() {
                    let len = path.len();
                    push_bounded(path, ".");
                    push_bounded(path, &i.to_string());
                    self.flatten(path, v);
                    path.truncate(len);
                    if self.stopped {
                        return;
                    }
                }
            }
            _ => self.leaf(path, value),
        }
    }

    /// One field: kept when the include/exclude rules take its key and the
    /// field limit leaves room, else counted.
    fn leaf(&mut self, key: &str, value: &'v Value) {
        if self.visited >= MAX_LEAVES {
            self.stopped = true;
            return;
        }
        self.visited += 1;
        let rules = self.rules;
        if !rules.include.is_match(key) || rules.exclude.as_ref().is_some_and(|e| e.is_match(key)) {
            return;
        }
        if rules.field_limit == 0 || self.kept.len() < rules.field_limit {
            self.kept.push((key.to_owned(), value));
        } else {
            self.left_out += 1;
        }
    }
}

/// Appends `segment` to `path` as far as `MAX_KEY_BYTES` allows; a path cut
/// short ends in `…` and takes nothing more.
fn push_bounded(path: &mut String, segment: &str) {
    if path.len() >= MAX_KEY_BYTES {
        if !segment.is_empty() && !path.ends_with('…') {
            path.push('…');
        }
        return;
    }
    let room = MAX_KEY_BYTES - path.len();
    if segment.len() <= room {
        path.push_str(segment);
        return;
    }
    let mut end = room;
    while !segment.is_char_boundary(end) {
        end -= 1;
    }
    path.push_str(&segment[..end]);
    path.push('…');
}

/// A value as the channels show it: a string as it is, anything else as
/// compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `value` cut to `limit` characters, the last of them `…`; 0 is no limit.
fn cut(mut value: String, limit: usize) -> String {
    if limit == 0 {
        return value;
    }
    // Where the limit-th character starts; fewer characters: nothing to cut.
    let Some((at, _)) = value.char_indices().nth(limit - 1) else {
        return value;
    };
    if value[at..].chars().nth(1).is_none() {
        return value; // exactly `limit` characters
    }
    value.truncate(at);
    value.push('…');
    value
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Context settings: the defaults with these changes.
    struct Rules {
        flatten: bool,
        include: &'static str,
        exclude: &'static str,
        field_limit: usize,
        value_limit: usize,
    }

    const DEFAULTS: Rules = Rules {
        flatten: true,
        include: ".+",
        exclude: "",
        field_limit: 100,
        value_limit: 1000,
    };

    /// Builds the context of `event_data` with `rules`; compares it, in
    /// order, with `expected` (key, value) pairs.
    fn check(rules: Rules, event_data: Value, expected: &[(&str, &str)]) {
        let config = EnrichConfig {
            flatten_context: rules.flatten,
            context_include: rules.include.into(),
            context_exclude: rules.exclude.into(),
            context_field_limit: rules.field_limit,
            context_value_limit: rules.value_limit,
            ..EnrichConfig::default()
        };
        let context = ContextRules::new(&config)
            .unwrap()
            .build(event_data.as_object().unwrap());
        let got: Vec<(&str, &str)> = context
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(got, expected, "event_data {event_data}");
    }

    fn sysmon() -> Value {
        json!({"Details": {
            "EventID": 1,
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "Hashes": {"SHA256": "A1B2C3D4E5F60718293A4B5C6D7E8F90123456789ABCDEF0011223344556677"},
            "Parent": {"Image": "C:\\Windows\\explorer.exe", "ProcessId": 4120},
            "Connections": [{"DestinationIp": "198.51.100.42", "DestinationPort": 443}],
        }})
    }

    #[test]
    fn flattening() {
        // The issue's example, exactly.
        check(
            DEFAULTS,
            sysmon(),
            &[
                ("Details.EventID", "1"),
                (
                    "Details.Image",
                    r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                ),
                (
                    "Details.Hashes.SHA256",
                    "A1B2C3D4E5F60718293A4B5C6D7E8F90123456789ABCDEF0011223344556677",
                ),
                ("Details.Parent.Image", r"C:\Windows\explorer.exe"),
                ("Details.Parent.ProcessId", "4120"),
                ("Details.Connections.0.DestinationIp", "198.51.100.42"),
                ("Details.Connections.0.DestinationPort", "443"),
            ],
        );
        // Input order, not alphabetical; lists by index.
        check(
            DEFAULTS,
            json!({"z": 1, "a": {"y": 2, "b": 3}, "m": [4, [5, 6]]}),
            &[
                ("z", "1"),
                ("a.y", "2"),
                ("a.b", "3"),
                ("m.0", "4"),
                ("m.1.0", "5"),
                ("m.1.1", "6"),
            ],
        );
        // Scalars: strings without quotes, the rest as JSON text.
        check(
            DEFAULTS,
            json!({"s": "text", "e": "", "n": -2.5, "t": true, "f": false, "null": null}),
            &[
                ("s", "text"),
                ("e", ""),
                ("n", "-2.5"),
                ("t", "true"),
                ("f", "false"),
                ("null", "null"),
            ],
        );
        // Empty containers keep their key.
        check(
            DEFAULTS,
            json!({"o": {}, "l": [], "d": {"o": {}, "l": [[]]}}),
            &[("o", "{}"), ("l", "[]"), ("d.o", "{}"), ("d.l.0", "[]")],
        );
        check(DEFAULTS, json!({}), &[]);
    }

    #[test]
    fn keys_are_cut_while_they_are_built() {
        let long = "k".repeat(10_000);
        let cut_key = format!("{}…", "k".repeat(MAX_KEY_BYTES));
        // The shape of the report: one 10,000-byte key over 10,000 zeros.
        let zeros = vec![0; 10_000];
        let mut expected: Vec<(String, String)> = (0..100)
            .map(|_| (cut_key.clone(), "0".to_owned()))
            .collect();
        expected.push((MORE_FIELDS_KEY.to_owned(), "9900 more fields".to_owned()));
        let config = EnrichConfig::default();
        let context = ContextRules::new(&config)
            .unwrap()
            .build(json!({ long.clone(): zeros }).as_object().unwrap());
        let got: Vec<(String, String)> = context.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(got, expected);

        // Cut at a character boundary; a short key under a cut one still ends in "…".
        let mut path = "a".repeat(MAX_KEY_BYTES - 1);
        push_bounded(&mut path, "é");
        assert_eq!(path, format!("{}…", "a".repeat(MAX_KEY_BYTES - 1)));
        let mut exact = "a".repeat(MAX_KEY_BYTES);
        push_bounded(&mut exact, ".");
        assert!(exact.ends_with('…'));
        let before = exact.clone();
        push_bounded(&mut exact, "more");
        assert_eq!(exact, before, "nothing is added after the cut");
    }

    #[test]
    fn at_most_max_leaves_are_looked_at() {
        let many: Vec<u8> = vec![1; MAX_LEAVES + 10];
        let config = EnrichConfig {
            context_include: "^x$".into(),
            ..EnrichConfig::default()
        };
        let context = ContextRules::new(&config)
            .unwrap()
            .build(json!({"list": many, "x": 1}).as_object().unwrap());
        assert_eq!(
            context,
            vec![ContextEntry {
                key: MORE_FIELDS_KEY.into(),
                value: format!("more fields, past the {MAX_LEAVES} looked at")
            }],
            "the walk stopped before x"
        );
    }

    #[test]
    fn flatten_off() {
        let off = || Rules {
            flatten: false,
            ..DEFAULTS
        };
        check(
            off(),
            json!({"Pid": 4120, "Details": {"Image": "C:\\x.exe", "Ports": [443, 80]}, "Name": "cmd", "o": {}, "n": null}),
            &[
                ("Pid", "4120"),
                ("Details", r#"{"Image":"C:\\x.exe","Ports":[443,80]}"#),
                ("Name", "cmd"),
                ("o", "{}"),
                ("n", "null"),
            ],
        );
        // Include/exclude see the top-level keys only.
        check(
            Rules {
                include: "^Details\\.",
                ..off()
            },
            sysmon(),
            &[],
        );
    }

    #[test]
    fn include_exclude() {
        let data = || json!({"FileName": "/etc/shadow", "Pid": 4120, "Details": {"Image": "cat", "Parent": {"Image": "bash"}}});
        check(
            Rules {
                include: "Image$",
                ..DEFAULTS
            },
            data(),
            &[("Details.Image", "cat"), ("Details.Parent.Image", "bash")],
        );
        // Searches on the flattened key, not anchored.
        check(
            Rules {
                include: "Parent",
                ..DEFAULTS
            },
            data(),
            &[("Details.Parent.Image", "bash")],
        );
        check(
            Rules {
                exclude: "^Details\\.Parent|^Pid$",
                ..DEFAULTS
            },
            data(),
            &[("FileName", "/etc/shadow"), ("Details.Image", "cat")],
        );
        // Exclude wins over include.
        check(
            Rules {
                include: "Image",
                exclude: "Parent",
                ..DEFAULTS
            },
            data(),
            &[("Details.Image", "cat")],
        );
        check(
            Rules {
                include: "^$",
                ..DEFAULTS
            },
            data(),
            &[],
        );
    }

    #[test]
    fn field_limit() {
        let data = || json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4, "f": 5});
        check(
            Rules {
                field_limit: 2,
                ..DEFAULTS
            },
            data(),
            &[("a", "1"), ("b.c", "2"), ("…", "3 more fields")],
        );
        check(
            Rules {
                field_limit: 4,
                ..DEFAULTS
            },
            data(),
            &[
                ("a", "1"),
                ("b.c", "2"),
                ("b.d", "3"),
                ("e", "4"),
                ("…", "1 more field"),
            ],
        );
        // Exactly at the limit: no marker.
        check(
            Rules {
                field_limit: 5,
                ..DEFAULTS
            },
            data(),
            &[
                ("a", "1"),
                ("b.c", "2"),
                ("b.d", "3"),
                ("e", "4"),
                ("f", "5"),
            ],
        );
        // Counted after include/exclude.
        check(
            Rules {
                field_limit: 1,
                exclude: "^b",
                ..DEFAULTS
            },
            data(),
            &[("a", "1"), ("…", "2 more fields")],
        );
        // 0: no limit.
        check(
            Rules {
                field_limit: 0,
                ..DEFAULTS
            },
            data(),
            &[
                ("a", "1"),
                ("b.c", "2"),
                ("b.d", "3"),
                ("e", "4"),
                ("f", "5"),
            ],
        );
    }

    #[test]
    fn value_limit() {
        let limit = |value_limit| Rules {
            value_limit,
            ..DEFAULTS
        };
        check(limit(5), json!({"v": "abcdefgh"}), &[("v", "abcd…")]);
        check(limit(5), json!({"v": "abcde"}), &[("v", "abcde")]);
        check(limit(5), json!({"v": "abcdef"}), &[("v", "abcd…")]);
        check(limit(5), json!({"v": "abc"}), &[("v", "abc")]);
        check(limit(1), json!({"v": "ab"}), &[("v", "…")]);
        // Characters, not bytes.
        check(limit(4), json!({"v": "ÄÖÜß€"}), &[("v", "ÄÖÜ…")]);
        check(limit(4), json!({"v": "日本語です"}), &[("v", "日本語…")]);
        check(limit(4), json!({"v": "日本語で"}), &[("v", "日本語で")]);
        check(limit(3), json!({"v": "🦖🦖🦖🦖"}), &[("v", "🦖🦖…")]);
        // Numbers and JSON text are cut too; keys never.
        check(
            limit(4),
            json!({"LongKeyName": 1234567}),
            &[("LongKeyName", "123…")],
        );
        check(
            Rules {
                value_limit: 6,
                flatten: false,
                ..DEFAULTS
            },
            json!({"o": {"a": [1, 2, 3]}}),
            &[("o", r#"{"a":…"#)],
        );
        // 0: no limit.
        check(
            limit(0),
            json!({"v": "x".repeat(5000)}),
            &[("v", &"x".repeat(5000))],
        );
        // Both limits at once: the marker is not cut.
        check(
            Rules {
                value_limit: 2,
                field_limit: 1,
                ..DEFAULTS
            },
            json!({"a": "long", "b": "long"}),
            &[("a", "l…"), ("…", "1 more field")],
        );
    }
}
