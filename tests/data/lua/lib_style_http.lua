-- A connector in the shape of the catalogue's centreon-stream-connectors-lib
-- ones (API v2, a filter on categories, a queue of formatted events, a JSON
-- batch POSTed with cURL, acknowledged only on HTTP 200). It keeps its
-- queue when the destination is down or refuses the batch, and sends it
-- again from the next write() or flush().
--
-- Parameters: http_server_url, max_buffer_size (10), max_buffer_age (5 s),
-- connection_timeout (2 s).
broker_api_version = 2

local curl = require("cURL")

local params = {}
local queue = { events = {}, since = os.time() }

function init(conf)
  params.url = conf.http_server_url
  params.max_buffer_size = conf.max_buffer_size or 10
  params.max_buffer_age = conf.max_buffer_age or 5
  params.connection_timeout = conf.connection_timeout or 2
  broker_log:info(1, "lib-style: sending to " .. tostring(params.url))
end

-- Service statuses only (neb, element 24).
function filter(category, element)
  return category == 1 and element == 24
end

local function format_event(event)
  return {
    host = broker_cache:get_hostname(event.host_id) or tostring(event.host_id),
    service_id = event.service_id,
    state = event.state,
    output = event.output,
  }
end

local function send_queue()
  if #queue.events == 0 then
    return true
  end
  local payload = broker.json_encode({ events = queue.events })
  local answer = {}
  local request = curl.easy{
    url = params.url,
    post = true,
    postfields = payload,
    httpheader = { "Content-Type: application/json" },
    connecttimeout = params.connection_timeout,
    writefunction = function(chunk) answer[#answer + 1] = chunk end,
  }
  local ok, err = pcall(request.perform, request)
  if not ok then
    broker_log:error(1, "lib-style: no answer from " .. params.url .. ": " .. tostring(err))
    request:close()
    return false
  end
  local code = request:getinfo(curl.INFO_RESPONSE_CODE)
  request:close()
  if code ~= 200 then
    broker_log:error(1, "lib-style: HTTP " .. tostring(code) .. ": " .. table.concat(answer))
    return false
  end
  broker_log:info(2, "lib-style: sent " .. #queue.events .. " events")
  queue.events = {}
  queue.since = os.time()
  return true
end

function write(event)
  queue.events[#queue.events + 1] = format_event(event)
  if #queue.events >= params.max_buffer_size
      or os.time() - queue.since >= params.max_buffer_age then
    return send_queue()
  end
  return false
end

function flush()
  return send_queue()
end
