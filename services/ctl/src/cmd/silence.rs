//! `talonctl silence add|list|expire`: silences through the console's API,
//! as a console user (an analyst or administrator to change them), like
//! Alertmanager's `amtool silence`.
//!
//! `talonctl silence add --for 2h --comment "nightly scan" name=~"^Sigma.*" hostname=scanner-01`

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use talon_kit::config::{Config, Env};
use talon_proto::{MatchOp, Matcher};

use super::alerts::{at, Api, ConsoleArgs};

/// Arguments of `talonctl silence`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a silence: matchers as FIELD=VALUE, FIELD!=VALUE, FIELD=~REGEX
    /// or FIELD!~REGEX (fields: name, client_id, hostname, fqdn, labels,
    /// artifact, artifact_type, severity, source, org_id, channel,
    /// context.<key>). Prints its id.
    Add(AddArgs),
    /// Silences, newest first, a line each: id, state, ends, hidden
    /// alerts, author, matchers, comment (tab-separated).
    List(ListArgs),
    /// End silences now (they stay listed, as expired).
    Expire(ExpireArgs),
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// How long: 90m, 2h, 1d12h, 1w (from its start).
    #[arg(long = "for", conflicts_with = "until")]
    duration: Option<String>,
    /// Or when it ends (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// When it starts (RFC 3339); default: now.
    #[arg(long)]
    from: Option<String>,
    /// Why (required).
    #[arg(long)]
    comment: String,
    #[arg(required = true)]
    matchers: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// active, pending or expired (comma-separated); default: all.
    #[arg(long)]
    state: Option<String>,
    /// Print whole silences as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ExpireArgs {
    #[arg(required = true)]
    ids: Vec<String>,
}

pub async fn run(args: Args, config: &Config, env: &Env) -> anyhow::Result<()> {
    let api = Api::open(args.console, config, env).await?;
    let result = match args.command {
        Command::Add(a) => add(&api, a).await,
        Command::List(a) => list(&api, a).await,
        Command::Expire(a) => expire(&api, a).await,
    };
    api.logout().await;
    result
}

