broker_api_version = 2
local file
function init(conf)
  file = conf.file
end

function write(d)
  local f = io.open(file, "a")
  f:write(broker.json_encode(d), "\n")
  f:close()
  return true
end
