-- The realistic benchmark script, in the catalogue's shape: each event is
-- formatted into a table and queued; every `max_buffer_size` events the
-- queue is encoded with broker.json_encode and POSTed with cURL; only an
-- HTTP 200 acknowledges.
local curl = require("cURL")

local url
local max_buffer_size
local queue = {}

function init(conf)
  url = conf.http_server_url
  max_buffer_size = conf.max_buffer_size or 500
end

local function send()
  if #queue == 0 then
    return true
  end
  local payload = broker.json_encode(queue)
  local c = curl.easy{
    url = url,
    post = true,
    postfields = payload,
    httpheader = { "Content-Type: application/json" },
    writefunction = function() end,
  }
  c:perform()
  local code = c:getinfo(curl.INFO_RESPONSE_CODE)
  c:close()
  if code ~= 200 then
    return false
  end
  queue = {}
  return true
end

function write(e)
  local item = {
    event_type = e.category .. ":" .. e.element,
    host_id = e.host_id,
    service_id = e.service_id,
    timestamp = e.last_check or e.ctime,
  }
  if e.category == 1 then
    item.state = e.state
    item.output = e.output
    item.perfdata = e.perfdata
  else
    item.metric = e.name
    item.value = e.value
  end
  queue[#queue + 1] = item
  if #queue >= max_buffer_size then
    return send()
  end
  return false
end

function flush()
  return send()
end
