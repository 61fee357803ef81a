//! One loaded script: the load sequence of docs/lua-runtime.md §2.1, and
//! `filter`/`write`/`flush` with Centreon's acknowledgement counting
//! (§2.2–§2.4).
//!
//! A [`Script`] is not `Send`: it lives on the thread that created it.

use std::path::Path;
use std::sync::Arc;

use mlua::{Function, Lua, MultiValue, Value as LuaValue};

use super::event::{event_metatable, to_table, LuaEvent, Shared};
use super::interrupt::Interrupt;
use super::sdk::{self, BrokerCache, BrokerLog, LogSink, Severity};
use super::LuaSettings;
use crate::cache::Cache;
use crate::output::{ParamType, Parameter};

/// What a script needs from its surroundings.
#[derive(Clone)]
pub struct ScriptEnv {
    pub cache: Arc<Cache>,
    pub settings: Arc<LuaSettings>,
    /// `broker_log` without a file, and the runtime's own error lines.
    pub log: LogSink,
    /// Where the lines a script writes to its own `broker_log` file show
    /// too (the output's script log); `None` keeps them in the file only.
    pub file_log: Option<LogSink>,
    /// Told what every `write()`/`flush()` call returned (`run-script`).
    pub trace: Option<TraceSink>,
    /// How the output stops a script that does not return.
    pub interrupt: Arc<Interrupt>,
}

pub type TraceSink = Arc<dyn Fn(&str) + Send + Sync>;

/// What happened to one event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteOutcome {
    /// The script's `filter()` said no.
    pub filtered: bool,
    /// `write()` was called.
    pub written: bool,
    /// What `write()` returned (`None` when not called or on error).
    pub returned: Option<String>,
    /// Events acknowledged by this call (everything handed so far, or 0).
    pub acked: u64,
    /// A Lua error or a non-boolean result, as logged.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlushOutcome {
    /// The script has a `flush()`.
    pub called: bool,
    pub returned: Option<String>,
    pub acked: u64,
    pub error: Option<String>,
}

pub struct Script {
    /// Declared first, so dropped first: the interrupt forgets the state
    /// before the state is closed.
    attached: Attached,
    lua: Lua,
    write: Function,
    filter: Option<Function>,
    flush: Option<Function>,
    api: u8,
    /// Events handed to this state and not yet acknowledged (Centreon's
    /// `total`).
    total: u64,
    log: LogSink,
    trace: Option<TraceSink>,
    /// Events handed so far, for traces.
    handed: u64,
    /// `lua.memory_limit_bytes` (0: none).
    memory_limit: usize,
}

/// The output's interrupt, attached to one state until it is closed.
struct Attached(Arc<Interrupt>);

impl Attached {
    /// A call into the script, which the watchdog may find running long.
    fn call<T>(&self, call: impl FnOnce() -> T) -> T {
        self.0.enter();
        let result = call();
        self.0.leave();
        result
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.detach();
    }
}

/// The useful part of an mlua error: the Lua message with its position,
/// without the Rust-side wrapping and traceback.
pub fn lua_message(error: &mlua::Error) -> String {
    match error {
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        mlua::Error::RuntimeError(message) | mlua::Error::MemoryError(message) => {
            strip_traceback(message)
        }
        mlua::Error::SyntaxError { message, .. } => strip_traceback(message),
        mlua::Error::WithContext { cause, .. } => lua_message(cause),
        other => strip_traceback(&other.to_string()),
    }
}

