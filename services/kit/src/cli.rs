//! The command line every service shares: `--config`, `--nats`,
//! `--log-format`; and the start-up that turns them into a loaded config.

use std::path::PathBuf;

use crate::config::{Config, Env};
use crate::logging::{self, LogFormat};

#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// The suite's TOML file.
    #[arg(long, env = "TALON_CONFIG", default_value = "/etc/talon/talon.toml")]
    pub config: PathBuf,
    /// NATS server URL; overrides `[nats].url` and TALON_NATS_URL.
    #[arg(long)]
    pub nats: Option<String>,
    /// Log as text or as JSON lines.
    #[arg(long, env = "TALON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Listen here instead of the service's `http_listen` (several replicas
    /// of one service on one host).
    #[arg(long)]
    pub http_listen: Option<String>,
}

impl ServiceArgs {
    /// Sets up logging and loads the config. On a bad config, prints one
    /// line naming the key and its line to stderr and exits with status 2.
    pub fn start(&self, env: &Env) -> Config {
        logging::init(self.log_format, env.get("RUST_LOG"));
        match Config::load(&self.config, env) {
            Ok(mut config) => {
                if let Some(url) = &self.nats {
                    config.nats.url = url.clone();
                }
                config
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    }
}

/// What a service's `main` needs: its config, the environment, a NATS client
/// that keeps reconnecting, and the shutdown token (SIGTERM, Ctrl-C).
pub struct Boot {
    pub config: Config,
    pub env: Env,
    pub client: async_nats::Client,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl ServiceArgs {
    /// Loads the config (exiting with one line on a bad one), connects to
    /// NATS as `name` and watches for signals.
    pub async fn boot(&self, name: &str) -> anyhow::Result<Boot> {
        use anyhow::Context as _;
        let env = Env::from_process();
        let mut config = self.start(&env);
        for warning in &config.warnings {
            tracing::warn!("configuration: {warning}");
        }
        if let Some(addr) = &self.http_listen {
            let Some(service) = crate::registry::service(name) else {
                anyhow::bail!("--http-listen: {name} has no http_listen");
            };
            let slot = (service.http_listen)(&mut config);
            *slot = addr.clone();
        }
        let client = crate::nats::connect(&config.nats, &env, name, crate::nats::Initial::Retry)
            .await
            .context("connecting to NATS")?;
        Ok(Boot {
            config,
            env,
            client,
            shutdown: crate::shutdown::on_signals(),
        })
    }
}
