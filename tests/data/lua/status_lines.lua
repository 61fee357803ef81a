-- After the guide's second example: HOST:/SERVICE: status lines with the
-- names from the cache, only for host and service statuses.
local file

function init(conf)
  file = conf.file
  broker_log:set_parameters(1, conf.log_file)
end

function filter(category, element)
  return category == 1 and (element == 14 or element == 24)
end

local function append(line)
  local f = io.open(file, "a")
  f:write(line, "\n")
  f:close()
end

function write(d)
  local host = broker_cache:get_hostname(d.host_id) or "unknown"
  if d.element == 14 then
    append("HOST:" .. host .. ";" .. d.state .. ";" .. (d.output or ""))
  else
    local service = broker_cache:get_service_description(d.host_id, d.service_id) or "unknown"
    append("SERVICE:" .. host .. ";" .. service .. ";" .. d.state)
  end
  return true
end
