//! `talonctl alerts`: the console's alerts and their triage, over its HTTP
//! API, so triage can be scripted. It acts as a console user: with an API
//! token (`--token`, `TALON_CONSOLE_TOKEN`; a user's `tokens_env`), or by
//! logging in as `--user` with the password of `TALON_CONSOLE_PASSWORD` (or
//! asked on a terminal), and logging out at the end.

use std::io::IsTerminal;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use reqwest::{header, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use talon_kit::config::{Config, Env};

/// Arguments of `talonctl alerts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: Command,
}

/// Which console, and who acts there (`talonctl alerts`, `talonctl
/// silence`).
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// The console's address; default: `[console].http_listen` of the config.
    #[arg(long, global = true)]
    url: Option<String>,
    /// A console API token (a user's `tokens_env`).
    #[arg(
        long,
        global = true,
        env = "TALON_CONSOLE_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Log in as this user instead (password: `TALON_CONSOLE_PASSWORD`, or
    /// asked on a terminal).
    #[arg(long, global = true, env = "TALON_CONSOLE_USER")]
    user: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Alerts, newest first, a line each: id, received, severity, state,
    /// assignee, client, name (tab-separated).
    List(ListArgs),
    /// One alert whole: its fields, triage, links, deliveries and audit.
    Show(ShowArgs),
    /// Acknowledge alerts (someone is on them).
    Ack(IdsArgs),
    /// Assign an alert to a user.
    Assign(AssignArgs),
    /// Resolve alerts with a verdict.
    Resolve(ResolveArgs),
    /// Reopen a resolved alert.
    Reopen(IdsArgs),
    /// Add a note to an alert.
    Note(NoteArgs),
}

/// Arguments of `talonctl alerts list`: the filters of `GET /v1/alerts`.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// open, acknowledged or resolved (comma-separated for several).
    #[arg(long)]
    state: Option<String>,
    /// info, low, medium, high, critical or none (comma-separated).
    #[arg(long)]
    severity: Option<String>,
    /// A user name, or `none` for unassigned.
    #[arg(long)]
    assignee: Option<String>,
    /// A client id or hostname.
    #[arg(long)]
    client: Option<String>,
    /// `nats`, `http` or `rule:<name>`.
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    artifact: Option<String>,
    /// Routed to this channel id.
    #[arg(long)]
    channel: Option<String>,
    /// Words that must each appear in the name or the context.
    #[arg(long)]
    q: Option<String>,
    /// Received at or after (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print whole rows as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    id: String,
    /// Print the whole answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct IdsArgs {
    #[arg(required = true)]
    ids: Vec<String>,
    /// A note recorded with the change.
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, clap::Args)]
struct AssignArgs {
    id: String,
    /// The user who takes it.
    assignee: String,
}

#[derive(Debug, clap::Args)]
struct ResolveArgs {
    #[arg(required = true)]
    ids: Vec<String>,
    /// true_positive, false_positive or benign.
    #[arg(long)]
    verdict: String,
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, clap::Args)]
struct NoteArgs {
    id: String,
    note: String,
}

/// Runs the `alerts` subcommand against the console of `--url` (or the
/// config) as the user of `--token` or `--user`.
pub async fn run(args: Args, config: &Config, env: &Env) -> anyhow::Result<()> {
    let api = Api::open(args.console, config, env).await?;
    let result = api.command(args.command).await;
    api.logout().await;
    result
}

/// The password of `TALON_CONSOLE_PASSWORD`, or asked on the terminal.
fn password(env: &Env) -> anyhow::Result<String> {
    if let Some(p) = env.get("TALON_CONSOLE_PASSWORD") {
        return Ok(p.to_owned());
    }
    if !std::io::stdin().is_terminal() {
        bail!("--user needs TALON_CONSOLE_PASSWORD (no terminal to ask on)");
    }
    super::hash_password::prompt("Password: ")
}

/// `http://host:port` of the console at `url`, or else at
/// `[console].http_listen`.
fn console_url(url: Option<&str>, config: &Config) -> String {
    let addr = url
        .unwrap_or(&config.console.http_listen)
        .trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

enum Auth {
    Token(String),
    /// The `talon_session=<token>` cookie of a login.
    Cookie(String),
}

/// The console's API as one user.
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
    auth: Auth,
}

impl Api {
    /// The console of `--url` (or the config) as the user of `--token` or
    /// `--user`; [`Api::logout`] ends a login.
    pub(crate) async fn open(args: ConsoleArgs, config: &Config, env: &Env) -> anyhow::Result<Api> {
        let base = console_url(args.url.as_deref(), config);
        let http = talon_kit::outbound::client();
        match (args.token, args.user) {
            (Some(token), _) if !token.is_empty() => Ok(Api {
                base,
                http,
                auth: Auth::Token(token),
            }),
            (_, Some(user)) => Api::login(base, http, &user, &password(env)?).await,
            _ => bail!(
                "say who acts: --token (or TALON_CONSOLE_TOKEN), or --user (or TALON_CONSOLE_USER) \
                 with TALON_CONSOLE_PASSWORD"
            ),
        }
    }

