//! Configuration: embedded defaults, overridden by an optional TOML file,
//! then by environment variables, then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use std::time::Duration;

use crate::auth::AuthSettings;
use crate::bbdo::connector::ConnectorConfig;
use crate::bbdo::tls::{TlsSetting, TlsSettings};
use crate::bbdo::{SessionConfig, Version};
use crate::journal::{FsyncPolicy, FullPolicy, JournalConfig};
use crate::output::lua::{EventJsonStyle, LuaSettings};
// Where the command line and the tests have always found them.
pub use crate::net::{parse_allow_list, AllowList};

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Centreon's conventional BBDO port, on loopback.
pub const DEFAULT_BBDO_ADDR: &str = "127.0.0.1:5669";

/// The settings the service runs with, once every source is merged.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// Simulated events per second; 0 = no simulator.
    pub simulate: u32,
    pub journal: JournalSettings,
    pub shutdown_timeout_secs: u64,
    /// The `[lua]` table; unset keys take their defaults, some of which
    /// depend on `data_dir` (see [`Config::lua_settings`]).
    pub lua: LuaFileConfig,
    pub bbdo: BbdoConfig,
    pub auth: AuthSettings,
    /// The first admin's password, from `BROKERSTREAM_ADMIN_PASSWORD`
    /// (never a flag: flags show in `ps`). Used only on a first start.
    pub admin_password: Option<Redacted>,
    pub limits: Limits,
    /// The `[http]` table: TLS for the HTTP server.
    pub http: HttpSettings,
    /// The `[health]` table: when an output's health says events wait.
    pub health: crate::output::health::HealthSettings,
    /// The log filter (`tracing`'s syntax); `BROKERSTREAM_LOG` overrides
    /// it, `info` when neither says.
    pub log_level: Option<String>,
}

/// A secret that `Debug` does not print.
#[derive(Clone)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// `[http]`: HTTPS instead of HTTP when both PEM files are given, and the
/// server's timeouts and connection limit.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The certificate chain, leaf first.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long a client has to finish its TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// How long a client has to send a whole request head (request line
    /// and headers), from the moment the server waits for one.
    pub header_timeout_secs: u64,
    /// How long a client has to send a whole request body, from the moment
    /// its head arrived.
    pub body_timeout_secs: u64,
    /// How long a kept-alive connection may wait for its next request.
    pub keep_alive_timeout_secs: u64,
    /// Connections open at once (TLS handshakes included), beyond the
    /// reserved ones.
    pub max_connections: usize,
    /// Connections accepted past `max_connections` that serve only
    /// `/healthz`, `/readyz`, and every request of a peer in
    /// `reserve_allow`, one request each.
    pub reserved_connections: usize,
    /// The peers (addresses and networks) whose every request a reserved
    /// connection serves.
    pub reserve_allow: Vec<String>,
    /// The host names requests may carry in `Host`; `[]`: any. Unset: the
    /// loopback names when the server listens on loopback, else any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Reverse proxies (addresses and networks) whose `X-Forwarded-For`
    /// names the client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
}

