//! A real SMTP server for e-mail tests: `python3 -m aiosmtpd` with a small
//! handler that stores every accepted mail as JSON in a temporary folder.
//!
//! The handler refuses some recipients, by their local part: `reject…@`
//! gets `550 no such user`, `busy…@` gets `451 try again later`; every
//! other address is accepted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// The handler module aiosmtpd loads (`-c talon_smtp.Handler <dir>`).
const HANDLER: &str = r#"
import email, email.policy, json, os, time


def parse(raw):
    """The headers (decoded) and the leaf parts of a message, by Python's own MIME parser."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        headers = [[name, str(value)] for name, value in msg.items()]
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            try:
                text = part.get_content()
            except Exception as e:
                text = "<cannot decode: %s>" % e
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            parts.append({"content_type": part.get_content_type(), "text": text})
        return msg.get_content_type(), headers, parts
    except Exception as e:
        return "<cannot parse: %s>" % e, [], []


class Handler:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("talon_smtp.Handler takes the output folder")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 no such user"
        if local.startswith("busy"):
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        content_type, headers, parts = parse(raw)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": raw.decode("utf-8", "replace"),
            "content_type": content_type,
            "headers": headers,
            "parts": parts,
        }
        name = "%020d-%d-%06d.json" % (time.time_ns(), os.getpid(), self.count)
        tmp = os.path.join(self.outdir, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.outdir, name))
        return "250 Message accepted for delivery"
"#;

/// One mail as the server stored it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StoredMail {
    /// `MAIL FROM`.
    pub mail_from: String,
    /// The accepted `RCPT TO`s.
    pub rcpt_tos: Vec<String>,
    /// The message as received (headers, blank line, body), CRLF lines.
    pub data: String,
    /// The top-level content type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// Every header, in order, as Python's e-mail parser decodes it.
    pub headers: Vec<(String, String)>,
    /// The leaf parts, decoded (transfer encoding and charset undone).
    pub parts: Vec<MailPart>,
}

/// One leaf part of a stored mail.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MailPart {
    /// e.g. `text/plain`, `text/html`.
    pub content_type: String,
    /// The decoded content.
    pub text: String,
}

impl StoredMail {
    /// The values of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The decoded text of the first part of `content_type`.
    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|p| p.content_type == content_type)
            .map(|p| p.text.as_str())
    }
}

/// An aiosmtpd on a fixed loopback port; stopped (SIGKILL) on drop.
/// Its port is reserved from [`SmtpServer::new`] until the first
/// [`SmtpServer::start`], so configs can name it before the server runs
/// (connections to it are refused until then).
pub struct SmtpServer {
    pub port: u16,
    reserved: Option<crate::ports::Reserved>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpServer {
    /// A server on a free port, not started yet.
    pub fn new() -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("talon_smtp.py"), HANDLER).expect("write handler");
        std::fs::create_dir(dir.path().join("mail")).expect("mail folder");
        let reserved = crate::ports::reserve();
        SmtpServer {
            port: reserved.port(),
            reserved: Some(reserved),
            dir,
            child: None,
        }
    }

    /// A server on a free port, started and accepting connections.
    pub async fn started() -> SmtpServer {
        let mut server = SmtpServer::new();
        server.start().await;
        server
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Starts it (again) on its port; returns once it greets. Should
    /// the port be taken in the instant after its reservation is let go
    /// of, it retries there (configs already name it) for 30 s.
    pub async fn start(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.try_start().await {
            assert!(
                Instant::now() < deadline,
                "port {} stayed taken for 30 s: aiosmtpd cannot start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts it; false when its port was taken.
    async fn try_start(&mut self) -> bool {
        self.stop();
        let python = std::env::var_os("TALON_PYTHON").unwrap_or_else(|| "python3".into());
        let log = std::fs::File::create(self.dir.path().join("aiosmtpd.log")).expect("log");
        if let Some(reserved) = self.reserved.take() {
            reserved.release();
        }
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "talon_smtp.Handler"])
            .arg(self.mail_dir())
            .env("PYTHONPATH", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if greets(self.port).await {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = std::fs::read_to_string(self.dir.path().join("aiosmtpd.log"))
                    .unwrap_or_default();
                if crate::ports::says_address_in_use(&log) {
                    return false;
                }
                panic!(
                    "aiosmtpd exited ({status}); install it with `pip install aiosmtpd` \
                     (or scripts/setup), or point TALON_PYTHON at a python that has it:\n{log}"
                );
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it (SIGKILL); the stored mail stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `[secrets.<name>]` for this server: `tls = "none"`, no auth.
    pub fn secret_toml(&self, name: &str) -> String {
        format!(
            "[secrets.{name}]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"Velociraptor alerts <alerts@example.org>\"\n",
            self.port
        )
    }

    /// An email `[[channels]]` entry `id` to `recipients` through this
    /// server, with its `[secrets.<id>_smtp]` table.
    pub fn channel_toml(&self, id: &str, recipients: &[&str]) -> String {
        let secret = format!("{}_smtp", id.replace('-', "_"));
        format!(
            "[[channels]]\nid = \"{id}\"\nkind = \"email\"\nsecret = \"{secret}\"\n\
             recipients = {recipients:?}\nrate_per_minute = 0\n\n{}",
            self.secret_toml(&secret)
        )
    }

    /// Every mail stored so far, oldest first.
    pub fn messages(&self) -> Vec<StoredMail> {
        read_mail(&self.mail_dir())
    }

    /// Waits until at least `n` mails are stored (or `within` passes),
    /// then returns them all.
    pub async fn wait_for_messages(&self, n: usize, within: Duration) -> Vec<StoredMail> {
        let deadline = Instant::now() + within;
        loop {
            let mail = self.messages();
            if mail.len() >= n || Instant::now() >= deadline {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Default for SmtpServer {
    fn default() -> Self {
        SmtpServer::new()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Does something on `port` answer with an SMTP greeting?
async fn greets(port: u16) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    let mut buf = [0u8; 3];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"220"
    )
}

fn read_mail(dir: &Path) -> Vec<StoredMail> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|bytes| serde_json::from_slice(&bytes).expect("stored mail is JSON"))
        .collect()
}
