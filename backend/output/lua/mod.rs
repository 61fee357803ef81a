//! The Centreon-compatible Lua runtime: a stream connector written for
//! Centreon Broker's Lua output runs here unchanged.
//!
//! `runtime` loads a script exactly as Centreon does (with `loader`) and
//! calls its `filter`/`write`/`flush`, counting acknowledgements as
//! Centreon counts them; `worker` runs one script per output on a thread of
//! its own, `interrupt` stops one that does not return and `confine`
//! decides what else it reaches; `event`, `json`, `perfdata`, `sdk`,
//! `logfile` and `modules` are what a script sees (`broker`, `broker_log`,
//! `broker_cache`, events as tables or userdata, the modules it
//! `require`s); `import`, `run_script` and `scripts` serve the command line
//! and the script files. The contract is docs/lua-runtime.md, whose
//! numbered sections the comments of this module and its submodules cite.

pub mod confine;
pub mod event;
pub mod interrupt;
pub mod json;
pub mod loader;
pub mod logfile;
pub mod modules;
// The perfdata parser is shared with the native influxdb output.
pub use super::perfdata;
pub mod run_script;
pub mod runtime;
pub mod scripts;
pub mod sdk;
pub mod worker;

use std::path::{Component, Path, PathBuf};

use super::schema::Kind;
use super::{FieldErrors, OutputSpec};

/// Runs on its own thread with its own loop (Centreon's failover loop):
/// see [`worker`].
pub static KIND: Kind = Kind::script("lua", "Runs a Centreon Broker Lua stream connector unchanged: `path` names the script (inside a script directory), parameters of any name are given to its init(conf).", check);

/// A script output: a `path`, and parameters of any name whose values
/// Centreon could read (docs/lua-runtime.md §1.2). Where the script is is
/// checked against the service's script directories by the supervisor.
fn check(spec: &OutputSpec, errors: &mut FieldErrors) {
    match &spec.path {
        None => errors.add("path", "is required: the script to run"),
        Some(path) if path.trim().is_empty() => errors.add("path", "must not be empty"),
        Some(_) => {}
    }
    for p in &spec.parameters {
        if let Err(message) = runtime::conf_value(p) {
            let field = if p.name.is_empty() {
                "parameters".to_owned()
            } else {
                format!("parameters.{}", p.name)
            };
            errors.add(field, message);
        }
    }
    if spec
        .filters
        .iter()
        .any(|f| f == "local" || f.starts_with("local:"))
    {
        errors.add(
            "filters",
            "category `local` is forbidden for `lua` outputs, as in Centreon",
        );
    }
}

/// Where Centreon's packages install stream connectors.
pub const CENTREON_SCRIPT_DIR: &str = "/usr/share/centreon-broker/lua";

/// Pure-Lua module directories searched by `require`, as a distribution's
/// Lua 5.4 and 5.3 would search them (Centreon's own library,
/// `centreon-stream-connectors-lib`, installs under `/usr/share/lua/5.3` on
/// Debian and `/usr/share/lua/5.4` on EL9).
pub const DEFAULT_PACKAGE_PATH: &str = "/usr/local/share/lua/5.4/?.lua;\
/usr/local/share/lua/5.4/?/init.lua;\
/usr/share/lua/5.4/?.lua;\
/usr/share/lua/5.4/?/init.lua;\
/usr/local/share/lua/5.3/?.lua;\
/usr/local/share/lua/5.3/?/init.lua;\
/usr/share/lua/5.3/?.lua;\
/usr/share/lua/5.3/?/init.lua;\
./?.lua;./?/init.lua";

pub const DEFAULT_PACKAGE_CPATH: &str = "/usr/local/lib/lua/5.4/?.so;\
/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;\
/usr/lib64/lua/5.4/?.so;\
./?.so";

/// The default of `lua.event_queue_max_size`: ten times Centreon's 10,000
/// (docs/lua-runtime.md §1.1, §2.5). Centreon's libraries acknowledge only
/// when they send, and drop most events without sending them (a metrics
/// connector keeps only statuses with perfdata): at 10,000 unacknowledged
/// events `write()` pauses and the script waits for its `max_all_queues_age`
/// (measured in issue 21: splunk-metrics-apiv2 stalled four times for about
/// 6 s in a 35 s run, 0.62× Centreon Broker 21.10's throughput, whose
/// queue has no such bound; at 100,000, 1.46×). The bound costs brokerstream
/// no memory (unacknowledged events wait in the journal, not in the
/// worker); what a script keeps of them is its own, under
/// `lua.memory_limit_bytes`.
pub const DEFAULT_EVENT_QUEUE_MAX_SIZE: usize = 100_000;

/// How `broker.json_encode` writes the header of a `broker_event`
/// (docs/lua-runtime.md §6.3): Centreon changed it in 22.04.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventJsonStyle {
    /// `{"_type":65559, "category":1, "element":23, …` (22.04 and later).
    #[default]
    Current,
    /// `{ "_type": 65559, "category": 1, "element": 23, …` (21.10 and before).
    Legacy2110,
}

impl EventJsonStyle {
    pub fn parse(s: &str) -> Option<EventJsonStyle> {
        match s {
            "22.04" | "current" => Some(EventJsonStyle::Current),
            "21.10" => Some(EventJsonStyle::Legacy2110),
            _ => None,
        }
    }
}

