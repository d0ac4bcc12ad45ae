use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use talon_proto::DedupKeyField;

use super::*;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/talon.example.toml"
);

/// Parses `toml`; `expected` is "ok", or a substring of the one-line error.
fn check(toml: &str, expected: &str) {
    let result = Config::parse(toml, &Env::default());
    match (result, expected) {
        (Ok(_), "ok") => {}
        (Ok(config), _) => {
            panic!("expected an error containing {expected:?}, got {config:#?}\nfor:\n{toml}")
        }
        (Err(e), _) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "error is not one line: {shown:?}");
            assert!(
                expected != "ok" && shown.contains(expected),
                "expected {expected:?}, got {shown:?}\nfor:\n{toml}"
            );
        }
    }
}

/// A valid email channel with its secret, to build cases on.
const EMAIL: &str = r#"
[[channels]]
id = "mail"
kind = "email"
secret = "smtp"
recipients = ["soc@example.org"]

[secrets.smtp]
server = "smtp.example.org"
from = "alerts@example.org"
"#;

#[test]
fn the_empty_file_gives_every_default() {
    let c = Config::parse("", &Env::default()).expect("the empty file is valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
    assert_eq!(c.nats.user, None);
    assert!(!c.nats.tls_required);
    assert_eq!(c.nats.stream_replicas, 1);
    assert_eq!(c.ingest.http_listen, "127.0.0.1:8470");
    assert_eq!(c.ingest.tokens_env, "TALON_INGEST_TOKENS");
    assert_eq!(c.ingest.max_body_bytes, 1_048_576);
    assert_eq!(c.ingest.partitions, 1);
    assert!(c.rules.is_empty());
    assert_eq!(c.dedup.http_listen, "127.0.0.1:8471");
    assert_eq!(c.dedup.data_dir, PathBuf::from("/var/lib/talon/dedup"));
    assert_eq!(c.dedup.default_seconds, 7200);
    assert_eq!(c.dedup.key, vec![DedupKeyField::Name]);
    assert_eq!(c.dedup.partitions, vec![0]);
    assert!(c.dedup.r#override.is_empty());
    assert_eq!(c.enrich.http_listen, "127.0.0.1:8472");
    assert!(c.enrich.flatten_context);
    assert_eq!(c.enrich.context_include, ".+");
    assert_eq!(c.enrich.context_exclude, "");
    assert_eq!(c.enrich.context_field_limit, 100);
    assert_eq!(c.enrich.context_value_limit, 1000);
    assert_eq!(
        c.enrich.severity_levels,
        ["info", "low", "medium", "high", "critical"]
    );
    assert_eq!(c.enrich.severity_transforms, None);
    assert_eq!(c.notify.http_listen, "127.0.0.1:8473");
    assert!(c.notify.users.is_empty());
    assert_eq!(c.console.http_listen, "127.0.0.1:8475");
    assert_eq!(c.console.history_days, 90);
    assert_eq!(c.console.silence_max_days, 30);
    assert!(c.console.users.is_empty());
    assert_eq!(c.velociraptor.gui_url, None);
    assert_eq!(c.velociraptor.default_org_id, "root");
    assert!(c.warnings.is_empty());
    assert!(c.channels.is_empty());
    assert!(c.secrets.is_empty());
}

#[test]
fn channel_defaults() {
    let c = Config::parse(
        "[[channels]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"https://example.org/\"\n",
        &Env::default(),
    )
    .expect("valid");
    let mut expected = ChannelConfig::new("hook", ChannelKind::Webhook);
    expected.url = Some("https://example.org/".to_owned());
    assert_eq!(c.channels, vec![expected]);
    let ch = &c.channels[0];
    assert_eq!(ch.alert_include, ".+");
    assert_eq!(ch.alert_exclude, "");
    assert!(ch.include_client_details && ch.include_flow_details);
    assert!(!ch.include_artifact_details);
    assert_eq!(
        (
            ch.rate_per_minute,
            ch.max_in_flight,
            ch.retry_deadline_seconds
        ),
        (60, 4, 86_400)
    );
}

#[test]
fn each_kind_has_its_spec() {
    let spec = |text: &str| {
        let c = Config::parse(text, &Env::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        c.channels[0]
            .spec(&c.secrets)
            .expect("a loaded channel has a spec")
    };
    let env = |key: &str, var: &str| ValueFrom::Env {
        key: format!("channels[id=c].{key}"),
        var: var.to_owned(),
    };
    let email = EMAIL.replace("id = \"mail\"", "id = \"c\"");
    assert_eq!(
        spec(&email),
        ChannelSpec::Email(EmailSpec {
            secret: "smtp".to_owned(),
            recipients: vec!["soc@example.org".to_owned()],
        })
    );
    assert_eq!(
        spec("[[channels]]\nid = 'c'\nkind = 'inbox'\nrecipient_roles = '^analyst$'\n"),
        ChannelSpec::Inbox(InboxSpec {
            recipients: ".+".to_owned(),
            recipient_roles: "^analyst$".to_owned(),
        })
    );
    assert_eq!(
        spec("[[channels]]\nid = 'c'\nkind = 'webhook'\nurl = 'https://x/'\nheaders = { A = 'b' }\nsigning_secret_env = 'S'\n"),
        ChannelSpec::Webhook(WebhookSpec {
            url: ValueFrom::Text("https://x/".to_owned()),
            headers: [("A".to_owned(), "b".to_owned())].into(),
            signing_secret: Some(env("signing_secret_env", "S")),
        })
    );
    assert_eq!(
        spec("[[channels]]\nid = 'c'\nkind = 'mattermost'\nurl_env = 'U'\nchannel = 'town-square'\nusername = 't'\n"),
        ChannelSpec::Chat(ChatSpec {
            kind: ChannelKind::Mattermost,
            url: env("url_env", "U"),
            channel: Some("town-square".to_owned()),
            username: Some("t".to_owned()),
            icon_url: None,
            routing_key: None,
        })
    );
    assert_eq!(
        spec("[[channels]]\nid = 'c'\nkind = 'pagerduty'\nrouting_key_env = 'K'\n"),
        ChannelSpec::Chat(ChatSpec {
            kind: ChannelKind::Pagerduty,
            url: ValueFrom::Text(PAGERDUTY_EVENTS_URL.to_owned()),
            channel: None,
            username: None,
            icon_url: None,
            routing_key: Some(env("routing_key_env", "K")),
        })
    );
}

#[test]
fn the_example_file_parses() {
    let env = Env::default();
    let c = Config::load(Path::new(EXAMPLE), &env).expect("the example is valid");
    assert_eq!(c.nats.url, DEFAULT_NATS_URL);
    assert_eq!(c.ingest.partitions, 1);

    let rule = &c.rules[0];
    assert_eq!(rule.name, "Server.Monitor.HoneyfileAccess");
    assert_eq!(rule.watch, "Linux.Detection.Honeyfiles");
    assert!(rule.r#where.is_empty());
    let sigma = &c.rules[1];
    assert_eq!(sigma.watch, "Sigma.Windows.Hayabusa.Monitoring");
    assert_eq!(sigma.r#where["Level"], "(?i)high|critical");
    assert_eq!(sigma.alert.name, "{Title}");
    let all = &c.rules[2];
    assert!(all.alert.all);
    assert_eq!(all.alert.exclude.as_deref(), Some("^(foo|bar|baz)$"));
    assert_eq!(
        rule.alert.name,
        r#"Honey file "{FileName}" accessed on {client.hostname}"#
    );
    assert_eq!(rule.alert.dedup, Some(300));
    assert_eq!(rule.alert.fields, ["FileName", "Pid", "ProcessName"]);
    assert_eq!(rule.alert.set["ArtifactType"], "CLIENT_EVENT");

    assert_eq!(
        c.dedup.r#override,
        vec![DedupOverride {
            name: "^Client event query error".to_owned(),
            seconds: 3600
        }]
    );
    let rows = c.enrich.severity_transforms.as_ref().expect("eight rows");
    assert_eq!(rows.len(), 8);
    assert_eq!(
        (
            rows[2].member.as_str(),
            rows[2].regex.as_str(),
            rows[2].replace.as_str()
        ),
        ("Level", "(?i)warn", "medium")
    );
    assert_eq!(c.console.users[0].name, "alice");
    assert_eq!(c.console.users[0].roles, ["administrator"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let ids: Vec<&str> = c.channels.iter().map(|ch| ch.id.as_str()).collect();
    assert_eq!(ids, ["email-soc", "inbox", "slack-secops", "pd", "siem"]);
    let spec = |id: &str| {
        let channel = c.channel(id).expect("present");
        channel
            .spec(&c.secrets)
            .expect("a loaded channel has a spec")
    };
    let email = c.channel("email-soc").expect("present");
    assert_eq!(email.kind, ChannelKind::Email);
    assert_eq!(
        spec("email-soc"),
        ChannelSpec::Email(EmailSpec {
            secret: "soc_smtp".to_owned(),
            recipients: vec!["soc@example.org".to_owned()],
        })
    );
    assert_eq!(
        email.severity_threshold,
        Some(SeverityThreshold::AtLeast("medium".to_owned()))
    );
    let inbox = c.channel("inbox").expect("present");
    assert_eq!(inbox.recipients, Some(Recipients::Pattern(".+".to_owned())));
    assert_eq!(spec("inbox"), ChannelSpec::Inbox(InboxSpec::default()));
    let slack = c.channel("slack-secops").expect("present");
    assert_eq!(
        slack.severity_threshold,
        Some(SeverityThreshold::Exactly(vec![
            "high".to_owned(),
            "critical".to_owned()
        ]))
    );
    let ChannelSpec::Chat(pd) = spec("pd") else {
        panic!("pd is a chat kind")
    };
    assert_eq!(pd.kind, ChannelKind::Pagerduty);
    assert_eq!(
        pd.url.read_url(&env).expect("literal url"),
        PAGERDUTY_EVENTS_URL
    );
    let ChannelSpec::Webhook(siem) = spec("siem") else {
        panic!("siem is a webhook")
    };
    assert_eq!(
        siem.url,
        ValueFrom::Env {
            key: "channels[id=siem].url_env".to_owned(),
            var: "SIEM_WEBHOOK_URL".to_owned(),
        }
    );
    let smtp = &c.secrets["soc_smtp"];
    assert_eq!(smtp.server.as_deref(), Some("smtp.example.org"));
    assert_eq!(smtp.port, Some(587));
    assert_eq!(smtp.tls.as_deref(), Some("starttls"));
}

#[test]
fn a_config_survives_a_toml_round_trip() {
    let c = Config::load(Path::new(EXAMPLE), &Env::default()).expect("valid");
    let text = toml::to_string(&c).expect("serializes");
    assert_eq!(Config::parse(&text, &Env::default()).expect("reparses"), c);
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("talon.toml");
    std::fs::write(&path, "[ingest]\n\nmax_bdy_bytes = 1\n").expect("write");
    let e = Config::load(&path, &Env::default()).expect_err("misspelt key");
    assert_eq!(e.origin, path.display().to_string());
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key, "ingest.max_bdy_bytes");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: ingest.max_bdy_bytes: unknown key (expected one of http_listen, tokens_env, max_body_bytes, max_items, partitions)",
            path.display()
        )
    );

    let e = Config::load(&dir.path().join("missing.toml"), &Env::default()).expect_err("no file");
    assert!(e.to_string().contains("missing.toml: cannot read"), "{e}");
}

#[test]
fn errors_name_the_key_and_its_line() {
    let cases: &[(&str, &str)] = &[
        // Unknown keys: the path includes the key itself.
        (
            "[ingest]\nhttp_listen = \"127.0.0.1:1\"\nmax_bdy_bytes = 3\n",
            "<config>:3: ingest.max_bdy_bytes: unknown key (expected one of http_listen, tokens_env, max_body_bytes, max_items, partitions)",
        ),
        ("\n\nfoo = 1\n", "<config>:3: foo: unknown key (expected one of nats, ingest,"),
        ("[ingets]\n", "<config>:1: ingets: unknown key"),
        (
            "[[channels]]\nid = \"a\"\nkind = \"webhook\"\nurl = \"http://x/\"\n\n[[channels]]\nid = \"b\"\nkind = \"webhook\"\nurl = \"http://x/\"\nalert_exclud = \"x\"\n",
            "<config>:10: channels[1].alert_exclud: unknown key (expected one of id, kind,",
        ),
        (
            "[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nalert.nme = 3\n",
            "<config>:5: rules[0].alert.nme: unknown key",
        ),
        ("[dedup]\n[[dedup.override]]\nname = 'x'\nsecs = 1\n", "<config>:4: dedup.override[0].secs: unknown key"),
        ("[secrets.s]\nserver = 'x'\npasword_env = 'P'\n", "<config>:3: secrets.s.pasword_env: unknown key"),
        ("[notify]\n[[notify.users]]\nname = 'a'\nrole = []\n", "<config>:4: notify.users[0].role: unknown key"),
        ("[[console.users]]\nname = 'a'\nrole = []\n", "<config>:3: console.users[0].role: unknown key"),
        ("[console]\nhistory_days = -1\n", "<config>:2: console.history_days: invalid value: integer `-1`"),
        // Wrong types.
        (
            "[ingest]\n\nmax_body_bytes = \"big\"\n",
            "<config>:3: ingest.max_body_bytes: invalid type: string \"big\", expected usize",
        ),
        ("[nats]\nstream_replicas = -1\n", "<config>:2: nats.stream_replicas: invalid value: integer `-1`"),
        ("[nats]\ntls_required = \"yes\"\n", "<config>:2: nats.tls_required: invalid type: string"),
        ("nats = 3\n", "<config>:1: nats: invalid type: integer `3`"),
        ("[secrets.s]\nport = 70000\n", "<config>:2: secrets.s.port: invalid value: integer `70000`"),
        (
            "[[channels]]\nid = 'a'\nkind = 'smtp'\n",
            "<config>:3: channels[0].kind: unknown value \"smtp\" (expected one of email, inbox, slack,",
        ),
        ("[dedup]\nkey = ['nme']\n", "<config>:2: dedup.key[0]: unknown value \"nme\""),
        (
            "[[channels]]\nid = 'a'\nkind = 'email'\nrecipients = 3\n",
            "<config>:4: channels[0].recipients: invalid type: integer `3`, expected a string or a list of strings",
        ),
        (
            "[[channels]]\nid = 'a'\nkind = 'email'\nrecipients = [\n  'a@b',\n  3,\n]\n",
            "<config>:6: channels[0].recipients[1]: invalid type: integer `3`, expected a string",
        ),
        (
            "[[channels]]\nid = 'a'\nkind = 'inbox'\nseverity_threshold = { at = 'x' }\n",
            "<config>:4: channels[0].severity_threshold: invalid type: map",
        ),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nwhere = { L = 1 }\nalert.name = 'x'\n", "<config>:4: rules[0].where.L: invalid type: integer `1`"),
        // Missing keys.
        ("[[channels]]\nid = 'a'\n", "<config>:1: channels[0].kind: missing key"),
        ("\n[[rules]]\nname = 'r'\nalert.name = 'x'\n", "<config>:2: rules[0].watch: missing key"),
        ("[[dedup.override]]\nname = 'x'\n", "<config>:1: dedup.override[0].seconds: missing key"),
        // Syntax errors: the line, and no key.
        ("[ingest]\nmax_body_bytes = 12 34\n", "<config>:2: "),
        ("[ingest\n", "<config>:1: unclosed table"),
        ("a = 1\n\na = 2\n", "<config>:3: duplicate key"),
        ("[[channels]]\nid = 'a'\nid = 'b'\n", "<config>:3: duplicate key id"),
        ("[nats]\n[ingest]\n[nats]\n", "<config>:3: duplicate key nats"),
    ];
    for (toml, expected) in cases {
        check(toml, expected);
    }
}

#[test]
fn validation_names_the_key_and_its_line() {
    let email_with = |extra: &str| format!("{EMAIL}{extra}");
    let cases: Vec<(String, &str)> = vec![
        (EMAIL.to_owned(), "ok"),
        // [nats]
        ("[nats]\nstream_replicas = 0\n".into(), "<config>:2: nats.stream_replicas: must be 1 to 5"),
        ("[nats]\nstream_replicas = 6\n".into(), "<config>:2: nats.stream_replicas: must be 1 to 5"),
        ("[nats]\nstream_replicas = 5\n".into(), "ok"),
        ("[nats]\nurl = ''\n".into(), "nats.url: must not be empty"),
        ("[nats]\nuser = 'u'\npassword_env = 'P'\npassword_file = '/p'\n".into(), "<config>:4: nats.password_file: set only one of password_env, password_file"),
        ("[nats]\nuser = 'u'\n".into(), "<config>:2: nats.user: needs password_env or password_file"),
        ("[nats]\npassword_env = 'P'\n".into(), "<config>:2: nats.password_env: needs user"),
        ("[nats]\ntoken_env = 'T'\ncreds_file = '/c'\n".into(), "<config>:3: nats.creds_file: set only one of user, token_env, token_file, creds_file"),
        ("[nats]\ntls_cert_file = '/c'\n".into(), "<config>:2: nats.tls_cert_file: tls_cert_file and tls_key_file go together"),
        ("[nats]\nuser = 'u'\npassword_file = '/p'\ntls_ca_file = '/ca'\ntls_cert_file = '/c'\ntls_key_file = '/k'\ntls_required = true\n".into(), "ok"),
        // [ingest]
        ("[ingest]\npartitions = 0\n".into(), "<config>:2: ingest.partitions: must be at least 1"),
        ("[ingest]\nmax_body_bytes = 0\n".into(), "<config>:2: ingest.max_body_bytes: must be at least 1"),
        ("[ingest]\nhttp_listen = 'localhost'\n".into(), "<config>:2: ingest.http_listen: \"localhost\" is not a host:port"),
        ("[ingest]\nhttp_listen = '[::]:8470'\n".into(), "ok"),
        ("[ingest]\ntokens_env = ''\n".into(), "ingest.tokens_env: must not be empty"),
        // [[rules]]
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nwhere = { Level = '(high' }\nalert.name = 'x'\n".into(), "<config>:4: rules[0].where.Level: invalid regex \"(high\": unclosed group"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nalert.all = true\nalert.exclude = '['\n".into(), "<config>:6: rules[0].alert.exclude: invalid regex"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nalert.exclude = 'a'\n".into(), "<config>:5: rules[0].alert.exclude: applies only with alert.all = true"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nalert.all = true\nalert.fields = ['a']\n".into(), "<config>:6: rules[0].alert.fields: set either alert.fields or alert.all"),
        ("[[rules]]\nname = 'r'\nwatch = 'Linux..Foo'\nalert.name = 'x'\n".into(), "<config>:3: rules[0].watch: \"Linux..Foo\" is not an artifact name"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = ''\n".into(), "<config>:4: rules[0].alert.name: must not be empty"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x {a'\n".into(), "<config>:4: rules[0].alert.name: bad template \"x {a\": unclosed `{` at offset 2"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = '{client.os}'\n".into(), "<config>:4: rules[0].alert.name: bad template \"{client.os}\": {client.os} is not a client field"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nalert.set = { A = '}' }\n".into(), "<config>:5: rules[0].alert.set.A: bad template \"}\": unmatched `}`"),
        ("[[rules]]\nname = \"r\\n\"\nwatch = 'W'\nalert.name = 'x'\n".into(), "<config>:2: rules[0].name: must not hold control characters"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\n[[rules]]\nname = 'r'\nwatch = 'V'\nalert.name = 'y'\n".into(), "<config>:6: rules[1].name: duplicate rule name \"r\""),
        // [[rules]] with state
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'threshold'\nwithin = 60\n".into(), "<config>:1: rules[0].count: is required with kind = \"threshold\""),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'threshold'\ncount = 10\n".into(), "<config>:1: rules[0].within: is required with kind = \"threshold\""),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'threshold'\ncount = 0\nwithin = 60\n".into(), "<config>:6: rules[0].count: must be 1 to 1000"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'threshold'\ncount = 1001\nwithin = 60\n".into(), "<config>:6: rules[0].count: must be 1 to 1000"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'threshold'\ncount = 2\nwithin = 60\nsamples = 21\n".into(), "<config>:8: rules[0].samples: must be 0 to 20"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'absent'\nafter = 31708801\n".into(), "<config>:6: rules[0].after: must be 1 to 31622400"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'absent'\nafter = 60\ncount = 3\n".into(), "<config>:7: rules[0].count: applies only to kind = \"threshold\""),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nlookback = 3\n".into(), "<config>:5: rules[0].lookback: applies only to kind = \"first_seen\""),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'first_seen'\nlookback = 60\n".into(), "<config>:1: rules[0].by: is required with kind = \"first_seen\""),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nby = ['ClientId']\n".into(), "<config>:5: rules[0].by: applies only to kind = \"threshold\", \"first_seen\" or \"absent\""),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'absent'\nafter = 60\nby = ['']\n".into(), "<config>:7: rules[0].by: must not be empty"),
        ("[[rules]]\nname = 'r'\nwatch = 'W'\nalert.name = 'x'\nkind = 'sometimes'\n".into(), "<config>:5: rules[0].kind: unknown value \"sometimes\" (expected one of row, threshold, first_seen, absent)"),
        // [dedup]
        ("[dedup]\npartitions = [1]\n".into(), "<config>:2: dedup.partitions[0]: partition 1 does not exist: ingest.partitions is 1"),
        ("[ingest]\npartitions = 4\n[dedup]\npartitions = [1, 3]\n".into(), "ok"),
        ("[ingest]\npartitions = 4\n[dedup]\npartitions = [1, 1]\n".into(), "<config>:4: dedup.partitions[1]: duplicate partition 1"),
        ("[dedup]\npartitions = []\n".into(), "<config>:2: dedup.partitions: must own at least one partition"),
        ("[dedup]\nkey = []\n".into(), "<config>:2: dedup.key: must name at least one of"),
        ("[dedup]\nkey = ['name', 'client_id', 'name']\n".into(), "dedup.key[2]: duplicate key field"),
        ("[dedup]\nkey = ['name', 'artifact', 'client_id', 'org_id']\n".into(), "ok"),
        ("[dedup]\ndefault_seconds = 0\n".into(), "<config>:2: dedup.default_seconds: must be at least 1"),
        ("[dedup]\n[[dedup.override]]\nname = '*oops'\nseconds = 1\n".into(), "<config>:3: dedup.override[0].name: invalid regex \"*oops\""),
        ("[[dedup.override]]\nname = 'a'\nseconds = -1\n".into(), "ok"),
        // [enrich]
        ("[enrich]\ncontext_include = '('\n".into(), "<config>:2: enrich.context_include: invalid regex"),
        ("[enrich]\ncontext_exclude = ')'\n".into(), "<config>:2: enrich.context_exclude: invalid regex"),
        ("[enrich]\nseverity_levels = []\n".into(), "<config>:2: enrich.severity_levels: must name at least one severity"),
        ("[enrich]\nseverity_levels = ['low', 'high', 'low']\n".into(), "enrich.severity_levels[2]: duplicate severity \"low\""),
        ("[[enrich.severity_transforms]]\nmember = 'level'\nregex = '(?P<'\n".into(), "<config>:3: enrich.severity_transforms[0].regex: invalid regex"),
        ("[[enrich.severity_transforms]]\nmember = 'level'\n".into(), "ok"),
        ("[[enrich.severity_transforms]]\nmember = ''\n".into(), "<config>:2: enrich.severity_transforms[0].member: must not be empty"),
        ("[enrich]\nseverity_transforms = []\n".into(), "ok"),
        // [notify]
        ("[[notify.users]]\nname = 'alice'\n[[notify.users]]\nname = 'alice'\n".into(), "<config>:4: notify.users[1].name: duplicate user name \"alice\""),
        ("[[notify.users]]\nname = 'al ice'\n".into(), "<config>:2: notify.users[0].name: \"al ice\" is not a user name"),
        ("[[notify.users]]\nname = 'a.b'\n".into(), "notify.users[0].name: \"a.b\" is not a user name"),
        ("[[notify.users]]\nname = 'a'\npassword_hash_env = 'H'\npassword_hash_file = '/h'\n".into(), "<config>:4: notify.users[0].password_hash_file: set only one of"),
        // [console], [velociraptor]
        ("[[console.users]]\nname = 'alice'\n[[console.users]]\nname = 'alice'\n".into(), "<config>:4: console.users[1].name: duplicate user name \"alice\""),
        ("[[console.users]]\nname = \"al\\nice\"\n".into(), "<config>:2: console.users[0].name: \"al\\nice\" is not a user name"),
        ("[[console.users]]\nname = 'a'\n[[notify.users]]\nname = 'b'\n".into(), "notify.users: give the users in [[console.users]] only"),
        ("[console]\ncookie_secure = true\n[notify]\ncookie_secure = true\n".into(), "notify.cookie_secure: set [console].cookie_secure only"),
        ("[console]\nhistory_days = 0\n".into(), "<config>:2: console.history_days: must be 1 to 3650, not 0"),
        ("[console]\nhistory_days = 3651\n".into(), "<config>:2: console.history_days: must be 1 to 3650"),
        ("[console]\nhistory_days = 3650\n".into(), "ok"),
        ("[console]\nsilence_max_days = 0\n".into(), "<config>:2: console.silence_max_days: must be 1 to 366, not 0"),
        ("[console]\npublic_url = 'talon.example.org'\n".into(), "<config>:2: console.public_url: not a URL"),
        ("[console]\npublic_url = 'https://t.example.org/?x=1'\n".into(), "<config>:2: console.public_url: must not have a query"),
        ("[console]\npublic_url = 'https://t.example.org/talon/'\n".into(), "ok"),
        ("[console]\nsilence_max_days = 367\n".into(), "<config>:2: console.silence_max_days: must be 1 to 366"),
        ("[velociraptor]\ngui_url = 'velociraptor.example.org'\n".into(), "<config>:2: velociraptor.gui_url: not a URL"),
        ("[velociraptor]\ngui_url = 'ftp://v.example.org'\n".into(), "<config>:2: velociraptor.gui_url: must start with https://"),
        ("[velociraptor]\ngui_url = 'https://v.example.org/#/host'\n".into(), "<config>:2: velociraptor.gui_url: must not have a query"),
        ("[velociraptor]\ngui_url = 'https://u:p@v.example.org'\n".into(), "<config>:2: velociraptor.gui_url: must not hold a user name"),
        ("[velociraptor]\ngui_url = 'https://v.example.org:8889/'\n".into(), "ok"),
        ("[velociraptor]\ndefault_org_id = ''\n".into(), "<config>:2: velociraptor.default_org_id: \"\" is not an org id"),
        ("[velociraptor]\ndefault_org_id = \"O1\\r\\n\"\n".into(), "<config>:2: velociraptor.default_org_id: \"O1\\r\\n\" is not an org id"),
        // [[channels]]: ids
        ("[[channels]]\nid = 'a.b'\nkind = 'inbox'\n".into(), "<config>:2: channels[0].id: \"a.b\" is not a channel id"),
        ("[[channels]]\nid = ''\nkind = 'inbox'\n".into(), "channels[0].id: \"\" is not a channel id"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\n\n[[channels]]\nid = 'in'\nkind = 'inbox'\n".into(), "<config>:6: channels[1].id: duplicate channel id \"in\""),
        // [[channels]]: regexes and shared keys
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nalert_include = '['\n".into(), "<config>:4: channels[0].alert_include: invalid regex"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nalert_exclude = '['\n".into(), "<config>:4: channels[0].alert_exclude: invalid regex"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nrecipient_roles = '['\n".into(), "<config>:4: channels[0].recipient_roles: invalid regex"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nrecipients = '(a'\n".into(), "<config>:4: channels[0].recipients: invalid regex"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nmax_in_flight = 0\n".into(), "<config>:4: channels[0].max_in_flight: must be at least 1"),
        // [[channels]]: grouping
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_by = ['name', 'nope']\n".into(), "<config>:4: channels[0].group_by: field \"nope\": one of"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_by = ['channel']\n".into(), "<config>:4: channels[0].group_by: \"channel\" is the same"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_by = ['context.']\n".into(), "<config>:4: channels[0].group_by: field \"context.\": a context key"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_by = []\ngroup_interval = 0\n".into(), "<config>:5: channels[0].group_interval: 1 to 604800 seconds"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_by = []\ngroup_wait = 604801\n".into(), "<config>:5: channels[0].group_wait: at most 604800 seconds"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_by = []\ngroup_max_alerts = 0\n".into(), "<config>:5: channels[0].group_max_alerts: 1 to 10000"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ngroup_wait = -1\n".into(), "channels[0].group_wait"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ndigest = 'daily 25:00'\n".into(), "<config>:4: channels[0].digest: \"25:00\" is not a time of day"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ndigest = 'daily 08:00 Mars/Base'\n".into(), "<config>:4: channels[0].digest: \"Mars/Base\" is not a time zone"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\ndigest = \"daily 08:00\\nUTC\"\ngroup_by = ['context.User', 'client_id']\n".into(), "ok"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nseverity_threshold = 'severe'\n".into(), "<config>:4: channels[0].severity_threshold: \"severe\" is not one of enrich.severity_levels (info, low, medium, high, critical)"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nseverity_threshold = [\n  'high',\n  'severe',\n]\n".into(), "<config>:6: channels[0].severity_threshold[1]: \"severe\" is not one of"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nseverity_threshold = []\n".into(), "channels[0].severity_threshold: must name at least one severity"),
        ("[enrich]\nseverity_levels = ['P3', 'P2', 'P1']\n[[channels]]\nid = 'in'\nkind = 'inbox'\nseverity_threshold = 'P2'\n".into(), "ok"),
        // email
        (email_with(""), "ok"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nrecipients = ['a@b']\n".into(), "<config>:1: channels[0].secret: an email channel needs secret"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 'nope'\nrecipients = ['a@b']\n".into(), "<config>:4: channels[0].secret: no [secrets.nope] table (there are: none)"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\n[secrets.s]\nserver = 'h'\nfrom = 'a@b'\n".into(), "<config>:1: channels[0].recipients: an email channel needs at least one recipient"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\nrecipients = []\n[secrets.s]\nserver = 'h'\nfrom = 'a@b'\n".into(), "<config>:5: channels[0].recipients: an email channel needs at least one recipient"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\nrecipients = '.+'\n[secrets.s]\nserver = 'h'\nfrom = 'a@b'\n".into(), "<config>:5: channels[0].recipients: an email channel's recipients is a list of addresses"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\nrecipients = ['soc']\n[secrets.s]\nserver = 'h'\nfrom = 'a@b'\n".into(), "channels[0].recipients[0]: \"soc\" is not an e-mail address"),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\nrecipients = ['a@b']\n[secrets.s]\nfrom = 'a@b'\n".into(), "<config>:6: secrets.s.server: needed by email channel \"m\""),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\nrecipients = ['a@b']\n[secrets.s]\nserver = 'h'\n".into(), "<config>:6: secrets.s.from: needed by email channel \"m\""),
        ("[[channels]]\nid = 'm'\nkind = 'email'\nsecret = 's'\nrecipients = ['a@b']\nurl = 'https://x/'\n[secrets.s]\nserver = 'h'\nfrom = 'a@b'\n".into(), "<config>:6: channels[0].url: does not apply to email channels"),
        // inbox
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\n".into(), "ok"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nrecipients = ['alice']\n".into(), "<config>:4: channels[0].recipients: an inbox channel's recipients is a regex on user names, not a list"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nsecret = 's'\n".into(), "<config>:4: channels[0].secret: does not apply to inbox channels"),
        ("[[channels]]\nid = 'in'\nkind = 'inbox'\nusername = 'talon'\n".into(), "<config>:4: channels[0].username: does not apply to inbox channels"),
        // web hooks
        ("[[channels]]\nid = 's'\nkind = 'slack'\n".into(), "<config>:1: channels[0].url_env: a slack channel needs url, url_env or url_file"),
        ("[[channels]]\nid = 's'\nkind = 'mattermost'\nurl_file = '/u'\nchannel = 'town-square'\nusername = 't'\nicon_url = 'https://i/'\n".into(), "ok"),
        ("[[channels]]\nid = 's'\nkind = 'slack'\nurl_env = 'U'\nchannel = '#secops'\nusername = 't'\nicon_url = 'https://i/'\n".into(), "ok"),
        ("[[channels]]\nid = 's'\nkind = 'discord'\nurl_env = 'U'\nusername = 't'\nicon_url = 'https://i/'\n".into(), "ok"),
        ("[[channels]]\nid = 's'\nkind = 'discord'\nurl_env = 'U'\nchannel = '#x'\n".into(), "<config>:5: channels[0].channel: does not apply to discord channels"),
        ("[[channels]]\nid = 's'\nkind = 'teams'\nurl_env = 'U'\nusername = 't'\n".into(), "<config>:5: channels[0].username: does not apply to teams channels"),
        ("[[channels]]\nid = 's'\nkind = 'googlechat'\nurl_env = 'U'\nicon_url = 'https://i/'\n".into(), "<config>:5: channels[0].icon_url: does not apply to googlechat channels"),
        ("[[channels]]\nid = 's'\nkind = 'webhook'\nurl_env = 'U'\nusername = 't'\n".into(), "<config>:5: channels[0].username: does not apply to webhook channels"),
        ("[[channels]]\nid = 's'\nkind = 'teams'\n".into(), "a teams channel needs url, url_env or url_file"),
        ("[[channels]]\nid = 's'\nkind = 'googlechat'\n".into(), "a googlechat channel needs url"),
        ("[[channels]]\nid = 's'\nkind = 'discord'\n".into(), "a discord channel needs url"),
        ("[[channels]]\nid = 's'\nkind = 'webhook'\n".into(), "a webhook channel needs url"),
        ("[[channels]]\nid = 's'\nkind = 'webhook'\nurl_env = 'U'\n".into(), "ok"),
        ("[[channels]]\nid = 's'\nkind = 'webhook'\nurl = 'ftp://x'\n".into(), "<config>:4: channels[0].url: \"ftp://x\" is not an http:// or https:// URL"),
        ("[[channels]]\nid = 's'\nkind = 'slack'\nurl = 'https://x/'\nurl_env = 'U'\n".into(), "<config>:5: channels[0].url_env: set only one of url, url_env, url_file"),
        ("[[channels]]\nid = 's'\nkind = 'slack'\nurl_env = 'U'\nrecipients = ['a@b']\n".into(), "<config>:5: channels[0].recipients: does not apply to slack channels"),
        ("[[channels]]\nid = 's'\nkind = 'slack'\nurl_env = 'U'\nrouting_key_env = 'K'\n".into(), "<config>:5: channels[0].routing_key_env: does not apply to slack channels"),
        // pagerduty
        ("[[channels]]\nid = 'pd'\nkind = 'pagerduty'\nrouting_key_file = '/k'\n".into(), "ok"),
        ("[[channels]]\nid = 'pd'\nkind = 'pagerduty'\nurl = 'https://x/'\n".into(), "<config>:1: channels[0].routing_key_env: a pagerduty channel needs routing_key_env or routing_key_file"),
        ("[[channels]]\nid = 'pd'\nkind = 'pagerduty'\nrouting_key_env = 'K'\nrouting_key_file = '/k'\n".into(), "<config>:5: channels[0].routing_key_file: set only one of"),
        ("[[channels]]\nid = 'pd'\nkind = 'pagerduty'\nrouting_key_env = 'K'\nchannel = '#x'\n".into(), "<config>:5: channels[0].channel: does not apply to pagerduty channels"),
        // [secrets]
        ("[secrets.s]\ntls = 'ssl'\n".into(), "<config>:2: secrets.s.tls: \"ssl\" is not one of starttls, tls, none"),
        ("[secrets.s]\nusername = 'u'\npassword_env = 'P'\npassword_file = '/p'\n".into(), "<config>:4: secrets.s.password_file: set only one of"),
        ("[secrets.s]\npassword_env = 'P'\n".into(), "<config>:2: secrets.s.password_env: needs username"),
        ("[secrets.\"odd name\"]\nserver = ''\n".into(), "<config>:2: secrets.\"odd name\".server: must not be empty"),
    ];
    for (toml, expected) in &cases {
        check(toml, expected);
    }
}

