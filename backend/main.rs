use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use brokerstream::config::{parse_listen_list, Config, Overrides};

/// brokerstream: stream connectors for Centreon monitoring data.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: HTTP API and UI, ingest, output workers.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding the SQLite database [default: ./data]
    #[arg(long, env = "BROKERSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API and UI [default: 127.0.0.1:8080]
    #[arg(long, env = "BROKERSTREAM_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Run the built-in simulator at RATE events per second.
    #[arg(long, value_name = "RATE", env = "BROKERSTREAM_SIMULATE")]
    simulate: Option<u32>,
    /// BBDO listen addresses, comma-separated, or `none` [default: 127.0.0.1:5669]
    #[arg(long, value_name = "ADDRS", env = "BROKERSTREAM_BBDO_ADDR", value_parser = parse_addrs)]
    bbdo_addr: Option<ListenAddrs>,
}

/// A whole list in one value, so that clap does not take it for a
/// repeated flag.
#[derive(Clone)]
struct ListenAddrs(Vec<SocketAddr>);

fn parse_addrs(text: &str) -> Result<ListenAddrs, String> {
    parse_listen_list(text).map(ListenAddrs)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BROKERSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("brokerstream: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        http_addr: args.http_addr,
        simulate: args.simulate,
        bbdo_listen: args.bbdo_addr.map(|a| a.0),
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let app = brokerstream::app::start(config).await?;
        brokerstream::app::shutdown_signal().await;
        tracing::info!("shutting down: flushing outputs");
        app.shutdown().await;
        Ok(())
    })
}