async fn add(api: &Api, args: AddArgs) -> anyhow::Result<()> {
    let matchers = args
        .matchers
        .iter()
        .map(|m| parse_matcher(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let starts = match &args.from {
        Some(t) => time("--from", t)?,
        None => Utc::now(),
    };
    let ends = match (&args.duration, &args.until) {
        (Some(d), _) => starts + parse_duration(d)?,
        (None, Some(t)) => time("--until", t)?,
        (None, None) => bail!("say how long: --for 2h, or --until TIME"),
    };
    let mut body = json!({"matchers": matchers, "ends_at": ends, "comment": args.comment});
    if let (Some(_), Some(obj)) = (&args.from, body.as_object_mut()) {
        obj.insert("starts_at".into(), json!(starts));
    }
    let silence = api
        .send(api.request(Method::POST, "/v1/silences").json(&body))
        .await?;
    println!("{}", at(&silence, "id").as_str().unwrap_or(""));
    Ok(())
}

async fn list(api: &Api, args: ListArgs) -> anyhow::Result<()> {
    let mut request = api.request(Method::GET, "/v1/silences");
    if let Some(state) = &args.state {
        request = request.query(&[("state", state)]);
    }
    let answer = api.send(request).await?;
    for s in at(&answer, "silences").as_array().into_iter().flatten() {
        if args.json {
            println!("{s}");
        } else {
            println!("{}", silence_line(s));
        }
    }
    Ok(())
}

async fn expire(api: &Api, args: ExpireArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for id in &args.ids {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            println!("{id}\tfailed: not a silence id");
            failed += 1;
            continue;
        }
        let path = format!("/v1/silences/{id}/expire");
        match api
            .send(api.request(Method::POST, &path).json(&json!({})))
            .await
        {
            Ok(s) => println!(
                "{id}\t{} at {}",
                at(&s, "state").as_str().unwrap_or("?"),
                at(&s, "ends_at").as_str().unwrap_or("?")
            ),
            Err(e) => {
                println!("{id}\tfailed: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} not expired", args.ids.len());
    }
    Ok(())
}

fn time(flag: &str, t: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{flag}: not an RFC 3339 time ({t:?})"))
}

/// `FIELD=VALUE`, `FIELD!=VALUE`, `FIELD=~REGEX`, `FIELD!~REGEX`; a value
/// in double or single quotes loses them (`name=~"^Sigma.*"` as typed in
/// a script that kept the quotes).
pub fn parse_matcher(text: &str) -> anyhow::Result<Matcher> {
    let at = text.find(['=', '!']).with_context(|| {
        format!("{text:?}: not FIELD=VALUE, FIELD!=VALUE, FIELD=~REGEX or FIELD!~REGEX")
    })?;
    let (field, rest) = text.split_at(at);
    let (op, value) = ["!=", "!~", "=~", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
        .with_context(|| format!("{text:?}: no operator (=, !=, =~, !~) after {field:?}"))?;
    if field.trim().is_empty() {
        bail!("{text:?}: no field before {op}");
    }
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Ok(Matcher {
        field: field.trim().to_owned(),
        op: MatchOp::parse(op).unwrap_or(MatchOp::Equal),
        value: value.to_owned(),
    })
}

/// `90s`, `45m`, `2h`, `1d12h`, `1w`: a number and a unit, repeated.
pub fn parse_duration(text: &str) -> anyhow::Result<chrono::Duration> {
    let mut total = chrono::Duration::zero();
    let mut number = String::new();
    let bad = || anyhow::anyhow!("--for {text:?}: a duration like 90m, 2h, 1d12h or 1w");
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let secs = n.checked_mul(unit).ok_or_else(bad)?;
        total = total
            .checked_add(&chrono::Duration::try_seconds(secs).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if !number.is_empty() || total <= chrono::Duration::zero() {
        return Err(bad());
    }
    Ok(total)
}

/// One silence on one line (tabs and line breaks inside become spaces).
fn silence_line(s: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").replace(['\t', '\r', '\n'], " ");
    let matchers: Vec<String> = at(s, "matchers")
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}{}{:?}",
                text(at(m, "field")),
                text(at(m, "op")),
                at(m, "value").as_str().unwrap_or("")
            )
        })
        .collect();
    [
        text(at(s, "id")),
        text(at(s, "state")),
        text(at(s, "ends_at")),
        at(s, "hidden").to_string(),
        text(at(s, "created_by")),
        matchers.join(" ").replace(['\t', '\r', '\n'], " "),
        text(at(s, "comment")),
    ]
    .join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_as_typed() {
        let m = |t: &str| {
            parse_matcher(t)
                .map(|m| (m.field, m.op.as_str(), m.value))
                .ok()
        };
        let own = |f: &str, o: &'static str, v: &str| Some((f.to_owned(), o, v.to_owned()));
        assert_eq!(m("name=~\"^Sigma.*\""), own("name", "=~", "^Sigma.*"));
        assert_eq!(m("hostname=scanner-01"), own("hostname", "=", "scanner-01"));
        assert_eq!(m("severity!=low"), own("severity", "!=", "low"));
        assert_eq!(
            m("context.User!~'svc-.*'"),
            own("context.User", "!~", "svc-.*")
        );
        assert_eq!(m("context.Cmd=a=b"), own("context.Cmd", "=", "a=b"));
        assert_eq!(m("hostname="), own("hostname", "=", ""));
        for bad in ["hostname", "=x", "name!x", "!=x"] {
            assert!(parse_matcher(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_add_up_and_nonsense_is_refused() {
        let secs = |t: &str| parse_duration(t).map(|d| d.num_seconds()).ok();
        assert_eq!(secs("2h"), Some(7200));
        assert_eq!(secs("1d12h"), Some(129_600));
        assert_eq!(secs("90m"), Some(5400));
        assert_eq!(secs("1w"), Some(604_800));
        for bad in [
            "",
            "2",
            "h",
            "2x",
            "0m",
            "-1h",
            "99999999999999999999d",
            "9999999999999999w",
        ] {
            assert_eq!(secs(bad), None, "{bad}");
        }
    }
}
