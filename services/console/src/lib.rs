//! talon-console: the web console on `[console].http_listen` — the page
//! (`/`), its API (`/v1/...`) and its event stream. It keeps no state of its
//! own: any replica serves any user, and a replica may be killed at any
//! time. Sessions live in `talon_sessions`, inbox messages in `INBOX`, read
//! and cleared marks in `talon_inbox_state`.

pub mod alerts;
pub mod alerts_api;
pub mod api;
pub mod catalog;
pub mod index;
pub mod limits;
pub mod page;
pub mod session;
pub mod silences_api;
pub mod store;
pub mod triage;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_nats::jetstream;
use axum::Router;
use prometheus::{IntCounterVec, Opts, Registry};
use talon_kit::config::{Config, Env};
use talon_kit::service::{self, Context, Running};
use talon_kit::silences::Silences;
use talon_kit::streams::{self, Stream};
use talon_proto::names::{metrics::CONSOLE_LOGINS_TOTAL, BUCKET_INBOX_STATE, BUCKET_SESSIONS};
use tokio_util::sync::CancellationToken;

use self::alerts::Alerts;
use self::session::{Sessions, SESSION_TTL};
use self::store::Inbox;

/// What the console needs from NATS, there once it has connected.
pub struct Backend {
    pub sessions: Sessions,
    pub inbox: Arc<Inbox>,
    pub alerts: Arc<Alerts>,
    /// `talon_silences`, watched.
    pub silences: Silences,
    /// `talon_silences`, for writes and a silence's revisions.
    pub silence_store: jetstream::kv::Store,
}

pub struct Console {
    /// User name → argon2 hash (`None`: the user cannot log in).
    users: HashMap<String, Option<String>>,
    /// User name → roles.
    roles: HashMap<String, Vec<String>>,
    /// API tokens and the user each acts as (`tokens_env` of a user).
    tokens: Vec<(String, String)>,
    backend: OnceLock<Backend>,
    shutdown: CancellationToken,
    logins: IntCounterVec,
    /// Password checks running at once.
    password_checks: tokio::sync::Semaphore,
    /// Failed logins by name and by address.
    login_limits: limits::LoginLimits,
    /// The session cookie is `Secure`.
    cookie_secure: bool,
    /// `[console].silence_max_days`.
    pub silence_max: std::time::Duration,
}

impl Console {
    /// Is `session` still good: its user still configured, with the
    /// password hash it logged in with?
    pub fn honours(&self, session: &session::Session) -> bool {
        matches!(
            self.users.get(&session.user),
            Some(Some(hash)) if session::credential(hash) == session.credential
        )
    }

    /// `user`'s roles.
    pub fn roles(&self, user: &str) -> &[String] {
        self.roles.get(user).map_or(&[], Vec::as_slice)
    }

    /// May `user` triage: an analyst or an administrator (a reader only
    /// views).
    pub fn may_triage(&self, user: &str) -> bool {
        self.roles(user)
            .iter()
            .any(|r| r == "analyst" || r == "administrator")
    }