/// The default of `http.tls_handshake_timeout_secs`.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout_secs: DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            keep_alive_timeout_secs: 5,
            max_connections: 1024,
            reserved_connections: 16,
            reserve_allow: vec!["127.0.0.1".into(), "::1".into()],
            allowed_hosts: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpSettings {
    /// True when the server speaks HTTPS: the web layer marks its cookies
    /// `Secure` then.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    fn check(&self) -> anyhow::Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => anyhow::bail!(
                "a TLS certificate is given without its key: set http.tls_key (--tls-key, BROKERSTREAM_TLS_KEY) too"
            ),
            (None, Some(_)) => anyhow::bail!(
                "a TLS key is given without its certificate: set http.tls_cert (--tls-cert, BROKERSTREAM_TLS_CERT) too"
            ),
            _ => {}
        }
        for (name, value) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("keep_alive_timeout_secs", self.keep_alive_timeout_secs),
            ("max_connections", self.max_connections as u64),
        ] {
            anyhow::ensure!(value > 0, "http.{name} must be at least 1");
        }
        self.reserve_allow()?;
        self.trusted_proxies()?;
        Ok(())
    }

    pub fn tls_handshake_timeout(&self) -> Duration {
        let secs = match self.tls_handshake_timeout_secs {
            0 => DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS,
            secs => secs,
        };
        Duration::from_secs(secs)
    }

    /// The `Host` names the server answers, lower-case, for a server on
    /// `addr`; `None`: any. A server on loopback answers only to its
    /// loopback names unless told otherwise: a web page the administrator
    /// opens elsewhere can make the browser resolve its own name to
    /// 127.0.0.1 (DNS rebinding) and reach the service with that name.
    pub fn allowed_hosts_for(&self, addr: SocketAddr) -> Option<Vec<String>> {
        match &self.allowed_hosts {
            Some(hosts) if hosts.is_empty() => None,
            Some(hosts) => Some(hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            None if addr.ip().is_loopback() => Some(
                ["localhost", "127.0.0.1", "::1"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            None => None,
        }
    }

    /// `trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<AllowList> {
        AllowList::parse(&self.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("http.trusted_proxies: {e}"))
    }

    /// `reserve_allow`, parsed.
    pub fn reserve_allow(&self) -> anyhow::Result<AllowList> {
        AllowList::parse(&self.reserve_allow)
            .map_err(|e| anyhow::anyhow!("http.reserve_allow: {e}"))
    }
}

/// `[limits]`: sizes and counts that nothing legitimate comes near, so that
/// no client or peer can make the service hold unbounded memory. Each
/// refusal names the limit it hit.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest HTTP request body (an NDJSON batch, a form with a script).
    pub max_body_bytes: usize,
    /// Largest line of an NDJSON request (one event).
    pub max_ndjson_line_bytes: usize,
    /// NDJSON bodies past `web::SMALL_INGEST_BODY` read and held
    /// at once; more wait their turn before their body is read further.
    pub max_concurrent_ingest: usize,
    /// Outputs that may exist at once.
    pub max_outputs: usize,
    /// Parameters of one output.
    pub max_parameters: usize,
    pub max_parameter_name_bytes: usize,
    pub max_parameter_value_bytes: usize,
    /// Largest BBDO event once its packets are joined; a peer sending a
    /// larger one is disconnected. Compressed chunks are held to the same
    /// size (plus room for headers) before and after inflating.
    pub max_bbdo_event_bytes: usize,
}

const MIB: usize = 1024 * 1024;

/// The web form posts a script of up to 1 MiB with its fields: a smaller
/// body limit would refuse it.
pub const MIN_BODY_BYTES: usize = 2 * MIB;
/// Protocol messages (a handshake, an ack) must always fit.
pub const MIN_BBDO_EVENT_BYTES: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * MIB,
            max_ndjson_line_bytes: MIB,
            max_concurrent_ingest: 1,
            max_outputs: 1000,
            max_parameters: 256,
            max_parameter_name_bytes: 255,
            max_parameter_value_bytes: 64 * 1024,
            max_bbdo_event_bytes: crate::bbdo::frame::MAX_EVENT_SIZE,
        }
    }
}

impl Limits {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_body_bytes >= MIN_BODY_BYTES,
            "limits.max_body_bytes must be at least {MIN_BODY_BYTES} (a form posting a 1 MiB script must fit)"
        );
        anyhow::ensure!(
            self.max_bbdo_event_bytes >= MIN_BBDO_EVENT_BYTES,
            "limits.max_bbdo_event_bytes must be at least {MIN_BBDO_EVENT_BYTES}"
        );
        for (name, value) in [
            ("max_ndjson_line_bytes", self.max_ndjson_line_bytes),
            ("max_concurrent_ingest", self.max_concurrent_ingest),
            ("max_outputs", self.max_outputs),
            ("max_parameters", self.max_parameters),
            ("max_parameter_name_bytes", self.max_parameter_name_bytes),
            ("max_parameter_value_bytes", self.max_parameter_value_bytes),
        ] {
            anyhow::ensure!(value > 0, "limits.{name} must be at least 1");
        }
        Ok(())
    }
}

