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
    let boot = Args::parse().service.boot("talon-ingest").await?;
    talon_ingest::run(boot.config, &boot.env, boot.client, boot.shutdown).await
}
