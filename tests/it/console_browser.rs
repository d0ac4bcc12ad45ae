//! The inbox console in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), against the whole pipeline — ingest, dedup,
//! enrich and notify — on a real nats-server.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/setup installs
//! them); `TALON_CHROMEDRIVER` and `TALON_CHROMIUM` override their paths.
//! Leaves a screenshot of the open panel in
//! `target/screenshots/console-inbox-panel.png`.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use talon_tests::console::{console_users, password, stored};
use talon_tests::*;

const XSS: &str = "<img src=x onerror=alert(1)>";

/// chromedriver on a free loopback port, ended when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    /// Ends chromedriver and the browser it started (its own process
    /// group), also when a test fails before closing its session.
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let found = if path.is_absolute() {
        path.exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {}", path.display())])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        found,
        "{} not found: run `bash scripts/setup` (it installs Debian's chromium and chromium-driver) or set {var}",
        path.display()
    );
    path
}

async fn browser() -> (Driver, Client) {
    let chromedriver = tool("TALON_CHROMEDRIVER", "chromedriver");
    let chromium = tool("TALON_CHROMIUM", "/usr/bin/chromium");
    // Port 0: chromedriver binds one of its own and says which on stdout
    // ("ChromeDriver was started successfully on port N.").
    let mut child = Command::new(&chromedriver)
        .arg("--port=0")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(port) = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let profile = tempfile::tempdir().unwrap();
    let mut driver = Driver {
        child,
        url: String::new(),
        _profile: profile,
    };
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromedriver says which port it listens on");
    driver.url = format!("http://127.0.0.1:{port}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("a chromium session through chromedriver: {e}"),
        }
    };
    (driver, client)
}

/// Polls `check` until it is true, at most `within`; returns how long it took.
async fn until<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn bell_is_red(client: &Client) -> bool {
    // Class and colour read in one script, so a refresh between two reads
    // cannot make them disagree.
    let seen = client
        .execute(
            "const b = document.getElementById('bell'); \
             return [b.className, getComputedStyle(b).backgroundColor];",
            vec![],
        )
        .await
        .expect("the bell");
    let class = seen[0].as_str().unwrap_or_default().to_owned();
    let colour = seen[1].as_str().unwrap_or_default().to_owned();
    let red = colour.replace(' ', "").starts_with("rgb(211,47,47")
        || colour.replace(' ', "").starts_with("rgba(211,47,47");
    assert_eq!(
        class.split_whitespace().any(|c| c == "unread"),
        red,
        "class {class:?}, colour {colour}"
    );
    red
}

