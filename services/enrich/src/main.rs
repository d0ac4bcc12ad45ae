use anyhow::Context as _;
use clap::Parser;
use talon_kit::cli::ServiceArgs;
use talon_kit::config::Env;
use talon_kit::nats::{self, Initial};

/// talon-enrich: overrides, context, severity, client details, routing.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::from_process();
    let config = args.service.start(&env);
    let client = nats::connect(&config.nats, &env, "talon-enrich", Initial::Retry)
        .await
        .context("connecting to NATS")?;
    let shutdown = talon_kit::shutdown::on_signals();
    talon_enrich::run(config, client, shutdown).await
}