#[test]
fn talon_nats_url_replaces_nats_url() {
    let text = "[nats]\nurl = \"nats://file:4222\"\n";
    let c = Config::parse(text, &Env::default()).expect("valid");
    assert_eq!(c.nats.url, "nats://file:4222");
    let env = Env::default().with("TALON_NATS_URL", "nats://env:4222");
    assert_eq!(
        Config::parse(text, &env).expect("valid").nats.url,
        "nats://env:4222"
    );
    assert_eq!(
        Config::parse("", &env).expect("valid").nats.url,
        "nats://env:4222"
    );
    let empty = Env::default().with("TALON_NATS_URL", "");
    assert_eq!(
        Config::parse(text, &empty).expect("valid").nats.url,
        "nats://file:4222"
    );
}

#[test]
fn ingest_tokens_are_split_trimmed_and_empties_dropped() {
    let ingest = IngestConfig::default();
    let cases: &[(Option<&str>, &[&str])] = &[
        (None, &[]),
        (Some(""), &[]),
        (Some(" , ,"), &[]),
        (Some("a"), &["a"]),
        (Some(" a , b,,c "), &["a", "b", "c"]),
    ];
    for (value, expected) in cases {
        let env = match value {
            Some(v) => Env::default().with("TALON_INGEST_TOKENS", v),
            None => Env::default(),
        };
        assert_eq!(ingest.tokens(&env), *expected, "for {value:?}");
    }
    let other = IngestConfig {
        tokens_env: "MY_TOKENS".to_owned(),
        ..IngestConfig::default()
    };
    let env = Env::default().with("MY_TOKENS", "x,y");
    assert_eq!(other.tokens(&env), ["x", "y"]);
}

