//! What a script can reach besides Centreon's API: where its standard
//! output goes, and the opt-in sandbox (`lua.sandbox`).
//!
//! Under Centreon Broker a script runs with cbd's rights and writes
//! `print()` to cbd's standard output. Here `print`, `io.write`,
//! `io.stdout` and `io.stderr` go to the output's script log and the
//! service log instead, through the same sink as `broker_log`, so the
//! output's passwords are taken out of them like out of every log line.
//!
//! The sandbox, for operators who want it, removes what lets a script run
//! other programs or native code: `os.execute` (except `sleep N`, which
//! Centreon's library runs to wait between retries, done here without a
//! shell), `io.popen`, the `debug` library, `package.loadlib` and the C
//! module searchers, and precompiled chunks. `io.open` stays: connectors
//! write their log and cache files with it.

use std::time::Duration;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

use super::sdk::{LogSink, Severity};

/// Sends what the script prints to `log`, a line per entry: `print` and
/// `io.stdout` as INFO, `io.stderr` as WARNING.
pub fn redirect_output(lua: &Lua, log: LogSink) -> mlua::Result<()> {
    let info = Severity::Info;
    let warning = Severity::Warning;
    let sink = |severity: Severity| {
        let log = log.clone();
        lua.create_function(move |_, line: mlua::LuaString| {
            log(severity, &line.to_string_lossy());
            Ok(())
        })
    };
    let setup: Function = lua
        .load(REDIRECT)
        .set_name("=brokerstream output")
        .into_function()?;
    setup.call::<()>((sink(info)?, sink(warning)?))
}

/// `print` joins its arguments with tabs through `tostring`, as Lua's
/// does; `write` takes strings and numbers, and keeps a partial line until
/// its newline arrives.
const REDIRECT: &str = r#"
local info, warning = ...
local tostring, select, concat, type = tostring, select, table.concat, type
print = function(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
  info(concat(parts, '\t'))
end
local function stream(emit, name)
  local pending = ''
  local file = {}
  function file:write(...)
    for i = 1, select('#', ...) do
      local piece = select(i, ...)
      local kind = type(piece)
      if kind ~= 'string' and kind ~= 'number' then
        error("bad argument #" .. i .. " to 'write' (string expected, got " .. kind .. ")", 2)
      end
      pending = pending .. piece
    end
    while true do
      local at = pending:find('\n', 1, true)
      if not at then break end
      emit(pending:sub(1, at - 1))
      pending = pending:sub(at + 1)
    end
    return self
  end
  function file:flush() return self end
  function file:setvbuf() return true end
  function file:close() return nil, 'cannot close standard file' end
  return setmetatable(file, { __name = 'FILE*', __tostring = function() return 'file (' .. name .. ')' end })
end
io.stdout = stream(info, 'stdout')
io.stderr = stream(warning, 'stderr')
io.write = function(...) return io.stdout:write(...) end
"#;

/// Takes away what the sandbox does not allow (see the module comment).
/// Precompiled chunks are refused by the loader ([`super::loader`]).
pub fn sandbox(lua: &Lua, settings: &super::LuaSettings) -> mlua::Result<()> {
    guard_private_files(lua, settings)?;
    let globals = lua.globals();
    let refuse = |what: &'static str| {
        lua.create_function(move |_, _: MultiValue| -> mlua::Result<()> {
            Err(mlua::Error::runtime(format!(
                "{what} is not available to scripts in the sandbox (lua.sandbox)"
            )))
        })
    };
    let os: Table = globals.get("os")?;
    os.set("execute", lua.create_function(sandboxed_execute)?)?;
    let io: Table = globals.get("io")?;
    io.set("popen", refuse("io.popen")?)?;
    globals.set("debug", LuaValue::Nil)?;
    let package: Table = globals.get("package")?;
    let loaded: Table = package.get("loaded")?;
    loaded.set("debug", LuaValue::Nil)?;
    package.set("loadlib", refuse("package.loadlib")?)?;
    package.set("cpath", "")?;
    // Searchers 3 and 4 load C modules (`package.cpath`, all-in-one).
    let searchers: Table = package.get("searchers")?;
    for _ in 0..2 {
        searchers.raw_remove(3)?;
    }
    lua.load(TEXT_ONLY_LOAD)
        .set_name("=brokerstream sandbox")
        .exec()
}

/// The functions that name a file by its path, and which of their
/// arguments are paths.
const PATH_FUNCTIONS: &[(&str, &str, &[usize])] = &[
    ("io", "open", &[0]),
    ("io", "lines", &[0]),
    ("io", "input", &[0]),
    ("io", "output", &[0]),
    ("os", "remove", &[0]),
    ("os", "rename", &[0, 1]),
    ("_G", "loadfile", &[0]),
    ("_G", "dofile", &[0]),
];

