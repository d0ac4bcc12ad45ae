use clap::Parser;
use talon_kit::cli::ServiceArgs;

/// talon-dedup: dedup windows per key, in sled, that survive restarts.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let boot = Args::parse().service.boot("talon-dedup").await?;
    talon_dedup::run(boot.config, &boot.env, boot.client, boot.shutdown).await
}
