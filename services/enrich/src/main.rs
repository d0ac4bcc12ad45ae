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
    let args = Args::parse().service;
    talon_kit::service::main("talon-enrich", args, talon_enrich::start).await
}