/// BBDO inputs: where Centreon Brokers connect, which ones brokerstream
/// dials, and how sessions behave.
#[derive(Clone, Debug)]
pub struct BbdoConfig {
    /// Addresses to listen on; empty = no listener.
    pub listen: Vec<SocketAddr>,
    /// Peers the listeners accept; empty = every peer.
    pub allow: AllowList,
    pub connectors: Vec<ConnectorConfig>,
    /// TLS of every listener (`[bbdo]` tls…); each connector has its own.
    pub tls: TlsSettings,
    pub session: SessionConfig,
    /// Sessions each listener holds at once; a peer past them is closed
    /// at once.
    pub max_connections: usize,
}

/// The default of `bbdo.max_connections`: far above the brokers of a
/// Centreon platform (each poller opens one or two connections).
pub const DEFAULT_BBDO_MAX_CONNECTIONS: usize = 256;

impl Default for BbdoConfig {
    fn default() -> Self {
        BbdoConfig {
            listen: vec![DEFAULT_BBDO_ADDR.parse().expect("valid default address")],
            allow: AllowList::default(),
            connectors: Vec::new(),
            tls: TlsSettings::default(),
            session: SessionConfig::default(),
            max_connections: DEFAULT_BBDO_MAX_CONNECTIONS,
        }
    }
}

impl BbdoConfig {
    /// No listener and no connector, as tests that do not need BBDO want.
    pub fn disabled() -> Self {
        BbdoConfig {
            listen: Vec::new(),
            ..BbdoConfig::default()
        }
    }
}

/// `--bbdo-addr`: a comma-separated list of addresses, or `none` (or
/// nothing) for no listener.
pub fn parse_listen_list(text: &str) -> Result<Vec<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("`{}` is not an address such as 127.0.0.1:5669", a.trim()))
        })
        .collect()
}

/// The `[journal]` section. See the README for what each fsync policy
/// guarantees.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSettings {
    /// `always` (default), `interval` or `never`.
    pub fsync: String,
    /// With `interval`: milliseconds between fsyncs.
    pub fsync_interval_ms: u64,
    /// `block` (default) or `drop_oldest`.
    pub full_policy: String,
    pub max_bytes: u64,
    /// 0 = no age limit.
    pub max_age_secs: u64,
    pub segment_bytes: u64,
    pub memory_bytes: usize,
    /// Above this share of `max_bytes` held, the journal is `degraded`.
    pub fill_warning: f64,
}

impl Default for JournalSettings {
    fn default() -> Self {
        let defaults = JournalConfig::new("");
        JournalSettings {
            fsync: "always".into(),
            fsync_interval_ms: 1000,
            full_policy: "block".into(),
            max_bytes: defaults.max_bytes,
            max_age_secs: defaults.max_age.map_or(0, |d| d.as_secs()),
            segment_bytes: defaults.segment_bytes,
            memory_bytes: defaults.memory_bytes,
            fill_warning: defaults.fill_warning,
        }
    }
}

