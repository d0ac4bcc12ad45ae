//! talonctl: set up the streams, raise alerts, watch subjects, read the
//! dead-letter queue, check a config file.

mod cli;
mod cmd;

use clap::Parser;
use talon_kit::config::Env;

use cli::{Cli, Command};
use cmd::Nats;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Runs one subcommand with what it needs: hash-password and health nothing,
/// check-config the file alone, dedup, alerts and silence the config (they talk HTTP), every
/// other the config and a NATS connection, made before the subcommand looks
/// at its own arguments.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Env::from_process();
    let Cli { global, command } = cli;
    let nats = || Nats::connect(&global, &env);
    match command {
        Command::HashPassword => cmd::hash_password::run(),
        Command::Health(args) => cmd::health::run(args).await,
        Command::CheckConfig => cmd::check_config::run(&global, &env),
        Command::Dedup(args) => cmd::dedup::run(args, &global.load_config(&env)?, &env).await,
        Command::Alerts(args) => cmd::alerts::run(args, &global.load_config(&env)?, &env).await,
        Command::Silence(args) => cmd::silence::run(args, &global.load_config(&env)?, &env).await,
        Command::Init => cmd::init::run(&nats().await?).await,
        Command::Alert(args) => cmd::alert::run(args, &nats().await?).await,
        Command::Event(args) => cmd::event::run(args, &nats().await?).await,
        Command::Tail(args) => cmd::tail::run(args, &nats().await?).await,
        Command::Dlq(args) => cmd::dlq::run(args, &nats().await?).await,
        Command::Clients(args) => cmd::clients::run(args, &nats().await?).await,
    }
}