    /// Logs in as `user`.
    async fn login(
        base: String,
        http: reqwest::Client,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Api> {
        let resp = http
            .post(format!("{base}/v1/login"))
            .json(&json!({ "name": user, "password": password }))
            .send()
            .await
            .with_context(|| format!("cannot reach the console at {base}"))?;
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        answer(status, body).context("login")?;
        let cookie = cookie.context("the login answered without a session cookie")?;
        Ok(Api {
            base,
            http,
            auth: Auth::Cookie(cookie),
        })
    }

    /// Ends a login's session (an API token has none).
    pub(crate) async fn logout(&self) {
        if let Auth::Cookie(_) = self.auth {
            let _ = self
                .request(Method::POST, "/v1/logout")
                .json(&json!({}))
                .send()
                .await;
        }
    }

    async fn command(&self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::List(args) => self.list(args).await,
            Command::Show(args) => self.show(args).await,
            Command::Ack(args) => {
                self.triage(&args.ids, json!({"action": "ack", "note": args.note}))
                    .await
            }
            Command::Assign(args) => {
                self.triage(
                    &[args.id],
                    json!({"action": "assign", "assignee": args.assignee}),
                )
                .await
            }
            Command::Resolve(args) => {
                self.triage(
                    &args.ids,
                    json!({"action": "resolve", "verdict": args.verdict, "note": args.note}),
                )
                .await
            }
            Command::Reopen(args) => {
                self.triage(&args.ids, json!({"action": "reopen", "note": args.note}))
                    .await
            }
            Command::Note(args) => {
                self.triage(&[args.id], json!({"action": "note", "note": args.note}))
                    .await
            }
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Auth::Token(t) => r.bearer_auth(t),
            Auth::Cookie(c) => r.header(header::COOKIE, c),
        }
    }