impl Config {
    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    pub fn journal_config(&self) -> anyhow::Result<JournalConfig> {
        let settings = &self.journal;
        let fsync = FsyncPolicy::parse(&settings.fsync, settings.fsync_interval_ms)
            .map_err(|e| anyhow::anyhow!("journal.fsync: {e}"))?;
        let full = match settings.full_policy.as_str() {
            "block" => FullPolicy::Block,
            "drop_oldest" => FullPolicy::DropOldest,
            other => {
                anyhow::bail!("journal.full_policy: `{other}` is not one of block, drop_oldest")
            }
        };
        if !(settings.fill_warning > 0.0 && settings.fill_warning <= 1.0) {
            anyhow::bail!(
                "journal.fill_warning: {} is not a share between 0 (excluded) and 1",
                settings.fill_warning
            );
        }
        Ok(JournalConfig {
            fill_warning: settings.fill_warning,
            dir: self.journal_dir(),
            fsync,
            full,
            max_bytes: settings.max_bytes,
            max_age: (settings.max_age_secs > 0)
                .then(|| std::time::Duration::from_secs(settings.max_age_secs)),
            // Segments much smaller than the limit, so that retention (and
            // drop_oldest) can free space while the active segment stays.
            segment_bytes: settings.segment_bytes.min(settings.max_bytes / 4).max(4096),
            memory_bytes: settings.memory_bytes,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("valid default address"),
            simulate: 0,
            journal: JournalSettings::default(),
            shutdown_timeout_secs: 10,
            lua: LuaFileConfig::default(),
            bbdo: BbdoConfig::default(),
            auth: AuthSettings::default(),
            admin_password: None,
            limits: Limits::default(),
            http: HttpSettings::default(),
            health: Default::default(),
            log_level: None,
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
/// fsync = "always"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub simulate: Option<u32>,
    pub shutdown_timeout_secs: Option<u64>,
    pub journal: Option<JournalSettings>,
    #[serde(default)]
    pub lua: LuaFileConfig,
    #[serde(default)]
    pub bbdo: BbdoFileConfig,
    pub auth: Option<AuthSettings>,
    pub limits: Option<Limits>,
    pub http: Option<HttpSettings>,
    pub health: Option<crate::output::health::HealthSettings>,
    pub log_level: Option<String>,
}

/// ```toml
/// [bbdo]
/// listen = ["127.0.0.1:5669"]   # [] for none
/// allow = ["127.0.0.1", "10.0.0.0/8"]   # [] (default) for every peer
/// ack_limit = 1000
/// compression = true
/// stall_timeout_secs = 60   # a packet begun must arrive whole within it
/// max_connections = 256     # per listener
///
/// # TLS for the listeners (`[bbdo]`, shared by all) and per connector
/// tls = "auto"              # "no" (default), "auto" or "yes"
/// private_key = "/etc/brokerstream/bbdo.key"   # with public_cert:
/// public_cert = "/etc/brokerstream/bbdo.crt"   #   certificate mode
/// ca_certificate = "/etc/brokerstream/ca.crt"  # verify the peer
/// tls_hostname = "central.example"             # and its name
///
/// [[bbdo.connectors]]
/// address = "central:5669"
/// version = "3.0.1"
/// tls = "yes"               # and the same TLS keys as [bbdo]
/// ```
///
/// TLS settings are Centreon's, with its defaults: `tls` absent means
/// `no` (TLS not listed in the welcome); `auto` and `yes` both list it,
/// and TLS starts when the peer lists it too; with `yes`, a peer that
/// does not is logged as an error and the session goes on in clear, as
/// Centreon does. `encryption = true/false` (a `bbdo_server`/`bbdo_client`
/// setting) is taken for `tls = yes/no`, and `certificate` for
/// `public_cert`. Without key and certificate, TLS is anonymous.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BbdoFileConfig {
    pub listen: Option<Vec<SocketAddr>>,
    pub allow: Option<Vec<String>>,
    pub ack_limit: Option<u32>,
    pub compression: Option<bool>,
    pub handshake_timeout_secs: Option<u64>,
    pub stall_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub tls: Option<TlsSwitch>,
    pub encryption: Option<bool>,
    pub private_key: Option<PathBuf>,
    #[serde(alias = "certificate")]
    pub public_cert: Option<PathBuf>,
    pub ca_certificate: Option<PathBuf>,
    pub tls_hostname: Option<String>,
    #[serde(default)]
    pub connectors: Vec<ConnectorFileConfig>,
}

/// Its TLS keys repeat `BbdoFileConfig`'s rather than sit in a flattened
/// struct: serde's `flatten` cannot be combined with `deny_unknown_fields`,
/// and a misspelt key must stay an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFileConfig {
    pub address: String,
    /// BBDO version announced; 3.0.1 when absent.
    pub version: Option<String>,
    pub tls: Option<TlsSwitch>,
    pub encryption: Option<bool>,
    pub private_key: Option<PathBuf>,
    #[serde(alias = "certificate")]
    pub public_cert: Option<PathBuf>,
    pub ca_certificate: Option<PathBuf>,
    pub tls_hostname: Option<String>,
}

/// `tls = "auto"`, or a TOML boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TlsSwitch {
    Bool(bool),
    Text(String),
}

/// Merges the TLS keys of a `[bbdo]` table or a connector.
fn tls_settings(
    tls: Option<TlsSwitch>,
    encryption: Option<bool>,
    private_key: Option<PathBuf>,
    public_cert: Option<PathBuf>,
    ca_certificate: Option<PathBuf>,
    tls_hostname: Option<String>,
) -> Result<TlsSettings, String> {
    let setting = match (tls, encryption) {
        (Some(_), Some(_)) => return Err("tls and encryption are the same setting: set one".into()),
        (Some(TlsSwitch::Bool(true)), None) | (None, Some(true)) => TlsSetting::Yes,
        (Some(TlsSwitch::Bool(false)), None) | (None, Some(false)) | (None, None) => TlsSetting::No,
        (Some(TlsSwitch::Text(t)), None) => {
            TlsSetting::parse(&t).map_err(|e| format!("tls: {e}"))?
        }
    };
    let settings = TlsSettings {
        tls: setting,
        private_key,
        public_cert,
        ca_certificate,
        tls_hostname: tls_hostname.filter(|h| !h.trim().is_empty()),
    };
    if setting != TlsSetting::No {
        settings.mode().map_err(|e| e.to_string())?;
    }
    Ok(settings)
}

