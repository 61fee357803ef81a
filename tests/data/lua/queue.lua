-- Queues events, returns false from write(), and sends the queue from
-- flush(), which acknowledges only when the destination took it. With
-- `fail` = yes the destination is "down" and nothing is acknowledged.
local queue = {}
local file, fail

function init(conf)
  file = conf.file
  fail = conf.fail == "yes"
end

function write(d)
  queue[#queue + 1] = broker.json_encode(d)
  return false
end

function flush()
  if fail then
    return false
  end
  if #queue > 0 then
    local f = io.open(file, "a")
    for _, line in ipairs(queue) do
      f:write(line, "\n")
    end
    f:close()
    queue = {}
  end
  return true
end