    /// Every configured user's name, sorted.
    pub fn user_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn is_user(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The user API token `given` acts as. Every token is compared, each
    /// in constant time, so timing says nothing of which nearly matched.
    pub fn token_user(&self, given: &str) -> Option<&str> {
        self.tokens.iter().fold(None, |found, (token, user)| {
            let same = talon_kit::http::token_matches(std::slice::from_ref(token), given);
            if same {
                Some(user.as_str())
            } else {
                found
            }
        })
    }
}

/// Password checks (argon2) one replica runs at once.
const PASSWORD_CHECKS: usize = 4;

impl Console {
    /// The console of `config`'s users; their hashes are resolved and checked
    /// here, so a bad one stops the console at start with the key named.
    pub fn new(
        config: &Config,
        env: &Env,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Console>> {
        let mut users = HashMap::new();
        let mut roles = HashMap::new();
        let mut tokens: Vec<(String, String)> = Vec::new();
        for u in &config.console.users {
            roles.insert(u.name.clone(), u.roles.clone());
            let hash = u.password_hash(env)?;
            if let Some(h) = &hash {
                talon_kit::password::check_hash(h).map_err(|e| {
                    let key = if u.password_hash_env.is_some() {
                        "password_hash_env"
                    } else {
                        "password_hash_file"
                    };
                    anyhow::anyhow!("console.users[name={}].{key}: {e}", u.name)
                })?;
            }
            users.insert(u.name.clone(), hash.map(|h| h.trim().to_owned()));
            for (i, token) in u.checked_tokens(env)?.into_iter().enumerate() {
                if let Some((_, other)) = tokens.iter().find(|(t, _)| *t == token) {
                    anyhow::bail!(
                        "console.users[name={}].tokens_env: token {} is also a token of {other}",
                        u.name,
                        i + 1
                    );
                }
                tokens.push((token, u.name.clone()));
            }
        }
        let logins = IntCounterVec::new(
            Opts::new(CONSOLE_LOGINS_TOTAL, "Console logins by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(logins.clone()))?;
        Ok(Arc::new(Console {
            users,
            roles,
            tokens,
            backend: OnceLock::new(),
            shutdown,
            logins,
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            login_limits: limits::LoginLimits::default(),
            cookie_secure: config.console.cookie_secure(),
            silence_max: config.console.silence_max(),
        }))
    }

    /// Opens the console's buckets and starts following the inbox.
    pub async fn connect(
        &self,
        js: &jetstream::Context,
        topology: streams::Topology,
    ) -> anyhow::Result<()> {
        let replicas = topology.replicas;
        if self.backend.get().is_some() {
            return Ok(());
        }
        let stream = streams::ensure_stream(js, Stream::Inbox, topology).await?;
        let sessions = streams::ensure_bucket(
            js,
            BUCKET_SESSIONS,
            "talon console sessions: sha256(token) -> {user, expires_at}",
            SESSION_TTL,
            replicas,
        )
        .await?;
        let marks = streams::ensure_bucket(
            js,
            BUCKET_INBOX_STATE,
            "talon inbox marks: user -> {read_up_to, cleared_up_to}",
            std::time::Duration::ZERO,
            replicas,
        )
        .await?;
        let history = streams::ensure_stream(js, Stream::History, topology).await?;
        let triage = streams::ensure_stream(js, Stream::Triage, topology).await?;
        let deliveries = streams::ensure_stream(js, Stream::Deliveries, topology).await?;
        let alerts = Alerts::start(
            js.clone(),
            history,
            triage,
            deliveries,
            self.shutdown.clone(),
        )?;
        let inbox = Inbox::start(stream, marks, self.shutdown.clone());
        let silence_store = streams::ensure_silences_bucket(js, replicas).await?;
        let silences = Silences::default();
        let (loaded, _) = tokio::sync::watch::channel(false);
        tokio::spawn(
            silences
                .clone()
                .follow(js.clone(), replicas, loaded, self.shutdown.clone()),
        );
        let _ = self.backend.set(Backend {
            sessions: Sessions::new(sessions),
            inbox,
            alerts,
            silences,
            silence_store,
        });
        Ok(())
    }

    fn backend(&self) -> Option<&Backend> {
        self.backend.get()
    }
}

/// The console's routes.
pub fn routes(console: Arc<Console>) -> Router {
    page::routes()
        .merge(api::routes(console.clone()))
        .merge(alerts_api::routes(console.clone()))
        .merge(silences_api::routes(console))
        .layer(axum::middleware::map_response(page::secure))
}

/// Serves the console on `[console].http_listen`; ready once its streams
/// and buckets are there.
pub async fn start(ctx: Context) -> anyhow::Result<Running> {
    let Context {
        config,
        env,
        shutdown,
        ..
    } = &ctx;
    let registry = Registry::new();
    let console = Console::new(config, env, &registry, shutdown.clone())?;
    if console.users.is_empty() {
        tracing::warn!("no [[console.users]]: nobody can log in");
    }
    let health = ctx.health(registry);
    let js = ctx.jetstream();
    let topology = ctx.topology();
    let listening = service::listen(
        "console.http_listen",
        &config.console.http_listen,
        routes(console.clone()),
        &health,
        shutdown,
    )
    .await?;
    let shutdown = shutdown.clone();
    Ok(listening.run("console", async move {
        let open = || async { console.connect(&js, topology).await };
        if service::until_ready("console streams and buckets", &shutdown, open)
            .await
            .is_none()
        {
            return Ok(());
        }
        health.set_streams_ready(true);
        shutdown.cancelled().await;
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str, env: &Env) -> anyhow::Result<Arc<Console>> {
        let config = Config::parse(text, env).map_err(|e| anyhow::anyhow!("{e}"))?;
        Console::new(&config, env, &Registry::new(), CancellationToken::new())
    }

    #[test]
    fn api_tokens_act_as_their_user_and_one_token_has_one_user() {
        let users = "[[console.users]]\nname = \"bot\"\nroles = [\"analyst\"]\ntokens_env = \"BOT\"\n\
                     [[console.users]]\nname = \"eve\"\nroles = [\"reader\"]\ntokens_env = \"EVE\"\n";
        let a = "a".repeat(24);
        let b = "b".repeat(24);
        let env = Env::default()
            .with("BOT", &format!("{a},{b}"))
            .with("EVE", &"e".repeat(30));
        let c = console(users, &env).unwrap();
        assert_eq!(c.token_user(&a), Some("bot"));
        assert_eq!(c.token_user(&b), Some("bot"), "either of a user's tokens");
        assert_eq!(c.token_user(&"e".repeat(30)), Some("eve"));
        assert_eq!(
            c.token_user(&"a".repeat(23)),
            None,
            "a prefix is not the token"
        );
        assert_eq!(c.token_user(""), None);

        let shared = Env::default().with("BOT", &a).with("EVE", &a);
        let e = console(users, &shared).err().unwrap().to_string();
        assert_eq!(
            e,
            "console.users[name=eve].tokens_env: token 1 is also a token of bot"
        );
        let short = Env::default().with("BOT", "short");
        let e = console(users, &short).err().unwrap().to_string();
        assert!(
            e.starts_with("console.users[name=bot].tokens_env: token 1 of $BOT is shorter"),
            "{e}"
        );
    }
}
