//! talonctl's command line: the options every subcommand takes and the
//! subcommands, each with its arguments defined in its module under `cmd`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use talon_kit::config::{Config, Env};

use crate::cmd::{alert, alerts, clients, dedup, dlq, event, health, silence, tail};

#[derive(Debug, Parser)]
#[command(version, about = "talon's command-line tool")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The options every subcommand takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// The suite's TOML file; without it, the defaults (NATS on 127.0.0.1:4222).
    #[arg(long, env = "TALON_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// NATS server URL; overrides the config.
    #[arg(long, global = true)]
    pub nats: Option<String>,
}

impl Global {
    /// The config of `--config` (the defaults without one), with `--nats`
    /// applied.
    pub fn load_config(&self, env: &Env) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path, env).map_err(|e| anyhow::anyhow!("{e}"))?,
            None => Config::parse("", env).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        if let Some(url) = &self.nats {
            config.nats.url = url.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create every stream and consumer of the suite (idempotent).
    Init,
    /// Raise one alert on Server.Internal.Alerts, like Velociraptor's alert().
    Alert(alert::Args),
    /// Publish one monitoring row on Monitoring.<ArtifactName>, as a
    /// Velociraptor event artifact would, for ingest's rules.
    Event(event::Args),
    /// Print every message published on a subject (wildcards allowed).
    Tail(tail::Args),
    /// The dead-letter queue.
    Dlq(dlq::Args),
    /// Parse the config file and report the first problem.
    CheckConfig,
    /// Print an argon2 hash of a console password, for a user's
    /// `password_hash_env` / `password_hash_file`. Asks twice on a terminal;
    /// otherwise reads the first line of standard input.
    HashPassword,
    /// The client inventory (KV bucket talon_clients).
    Clients(clients::Args),
    /// Dedup windows, through a dedup replica's HTTP API.
    Dedup(dedup::Args),
    /// The console's alerts and their triage (list, show, ack, assign,
    /// resolve, reopen, note), through its HTTP API as a console user.
    Alerts(alerts::Args),
    /// Silences (add, list, expire), through the console's HTTP API as a
    /// console user.
    Silence(silence::Args),
    /// GET a URL (a service's /readyz) and exit 0 on a 2xx answer: the
    /// image's health check, with no curl in it.
    Health(health::Args),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["talonctl", "--nats", "nats://a", "dlq", "list"]).unwrap();
        assert_eq!(cli.global.nats.as_deref(), Some("nats://a"));
        let cli = Cli::try_parse_from([
            "talonctl", "dedup", "forget", "k", "--config", "t.toml", "--url", "h:1",
        ])
        .unwrap();
        assert_eq!(cli.global.config, Some(PathBuf::from("t.toml")));
        assert!(matches!(cli.command, Command::Dedup(_)));
    }
}
