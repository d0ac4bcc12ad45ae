//! Prometheus Alertmanager on loopback, for the pipeline bench to measure
//! beside talon: Debian's `prometheus-alertmanager` (`scripts/setup
//! --with-alertmanager`; `TALON_ALERTMANAGER` names another binary),
//! in memory, no cluster, one web hook receiver and one notification per
//! alert (`group_by: ['...']`, `group_wait: 0s`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running Alertmanager, killed when dropped.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// The binary: `TALON_ALERTMANAGER`, else `prometheus-alertmanager` on the
/// `PATH`; `None` when neither is there.
pub fn binary() -> Option<PathBuf> {
    let name =
        std::env::var_os("TALON_ALERTMANAGER").unwrap_or_else(|| "prometheus-alertmanager".into());
    let name = PathBuf::from(name);
    if name.components().count() > 1 {
        return name.is_file().then_some(name);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&name))
        .find(|path| path.is_file())
}

/// The configuration: every alert its own group, sent at once, to `url`.
pub fn config(url: &str) -> String {
    format!(
        "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: 0s\n  \
         group_interval: 5m\n  repeat_interval: 24h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{url}'\n        \
         send_resolved: false\n"
    )
}

impl Alertmanager {
    /// Starts `binary` notifying `url`, and waits until it says it is ready.
    pub async fn start(binary: &std::path::Path, url: &str) -> anyhow::Result<Alertmanager> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config(url))?;
        let port = crate::ports::reserve().release();
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = am.child.try_wait() {
                let log = std::fs::read_to_string(am._dir.path().join("alertmanager.log"))
                    .unwrap_or_default();
                bail!("Alertmanager exited ({status}): {log}");
            }
            let ready = http.get(am.url("/-/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(am);
            }
            if Instant::now() > deadline {
                bail!("Alertmanager not ready on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its process id, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
