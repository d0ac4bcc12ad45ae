use clap::Parser;
use talon_kit::cli::ServiceArgs;

/// talon-enrich: overrides, context, severity, client details, routing.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let boot = Args::parse().service.boot("talon-enrich").await?;
    talon_enrich::run(boot.config, boot.client, boot.shutdown).await
}
