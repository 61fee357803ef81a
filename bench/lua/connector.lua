-- A metrics stream connector written the way Centreon's own are
-- (centreon-stream-connectors: an event queue object, parameters with
-- defaults, names from broker_cache, a flush by size or age, the payload
-- encoded with broker.json_encode and POSTed with cURL, only a 2xx
-- acknowledging). scripts/bench-e2e runs it as the "realistic" Lua output
-- against the blackhole, which reads each point's `value` to time it.
local curl = require("cURL")

local EventQueue = {}
EventQueue.__index = EventQueue

function EventQueue.new(conf)
  local self = {
    url = conf.http_server_url,
    max_buffer_size = tonumber(conf.max_buffer_size) or 1000,
    max_buffer_age = tonumber(conf.max_buffer_age) or 5,
    timeout = tonumber(conf.timeout) or 10,
    log_level = tonumber(conf.log_level) or 1,
    events = {},
    last_flush = os.time(),
  }
  if not self.url or self.url == "" then
    error("http_server_url is mandatory")
  end
  broker_log:set_parameters(self.log_level, conf.log_path or "")
  broker_log:info(1, "EventQueue.new: sending to " .. self.url
    .. ", " .. self.max_buffer_size .. " events or " .. self.max_buffer_age .. " s per batch")
  return setmetatable(self, EventQueue)
end

-- One point per metric, with the host and service names when the cache
-- knows them (ids otherwise, as the Centreon connectors fall back to).
function EventQueue:format_event(e)
  local host = broker_cache:get_hostname(e.host_id) or tostring(e.host_id)
  local service = broker_cache:get_service_description(e.host_id, e.service_id)
    or tostring(e.service_id)
  return {
    host = host,
    service = service,
    metric = e.name,
    value = e.value,
    timestamp = e.ctime,
    interval = e.interval,
  }
end

function EventQueue:add(e)
  self.events[#self.events + 1] = self:format_event(e)
end

function EventQueue:send()
  if #self.events == 0 then
    self.last_flush = os.time()
    return true
  end
  local payload = broker.json_encode(self.events)
  local response = {}
  local c = curl.easy{
    url = self.url,
    post = true,
    postfields = payload,
    timeout = self.timeout,
    httpheader = {
      "Content-Type: application/json",
      "Accept: application/json",
    },
    writefunction = function(chunk)
      response[#response + 1] = chunk
    end,
  }
  local ok, err = pcall(c.perform, c)
  local code = ok and c:getinfo(curl.INFO_RESPONSE_CODE) or 0
  c:close()
  if not ok then
    broker_log:error(1, "EventQueue:send: " .. tostring(err))
    return false
  end
  if code < 200 or code >= 300 then
    broker_log:error(1, "EventQueue:send: HTTP " .. code .. ": " .. table.concat(response))
    return false
  end
  broker_log:info(3, "EventQueue:send: " .. #self.events .. " events sent")
  self.events = {}
  self.last_flush = os.time()
  return true
end

local queue

function init(conf)
  queue = EventQueue.new(conf)
end

-- Only metrics (category 3 storage, element 1 metric) reach write().
function filter(category, element)
  return category == 3 and element == 1
end

function write(e)
  queue:add(e)
  if #queue.events >= queue.max_buffer_size
    or os.time() - queue.last_flush >= queue.max_buffer_age then
    return queue:send()
  end
  return false
end

function flush()
  return queue:send()
end
