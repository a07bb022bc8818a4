//! The reference command-line interface of Cairn.
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Agentless, data-aware VM backup and recovery"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
