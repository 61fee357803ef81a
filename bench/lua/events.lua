-- The benchmark's events, generated the same way for both sides: the
-- driver writes them as NDJSON for brokerstream and builds them as the API
-- v1 tables a script sees for the bare interpreter. A mix of service
-- statuses (neb, element 24) and storage metrics (storage, element 1).
local M = {}

function M.event(i)
  local host_id = 1 + i % 50
  local service_id = 1 + i % 20
  if i % 4 == 3 then
    return {
      _type = 196609, category = 3, element = 1,
      host_id = host_id, service_id = service_id, metric_id = 1000 + i % 200,
      name = "metric_" .. (i % 10), value = (i % 1000) / 8,
      ctime = 1732000000 + i,
    }
  end
  return {
    _type = 65560, category = 1, element = 24,
    host_id = host_id, service_id = service_id,
    state = i % 3, state_type = 1, check_attempt = 1,
    output = "OK - load average: " .. (i % 7) .. ".25, 0.10, 0.05",
    perfdata = "load1=" .. (i % 7) .. ".25;5;10;0; load5=0.10;4;6;0;",
    last_check = 1732000000 + i,
    execution_time = 0.0125, latency = 0.25,
  }
end

-- The NDJSON line of an event: keys in a fixed order, numbers as Lua
-- prints them (integers stay integers, floats keep their point).
local order = { "_type", "host_id", "service_id", "metric_id", "name", "value",
  "ctime", "state", "state_type", "check_attempt", "output", "perfdata",
  "last_check", "execution_time", "latency" }

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function M.ndjson(e)
  local parts = {}
  for _, k in ipairs(order) do
    local v = e[k]
    if v ~= nil then
      local text
      if type(v) == "string" then
        text = quote(v)
      elseif math.type(v) == "float" then
        text = string.format("%.17g", v)
        if not text:find("[%.eEn]") then text = text .. ".0" end
      else
        text = tostring(v)
      end
      parts[#parts + 1] = quote(k) .. ":" .. text
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

return M
