//! The `brokerstream` command line: `serve` (the service, [`app`] in the
//! library), `check-config`, `run-script`, `import`, `journal
//! check|repair`, `backup` and `restore`: only what an operator runs (the benchmark's load
//! generator and blackhole are the `brokerstream-bench` binary, in
//! `bench/`). Flags and their environment variables become the library's
//! `config::Overrides`.
//!
//! [`app`]: brokerstream::app

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use brokerstream::config::{parse_allow_list, parse_listen_list, AllowList, Config, Overrides};
use brokerstream::reload::SetLogFilter;

/// brokerstream: stream connectors for Centreon monitoring data.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` or as one JSON object per line (`json`), for log
    /// collectors. The level filter is `BROKERSTREAM_LOG` (default info).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BROKERSTREAM_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: HTTP API and UI, ingest, output workers.
    Serve(ServeArgs),
    /// Run a Centreon Lua stream connector against events from a file or
    /// the simulator; print what it logged, what each write()/flush()
    /// returned, and how many events it acknowledged.
    RunScript(RunScriptArgs),
    /// Create brokerstream outputs from the Lua outputs of a Centreon
    /// Broker configuration file (centreonBroker.output[]).
    Import(ImportArgs),
    /// Operate on the journal while the service is stopped.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Check a configuration file as `serve` would read it, without
    /// starting anything; exits 1 with the error (and its key) if it is
    /// not valid.
    CheckConfig(CheckConfigArgs),
    /// Copy the database, the secret key, the journal's cursors, the cache
    /// snapshot and the uploaded scripts into DIR (new or empty), while the
    /// service runs; with --with-journal, the journal's events too.
    Backup(BackupArgs),
    /// Copy a backup into a new or empty data directory, for a service to
    /// start on.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct BackupArgs {
    /// Where the backup goes: a new or empty directory.
    dir: PathBuf,
    /// Copy the journal's events too, not only its cursors: events not
    /// yet delivered are then delivered after a restore.
    #[arg(long)]
    with_journal: bool,
    /// TOML configuration file (its data_dir applies).
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory to back up [default: ./data]
    #[arg(long, env = "BROKERSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// A directory `brokerstream backup` wrote.
    dir: PathBuf,
    /// TOML configuration file (its data_dir applies).
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory to restore into: new or empty.
    #[arg(long, env = "BROKERSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
