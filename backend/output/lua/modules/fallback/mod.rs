//! Fallbacks for modules that Centreon's certified connectors `require` but
//! that a Centreon central gets from Centreon's own packages: `luatz.timetable`
//! (`lua-tz`), `base64` (the `lbase64`/`base64` rock) and `crypto` (LuaCrypto),
//! plus a clear refusal for `cffi`/`ffi`.
//!
//! The rule: **a module on disk always wins.** The fallbacks are offered by
//! one extra searcher appended at the *end* of `package.searchers`, after
//! Lua's preload, Lua-file and C searchers, so it is only asked once nothing
//! on `package.path`/`package.cpath` has the name. A Centreon central has the
//! real modules under `/usr/share/lua/5.x` and keeps using them (with their
//! exact behaviour); a server running brokerstream alone has none of them,
//! and without these fallbacks the Google, PagerDuty, Splunk and Prometheus
//! connectors would stop at their first `require`.
//!
//! Unlike the modules in `package.preload` (cURL, socket.http…), which
//! brokerstream always answers for itself, these are small libraries whose
//! real versions are the reference and are used whenever present.
//!
//! For any other name the searcher returns `no fallback module 'x'`, which
//! Lua 5.4 adds to its usual `module 'x' not found:` list.

mod base64;
mod crypto;
mod luatz;

use mlua::{Function, Lua, Table, Value};

/// Appends the fallback searcher to `package.searchers`.
pub(super) fn install(lua: &Lua) -> mlua::Result<()> {
    let searchers: Table = lua
        .globals()
        .get::<Table>("package")?
        .get::<Table>("searchers")?;
    let searcher = lua.create_function(|lua, name: mlua::LuaString| {
        // Lossy: a name that is not UTF-8 is simply not one of ours, and
        // must not turn `require`'s usual message into an error here.
        let name = name.to_string_lossy();
        match loader(lua, &name)? {
            Some(found) => Ok(Value::Function(found)),
            None => Ok(Value::String(lua.create_string(not_found(&name))?)),
        }
    })?;
    searchers.raw_set(searchers.raw_len() + 1, searcher)
}

fn loader(lua: &Lua, name: &str) -> mlua::Result<Option<Function>> {
    Ok(Some(match name {
        "luatz.timetable" => luatz::loader(lua)?,
        "base64" => base64::loader(lua)?,
        "crypto" => crypto::loader(lua)?,
        "cffi" | "ffi" => super::lua_part(lua, name, NO_FFI)?,
        _ => return Ok(None),
    }))
}

/// Wraps `f`, a Rust function returning `true, results...` or `false,
/// message`, into one that returns the results or raises the message. The
/// error is then a Lua string, as the C modules raise, so that a script's
/// `"failed: " .. err` works (an error raised from Rust reaches Lua as a
/// userdata). Level 2 puts the caller's file and line in front.
fn raising(lua: &Lua, name: &str, f: Function) -> mlua::Result<Function> {
    super::lua_part(lua, name, RAISING)?.call(f)
}

const RAISING: &str = r#"
local f = ...
return function(...)
  local r = table.pack(f(...))
  if r[1] then return table.unpack(r, 2, r.n) end
  error(r[2], 2)
end
"#;

/// Lua 5.4's `require` puts "\n\t" before each searcher's message itself.
fn not_found(name: &str) -> String {
    if name == "luatz" || name.starts_with("luatz.") {
        // Only the part the catalogue calls is built in; saying so spares
        // the operator a search for why `luatz.timetable` works and this
        // does not.
        format!("no fallback module '{name}' (brokerstream builds in only 'luatz.timetable')")
    } else {
        format!("no fallback module '{name}'")
    }
}

/// The Kafka connector's library tries `pcall(require, 'ffi')` and then
/// `require 'cffi'`, so the operator sees this message from the second
/// `require`, in the script's "could not be compiled" error. Level 3 points
/// at the Lua file that called `require` (level 2 is `require` itself).
const NO_FFI: &str = r#"
local name = ...
error("module '" .. name .. "' is not available in brokerstream: it is a C"
    .. " foreign-function interface, which the Kafka stream connector uses to"
    .. " drive librdkafka. brokerstream cannot offer it, and sending to Kafka"
    .. " would need a native Kafka output, which brokerstream does not have", 3)
"#;

#[cfg(test)]
mod tests {
    use super::super::testsupport::lua;

    #[test]
    fn unknown_names_keep_lua_s_not_found_message() {
        let lua = lua();
        let message: String = lua
            .load(r#"local ok, e = pcall(require, "nope.nothing"); assert(not ok); return e"#)
            .eval()
            .expect("lua");
        assert!(
            message.starts_with("module 'nope.nothing' not found:\n\tno field package.preload"),
            "{message}"
        );
        assert!(
            message.ends_with("\n\tno fallback module 'nope.nothing'"),
            "{message}"
        );
        // Lua adds the separator: a "\n\t" of our own would leave a blank line.
        assert!(!message.contains("\n\t\n\tno fallback"), "{message}");
    }

    #[test]
    fn luatz_itself_is_not_provided() {
        let lua = lua();
        let message: String = lua
            .load(r#"local ok, e = pcall(require, "luatz"); assert(not ok); return e"#)
            .eval()
            .expect("lua");
        assert!(
            message.contains(
                "no fallback module 'luatz' (brokerstream builds in only 'luatz.timetable')"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_searcher_is_the_last_one() {
        let lua = lua();
        lua.load(
            r#"
            local searchers = package.searchers
            -- Lua's preload and Lua-file searchers come first, then C ones.
            assert(#searchers >= 4, #searchers)
            local last = searchers[#searchers]
            assert(type(last("luatz.timetable")) == "function")
            assert(last("zzz") == "no fallback module 'zzz'")
            for i = 1, #searchers - 1 do
              assert(type(searchers[i]("luatz.timetable")) ~= "function", i)
            end
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn ffi_and_cffi_explain_why_they_fail() {
        let lua = lua();
        let message: String = lua
            .load(
                r#"
                local ok = pcall(require, "ffi")
                assert(not ok)
                local ok2, e = pcall(require, "cffi")
                assert(not ok2)
                return e
                "#,
            )
            .eval()
            .expect("lua");
        assert!(
            message.contains("module 'cffi' is not available in brokerstream"),
            "{message}"
        );
        assert!(message.contains("native Kafka output"), "{message}");
    }
}
