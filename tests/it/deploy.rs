//! The deployment files, checked without a Docker engine: docker-compose.yml
//! has the topology the README promises, deploy/talon.compose.toml is the
//! example but for the documented lines, the Dockerfile ships every binary,
//! and the NATS configs are valid and durable. (scripts/test also runs
//! `docker-compose config` on the compose file.)

use std::collections::BTreeSet;

use serde_json::Value;
use talon_kit::registry::SERVICES;
use talon_tests::deploy::{compose_config, env_file, read, root};

fn compose() -> Value {
    serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let s = &compose["services"][name];
    assert!(s.is_object(), "docker-compose.yml has no service {name}");
    s
}

/// A service's command as a list of strings.
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("command items are strings").to_owned())
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        other => panic!("command is {other}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The talon services, as compose names them, with the port their
/// `--http-listen` names there (their default's): every service of the
/// registry.
fn talon() -> Vec<(&'static str, &'static str, u16)> {
    SERVICES
        .iter()
        .map(|s| {
            let mut defaults = talon_kit::Config::default();
            let listen = (s.http_listen)(&mut defaults).clone();
            let port = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            (s.nats_user, s.binary, port.expect("a default port"))
        })
        .collect()
}

#[test]
fn compose_has_every_service_and_the_order_they_start_in() {
    let c = compose();
    let names: BTreeSet<&str> = c["services"]
        .as_object()
        .expect("services")
        .keys()
        .map(String::as_str)
        .collect();
    let services = SERVICES.iter().map(|s| s.nats_user);
    let expected: BTreeSet<&str> = services.chain(["nats", "talon-init", "mailpit"]).collect();
    assert_eq!(names, expected);

    let init = service(&c, "talon-init");
    assert_eq!(command(init), ["talonctl", "init"]);
    assert_eq!(init["restart"], "no", "talon-init runs once");
    assert_eq!(
        init["depends_on"]["nats"]["condition"], "service_healthy",
        "init waits for NATS"
    );

    for (name, binary, port) in talon() {
        let s = service(&c, name);
        let cmd = command(s);
        assert_eq!(cmd[0], binary, "{name}");
        let listen = cmd
            .windows(2)
            .find(|w| w[0] == "--http-listen")
            .map(|w| w[1].clone());
        assert_eq!(listen, Some(format!("0.0.0.0:{port}")), "{name}: {cmd:?}");
        assert_eq!(
            s["depends_on"]["talon-init"]["condition"], "service_completed_successfully",
            "{name} waits for talon-init"
        );
        let probe = strings(&s["healthcheck"]["test"]).join(" ");
        assert_eq!(
            probe,
            format!("CMD talonctl health http://127.0.0.1:{port}/readyz"),
            "{name}'s healthcheck probes /readyz with talonctl"
        );
        assert_eq!(s["restart"], "unless-stopped", "{name}");
        let grace = s["stop_grace_period"].as_str().unwrap_or("10s");
        let grace: u64 = grace.trim_end_matches('s').parse().unwrap_or(0);
        assert!(
            grace >= 20,
            "{name}: stop_grace_period {grace}s < its drain"
        );
    }
}

#[test]
fn every_talon_service_reads_the_compose_config_and_nats_in_the_network() {
    let c = compose();
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains("ENV TALON_CONFIG=/etc/talon/talon.toml"),
        "the image reads /etc/talon/talon.toml"
    );
    let services = SERVICES.iter().map(|s| s.nats_user);
    for name in services.chain(["talon-init"]) {
        let s = service(&c, name);
        assert_eq!(s["image"], "talon:latest", "{name}");
        assert_eq!(s["build"]["dockerfile"], "deploy/Dockerfile", "{name}");
        assert!(
            strings(&s["volumes"])
                .contains(&"./deploy/talon.compose.toml:/etc/talon/talon.toml:ro".to_owned()),
            "{name} mounts the compose config"
        );
        assert_eq!(
            s["environment"]["TALON_NATS_URL"], "nats://nats:4222",
            "{name}"
        );
    }
}