#[test]
fn env_is_a_value() {
    let env = Env::default().with("A", "1").with("B", "2").with("A", "3");
    assert_eq!(env.get("A"), Some("3"));
    assert_eq!(env.get("B"), Some("2"));
    assert_eq!(env.get("C"), None);
    let expected: BTreeMap<String, String> = [("A", "3"), ("B", "2")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    assert_eq!(env.0, expected);
    // The process environment has at least the variables cargo sets for tests.
    assert!(Env::from_process().get("CARGO_PKG_NAME").is_some());
}

#[test]
fn secrets_resolve_from_env_or_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-file\n").expect("write");
    let empty_file = dir.path().join("empty");
    std::fs::write(&empty_file, "\n").expect("write");
    let missing_file = dir.path().join("missing");
    let env = Env::default()
        .with("NATS_PASSWORD", "pw-0123456789abcdefghijklm")
        .with("SHORT", "pw")
        .with("EXAMPLE", "change-me-nats-password-0123456789")
        .with("EMPTY", "")
        .with("SLACK_URL", "https://hooks.slack.example/1");

    // nats
    let mut nats = NatsConfig::default();
    assert_eq!(nats.password(&env), Ok(None));
    assert_eq!(nats.token(&env), Ok(None));
    nats.password_env = Some("NATS_PASSWORD".to_owned());
    assert_eq!(
        nats.password(&env),
        Ok(Some("pw-0123456789abcdefghijklm".to_owned()))
    );
    for weak in ["SHORT", "EXAMPLE"] {
        nats.password_env = Some(weak.to_owned());
        let e = nats.password(&env).expect_err(weak);
        assert_eq!(e.key, "nats.password_env", "{weak}");
        assert!(
            !e.to_string().contains("pw"),
            "the password is not shown: {e}"
        );
    }
    nats.password_env = Some("UNSET".to_owned());
    let e = nats.password(&env).expect_err("unset");
    assert_eq!(e.key, "nats.password_env");
    assert_eq!(
        e.to_string(),
        "nats.password_env: environment variable UNSET is not set"
    );
    nats.password_env = Some("EMPTY".to_owned());
    assert!(nats
        .password(&env)
        .expect_err("empty")
        .to_string()
        .contains("EMPTY is empty"));
    nats.token_file = Some(file.clone());
    assert_eq!(nats.token(&env), Ok(Some("from-file".to_owned())));
    nats.token_file = Some(missing_file.clone());
    let e = nats.token(&env).expect_err("missing file");
    assert_eq!(e.key, "nats.token_file");
    assert!(e.message.starts_with("cannot read "), "{e}");
    nats.token_file = Some(empty_file.clone());
    assert!(nats
        .token(&env)
        .expect_err("empty file")
        .message
        .ends_with("is empty"));

    // channels: where a spec says a URL or routing key is, read now.
    let chat = |id: &str, kind: &str, keys: &str| {
        let text = format!("[[channels]]\nid = '{id}'\nkind = '{kind}'\n{keys}\n");
        let c = Config::parse(&text, &Env::default()).expect("valid");
        match c.channels[0].spec(&c.secrets) {
            Ok(ChannelSpec::Chat(chat)) => chat,
            other => panic!("{other:?}"),
        }
    };
    let file_key = |key: &str, path: &Path| format!("{key} = '{}'", path.display());
    let slack = chat("slack-secops", "slack", "url_env = 'SLACK_URL'");
    assert_eq!(
        slack.url.read_url(&env).as_deref(),
        Ok("https://hooks.slack.example/1")
    );
    let slack = chat("slack-secops", "slack", "url_env = 'SLACK_WEBHOOK_URL'");
    assert_eq!(
        slack.url.read_url(&env).expect_err("unset").to_string(),
        "channels[id=slack-secops].url_env: environment variable SLACK_WEBHOOK_URL is not set"
    );
    let slack = chat("slack-secops", "slack", &file_key("url_file", &file));
    assert_eq!(slack.url.read_url(&env).as_deref(), Ok("from-file"));
    let e = ChannelConfig::new("slack-secops", ChannelKind::Slack)
        .spec(&BTreeMap::new())
        .expect_err("no url");
    assert_eq!(
        e.to_string(),
        "channels[id=slack-secops].url_env: a slack channel needs url, url_env or url_file"
    );
    let pd = chat("pd", "pagerduty", "routing_key_env = 'PD_ROUTING_KEY'");
    assert_eq!(pd.url.read_url(&env).as_deref(), Ok(PAGERDUTY_EVENTS_URL));
    let key = pd.routing_key.expect("a pagerduty channel has one");
    assert_eq!(
        key.read(&env).expect_err("unset").to_string(),
        "channels[id=pd].routing_key_env: environment variable PD_ROUTING_KEY is not set"
    );
    let pd = chat("pd", "pagerduty", &file_key("routing_key_file", &file));
    let key = pd.routing_key.expect("a pagerduty channel has one");
    assert_eq!(key.read(&env).as_deref(), Ok("from-file"));
    // A URL read from the environment loses its blanks; a secret keeps them.
    let spaced = env.clone().with("SPACED", " https://x.example/ ");
    let slack = chat("slack-secops", "slack", "url_env = 'SPACED'");
    assert_eq!(
        slack.url.read_url(&spaced).as_deref(),
        Ok("https://x.example/")
    );
    let pd = chat("pd", "pagerduty", "routing_key_env = 'SPACED'");
    let key = pd.routing_key.expect("a pagerduty channel has one");
    assert_eq!(key.read(&spaced).as_deref(), Ok(" https://x.example/ "));
    let e = ChannelConfig::new("pd", ChannelKind::Pagerduty)
        .spec(&BTreeMap::new())
        .expect_err("no routing key");
    assert_eq!(e.key, "channels[id=pd].routing_key_env");

    // users
    let mut alice = UserConfig {
        name: "alice".to_owned(),
        roles: vec![],
        password_hash_env: Some("TALON_ALICE_HASH".to_owned()),
        password_hash_file: None,
        tokens_env: None,
    };
    assert_eq!(
        alice.checked_tokens(&env),
        Ok(vec![]),
        "no tokens_env: none"
    );
    alice.tokens_env = Some("ALICE_TOKENS".to_owned());
    assert_eq!(alice.checked_tokens(&env), Ok(vec![]), "unset: none");
    let tokens = env.clone().with(
        "ALICE_TOKENS",
        "0123456789abcdef01234567, ffeeddccbbaa998877665544",
    );
    assert_eq!(
        alice.checked_tokens(&tokens).map(|t| t.len()),
        Ok(2),
        "comma-separated"
    );
    let short = env
        .clone()
        .with("ALICE_TOKENS", "0123456789abcdef01234567,short");
    assert_eq!(
        alice.checked_tokens(&short).expect_err("short").to_string(),
        "console.users[name=alice].tokens_env: token 2 of $ALICE_TOKENS is shorter than 24 characters: make one with `openssl rand -hex 24`"
    );
    assert_eq!(
        alice.password_hash(&env).expect_err("unset").to_string(),
        "console.users[name=alice].password_hash_env: environment variable TALON_ALICE_HASH is not set"
    );
    alice.password_hash_env = None;
    assert_eq!(alice.password_hash(&env), Ok(None));

    // secrets: resolving is the service's business, not load's.
    let c = Config::load(Path::new(EXAMPLE), &Env::default()).expect("loads without SMTP_PASSWORD");
    let e = c.secret_password("soc_smtp", &env).expect_err("unset");
    assert_eq!(
        e.to_string(),
        "secrets.soc_smtp.password_env: environment variable SMTP_PASSWORD is not set"
    );
    let with = env.clone().with("SMTP_PASSWORD", "s3cret");
    assert_eq!(
        c.secret_password("soc_smtp", &with),
        Ok(Some("s3cret".to_owned()))
    );
    assert_eq!(
        c.secrets["soc_smtp"].password(&with),
        Ok(Some("s3cret".to_owned()))
    );
    assert_eq!(
        c.secrets["soc_smtp"].password(&env).expect_err("unset").key,
        "password_env"
    );
    assert_eq!(
        c.secret_password("nope", &env).expect_err("no table").key,
        "secrets.nope"
    );
}

