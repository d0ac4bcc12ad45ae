//! dedup end to end through a real nats-server: windows, keys, restarts,
//! SIGKILL at random moments against a model, and partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream;
use talon_proto::names::STREAM_UNIQUE;
use talon_proto::Alert;
use talon_tests::*;

const T0: i64 = 1_790_000_000_000; // a fixed received_at origin, ms

fn dedup_config(dir: &std::path::Path, extra: &str) -> String {
    format!("{}{extra}", dedup_table(dir))
}

async fn unique(js: &jetstream::Context, at_most: usize) -> Vec<Alert> {
    collect_as(js, STREAM_UNIQUE, "talon.alerts.unique", at_most).await
}

#[tokio::test]
async fn one_name_a_hundred_times_passes_once_unless_dedup_is_negative() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dedup = start_dedup(&nats, &dedup_config(dir.path(), "")).await;
    let js = jetstream::new(nats.client().await);

    for i in 0..100 {
        publish_accepted(&js, 0, &accepted_alert(&format!("a{i}"), "Same", T0 + i, 0)).await;
    }
    let got = unique(&js, 101).await;
    assert_eq!(got.len(), 1);
    let d = got[0].dedup.as_ref().unwrap();
    assert_eq!(
        (got[0].id.as_str(), d.key.as_str(), d.suppressed_before),
        ("a0", "Same", 0)
    );
    assert_eq!(d.window_start.timestamp_millis(), T0);
    assert_eq!(
        d.window_end.timestamp_millis(),
        T0 + 7_200_000,
        "default_seconds"
    );

    for i in 0..100 {
        publish_accepted(
            &js,
            0,
            &accepted_alert(&format!("n{i}"), "Never", T0 + i, -1),
        )
        .await;
    }
    assert_eq!(
        unique(&js, 101).await.len(),
        100,
        "dedup -1 never suppresses"
    );
    dedup.stop().await.unwrap();
}

#[tokio::test]
async fn after_a_short_window_the_next_alert_carries_the_count() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dedup = start_dedup(&nats, &dedup_config(dir.path(), "")).await;
    let js = jetstream::new(nats.client().await);
    // dedup = 2 s: one opener, 19 inside [T0, T0+2s), then one after.
    for i in 0..20 {
        publish_accepted(
            &js,
            0,
            &accepted_alert(&format!("s{i}"), "Short", T0 + i * 100, 2),
        )
        .await;
    }
    publish_accepted(&js, 0, &accepted_alert("late", "Short", T0 + 2_000, 2)).await;
    let got = unique(&js, 3).await;
    let seen: Vec<(&str, u64)> = got
        .iter()
        .map(|a| (a.id.as_str(), a.dedup.as_ref().unwrap().suppressed_before))
        .collect();
    assert_eq!(seen, [("s0", 0), ("late", 19)]);
    dedup.stop().await.unwrap();
}

#[tokio::test]
async fn name_and_artifact_key_opens_one_window_per_artifact_and_overrides_apply() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "key = [\"name\", \"artifact\"]\n[[dedup.override]]\nname = \"^Brief\"\nseconds = 1\n";
    let dedup = start_dedup(&nats, &dedup_config(dir.path(), extra)).await;
    let js = jetstream::new(nats.client().await);
    for (i, artifact) in ["Windows.A", "Linux.B", "Windows.A", "Linux.B"]
        .iter()
        .enumerate()
    {
        let mut a = accepted_alert(&format!("k{i}"), "Same", T0 + i as i64, 0);
        a.artifact = Some(artifact.to_string());
        publish_accepted(&js, 0, &a).await;
    }
    // The override gives "Brief..." 1 s windows.
    publish_accepted(&js, 0, &accepted_alert("b0", "Brief one", T0, 0)).await;
    publish_accepted(&js, 0, &accepted_alert("b1", "Brief one", T0 + 1_500, 0)).await;
    let keys: Vec<String> = unique(&js, 10)
        .await
        .iter()
        .map(|a| a.dedup.as_ref().unwrap().key.clone())
        .collect();
    assert_eq!(
        keys,
        [
            "Same | Windows.A",
            "Same | Linux.B",
            "Brief one | ",
            "Brief one | "
        ]
    );
    dedup.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_inside_a_window_still_suppresses() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dedup_config(dir.path(), "");
    let js = jetstream::new(nats.client().await);

    let dedup = start_dedup(&nats, &config).await;
    publish_accepted(&js, 0, &accepted_alert("first", "Honey", T0, 600)).await;
    assert_eq!(unique(&js, 2).await.len(), 1);
    dedup.stop().await.unwrap();

    let dedup = start_dedup(&nats, &config).await;
    publish_accepted(&js, 0, &accepted_alert("again", "Honey", T0 + 60_000, 600)).await;
    publish_accepted(&js, 0, &accepted_alert("after", "Honey", T0 + 600_000, 600)).await;
    let got = unique(&js, 3).await;
    assert_eq!(
        got.len(),
        1,
        "the alert inside the window stays suppressed after the restart"
    );
    assert_eq!(
        (
            got[0].id.as_str(),
            got[0].dedup.as_ref().unwrap().suppressed_before
        ),
        ("after", 1)
    );
    dedup.stop().await.unwrap();
}

