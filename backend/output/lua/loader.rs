//! Reading Lua files as Centreon Broker reads them (docs/lua-runtime.md §2.1
//! step 3).
//!
//! Centreon loads a connector with `luaL_loadfile`, and `require`,
//! `dofile` and `loadfile` go through the same C function. Its rules are
//! what make Centreon's certified connectors loadable, most of which begin
//! with `#!/usr/bin/lua`:
//!
//! - a UTF-8 byte-order mark at the very start is skipped;
//! - then, if the first character is `#`, the whole first line is skipped,
//!   but its newline is kept, so an error on line 3 is still reported as
//!   line 3;
//! - a precompiled chunk (`\x1bLua…`, possibly after such a `#` line) is
//!   loaded as bytecode.
//!
//! Here those rules are applied once, in [`chunk_source`], and every way a
//! script can load a file goes through [`load_file`]: the main script, and
//! the `loadfile`, `dofile` and `package.path` searcher that [`install`]
//! puts in place of Lua's own. Doing it in one place, rather than keeping
//! Lua's C loader for modules, gives a precompiled chunk of another Lua
//! version the same clear refusal everywhere: Lua's own message is only
//! "bad binary format (version mismatch)", and Centreon's Debian packages
//! run Lua 5.3 where brokerstream runs 5.4, so such a chunk is a real case.

use std::path::Path;

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

/// The Lua version brokerstream embeds, as a precompiled chunk's header
/// writes it (`0x54` for 5.4).
const LUAC_VERSION: u8 = 0x54;
const LUA_SIGNATURE: &[u8] = b"\x1bLua";
const LUAJIT_SIGNATURE: &[u8] = b"\x1bLJ";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What Lua should compile from a file's bytes, after `luaL_loadfile`'s
/// skips; or why a precompiled chunk cannot be loaded by this Lua at all.
pub fn chunk_source(bytes: &[u8]) -> Result<&[u8], String> {
    let mut rest = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if rest.first() == Some(&b'#') {
        // Up to its newline, which stays: line numbers do not shift.
        rest = &rest[memchr::memchr(b'\n', rest).unwrap_or(rest.len())..];
        // A binary chunk cannot start with that newline; luaL_loadfile
        // drops it too.
        if rest.get(1) == Some(&0x1b) {
            rest = &rest[1..];
        }
    }
    if rest.first() == Some(&0x1b) {
        check_bytecode_version(rest)?;
    }
    Ok(rest)
}

/// A chunk precompiled by another Lua is refused with the versions named,
/// before Lua's loader says only "version mismatch".
fn check_bytecode_version(chunk: &[u8]) -> Result<(), String> {
    if chunk.starts_with(LUAJIT_SIGNATURE) {
        return Err(
            "it is LuaJIT bytecode, which Lua 5.4 cannot load: install the source file instead"
                .into(),
        );
    }
    if !chunk.starts_with(LUA_SIGNATURE) {
        // Lua's own loader says what is wrong with it.
        return Ok(());
    }
    match chunk.get(LUA_SIGNATURE.len()) {
        Some(&LUAC_VERSION) => Ok(()),
        Some(&version) => Err(format!(
            "it was precompiled for Lua {}.{}, and brokerstream runs Lua 5.4, which cannot load \
             another version's bytecode: install the source file, or precompile it with luac5.4",
            version >> 4,
            version & 0x0f
        )),
        None => Err("it is a truncated precompiled chunk".into()),
    }
}

/// Compiles the file at `path` as `luaL_loadfile` would (`mode` as
/// `load`'s: `"t"`, `"b"` or `"bt"`), its chunk named `@path` so Lua's
/// messages read `path:LINE: …`. The error is Lua's message, or ours for
/// a file that cannot be read or a foreign precompiled chunk.
pub fn load_file(
    lua: &Lua,
    path: &Path,
    mode: Option<ChunkMode>,
    env: Option<Table>,
) -> Result<Function, String> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    load_bytes(lua, &bytes, &shown, mode, env)
}

/// [`load_file`] for bytes not yet in a file (a script about to be saved),
/// `shown` standing for the file's name in Lua's messages.
pub fn load_bytes(
    lua: &Lua,
    bytes: &[u8],
    shown: &str,
    mode: Option<ChunkMode>,
    env: Option<Table>,
) -> Result<Function, String> {
    let source = chunk_source(bytes).map_err(|why| format!("cannot load {shown}: {why}"))?;
    let mut chunk = lua.load(source).set_name(format!("@{shown}"));
    if let Some(mode) = mode {
        chunk = chunk.set_mode(mode);
    }
    if let Some(env) = env {
        chunk = chunk.set_environment(env);
    }
    chunk
        .into_function()
        .map_err(|e| super::runtime::lua_message(&e))
}

/// `load`'s mode argument; Lua accepts any string holding `b` and/or `t`.
fn parse_mode(mode: Option<&LuaValue>) -> mlua::Result<Option<ChunkMode>> {
    let text = match mode {
        None | Some(LuaValue::Nil) => return Ok(None),
        Some(LuaValue::String(s)) => s.to_string_lossy(),
        Some(other) => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #2 to 'loadfile' (string expected, got {})",
                other.type_name()
            )))
        }
    };
    Ok(match (text.contains('b'), text.contains('t')) {
        (true, true) => None,
        (true, false) => Some(ChunkMode::Binary),
        // Neither letter: Lua refuses every chunk; text is the closer.
        (false, _) => Some(ChunkMode::Text),
    })
}

