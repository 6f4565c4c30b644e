//! Runs the Render API fake until Ctrl-C, printing how to reach it.

use autonoma_render_fake::{Options, RenderFake};
use clap::Parser;

/// A stateful contract fake of Render's public REST API on 127.0.0.1.
#[derive(Parser)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Bearer token to accept (random when not given).
    #[arg(long)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = RenderFake::start_with(Options {
        port: args.port,
        token: args.token,
    })
    .await?;
    println!("RENDER_API_BASE_URL={}", fake.base_url());
    println!("RENDER_API_TOKEN={}", fake.token());
    println!("RENDER_OWNER_ID={}", fake.owner_id());
    tokio::signal::ctrl_c().await?;
    for violation in fake.violations() {
        eprintln!("contract violation: {violation}");
    }
    fake.shutdown().await;
    Ok(())
}
