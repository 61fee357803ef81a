use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use brokerstream::config::{Config, Overrides};

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
    /// Operate on the journal while the service is stopped.
    #[command(subcommand)]
    Journal(JournalCommand),
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Read every segment and report problems, changing nothing. Exits 2
    /// when problems were found.
    Check(JournalArgs),
    /// Do what a start does: cut torn records, quarantine corrupt ones, and
    /// report what was lost.
    Repair(JournalArgs),
}

#[derive(clap::Args)]
struct JournalArgs {
    /// TOML configuration file.
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding the journal [default: ./data]
    #[arg(long, env = "BROKERSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
    /// Journal fsync policy: always, interval or never [default: always]
    #[arg(long, env = "BROKERSTREAM_FSYNC")]
    fsync: Option<String>,
}

fn main() -> ExitCode {
    // A write past the file-size limit (RLIMIT_FSIZE) must fail with EFBIG
    // like a full disk does, so the journal refuses the batch and goes on,
    // instead of the default action of SIGXFSZ: killing the process.
    // SAFETY: setting a signal to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BROKERSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).map(|()| ExitCode::SUCCESS),
        Command::Journal(command) => journal(command),
    };
    match result {
        Ok(code) => code,
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
        fsync: args.fsync,
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

fn journal(command: JournalCommand) -> anyhow::Result<ExitCode> {
    let (args, repair) = match command {
        JournalCommand::Check(args) => (args, false),
        JournalCommand::Repair(args) => (args, true),
    };
    let config = Config::load(Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        ..Overrides::default()
    })?;
    let journal_config = config.journal_config()?;
    if repair {
        let journal = brokerstream::journal::Journal::open(journal_config)?;
        print!("{}", journal.recovery_report());
        journal.close();
        Ok(ExitCode::SUCCESS)
    } else {
        // Checking while the service runs would read segments being
        // written: take the lock like the service does.
        let _lock = brokerstream::journal::lock_dir(&journal_config.dir)?;
        let report = brokerstream::journal::check(&journal_config.dir)?;
        print!("{report}");
        Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    }
}