fn strip_traceback(message: &str) -> String {
    match message.find("\nstack traceback:") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn describe(values: &MultiValue) -> String {
    match values.iter().next() {
        None => "nothing".to_owned(),
        Some(LuaValue::Boolean(b)) => b.to_string(),
        Some(LuaValue::Nil) => "nil".to_owned(),
        Some(LuaValue::Integer(i)) => format!("{i} (a number)"),
        Some(LuaValue::Number(x)) => format!("{} (a number)", super::json::lua_number(*x)),
        Some(LuaValue::String(s)) => format!("{:?} (a string)", s.to_string_lossy()),
        Some(other) => format!("a {}", other.type_name()),
    }
}

/// The `conf` table of `init(conf)` from an output's parameters
/// (docs/lua-runtime.md §1.2).
pub fn conf_value(p: &Parameter) -> Result<ConfValue, String> {
    if p.name.is_empty() {
        return Err("lua: couldn't read a configuration field because its name is empty".into());
    }
    match p.ty {
        ParamType::String => Ok(ConfValue::Str(p.value.clone())),
        ParamType::Password => {
            if p.value.starts_with("encrypt::") {
                Err(format!(
                    "lua: unable to decrypt {}, no encryption key file available",
                    p.name
                ))
            } else {
                Ok(ConfValue::Str(p.value.clone()))
            }
        }
        // Centreon's message also quotes the content; not here, since a
        // password typed into a row of the wrong type would be shown.
        ParamType::Number => parse_number(&p.value)
            .ok_or_else(|| format!("lua: unable to read '{}' content as a number", p.name)),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConfValue {
    Str(String),
    Int(i64),
    Float(f64),
}

/// A number parameter: an int32 gives a Lua integer, another number a Lua
/// float (Centreon's single-object form; its array form refuses floats,
/// which would make a script that runs there fail here for no benefit).
pub fn parse_number(text: &str) -> Option<ConfValue> {
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i32>() {
        return Some(ConfValue::Int(i64::from(i)));
    }
    match trimmed.parse::<f64>() {
        Ok(x) if !trimmed.is_empty() => Some(ConfValue::Float(x)),
        _ => None,
    }
}

impl Script {
    /// Loads `path` as Centreon does (docs/lua-runtime.md §2.1) and calls
    /// `init(conf)`. The error is the message Centreon would log, with the
    /// Lua message and line where there is one.
    pub fn load(path: &Path, parameters: &[Parameter], env: &ScriptEnv) -> Result<Script, String> {
        let shown = path.display().to_string();
        // Duplicate names: the first wins (Centreon inserts into a std::map).
        let mut conf: Vec<(String, ConfValue)> = Vec::new();
        for p in parameters {
            let value = conf_value(p)?;
            if !conf.iter().any(|(n, _)| *n == p.name) {
                conf.push((p.name.clone(), value));
            }
        }
        // SAFETY: Centreon opens every standard library (luaL_openlibs),
        // `debug` included, and lets scripts load C modules from
        // package.cpath; scripts written for it rely on both.
        let lua = unsafe { Lua::unsafe_new() };
        // Generational collection: every event makes short-lived tables
        // (the event, the library's copies, json_encode's text), which a
        // minor collection frees without marking the long-lived library
        // and cache tables again. Scripts cannot tell (collectgarbage()
        // still works, and may switch back).
        lua.gc_set_mode(mlua::state::GcMode::Generational(
            mlua::state::GcGenParams::default(),
        ));
        let fail =
            |e: mlua::Error| format!("lua: cannot set up the interpreter: {}", lua_message(&e));
        // Not mlua's memory limit: with one set, mlua protects every call
        // against allocation failures, which made the trivial bench script
        // 30% slower. The interrupt's hook and the worker check the
        // state's size instead.
        let limit = env.settings.memory_limit_bytes;
        env.interrupt
            .attach(&lua, env.settings.call_cpu_budget, limit)
            .map_err(fail)?;
        let attached = Attached(Arc::clone(&env.interrupt));
        let dir = match shown.rfind('/') {
            Some(at) => shown[..at].to_owned(),
            None => ".".to_owned(),
        };
        // One script must not stop the service and every other output with
        // it (under Centreon, os.exit stops cbd): it is a Lua error here.
        let os: mlua::Table = lua.globals().get("os").map_err(fail)?;
        let exit = lua
            .create_function(|_, _: MultiValue| -> mlua::Result<()> {
                Err(mlua::Error::runtime(
                    "os.exit is not available to stream connectors: it would stop every output",
                ))
            })
            .map_err(fail)?;
        os.set("exit", exit).map_err(fail)?;
        let package: mlua::Table = lua.globals().get("package").map_err(fail)?;
        package
            .set("path", format!("{};{dir}/?.lua", env.settings.package_path))
            .map_err(fail)?;
        package
            .set(
                "cpath",
                format!("{};{dir}/lib/?.so", env.settings.package_cpath),
            )
            .map_err(fail)?;
        // The built-in modules are `require`-able from the main chunk on, but
        // `broker_tcp_socket`, like the other SDK globals, only appears
        // after it (step 9 of docs/lua-runtime.md §2.1).
        super::modules::register(&lua).map_err(fail)?;
        let event_meta = event_metatable(&lua).map_err(fail)?;
        let socket: LuaValue = lua.globals().get("broker_tcp_socket").map_err(fail)?;
        lua.globals()
            .set("broker_tcp_socket", LuaValue::Nil)
            .map_err(fail)?;

        let sandbox = env.settings.sandbox;
        super::loader::install(&lua, sandbox).map_err(fail)?;
        super::confine::redirect_output(&lua, Arc::clone(&env.log)).map_err(fail)?;
        if sandbox {
            super::confine::sandbox(&lua, &env.settings).map_err(fail)?;
        }
        let mode = sandbox.then_some(mlua::chunk::ChunkMode::Text);
        let chunk = super::loader::load_file(&lua, path, mode, None)
            .map_err(|e| format!("lua: '{shown}' could not be loaded: {e}"))?;
        // Centreon drops the Lua message here; it is kept, because the line
        // is what the operator needs.
        attached
            .call(|| chunk.call::<()>(()))
            .map_err(|e| format!("lua: '{shown}' could not be compiled: {}", lua_message(&e)))?;

        let globals = lua.globals();
        let function = |name: &str| -> Option<Function> {
            match globals.get::<LuaValue>(name) {
                Ok(LuaValue::Function(f)) => Some(f),
                _ => None,
            }
        };
        let init = function("init")
            .ok_or_else(|| format!("lua: '{shown}' init() global function is missing"))?;
        let write = function("write")
            .ok_or_else(|| format!("lua: '{shown}' write() global function is missing"))?;
        let mut filter = function("filter");
        if let Some(f) = &filter {
            let disable = match attached.call(|| f.call::<MultiValue>((1, 2))) {
                Err(e) => Some(format!(
                    "lua: The filter() function doesn't work correctly: {}",
                    lua_message(&e)
                )),
                Ok(values) => match values.iter().next() {
                    Some(LuaValue::Boolean(_)) => None,
                    _ => Some("lua: The filter() function should return a boolean.".to_owned()),
                },
            };
            if let Some(message) = disable {
                (env.log)(Severity::Error, &message);
                filter = None;
            }
        }
        let flush = function("flush");
        let api = api_version(
            &globals
                .get::<LuaValue>("broker_api_version")
                .unwrap_or(LuaValue::Nil),
            env,
        );

        // Step 9 (docs/lua-runtime.md §2.1): the SDK globals, in Centreon's
        // order.
        let register = || -> mlua::Result<()> {
            globals.set(
                "broker_log",
                BrokerLog::new(
                    Arc::clone(&env.log),
                    env.file_log.clone(),
                    env.settings.log_rotation,
                    crate::output::Secrets::of_parameters(parameters),
                ),
            )?;
            globals.set("broker_event", event_meta)?;
            globals.set("broker_tcp_socket", socket)?;
            globals.set(
                "broker",
                sdk::broker_table(
                    &lua,
                    &env.settings.bbdo_version,
                    env.settings.event_json,
                    env.settings.perfdata_values,
                    Arc::clone(&env.log),
                )?,
            )?;
            globals.set(
                "broker_cache",
                BrokerCache::new(Arc::clone(&env.cache), api),
            )?;
            Ok(())
        };
        register().map_err(fail)?;

        let conf_table = lua.create_table().map_err(fail)?;
        for (name, value) in &conf {
            let set = match value {
                ConfValue::Str(s) => conf_table.raw_set(name.as_str(), s.as_str()),
                ConfValue::Int(i) => conf_table.raw_set(name.as_str(), *i),
                ConfValue::Float(x) => conf_table.raw_set(name.as_str(), *x),
            };
            set.map_err(fail)?;
        }
        attached
            .call(|| init.call::<()>(conf_table))
            .map_err(|e| format!("lua: error running function `init' {}", lua_message(&e)))?;
        Ok(Script {
            attached,
            memory_limit: limit,
            lua,
            write,
            filter,
            flush,
            api,
            total: 0,
            log: Arc::clone(&env.log),
            trace: env.trace.clone(),
            handed: 0,
        })
    }

    pub fn api_version(&self) -> u8 {
        self.api
    }

    pub fn has_flush(&self) -> bool {
        self.flush.is_some()
    }

    /// Events handed to the script and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.total
    }

    fn error(&self, message: String) -> String {
        (self.log)(Severity::Error, &message);
        message
    }

    /// Centreon's rule for what `write` or `flush` returned
    /// (docs/lua-runtime.md §2.3, §2.4): `true` acknowledges everything
    /// handed to the script so far, `false` nothing, and an error or a
    /// non-boolean nothing either, logged. Gives what was returned (as text),
    /// the events acknowledged, the error.
    fn settle(
        &mut self,
        function: &str,
        result: mlua::Result<MultiValue>,
    ) -> (Option<String>, u64, Option<String>) {
        match result {
            Err(e) => {
                let error = self.error(format!(
                    "lua: error running function `{function}' {}",
                    lua_message(&e)
                ));
                (None, 0, Some(error))
            }
            Ok(values) => {
                let returned = Some(describe(&values));
                match values.iter().next() {
                    Some(LuaValue::Boolean(true)) => {
                        (returned, std::mem::take(&mut self.total), None)
                    }
                    Some(LuaValue::Boolean(false)) => (returned, 0, None),
                    _ => {
                        let error = self.error(format!("lua: `{function}' must return a boolean"));
                        (returned, 0, Some(error))
                    }
                }
            }
        }
    }

    /// Hands one event to the script (docs/lua-runtime.md §2.3).
    pub fn write(&mut self, shared: &Shared) -> WriteOutcome {
        self.handed += 1;
        self.attached.0.enter();
        let outcome = self.write_inner(shared);
        self.attached.0.leave();
        if let Some(trace) = &self.trace {
            let ty = shared.event().event_type();
            let what = if outcome.filtered {
                "filter() returned false".to_owned()
            } else if let Some(error) = &outcome.error {
                error.clone()
            } else {
                format!(
                    "write() returned {}",
                    outcome.returned.as_deref().unwrap_or("nothing")
                )
            };
            trace(&format!(
                "event {} ({}:{} {}): {what}{}",
                self.handed,
                ty.category(),
                ty.element(),
                shared.event().def().name,
                acked_note(outcome.acked)
            ));
        }
        outcome
    }

    fn write_inner(&mut self, shared: &Shared) -> WriteOutcome {
        let event = shared.event();
        let mut outcome = WriteOutcome::default();
        self.total += 1;
        if let Some(filter) = &self.filter {
            let ty = event.event_type();
            match filter.call::<MultiValue>((i64::from(ty.category()), i64::from(ty.element()))) {
                Err(e) => {
                    outcome.error = Some(self.error(format!(
                        "lua: error while running function `filter()': {}",
                        lua_message(&e)
                    )));
                    return outcome;
                }
                Ok(values) => match values.iter().next() {
                    Some(LuaValue::Boolean(true)) => {}
                    Some(LuaValue::Boolean(false)) => {
                        outcome.filtered = true;
                        return outcome;
                    }
                    _ => {
                        outcome.error =
                            Some(self.error("lua: `filter' must return a boolean".to_owned()));
                        return outcome;
                    }
                },
            }
        }
        let argument = if self.api == 2 {
            self.lua
                .create_userdata(LuaEvent(shared.clone()))
                .map(LuaValue::UserData)
        } else {
            to_table(&self.lua, event).map(LuaValue::Table)
        };
        let argument = match argument {
            Ok(a) => a,
            Err(e) => {
                outcome.error = Some(self.error(format!(
                    "lua: error running function `write' {}",
                    lua_message(&e)
                )));
                return outcome;
            }
        };
        outcome.written = true;
        let result = self.write.call::<MultiValue>(argument);
        (outcome.returned, outcome.acked, outcome.error) = self.settle("write", result);
        outcome
    }

    /// Calls `flush()` if the script has one (docs/lua-runtime.md §2.4).
    pub fn flush(&mut self) -> FlushOutcome {
        self.attached.0.enter();
        let outcome = self.flush_inner();
        self.attached.0.leave();
        if let (Some(trace), true) = (&self.trace, outcome.called) {
            let what = match (&outcome.error, &outcome.returned) {
                (Some(error), _) => error.clone(),
                (None, returned) => format!(
                    "flush() returned {}",
                    returned.as_deref().unwrap_or("nothing")
                ),
            };
            trace(&format!("{what}{}", acked_note(outcome.acked)));
        }
        outcome
    }

    fn flush_inner(&mut self) -> FlushOutcome {
        let mut outcome = FlushOutcome::default();
        let Some(flush) = &self.flush else {
            return outcome;
        };
        outcome.called = true;
        let result = flush.call::<MultiValue>(());
        (outcome.returned, outcome.acked, outcome.error) = self.settle("flush", result);
        outcome
    }

    /// Why the state must be closed: it holds more than its memory limit
    /// between calls (a queue that only grows). The worker then loads the
    /// script again, and the events it had not acknowledged come again.
    pub fn over_memory_limit(&self) -> Option<String> {
        (self.memory_limit > 0 && self.lua.used_memory() > self.memory_limit)
            .then(|| super::interrupt::memory_message(self.memory_limit))
    }

    /// Direct access for tests and `run-script`.
    pub fn lua(&self) -> &Lua {
        &self.lua
    }
}

fn acked_note(acked: u64) -> String {
    if acked > 0 {
        format!(" (acknowledges {acked})")
    } else {
        String::new()
    }
}

/// `broker_api_version` as read once, before `init` (docs/lua-runtime.md §2.1
/// step 8).
fn api_version(value: &LuaValue, env: &ScriptEnv) -> u8 {
    let (version, shown) = match value {
        LuaValue::Nil => return 1,
        LuaValue::Integer(i) => (*i, i.to_string()),
        LuaValue::Number(x) => (x.trunc() as i64, super::json::lua_number(*x)),
        LuaValue::String(s) => {
            let text = s.to_string_lossy();
            let t = text.trim();
            let v = t
                .parse::<f64>()
                .map(|x| x.trunc() as i64)
                .unwrap_or_else(|_| strtol(t));
            (v, text.to_string())
        }
        other => (0, other.type_name().to_owned()),
    };
    match version {
        1 => 1,
        2 => 2,
        _ => {
            (env.log)(
                Severity::Error,
                &format!(
                    "broker_api_version represents the Lua broker api to use, it must be one of (1, 2) and not '{shown}'. Setting it to 1"
                ),
            );
            1
        }
    }
}

/// C's `strtol` on a string that is not a number: its leading digits.
fn strtol(s: &str) -> i64 {
    let digits: String = s
        .chars()
        .enumerate()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
        .map(|(_, c)| c)
        .collect();
    digits.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_parameters() {
        assert_eq!(parse_number("12"), Some(ConfValue::Int(12)));
        assert_eq!(parse_number(" -3 "), Some(ConfValue::Int(-3)));
        assert_eq!(parse_number("3.5"), Some(ConfValue::Float(3.5)));
        assert_eq!(
            parse_number("4294967296"),
            Some(ConfValue::Float(4294967296.0))
        );
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn encrypted_passwords_cannot_be_read() {
        let p = Parameter {
            name: "token".into(),
            ty: ParamType::Password,
            value: "encrypt::abc".into(),
        };
        assert!(conf_value(&p)
            .unwrap_err()
            .contains("unable to decrypt token"));
    }
}