/// The expected outputs of `inputs` (id, name, received_at ms, dedup
/// seconds; 0 is the default, 7200), computed with a plain map: id ->
/// suppressed_before.
fn model(inputs: &[(String, String, i64, i64)]) -> BTreeMap<String, u64> {
    let mut windows: HashMap<&str, (i64, u64)> = HashMap::new(); // name -> (end, suppressed)
    let mut out = BTreeMap::new();
    for (id, name, at, seconds) in inputs {
        if *seconds < 0 {
            out.insert(id.clone(), 0);
            continue;
        }
        let seconds = if *seconds == 0 { 7200 } else { *seconds };
        match windows.get_mut(name.as_str()) {
            Some((end, suppressed)) if at < end => *suppressed += 1,
            previous => {
                let before = previous.map_or(0, |(_, s)| *s);
                windows.insert(name, (at + seconds * 1000, 0));
                out.insert(id.clone(), before);
            }
        }
    }
    out
}

#[tokio::test]
async fn sigkill_at_random_moments_matches_the_model_exactly() {
    const N: usize = 10_000;
    const NAMES: usize = 200;
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("talon.toml");
    std::fs::write(
        &config_path,
        test_config_text(
            &nats,
            &format!(
                "[dedup]\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
                dir.path().join("data").display().to_string()
            ),
        ),
    )
    .unwrap();
    let js = jetstream::new(nats.client().await);
    talon_kit::streams::ensure_all(&js, 1).await.unwrap();

    // A deterministic pseudo-random sequence (xorshift), so a failure replays.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    // Windows of -1, 0 (the default), 1, 5, 30 or 120 s by name; 10 alerts/s
    // over ~1000 s.
    let lengths = [-1i64, 0, 1, 5, 30, 120];
    let inputs: Vec<(String, String, i64, i64)> = (0..N)
        .map(|i| {
            let n = (next() % NAMES as u64) as usize;
            (
                format!("c{i}"),
                format!("name-{n}"),
                T0 + i as i64 * 100,
                lengths[n % lengths.len()],
            )
        })
        .collect();
    let expected = model(&inputs);

    let mut kills = 0;
    let mut dedup = ServiceProcess::spawn("talon-dedup", &config_path, &[]);
    for chunk in inputs.chunks(N / 8) {
        for (id, name, at, seconds) in chunk {
            publish_accepted(&js, 0, &accepted_alert(id, name, *at, *seconds)).await;
        }
        // Let it work for a random while, then kill it mid-flight.
        tokio::time::sleep(Duration::from_millis(50 + next() % 400)).await;
        dedup.kill9();
        kills += 1;
        dedup = ServiceProcess::spawn("talon-dedup", &config_path, &[]);
    }
    dedup.ready_addr(Duration::from_secs(60)).await;
    // Everything in ACCEPTED consumed, then collect the outputs.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while stream_messages(&js, "ACCEPTED").await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "dedup never drained its input"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = unique(&js, expected.len() + 1).await;
    assert!(kills >= 5);

    let mut seen = BTreeMap::new();
    for a in &got {
        let before = a.dedup.as_ref().unwrap().suppressed_before;
        assert!(
            seen.insert(a.id.clone(), before).is_none(),
            "{} published twice",
            a.id
        );
    }
    let mut missing: Vec<usize> = expected
        .keys()
        .filter(|k| !seen.contains_key(*k))
        .map(|k| k[1..].parse().unwrap())
        .collect();
    missing.sort();
    missing.truncate(10);
    let extra: Vec<_> = seen
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(seen, expected, "suppressed_before as the model says");
    println!("{kills} kills; {} of {N} alerts opened a window", got.len());
    assert_eq!(
        dedup
            .terminate(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[tokio::test]
async fn two_partitions_two_replicas_each_key_in_exactly_one() {
    let nats = NatsServer::start().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let replica = |p: u32| {
        format!(
            "[ingest]\npartitions = 2\n{}partitions = [{p}]\n",
            dedup_config(dirs[p as usize].path(), "")
        )
    };
    let a = start_dedup(&nats, &replica(0)).await;
    let b = start_dedup(&nats, &replica(1)).await;
    let js = jetstream::new(nats.client().await);
    let names: Vec<String> = (0..50).map(|i| format!("alert {i}")).collect();
    for round in 0..3 {
        for (i, name) in names.iter().enumerate() {
            let p = talon_proto::partition_of(name, 2);
            publish_accepted(
                &js,
                p,
                &accepted_alert(&format!("{round}-{i}"), name, T0 + round * 1000, 0),
            )
            .await;
        }
    }
    let got = unique(&js, 151).await;
    let keys: BTreeSet<String> = got.iter().map(|a| a.name.clone()).collect();
    assert_eq!(got.len(), 50, "one per key");
    assert_eq!(keys.len(), 50);

    let http = talon_kit::outbound::client();
    let mut owned = Vec::new();
    for (replica, addr) in [(0u32, a.http_addr), (1, b.http_addr)] {
        let list: serde_json::Value = http
            .get(format!("http://{addr}/v1/windows?all=true&limit=1000"))
            .bearer_auth(DEDUP_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let keys: BTreeSet<String> = list["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                assert_eq!(w["partition"], replica);
                w["key"].as_str().unwrap().to_owned()
            })
            .collect();
        for k in &keys {
            assert_eq!(
                talon_proto::partition_of(k, 2),
                replica,
                "{k} in the wrong replica"
            );
        }
        owned.push(keys);
    }
    assert!(owned[0].is_disjoint(&owned[1]));
    assert_eq!(owned[0].len() + owned[1].len(), 50);
    assert!(!owned[0].is_empty() && !owned[1].is_empty());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn the_api_lists_pages_and_forgets() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dedup = start_dedup(&nats, &dedup_config(dir.path(), "")).await;
    let js = jetstream::new(nats.client().await);
    let now = chrono::Utc::now().timestamp_millis();
    for (i, name) in ["web-1", "web-2", "web-3", "db-1"].iter().enumerate() {
        publish_accepted(&js, 0, &accepted_alert(&format!("x{i}"), name, now, 3600)).await;
    }
    // An ended window that counted a suppression is kept for the next
    // window's suppressed_before.
    publish_accepted(&js, 0, &accepted_alert("old", "ended", now - 7_200_000, 60)).await;
    publish_accepted(
        &js,
        0,
        &accepted_alert("old2", "ended", now - 7_199_000, 60),
    )
    .await;
    assert_eq!(unique(&js, 7).await.len(), 5);

    let base = format!("http://{}/v1/windows", dedup.http_addr);
    let http = talon_kit::outbound::client();
    let get = |q: &str| {
        let req = http.get(format!("{base}?{q}")).bearer_auth(DEDUP_TOKEN);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let page1 = get("prefix=web-&limit=2").await;
    assert_eq!(keys(&page1), ["web-1", "web-2"]);
    assert_eq!(page1["next"], "web-2");
    let page2 = get("prefix=web-&limit=2&after=web-2").await;
    assert_eq!(keys(&page2), ["web-3"]);
    assert!(page2.get("next").is_none());
    assert_eq!(
        keys(&get("").await),
        ["db-1", "web-1", "web-2", "web-3"],
        "live windows only"
    );
    assert_eq!(keys(&get("all=true").await).len(), 5);

    // Without the API's token: 401, and nothing is forgotten.
    for (token, what) in [
        (None, "no token"),
        (Some("wrong-token-0123456789abcdef"), "a wrong one"),
    ] {
        let mut req = http.delete(format!("{base}?key=web-2"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            401,
            "DELETE with {what}"
        );
        let mut req = http.get(format!("{base}?all=true"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "GET with {what}");
    }
    assert_eq!(keys(&get("all=true").await).len(), 5, "nothing forgotten");
    let forgot: serde_json::Value = http
        .delete(format!("{base}?key=web-2"))
        .bearer_auth(DEDUP_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(forgot["forgotten"], true);
    publish_accepted(&js, 0, &accepted_alert("y", "web-2", now + 1, 3600)).await;
    let got = unique(&js, 2).await;
    assert_eq!(got.len(), 1, "a forgotten key opens a new window");
    assert_eq!(got[0].id, "y");
    dedup.stop().await.unwrap();
}

#[tokio::test]
async fn an_input_published_again_after_a_nats_restart_is_not_counted_twice() {
    let mut nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dedup = start_dedup(&nats, &dedup_config(dir.path(), "")).await;
    let js = jetstream::new(nats.client().await);
    publish_accepted(&js, 0, &accepted_alert("open", "Twice", T0, 10)).await;
    let inside = accepted_alert("inside", "Twice", T0 + 1_000, 10);
    publish_accepted(&js, 0, &inside).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stream_messages(&js, "ACCEPTED").await > 0 {
        assert!(std::time::Instant::now() < deadline, "dedup never consumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // nats-server restarts; ingest, whose ack of the ALERTS input was lost,
    // publishes the same alert again with the same Nats-Msg-Id. The work
    // queue deleted the first copy, so JetStream's duplicate window no
    // longer knows its id and stores it again.
    nats.restart().await;
    let js = jetstream::new(nats.client().await);
    let again = js
        .send_publish(
            talon_proto::names::accepted_subject(0),
            jetstream::message::PublishMessage::build()
                .payload(serde_json::to_vec(&inside).unwrap().into())
                .message_id(&inside.id),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!again.duplicate, "JetStream took the copy as new");
    publish_accepted(&js, 0, &accepted_alert("next", "Twice", T0 + 20_000, 10)).await;
    let got = unique(&js, 3).await;
    let seen: Vec<(&str, u64)> = got
        .iter()
        .map(|a| (a.id.as_str(), a.dedup.as_ref().unwrap().suppressed_before))
        .collect();
    assert_eq!(seen, [("open", 0), ("next", 1)], "the copy is not counted");
    dedup.stop().await.unwrap();
}