#[test]
fn notify_scales_and_nats_and_dedup_keep_their_data() {
    let c = compose();
    let notify = service(&c, "notify");
    assert!(notify.get("container_name").is_none(), "notify must scale");
    for port in strings(&notify["ports"]) {
        // "8473" or "127.0.0.1::8473": Docker picks the host port.
        let parts: Vec<&str> = port.split(':').collect();
        let host_port = match parts.as_slice() {
            [_container] => "",
            [_, published, _] | [published, _] => published,
            _ => panic!("odd port {port}"),
        };
        assert!(
            host_port.is_empty(),
            "notify publishes a fixed host port ({port}): --scale notify=3 would clash"
        );
    }

    let volumes = c["volumes"].as_object().expect("named volumes");
    assert!(volumes.contains_key("nats-data") && volumes.contains_key("dedup-data"));

    let nats = service(&c, "nats");
    let image = nats["image"].as_str().expect("nats image");
    assert!(image.starts_with("nats:2."), "the official image: {image}");
    assert_eq!(command(nats), ["-c", "/etc/nats/nats.conf"]);
    let nats_volumes = strings(&nats["volumes"]);
    assert!(nats_volumes.contains(&"./deploy/nats.conf:/etc/nats/nats.conf:ro".to_owned()));
    assert!(nats_volumes.contains(&"nats-data:/data".to_owned()));
    let conf = read("deploy/nats.conf");
    assert!(
        conf.contains("\n  sync_interval: always\n"),
        "nats.conf syncs always"
    );
    assert!(
        conf.contains("\n  store_dir: /data/jetstream\n"),
        "the store is on the nats-data volume"
    );
    assert!(
        conf.contains("\nlisten: 0.0.0.0:4222\n"),
        "reachable in the network"
    );

    let dedup = service(&c, "dedup");
    let example = talon_tests::parse_config(
        &read("deploy/talon.compose.toml"),
        &talon_kit::Env::default(),
    );
    let data_dir = example.dedup.data_dir.display().to_string();
    assert!(
        strings(&dedup["volumes"]).contains(&format!("dedup-data:{data_dir}")),
        "dedup's data_dir ({data_dir}) is on the dedup-data volume"
    );
    assert!(
        dockerfile_owns(&data_dir),
        "the image creates {data_dir} for the talon user"
    );
}

fn dockerfile_owns(dir: &str) -> bool {
    let d = read("deploy/Dockerfile");
    d.contains(&format!("mkdir -p {dir}")) && d.contains("chown -R talon:talon /var/lib/talon")
}

#[test]
fn the_image_holds_every_binary_and_runs_as_talon() {
    let d = read("deploy/Dockerfile");
    assert!(d.contains("cargo build --release --locked"), "{d}");
    assert!(d.contains("FROM debian:bookworm-slim"));
    // The runtime stage installs nothing (builds offline): no package
    // manager, no curl; TLS roots are a bundle copied in.
    let runtime = &d[d.rfind("\nFROM ").expect("a runtime stage")..];
    assert!(
        !runtime.contains("apt-get") && !runtime.contains("curl"),
        "{runtime}"
    );
    assert!(runtime.contains("COPY --from=build /out/certs/ca-certificates.crt"));
    assert!(runtime.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));
    assert!(d.contains("ARG BINARIES=build") && d.contains("deploy/prebuilt/"));
    assert!(d.contains("--uid 10001"));
    assert!(d.contains("\nUSER talon\n"));
    let binaries = SERVICES.iter().map(|s| s.binary);
    for bin in binaries.chain(["talonctl"]) {
        assert!(
            d.contains(&format!("target/release/{bin}")),
            "the image lacks {bin}"
        );
    }
    let ignore = read(".dockerignore");
    for entry in ["target/", ".git", ".talon-dev/"] {
        assert!(ignore.lines().any(|l| l == entry), ".dockerignore: {entry}");
    }
}

#[test]
fn compose_config_is_the_example_but_for_mailpit() {
    let expected = compose_config(&read("deploy/talon.example.toml"));
    let path = root().join("deploy/talon.compose.toml");
    if std::env::var_os("TALON_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &expected).expect("write talon.compose.toml");
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or(actual.lines().count().min(expected.lines().count()), |i| i)
            + 1;
        panic!(
            "deploy/talon.compose.toml differs from the example at line {first} beyond the \
             documented lines (TALON_UPDATE_GOLDEN=1 rewrites it from the example)"
        );
    }
    // It is a config every service accepts.
    talon_tests::parse_config(&actual, &talon_kit::Env::default());
}

