//! The templates of `[[rules]]` (`alert.name`, every `alert.set` value):
//! text with placeholders filled from a monitoring row.
//!
//! - `{Column}` is the row's column; `{Nested.Path}` walks nested objects
//!   (and lists, by index: `{Details.Connections.0.DestinationIp}`). A column
//!   whose own name holds dots is found as it is before the path is walked.
//! - `{client.hostname}` and `{client.fqdn}` come from the client inventory,
//!   looked up by the row's client id; an unknown client, or one without
//!   that field, renders as its client id.
//! - `{{` and `}}` are literal braces.
//! - Strings render as they are, other values as JSON text (`42`, `true`,
//!   `null`, `{"a":1}`).
//! - A placeholder naming a column the row lacks is an error naming it.
//!
//! Parsing happens once, when the config is loaded; rendering is a plain
//! function of the row and a client lookup. No I/O here.

use serde_json::{Map, Value};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// A column, or a dotted path into one.
    Column(String),
    /// `{client.<field>}` from the inventory.
    Client(ClientField),
}

/// The inventory fields a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientField {
    Hostname,
    Fqdn,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unclosed `{{` at offset {0} (write `{{{{` for a literal brace)")]
    Unclosed(usize),
    #[error("unmatched `}}` at offset {0} (write `}}}}` for a literal brace)")]
    Unmatched(usize),
    #[error("empty placeholder `{{}}` at offset {0}")]
    Empty(usize),
    #[error("placeholder {{{0}}} has an empty path segment")]
    BadPath(String),
    #[error("{{client.{0}}} is not a client field (client.hostname or client.fqdn)")]
    UnknownClientField(String),
}

/// Why a template cannot be rendered for a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the row has no column {0:?}")]
    MissingColumn(String),
}

/// The client details a template can use, as the inventory knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The row's client id, the stand-in for unknown details.
    pub id: Option<String>,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
}

impl Client {
    fn field(&self, field: ClientField) -> Result<&str, RenderError> {
        let known = match field {
            ClientField::Hostname => self.hostname.as_deref(),
            ClientField::Fqdn => self.fqdn.as_deref(),
        };
        known
            .filter(|v| !v.is_empty())
            .or(self.id.as_deref())
            .ok_or_else(|| RenderError::MissingColumn(CLIENT_ID_COLUMN.to_owned()))
    }
}

/// The column holding a row's client id (Velociraptor's client event rows
/// carry it).
pub const CLIENT_ID_COLUMN: &str = "ClientId";

impl Template {
    pub fn parse(text: &str) -> Result<Template, ParseError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(ParseError::Unmatched(at)),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => return Err(ParseError::Unclosed(at)),
                            Some((_, c)) => name.push(c),
                        }
                    }
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(ParseError::Empty(at));
                    }
                    if name.split('.').any(|part| part.trim().is_empty()) {
                        return Err(ParseError::BadPath(name.to_owned()));
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(placeholder(name)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Does the template use the client inventory?
    pub fn uses_client(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Client(_)))
    }

    /// The template as text.
    pub fn render(&self, row: &Map<String, Value>, client: &Client) -> Result<String, RenderError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Column(path) => push_value(&mut out, lookup(row, path)?),
                Segment::Client(field) => out.push_str(client.field(*field)?),
            }
        }
        Ok(out)
    }

    /// The template as a value: a template that is exactly one column
    /// placeholder keeps the column's type (`"{Pid}"` gives `42`, not
    /// `"42"`); anything else renders as a string.
    pub fn render_value(
        &self,
        row: &Map<String, Value>,
        client: &Client,
    ) -> Result<Value, RenderError> {
        match self.segments.as_slice() {
            [Segment::Column(path)] => lookup(row, path).cloned(),
            _ => self.render(row, client).map(Value::String),
        }
    }
}

fn placeholder(name: &str) -> Result<Segment, ParseError> {
    match name.strip_prefix("client.") {
        Some("hostname") => Ok(Segment::Client(ClientField::Hostname)),
        Some("fqdn") => Ok(Segment::Client(ClientField::Fqdn)),
        Some(other) => Err(ParseError::UnknownClientField(other.to_owned())),
        None => Ok(Segment::Column(name.to_owned())),
    }
}

/// The value at `path` in `row`: a column of that exact name, else the
/// dotted path walked through objects and list indices.
pub fn lookup<'r>(row: &'r Map<String, Value>, path: &str) -> Result<&'r Value, RenderError> {
    if let Some(v) = row.get(path) {
        return Ok(v);
    }
    let missing = || RenderError::MissingColumn(path.to_owned());
    let mut parts = path.split('.');
    let first = parts.next().ok_or_else(missing)?;
    let mut at = row.get(first).ok_or_else(missing)?;
    for part in parts {
        at = match at {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(missing)?;
    }
    Ok(at)
}

