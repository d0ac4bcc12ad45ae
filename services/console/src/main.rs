use clap::Parser;
use talon_kit::cli::ServiceArgs;

/// talon-console: the web console — every alert, its triage, the inbox.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    talon_kit::service::main("talon-console", args.service, talon_console::start).await
}
