//! nats-server processes run from the project's own config files: a node of
//! `deploy/nats.conf`, and the three-node cluster of `deploy/nats-cluster/`,
//! each moved to loopback ports of its own and a temporary store so that
//! tests run the files users run. A single node picks its ports itself
//! (`-p -1 -m -1`) and writes them to a ports file; a cluster's nodes must
//! know each other's route ports in advance, so those are reserved
//! ([`crate::ports`]) until each node starts, and the whole cluster is
//! started again on fresh ports should one of them be taken in between.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::nats::nats_binary;
use crate::ports::{self, Reserved};

/// One nats-server started from a config file; SIGKILLed on drop.
pub struct NatsNode {
    bin: PathBuf,
    child: Option<Child>,
    /// `server_name` from the file, else `nats`.
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Monitoring port (`/healthz`).
    pub monitor_port: u16,
    conf: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl NatsNode {
    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("nats-server log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&self.conf)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log);
        crate::nats_password_env(&mut cmd);
        let child = cmd.spawn().expect("spawn nats-server");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The operator's client (fails fast).
    pub async fn client(&self) -> async_nats::Client {
        crate::connect_as(&self.url(), "operator")
            .await
            .unwrap_or_else(|e| panic!("connect to nats-server {}: {e}", self.name))
    }

    /// Is it running (not killed, not exited)?
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (its store stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until its `/healthz` answers 200: JetStream enabled and, in a
    /// cluster, its meta layer and streams current.
    pub async fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<()> {
        let http = talon_kit::outbound::client();
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor_port);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if !self.running() {
                anyhow::bail!("nats-server {} exited:\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "nats-server {} not healthy after {within:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
        crate::report_violations(&self.log);
    }
}

/// `conf` with its `store_dir` line pointing at `store`.
fn with_store_dir(conf: &str, store: &Path) -> String {
    let mut replaced = false;
    let out: Vec<String> = conf
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("store_dir:") {
                replaced = true;
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}store_dir: {:?}", store.display().to_string())
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(replaced, "the config has no store_dir line");
    out.join("\n") + "\n"
}

fn server_name(conf: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        l.trim()
            .strip_prefix("server_name:")
            .map(|v| v.trim().trim_matches('"').to_owned())
    })
}

/// `conf` with its `include` of deploy/nats-users.conf pointing at a copy
/// in `dir`, where the rewritten file is written.
fn with_users_in(conf: &str, dir: &Path) -> String {
    std::fs::copy(crate::nats_users_conf(), dir.join("nats-users.conf"))
        .expect("copy deploy/nats-users.conf");
    let mut included = false;
    let text = conf
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("include") && line.contains("nats-users.conf") {
                included = true;
                "include nats-users.conf".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(included, "the config does not include nats-users.conf");
    text + "\n"
}

/// A single nats-server from `deploy/nats.conf` (or another file) as it is,
/// but for its store (a temporary one) and its addresses: the command line
/// puts it on loopback and free ports, as scripts/dev does.
pub struct NatsFromFile {
    pub node: NatsNode,
    _dir: tempfile::TempDir,
}

impl NatsFromFile {
    pub async fn start(conf: &Path) -> NatsFromFile {
        let bin = nats_binary().unwrap_or_else(|e| panic!("{e:#}"));
        let text = std::fs::read_to_string(conf)
            .unwrap_or_else(|e| panic!("read {}: {e}", conf.display()));
        let dir = tempfile::tempdir().expect("temp dir");
        let conf_path = dir.path().join("nats.conf");
        let text = with_users_in(&text, dir.path());
        std::fs::write(&conf_path, with_store_dir(&text, &dir.path().join("js")))
            .expect("write nats.conf");
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir(&ports_dir).expect("ports folder");
        let mut node = NatsNode {
            bin,
            child: None,
            name: server_name(&text).unwrap_or_else(|| "nats".into()),
            port: 0,
            monitor_port: 0,
            conf: conf_path,
            args: vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                "-1".into(),
                "-m".into(),
                "-1".into(),
                "--ports_file_dir".into(),
                ports_dir.display().to_string(),
            ],
            log: dir.path().join("nats-server.log"),
        };
        node.spawn();
        let pid = node.child.as_ref().map_or(0, Child::id);
        let (port, monitor_port) = read_ports_file(&ports_dir, pid, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log_tail()));
        node.port = port;
        node.monitor_port = monitor_port;
        node.wait_healthy(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        NatsFromFile { node, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.node.url()
    }
}

/// The cluster of `deploy/nats-cluster/node-*.conf`: every file as it is,
/// but each of its ports (clients, routes, monitoring) moved to a free one
/// and its store to a temporary folder.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts every `node-*.conf` in `dir` and waits until each node is
    /// healthy and JetStream answers through the cluster.
    pub async fn start(dir: &Path) -> NatsCluster {
        let bin = nats_binary().unwrap_or_else(|e| panic!("{e:#}"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("node-") && n.ends_with(".conf"))
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no node-*.conf in {}", dir.display());
        let texts: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("read node conf"))
            .collect();

        // Every loopback port any file names, each given a reserved one; a
        // fresh set whenever one was taken before its node could bind it.
        for _ in 0..5 {
            match NatsCluster::try_start(&bin, &texts).await {
                Some(cluster) => return cluster,
                None => continue,
            }
        }
        panic!("the cluster's ports were taken 5 times in a row");
    }

    /// Starts every node on freshly reserved ports; `None` when a node found
    /// its port taken (the others are killed, and the caller tries again).
    async fn try_start(bin: &Path, texts: &[String]) -> Option<NatsCluster> {
        let mut ports: Vec<(u16, Reserved)> = Vec::new();
        for text in texts {
            for port in loopback_ports(text) {
                if !ports.iter().any(|(old, _)| *old == port) {
                    ports.push((port, ports::reserve()));
                }
            }
        }
        let mapped: Vec<(u16, u16)> = ports.iter().map(|(o, r)| (*o, r.port())).collect();
        let moved = |text: &str| {
            mapped.iter().fold(text.to_owned(), |t, (old, new)| {
                t.replace(&format!("127.0.0.1:{old}\n"), &format!("127.0.0.1:{new}\n"))
            })
        };
        let old_port = |text: &str, key: &str| -> u16 {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .and_then(|v| v.trim().rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("a node conf has no `{key} 127.0.0.1:<port>`"))
        };
        let new_port = |old: u16| -> u16 {
            mapped
                .iter()
                .find(|(o, _)| *o == old)
                .map(|(_, n)| *n)
                .expect("port was mapped")
        };

        let tmp = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let store = tmp.path().join(format!("store-{i}"));
            let conf = with_store_dir(&with_users_in(&moved(text), tmp.path()), &store);
            let conf_path = tmp.path().join(format!("node-{i}.conf"));
            std::fs::write(&conf_path, &conf).expect("write node conf");
            let mut node = NatsNode {
                bin: bin.to_path_buf(),
                child: None,
                name: server_name(text).unwrap_or_else(|| format!("node-{i}")),
                port: new_port(old_port(text, "listen:")),
                monitor_port: new_port(old_port(text, "http:")),
                conf: conf_path,
                args: Vec::new(),
                log: tmp.path().join(format!("node-{i}.log")),
            };
            // Let go of this node's own ports (client, monitor, route) at the
            // last moment; the others' stay held until their nodes start.
            let own: Vec<u16> = loopback_ports(text)
                .into_iter()
                .filter(|p| is_own_port(text, *p))
                .collect();
            ports.retain(|(old, _)| !own.contains(old));
            node.spawn();
            nodes.push(node);
        }
        drop(ports);
        let mut cluster = NatsCluster { nodes, _dir: tmp };
        // A node that could not bind exits at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut taken = false;
        for node in &mut cluster.nodes {
            if !node.running() && ports::says_address_in_use(&node.log_tail()) {
                taken = true;
            }
        }
        if taken {
            return None;
        }
        cluster.wait_ready(Duration::from_secs(60)).await;
        Some(cluster)
    }

    /// Every node's URL, comma-separated: `[nats].url` for the suite.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running node is healthy and JetStream (its meta
    /// leader) answers an account query through the cluster.
    pub async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        for node in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
            let left = deadline.saturating_duration_since(Instant::now());
            node.wait_healthy(left)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        let addrs: Vec<String> = self.nodes.iter().map(NatsNode::url).collect();
        loop {
            if self.meta_complete().await {
                if let Ok(client) = crate::connect_as(&addrs.join(","), "operator").await {
                    if jetstream::new(client).query_account().await.is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the NATS cluster's JetStream did not answer within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Does the JetStream meta leader see every other running node as a
    /// current peer? Until then creating an R3 stream may fail with "no
    /// suitable peers for placement".
    async fn meta_complete(&mut self) -> bool {
        let http = talon_kit::outbound::client();
        let mut running = 0;
        for node in &mut self.nodes {
            running += usize::from(node.running());
        }
        for node in &self.nodes {
            let url = format!("http://127.0.0.1:{}/jsz", node.monitor_port);
            let Ok(response) = http.get(&url).send().await else {
                continue;
            };
            let Ok(jsz) = response.json::<serde_json::Value>().await else {
                continue;
            };
            let meta = &jsz["meta_cluster"];
            if meta["leader"].as_str() != Some(node.name.as_str()) {
                continue;
            }
            let peers = meta["replicas"].as_array().cloned().unwrap_or_default();
            let current = peers
                .iter()
                .filter(|p| p["current"] == true && p["offline"] != true)
                .count();
            return current + 1 >= running;
        }
        false
    }

    /// A client of the whole cluster (fails over like a service's).
    pub async fn service_client(&self, name: &str) -> async_nats::Client {
        crate::service_client(self.url(), name).await
    }

    /// A client of the whole cluster as NATS user `user`.
    pub async fn service_client_as(&self, user: &str, name: &str) -> async_nats::Client {
        crate::service_client_as(self.url(), user, name).await
    }

    /// The node called `name` (a stream's `cluster.leader`).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// Is `port` one that the node of `text` binds itself (its `listen:`,
/// `http:` or cluster `listen:` line), not a route to another node?
fn is_own_port(text: &str, port: u16) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        (l.starts_with("listen:") || l.starts_with("http:") || l.starts_with("port:"))
            && l.ends_with(&format!("127.0.0.1:{port}"))
    })
}

/// The client and monitoring ports a nats-server started with
/// `--ports_file_dir dir` wrote to `<dir>/<exe>_<pid>.ports`.
async fn read_ports_file(dir: &Path, pid: u32, within: Duration) -> anyhow::Result<(u16, u16)> {
    let deadline = Instant::now() + within;
    let suffix = format!("_{pid}.ports");
    loop {
        let found = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&suffix))
            });
        if let Some(path) = found {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text) {
                    let port_of = |key: &str| {
                        ports[key][0]
                            .as_str()
                            .and_then(|url| url.rsplit(':').next())
                            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
                    };
                    if let (Some(client), Some(monitor)) = (port_of("nats"), port_of("monitoring"))
                    {
                        return Ok((client, monitor));
                    }
                }
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "nats-server wrote no ports file in {} within {within:?}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ports of `127.0.0.1:<port>` addresses at the end of lines.
fn loopback_ports(text: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| l.trim_end().rsplit_once("127.0.0.1:"))
        .filter_map(|(_, p)| p.parse().ok())
        .collect()
}
