use clap::Parser;
use talon_kit::cli::ServiceArgs;

/// talon-ingest: validates and partitions alerts from NATS and HTTP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().service;
    talon_kit::service::main("talon-ingest", args, talon_ingest::start).await
}
