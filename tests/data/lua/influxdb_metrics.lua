-- A metrics stream connector in the shape of the third example of
-- Centreon's guide "How to write a stream connector": storage metric
-- events are queued, turned into InfluxDB line protocol and POSTed to
-- `/write?db=...` with socket.http and an ltn12 string source. write() and
-- flush() acknowledge (return true) only when InfluxDB answered 204.
--
-- Parameters: http_server_address, http_server_port, http_server_protocol
-- (http), influx_database (centreon), max_buffer_size (5),
-- max_buffer_age (5 seconds), log_file, log_level.
local http = require("socket.http")
local ltn12 = require("ltn12")

local settings = {}
local pending = {
  lines = {},
  started = os.time(),
}

-- Line protocol escaping: commas, spaces and equal signs in tag keys, tag
-- values and measurement names; commas and spaces only in measurements.
local function escape_tag(text)
  return (tostring(text):gsub("([ ,=])", "\\%1"))
end

local function escape_measurement(text)
  return (tostring(text):gsub("([ ,])", "\\%1"))
end

local function send_pending()
  if #pending.lines == 0 then
    return true
  end
  local body = table.concat(pending.lines, "\n") .. "\n"
  local url = settings.protocol .. "://" .. settings.address .. ":" .. settings.port
    .. "/write?db=" .. settings.database .. "&precision=s"
  local answer = {}
  local ok, code = http.request{
    url = url,
    method = "POST",
    source = ltn12.source.string(body),
    sink = ltn12.sink.table(answer),
    headers = {
      ["content-type"] = "text/plain",
      ["content-length"] = string.len(body),
    },
  }
  if ok == 1 and code == 204 then
    broker_log:info(2, "influxdb: sent " .. #pending.lines .. " points")
    pending.lines = {}
    pending.started = os.time()
    return true
  end
  broker_log:error(1, "influxdb: write refused (" .. tostring(code) .. "): "
    .. table.concat(answer))
  return false
end

function init(conf)
  settings.address = conf.http_server_address or "127.0.0.1"
  settings.port = conf.http_server_port or 8086
  settings.protocol = conf.http_server_protocol or "http"
  settings.database = conf.influx_database or "centreon"
  settings.max_size = conf.max_buffer_size or 5
  settings.max_age = conf.max_buffer_age or 5
  if conf.log_file then
    broker_log:set_parameters(conf.log_level or 1, conf.log_file)
  end
  broker_log:info(1, "influxdb: init, database " .. settings.database)
end

-- Only storage metric events (category 3, element 1).
function filter(category, element)
  return category == 3 and element == 1
end

function write(e)
  local host = broker_cache:get_hostname(e.host_id)
  local service = broker_cache:get_service_description(e.host_id, e.service_id)
  if not host or not service then
    broker_log:warning(1, "influxdb: no name yet for " .. tostring(e.host_id)
      .. "/" .. tostring(e.service_id) .. ", metric " .. tostring(e.name) .. " dropped")
  else
    pending.lines[#pending.lines + 1] = escape_measurement(service)
      .. ",host=" .. escape_tag(host)
      .. " " .. escape_tag(e.name) .. "=" .. tostring(e.value)
      .. " " .. tostring(e.ctime)
  end
  if #pending.lines >= settings.max_size
      or os.time() - pending.started >= settings.max_age then
    return send_pending()
  end
  return false
end

function flush()
  return send_pending()
end
