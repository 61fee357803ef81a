//! Configuration: embedded defaults, overridden by an optional TOML file,
//! then by environment variables, then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Events the in-memory journal holds before ingest answers 503.
pub const DEFAULT_JOURNAL_MAX_EVENTS: usize = 200_000;

/// The settings the service runs with, once every source is merged.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// Simulated events per second; 0 = no simulator.
    pub simulate: u32,
    pub journal_max_events: usize,
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("valid default address"),
            simulate: 0,
            journal_max_events: DEFAULT_JOURNAL_MAX_EVENTS,
            shutdown_timeout_secs: 10,
        }
    }
}

/// The TOML file: every key optional.
///
/// ```toml
/// data_dir = "/var/lib/brokerstream"
/// http_addr = "127.0.0.1:8080"
/// simulate = 0
///
/// [journal]
/// max_events = 200000
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub simulate: Option<u32>,
    pub shutdown_timeout_secs: Option<u64>,
    #[serde(default)]
    pub journal: JournalFileConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalFileConfig {
    pub max_events: Option<usize>,
}

/// What the command line (flags and environment variables, which clap
/// merges) said; `None` where it said nothing.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub simulate: Option<u32>,
}

impl Config {
    pub fn load(overrides: Overrides) -> anyhow::Result<Config> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        config.apply_file(file);
        if let Some(dir) = overrides.data_dir {
            config.data_dir = dir;
        }
        if let Some(addr) = overrides.http_addr {
            config.http_addr = addr;
        }
        if let Some(rate) = overrides.simulate {
            config.simulate = rate;
        }
        Ok(config)
    }

    fn apply_file(&mut self, file: FileConfig) {
        if let Some(dir) = file.data_dir {
            self.data_dir = dir;
        }
        if let Some(addr) = file.http_addr {
            self.http_addr = addr;
        }
        if let Some(rate) = file.simulate {
            self.simulate = rate;
        }
        if let Some(secs) = file.shutdown_timeout_secs {
            self.shutdown_timeout_secs = secs;
        }
        if let Some(max) = file.journal.max_events {
            self.journal_max_events = max;
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}