    /// Sends `request`: the JSON body of a successful answer, or the status
    /// with the body's `error` (and, for a conflict, the state that won).
    pub(crate) async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let resp = request
            .send()
            .await
            .with_context(|| format!("cannot reach the console at {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        answer(status, body)
    }

    /// Prints alerts page by page until `--limit` or the last page.
    async fn list(&self, args: ListArgs) -> anyhow::Result<()> {
        let query: Vec<(&str, String)> = [
            ("state", args.state),
            ("severity", args.severity),
            ("assignee", args.assignee),
            ("client", args.client),
            ("source", args.source),
            ("artifact", args.artifact),
            ("channel", args.channel),
            ("q", args.q),
            ("from", args.from),
            ("to", args.to),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let mut printed = 0usize;
        let mut cursor: Option<String> = None;
        while printed < args.limit {
            let mut q = query.clone();
            q.push(("limit", (args.limit - printed).min(500).to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self
                .send(self.request(Method::GET, "/v1/alerts").query(&q))
                .await?;
            for a in at(&page, "alerts").as_array().into_iter().flatten() {
                if args.json {
                    println!("{a}");
                } else {
                    println!("{}", alert_line(a));
                }
                printed += 1;
            }
            match at(&page, "next_cursor").as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(())
    }

    async fn show(&self, args: ShowArgs) -> anyhow::Result<()> {
        let path = format!("/v1/alerts/{}", path_segment(&args.id)?);
        let detail = self.send(self.request(Method::GET, &path)).await?;
        if args.json {
            println!("{detail}");
        } else {
            print!("{}", detail_text(&detail));
        }
        Ok(())
    }

    /// One triage action on each of `ids`: a line per alert with its new
    /// state, or its failure (and the command fails if any did).
    async fn triage(&self, ids: &[String], mut action: Value) -> anyhow::Result<()> {
        if let Some(obj) = action.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        if let [id] = ids {
            let path = format!("/v1/alerts/{}/triage", path_segment(id)?);
            let triage = self
                .send(self.request(Method::POST, &path).json(&action))
                .await
                .with_context(|| id.clone())?;
            println!("{id}\t{}", triage_text(&triage));
            return Ok(());
        }
        let mut body = action;
        if let Some(obj) = body.as_object_mut() {
            obj.insert("ids".into(), json!(ids));
        }
        let answer = self
            .send(self.request(Method::POST, "/v1/alerts/triage").json(&body))
            .await?;
        let mut failed = 0;
        for r in at(&answer, "results").as_array().into_iter().flatten() {
            let id = at(r, "id").as_str().unwrap_or("");
            if at(r, "status") == 200 {
                println!("{id}\t{}", triage_text(at(r, "triage")));
            } else {
                failed += 1;
                println!(
                    "{id}\tfailed ({}): {}",
                    at(r, "status"),
                    at(r, "error").as_str().unwrap_or("(no reason)")
                );
            }
        }
        if failed > 0 {
            bail!("{failed} of {} not changed", ids.len());
        }
        Ok(())
    }
}

/// `v`'s field `key`, or null (a missing field or a `v` that is no object).
pub(crate) fn at<'v>(v: &'v Value, key: &str) -> &'v Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// An alert id as one URL path segment: ids are letters, digits, `.`, `_`
/// and `-`; anything else is refused here rather than sent.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        bail!("{id:?} is not an alert id");
    }
    Ok(id)
}

/// The body of an answer, or for a failure the status and the reason (for
/// 409, the current state too).
fn answer(status: StatusCode, body: Value) -> anyhow::Result<Value> {
    if status.is_success() {
        return Ok(body);
    }
    let reason = at(&body, "error").as_str().unwrap_or("(no reason)");
    if status == StatusCode::CONFLICT && at(&body, "triage").is_object() {
        bail!(
            "{status}: {reason}; now {}",
            triage_text(at(&body, "triage"))
        );
    }
    bail!("{status}: {reason}")
}

/// `state`, then `assignee` and `verdict` when set, and the version.
fn triage_text(t: &Value) -> String {
    let mut out = at(t, "state").as_str().unwrap_or("?").to_owned();
    if let Some(a) = at(t, "assignee").as_str() {
        out.push_str(&format!(" assignee={a}"));
    }
    if let Some(v) = at(t, "verdict").as_str() {
        out.push_str(&format!(" verdict={v}"));
    }
    out.push_str(&format!(" version={}", at(t, "version")));
    out
}

/// One row of the list, tab-separated (tabs and line breaks inside values
/// become spaces, so a line is always one alert).
fn alert_line(a: &Value) -> String {
    let text = |k: &str| {
        a[k].as_str()
            .unwrap_or("-")
            .replace(['\t', '\r', '\n'], " ")
    };
    let client = match (at(a, "hostname").as_str(), at(a, "client_id").as_str()) {
        (Some(h), _) => h.to_owned(),
        (None, Some(c)) => c.to_owned(),
        _ => "-".to_owned(),
    };
    [
        text("id"),
        text("received_at"),
        text("severity"),
        text("state"),
        text("assignee"),
        client.replace(['\t', '\r', '\n'], " "),
        text("name"),
    ]
    .join("\t")
}

/// One alert for a person to read: fields, triage, links, context,
/// deliveries and the audit trail.
fn detail_text(d: &Value) -> String {
    let a = at(d, "alert");
    let one = |v: &Value| v.as_str().map(|s| s.replace(['\r', '\n'], " "));
    let mut out = String::new();
    let mut line = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!("{k:<12}{v}\n"));
        }
    };
    line("id", one(at(a, "id")));
    line("name", one(at(a, "name")));
    line("severity", one(at(a, "severity")));
    line("triage", Some(triage_text(at(d, "triage"))));
    line("client", one(at(a, "client_id")));
    line("hostname", one(at(at(a, "client"), "hostname")));
    line("artifact", one(at(a, "artifact")));
    line("source", one(at(a, "source")));
    line("received", one(at(a, "received_at")));
    for kind in ["host", "flow", "hunt"] {
        line(kind, one(at(at(a, "links"), kind)));
    }
    let p = at(d, "repeat_of");
    if p.is_object() {
        line(
            "repeat of",
            Some(format!(
                "{} ({})",
                at(p, "id").as_str().unwrap_or(""),
                at(p, "state").as_str().unwrap_or("")
            )),
        );
    }
    for e in at(a, "context").as_array().into_iter().flatten() {
        line(
            &format!("  {}", at(e, "key").as_str().unwrap_or("")),
            one(at(e, "value")),
        );
    }
    for x in at(d, "deliveries").as_array().into_iter().flatten() {
        line(
            "delivery",
            Some(format!(
                "{} {} {}",
                at(x, "channel").as_str().unwrap_or(""),
                at(x, "outcome").as_str().unwrap_or(""),
                at(x, "at").as_str().unwrap_or("")
            )),
        );
    }
    for e in at(d, "audit").as_array().into_iter().flatten() {
        let mut what = format!(
            "{} {} {}",
            at(e, "at").as_str().unwrap_or(""),
            at(e, "by").as_str().unwrap_or(""),
            at(e, "action").as_str().unwrap_or("")
        );
        if let Some(n) = one(at(e, "note")) {
            what.push_str(&format!(": {n}"));
        }
        line("audit", Some(what));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_line_is_one_line_of_seven_fields() {
        let a = json!({"id": "a1", "received_at": "2026-12-01T10:00:00Z", "severity": "high",
                       "state": "open", "client_id": "C.1", "hostname": "ws\t01",
                       "name": "Honey\r\nfile"});
        assert_eq!(
            alert_line(&a),
            "a1\t2026-12-01T10:00:00Z\thigh\topen\t-\tws 01\tHoney  file"
        );
    }

    #[test]
    fn ids_are_checked_before_they_reach_a_path() {
        assert!(path_segment("9b1f-2.x_y").is_ok());
        for bad in ["", "../v1/login", "a/b", "a?b", &"x".repeat(129)] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_conflict_says_what_won() {
        let e = answer(
            StatusCode::CONFLICT,
            json!({"error": "changed meanwhile", "triage": {"state": "acknowledged", "assignee": "bob", "version": 7}}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "409 Conflict: changed meanwhile; now acknowledged assignee=bob version=7"
        );
    }
}