/// `[lua]`: the settings every `lua` output shares.
///
/// ```toml
/// [lua]
/// script_dirs = ["/var/lib/brokerstream/scripts", "/usr/share/centreon-broker/lua"]
/// package_path = "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.3/?.lua"
/// bbdo_version = "3.0.1"
/// event_queue_max_size = 100000   # Centreon: 10000; 0 = no bound
/// event_json = "22.04"   # or "21.10": the header of json_encode(broker_event)
/// perfdata_values = "exact"   # or "float32": parse_perfdata's numbers as current Centreon
/// log_rotate_bytes = 20971520   # broker_log files rotate past 20 MiB; 0 = never
/// log_rotate_keep = 5           # x.log.1 … x.log.5 are kept
/// call_cpu_budget_secs = 10     # one write()/flush()/init() call; 0 = no limit
/// memory_limit_bytes = 1073741824   # per script; 0 = no limit
/// sandbox = false               # true: no os.execute, io.popen, debug, C modules, bytecode
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuaFileConfig {
    pub script_dirs: Option<Vec<PathBuf>>,
    pub package_path: Option<String>,
    pub package_cpath: Option<String>,
    pub bbdo_version: Option<String>,
    pub event_queue_max_size: Option<usize>,
    pub event_json: Option<String>,
    pub perfdata_values: Option<String>,
    pub log_rotate_bytes: Option<u64>,
    pub log_rotate_keep: Option<u32>,
    pub call_cpu_budget_secs: Option<f64>,
    pub memory_limit_bytes: Option<usize>,
    pub sandbox: Option<bool>,
}

