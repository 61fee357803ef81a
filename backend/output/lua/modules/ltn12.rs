//! `ltn12`: LuaSocket's sources, sinks, filters and pumps.
//!
//! A source is a function that returns the next chunk, `nil` at the end, or
//! `nil, message` on failure. A sink is a function called with each chunk and
//! once with `nil` at the end; it returns a true value, or `nil, message`.
//! Scripts hand them to `socket.http.request` (`source`, `sink`), so this is
//! plain Lua: nothing here needs Rust.

use mlua::{Function, Lua};

const SOURCE: &str = r#"
local ltn12 = {
  _VERSION = "LTN12 1.0.3",
  BLOCKSIZE = 2048,
  filter = {}, source = {}, sink = {}, pump = {},
}

local function failing(message)
  return function() return nil, message end
end

-- filter ---------------------------------------------------------------

-- Turns a low-level filter `low(ctx, chunk, extra) -> out, ctx` into a
-- high-level one that carries its context between calls.
function ltn12.filter.cycle(low, ctx, extra)
  return function(chunk)
    local out
    out, ctx = low(ctx, chunk, extra)
    return out
  end
end

function ltn12.filter.chain(...)
  local filters = { ... }
  return function(chunk)
    for i = 1, #filters do chunk = filters[i](chunk) end
    return chunk
  end
end

-- source ---------------------------------------------------------------

function ltn12.source.empty()
  return function() return nil end
end

ltn12.source.error = failing

function ltn12.source.string(s)
  if s == nil then return ltn12.source.empty() end
  s = tostring(s)
  local at = 1
  return function()
    if at > #s then return nil end
    local chunk = s:sub(at, at + ltn12.BLOCKSIZE - 1)
    at = at + ltn12.BLOCKSIZE
    return chunk
  end
end

-- The chunks of an array, in order.
function ltn12.source.table(t)
  if t == nil then return ltn12.source.empty() end
  local i = 0
  return function()
    i = i + 1
    return t[i]
  end
end

function ltn12.source.file(handle, io_err)
  if not handle then return failing(io_err or "unable to open file") end
  return function()
    local chunk = handle:read(ltn12.BLOCKSIZE)
    if chunk == nil then handle:close() end
    return chunk
  end
end

-- A source may answer `nil, other_source` to hand over to another source.
function ltn12.source.simplify(src)
  return function()
    while true do
      local chunk, next_src = src()
      if chunk ~= nil or type(next_src) ~= "function" then
        return chunk, next_src
      end
      src = next_src
    end
  end
end

-- A source that can be given chunks back: `src(chunk)` pushes one.
function ltn12.source.rewind(src)
  local pushed = {}
  return function(chunk)
    if chunk ~= nil then
      pushed[#pushed + 1] = chunk
      return
    end
    if #pushed > 0 then return table.remove(pushed) end
    return src()
  end
end

function ltn12.source.chain(src, f)
  local finished = false
  return function()
    while not finished do
      local chunk, err = src()
      if err then return nil, err end
      if chunk == nil then
        finished = true
        local last = f(nil)
        if last ~= nil and last ~= "" then return last end
        return nil
      end
      local out = f(chunk)
      if out ~= nil and out ~= "" then return out end
    end
    return nil
  end
end

function ltn12.source.cat(...)
  local sources = { ... }
  local i = 1
  return function()
    while sources[i] do
      local chunk, err = sources[i]()
      if chunk ~= nil then return chunk end
      if err then return nil, err end
      i = i + 1
    end
    return nil
  end
end

-- sink -----------------------------------------------------------------

function ltn12.sink.table(t)
  t = t or {}
  return function(chunk)
    if chunk ~= nil then t[#t + 1] = chunk end
    return 1
  end, t
end

function ltn12.sink.null()
  return function() return 1 end
end

ltn12.sink.error = failing

function ltn12.sink.file(handle, io_err)
  if not handle then return failing(io_err or "unable to open file") end
  return function(chunk)
    if chunk == nil then
      handle:close()
      return 1
    end
    return handle:write(chunk)
  end
end

-- A sink may answer `true, other_sink` to hand over to another sink.
function ltn12.sink.simplify(snk)
  return function(chunk, err)
    local ok, next_snk = snk(chunk, err)
    if not ok then return nil, next_snk end
    if type(next_snk) == "function" then snk = next_snk end
    return 1
  end
end

function ltn12.sink.chain(f, snk)
  return function(chunk, err)
    if chunk == nil then
      local last = f(nil)
      if last ~= nil and last ~= "" then
        local ok, e = snk(last)
        if not ok then return nil, e end
      end
      return snk(nil, err)
    end
    local out = f(chunk)
    if out ~= nil and out ~= "" then return snk(out, err) end
    return 1
  end
end

-- pump -----------------------------------------------------------------

function ltn12.pump.step(src, snk)
  local chunk, src_err = src()
  local ok, snk_err = snk(chunk, src_err)
  if chunk ~= nil and ok then return 1 end
  return nil, src_err or snk_err
end

function ltn12.pump.all(src, snk, step)
  step = step or ltn12.pump.step
  while true do
    local more, err = step(src, snk)
    if not more then
      if err then return nil, err end
      return 1
    end
  end
end

return ltn12
"#;

pub(super) fn loader(lua: &Lua) -> mlua::Result<Function> {
    super::lua_part(lua, "ltn12", SOURCE)
}

#[cfg(test)]
mod tests {
    use super::super::testsupport::lua;

    #[test]
    fn string_source_into_table_sink() {
        let lua = lua();
        let out: String = lua
            .load(
                r#"
                local ltn12 = require "ltn12"
                local big = string.rep("x", 5000)
                local sink, t = ltn12.sink.table()
                assert(ltn12.pump.all(ltn12.source.string("ab" .. big), sink) == 1)
                assert(#t == 3, "chunks of BLOCKSIZE")
                return table.concat(t)
                "#,
            )
            .eval()
            .expect("lua");
        assert_eq!(out.len(), 5002);
    }

    #[test]
    fn errors_travel_through_the_pump() {
        let lua = lua();
        let (ok, err): (Option<i64>, String) = lua
            .load(
                r#"
                local ltn12 = require "ltn12"
                return ltn12.pump.all(ltn12.source.error("boom"), ltn12.sink.null())
                "#,
            )
            .eval()
            .expect("lua");
        assert_eq!(ok, None);
        assert_eq!(err, "boom");
    }

    #[test]
    fn chains_cat_table_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        let lua = lua();
        lua.globals()
            .set("path", path.to_string_lossy().to_string())
            .expect("set");
        let out: String = lua
            .load(
                r#"
                local ltn12 = require "ltn12"
                local upper = function(chunk) return chunk and chunk:upper() end
                local src = ltn12.source.chain(
                  ltn12.source.cat(ltn12.source.table({"a", "b"}), ltn12.source.string("c")),
                  upper)
                assert(ltn12.pump.all(src, ltn12.sink.file(io.open(path, "wb"))))
                local sink, t = ltn12.sink.table()
                assert(ltn12.pump.all(ltn12.source.file(io.open(path, "rb")),
                  ltn12.sink.chain(function(c) return c and (c .. "!") end, sink)))
                return table.concat(t)
                "#,
            )
            .eval()
            .expect("lua");
        assert_eq!(out, "ABC!");
    }
}
