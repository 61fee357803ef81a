-- Writes broker.json_encode(event) for every event, one line each, to the
-- file named by the `file` parameter. `api` chooses the event form.
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
