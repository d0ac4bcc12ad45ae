//! dedup on a full disk: its sled directory on a small tmpfs. When a write
//! fails, dedup exits non-zero instead of retrying on a broken handle; once
//! there is room again and it is restarted, every alert is decided once —
//! none lost, none counted twice.
//!
//! Mounting a tmpfs needs root (CI and the project's machines run as root);
//! as another user the test says so and fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use talon_proto::Alert;
use talon_tests::*;

/// A tmpfs mounted on a folder of its own; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            path,
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.path);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn mount(args: &[&str], path: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(path)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} {} failed (this test mounts a small tmpfs and needs root): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

const NAMES: usize = 400;
/// Long names fill the store quickly.
fn name(i: usize) -> String {
    format!("disk-full-{i:04}-{}", "x".repeat(1500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_stops_on_a_full_disk_and_after_room_is_made_loses_and_doubles_nothing() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("data"), "2m");
    let config = dir.path().join("talon.toml");
    std::fs::write(&config, test_config_text(&nats, &dedup_table(&fs.path))).unwrap();
    let js = jetstream::new(nats.client().await);
    talon_kit::streams::ensure_all(&js, 1).await.unwrap();

    let env = [("TALON_DEDUP_TOKENS", DEDUP_TOKEN)];
    let mut dedup = ServiceProcess::spawn("talon-dedup", &config, &env);
    dedup.ready_addr(Duration::from_secs(60)).await;

    // Every name twice: the second copy of each is suppressed and counted.
    let t0 = chrono::Utc::now().timestamp_millis();
    let mut published = 0;
    let mut exited = None;
    'feed: for round in 0..2 {
        for i in 0..NAMES {
            let id = format!("a{round}-{i}");
            publish_accepted(&js, 0, &accepted_alert(&id, &name(i), t0 + published, 0)).await;
            published += 1;
            if let Ok(Some(status)) = dedup.child.try_wait() {
                exited = Some(status);
                break 'feed;
            }
        }
    }
    let exited = match exited {
        Some(status) => status,
        None => dedup.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| {
            panic!(
                "dedup still runs on a full disk:\n{}",
                dedup.stderr_lines().join("\n")
            )
        }),
    };
    let log = dedup.stderr_lines().join("\n");
    assert!(!exited.success(), "dedup exits non-zero: {exited}\n{log}");
    assert!(
        log.contains("store failed"),
        "it says why it stopped:\n{log}"
    );
    println!(
        "dedup exited ({exited}) after {published} of {} alerts were published; its last words: {}",
        2 * NAMES,
        dedup
            .stderr_lines()
            .last()
            .map(String::as_str)
            .unwrap_or("")
    );
    assert!(
        (published as usize) < 2 * NAMES,
        "the disk never filled: nothing was tested"
    );
    // The rest, while dedup is down.
    for round in 0..2 {
        for i in 0..NAMES {
            let n = round * NAMES + i;
            if n < published as usize {
                continue;
            }
            let id = format!("a{round}-{i}");
            publish_accepted(&js, 0, &accepted_alert(&id, &name(i), t0 + n as i64, 0)).await;
        }
    }

    // Room again; the supervisor's restart.
    fs.resize("256m");
    let mut dedup = ServiceProcess::spawn("talon-dedup", &config, &env);
    let addr = dedup.ready_addr(Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while stream_messages(&js, "ACCEPTED").await > 0 {
        assert!(Instant::now() < deadline, "dedup never drained its input");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let unique: Vec<Alert> = collect_as(&js, "UNIQUE", "talon.alerts.unique", 2 * NAMES).await;
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for a in &unique {
        *per_name.entry(a.name.clone()).or_default() += 1;
    }
    assert_eq!(per_name.len(), NAMES, "every name opened its window");
    assert!(
        per_name.values().all(|n| *n == 1),
        "no name sent twice: {:?}",
        per_name.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // Every second copy counted once, in its name's window.
    let windows: serde_json::Value = talon_kit::outbound::client()
        .get(format!("http://{addr}/v1/windows?all=true&limit=10000"))
        .bearer_auth(DEDUP_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counts: Vec<u64> = windows["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| w["suppressed"].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(counts.len(), NAMES);
    assert!(counts.iter().all(|c| *c == 1), "{counts:?}");
    dedup.terminate(Duration::from_secs(20));
}