#[test]
fn error_display_is_one_line() {
    let cases: &[(ConfigError, &str)] = &[
        (
            ConfigError {
                key: "ingest.partitions".to_owned(),
                line: Some(7),
                message: "must be at least 1".to_owned(),
                origin: "talon.toml".to_owned(),
            },
            "talon.toml:7: ingest.partitions: must be at least 1",
        ),
        (
            ConfigError {
                key: String::new(),
                line: Some(2),
                message: "duplicate key".to_owned(),
                origin: "talon.toml".to_owned(),
            },
            "talon.toml:2: duplicate key",
        ),
        (
            ConfigError {
                key: String::new(),
                line: None,
                message: "cannot read".to_owned(),
                origin: "talon.toml".to_owned(),
            },
            "talon.toml: cannot read",
        ),
        (
            ConfigError::new("nats.token_env", "a\nb\n"),
            "nats.token_env: a; b",
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(error.to_string(), *expected);
    }
}

#[test]
fn tokens_are_checked_for_length_and_example_values() {
    let check = |value: &str| {
        let env = Env::default().with("TOKENS", value);
        check_tokens("x.tokens_env", "TOKENS", split_tokens(&env, "TOKENS"))
            .map_err(|e| e.to_string())
    };
    assert_eq!(check(""), Ok(vec![]));
    assert_eq!(check(" , "), Ok(vec![]));
    let good = "0123456789abcdef01234567";
    assert_eq!(check(good), Ok(vec![good.to_owned()]));
    let short = check("0123456789abcdef0123456").unwrap_err();
    assert!(
        short.contains("x.tokens_env") && short.contains("token 1 of $TOKENS is shorter than 24"),
        "{short}"
    );
    let example = check(&format!("{good},change-me-but-long-enough-to-pass")).unwrap_err();
    assert!(
        example.contains("token 2 of $TOKENS is the example value"),
        "{example}"
    );
    assert!(
        !example.contains("change-me-but"),
        "the token is never shown: {example}"
    );
    assert!(check("dev-token").is_err());
}

#[test]
fn the_session_cookie_is_secure_off_loopback() {
    let secure = |text: &str| {
        Config::parse(text, &Env::default())
            .unwrap()
            .console
            .cookie_secure()
    };
    assert!(!secure(""), "127.0.0.1 by default");
    assert!(!secure("[console]\nhttp_listen = \"[::1]:8475\"\n"));
    assert!(!secure("[console]\nhttp_listen = \"localhost:8475\"\n"));
    assert!(secure("[console]\nhttp_listen = \"0.0.0.0:8475\"\n"));
    assert!(secure("[console]\nhttp_listen = \"10.1.2.3:8475\"\n"));
    assert!(!secure(
        "[console]\nhttp_listen = \"0.0.0.0:8475\"\ncookie_secure = false\n"
    ));
    assert!(secure("[console]\ncookie_secure = true\n"));
    // Earlier releases' key, read with a warning.
    assert!(secure("[notify]\ncookie_secure = true\n"));
}

#[test]
fn earlier_releases_notify_users_are_read_as_console_users_with_a_warning() {
    let c = Config::parse(
        "[notify]\ncookie_secure = true\n[[notify.users]]\nname = 'alice'\nroles = ['analyst']\n",
        &Env::default(),
    )
    .unwrap();
    assert!(c.notify.users.is_empty());
    assert_eq!(c.console.users.len(), 1);
    assert_eq!(c.console.users[0].name, "alice");
    assert_eq!(c.console.users[0].roles, ["analyst"]);
    assert_eq!(c.console.cookie_secure, Some(true));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("[[notify.users]] is read as [[console.users]]"));
}

