use clap::Parser;
use talon_kit::cli::ServiceArgs;

/// talon-notify: delivers routed alerts once, retrying what can be retried.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// Deliver only these channels (comma-separated ids); default: all.
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channels = args.channels;
    talon_kit::service::main("talon-notify", args.service, |mut ctx| async move {
        if channels.is_some() {
            ctx.config.notify.channels = channels;
        }
        talon_notify::start(ctx).await
    })
    .await
}