fn file_name(args: &MultiValue, function: &str) -> mlua::Result<String> {
    match args.front() {
        Some(LuaValue::String(s)) => Ok(s.to_string_lossy().to_string()),
        // Lua would read standard input, which a connector does not have.
        None | Some(LuaValue::Nil) => Err(mlua::Error::runtime(format!(
            "{function}() needs a file name: a stream connector has no standard input to read"
        ))),
        Some(other) => Err(mlua::Error::runtime(format!(
            "bad argument #1 to '{function}' (string expected, got {})",
            other.type_name()
        ))),
    }
}

/// Puts `loadfile`, `dofile` and the `package.path` searcher that follow
/// [`load_file`]'s rules in place of Lua's own, before the script runs.
/// With `text_only` (the sandbox), every file is loaded as text, so a
/// precompiled chunk is refused whatever mode a script asks for.
pub fn install(lua: &Lua, text_only: bool) -> mlua::Result<()> {
    let globals = lua.globals();
    let forced = text_only.then_some(ChunkMode::Text);
    let loadfile = lua.create_function(move |lua, args: MultiValue| {
        let name = file_name(&args, "loadfile")?;
        let mode = forced.or(parse_mode(args.get(1))?);
        let env = match args.get(2) {
            Some(LuaValue::Table(t)) => Some(t.clone()),
            _ => None,
        };
        // As Lua's: a failure is `nil, message`, not an error.
        Ok(match load_file(lua, Path::new(&name), mode, env) {
            Ok(f) => (LuaValue::Function(f), LuaValue::Nil),
            Err(message) => (
                LuaValue::Nil,
                LuaValue::String(lua.create_string(&message)?),
            ),
        })
    })?;
    globals.set("loadfile", loadfile)?;
    let dofile = lua.create_function(move |lua, args: MultiValue| {
        let name = file_name(&args, "dofile")?;
        let chunk = load_file(lua, Path::new(&name), forced, None).map_err(mlua::Error::runtime)?;
        chunk.call::<MultiValue>(())
    })?;
    globals.set("dofile", dofile)?;

    // package.searchers[2] is the one that looks along package.path.
    let package: Table = globals.get("package")?;
    let searchers: Table = package.get("searchers")?;
    let searcher = lua.create_function(move |lua, name: String| {
        let package: Table = lua.globals().get("package")?;
        let path: String = package.get("path")?;
        let searchpath: Function = package.get("searchpath")?;
        let (found, not_found): (Option<String>, Option<String>) =
            searchpath.call((name.as_str(), path))?;
        let Some(file) = found else {
            // `require` puts "\n\t" before each searcher's message itself.
            let tried = not_found.unwrap_or_default();
            return Ok((LuaValue::String(lua.create_string(tried)?), LuaValue::Nil));
        };
        match load_file(lua, Path::new(&file), forced, None) {
            Ok(loader) => Ok((
                LuaValue::Function(loader),
                LuaValue::String(lua.create_string(&file)?),
            )),
            Err(message) => Err(mlua::Error::runtime(format!(
                "error loading module '{name}' from file '{file}':\n\t{message}"
            ))),
        }
    })?;
    searchers.raw_set(2, searcher)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(bytes: &[u8]) -> Vec<u8> {
        chunk_source(bytes).unwrap().to_vec()
    }

    #[test]
    fn a_first_line_starting_with_a_hash_is_skipped_but_not_its_newline() {
        assert_eq!(source(b"#!/usr/bin/lua\nx = 1\n"), b"\nx = 1\n");
        assert_eq!(source(b"# any comment\r\nx = 1"), b"\nx = 1");
        assert_eq!(source(b"#!/usr/bin/lua"), b"");
        // Only the first line: a later `#` is Lua's length operator.
        assert_eq!(
            source(b"x = 1\n#!/usr/bin/lua\n"),
            b"x = 1\n#!/usr/bin/lua\n"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_then_a_hash_line() {
        assert_eq!(source(b"\xEF\xBB\xBFx = 1"), b"x = 1");
        assert_eq!(source(b"\xEF\xBB\xBF#!/usr/bin/lua\nx = 1"), b"\nx = 1");
        // A BOM after the `#` line is not one: Lua then sees its bytes.
        assert_eq!(source(b"#!lua\n\xEF\xBB\xBFx"), b"\n\xEF\xBB\xBFx");
    }

    #[test]
    fn a_precompiled_chunk_after_a_hash_line_loses_the_newline_too() {
        let mut chunk = b"#!/usr/bin/lua\n".to_vec();
        chunk.extend_from_slice(b"\x1bLua\x54\x00rest");
        assert_eq!(source(&chunk), b"\x1bLua\x54\x00rest");
    }

    #[test]
    fn another_versions_bytecode_is_refused_with_both_versions_named() {
        let error = chunk_source(b"\x1bLua\x53\x00rest").unwrap_err();
        assert!(error.contains("precompiled for Lua 5.3"), "{error}");
        assert!(error.contains("runs Lua 5.4"), "{error}");
        let error = chunk_source(b"#!/usr/bin/lua\n\x1bLua\x51\x00").unwrap_err();
        assert!(error.contains("Lua 5.1"), "{error}");
        let error = chunk_source(b"\x1bLJ\x02").unwrap_err();
        assert!(error.contains("LuaJIT"), "{error}");
        assert!(chunk_source(b"\x1bLua").is_err());
    }
}
