//! `brokerstream-bench`: the end-to-end benchmark's tools, kept out of the
//! service binary. `load` plays a Centreon Broker sending metric events to
//! a BBDO listener; `blackhole` is an HTTP destination that answers 204 to
//! everything. `scripts/bench-e2e` drives both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use brokerstream::bbdo::tls::{TlsSetting, TlsSettings};
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
    /// Run the session inside TLS, as a Centreon Broker with `tls: yes`:
    /// `anonymous` (no certificate) or `cert` (with --tls-key and
    /// --tls-cert). brokerstream's listener needs `[bbdo] tls` set.
    #[arg(long, value_enum)]
    tls: Option<TlsArg>,
    /// PEM private key for `--tls cert`.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM certificate for `--tls cert`.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM CA that signed brokerstream's certificate: verify it.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The name brokerstream's certificate must carry (with --tls-ca).
    #[arg(long, value_name = "NAME")]
    tls_hostname: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TlsArg {
    Anonymous,
    Cert,
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
    let tls = match args.tls {
        None => None,
        Some(TlsArg::Anonymous) => Some(TlsSettings {
            tls: TlsSetting::Yes,
            ..TlsSettings::default()
        }),
        Some(TlsArg::Cert) => {
            anyhow::ensure!(
                args.tls_key.is_some() && args.tls_cert.is_some(),
                "--tls cert needs --tls-key and --tls-cert"
            );
            Some(TlsSettings {
                tls: TlsSetting::Yes,
                private_key: args.tls_key,
                public_cert: args.tls_cert,
                ca_certificate: args.tls_ca,
                tls_hostname: args.tls_hostname,
            })
        }
    };
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
        tls,
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