/// What the command line (flags and environment variables, which clap
/// merges) said; `None` where it said nothing.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub simulate: Option<u32>,
    pub fsync: Option<String>,
    pub bbdo_listen: Option<Vec<SocketAddr>>,
    pub admin_password: Option<String>,
    pub bbdo_allow: Option<AllowList>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Config {
    pub fn load(overrides: Overrides) -> anyhow::Result<Config> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        config.apply_file(file)?;
        if let Some(dir) = overrides.data_dir {
            config.data_dir = dir;
        }
        if let Some(addr) = overrides.http_addr {
            config.http_addr = addr;
        }
        if let Some(rate) = overrides.simulate {
            config.simulate = rate;
        }
        if let Some(fsync) = overrides.fsync {
            config.journal.fsync = fsync;
        }
        if let Some(listen) = overrides.bbdo_listen {
            config.bbdo.listen = listen;
        }
        config.admin_password = overrides.admin_password.map(Redacted);
        if let Some(allow) = overrides.bbdo_allow {
            config.bbdo.allow = allow;
        }
        if let Some(cert) = overrides.tls_cert {
            config.http.tls_cert = Some(cert);
        }
        if let Some(key) = overrides.tls_key {
            config.http.tls_key = Some(key);
        }
        config.journal_config()?;
        config.http.check()?;
        Ok(config)
    }

    fn apply_file(&mut self, file: FileConfig) -> anyhow::Result<()> {
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
        if let Some(journal) = file.journal {
            self.journal = journal;
        }
        self.lua = file.lua;
        if let Some(auth) = file.auth {
            anyhow::ensure!(
                auth.session_ttl_secs > 0,
                "auth.session_ttl_secs must be at least 1"
            );
            self.auth = auth;
        }
        if let Some(limits) = file.limits {
            limits.check()?;
            self.limits = limits;
        }
        if let Some(http) = file.http {
            http.check()?;
            self.http = http;
        }
        if let Some(health) = file.health {
            anyhow::ensure!(
                health.buffer_age_factor.is_finite() && health.buffer_age_factor >= 0.0,
                "health.buffer_age_factor must be a number of at least 0"
            );
            anyhow::ensure!(
                health.error_ratio.is_finite() && health.error_ratio >= 0.0,
                "health.error_ratio must be a number of at least 0"
            );
            self.health = health;
        }
        if let Some(level) = file.log_level {
            tracing_subscriber::EnvFilter::try_new(&level)
                .map_err(|e| anyhow::anyhow!("log_level: `{level}`: {e}"))?;
            self.log_level = Some(level);
        }
        let bbdo = file.bbdo;
        if let Some(listen) = bbdo.listen {
            self.bbdo.listen = listen;
        }
        if let Some(allow) = bbdo.allow {
            self.bbdo.allow =
                AllowList::parse(&allow).map_err(|e| anyhow::anyhow!("bbdo.allow: {e}"))?;
        }
        if let Some(limit) = bbdo.ack_limit {
            anyhow::ensure!(limit > 0, "bbdo.ack_limit must be at least 1");
            self.bbdo.session.ack_limit = limit;
        }
        if let Some(on) = bbdo.compression {
            self.bbdo.session.compression = on;
        }
        if let Some(secs) = bbdo.handshake_timeout_secs {
            self.bbdo.session.handshake_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = bbdo.stall_timeout_secs {
            self.bbdo.session.stall_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(max) = bbdo.max_connections {
            anyhow::ensure!(max > 0, "bbdo.max_connections must be at least 1");
            self.bbdo.max_connections = max;
        }
        self.bbdo.tls = tls_settings(
            bbdo.tls,
            bbdo.encryption,
            bbdo.private_key,
            bbdo.public_cert,
            bbdo.ca_certificate,
            bbdo.tls_hostname,
        )
        .map_err(|e| anyhow::anyhow!("bbdo: {e}"))?;
        for c in bbdo.connectors {
            let version = match c.version {
                Some(v) => v
                    .parse::<Version>()
                    .map_err(|e| anyhow::anyhow!("bbdo.connectors `{}`: {e}", c.address))?,
                None => Version::V3,
            };
            anyhow::ensure!(
                matches!(version.major, 2 | 3),
                "bbdo.connectors `{}`: version {version}: brokerstream speaks BBDO 2 and 3",
                c.address
            );
            let tls = tls_settings(
                c.tls,
                c.encryption,
                c.private_key,
                c.public_cert,
                c.ca_certificate,
                c.tls_hostname,
            )
            .map_err(|e| anyhow::anyhow!("bbdo.connectors `{}`: {e}", c.address))?;
            self.bbdo.connectors.push(ConnectorConfig {
                address: c.address,
                version,
                tls,
            });
        }
        Ok(())
    }

    /// The Lua runtime's settings: the `[lua]` table over the defaults for
    /// this data directory.
    pub fn lua_settings(&self) -> anyhow::Result<LuaSettings> {
        let mut settings = LuaSettings::for_data_dir(&self.data_dir);
        let lua = &self.lua;
        if let Some(dirs) = &lua.script_dirs {
            settings.script_dirs = dirs.clone();
        }
        if let Some(path) = &lua.package_path {
            settings.package_path = path.clone();
        }
        if let Some(cpath) = &lua.package_cpath {
            settings.package_cpath = cpath.clone();
        }
        if let Some(version) = &lua.bbdo_version {
            settings.bbdo_version = version.clone();
        }
        if let Some(max) = lua.event_queue_max_size {
            settings.event_queue_max_size = max;
        }
        if let Some(max_bytes) = lua.log_rotate_bytes {
            settings.log_rotation.max_bytes = max_bytes;
        }
        if let Some(keep) = lua.log_rotate_keep {
            settings.log_rotation.keep = keep;
        }
        if let Some(secs) = lua.call_cpu_budget_secs {
            settings.call_cpu_budget = std::time::Duration::try_from_secs_f64(secs)
                .ok()
                .with_context(|| {
                    format!("lua.call_cpu_budget_secs must be a number of seconds, 0 or more, not {secs}")
                })?;
        }
        if let Some(bytes) = lua.memory_limit_bytes {
            settings.memory_limit_bytes = bytes;
        }
        if let Some(sandbox) = lua.sandbox {
            settings.sandbox = sandbox;
        }
        if let Some(style) = &lua.event_json {
            settings.event_json = EventJsonStyle::parse(style).with_context(|| {
                format!("lua.event_json must be \"22.04\" or \"21.10\", not {style:?}")
            })?;
        }
        if let Some(values) = &lua.perfdata_values {
            settings.perfdata_values = crate::output::perfdata::Precision::parse(values)
                .with_context(|| {
                    format!("lua.perfdata_values must be \"exact\" or \"float32\", not {values:?}")
                })?;
        }
        Ok(settings)
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_bbdo_allow_entry_names_its_key() {
        let file: FileConfig = toml::from_str("[bbdo]\nallow = [\"::1\", \"nope\"]\n").unwrap();
        let error = Config::default().apply_file(file).unwrap_err().to_string();
        assert!(error.starts_with("bbdo.allow: `nope`"), "{error}");
    }

    #[test]
    fn bbdo_listen_lists() {
        assert_eq!(parse_listen_list("none"), Ok(vec![]));
        assert_eq!(parse_listen_list(""), Ok(vec![]));
        assert_eq!(
            parse_listen_list("127.0.0.1:5669, [::1]:5670"),
            Ok(vec![
                "127.0.0.1:5669".parse().unwrap(),
                "[::1]:5670".parse().unwrap()
            ])
        );
        assert!(parse_listen_list("localhost").is_err());
        assert_eq!(
            Config::default().bbdo.listen,
            vec![DEFAULT_BBDO_ADDR.parse().unwrap()]
        );
    }

    #[test]
    fn bbdo_tls_settings_and_their_centreon_aliases() {
        let file: FileConfig = toml::from_str(
            "[bbdo]\ntls = \"auto\"\n\n\
             [[bbdo.connectors]]\naddress = \"x:1\"\nencryption = true\n\
             private_key = \"/k.pem\"\ncertificate = \"/c.pem\"\ntls_hostname = \"central\"\n\n\
             [[bbdo.connectors]]\naddress = \"x:2\"\ntls = false\n",
        )
        .unwrap();
        let mut config = Config::default();
        config.apply_file(file).unwrap();
        assert_eq!(config.bbdo.tls.tls, TlsSetting::Auto);
        let c = &config.bbdo.connectors[0].tls;
        assert_eq!(c.tls, TlsSetting::Yes);
        assert_eq!(c.public_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.tls_hostname.as_deref(), Some("central"));
        assert_eq!(config.bbdo.connectors[1].tls.tls, TlsSetting::No);
        // Centreon's default: not listed.
        assert_eq!(Config::default().bbdo.tls.tls, TlsSetting::No);
        for (text, error) in [
            ("[bbdo]\ntls = \"maybe\"\n", "bbdo: tls: `maybe`"),
            ("[bbdo]\ntls = \"yes\"\nencryption = true\n", "same setting"),
            (
                "[bbdo]\ntls = \"yes\"\nprivate_key = \"/k\"\n",
                "without public_cert",
            ),
        ] {
            let file: FileConfig = toml::from_str(text).unwrap();
            let e = Config::default().apply_file(file).unwrap_err().to_string();
            assert!(e.contains(error), "{text}: {e}");
        }
    }

    #[test]
    fn bbdo_section_of_the_file() {
        let file: FileConfig = toml::from_str(
            "[bbdo]\nlisten = []\nack_limit = 10\ncompression = false\n\n\
             [[bbdo.connectors]]\naddress = \"127.0.0.1:5670\"\nversion = \"2.0.0\"\n\n\
             [[bbdo.connectors]]\naddress = \"127.0.0.1:5671\"\n",
        )
        .unwrap();
        let mut config = Config::default();
        config.apply_file(file).unwrap();
        assert!(config.bbdo.listen.is_empty());
        assert_eq!(config.bbdo.session.ack_limit, 10);
        assert!(!config.bbdo.session.compression);
        assert_eq!(config.bbdo.connectors.len(), 2);
        assert_eq!(config.bbdo.connectors[0].version, Version::V2);
        assert_eq!(config.bbdo.connectors[1].version, Version::V3);

        let bad: FileConfig =
            toml::from_str("[[bbdo.connectors]]\naddress = \"x:1\"\nversion = \"4.0.0\"\n")
                .unwrap();
        assert!(Config::default().apply_file(bad).is_err());
        assert!(toml::from_str::<FileConfig>("[bbdo]\nlisten_typo = []\n").is_err());
    }

    #[test]
    fn limits_table_with_defaults_and_checks() {
        let file: FileConfig =
            toml::from_str("[limits]\nmax_outputs = 5\nmax_bbdo_event_bytes = 1048576\n").unwrap();
        let mut config = Config::default();
        config.apply_file(file).unwrap();
        assert_eq!(config.limits.max_outputs, 5);
        assert_eq!(config.limits.max_bbdo_event_bytes, 1 << 20);
        assert_eq!(
            config.limits.max_body_bytes,
            Limits::default().max_body_bytes
        );
        assert!(toml::from_str::<FileConfig>("[limits]\nmax_output = 5\n").is_err());
        for bad in [
            "max_body_bytes = 1000",
            "max_bbdo_event_bytes = 100",
            "max_parameters = 0",
        ] {
            let file: FileConfig = toml::from_str(&format!("[limits]\n{bad}\n")).unwrap();
            let error = Config::default().apply_file(file).unwrap_err().to_string();
            assert!(error.starts_with("limits."), "{bad}: {error}");
        }
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let file: FileConfig =
            toml::from_str("[http]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n").unwrap();
        let mut config = Config::default();
        config.apply_file(file).unwrap();
        assert!(config.http.tls_enabled());
        assert_eq!(config.http.tls_handshake_timeout(), Duration::from_secs(10));
        config.http.tls_key = None;
        let error = config.http.check().unwrap_err().to_string();
        assert!(error.contains("without its key"), "{error}");
        assert!(!Config::default().http.tls_enabled());
        assert!(toml::from_str::<FileConfig>("[http]\ntls_certificate = \"x\"\n").is_err());
    }

    /// The README's examples of the file, as an operator copies them.
    #[test]
    fn the_readme_examples_of_the_file_are_valid() {
        let readme = include_str!("../README.md");
        for start in ["```toml\ndata_dir", "```toml\n[http]\nmax_connections"] {
            let at = readme.find(start).expect(start) + "```toml\n".len();
            let text = &readme[at..at + readme[at..].find("```").unwrap()];
            let file: FileConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            Config::default().apply_file(file).unwrap();
        }
    }

    #[test]
    fn listener_timeouts_and_connection_limits() {
        let config = Config::default();
        let http = &config.http;
        assert_eq!(
            (
                http.header_timeout_secs,
                http.body_timeout_secs,
                http.keep_alive_timeout_secs,
                http.max_connections,
                http.reserved_connections,
            ),
            (10, 60, 5, 1024, 16)
        );
        assert_eq!(
            http.reserve_allow().unwrap().entries(),
            ["127.0.0.1/32", "::1/128"]
        );
        assert_eq!(config.bbdo.max_connections, 256);

        let file: FileConfig = toml::from_str(
            "[http]\nheader_timeout_secs = 3\nmax_connections = 50\nreserved_connections = 0\n\
             reserve_allow = [\"10.0.0.0/8\"]\n\n[bbdo]\nmax_connections = 7\n",
        )
        .unwrap();
        let mut config = Config::default();
        config.apply_file(file).unwrap();
        assert_eq!(config.http.header_timeout_secs, 3);
        assert_eq!(
            config.http.body_timeout_secs, 60,
            "unset keys keep their defaults"
        );
        assert_eq!(config.http.max_connections, 50);
        assert_eq!(config.http.reserved_connections, 0);
        assert_eq!(config.http.tls_handshake_timeout(), Duration::from_secs(10));
        assert_eq!(config.bbdo.max_connections, 7);

        for (bad, expected) in [
            (
                "[http]\nmax_connections = 0\n",
                "http.max_connections must be at least 1",
            ),
            (
                "[http]\nbody_timeout_secs = 0\n",
                "http.body_timeout_secs must be at least 1",
            ),
            (
                "[http]\nreserve_allow = [\"x\"]\n",
                "http.reserve_allow: `x`",
            ),
            (
                "[bbdo]\nmax_connections = 0\n",
                "bbdo.max_connections must be at least 1",
            ),
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            let error = Config::default().apply_file(file).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{bad}: {error}");
        }
    }
}
