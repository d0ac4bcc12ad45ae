//! The suite on the three-node NATS cluster of deploy/nats-cluster/ with R3
//! streams: the leader of the ALERTS stream is SIGKILLed in the middle of a
//! steady stream of alerts, and every alert a producer had its JetStream ack
//! for still reaches the web hook, once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::json;
use talon_tests::cluster::NatsCluster;
use talon_tests::deploy::{env_file, local_config, read, root, Suite};
use talon_tests::receiver::Receiver;
use talon_tests::*;

/// Alerts published, one every `GAP`; the node dies after half of them.
const N: usize = 120;
const GAP: Duration = Duration::from_millis(40);

/// The stream's leader, by server name.
async fn leader(js: &jetstream::Context, stream: &str) -> Option<String> {
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok()?.cluster.as_ref()?.leader.clone()
}

/// Publishes `payload` with `id` as its `Nats-Msg-Id` until JetStream acks
/// it (a retry of a publish that did land is a duplicate JetStream drops);
/// returns how many tries failed.
async fn publish_until_acked(js: &jetstream::Context, id: &str, payload: Vec<u8>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failures = 0;
    loop {
        let attempt = async {
            js.send_publish(
                talon_proto::names::SUBJECT_ALERTS,
                jetstream::message::PublishMessage::build()
                    .payload(payload.clone().into())
                    .message_id(id),
            )
            .await?
            .await
            .map_err(anyhow::Error::from)
        };
        match attempt.await {
            Ok(_) => return failures,
            Err(e) => {
                failures += 1;
                assert!(Instant::now() < deadline, "{id} never acked: {e:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_loses_no_acknowledged_alert() {
    let begun = Instant::now();
    let mut cluster = NatsCluster::start(&root().join("deploy/nats-cluster")).await;
    let cluster_up = begun.elapsed();
    assert_eq!(cluster.nodes.len(), 3);
    let hook = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("talon.toml");
    let text = local_config(
        &read("deploy/talon.compose.toml"),
        &dir.path().join("dedup"),
        // No mail here: notify serves the siem channel only.
        25,
    );
    assert!(text.contains("\nstream_replicas = 1 "));
    let text = text.replacen("\nstream_replicas = 1 ", "\nstream_replicas = 3 ", 1);
    std::fs::write(&config, text).expect("write config");

    let url = cluster.url();
    let siem = hook.url("/siem");
    let dotenv = env_file(&read(".env.example"));
    let mut env: Vec<(&str, &str)> = dotenv
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend([
        ("TALON_NATS_URL", url.as_str()),
        ("SIEM_WEBHOOK_URL", siem.as_str()),
        ("SIEM_SIGNING_SECRET", "cluster-secret"),
        // .env.example's token is an example value, which ingest refuses.
        ("TALON_INGEST_TOKENS", "cluster-token-0123456789abcdef"),
    ]);
    let mut suite = Suite::start(&config, &env, 2, "siem").await;
    let suite_up = begun.elapsed();

    let js = talon_kit::nats::jetstream(cluster.service_client("cluster-producer").await);
    let mut stream = js.get_stream("ALERTS").await.expect("ALERTS");
    let info = stream.info().await.expect("ALERTS info");
    assert_eq!(info.config.num_replicas, 3, "R3 streams");

    let started = Instant::now();
    let mut failed_tries = 0;
    let mut killed = None;
    for i in 0..N {
        if i == N / 2 {
            let name = leader(&js, "ALERTS").await.expect("ALERTS has a leader");
            let index = cluster.index_of(&name).expect("the leader is one of ours");
            cluster.nodes[index].kill();
            killed = Some((name, started.elapsed()));
        }
        let id = format!("cluster-{i:03}");
        let row = json!({"name": id, "dedup": -1, "event_data": {"Seq": i}});
        failed_tries +=
            publish_until_acked(&js, &id, serde_json::to_vec(&row).expect("JSON")).await;
        tokio::time::sleep(GAP).await;
    }
    let published_in = started.elapsed();
    let (killed, killed_at) = killed.expect("a node was killed");
    let new_leader = leader(&js, "ALERTS").await;

    if let Err(e) = hook.wait_accepted(N, Duration::from_secs(120)).await {
        panic!("{e}\n{}", suite.logs());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    suite.assert_running();

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for body in hook.accepted() {
        *seen
            .entry(body["name"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    let missing: Vec<String> = (0..N)
        .map(|i| format!("cluster-{i:03}"))
        .filter(|id| !seen.contains_key(id))
        .collect();
    let doubled: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    println!(
        "cluster: up in {cluster_up:?}, suite ready at {suite_up:?}; {N} alerts acked in {published_in:?} ({failed_tries} publish tries failed), \
         node {killed} (the ALERTS leader) killed at {killed_at:?}, new leader {new_leader:?}; \
         {} delivered, {} distinct, {} missing, {} more than once",
        hook.accepted().len(),
        seen.len(),
        missing.len(),
        doubled.len()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    assert_eq!(seen.len(), N, "nothing else arrived");
    assert_eq!(
        stream_messages(&js, "DLQ").await,
        0,
        "nothing dead-lettered"
    );
}
