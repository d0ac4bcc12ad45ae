//! The deployment as processes: the files under `deploy/` and the root's
//! `docker-compose.yml`, and the suite started from them the way the compose
//! file starts it — `talonctl init`, then one ingest, one dedup, one enrich
//! and several notify replicas, every one its own binary reading one config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{run_binary, ServiceProcess};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// A file of the repository, as text.
pub fn read(path: &str) -> String {
    let full = root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// What `deploy/talon.compose.toml` opens with.
pub const COMPOSE_CONFIG_HEADER: &str = "\
# talon — the configuration docker-compose.yml mounts at /etc/talon/talon.toml.
#
# Made from deploy/talon.example.toml: the same file but for three lines of
# [secrets.soc_smtp], which point the email-soc channel at the compose file's
# mailpit (SMTP on mailpit:1025 without TLS; it takes any login) instead of
# smtp.example.org. tests/it/deploy.rs checks that nothing else differs;
# after changing the example, TALON_UPDATE_GOLDEN=1 cargo test -p talon-tests
# --test it deploy:: rewrites this file. Compose changes the rest per container
# without a second file: TALON_NATS_URL=nats://nats:4222 and
# --http-listen 0.0.0.0:<port>.

";

/// The lines of the example's `[secrets.soc_smtp]` that the compose config
/// replaces, each with its replacement.
pub const COMPOSE_SMTP_LINES: [(&str, &str); 3] = [
    ("server = ", "server = \"mailpit\"                    # compose: the mailpit service"),
    ("port = ", "port = 1025                           # compose: mailpit's SMTP port"),
    ("tls = ", "tls = \"none\"                          # compose: mailpit has no certificate; starttls | tls | none"),
];

/// `deploy/talon.compose.toml` as it must be, made from the example's text.
pub fn compose_config(example: &str) -> String {
    let mut out = String::from(COMPOSE_CONFIG_HEADER);
    let mut in_smtp = false;
    let mut replaced = 0;
    for line in example.lines() {
        if line.starts_with('[') {
            in_smtp = line.trim() == "[secrets.soc_smtp]";
        }
        let replacement = COMPOSE_SMTP_LINES
            .iter()
            .find(|(prefix, _)| in_smtp && line.starts_with(prefix));
        match replacement {
            Some((_, new)) => {
                out.push_str(new);
                replaced += 1;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert_eq!(
        replaced,
        COMPOSE_SMTP_LINES.len(),
        "the example's [secrets.soc_smtp] lacks a server, port or tls line"
    );
    out
}

/// The values of an `.env` file (`KEY=value`, `KEY='literal'`), in order.
pub fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

/// `config` (a suite config such as the compose one) for processes on this
/// machine: dedup's data in `data_dir`, and `[secrets.soc_smtp]` pointing at
/// an SMTP server on 127.0.0.1:`smtp_port` without TLS or login (as
/// scripts/dev does for its sink).
pub fn local_config(config: &str, data_dir: &Path, smtp_port: u16) -> String {
    let mut out = String::new();
    let mut in_smtp = false;
    for line in config.lines() {
        if line.starts_with('[') {
            in_smtp = line.trim() == "[secrets.soc_smtp]";
        }
        let line = if line.starts_with("data_dir = ") {
            format!("data_dir = {:?}", data_dir.display().to_string())
        } else if in_smtp && line.starts_with("server = ") {
            "server = \"127.0.0.1\"".to_owned()
        } else if in_smtp && line.starts_with("port = ") {
            format!("port = {smtp_port}")
        } else if in_smtp && line.starts_with("tls = ") {
            "tls = \"none\"".to_owned()
        } else if in_smtp
            && (line.starts_with("username = ") || line.starts_with("password_env = "))
        {
            continue;
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One service of a [`Suite`].
pub struct Service {
    /// Binary and port, e.g. `talon-notify-40123`.
    pub label: String,
    /// Its `--http-listen`.
    pub addr: String,
    pub process: ServiceProcess,
}

/// The suite as processes, as docker-compose.yml runs it.
pub struct Suite {
    pub services: Vec<Service>,
}

impl Suite {
    /// Runs `talonctl init` with `config`, then starts one ingest, one
    /// dedup, one enrich, `notify_replicas` notify replicas (serving
    /// `channels`) and one console, each with `--config config`, `--http-listen` on a free
    /// loopback port and `env` (which holds TALON_NATS_URL and the secrets);
    /// returns once every one answers `/readyz`.
    pub async fn start(
        config: &Path,
        env: &[(&str, &str)],
        notify_replicas: usize,
        channels: &str,
    ) -> Suite {
        let config = config.to_string_lossy().into_owned();
        // A cluster just started may not have every peer in its meta group
        // yet ("no suitable peers for placement, peer offline"): an R3
        // stream needs all three, so init is tried again a while, as an
        // operator would once the nodes are up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (code, out, err) = run_binary("talonctl", &["--config", &config, "init"], env);
            if code == 0 {
                break;
            }
            let forming = err.contains("no suitable peers for placement")
                || out.contains("no suitable peers for placement");
            assert!(
                forming && std::time::Instant::now() < deadline,
                "talonctl init failed:\n{out}{err}"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let mut names = vec!["talon-ingest", "talon-dedup", "talon-enrich"];
        names.extend(std::iter::repeat_n("talon-notify", notify_replicas));
        names.push("talon-console");
        let mut suite = Suite {
            services: Vec::new(),
        };
        for name in names {
            // Each binds a port of its own and logs it.
            let mut args = vec!["--config", &config, "--http-listen", "127.0.0.1:0"];
            if name == "talon-notify" {
                args.extend(["--channels", channels]);
            }
            let mut process = ServiceProcess::spawn_args(name, &args, env);
            let addr = process.ready_addr(Duration::from_secs(60)).await;
            let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
            suite.services.push(Service {
                label: format!("{name}-{port}"),
                addr,
                process,
            });
        }
        suite
    }

    /// The addresses of the replicas of `binary` (e.g. `talon-notify`).
    pub fn addrs(&self, binary: &str) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.label.rsplit_once('-').is_some_and(|(b, _)| b == binary))
            .map(|s| s.addr.clone())
            .collect()
    }

    /// Every service's stderr, for a failure message.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|s| format!("--- {}\n{}\n", s.label, s.process.stderr_lines().join("\n")))
            .collect()
    }

    /// Panics, with the logs, when a service has exited.
    pub fn assert_running(&mut self) {
        let mut exited = Vec::new();
        for s in &mut self.services {
            if let Ok(Some(status)) = s.process.child.try_wait() {
                exited.push(format!("{} ({status})", s.label));
            }
        }
        assert!(exited.is_empty(), "exited: {exited:?}\n{}", self.logs());
    }
}