async fn visible(client: &Client, id: &str) -> bool {
    match client.find(Locator::Id(id)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

fn screenshot_path() -> PathBuf {
    screenshot("console-inbox-panel.png")
}

/// `target/screenshots/<name>`.
fn screenshot(name: &str) -> PathBuf {
    // target/<profile>/deps/<test> -> target/screenshots
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("tests run from target/<profile>/deps")
        .to_path_buf();
    target.join("screenshots").join(name)
}

async fn save_screenshot(client: &Client, name: &str) {
    let shot = client.screenshot().await.unwrap();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &shot).unwrap();
}

async fn log_in(client: &Client, addr: std::net::SocketAddr, user: &str) {
    client.goto(&format!("http://{addr}/")).await.unwrap();
    until(Duration::from_secs(10), "the login form shows", || {
        visible(client, "login")
    })
    .await;
    let name = client.find(Locator::Id("login-name")).await.unwrap();
    name.send_keys(user).await.unwrap();
    let pw = client.find(Locator::Id("login-password")).await.unwrap();
    pw.send_keys(password(user)).await.unwrap();
    client
        .find(Locator::Id("login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(10), "the console shows", || {
        visible(client, "app")
    })
    .await;
}

async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

/// Finds and clicks, finding again when a live refresh replaced the element
/// between the two steps (the list re-renders on every `alerts` event).
async fn click_css(client: &Client, css: &str) {
    for attempt in 0.. {
        let found = client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        match found.click().await {
            Ok(()) => return,
            Err(e) if attempt < 20 && e.to_string().contains("stale element") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("click {css}: {e}"),
        }
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// enrich (links to a Velociraptor GUI) and a console with the test users,
/// for the alerts views.
async fn start_enrich_and_console(nats: &NatsServer) -> (InProcess, InProcess) {
    let (users, env) = console_users("127.0.0.1:0");
    let config = format!(
        "{users}\n[enrich]\nhttp_listen = \"127.0.0.1:0\"\n[velociraptor]\ngui_url = \"https://vr.example.org:8889\"\n"
    );
    let enrich = start_enrich(nats, &config).await;
    let console = start_console(nats, &config, env).await;
    (enrich, console)
}

async fn rows(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for row in client.find_all(Locator::Css("#rows tr")).await.unwrap() {
        out.push(row.text().await.unwrap_or_default());
    }
    out
}

#[tokio::test]
async fn the_bell_turns_red_the_panel_shows_the_alert_as_text_and_clear_empties_it() {
    let nats = NatsServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let (users, env) = console_users("127.0.0.1:0");
    let config = format!(
        r#"
[ingest]
http_listen = "127.0.0.1:0"
[dedup]
http_listen = "127.0.0.1:0"
data_dir = {:?}
[enrich]
http_listen = "127.0.0.1:0"
[[enrich.severity_transforms]]
member = "Severity"
regex = "(?i)^(low|medium|high|critical)$"
replace = ""
{users}
[[channels]]
id = "inbox"
kind = "inbox"
rate_per_minute = 0
"#,
        data.path().display().to_string()
    );
    let ingest = start_ingest(&nats, &config, env.clone()).await;
    let dedup = start_dedup(&nats, &config).await;
    let enrich = start_enrich(&nats, &config).await;
    let notify = start_notify_and_console(&nats, &config, env).await;
    let js = jetstream::new(nats.client().await);
    let (_driver, client) = browser().await;

    // Log in.
    client
        .goto(&format!("http://{}/", notify.http_addr))
        .await
        .unwrap();
    until(Duration::from_secs(10), "the login form shows", || {
        visible(&client, "login")
    })
    .await;
    let name = client.find(Locator::Id("login-name")).await.unwrap();
    name.send_keys("alice").await.unwrap();
    let pw = client.find(Locator::Id("login-password")).await.unwrap();
    pw.send_keys(password("alice")).await.unwrap();
    client
        .find(Locator::Id("login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(10), "the bell shows", || {
        visible(&client, "bell")
    })
    .await;
    assert!(!bell_is_red(&client).await, "nothing unread yet");
    let who = client.find(Locator::Id("whoami")).await.unwrap();
    assert_eq!(who.text().await.unwrap(), "alice");

    // Raise an alert as Velociraptor would; its context holds markup.
    let row = json!({
        "client_id": "server",
        "name": "Honey file opened",
        "artifact": "Linux.Detection.Honeyfiles",
        "artifact_type": "SERVER_MONITORING",
        "event_data": {"FileName": XSS, "Severity": "High", "Pid": 4242},
    });
    js.publish(
        talon_proto::names::SUBJECT_ALERTS,
        serde_json::to_vec(&row).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    // Through the pipeline into alice's inbox; from there the bell turns
    // red within 2 s.
    until(
        Duration::from_secs(30),
        "the alert reaches the inbox",
        || async { stored(&js, "alice").await >= 1 },
    )
    .await;
    let took = until(Duration::from_secs(10), "the bell turns red", || {
        bell_is_red(&client)
    })
    .await;
    assert!(
        took < Duration::from_secs(2),
        "the bell turned red after {took:?}"
    );
    let badge = client.find(Locator::Id("badge")).await.unwrap();
    assert_eq!(badge.text().await.unwrap(), "1");

    // Open the panel: the alert, its client, severity and context.
    client
        .find(Locator::Id("bell"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        Duration::from_secs(10),
        "the panel opens with the alert",
        || async {
            match client.find(Locator::Css("#list .message h3")).await {
                Ok(h) => h.text().await.unwrap_or_default() == "Honey file opened",
                Err(_) => false,
            }
        },
    )
    .await;
    let item = client.find(Locator::Css("#list .message")).await.unwrap();
    let meta = item
        .find(Locator::Css(".meta"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(meta.to_lowercase().contains("severity: high"), "{meta}");
    assert!(meta.contains("Client: server"), "{meta}");
    assert!(
        meta.contains("Artifact: Linux.Detection.Honeyfiles"),
        "{meta}"
    );
    let rows = item.find_all(Locator::Css(".context tr")).await.unwrap();
    let mut context = Vec::new();
    for row in rows {
        let key = row
            .find(Locator::Css("th"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = row
            .find(Locator::Css("td"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        context.push((key, value));
    }
    assert!(
        context.contains(&("FileName".to_owned(), XSS.to_owned())),
        "the markup shows as text: {context:?}"
    );
    assert!(
        context.contains(&("Pid".to_owned(), "4242".to_owned())),
        "{context:?}"
    );
    // Shown as text: no element was made of it, and no script ran.
    let images = client
        .execute(
            "return document.querySelectorAll('#panel img').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(images, json!(0));
    assert!(
        client.get_alert_text().await.is_err(),
        "no alert() dialog is open"
    );
    let shot = client.screenshot().await.unwrap();
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &shot).unwrap();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    // Opening the panel read the message.
    until(
        Duration::from_secs(5),
        "the bell is no longer red once read",
        || async { !bell_is_red(&client).await },
    )
    .await;

    // Clear: the list is empty, the messages are gone for good, the bell
    // stays quiet.
    client
        .find(Locator::Id("clear"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(10), "the panel is empty", || async {
        visible(&client, "empty").await
            && client
                .find_all(Locator::Css("#list .message"))
                .await
                .map(|m| m.is_empty())
                .unwrap_or(false)
    })
    .await;
    assert!(!bell_is_red(&client).await);
    assert_eq!(stored(&js, "alice").await, 0, "cleared from the stream");
    // A reload (a new page, the same session) shows the same.
    client.refresh().await.unwrap();
    until(
        Duration::from_secs(10),
        "the bell shows after a reload",
        || visible(&client, "bell"),
    )
    .await;
    assert!(!bell_is_red(&client).await);

    client.close().await.unwrap();
    notify.stop().await.unwrap();
    for service in [enrich, dedup, ingest] {
        service.stop().await.unwrap();
    }
}

/// The alerts view: every alert listed with counts, a search, one alert
/// opened with its links into Velociraptor, acknowledged, resolved with a
/// verdict and noted, the audit trail showing each; a selection
/// acknowledged at once; a reader sees no triage controls. Leaves
/// `target/screenshots/console-alerts.png`.
#[tokio::test]
async fn alerts_are_found_opened_and_triaged_in_the_browser() {
    let nats = NatsServer::start().await;
    let (enrich, console) = start_enrich_and_console(&nats).await;
    let js = jetstream::new(nats.client().await);
    let raised = [
        ("b1", "Honey file opened", "High", "C.8e2f1a30b6d94c51", XSS),
        (
            "b2",
            "Sigma: Mimikatz command line",
            "Critical",
            "C.77aa01b2c3d4e5f6",
            "sekurlsa::logonpasswords",
        ),
        (
            "b3",
            "Honey file opened",
            "Low",
            "C.1f2e3d4c5b6a7988",
            "/srv/share/payroll.xlsx",
        ),
    ];
    for (i, (id, name, severity, client, file)) in raised.iter().enumerate() {
        let mut a = accepted_alert(id, name, 1_790_000_000_000 + i as i64 * 60_000, 0);
        a.client_id = Some((*client).into());
        a.flow_id = Some(format!("F.CQ2R{i}"));
        a.artifact = Some("Windows.Detection.Honeyfiles".into());
        a.event_data = json!({"Severity": severity, "FileName": file, "User": "CORP\\jdoe"})
            .as_object()
            .cloned()
            .unwrap();
        publish_unique(&js, &a, id).await;
    }
    let (_driver, client) = browser().await;
    log_in(&client, console.http_addr, "bob").await;
    until(Duration::from_secs(20), "three alerts listed", || async {
        rows(&client).await.len() == 3
    })
    .await;
    let state_counts = text_of(&client, "#state-counts").await;
    assert!(
        state_counts.contains("Open") && state_counts.contains('3'),
        "{state_counts}"
    );

    // Search; a severity; a client. The filters go into the address.
    client
        .find(Locator::Id("f-q"))
        .await
        .unwrap()
        .send_keys("mimikatz")
        .await
        .unwrap();
    click_css(&client, "#filters button[type=submit]").await;
    until(
        Duration::from_secs(10),
        "the search narrows to one",
        || async {
            let r = rows(&client).await;
            r.len() == 1 && r[0].contains("Mimikatz")
        },
    )
    .await;
    assert!(client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("q=mimikatz"));
    click(&client, "f-reset").await;
    client
        .find(Locator::Id("f-severity"))
        .await
        .unwrap()
        .select_by_value("low")
        .await
        .unwrap();
    click_css(&client, "#filters button[type=submit]").await;
    until(Duration::from_secs(10), "low only", || async {
        let r = rows(&client).await;
        r.len() == 1 && r[0].contains("LOW")
    })
    .await;
    assert!(client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("severity=low"));
    click(&client, "f-reset").await;
    client
        .find(Locator::Id("f-client"))
        .await
        .unwrap()
        .send_keys("C.77aa01b2c3d4e5f6")
        .await
        .unwrap();
    click_css(&client, "#filters button[type=submit]").await;
    until(Duration::from_secs(10), "one client", || async {
        let r = rows(&client).await;
        r.len() == 1 && r[0].contains("Mimikatz")
    })
    .await;
    click(&client, "f-reset").await;
    until(Duration::from_secs(10), "all three again", || async {
        rows(&client).await.len() == 3
    })
    .await;

    // Open the oldest honey alert: links, context as text.
    click_css(&client, "#rows tr[data-id=b1] td.name").await;
    until(Duration::from_secs(10), "the alert opens", || {
        visible(&client, "detail")
    })
    .await;
    let hrefs = client
        .execute(
            "return [...document.querySelectorAll('#d-links a')].map(a => a.href);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        hrefs,
        json!([
            "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.8e2f1a30b6d94c51",
            "https://vr.example.org:8889/app/index.html?org_id=root#/collected/C.8e2f1a30b6d94c51/F.CQ2R0"
        ])
    );
    assert!(
        text_of(&client, "#d-context").await.contains(XSS),
        "the markup shows as text"
    );
    let images = client
        .execute("return document.querySelectorAll('img').length;", vec![])
        .await
        .unwrap();
    assert_eq!(images, json!(0));

    // Acknowledge, resolve as a false positive, note.
    click(&client, "d-ack").await;
    until(Duration::from_secs(10), "acknowledged", || async {
        text_of(&client, "#d-triage")
            .await
            .starts_with("Acknowledged")
    })
    .await;
    client
        .find(Locator::Id("d-verdict"))
        .await
        .unwrap()
        .select_by_value("false_positive")
        .await
        .unwrap();
    click(&client, "d-resolve").await;
    until(Duration::from_secs(10), "resolved", || async {
        text_of(&client, "#d-triage")
            .await
            .starts_with("Resolved as false positive")
    })
    .await;
    client
        .find(Locator::Id("d-note"))
        .await
        .unwrap()
        .send_keys("Backup job touching the share; excluded upstream.")
        .await
        .unwrap();
    click_css(&client, "#d-note-form button").await;
    until(
        Duration::from_secs(10),
        "the note in the audit trail",
        || async {
            text_of(&client, "#d-audit")
                .await
                .contains("excluded upstream")
        },
    )
    .await;
    let audit = text_of(&client, "#d-audit").await;
    assert!(
        audit.contains("bob acknowledged") && audit.contains("resolved it as false positive"),
        "{audit}"
    );
    until(Duration::from_secs(10), "the row says resolved", || async {
        text_of(&client, "#rows tr[data-id=b1]")
            .await
            .contains("Resolved")
    })
    .await;
    save_screenshot(&client, "console-alerts.png").await;

    // A new alert arrives live; the keyboard opens and acknowledges it.
    let mut live = accepted_alert("b4", "Connection to known-bad host", 1_790_000_300_000, 0);
    live.client_id = Some("C.8e2f1a30b6d94c51".into());
    live.event_data = json!({"Severity": "High", "RemoteAddress": "203.0.113.9:443"})
        .as_object()
        .cloned()
        .unwrap();
    publish_unique(&js, &live, "b4").await;
    until(
        Duration::from_secs(10),
        "the new alert shows without a reload",
        || async {
            let r = rows(&client).await;
            r.len() == 4 && r[0].contains("known-bad host")
        },
    )
    .await;
    let body = client.find(Locator::Css("body")).await.unwrap();
    body.send_keys("\u{E00C}").await.unwrap(); // Escape: close the alert
    body.send_keys("j").await.unwrap();
    until(Duration::from_secs(10), "j opens the newest", || async {
        text_of(&client, "#d-name").await.contains("known-bad host")
    })
    .await;
    body.send_keys("a").await.unwrap();
    until(Duration::from_secs(10), "a acknowledges it", || async {
        text_of(&client, "#d-triage")
            .await
            .starts_with("Acknowledged")
    })
    .await;

    // A selection, acknowledged at once.
    for id in ["b2", "b3"] {
        click_css(
            &client,
            &format!("#rows tr[data-id={id}] input[type=checkbox]"),
        )
        .await;
    }
    until(
        Duration::from_secs(5),
        "the bulk bar with two picked",
        || async {
            visible(&client, "bulk").await && text_of(&client, "#bulk-count").await == "2 selected"
        },
    )
    .await;
    click(&client, "bulk-ack").await;
    until(Duration::from_secs(10), "both acknowledged", || async {
        let r = rows(&client).await;
        r.iter().filter(|t| t.contains("Acknowledged")).count() == 3
    })
    .await;

    // A reader views, and has no triage controls.
    click(&client, "logout").await;
    log_in(&client, console.http_addr, "rita").await;
    until(Duration::from_secs(20), "rita sees the alerts", || async {
        rows(&client).await.len() == 4
    })
    .await;
    click_css(&client, "#rows tr[data-id=b2] td.name").await;
    until(Duration::from_secs(10), "the alert opens", || {
        visible(&client, "detail")
    })
    .await;
    assert!(
        !visible(&client, "d-actions").await,
        "no triage for a reader"
    );
    assert!(!visible(&client, "d-note-form").await);

    client.close().await.unwrap();
    console.stop().await.unwrap();
    enrich.stop().await.unwrap();
}

/// A morning's alerts as a SOC sees them (the README's picture): hosts by
/// name from the inventory, every severity, some owned, some resolved; a
/// repeat of a resolved honey-file alert says so and links back to it.
/// Leaves `target/screenshots/console-alerts-overview.png`.
#[tokio::test]
async fn a_repeat_links_back_and_the_overview_reads_like_a_morning_queue() {
    let nats = NatsServer::start().await;
    import_clients(
        &nats,
        "{\"client_id\":\"C.8e2f1a30b6d94c51\",\"hostname\":\"fin-ws-042\",\"os\":\"windows\",\"labels\":[\"finance\"]}\n\
         {\"client_id\":\"C.77aa01b2c3d4e5f6\",\"hostname\":\"dc-01\",\"os\":\"windows\",\"labels\":[\"tier0\"]}\n\
         {\"client_id\":\"C.1f2e3d4c5b6a7988\",\"hostname\":\"build-07\",\"os\":\"linux\"}\n\
         {\"client_id\":\"C.5d6e7f8091a2b3c4\",\"hostname\":\"web-prod-3\",\"os\":\"linux\",\"labels\":[\"dmz\"]}\n\
         {\"client_id\":\"C.0a1b2c3d4e5f6071\",\"hostname\":\"hr-lt-118\",\"os\":\"windows\"}\n",
    )
    .await;
    let (enrich, console) = start_enrich_and_console(&nats).await;
    let js = jetstream::new(nats.client().await);
    let queue = [
        (
            "q01",
            "Honey file \"payroll.xlsx\" accessed on fin-ws-042",
            "High",
            "C.8e2f1a30b6d94c51",
            "Windows.Detection.Honeyfiles",
        ),
        (
            "q02",
            "Sigma: LSASS memory dump via comsvcs.dll",
            "Critical",
            "C.77aa01b2c3d4e5f6",
            "Sigma.Windows.Hayabusa.Monitoring",
        ),
        (
            "q03",
            "Connection to known-bad host 203.0.113.77",
            "High",
            "C.5d6e7f8091a2b3c4",
            "Linux.Network.Netstat",
        ),
        (
            "q04",
            "Sigma: Suspicious scheduled task created",
            "Medium",
            "C.0a1b2c3d4e5f6071",
            "Sigma.Windows.Hayabusa.Monitoring",
        ),
        (
            "q05",
            "New executable hash seen: 7zr.exe",
            "Low",
            "C.1f2e3d4c5b6a7988",
            "Generic.Detection.HashHunter",
        ),
        (
            "q06",
            "Client event query error",
            "Medium",
            "C.1f2e3d4c5b6a7988",
            "Server.Internal.ClientEvents",
        ),
        (
            "q07",
            "Sigma: Mimikatz command line",
            "Critical",
            "C.77aa01b2c3d4e5f6",
            "Sigma.Windows.Hayabusa.Monitoring",
        ),
        (
            "q08",
            "More than 20 failed logons in 5 minutes",
            "High",
            "C.0a1b2c3d4e5f6071",
            "Windows.Events.FailedLogons",
        ),
        (
            "q09",
            "Sigma: PowerShell download cradle",
            "High",
            "C.8e2f1a30b6d94c51",
            "Sigma.Windows.Hayabusa.Monitoring",
        ),
        (
            "q10",
            "Flow failed: Windows.KapeFiles.Targets",
            "Info",
            "C.5d6e7f8091a2b3c4",
            "System.Flow.Completion",
        ),
        (
            "q11",
            "Honey file \"payroll.xlsx\" accessed on fin-ws-042",
            "High",
            "C.8e2f1a30b6d94c51",
            "Windows.Detection.Honeyfiles",
        ),
    ];
    let t0 = 1_790_000_000_000i64;
    for (i, (id, name, severity, client, artifact)) in queue.iter().enumerate() {
        let mut a = accepted_alert(id, name, t0 + i as i64 * 97_000, 0);
        a.client_id = Some((*client).into());
        a.flow_id = Some(format!("F.D{}", 1000 + i));
        a.artifact = Some((*artifact).into());
        a.event_data = json!({"Severity": severity, "User": "CORP\\jdoe", "Rule": name})
            .as_object()
            .cloned()
            .unwrap();
        a.dedup = Some(talon_proto::DedupInfo {
            key: format!("{name}|{client}"),
            window_start: a.received_at,
            window_end: a.received_at,
            suppressed_before: if *id == "q11" { 4 } else { 0 },
        });
        publish_unique(&js, &a, id).await;
    }
    // Some triage done already, through the API.
    let api = |user: &'static str| {
        talon_tests::console::Console::login(console.http_addr, user, password(user))
    };
    let alice = api("alice").await.unwrap();
    let bob = api("bob").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alice.get("/v1/alerts").await.1["counts"]["total"] != queue.len() {
        assert!(Instant::now() < deadline, "the queue listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let triage = |who: &talon_tests::console::Console, id: &str, body: serde_json::Value| {
        let who = who.clone();
        let path = format!("/v1/alerts/{id}/triage");
        async move {
            let (status, answer) = who.post(&path, Some(body)).await;
            assert_eq!(status, 200, "{path}: {answer}");
        }
    };
    triage(&alice, "q01", json!({"action": "resolve", "verdict": "false_positive", "note": "backup agent reads the share nightly"})).await;
    triage(&bob, "q02", json!({"action": "assign", "assignee": "bob"})).await;
    triage(&bob, "q02", json!({"action": "ack"})).await;
    triage(
        &alice,
        "q07",
        json!({"action": "assign", "assignee": "carol"}),
    )
    .await;
    triage(
        &bob,
        "q05",
        json!({"action": "resolve", "verdict": "benign"}),
    )
    .await;
    triage(
        &bob,
        "q10",
        json!({"action": "resolve", "verdict": "true_positive", "note": "collection re-run"}),
    )
    .await;
    triage(&alice, "q08", json!({"action": "ack"})).await;

    let (_driver, client) = browser().await;
    log_in(&client, console.http_addr, "bob").await;
    until(Duration::from_secs(20), "the queue listed", || async {
        rows(&client).await.len() == queue.len()
    })
    .await;
    let first = rows(&client).await.remove(0);
    assert!(
        first.contains("fin-ws-042"),
        "hostnames from the inventory: {first}"
    );
    click_css(&client, "#rows tr[data-id=q11] td.name").await;
    until(
        Duration::from_secs(10),
        "the repeat says what it repeats",
        || async {
            let note = text_of(&client, "#d-repeat-note").await;
            note.starts_with("Repeat of Honey file")
                && note.contains("(resolved as false positive,")
        },
    )
    .await;
    save_screenshot(&client, "console-alerts-overview.png").await;
    click_css(&client, "#d-repeat").await;
    until(
        Duration::from_secs(10),
        "the link opens the resolved alert",
        || async {
            text_of(&client, "#d-triage")
                .await
                .starts_with("Resolved as false positive")
                && client
                    .current_url()
                    .await
                    .is_ok_and(|u| u.as_str().contains("alert=q01"))
        },
    )
    .await;

    client.close().await.unwrap();
    console.stop().await.unwrap();
    enrich.stop().await.unwrap();
}

/// A silence made from an alert in the browser: "Silence alerts like
/// this" pre-fills the matchers, the preview counts what they would have
/// hidden, the next matching alert is hidden (and found behind the
/// silence's count), and "Expire now" ends it.
#[tokio::test]
async fn a_silence_is_made_from_an_alert_previewed_hides_the_next_and_is_expired() {
    let nats = NatsServer::start().await;
    import_clients(
        &nats,
        "{\"client_id\":\"C.5ca9e7\",\"hostname\":\"scanner-01\",\"os\":\"linux\",\"labels\":[\"scanners\"]}\n\
         {\"client_id\":\"C.fin042\",\"hostname\":\"fin-ws-042\",\"os\":\"windows\"}\n",
    )
    .await;
    let (enrich, console) = start_enrich_and_console(&nats).await;
    let js = jetstream::new(nats.client().await);
    let raise = |id: &str, name: &str, client: &str| {
        let mut a = accepted_alert(id, name, chrono::Utc::now().timestamp_millis(), 0);
        a.client_id = Some(client.into());
        a.artifact = Some("Linux.Sigma.Network".into());
        a.event_data = json!({"Severity": "Medium", "DestinationPort": 445})
            .as_object()
            .cloned()
            .unwrap();
        a
    };
    let scan = "Sigma: Network scan detected";
    for (i, (name, client)) in [
        (scan, "C.5ca9e7"),
        ("Honey file \"payroll.xlsx\" accessed", "C.fin042"),
        (scan, "C.5ca9e7"),
        (scan, "C.fin042"),
        (scan, "C.5ca9e7"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("p{i}");
        publish_unique(&js, &raise(&id, name, client), &id).await;
    }
    let bob = talon_tests::console::Console::login(console.http_addr, "bob", password("bob"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.get("/v1/alerts").await.1["counts"]["total"] != 5 {
        assert!(Instant::now() < deadline, "the alerts listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (_driver, client) = browser().await;
    log_in(&client, console.http_addr, "bob").await;
    until(Duration::from_secs(10), "five rows", || async {
        rows(&client).await.len() == 5
    })
    .await;
    click_css(&client, "#rows tr[data-id='p4']").await;
    until(Duration::from_secs(10), "the alert opens", || {
        visible(&client, "d-silence")
    })
    .await;
    click(&client, "d-silence").await;
    until(Duration::from_secs(10), "the silence editor opens", || {
        visible(&client, "s-editor")
    })
    .await;
    let prefilled: Vec<String> = client
        .execute(
            "return [...document.querySelectorAll('#s-matchers .matcher')].map(r => \
             r.querySelector('.m-field').value + ' ' + r.querySelector('.m-op').value + ' ' + r.querySelector('.m-value').value);",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        prefilled,
        [
            format!("name = {scan}"),
            "hostname = scanner-01".to_owned(),
            "artifact = Linux.Sigma.Network".to_owned()
        ]
    );
    until(Duration::from_secs(10), "the preview counts", || async {
        text_of(&client, "#s-preview").await
            == "Would have hidden 3 of the 5 alerts of the last 24 hours."
    })
    .await;
    // Loosened: without the host, the preview counts the fourth too.
    client
        .execute(
            "document.querySelectorAll('#s-matchers .matcher')[1].querySelector('button').click();",
            vec![],
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(10),
        "the preview follows the edit",
        || async {
            text_of(&client, "#s-preview").await
                == "Would have hidden 4 of the 5 alerts of the last 24 hours."
        },
    )
    .await;
    client
        .find(Locator::Id("s-comment"))
        .await
        .unwrap()
        .send_keys("Weekly network scan by the vulnerability team, CHG-2291")
        .await
        .unwrap();
    save_screenshot(&client, "console-silence-editor.png").await;
    click_css(&client, "#s-save").await;
    until(Duration::from_secs(10), "the silence is listed", || async {
        client
            .find_all(Locator::Css("#s-rows tr.state-active"))
            .await
            .map(|r| r.len() == 1)
            .unwrap_or(false)
    })
    .await;
    let (_, listed) = bob.get("/v1/silences").await;
    let sid = listed["silences"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["silences"][0]["created_by"], "bob");
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.get(&format!("/v1/silences/{sid}")).await.1["applied_by"]["replicas"] != 1 {
        assert!(Instant::now() < deadline, "enrich applies it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The next scan is hidden; the silence's count leads to it.
    publish_unique(&js, &raise("p5", scan, "C.fin042"), "p5").await;
    until(
        Duration::from_secs(20),
        "the silence counts one hidden alert",
        || async {
            click(&client, "v-silences").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            text_of(&client, "#s-rows tr.state-active .hidden-link").await == "1 alert"
        },
    )
    .await;
    save_screenshot(&client, "console-silences.png").await;
    click_css(&client, "#s-rows tr.state-active .hidden-link").await;
    until(Duration::from_secs(10), "the alerts it hid", || async {
        let r = rows(&client).await;
        r.len() == 1 && r[0].contains(scan) && r[0].contains("silenced")
    })
    .await;
    assert!(text_of(&client, "#f-silence")
        .await
        .starts_with("Hidden by silence"));

    // Expire now: it leaves the active list and hides nothing more.
    click(&client, "v-silences").await;
    click_css(&client, "#s-rows tr.state-active button:not(.hidden-link)").await;
    until(Duration::from_secs(10), "no active silence", || async {
        visible(&client, "no-silences").await
    })
    .await;
    click_css(&client, "#silence-states button:nth-child(3)").await;
    until(Duration::from_secs(10), "listed as expired", || async {
        text_of(&client, "#s-rows tr.state-expired .silence-state")
            .await
            .eq_ignore_ascii_case("expired")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.get(&format!("/v1/silences/{sid}")).await.1["applied_by"]["replicas"] != 1 {
        assert!(Instant::now() < deadline, "enrich applies the expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publish_unique(&js, &raise("p6", scan, "C.fin042"), "p6").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, one) = bob.get("/v1/alerts/p6").await;
        if status == reqwest::StatusCode::OK {
            assert_eq!(one["alert"]["silenced_by"], json!(null), "{one}");
            break;
        }
        assert!(Instant::now() < deadline, "p6 recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.close().await.unwrap();
    console.stop().await.unwrap();
    enrich.stop().await.unwrap();
}

/// A storm on a grouped inbox channel: one entry in the bell's panel with
/// its counts, and a button that lists exactly its alerts. Leaves
/// `target/screenshots/console-inbox-group.png` and
/// `console-group-alerts.png`.
#[tokio::test]
async fn a_group_message_in_the_inbox_lists_its_alerts() {
    const N: usize = 40;
    let nats = NatsServer::start().await;
    let (users, env) = console_users("127.0.0.1:0");
    let config = format!(
        "{users}\n[enrich]\nhttp_listen = \"127.0.0.1:0\"\n[velociraptor]\ngui_url = \"https://vr.example.org:8889\"\n\
         [[enrich.severity_transforms]]\nmember = \"Severity\"\nregex = \"(?i)^(low|medium|high|critical)$\"\nreplace = \"\"\n\
         [[channels]]\nid = \"inbox\"\nkind = \"inbox\"\nrate_per_minute = 0\ngroup_by = [\"name\"]\ngroup_wait = 2\n"
    );
    let enrich = start_enrich(&nats, &config).await;
    let suite = start_notify_and_console(&nats, &config, env).await;
    let js = jetstream::new(nats.client().await);
    for i in 0..N {
        let mut a = accepted_alert(
            &format!("g{i:03}"),
            "Sigma: Mimikatz Use",
            1_790_000_000_000 + i as i64 * 1000,
            0,
        );
        a.client_id = Some(format!("C.{:04}", i % 13));
        a.event_data = json!({"Severity": if i % 5 == 0 { "critical" } else { "high" }, "CommandLine": "mimikatz.exe sekurlsa::logonpasswords"})
            .as_object()
            .cloned()
            .unwrap();
        publish_unique(&js, &a, &a.id).await;
    }
    let (_driver, client) = browser().await;
    log_in(&client, suite.http_addr, "alice").await;
    until(Duration::from_secs(30), "the bell turns red", || {
        bell_is_red(&client)
    })
    .await;
    click(&client, "bell").await;
    until(Duration::from_secs(10), "the group entry shows", || async {
        text_of(&client, "#list .message.group h3")
            .await
            .starts_with(&format!("{N} alerts"))
    })
    .await;
    // (Severity chips are upper case by style.)
    let entry = text_of(&client, "#list .message.group")
        .await
        .to_lowercase();
    assert!(entry.contains("sigma: mimikatz use"), "{entry}");
    assert!(
        entry.contains("critical 8") && entry.contains("high 32"),
        "{entry}"
    );
    assert_eq!(
        client
            .find_all(Locator::Css("#list .message"))
            .await
            .unwrap()
            .len(),
        1
    );
    save_screenshot(&client, "console-inbox-group.png").await;
    click_css(&client, "#list .message.group .show-group").await;
    until(
        Duration::from_secs(20),
        "the group's alerts are listed",
        || async { rows(&client).await.len() == N },
    )
    .await;
    let listed = rows(&client).await;
    assert!(
        listed.iter().all(|r| r.contains("Sigma: Mimikatz Use")),
        "{listed:?}"
    );
    save_screenshot(&client, "console-group-alerts.png").await;
    suite.stop().await.unwrap();
    enrich.stop().await.unwrap();
}
