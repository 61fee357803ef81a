//! `brokerstream-bench`: the end-to-end benchmark's tools, kept out of the
//! service binary. `load` plays a Centreon Broker sending metric events to
//! a BBDO listener; `blackhole` is an HTTP destination that answers 204 to
//! everything. `scripts/bench-e2e` drives both.

use std::net::SocketAddr;
use std::process::ExitCode;

use brokerstream::bbdo::Version;
use brokerstream_bench::{BlackholeStats, LoadOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "brokerstream's benchmark tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send metric events to a BBDO listener as a Centreon Broker would,
    /// and report (one JSON line) how fast brokerstream acknowledged them.
    Load(LoadArgs),
    /// An HTTP destination that answers 204 to everything (`GET /stats`
    /// counts requests, bytes and records).
    Blackhole(BlackholeArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// brokerstream's BBDO listener.
    #[arg(long, default_value = "127.0.0.1:5669")]
    bbdo: SocketAddr,
    /// Events to send.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per write.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Speak BBDO 3 (protobuf events) instead of BBDO 2.
    #[arg(long)]
    bbdo3: bool,
    /// Send for this many seconds instead of a number of events.
    #[arg(long, value_name = "SECONDS")]
    seconds: Option<f64>,
    /// Events per second (default: as fast as brokerstream reads).
    #[arg(long)]
    rate: Option<f64>,
    /// Send 300 hosts and 1500 services first, so outputs know their names.
    #[arg(long)]
    names: bool,
    /// The blackhole's URL (http://127.0.0.1:PORT): wait until it received
    /// every event and report ingest-to-destination latency.
    #[arg(long, value_name = "URL")]
    blackhole: Option<String>,
}

#[derive(clap::Args)]
struct BlackholeArgs {
    #[arg(long, default_value = "127.0.0.1:8086")]
    addr: SocketAddr,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BROKERSTREAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let result = match Cli::parse().command {
        Command::Load(args) => load(args),
        Command::Blackhole(args) => blackhole(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("brokerstream-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: LoadArgs) -> anyhow::Result<()> {
    let version = if args.bbdo3 { Version::V3 } else { Version::V2 };
    let options = LoadOptions {
        version,
        events: args.events,
        duration: args
            .seconds
            .map(std::time::Duration::try_from_secs_f64)
            .transpose()?,
        batch: args.batch,
        rate: args.rate,
        names: args.names,
        blackhole: args.blackhole,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(brokerstream_bench::load(args.bbdo, &options))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn blackhole(args: BlackholeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stats = std::sync::Arc::new(BlackholeStats::default());
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        tracing::info!("blackhole listening on http://{}", listener.local_addr()?);
        axum::serve(listener, brokerstream_bench::blackhole(stats))
            .with_graceful_shutdown(brokerstream::app::shutdown_signal())
            .await?;
        Ok(())
    })
}
