//! talon's services under test: as their binaries (`ServiceProcess`,
//! `run_binary`) or in-process (`start_ingest`, ...), each connected to NATS
//! as its own user, with a config written for the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::*;

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
    pub stderr: Lines,
    pub stdout: Lines,
}

/// The lines a child process has written so far, collected by a thread.
pub type Lines = std::sync::Arc<Mutex<Vec<String>>>;

/// Collects the lines of `pipe` (a child's stdout or stderr) as they come.
pub fn read_lines(pipe: impl std::io::Read + Send + 'static) -> Lines {
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
        let http = talon_kit::outbound::client();
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
    let http = talon_kit::outbound::client();
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

/// A `[dedup]` table for tests: HTTP on port 0, sled under `dir`.
pub fn dedup_table(dir: &Path) -> String {
    format!(
        "[dedup]\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
        dir.display().to_string()
    )
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

/// A console started in-process against `nats` with the given config text.
pub async fn start_console(nats: &NatsServer, extra: &str, env: talon_kit::Env) -> InProcess {
    start_in_process(nats, extra, env, "talon-console", talon_console::start).await
}

/// notify delivering and the console showing what it delivered, from one
/// config; `http_addr` is the console's.
pub struct WithConsole {
    pub notify: InProcess,
    pub console: InProcess,
    pub http_addr: std::net::SocketAddr,
}

impl WithConsole {
    /// Stops both, as SIGTERM would.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.console.stop().await?;
        self.notify.stop().await
    }
}

/// [`start_notify`] and [`start_console`] with the same config and
/// environment (both `http_listen`s should be `127.0.0.1:0`).
pub async fn start_notify_and_console(
    nats: &NatsServer,
    extra: &str,
    env: talon_kit::Env,
) -> WithConsole {
    let notify = start_notify(nats, extra, env.clone()).await;
    let console = start_console(nats, extra, env).await;
    let http_addr = console.http_addr;
    WithConsole {
        notify,
        console,
        http_addr,
    }
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