/// What every Lua output of a service shares.
#[derive(Clone, Debug)]
pub struct LuaSettings {
    /// Scripts must live under one of these (after canonicalization).
    pub script_dirs: Vec<PathBuf>,
    /// `package.path` before the script's own directory is appended.
    pub package_path: String,
    pub package_cpath: String,
    /// What `broker.bbdo_version()` answers.
    pub bbdo_version: String,
    /// Events handed to a script and not acknowledged, past which `write()`
    /// is no longer called (docs/lua-runtime.md §2.5); 0 = unlimited.
    pub event_queue_max_size: usize,
    pub event_json: EventJsonStyle,
    /// How `broker.parse_perfdata` reads numbers (`lua.perfdata_values`).
    pub perfdata_values: perfdata::Precision,
    /// When the files of `broker_log:set_parameters` are rotated.
    pub log_rotation: logfile::Rotation,
    /// CPU time one call into a script (`write`, `flush`, `init`…) may use
    /// before it is interrupted with a Lua error; zero: no limit.
    pub call_cpu_budget: std::time::Duration,
    /// Memory one script's Lua state may hold; 0: no limit.
    pub memory_limit_bytes: usize,
    /// Scripts run without `os.execute`, `io.popen`, `debug`, C modules
    /// and precompiled chunks ([`confine`]).
    pub sandbox: bool,
    /// In the sandbox, files below these directories (the data directory:
    /// its database, `secret.key`, journal) cannot be opened, removed or
    /// renamed by a script, except inside a script directory.
    pub private_dirs: Vec<PathBuf>,
}

/// A call that computes for 10 s is a loop, not a connector: Centreon's
/// certified ones spend milliseconds per call.
pub const DEFAULT_CALL_CPU_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);
/// Enough for Centreon's connectors holding a full queue of
/// `event_queue_max_size` events many times over.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 1024 * 1024 * 1024;

impl LuaSettings {
    /// The defaults for a data directory: `<data-dir>/scripts`, plus
    /// Centreon's script directory where it exists.
    pub fn for_data_dir(data_dir: &Path) -> LuaSettings {
        let mut script_dirs = vec![data_dir.join("scripts")];
        if Path::new(CENTREON_SCRIPT_DIR).is_dir() {
            script_dirs.push(PathBuf::from(CENTREON_SCRIPT_DIR));
        }
        LuaSettings {
            script_dirs,
            package_path: DEFAULT_PACKAGE_PATH.to_owned(),
            package_cpath: DEFAULT_PACKAGE_CPATH.to_owned(),
            bbdo_version: "2.0.0".to_owned(),
            event_queue_max_size: DEFAULT_EVENT_QUEUE_MAX_SIZE,
            event_json: EventJsonStyle::Current,
            perfdata_values: perfdata::Precision::Exact,
            log_rotation: logfile::Rotation::default(),
            call_cpu_budget: DEFAULT_CALL_CPU_BUDGET,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            sandbox: false,
            private_dirs: vec![data_dir.to_owned()],
        }
    }

    /// The canonical path of a script, or why it cannot be run. A relative
    /// path is taken from the first script directory.
    pub fn resolve_script(&self, path: &str) -> Result<PathBuf, String> {
        if path.trim().is_empty() {
            return Err("must not be empty".into());
        }
        let given = Path::new(path);
        if given.components().any(|c| c == Component::ParentDir) {
            return Err("must not contain `..`".into());
        }
        let full = if given.is_absolute() {
            given.to_owned()
        } else {
            match self.script_dirs.first() {
                Some(dir) => dir.join(given),
                None => return Err("no script directory is configured".into()),
            }
        };
        let canonical = full
            .canonicalize()
            .map_err(|e| format!("cannot open script {}: {e}", full.display()))?;
        if !canonical.is_file() {
            return Err(format!("{} is not a file", canonical.display()));
        }
        let inside = self
            .script_dirs
            .iter()
            .filter_map(|dir| dir.canonicalize().ok())
            .any(|dir| canonical.starts_with(dir));
        if !inside {
            let dirs = self
                .script_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "{} is outside the script directories ({dirs})",
                canonical.display()
            ));
        }
        Ok(canonical)
    }
}

/// The checks of a `lua` output that need the service's settings: the
/// script must exist inside a script directory.
pub fn check_spec(settings: &LuaSettings, spec: &OutputSpec, errors: &mut FieldErrors) {
    if spec.kind != "lua" || errors.0.iter().any(|(f, _)| f == "path") {
        return;
    }
    if let Some(path) = &spec.path {
        if let Err(message) = settings.resolve_script(path) {
            errors.add("path", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_outside_the_directories_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let scripts = root.path().join("scripts");
        std::fs::create_dir(&scripts).unwrap();
        std::fs::write(scripts.join("ok.lua"), "").unwrap();
        std::fs::write(root.path().join("outside.lua"), "").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.lua"), scripts.join("link.lua"))
            .unwrap();
        let settings = LuaSettings {
            script_dirs: vec![scripts.clone()],
            ..LuaSettings::for_data_dir(root.path())
        };
        assert!(settings.resolve_script("ok.lua").is_ok());
        assert!(settings
            .resolve_script(scripts.join("ok.lua").to_str().unwrap())
            .is_ok());
        assert!(settings
            .resolve_script("../outside.lua")
            .unwrap_err()
            .contains(".."));
        assert!(settings
            .resolve_script("link.lua")
            .unwrap_err()
            .contains("outside"));
        assert!(settings
            .resolve_script(root.path().join("outside.lua").to_str().unwrap())
            .unwrap_err()
            .contains("outside"));
        assert!(settings.resolve_script("missing.lua").is_err());
    }
}