/// A value as template text: strings as they are, the rest as JSON.
pub fn text_of(value: &Value) -> String {
    let mut out = String::new();
    push_value(&mut out, value);
    out
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "FileName": "/home/a/honey.docx",
            "Pid": 42,
            "Ok": true,
            "Nothing": null,
            "ClientId": "C.1",
            "Details": {"Connections": [{"DestinationIp": "10.0.0.9"}], "Image": "x.exe"},
            "System.EventID": 4624,
        }) else {
            unreachable!("an object literal")
        };
        map
    }

    fn known() -> Client {
        Client {
            id: Some("C.1".into()),
            hostname: Some("web-1".into()),
            fqdn: Some("web-1.example.org".into()),
        }
    }

    /// Parses `template` and renders it for `row()` with `client`.
    fn check(template: &str, client: &Client, expected: Result<&str, &str>) {
        let got = Template::parse(template)
            .map_err(|e| e.to_string())
            .and_then(|t| t.render(&row(), client).map_err(|e| e.to_string()));
        assert_eq!(
            got.as_deref(),
            expected.map_err(|e| e.to_owned()).as_deref(),
            "{template:?}"
        );
    }

    #[test]
    fn rendering() {
        let unknown = Client {
            id: Some("C.9".into()),
            ..Client::default()
        };
        let nobody = Client::default();
        let cases: &[(&str, &Client, Result<&str, &str>)] = &[
            ("plain", &known(), Ok("plain")),
            ("", &known(), Ok("")),
            (
                r#"Honey file "{FileName}" accessed on {client.hostname}"#,
                &known(),
                Ok(r#"Honey file "/home/a/honey.docx" accessed on web-1"#),
            ),
            ("{Pid}/{Ok}/{Nothing}", &known(), Ok("42/true/null")),
            ("{Details.Image}", &known(), Ok("x.exe")),
            (
                "{Details.Connections.0.DestinationIp}",
                &known(),
                Ok("10.0.0.9"),
            ),
            (
                "{Details.Connections}",
                &known(),
                Ok(r#"[{"DestinationIp":"10.0.0.9"}]"#),
            ),
            ("{System.EventID}", &known(), Ok("4624")),
            ("{ FileName }", &known(), Ok("/home/a/honey.docx")),
            ("{{literal}} {{{Pid}}}", &known(), Ok("{literal} {42}")),
            ("{client.fqdn}", &known(), Ok("web-1.example.org")),
            ("{client.hostname}", &unknown, Ok("C.9")),
            ("{client.fqdn}", &unknown, Ok("C.9")),
            (
                "{client.hostname}",
                &nobody,
                Err("the row has no column \"ClientId\""),
            ),
            (
                "{Missing}",
                &known(),
                Err("the row has no column \"Missing\""),
            ),
            (
                "{Details.Nope}",
                &known(),
                Err("the row has no column \"Details.Nope\""),
            ),
            (
                "{Details.Connections.3.DestinationIp}",
                &known(),
                Err("the row has no column \"Details.Connections.3.DestinationIp\""),
            ),
            ("{Pid.x}", &known(), Err("the row has no column \"Pid.x\"")),
            (
                "a {b",
                &known(),
                Err("unclosed `{` at offset 2 (write `{{` for a literal brace)"),
            ),
            (
                "a {b{c}}",
                &known(),
                Err("unclosed `{` at offset 2 (write `{{` for a literal brace)"),
            ),
            (
                "a } b",
                &known(),
                Err("unmatched `}` at offset 2 (write `}}` for a literal brace)"),
            ),
            ("{}", &known(), Err("empty placeholder `{}` at offset 0")),
            (
                "{a..b}",
                &known(),
                Err("placeholder {a..b} has an empty path segment"),
            ),
            (
                "{client.os}",
                &known(),
                Err("{client.os} is not a client field (client.hostname or client.fqdn)"),
            ),
        ];
        for (template, client, expected) in cases {
            check(template, client, *expected);
        }
    }

    #[test]
    fn a_lone_column_keeps_its_type() {
        let value = |t: &str| Template::parse(t).unwrap().render_value(&row(), &known());
        assert_eq!(value("{Pid}"), Ok(json!(42)));
        assert_eq!(
            value("{Details.Connections.0}"),
            Ok(json!({"DestinationIp": "10.0.0.9"}))
        );
        assert_eq!(value("pid {Pid}"), Ok(json!("pid 42")));
        assert_eq!(value("{client.hostname}"), Ok(json!("web-1")));
        assert_eq!(value("CLIENT_EVENT"), Ok(json!("CLIENT_EVENT")));
        assert!(Template::parse("{client.fqdn}").unwrap().uses_client());
        assert!(!Template::parse("{ClientId}").unwrap().uses_client());
    }
}
