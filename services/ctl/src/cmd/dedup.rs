//! `talonctl dedup`: dedup windows, through a dedup replica's HTTP API.

use anyhow::{bail, Context as _};
use clap::Subcommand;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use talon_kit::config::{split_tokens, Config, Env};

/// Arguments of `talonctl dedup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The replica's address; default: `[dedup].http_listen` of the config.
    #[arg(long, global = true)]
    url: Option<String>,
    /// The API's bearer token; default: the first of `[dedup].tokens_env`.
    #[arg(long, global = true, env = "TALON_DEDUP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List windows, in key order.
    List(ListArgs),
    /// Forget a key's window: its next alert is sent and opens a new one.
    Forget(ForgetArgs),
}

/// Arguments of `talonctl dedup list`.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Ended windows too (those kept for `suppressed_before`).
    #[arg(long)]
    all: bool,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
    /// Print whole records as JSON lines.
    #[arg(long)]
    json: bool,
}

/// Arguments of `talonctl dedup forget`.
#[derive(Debug, clap::Args)]
struct ForgetArgs {
    key: String,
}

/// Runs the `dedup` subcommand given against the replica of `--url` (or
/// the config), with the token of `--token` (or the config's environment).
pub async fn run(args: Args, config: &Config, env: &Env) -> anyhow::Result<()> {
    let api = Api {
        base: windows_url(args.url.as_deref(), config),
        token: args
            .token
            .or_else(|| {
                split_tokens(env, &config.dedup.tokens_env)
                    .into_iter()
                    .next()
            })
            .unwrap_or_default(),
        http: talon_kit::outbound::client(),
    };
    match args.command {
        Command::List(args) => api.list(args).await,
        Command::Forget(args) => api.forget(&args.key).await,
    }
}

/// `http://host:port/v1/windows` of the dedup replica at `url`, or else at
/// `[dedup].http_listen`.
fn windows_url(url: Option<&str>, config: &Config) -> String {
    let addr = url.unwrap_or(&config.dedup.http_listen);
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        format!("{addr}/v1/windows")
    } else {
        format!("http://{addr}/v1/windows")
    }
}

/// The windows API of one replica.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// Prints the windows a line each (or as JSON lines), fetching them a
    /// page at a time until there are no more or `--limit` are printed.
    async fn list(&self, args: ListArgs) -> anyhow::Result<()> {
        let mut after: Option<String> = None;
        let mut printed = 0usize;
        loop {
            let page = args.limit.map_or(1000, |l| (l - printed).min(1000));
            let mut query = vec![
                ("prefix", args.prefix.clone()),
                ("limit", page.to_string()),
                ("all", args.all.to_string()),
            ];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let body = self.send(self.request(Method::GET).query(&query)).await?;
            for w in body
                .get("windows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if args.json {
                    println!("{w}");
                } else {
                    println!("{}", window_line(w));
                }
                printed += 1;
            }
            match body.get("next").and_then(Value::as_str) {
                Some(next) if args.limit.is_none_or(|l| printed < l) => {
                    after = Some(next.to_owned())
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Forgets `key`'s window and says whether it had one.
    async fn forget(&self, key: &str) -> anyhow::Result<()> {
        let body = self
            .send(self.request(Method::DELETE).query(&[("key", key)]))
            .await?;
        if body.get("forgotten").and_then(Value::as_bool) == Some(true) {
            println!("forgot {key:?}");
        } else {
            println!("{key:?} had no window");
        }
        Ok(())
    }

    /// A request to the windows URL with the bearer token.
    fn request(&self, method: Method) -> RequestBuilder {
        self.http
            .request(method, &self.base)
            .bearer_auth(&self.token)
    }

    /// Sends `request` and returns the JSON body of a successful answer.
    async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let resp = request
            .send()
            .await
            .with_context(|| format!("cannot reach dedup at {}", self.base))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .context("the dedup API answered without JSON")?;
        answer(status, body)
    }
}

/// The body of an answer, or for a failure the status with the body's
/// `error`.
fn answer(status: StatusCode, body: Value) -> anyhow::Result<Value> {
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body.get("error")
                .and_then(Value::as_str)
                .unwrap_or("(no reason)")
        );
    }
    Ok(body)
}

/// `KEY  WINDOW_START  WINDOW_END  suppressed=N`, tab-separated, of one
/// window record.
fn window_line(w: &Value) -> String {
    format!(
        "{}\t{}\t{}\tsuppressed={}",
        w["key"].as_str().unwrap_or(""),
        w["window_start"].as_str().unwrap_or(""),
        w["window_end"].as_str().unwrap_or(""),
        w["suppressed"]
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_windows_url_takes_an_address_or_a_url() {
        let config = Config::parse("", &Env::default()).unwrap();
        let default = windows_url(None, &config);
        assert_eq!(
            default,
            format!("http://{}/v1/windows", config.dedup.http_listen)
        );
        assert_eq!(
            windows_url(Some("127.0.0.1:9"), &config),
            "http://127.0.0.1:9/v1/windows"
        );
        assert_eq!(
            windows_url(Some("https://dedup.example/"), &config),
            "https://dedup.example/v1/windows"
        );
        assert_eq!(
            windows_url(Some("http://h:1//"), &config),
            "http://h:1/v1/windows"
        );
    }

    #[test]
    fn a_failed_answer_names_the_status_and_the_reason() {
        let ok = answer(StatusCode::OK, json!({"windows": []})).unwrap();
        assert_eq!(ok, json!({"windows": []}));
        assert_eq!(
            answer(StatusCode::UNAUTHORIZED, json!({"error": "bad token"}))
                .unwrap_err()
                .to_string(),
            "401 Unauthorized: bad token"
        );
        assert_eq!(
            answer(StatusCode::BAD_GATEWAY, json!({}))
                .unwrap_err()
                .to_string(),
            "502 Bad Gateway: (no reason)"
        );
    }

    #[test]
    fn a_window_line_is_tab_separated() {
        let w = json!({
            "key": "Honey file opened",
            "window_start": "2025-01-01T00:00:00Z",
            "window_end": "2025-01-01T01:00:00Z",
            "suppressed": 1,
        });
        assert_eq!(
            window_line(&w),
            "Honey file opened\t2025-01-01T00:00:00Z\t2025-01-01T01:00:00Z\tsuppressed=1"
        );
        assert_eq!(window_line(&json!({})), "\t\t\tsuppressed=null");
    }
}