/// In the sandbox, the service's own files (the database, whose passwords
/// `secret.key` unseals, the journal) are out of a script's reach: every
/// function that names a file by its path refuses one below a private
/// directory, unless it is inside a script directory. The path is
/// resolved as the system would (relative to the working directory,
/// symbolic links followed), so `..` and links do not get around it; a
/// sandboxed script has no way to make a link or run a program that would.
fn guard_private_files(lua: &Lua, settings: &super::LuaSettings) -> mlua::Result<()> {
    let canonical = |dirs: &[std::path::PathBuf]| -> Vec<std::path::PathBuf> {
        dirs.iter()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
            .collect()
    };
    let private = std::sync::Arc::new(canonical(&settings.private_dirs));
    let allowed = std::sync::Arc::new(canonical(&settings.script_dirs));
    let globals = lua.globals();
    for &(table_name, name, paths) in PATH_FUNCTIONS {
        let table: Table = if table_name == "_G" {
            globals.clone()
        } else {
            globals.get(table_name)?
        };
        let original: mlua::Function = table.get(name)?;
        let (private, allowed) = (
            std::sync::Arc::clone(&private),
            std::sync::Arc::clone(&allowed),
        );
        let qualified = if table_name == "_G" {
            name.to_owned()
        } else {
            format!("{table_name}.{name}")
        };
        let guarded = lua.create_function(move |_, args: MultiValue| {
            for &i in paths {
                if let Some(LuaValue::String(path)) = args.get(i) {
                    let path = path.to_string_lossy();
                    if is_private(&path, &private, &allowed) {
                        return Err(mlua::Error::runtime(format!(
                            "{qualified}: `{path}` is one of brokerstream's own files, which scripts in the sandbox (lua.sandbox) cannot reach"
                        )));
                    }
                }
            }
            original.call::<MultiValue>(args)
        })?;
        table.set(name, guarded)?;
    }
    Ok(())
}

/// Whether `path`, resolved, lies below a private directory and in no
/// allowed one.
fn is_private(path: &str, private: &[std::path::PathBuf], allowed: &[std::path::PathBuf]) -> bool {
    let path = std::path::Path::new(path);
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        match std::env::current_dir() {
            Ok(dir) => dir.join(path),
            Err(_) => path.to_owned(),
        }
    };
    // A file that does not exist yet: its directory, resolved, and its name.
    let resolved = std::fs::canonicalize(&absolute).unwrap_or_else(|_| {
        match (absolute.parent(), absolute.file_name()) {
            (Some(parent), Some(name)) => std::fs::canonicalize(parent)
                .map(|p| p.join(name))
                .unwrap_or_else(|_| absolute.clone()),
            _ => absolute.clone(),
        }
    });
    private.iter().any(|p| resolved.starts_with(p))
        && !allowed.iter().any(|a| resolved.starts_with(a))
}

/// `load` with the mode forced to text. The environment argument is passed
/// on only when given: an explicit `nil` would become the chunk's `_ENV`.
const TEXT_ONLY_LOAD: &str = r#"
local load, select = load, select
_G.load = function(chunk, name, mode, ...)
  if select('#', ...) > 0 then return load(chunk, name, 't', ...) end
  return load(chunk, name, 't')
end
"#;

/// `os.execute` in the sandbox: no shell. `sleep N` (what Centreon's
/// library runs to wait) sleeps; `os.execute()` answers that no shell is
/// available, as Lua's does where there is none; anything else is an error.
fn sandboxed_execute(lua: &Lua, command: Option<mlua::LuaString>) -> mlua::Result<MultiValue> {
    let Some(command) = command else {
        return Ok(MultiValue::from_iter([LuaValue::Boolean(false)]));
    };
    let text = command.to_string_lossy();
    let mut words = text.split_whitespace();
    if let (Some("sleep"), Some(seconds), None) = (words.next(), words.next(), words.next()) {
        if let Ok(seconds) = seconds.parse::<f64>() {
            if let Ok(wait) = Duration::try_from_secs_f64(seconds) {
                std::thread::sleep(wait);
                return Ok(MultiValue::from_iter([
                    LuaValue::Boolean(true),
                    LuaValue::String(lua.create_string("exit")?),
                    LuaValue::Integer(0),
                ]));
            }
        }
    }
    Err(mlua::Error::runtime(
        "os.execute is not available to scripts in the sandbox (lua.sandbox); only `sleep N` is",
    ))
}