struct RunScriptArgs {
    /// The script.
    script: PathBuf,
    /// A parameter of init(conf): NAME=TYPE:VALUE, TYPE one of string,
    /// number, password (NAME=VALUE is a string). Repeatable.
    #[arg(long = "param", value_name = "NAME=TYPE:VALUE")]
    params: Vec<String>,
    /// Events to hand to the script, one JSON event per line.
    #[arg(long, value_name = "FILE.ndjson", conflicts_with = "simulate")]
    events: Option<PathBuf>,
    /// Hand N events of the built-in simulator instead.
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// TOML configuration file (its [lua] settings apply).
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory whose cache snapshot the script starts from.
    #[arg(long, env = "BROKERSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CheckConfigArgs {
    /// The TOML configuration file to check.
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: PathBuf,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Centreon Broker's JSON configuration (e.g. central-broker.json).
    file: PathBuf,
    /// TOML configuration file (its data_dir and [lua] settings apply).
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of everything the service keeps: database, journal, cache, scripts, dead letters [default: ./data]
    #[arg(long, env = "BROKERSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "BROKERSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of everything the service keeps: database, journal, cache, scripts, dead letters [default: ./data]
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
    /// BBDO listen addresses, comma-separated, or `none` [default: 127.0.0.1:5669]
    #[arg(long, value_name = "ADDRS", env = "BROKERSTREAM_BBDO_ADDR", value_parser = parse_addrs)]
    bbdo_addr: Option<ListenAddrs>,
    /// Peers the BBDO listeners accept: addresses and networks,
    /// comma-separated (127.0.0.1,10.0.0.0/8,::1); empty for every peer
    /// [default: every peer]
    #[arg(long, value_name = "NETS", env = "BROKERSTREAM_BBDO_ALLOW", value_parser = parse_allow_list)]
    bbdo_allow: Option<AllowList>,
    /// PEM certificate chain: the HTTP server speaks HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", env = "BROKERSTREAM_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "BROKERSTREAM_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

/// A whole list in one value, so that clap does not take it for a
/// repeated flag.
#[derive(Clone)]
struct ListenAddrs(Vec<SocketAddr>);

fn parse_addrs(text: &str) -> Result<ListenAddrs, String> {
    parse_listen_list(text).map(ListenAddrs)
}

fn main() -> ExitCode {
    // A write past the file-size limit (RLIMIT_FSIZE) must fail with EFBIG
    // like a full disk does, so the journal refuses the batch and goes on,
    // instead of the default action of SIGXFSZ: killing the process.
    // SAFETY: setting a signal to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // No transparent huge pages: the allocator asks for them on its heaps,
    // and a 2 MiB page is resident as soon as one byte of it is touched,
    // which kept an idle service's RSS 8 MiB higher (`scripts/bench-e2e
    // idle`), for a throughput difference within the benchmark's noise.
    // SAFETY: a process-wide flag with no pointer arguments.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BROKERSTREAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `serve` changes the filter once its configuration is read, and at
    // each reload.
    let set_log_filter: Box<SetLogFilter> = match cli.log_format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |text: &str| {
                let filter =
                    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            })
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |text: &str| {
                let filter =
                    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            })
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args, &set_log_filter).map(|()| ExitCode::SUCCESS),
        Command::RunScript(args) => run_script(args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => import(args).map(|()| ExitCode::SUCCESS),
        Command::Journal(command) => journal(command),
        Command::CheckConfig(args) => check_config(args).map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => backup(args).map(|()| ExitCode::SUCCESS),
        Command::Restore(args) => restore(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("brokerstream: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every connection is a file descriptor, and the usual soft limit (1024,
/// or even 256) is far below `http.max_connections` plus
/// `bbdo.max_connections`: raise it to the hard limit, which needs no
/// privilege, and say what it is.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "cannot read the open files limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let before = limit.rlim_cur;
    let mut raised = false;
    if limit.rlim_cur < limit.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            limit.rlim_cur = limit.rlim_max;
            raised = true;
        } else {
            tracing::warn!(
                "cannot raise the open files limit from {before} to {}: {}",
                limit.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    if raised {
        tracing::info!(
            "open files limit: {} (raised from {before} to the hard limit)",
            limit.rlim_cur
        );
    } else {
        tracing::info!("open files limit: {before} (hard limit {})", limit.rlim_max);
    }
}

/// What the flags and the environment say, for a start and for each
/// reload (which reads the file again under the same flags).
fn overrides(args: &ServeArgs) -> Overrides {
    let args = args.clone();
    Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        http_addr: args.http_addr,
        simulate: args.simulate,
        fsync: args.fsync,
        bbdo_listen: args.bbdo_addr.map(|a| a.0),
        admin_password: None,
        bbdo_allow: args.bbdo_allow,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
    }
}

fn serve(args: ServeArgs, set_log_filter: &SetLogFilter) -> anyhow::Result<()> {
    // What the service creates (database, journal, cache, uploaded scripts,
    // dead letters) is its user's alone: it holds every stored password's
    // key and the events of the whole platform.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    raise_open_files_limit();
    let config = Config::load(Overrides {
        admin_password: admin_password()?,
        ..overrides(&args)
    })?;
    if let Err(e) = set_log_filter(&brokerstream::reload::log_filter(&config)) {
        anyhow::bail!("log_level: {e}");
    }
    // Read once, then gone from the environment: scripts can call
    // os.getenv, and child processes inherit it. No other thread exists
    // yet, so nothing reads the environment while it changes.
    std::env::remove_var("BROKERSTREAM_ADMIN_PASSWORD");
    std::env::remove_var("BROKERSTREAM_ADMIN_PASSWORD_FILE");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(brokerstream::memory::collect_if_asked)
        .build()?;
    runtime.block_on(async {
        // Before anything runs: SIGHUP's default action ends the process.
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let app = brokerstream::app::start(config.clone()).await?;
        // Listeners bound, journal recovered, workers started: systemd's
        // `Type=notify` waits for this. Outside systemd it does nothing.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let mut running = Config {
            admin_password: None,
            ..config
        };
        let shutdown = brokerstream::app::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup.recv() => {
                    // systemd waits for READY=1 again before it calls the
                    // reload done.
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                    running = brokerstream::reload::reload(
                        &app,
                        running,
                        overrides(&args),
                        set_log_filter,
                    )
                    .await;
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                }
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!("shutting down: flushing outputs");
        app.shutdown().await;
        Ok(())
    })
}

/// The first admin's password: `BROKERSTREAM_ADMIN_PASSWORD`, or the first
/// line of the file `BROKERSTREAM_ADMIN_PASSWORD_FILE` names (what an
/// unattended install writes: the package leaves one readable by the
/// service only). Used only while no user exists.
fn admin_password() -> anyhow::Result<Option<String>> {
    if let Some(password) = std::env::var("BROKERSTREAM_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(password));
    }
    let Some(path) = std::env::var_os("BROKERSTREAM_ADMIN_PASSWORD_FILE").filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "BROKERSTREAM_ADMIN_PASSWORD_FILE: cannot read {}: {e}",
            std::path::Path::new(&path).display()
        )
    })?;
    Ok(text
        .lines()
        .next()
        .map(str::to_owned)
        .filter(|p| !p.is_empty()))
}

fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let path = args.config.clone();
    let config = Config::load(Overrides {
        config_file: Some(args.config),
        ..Overrides::default()
    })
    .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    config
        .lua_settings()
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    println!(
        "{}: valid (data in {}, HTTP on {})",
        path.display(),
        config.data_dir.display(),
        config.http_addr
    );
    Ok(())
}

fn backup(args: BackupArgs) -> anyhow::Result<()> {
    // The copy holds the key of every stored password.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let config = Config::load(Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        ..Overrides::default()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let manifest = runtime.block_on(brokerstream::backup::backup(
        &config.data_dir,
        &args.dir,
        args.with_journal,
    ))?;
    println!(
        "backup of {} in {}: {} file(s){}",
        config.data_dir.display(),
        args.dir.display(),
        manifest.files.len(),
        if manifest.with_journal {
            ", the journal's events included"
        } else {
            "; the journal's events left out (--with-journal to include them)"
        }
    );
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    anyhow::ensure!(
        args.data_dir.is_some() || args.config.is_some(),
        "say where to restore: --data-dir DIR, or --config FILE with its data_dir"
    );
    let config = Config::load(Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        ..Overrides::default()
    })?;
    let manifest = brokerstream::backup::restore(&args.dir, &config.data_dir)?;
    println!(
        "restored the backup of {} taken {} into {}: {} file(s); start the service with this data directory (owned by its user)",
        manifest.data_dir.display(),
        manifest.created_at,
        config.data_dir.display(),
        manifest.files.len()
    );
    Ok(())
}

fn run_script(args: RunScriptArgs) -> anyhow::Result<()> {
    use brokerstream::output::lua::run_script::{self, Source};
    let data_dir_given = args.data_dir.is_some();
    let config = Config::load(Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        ..Overrides::default()
    })?;
    let params = args
        .params
        .iter()
        .map(|p| run_script::parse_param(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = match (args.events, args.simulate) {
        (Some(file), _) => Source::File(file),
        (None, Some(n)) => Source::Simulate(n),
        (None, None) => anyhow::bail!("give the events: --events FILE.ndjson or --simulate N"),
    };
    let data_dir =
        (data_dir_given || config.data_dir.exists()).then_some(config.data_dir.as_path());
    run_script::run(
        &args.script,
        params,
        source,
        config.lua_settings()?,
        data_dir,
    )
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let config = Config::load(Overrides {
        config_file: args.config,
        data_dir: args.data_dir,
        ..Overrides::default()
    })?;
    let settings = config.lua_settings()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = brokerstream::store::Store::open(&config.data_dir).await?;
        // No workers here: the service may be stopped, and applies what is
        // stored at its next start.
        let admin = brokerstream::control::OutputAdmin::offline(
            store.clone(),
            config.limits.clone(),
            settings,
        );
        let report = brokerstream::control::import::import(&args.file, &admin).await;
        store.close().await;
        let report = report?;
        for name in &report.created {
            println!("created: {name}");
        }
        for (what, why) in &report.skipped {
            println!("skipped: {what}: {why}");
        }
        for (what, why) in &report.notes {
            println!("note: {what}: {why}");
        }
        println!(
            "{} output(s) created, {} item(s) skipped, {} note(s); a running service applies them at its next start",
            report.created.len(),
            report.skipped.len(),
            report.notes.len()
        );
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