#[test]
fn env_example_holds_every_variable_compose_uses_and_a_working_hash() {
    let env = env_file(&read(".env.example"));
    let keys: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let text = read("docker-compose.yml");
    let mut used = BTreeSet::new();
    for part in text.split("${").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used.insert(name);
    }
    for name in &used {
        assert!(keys.contains(name.as_str()), ".env.example lacks {name}");
    }
    for name in [
        "TALON_INGEST_TOKENS",
        "TALON_ALICE_HASH",
        "SMTP_PASSWORD",
        "SLACK_WEBHOOK_URL",
        "PD_ROUTING_KEY",
    ] {
        assert!(keys.contains(name), ".env.example lacks {name}");
    }
    let hash = &env
        .iter()
        .find(|(k, _)| k == "TALON_ALICE_HASH")
        .expect("hash")
        .1;
    assert!(
        talon_kit::password::verify(hash, "change-me"),
        "TALON_ALICE_HASH of .env.example is not a hash of change-me (the README says it is)"
    );
}

#[test]
fn nats_configs_are_valid() {
    let mut files = vec![root().join("deploy/nats.conf")];
    let cluster = root().join("deploy/nats-cluster");
    for i in 1..=3 {
        files.push(cluster.join(format!("node-{i}.conf")));
    }
    let bin = std::env::var("TALON_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    for file in &files {
        let mut cmd = std::process::Command::new(&bin);
        talon_tests::nats_password_env(&mut cmd);
        let out = cmd
            .arg("-c")
            .arg(file)
            .arg("-t")
            .output()
            .unwrap_or_else(|e| panic!("run {bin}: {e}"));
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(file).expect("read");
        assert!(
            text.contains("sync_interval: always"),
            "{} must sync always",
            file.display()
        );
    }
}

#[test]
fn the_cluster_example_nodes_are_distinct_and_route_to_each_other() {
    let dir = root().join("deploy/nats-cluster");
    let mut listens = BTreeSet::new();
    let mut stores = BTreeSet::new();
    let mut routes = Vec::new();
    for i in 1..=3 {
        let text = std::fs::read_to_string(dir.join(format!("node-{i}.conf"))).expect("read");
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("node-{i}.conf has no {key}"))
        };
        for key in ["listen:", "http:", "server_name:"] {
            assert!(listens.insert(value(key)), "node-{i}.conf repeats {key}");
        }
        assert!(stores.insert(value("store_dir:")), "node-{i}: store_dir");
        let cluster_listen = text
            .split("cluster {")
            .nth(1)
            .and_then(|c| c.lines().find_map(|l| l.trim().strip_prefix("listen:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("node-{i}.conf has no cluster listen"));
        assert!(listens.insert(cluster_listen.clone()));
        routes.push((cluster_listen, text));
    }
    for (listen, _) in &routes {
        for (_, text) in &routes {
            assert!(
                text.contains(&format!("nats-route://{listen}")),
                "every node routes to {listen}"
            );
        }
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("a README");
    assert!(readme.contains("stream_replicas = 3"));
}

/// compose connects each service as its own NATS user, with
/// that user's password; nats-server gets every password
/// deploy/nats-users.conf reads, and nothing connects anonymously.
#[test]
fn each_compose_service_connects_as_its_own_nats_user() {
    let c = compose();
    let users = read("deploy/nats-users.conf");
    let nats_env = &service(&c, "nats")["environment"];
    for user in talon_tests::nats_users() {
        let var = talon_tests::nats_password_var(user);
        assert!(
            users.contains(&format!("user: {user}\n"))
                && users.contains(&format!("password: ${var}\n")),
            "deploy/nats-users.conf has user {user} with password ${var}"
        );
        assert!(
            nats_env[&var]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("${{{var}:?"))),
            "the nats service gets ${var} from .env, required: {:?}",
            nats_env[&var]
        );
    }
    let services = SERVICES.iter().map(|s| (s.nats_user, s.nats_user));
    for (name, user) in services.chain([("talon-init", "operator")]) {
        let env = &service(&c, name)["environment"];
        assert_eq!(env["TALON_NATS_USER"], user, "{name}");
        let var = talon_tests::nats_password_var(user);
        assert!(
            env["TALON_NATS_PASSWORD"]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("${{{var}:?"))),
            "{name} connects with ${var}: {:?}",
            env["TALON_NATS_PASSWORD"]
        );
    }
    assert!(
        strings(&service(&c, "nats")["volumes"])
            .contains(&"./deploy/nats-users.conf:/etc/nats/nats-users.conf:ro".to_owned()),
        "nats mounts the users file beside nats.conf"
    );
    for conf in ["deploy/nats.conf", "deploy/nats-cluster/node-1.conf"] {
        assert!(
            read(conf)
                .lines()
                .any(|l| l.starts_with("include ") && l.ends_with("nats-users.conf")),
            "{conf} includes the users"
        );
    }
    assert!(
        !users.contains("no_auth_user"),
        "nobody connects without a user"
    );
}
