-- The bare-interpreter side of scripts/bench-lua: runs a stream connector
-- under a plain Lua 5.4 (Debian's lua5.4) with minimal stand-ins for the
-- SDK, on the same events brokerstream gets, and times write().
--
--   lua5.4 driver.lua ndjson N FILE              write the N events as NDJSON
--   lua5.4 driver.lua run SCRIPT N ROUNDS [name=value...]
--                                                 print the best events/s
--
-- Stand-ins: broker_log (no-ops), broker.json_encode (lua-cjson's encoder,
-- a C encoder like brokerstream's), broker_cache (names made from ids) and
-- a `cURL` module (easy{...}, perform, getinfo, close) over luasocket's
-- socket.http, since Debian's lua-curl is not built for 5.4. Each write()
-- gets a fresh table, as the runtime gives it.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/?.lua;" .. package.path
local events = require("events")

local mode = arg[1]

if mode == "ndjson" then
  local n, file = tonumber(arg[2]), arg[3]
  local out = assert(io.open(file, "w"))
  for i = 0, n - 1 do
    out:write(events.ndjson(events.event(i)), "\n")
  end
  out:close()
  return
end

assert(mode == "run", "usage: driver.lua ndjson N FILE | run SCRIPT N ROUNDS [name=value...]")
local script, n, rounds = arg[2], tonumber(arg[3]), tonumber(arg[4])
local conf = {}
for i = 5, #arg do
  local k, v = arg[i]:match("^([^=]+)=(.*)$")
  conf[k] = math.tointeger(tonumber(v)) or tonumber(v) or v
end

local socket = require("socket")
local http = require("socket.http")
local ltn12 = require("ltn12")
local cjson = require("cjson")

local function nothing() end
local log = { set_parameters = nothing, info = nothing, warning = nothing, error = nothing }

package.preload["cURL"] = function()
  local curl = { INFO_RESPONSE_CODE = "response_code" }
  local easy = {}
  easy.__index = easy
  function curl.easy(opts)
    return setmetatable({ opts = opts or {} }, easy)
  end
  function easy:perform()
    local o = self.opts
    local headers = {}
    for _, h in ipairs(o.httpheader or {}) do
      local k, v = h:match("^([^:]+):%s*(.*)$")
      headers[k:lower()] = v
    end
    headers["content-length"] = #(o.postfields or "")
    local sink = {}
    local ok, code = http.request{
      url = o.url,
      method = o.post and "POST" or "GET",
      headers = headers,
      source = ltn12.source.string(o.postfields or ""),
      sink = ltn12.sink.table(sink),
    }
    assert(ok, code)
    self.code = code
    if o.writefunction then o.writefunction(table.concat(sink)) end
    return self
  end
  function easy:getinfo(what)
    assert(what == "response_code")
    return self.code
  end
  function easy:close() end
  return curl
end

-- The events, built once; each write() gets a copy.
local templates = {}
for i = 0, n - 1 do
  templates[i + 1] = events.event(i)
end
local function fresh(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local best = 0
for _ = 1, rounds do
  -- A new state for each round, as a script (re)load would have.
  local env = setmetatable({
    broker_log = log,
    broker = { json_encode = cjson.encode },
    broker_cache = {
      get_hostname = function(_, id) return "host-" .. id end,
      get_service_description = function(_, h, s) return "service-" .. h .. "-" .. s end,
    },
  }, { __index = _G })
  assert(loadfile(script, "t", env))()
  env.init(conf)
  local write, flush = env.write, env.flush
  local started = socket.gettime()
  for i = 1, n do
    write(fresh(templates[i]))
  end
  if flush then flush() end
  local rate = n / (socket.gettime() - started)
  if rate > best then best = rate end
end
print(string.format("%.0f", best))
