//! talon-notify: one durable consumer per channel on
//! `Server.Monitor.Alerts.<channel-id>`, shared by every replica; each
//! (alert, channel) delivered once, failures retried with backoff, what
//! cannot be delivered parked on `talon.dlq.notify`.

pub mod channels;
pub mod console;
pub mod ledger;
pub mod metrics;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use talon_kit::config::{ChannelConfig, ChannelKind, Config, Env};
use talon_kit::http::Health;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channels::chat::{ChannelOptions, Chat, ChatKind};
use crate::channels::{email::Email, inbox, webhook};
use crate::worker::{Channel, Sender};

pub struct Running {
    pub http_addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Ledger records outlive the longest retry deadline by this much.
const LEDGER_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// How `channel` delivers.
fn sender(
    channel: &ChannelConfig,
    config: &Config,
    env: &Env,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<Sender> {
    Ok(match channel.kind {
        ChannelKind::Webhook => {
            let url = channel.url(env)?;
            let pairs: Vec<(String, String)> = channel.headers.clone().into_iter().collect();
            let headers = webhook::headers_of(&pairs)
                .map_err(|e| anyhow::anyhow!("channels[id={}].headers: {e}", channel.id))?;
            let secret = channel.signing_secret(env)?.map(String::into_bytes);
            Sender::Webhook(webhook::Webhook::new(url, headers, secret)?)
        }
        ChannelKind::Email => Sender::Email(Box::new(
            Email::new(channel, config, env)
                .map_err(|e| anyhow::anyhow!("channels[id={}]: {e}", channel.id))?,
        )),
        ChannelKind::Inbox => {
            let users: Vec<inbox::User> = config.notify.users.iter().map(Into::into).collect();
            let inbox = inbox::Inbox::new(js.clone(), channel, &users)
                .map_err(|e| anyhow::anyhow!("channels[id={}]: {e}", channel.id))?;
            if inbox.users().is_empty() {
                tracing::warn!(channel = %channel.id, "no user matches this inbox channel's recipients and recipient_roles");
            }
            Sender::Inbox(inbox)
        }
        ChannelKind::Slack
        | ChannelKind::Mattermost
        | ChannelKind::Teams
        | ChannelKind::Googlechat
        | ChannelKind::Discord
        | ChannelKind::Pagerduty => {
            let kind = ChatKind::of(channel.kind).ok_or_else(|| {
                anyhow::anyhow!("channels[id={}]: no chat kind {}", channel.id, channel.kind)
            })?;
            chat_sender(kind, channel, env)?
        }
    })
}

/// A chat or incident channel: its URL (PagerDuty's by default) and, for
/// PagerDuty, its routing key, both resolved from `env` or files.
fn chat_sender(kind: ChatKind, channel: &ChannelConfig, env: &Env) -> anyhow::Result<Sender> {
    let url = channel.url(env)?;
    let routing_key = match kind {
        ChatKind::PagerDuty => Some(channel.routing_key(env)?),
        _ => None,
    };
    let options = ChannelOptions::of(channel, routing_key);
    let chat = Chat::new(kind, &url, options)
        .map_err(|e| anyhow::anyhow!("channels[id={}].url: {e}", channel.id))?;
    Ok(Sender::Chat(Box::new(chat)))
}

/// Starts delivering on the configured channels (only those in `only`, when
/// given).
pub async fn start(
    config: Config,
    env: &Env,
    client: async_nats::Client,
    shutdown: CancellationToken,
    only: Option<Vec<String>>,
) -> anyhow::Result<Running> {
    if let Some(only) = &only {
        for id in only {
            if config.channel(id).is_none() {
                bail!("--channels: no channel {id:?} in the config");
            }
        }
    }
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let console = console::Console::new(&config, env, &registry, shutdown.clone())?;
    let health = Health::new(client.clone(), registry);
    let js = talon_kit::nats::jetstream(client);
    let mut channels = Vec::new();
    for c in &config.channels {
        if only.as_ref().is_some_and(|o| !o.contains(&c.id)) {
            continue;
        }
        channels.push(Arc::new(Channel::new(
            c.id.clone(),
            sender(c, &config, env, &js)?,
            c.max_in_flight,
            c.rate_per_minute,
            Duration::from_secs(c.retry_deadline_seconds),
        )));
    }
    let topology = talon_kit::streams::Topology::from(&config.nats);
    let keep = config
        .channels
        .iter()
        .map(|c| Duration::from_secs(c.retry_deadline_seconds))
        .max()
        .unwrap_or_default()
        + LEDGER_MARGIN;

    let router =
        talon_kit::http::health_routes(health.clone()).merge(console::routes(console.clone()));
    let (listener, http_addr) = talon_kit::http::bind(&config.notify.http_listen)
        .await
        .with_context(|| {
            format!(
                "notify.http_listen: cannot listen on {}",
                config.notify.http_listen
            )
        })?;
    tracing::info!(addr = %http_addr, channels = channels.len(), "notify listening");
    let server = tokio::spawn(talon_kit::http::serve(listener, router, shutdown.clone()));

    let replica = format!(
        "notify-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let task = tokio::spawn(async move {
        let ledger = loop {
            let opened = async {
                console.connect(&js, topology).await?;
                anyhow::Ok(
                    ledger::Ledger::open(&js, topology.replicas, keep, replica.clone()).await?,
                )
            };
            match opened.await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(error = %e, "delivery ledger or console not ready; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            server.await??;
                            return Ok(());
                        }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let shared = Arc::new(worker::Shared {
            js,
            ledger,
            metrics,
            topology,
        });
        health.set_streams_ready(true);
        let workers: Vec<_> = channels
            .into_iter()
            .map(|c| tokio::spawn(worker::run_channel(shared.clone(), c, shutdown.clone())))
            .collect();
        for w in workers {
            w.await?;
        }
        server.await??;
        tracing::info!("notify stopped");
        Ok(())
    });
    Ok(Running { http_addr, task })
}

pub async fn run(
    config: Config,
    env: &Env,
    client: async_nats::Client,
    shutdown: CancellationToken,
    only: Option<Vec<String>>,
) -> anyhow::Result<()> {
    start(config, env, client, shutdown, only)
        .await?
        .task
        .await?
}