#[test]
fn each_service_names_its_own_nats_user_in_the_environment() {
    let text = "[nats]\ntoken_env = 'SHARED_TOKEN'\n";
    let plain = Config::parse(text, &Env::default()).expect("parses");
    assert_eq!(plain.nats.token_env.as_deref(), Some("SHARED_TOKEN"));
    assert_eq!(plain.nats.inbox_prefix(), "_INBOX");

    let env = Env::default()
        .with("TALON_NATS_USER", "ingest")
        .with("TALON_NATS_PASSWORD", "ingest-password-0123456789");
    let config = Config::parse(text, &env).expect("parses");
    assert_eq!(config.nats.user.as_deref(), Some("ingest"));
    assert_eq!(
        config.nats.token_env, None,
        "the user replaces the file's token"
    );
    assert_eq!(
        config.nats.password(&env),
        Ok(Some("ingest-password-0123456789".to_owned()))
    );
    assert_eq!(config.nats.inbox_prefix(), "_INBOX_ingest");

    let creds = Env::default().with("TALON_NATS_CREDS", "/run/secrets/ingest.creds");
    let config = Config::parse("[nats]\nuser = 'u'\npassword_env = 'P'\n", &creds).expect("parses");
    assert_eq!(config.nats.user, None);
    assert_eq!(config.nats.password_env, None);
    assert_eq!(
        config.nats.creds_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/ingest.creds"))
    );

    let both = env.clone().with("TALON_NATS_CREDS", "/c");
    let e = Config::parse(text, &both).expect_err("both");
    assert_eq!(e.key, "nats.user");

    let odd = Env::default().with("TALON_NATS_USER", "in.gest");
    let e = Config::parse(text, &odd).expect_err("a dot");
    assert_eq!(e.key, "nats.user");

    let prefixed = Config::parse(
        "[nats]\nuser = 'ingest'\npassword_env = 'P'\ninbox_prefix = '_R.ingest'\n",
        &Env::default(),
    )
    .expect("parses");
    assert_eq!(prefixed.nats.inbox_prefix(), "_R.ingest");
    for bad in ["''", "'_R.>'", "'_R..x'", "'a b'"] {
        let e = Config::parse(&format!("[nats]\ninbox_prefix = {bad}\n"), &Env::default())
            .expect_err(bad);
        assert_eq!(e.key, "nats.inbox_prefix", "{bad}");
    }
}
